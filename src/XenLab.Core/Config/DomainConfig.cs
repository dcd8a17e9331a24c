// A domain's configuration: xl.cfg keys where one exists, plus the lab's own.
// Loaded from YAML (DomainConfigLoader), written back by DomainConfigWriter, and checked
// by Validate() before anything is built.
using System;
using System.Collections.Generic;
using System.Text.RegularExpressions;
using XenLab.E820;
using XenLab.Memory;
using XenLab.P2m;

namespace XenLab.Config;

/// <summary>Which paging mode a domain starts in.</summary>
public enum PagingModeKind
{
    Hap,
    Shadow,
    Arm,
}

/// <summary>
/// How the domain's memory is populated at build. Hvm: the first <c>memory</c> E820 RAM pfns,
/// lowest first (hvmloader's view). Pv: pfns 0..N-1 with descending mfns whatever the E820
/// says, then Linux 2.6.39's xen_memory_setup: holes released, identity installed, the
/// balloon region placed above 4 GiB.
/// </summary>
public enum DomainBuilder
{
    Hvm,
    Pv,
}

/// <summary>
/// xl.cfg's type: which layer the seed-004 identity lives in. Pv: the guest's own p2m maps
/// non-RAM 1:1 and the hypervisor's type is mmio_direct (dom0-style device access). Hvm: the
/// hypervisor's p2m gives non-RAM mmio_dm, every access exits to the device model, which
/// reads all ones and discards writes (no device is emulated).
/// </summary>
public enum GuestType
{
    Pv,
    Hvm,
}

/// <summary>An extra identity (1:1) hole, [Start, End) in bytes.</summary>
public sealed record IdentityHoleConfig(ulong Start, ulong End)
{
    /// <summary>First pfn the hole touches.</summary>
    public ulong StartPfn => Start >> Page.Shift;
    /// <summary>One past the last pfn the hole touches (a partial last page counts): what the build installs and what the check bounds.</summary>
    public ulong EndPfn => (End >> Page.Shift) + ((End & Page.OffsetMask) != 0 ? 1UL : 0);
}

/// <summary>A framebuffer (monitor) in guest-physical memory.</summary>
public sealed record FramebufferConfig(string Name, ulong Address, int Width, int Height, int Bpp, int Stride = 0)
{
    /// <summary>Bytes per scanline: the stride if given, else width * bytes per pixel.</summary>
    public int EffectiveStride => Stride != 0 ? Stride : Width * (Bpp / 8);
    public ulong SizeBytes => (ulong)EffectiveStride * (ulong)Height;
    public ulong Pages => (SizeBytes + Page.OffsetMask) >> Page.Shift;
    public ulong FirstGfn => Address >> Page.Shift;
}

public sealed class DomainConfig
{
    public const ulong DefaultMmioHoleMiB = 1024;
    public const int DefaultKernelPtPages = 512;
    public const int MaxVcpus = 64;
    /// <summary>memory and maxmem: the 512 GiB the p2m tree reaches.</summary>
    public const ulong MaxMemoryMiB = (P2mTree.MaxPfn << Page.Shift) >> 20;
    /// <summary>shadow_memory: far above xl's default for the largest domain (4 GiB + 64 MiB), within a pool's int frame count.</summary>
    public const ulong MaxShadowMemoryMiB = 16384;
    /// <summary>videoram: a generous ceiling (the lab's largest framebuffer is 1 GiB).</summary>
    public const ulong MaxVideoRamMiB = 4096;
    public const int MaxFramebufferPixels = 16384;
    /// <summary>A scanline of the widest 32 bpp framebuffer: a stride above it only pads.</summary>
    public const int MaxStride = MaxFramebufferPixels * 4;
    /// <summary>List lengths: enough for any real map, small enough that pairwise checks stay instant.</summary>
    public const int MaxE820Entries = 128, MaxIdentityHoles = 128, MaxFramebuffers = 16;

    public string Name { get; set; } = "";
    /// <summary>MiB populated at build (xl's memory).</summary>
    public ulong MemoryMiB { get; set; } = 512;
    /// <summary>MiB of address space the default E820 gives as RAM (xl's maxmem); null = memory.</summary>
    public ulong? MaxMemMiB { get; set; }
    public int Vcpus { get; set; } = 1;
    /// <summary>Shadow pool in MiB (xl's shadow_memory); null = xl's default for the size.</summary>
    public ulong? ShadowMemoryMiB { get; set; }
    /// <summary>Video RAM in MiB (xl's videoram); null = none declared.</summary>
    public ulong? VideoRamMiB { get; set; }
    public PagingModeKind Paging { get; set; } = PagingModeKind.Hap;
    /// <summary>Size of the PCI hole below 4 GiB in the default E820 (xl's mmio_hole).</summary>
    public ulong MmioHoleMiB { get; set; } = DefaultMmioHoleMiB;
    /// <summary>An explicit E820; null = the default HVM map.</summary>
    public List<E820Entry>? E820 { get; set; }
    public List<IdentityHoleConfig> Identity { get; set; } = new();
    public IdentityStrategy IdentityStrategy { get; set; } = IdentityStrategy.EdgesFirst;
    /// <summary>How memory is populated at build (the lab's `builder`).</summary>
    public DomainBuilder Builder { get; set; } = DomainBuilder.Hvm;
    /// <summary>xl.cfg's `type`: pv (identity is mmio_direct) or hvm (identity is mmio_dm, device-model exits).</summary>
    public GuestType Type { get; set; } = GuestType.Pv;
    public List<FramebufferConfig> Framebuffers { get; set; } = new();
    /// <summary>Pages the guest kernel reserves for page tables, from 1 MiB up.</summary>
    public int KernelPtPages { get; set; } = DefaultKernelPtPages;
    public int TlbEntries { get; set; } = XenLab.Paging.Tlb.DefaultEntries;
    /// <summary>Per-mode switches: OOS, prefetch, HAP's nested cache, ARM's leaf lookup.</summary>
    public XenLab.Paging.Modes.PagingOptions PagingOptions { get; set; } = XenLab.Paging.Modes.PagingOptions.Default;
    /// <summary>Dirty-VRAM strategy for new ranges (Auto: the mode's natural one).</summary>
    public XenLab.Dirty.VramStrategy VramStrategy { get; set; } = XenLab.Dirty.VramStrategy.Auto;
    /// <summary>Flush TLBs after clearing dirty state (off only to show what it costs to forget).</summary>
    public bool VramTlbFlush { get; set; } = true;
    /// <summary>Translate hot guest code to IL (`translate: on | off`); off runs everything in the interpreter, for comparison.</summary>
    public bool Translate { get; set; } = true;
    /// <summary>Dirty VRAM while whole-domain log-dirty runs: the seed's -ENODATA, or both at once (mainline since XSA-397, HAP).</summary>
    public XenLab.Dirty.VramWithLogDirty VramWithLogDirty { get; set; } = XenLab.Dirty.VramWithLogDirty.ENoData;
    /// <summary>A built-in guest workload the headless runner (and Invoke-XenGuestCode -Workload) runs frame by frame.</summary>
    public XenLab.Lab.WorkloadConfig? Workload { get; set; }
    /// <summary>Where each key was written, when the configuration came from a file (errors then name the key's position).</summary>
    public ConfigSource? Source { get; set; }

    public ulong EffectiveMaxMemMiB => MaxMemMiB ?? MemoryMiB;

    /// <summary>xl's default shadow pool: 1 MiB per vCPU plus 8 KiB per MiB of RAM, rounded up.</summary>
    public ulong EffectiveShadowMemoryMiB => ShadowMemoryMiB ?? (ulong)Vcpus + (EffectiveMaxMemMiB * 8 + 1023) / 1024;

    private static readonly Regex NamePattern = new(@"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\z", RegexOptions.CultureInvariant);

    public static bool IsValidName(string name) => NamePattern.IsMatch(name);

    /// <summary>The E820 the domain gets: the explicit one, or the default HVM map.</summary>
    public E820Map BuildE820() =>
        E820 is null ? E820Map.DefaultHvm(EffectiveMaxMemMiB << 20, MmioHoleMiB << 20) : E820Map.Create(E820);

    /// <summary>Every problem with this configuration; empty when it can be built.</summary>
    public List<string> Problems()
    {
        var messages = new List<string>();
        foreach (var problem in Check()) messages.Add(problem.Message);
        return messages;
    }

    /// <summary>Every problem with this configuration, each with the key path it is about.</summary>
    public List<ConfigProblem> Check()
    {
        var p = new List<ConfigProblem>();
        if (!IsValidName(Name)) p.Add(new("name", $"name '{Shorten(Name)}' must be 1-64 characters of letters, digits, '_', '.', '-', starting with a letter or digit"));
        if (MemoryMiB < 4) p.Add(new("memory", $"memory {MemoryMiB} MiB is below the 4 MiB minimum"));
        if (MemoryMiB > MaxMemoryMiB) p.Add(new("memory", $"memory {MemoryMiB} MiB exceeds the 512 GiB the p2m tree reaches"));
        if (MaxMemMiB is { } max && max < MemoryMiB) p.Add(new("maxmem", $"maxmem {max} MiB is below memory {MemoryMiB} MiB"));
        if (EffectiveMaxMemMiB > MaxMemoryMiB) p.Add(new(MaxMemMiB is null ? "memory" : "maxmem", $"maxmem {EffectiveMaxMemMiB} MiB exceeds the 512 GiB the p2m tree reaches"));
        if (Vcpus < 1 || Vcpus > MaxVcpus) p.Add(new("vcpus", $"vcpus {Vcpus} must be between 1 and {MaxVcpus}"));
        if (ShadowMemoryMiB is 0) p.Add(new("shadow_memory", "shadow_memory must be at least 1 MiB"));
        if (ShadowMemoryMiB > MaxShadowMemoryMiB) p.Add(new("shadow_memory", $"shadow_memory {ShadowMemoryMiB} MiB exceeds the {MaxShadowMemoryMiB} MiB limit"));
        if (VideoRamMiB > MaxVideoRamMiB) p.Add(new("videoram", $"videoram {VideoRamMiB} MiB exceeds the {MaxVideoRamMiB} MiB limit"));
        if (KernelPtPages < 8 || KernelPtPages > 65536) p.Add(new("kernel_pt_pages", $"kernel_pt_pages {KernelPtPages} must be between 8 and 65536"));
        if (TlbEntries < 1 || TlbEntries > 65536 || (TlbEntries & (TlbEntries - 1)) != 0) p.Add(new("tlb_entries", $"tlb_entries {TlbEntries} must be a power of two up to 65536"));
        foreach (var message in PagingOptions.Problems())
            p.Add(new(message[..Math.Max(0, message.IndexOf(' '))], message));      // each begins with its key
        if (Builder == DomainBuilder.Pv && Type == GuestType.Hvm) p.Add(new("builder", "builder pv needs type pv: an HVM guest's memory is laid out by hvmloader (builder hvm)"));
        if (E820 is null && (MmioHoleMiB < 16 || MmioHoleMiB > 3584 || MmioHoleMiB % 16 != 0))
            p.Add(new("mmio_hole", $"mmio_hole {MmioHoleMiB} MiB must be a multiple of 16 between 16 and 3584"));
        if (E820 is not null)
        {
            if (E820.Count > MaxE820Entries) p.Add(new("e820", $"e820 has {E820.Count} entries, more than {MaxE820Entries}"));
            else
                for (int i = 0; i < E820.Count; i++)
                    if (E820[i].Start + E820[i].Size < E820[i].Start || E820[i].EndPfn > P2mTree.MaxPfn)
                        p.Add(new($"e820[{i}]", $"e820 entry {i} [0x{E820[i].Start:x}, 0x{E820[i].Start + E820[i].Size:x}) ends beyond the p2m tree's 512 GiB"));
        }
        if (Identity.Count > MaxIdentityHoles) p.Add(new("identity", $"identity has {Identity.Count} holes, more than {MaxIdentityHoles}"));
        else
            for (int i = 0; i < Identity.Count; i++)
            {
                var h = Identity[i];
                if (h.End <= h.Start) p.Add(new($"identity[{i}]", $"identity hole {i} [0x{h.Start:x}, 0x{h.End:x}) is empty or reversed"));
                else if (h.EndPfn > P2mTree.MaxPfn) p.Add(new($"identity[{i}]", $"identity hole {i} [0x{h.Start:x}, 0x{h.End:x}) ends beyond the p2m tree's 512 GiB (0x{P2mTree.MaxPfn << Page.Shift:x})"));
                // 2.6.39's set_phys_range_identity installs nothing for a range whose end reaches
                // MAX_P2M_PFN; refuse it here rather than build a domain without the hole asked for.
                else if (h.EndPfn == P2mTree.MaxPfn && IdentityStrategy == IdentityStrategy.EdgesFirst)
                    p.Add(new($"identity[{i}]", $"identity hole {i} [0x{h.Start:x}, 0x{h.End:x}) reaches the end of the p2m tree (0x{P2mTree.MaxPfn << Page.Shift:x}), where edges-first (Linux 2.6.39's set_phys_range_identity) installs nothing; end it a page lower or use identity_strategy: coarse"));
            }
        var names = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        if (Framebuffers.Count > MaxFramebuffers) p.Add(new("framebuffers", $"framebuffers has {Framebuffers.Count} entries, more than {MaxFramebuffers}"));
        else
            for (int i = 0; i < Framebuffers.Count; i++)
            {
                var f = Framebuffers[i];
                string key = $"framebuffers[{i}]";
                string fn = $"framebuffer {i} '{Shorten(f.Name)}'";
                if (!IsValidName(f.Name)) p.Add(new($"{key}.name", $"{fn}: name must be letters, digits, '_', '.', '-'"));
                if (!names.Add(f.Name)) p.Add(new($"{key}.name", $"{fn}: name is used twice"));
                if (!Page.IsAligned(f.Address)) p.Add(new($"{key}.address", $"{fn}: address 0x{f.Address:x} is not 4 KiB aligned"));
                bool geometry = true;
                if (f.Width < 1 || f.Width > MaxFramebufferPixels) { p.Add(new($"{key}.width", $"{fn}: width {f.Width} is outside the range 1 to {MaxFramebufferPixels}")); geometry = false; }
                if (f.Height < 1 || f.Height > MaxFramebufferPixels) { p.Add(new($"{key}.height", $"{fn}: height {f.Height} is outside the range 1 to {MaxFramebufferPixels}")); geometry = false; }
                if (f.Bpp is not (8 or 16 or 24 or 32)) { p.Add(new($"{key}.bpp", $"{fn}: bpp {f.Bpp} must be 8, 16, 24 or 32")); geometry = false; }
                if (f.Stride < 0 || f.Stride > MaxStride) { p.Add(new($"{key}.stride", $"{fn}: stride {f.Stride} is outside the range 0 to {MaxStride}")); geometry = false; }
                else if (geometry && f.Stride != 0 && f.Stride < f.Width * (f.Bpp / 8)) p.Add(new($"{key}.stride", $"{fn}: stride {f.Stride} is shorter than a scanline ({f.Width * (f.Bpp / 8)} bytes)"));
                if (!geometry) continue;
                if (f.Address > (P2mTree.MaxPfn << Page.Shift) || f.FirstGfn + f.Pages > P2mTree.MaxPfn)
                {
                    p.Add(new($"{key}.address", $"{fn} at 0x{f.Address:x} ({f.Pages} pages) ends beyond the p2m tree's 512 GiB (0x{P2mTree.MaxPfn << Page.Shift:x})"));
                    continue;
                }
                for (int j = 0; j < i; j++)
                {
                    var g = Framebuffers[j];
                    if (f.Address < g.Address + g.SizeBytes && g.Address < f.Address + f.SizeBytes)
                        p.Add(new($"{key}.address", $"{fn} overlaps framebuffer {j} '{Shorten(g.Name)}'"));
                }
            }
        if (p.Count == 0)
        {
            try
            {
                var map = BuildE820();
                ulong ramPages = map.RamBytes >> Page.Shift;
                if (ramPages < (ulong)KernelPtPages + 256 + 1)
                    p.Add(new(E820 is null ? "memory" : "e820", $"the E820 has {ramPages} RAM pages, too few for the guest kernel's {KernelPtPages} page-table pages above 1 MiB"));
                if (!map.IsRam(E820Map.OneMiB >> Page.Shift) || !map.IsRam((E820Map.OneMiB >> Page.Shift) + (ulong)KernelPtPages - 1))
                    p.Add(new(E820 is null ? "kernel_pt_pages" : "e820", $"the guest kernel's page tables need RAM from 1 MiB for {KernelPtPages} pages"));
                if (map.Entries.Count > 0 && map.Entries[^1].EndPfn > P2mTree.MaxPfn)
                    p.Add(new(E820 is null ? (MaxMemMiB is null ? "memory" : "maxmem") : "e820",
                        $"the E820's RAM ends at 0x{map.Entries[^1].End:x}, beyond the p2m tree's 512 GiB (the PCI hole below 4 GiB moves RAM up)"));
            }
            catch (InvalidConfigurationException e)
            {
                p.Add(new("e820", e.Message));
            }
        }
        return p;
    }

    /// <summary>A value as a message shows it: long text is cut, so a huge scalar cannot make a huge message.</summary>
    internal static string Shorten(string text) => text.Length <= 40 ? text : text[..40] + "...";

    public void Validate()
    {
        var p = Check();
        if (p.Count > 0)
        {
            var messages = new List<string>();
            foreach (var problem in p) messages.Add(problem.Message);
            throw new InvalidConfigurationException($"Domain '{Shorten(Name)}' cannot be built: " + string.Join("; ", messages) + ".") { ConfigKey = p[0].Key };
        }
    }

    public DomainConfig Clone()
    {
        var c = (DomainConfig)MemberwiseClone();
        c.E820 = E820 is null ? null : new List<E820Entry>(E820);
        c.Identity = new List<IdentityHoleConfig>(Identity);
        c.Framebuffers = new List<FramebufferConfig>(Framebuffers);
        return c;
    }
}
