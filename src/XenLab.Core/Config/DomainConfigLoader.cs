// Reads a domain from YAML with YamlDotNet's node model, so that every error can name the
// file, line and column of the node at fault. Unknown keys get the closest valid key as a
// suggestion. A file either yields a whole valid configuration or an exception: never half.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using XenLab.E820;
using XenLab.P2m;
using XenLab.Paging.Modes;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace XenLab.Config;

public static class DomainConfigLoader
{
    public static readonly string[] TopLevelKeys =
    {
        "name", "memory", "maxmem", "vcpus", "shadow_memory", "videoram", "paging", "mmio_hole",
        "e820", "identity", "identity_strategy", "framebuffers", "kernel_pt_pages", "tlb_entries",
        "oos", "oos_slots", "shadow_prefetch", "shadow_write_removal", "hap_gpa_cache", "hap_logdirty", "hap_superpages", "arm_leaf_lookup", "vram_strategy", "vram_tlb_flush", "vram_with_logdirty", "translate", "workload",
        "builder", "type",
    };
    private static readonly string[] WorkloadKeys = { "frames", "budget", "steps" };
    /// <summary>Instructions per frame: about 1000 s of guest code at 100 M/s, the most one frame may take.</summary>
    public const ulong MaxBudget = 100_000_000_000;
    public const int MaxSteps = 256;
    private static readonly string[] StepKeys =
    {
        "kind", "framebuffer", "x", "y", "width", "height", "color", "color_step", "dx", "dy", "lines", "size",
        "source", "source_x", "source_y", "pages",
    };
    private static readonly string[] E820Keys = { "start", "size", "end", "type" };
    private static readonly string[] IdentityKeys = { "start", "size", "end" };
    private static readonly string[] FramebufferKeys = { "name", "address", "gfn", "width", "height", "bpp", "stride" };

    /// <summary>Largest lab file, in characters (real ones are a few KiB): bounds parse time and memory.</summary>
    public const int MaxDocumentChars = 1 << 20;
    /// <summary>Deepest nesting of lists and mappings (a lab file needs 4): YamlDotNet's node model recurses per level.</summary>
    public const int MaxNestingDepth = 32;

    public static DomainConfig LoadFile(string path)
    {
        string text;
        try
        {
            // Refuse a huge file before reading it (UTF-8 takes at most 4 bytes a character).
            long bytes = new FileInfo(path).Length;
            if (bytes > 4L * MaxDocumentChars)
                throw new ConfigFileException(path, 1, 1, $"the file is {bytes} bytes, more than a lab file may have ({MaxDocumentChars} characters)");
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigFileException(path, 0, 0, $"cannot read the file: {e.Message}");
        }
        return Load(text, path);
    }

    public static DomainConfig Load(string yaml, string fileName = "<yaml>")
    {
        CheckShape(yaml, fileName);
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(yaml));
        }
        catch (YamlException e)
        {
            throw new ConfigFileException(fileName, e.Start.Line, e.Start.Column, "YAML syntax error: " + Inner(e));
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or FormatException or OverflowException)
        {
            // YamlDotNet's representation model throws these for some malformed input (found by
            // fuzzing: an unclosed flow mapping ending in a tab); it gives no position, so find
            // how far its parser gets and point there.
            var (line, column) = LastGoodPosition(yaml);
            throw new ConfigFileException(fileName, line, column, "YAML syntax error near here (is a '{', '[' or quote left open?): " + Inner(e));
        }
        if (stream.Documents.Count != 1)
            throw new ConfigFileException(fileName, 1, 1, $"expected one YAML document, found {stream.Documents.Count}");
        var root = stream.Documents[0].RootNode;
        var source = new ConfigSource(fileName, root.Start.Line, root.Start.Column);
        var reader = new Reader(source);
        var config = reader.ReadDomain(root);
        var problems = config.Check();
        if (problems.Count > 0)
        {
            // Each problem points at the key that caused it; the error at the first one's.
            var at = source.Locate(problems[0].Key);
            var text = new System.Text.StringBuilder(problems[0].Message);
            for (int i = 1; i < problems.Count; i++)
            {
                var where = source.Locate(problems[i].Key);
                text.Append("; ");
                if (where != at) text.Append(CultureInfo.InvariantCulture, $"({where.Line},{where.Column}) ");
                text.Append(problems[i].Message);
            }
            throw new ConfigFileException(fileName, at.Line, at.Column, text.ToString());
        }
        config.Source = source;
        return config;
    }

    /// <summary>
    /// Bounds size and nesting before the node model (which recurses once per level and would
    /// overflow the stack on thousands of '[') sees the text. The event parser keeps its state
    /// in a stack object, so reading events is safe at any depth.
    /// </summary>
    private static void CheckShape(string yaml, string fileName)
    {
        if (yaml.Length > MaxDocumentChars)
            throw new ConfigFileException(fileName, 1, 1, $"the document is {yaml.Length} characters, more than a lab file may have ({MaxDocumentChars})");
        int depth = 0;
        try
        {
            var parser = new Parser(new StringReader(yaml));
            while (parser.MoveNext())
            {
                switch (parser.Current)
                {
                    case YamlDotNet.Core.Events.SequenceStart or YamlDotNet.Core.Events.MappingStart:
                        if (++depth > MaxNestingDepth)
                            throw new ConfigFileException(fileName, parser.Current.Start.Line, parser.Current.Start.Column,
                                $"lists and mappings are nested more than {MaxNestingDepth} deep here; a lab file needs no more than 4");
                        break;
                    case YamlDotNet.Core.Events.SequenceEnd or YamlDotNet.Core.Events.MappingEnd:
                        depth--;
                        break;
                }
            }
        }
        catch (YamlException e)
        {
            throw new ConfigFileException(fileName, e.Start.Line, e.Start.Column, "YAML syntax error: " + Inner(e));
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or FormatException or OverflowException)
        {
            // Reported with a position by the load that follows (it meets the same input, no deeper).
        }
    }

    private static (long Line, long Column) LastGoodPosition(string yaml)
    {
        long line = 1, column = 1;
        try
        {
            var parser = new Parser(new StringReader(yaml));
            while (parser.MoveNext())
                if (parser.Current is { } ev) { line = ev.End.Line; column = ev.End.Column; }
        }
        catch (Exception e) when (e is YamlException or InvalidOperationException or ArgumentException)
        {
            if (e is YamlException y) return (y.Start.Line, y.Start.Column);
        }
        return (line, column);
    }

    private static string Inner(Exception e)
    {
        while (e.InnerException is not null) e = e.InnerException;
        return e.Message;
    }

    /// <summary>The valid key nearest to <paramref name="key"/> by edit distance, if close enough.</summary>
    public static string? Suggest(string key, IReadOnlyList<string> valid)
    {
        string? best = null;
        int bestDistance = int.MaxValue;
        foreach (var v in valid)
        {
            int d = Distance(key.ToLowerInvariant(), v);
            if (d < bestDistance) { bestDistance = d; best = v; }
        }
        return bestDistance <= Math.Max(2, key.Length / 3) ? best : null;
    }

    private static int Distance(string a, string b)
    {
        var row = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) row[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            int diag = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int up = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diag + (a[i - 1] == b[j - 1] ? 0 : 1));
                diag = up;
            }
        }
        return row[b.Length];
    }

    private sealed class Reader
    {
        private readonly string _file;
        private readonly ConfigSource _source;
        public Reader(ConfigSource source)
        {
            _source = source;
            _file = source.File;
        }

        private ConfigFileException Error(YamlNode node, string message) =>
            new(_file, node.Start.Line, node.Start.Column, message);

        /// <summary>Records where a key path was written (its value if a scalar, else the key).</summary>
        private void Mark(string path, YamlNode at) => _source.Mark(path, at.Start.Line, at.Start.Column);

        public DomainConfig ReadDomain(YamlNode root)
        {
            var map = AsMapping(root, "the domain");
            var c = new DomainConfig();
            bool sawName = false;
            YamlNode? builderNode = null;
            foreach (var (keyNode, value) in Entries(map, TopLevelKeys, "domain", ""))
            {
                switch (keyNode.Value)
                {
                    case "name": c.Name = Text(value, "name"); sawName = true; break;
                    case "memory": c.MemoryMiB = MiB(value, "memory", 4, DomainConfig.MaxMemoryMiB, "the p2m tree reaches 512 GiB"); break;
                    case "maxmem": c.MaxMemMiB = MiB(value, "maxmem", 4, DomainConfig.MaxMemoryMiB, "the p2m tree reaches 512 GiB"); break;
                    case "vcpus": c.Vcpus = Int(value, "vcpus", 1, DomainConfig.MaxVcpus); break;
                    case "shadow_memory": c.ShadowMemoryMiB = MiB(value, "shadow_memory", 1, DomainConfig.MaxShadowMemoryMiB); break;
                    case "videoram": c.VideoRamMiB = MiB(value, "videoram", 0, DomainConfig.MaxVideoRamMiB); break;
                    case "mmio_hole": c.MmioHoleMiB = MiB(value, "mmio_hole", 16, 3584); break;
                    case "paging": c.Paging = Enum<PagingModeKind>(value, "paging", ("hap", PagingModeKind.Hap), ("shadow", PagingModeKind.Shadow), ("arm", PagingModeKind.Arm)); break;
                    case "identity_strategy":
                        c.IdentityStrategy = Enum<IdentityStrategy>(value, "identity_strategy", ("edges-first", IdentityStrategy.EdgesFirst), ("coarse", IdentityStrategy.Coarse));
                        break;
                    case "builder":
                        c.Builder = Enum<DomainBuilder>(value, "builder", ("hvm", DomainBuilder.Hvm), ("pv", DomainBuilder.Pv));
                        builderNode = value;
                        break;
                    case "type": c.Type = Enum<GuestType>(value, "type", ("pv", GuestType.Pv), ("hvm", GuestType.Hvm)); break;
                    case "kernel_pt_pages": c.KernelPtPages = Int(value, "kernel_pt_pages", 8, 65536); break;
                    case "tlb_entries": c.TlbEntries = Int(value, "tlb_entries", 1, 65536); break;
                    case "oos":
                        c.PagingOptions = c.PagingOptions with { Oos = Enum<OosMode>(value, "oos", ("off", OosMode.Off), ("nosnapshot", OosMode.NoSnapshot), ("snapshot", OosMode.Snapshot)) };
                        break;
                    case "oos_slots": c.PagingOptions = c.PagingOptions with { OosSlots = Int(value, "oos_slots", 2, 64) }; break;
                    case "shadow_prefetch":
                        c.PagingOptions = c.PagingOptions with { ShadowPrefetch = Enum<bool>(value, "shadow_prefetch", ("on", true), ("off", false), ("true", true), ("false", false)) };
                        break;
                    case "shadow_write_removal":
                        c.PagingOptions = c.PagingOptions with { ShadowWriteRemoval = Enum<ShadowWriteRemoval>(value, "shadow_write_removal", ("xen", ShadowWriteRemoval.Xen), ("rmap", ShadowWriteRemoval.Rmap)) };
                        break;
                    case "hap_logdirty":
                        c.PagingOptions = c.PagingOptions with { HapLogDirty = Enum<XenLab.Paging.Modes.HapLogDirty>(value, "hap_logdirty", ("pml", XenLab.Paging.Modes.HapLogDirty.Pml), ("wp", XenLab.Paging.Modes.HapLogDirty.Wp)) };
                        break;
                    case "hap_superpages":
                        int sp = Enum<int>(value, "hap_superpages", ("on", 2), ("2m", 1), ("off", 0), ("true", 2), ("false", 0));
                        c.PagingOptions = c.PagingOptions with { HapSuperpages = sp > 0, HapSuperpages1G = sp == 2 };
                        break;
                    case "hap_gpa_cache": c.PagingOptions = c.PagingOptions with { HapGpaCacheEntries = Int(value, "hap_gpa_cache", 0, 4096) }; break;
                    case "arm_leaf_lookup":
                        c.PagingOptions = c.PagingOptions with { ArmLeafLookup = Enum<ArmLeafLookup>(value, "arm_leaf_lookup", ("walk", ArmLeafLookup.Walk), ("vlpt", ArmLeafLookup.Vlpt)) };
                        break;
                    case "vram_strategy":
                        c.VramStrategy = Enum<XenLab.Dirty.VramStrategy>(value, "vram_strategy", ("auto", XenLab.Dirty.VramStrategy.Auto),
                            ("backlinks", XenLab.Dirty.VramStrategy.BackLinks), ("dbit", XenLab.Dirty.VramStrategy.DirtyBit),
                            ("tracker", XenLab.Dirty.VramStrategy.Tracker), ("memcmp", XenLab.Dirty.VramStrategy.Memcmp),
                            ("mainline", XenLab.Dirty.VramStrategy.Mainline));
                        break;
                    case "translate": c.Translate = Enum<bool>(value, "translate", ("on", true), ("off", false), ("true", true), ("false", false)); break;
                    case "vram_with_logdirty":
                        c.VramWithLogDirty = Enum<XenLab.Dirty.VramWithLogDirty>(value, "vram_with_logdirty",
                            ("enodata", XenLab.Dirty.VramWithLogDirty.ENoData), ("coexist", XenLab.Dirty.VramWithLogDirty.Coexist));
                        break;
                    case "vram_tlb_flush": c.VramTlbFlush = Enum<bool>(value, "vram_tlb_flush", ("on", true), ("off", false), ("true", true), ("false", false)); break;
                    case "workload": c.Workload = ReadWorkload(value); break;
                    case "e820": c.E820 = ReadE820(value); break;
                    case "identity": c.Identity = ReadIdentity(value); break;
                    case "framebuffers": c.Framebuffers = ReadFramebuffers(value); break;
                }
            }
            if (!sawName) throw Error(root, "the domain has no 'name'");
            if (builderNode is not null && c.Builder == DomainBuilder.Pv && c.Type == GuestType.Hvm)
                throw Error(builderNode, "builder 'pv' needs type 'pv': an HVM guest's memory is laid out by hvmloader (builder 'hvm')");
            if (c.Workload is not null) CheckWorkloadFramebuffers(c, root);
            return c;
        }

        private readonly Dictionary<XenLab.Cpu.Workloads.WorkloadStep, YamlNode> _stepNodes = new();

        private XenLab.Lab.WorkloadConfig ReadWorkload(YamlNode node)
        {
            var m = AsMapping(node, "workload");
            int frames = 10;
            long budget = XenLab.Lab.WorkloadConfig.DefaultBudget;
            var steps = new List<XenLab.Cpu.Workloads.WorkloadStep>();
            bool sawSteps = false;
            foreach (var (k, v) in Entries(m, WorkloadKeys, "workload", "workload."))
            {
                switch (k.Value)
                {
                    case "frames": frames = Int(v, "frames", 1, 100000); break;
                    case "budget":
                        ulong b = Number(v, "budget", 1);
                        if (b < 1 || b > MaxBudget) throw Error(v, $"'budget' is {Written(v)}, outside the range 1 to {MaxBudget}");
                        budget = (long)b;
                        break;
                    case "steps":
                        sawSteps = true;
                        var seq = AsSequence(v, "steps");
                        CheckLength(seq, "steps", MaxSteps);
                        for (int i = 0; i < seq.Children.Count; i++) steps.Add(ReadStep(seq.Children[i], i));
                        break;
                }
            }
            if (!sawSteps || steps.Count == 0) throw Error(m, "the workload has no 'steps'");
            return new XenLab.Lab.WorkloadConfig(frames, budget, steps);
        }

        private XenLab.Cpu.Workloads.WorkloadStep ReadStep(YamlNode node, int index)
        {
            string what = $"workload step {index}";
            var m = AsMapping(node, what);
            var s = new XenLab.Cpu.Workloads.WorkloadStep(XenLab.Cpu.Workloads.WorkloadStepKind.Fill);
            bool sawKind = false;
            Mark($"workload.steps[{index}]", node);
            foreach (var (k, v) in Entries(m, StepKeys, what, $"workload.steps[{index}]."))
            {
                switch (k.Value)
                {
                    case "kind":
                        s = s with
                        {
                            Kind = Enum<XenLab.Cpu.Workloads.WorkloadStepKind>(v, "kind",
                                ("fill", XenLab.Cpu.Workloads.WorkloadStepKind.Fill), ("blit", XenLab.Cpu.Workloads.WorkloadStepKind.Blit),
                                ("scroll", XenLab.Cpu.Workloads.WorkloadStepKind.Scroll), ("cursor", XenLab.Cpu.Workloads.WorkloadStepKind.Cursor),
                                ("pt-churn", XenLab.Cpu.Workloads.WorkloadStepKind.PageTableChurn)),
                        };
                        sawKind = true;
                        break;
                    case "framebuffer": s = s with { Framebuffer = Text(v, "framebuffer") }; break;
                    case "source": s = s with { Source = Text(v, "source") }; break;
                    case "x": s = s with { X = Int(v, "x", 0, 16383) }; break;
                    case "y": s = s with { Y = Int(v, "y", 0, 16383) }; break;
                    case "width": s = s with { Width = Int(v, "width", 1, 16384) }; break;
                    case "height": s = s with { Height = Int(v, "height", 1, 16384) }; break;
                    case "source_x": s = s with { SourceX = Int(v, "source_x", 0, 16383) }; break;
                    case "source_y": s = s with { SourceY = Int(v, "source_y", 0, 16383) }; break;
                    case "color": s = s with { Color = (uint)Number32(v, "color") }; break;
                    case "color_step": s = s with { ColorStep = (uint)Number32(v, "color_step") }; break;
                    case "dx": s = s with { Dx = Int(v, "dx", 0, 16384) }; break;
                    case "dy": s = s with { Dy = Int(v, "dy", 0, 16384) }; break;
                    case "lines": s = s with { Lines = Int(v, "lines", 1, 16383) }; break;
                    case "size": s = s with { Size = Int(v, "size", 1, 1024) }; break;
                    case "pages": s = s with { Pages = Int(v, "pages", 1, XenLab.Lab.GuestPrograms.MaxChurnPages) }; break;
                }
            }
            if (!sawKind) throw Error(m, $"{what} has no 'kind' (fill, blit, scroll, cursor or pt-churn)");
            if (s.Kind != XenLab.Cpu.Workloads.WorkloadStepKind.PageTableChurn && s.Framebuffer.Length == 0)
                throw Error(m, $"{what} ({s.Kind}) needs a 'framebuffer'");
            if (s.Kind == XenLab.Cpu.Workloads.WorkloadStepKind.Blit && (s.Width == 0 || s.Height == 0))
                throw Error(m, $"{what} (blit) needs 'width' and 'height'");
            _stepNodes[s] = node;
            return s;
        }

        private void CheckWorkloadFramebuffers(DomainConfig c, YamlNode root)
        {
            var names = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            foreach (var f in c.Framebuffers) names.Add(f.Name);
            foreach (var s in c.Workload!.Steps)
            {
                foreach (var n in new[] { s.Framebuffer, s.Source })
                    if (n.Length > 0 && !names.Contains(n))
                        throw Error(_stepNodes.TryGetValue(s, out var node) ? node : root,
                            $"workload step {s.Kind} names framebuffer '{n}', which is not in 'framebuffers' ({string.Join(", ", names)})");
            }
        }

        private ulong Number32(YamlNode node, string key)
        {
            ulong v = Number(node, key, 1);
            if (v > uint.MaxValue) throw Error(node, $"'{key}' is {Written(node)}, more than 32 bits");
            return v;
        }

        private List<E820Entry> ReadE820(YamlNode node)
        {
            var list = new List<E820Entry>();
            var seq = AsSequence(node, "e820");
            CheckLength(seq, "e820", DomainConfig.MaxE820Entries);
            for (int i = 0; i < seq.Children.Count; i++)
            {
                var item = seq.Children[i];
                var m = AsMapping(item, $"e820 entry {i}");
                Mark($"e820[{i}]", item);
                var (start, end) = ReadRange(m, E820Keys, $"e820 entry {i}", $"e820[{i}].");
                E820Type type = E820Type.Ram;
                bool sawType = false;
                foreach (var (k, v) in Entries(m, E820Keys, $"e820 entry {i}", $"e820[{i}]."))
                    if (k.Value == "type")
                    {
                        type = Enum<E820Type>(v, "type", ("ram", E820Type.Ram), ("reserved", E820Type.Reserved), ("acpi", E820Type.Acpi), ("nvs", E820Type.Nvs), ("unusable", E820Type.Unusable));
                        sawType = true;
                    }
                if (!sawType) throw Error(item, $"e820 entry {i} has no 'type' (ram, reserved, acpi, nvs or unusable)");
                if (end <= start) throw Error(item, $"e820 entry {i} is empty: it ends at 0x{end:x}, not after its start 0x{start:x}");
                if (type == E820Type.Ram && ((start | end) & 0xFFF) != 0)
                    throw Error(item, $"e820 RAM entry {i} [0x{start:x}, 0x{end:x}) is not 4 KiB aligned");
                for (int j = 0; j < list.Count; j++)
                    if (start < list[j].End && list[j].Start < end)
                        throw Error(item, $"e820 entry {i} [0x{start:x}, 0x{end:x}) overlaps entry {j} {list[j]}");
                list.Add(new E820Entry(start, end - start, type));
            }
            return list;
        }

        private List<IdentityHoleConfig> ReadIdentity(YamlNode node)
        {
            var list = new List<IdentityHoleConfig>();
            var seq = AsSequence(node, "identity");
            CheckLength(seq, "identity", DomainConfig.MaxIdentityHoles);
            for (int i = 0; i < seq.Children.Count; i++)
            {
                var m = AsMapping(seq.Children[i], $"identity hole {i}");
                Mark($"identity[{i}]", m);
                foreach (var _ in Entries(m, IdentityKeys, $"identity hole {i}", $"identity[{i}].")) { }
                var (start, end) = ReadRange(m, IdentityKeys, $"identity hole {i}", $"identity[{i}].");
                if (end <= start) throw Error(m, $"identity hole {i} is empty: it ends at 0x{end:x}, not after its start 0x{start:x}");
                list.Add(new IdentityHoleConfig(start, end));
            }
            return list;
        }

        private List<FramebufferConfig> ReadFramebuffers(YamlNode node)
        {
            var list = new List<FramebufferConfig>();
            var seq = AsSequence(node, "framebuffers");
            CheckLength(seq, "framebuffers", DomainConfig.MaxFramebuffers);
            for (int i = 0; i < seq.Children.Count; i++)
            {
                string what = $"framebuffer {i}";
                var m = AsMapping(seq.Children[i], what);
                Mark($"framebuffers[{i}]", m);
                string? name = null;
                ulong? address = null;
                int width = 0, height = 0, bpp = 32, stride = 0;
                YamlNode? addressNode = null;
                foreach (var (k, v) in Entries(m, FramebufferKeys, what, $"framebuffers[{i}]."))
                {
                    switch (k.Value)
                    {
                        case "name": name = Text(v, "name"); break;
                        case "address":
                        case "gfn":
                            if (addressNode is not null) throw Error(k, $"{what} gives both 'address' and 'gfn'; give one");
                            addressNode = k;
                            Mark($"framebuffers[{i}].address", v);
                            ulong n = Number(v, k.Value, 1);
                            if (k.Value == "gfn" && n > (ulong.MaxValue >> 12)) throw Error(v, $"gfn {Written(v)} is too large");
                            address = k.Value == "gfn" ? n << 12 : n;
                            if ((address.Value & 0xFFF) != 0) throw Error(v, $"{what} address 0x{address:x} is not 4 KiB aligned");
                            break;
                        case "width": width = Int(v, "width", 1, DomainConfig.MaxFramebufferPixels); break;
                        case "height": height = Int(v, "height", 1, DomainConfig.MaxFramebufferPixels); break;
                        case "bpp":
                            bpp = Int(v, "bpp", 8, 32);
                            if (bpp is not (8 or 16 or 24 or 32)) throw Error(v, $"bpp {bpp} must be 8, 16, 24 or 32");
                            break;
                        case "stride": stride = Int(v, "stride", 1, DomainConfig.MaxStride); break;
                    }
                }
                if (name is null) throw Error(m, $"{what} has no 'name'");
                if (address is null) throw Error(m, $"{what} '{DomainConfig.Shorten(name)}' has no 'address' (or 'gfn')");
                if (width == 0 || height == 0) throw Error(m, $"{what} '{DomainConfig.Shorten(name)}' needs 'width' and 'height'");
                if (stride != 0 && stride < width * (bpp / 8)) throw Error(m, $"{what} '{DomainConfig.Shorten(name)}': stride {stride} is shorter than a scanline ({width * (bpp / 8)} bytes)");
                list.Add(new FramebufferConfig(name, address.Value, width, height, bpp, stride));
            }
            return list;
        }

        /// <summary>start plus one of size/end.</summary>
        private (ulong Start, ulong End) ReadRange(YamlMappingNode m, string[] keys, string what, string path)
        {
            ulong? start = null, size = null, end = null;
            YamlNode? endNode = null;
            foreach (var (k, v) in Entries(m, keys, what, path))
            {
                if (k.Value == "start") start = Number(v, "start", 1);
                else if (k.Value == "size") { size = Number(v, "size", 1); endNode = v; }
                else if (k.Value == "end") { end = Number(v, "end", 1); endNode = v; }
            }
            if (start is null) throw Error(m, $"{what} has no 'start'");
            if (size is not null && end is not null) throw Error(m, $"{what} gives both 'size' and 'end'; give one");
            if (size is null && end is null) throw Error(m, $"{what} needs 'size' or 'end'");
            if (size is not null)
            {
                if (start.Value + size.Value < start.Value) throw Error(endNode!, $"{what}: start 0x{start:x} + size {Written(endNode!)} wraps past the end of the address space");
                return (start.Value, start.Value + size.Value);
            }
            return (start.Value, end!.Value);
        }

        private IEnumerable<(YamlScalarNode Key, YamlNode Value)> Entries(YamlMappingNode map, IReadOnlyList<string> valid, string what, string path)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var pair in map.Children)
            {
                if (pair.Key is not YamlScalarNode key || key.Value is null)
                    throw Error(pair.Key, $"{what}: keys must be plain words");
                if (!seen.Add(key.Value)) throw Error(key, $"{what}: key '{DomainConfig.Shorten(key.Value)}' appears twice");
                bool known = false;
                foreach (var v in valid) if (v == key.Value) { known = true; break; }
                if (!known)
                {
                    string? hint = Suggest(key.Value, valid);
                    throw Error(key, $"unknown key '{DomainConfig.Shorten(key.Value)}' in {what}" + (hint is null ? $"; valid keys: {string.Join(", ", valid)}" : $"; did you mean '{hint}'?"));
                }
                Mark(path + key.Value, pair.Value is YamlScalarNode ? pair.Value : key);
                yield return (key, pair.Value);
            }
        }

        private YamlMappingNode AsMapping(YamlNode node, string what) =>
            node as YamlMappingNode ?? throw Error(node, $"{what} must be a mapping of key: value pairs, not {Describe(node)}");

        private YamlSequenceNode AsSequence(YamlNode node, string what) =>
            node as YamlSequenceNode ?? throw Error(node, $"'{what}' must be a list (items starting with '-'), not {Describe(node)}");

        private static string Describe(YamlNode node) => node switch
        {
            YamlScalarNode s => $"the value '{DomainConfig.Shorten(s.Value ?? "")}'",
            YamlSequenceNode => "a list",
            YamlMappingNode => "a mapping",
            _ => "an alias",
        };

        private string Text(YamlNode node, string key)
        {
            if (node is not YamlScalarNode s || string.IsNullOrEmpty(s.Value))
                throw Error(node, $"'{key}' must be a text value, not {Describe(node)}");
            return s.Value;
        }

        private ulong Number(YamlNode node, string key, ulong bareUnit)
        {
            if (node is not YamlScalarNode s || s.Value is null)
                throw Error(node, $"'{key}' must be a number, not {Describe(node)}");
            if (!SizeParser.TryParse(s.Value, bareUnit, out ulong v, out string error))
                throw Error(node, $"'{key}': {error}");
            return v;
        }

        /// <summary>
        /// A size in MiB within [min, max]: a bare number is MiB (as in xl.cfg), a suffixed one is
        /// converted. Every size key has an upper bound, checked here where the value is.
        /// </summary>
        private ulong MiB(YamlNode node, string key, ulong min, ulong max, string? why = null)
        {
            ulong bytes = Number(node, key, 1UL << 20);
            if (bytes % (1UL << 20) != 0)
                throw Error(node, $"'{key}' must be a whole number of MiB; {Written(node)} ({bytes} bytes) is not");
            ulong mib = bytes >> 20;
            if (mib < min || mib > max)
                throw Error(node, $"'{key}' is {Written(node)}, outside the range {min} to {max} MiB" + (why is null ? "" : $" ({why})"));
            return mib;
        }

        private int Int(YamlNode node, string key, int min, int max)
        {
            ulong v = Number(node, key, 1);
            if (v < (ulong)min || v > (ulong)max)
                throw Error(node, $"'{key}' is {Written(node)}, outside the range {min} to {max}");
            return (int)v;
        }

        /// <summary>A value as the user wrote it ("0x10" stays "0x10"), cut if long.</summary>
        private static string Written(YamlNode node) =>
            node is YamlScalarNode { Value: { } text } ? DomainConfig.Shorten(text.Trim()) : Describe(node);

        private void CheckLength(YamlSequenceNode seq, string key, int max)
        {
            if (seq.Children.Count > max)
                throw Error(seq.Children[max], $"'{key}' has {seq.Children.Count} entries, more than the {max} allowed");
        }

        private T Enum<T>(YamlNode node, string key, params (string Word, T Value)[] words)
        {
            if (node is YamlScalarNode s && s.Value is not null)
                foreach (var (word, value) in words)
                    if (string.Equals(word, s.Value, StringComparison.OrdinalIgnoreCase)) return value;
            var names = new List<string>();
            foreach (var (word, _) in words) names.Add(word);
            throw Error(node, $"'{key}' must be one of {string.Join(", ", names)}, not {Describe(node)}");
        }
    }
}
