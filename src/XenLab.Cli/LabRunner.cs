// The headless runner: builds a domain from YAML (or the embedded default lab) and prints
// what a student would look at in PowerShell: the E820, sample p2m lookups, the tree's
// pages, the balloon check for the seed-004 nasty condition, and the counters. Long work (the
// build, workloads, frames, migration) reports to a progress sink and stops between whole steps
// when the token is cancelled (OperationCanceledException; what ran so far is already printed).
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Threading;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Paging.Modes;
using XenLab.Domains;
using XenLab.E820;
using XenLab.Lab;
using XenLab.Memory;
using XenLab.P2m;
using XenLab.Progress;
using XenLab.Views;

namespace XenLab.Cli;

public sealed class LabOptions
{
    public string? File { get; set; }
    public ulong HostMemoryBytes { get; set; } = XenHost.DefaultMemoryBytes;
    public List<ulong> Samples { get; } = new();
    /// <summary>Balloon target in MiB; ulong.MaxValue means every RAM page of the E820.</summary>
    public ulong? BalloonMiB { get; set; }
    public bool WriteConfig { get; set; }
    public string? Workload { get; set; }
    public int Rounds { get; set; } = 200;
    public bool CompareModes { get; set; }
    /// <summary>Pre-copy live migration with this dirty ratio (guest writes per page sent).</summary>
    public double? MigrateRatio { get; set; }
    /// <summary>Frames of the domain's workload to run (default: the YAML's frames).</summary>
    public int? Frames { get; set; }
    /// <summary>Write each framebuffer as a PNG per frame here (dirty regions outlined).</summary>
    public string? PngDirectory { get; set; }
    /// <summary>Write the run's pictures (p2m tree, walks, dirty map, charts) here (Pictures.cs).</summary>
    public string? PicturesDirectory { get; set; }
    /// <summary>Run the dirty-tracking oracle (OracleCommand) instead of the lab.</summary>
    public bool Oracle { get; set; }
    public bool ShowHelp { get; set; }

    /// <summary>Parses a command line (see <see cref="XenLabCommandLine"/>); throws <see cref="XenLabException"/> naming what is wrong.</summary>
    public static LabOptions Parse(IReadOnlyList<string> args)
    {
        var commandLine = new XenLabCommandLine();
        var result = commandLine.Root.Parse(args);
        if (result.Errors.Count > 0)
        {
            var messages = new List<string>();
            foreach (var e in result.Errors) messages.Add(e.Message);
            throw new XenLabException(string.Join(" ", messages));
        }
        return commandLine.ToOptions(result);
    }
}

public static class LabRunner
{
    public static int Run(LabOptions o, TextWriter output, IProgress<LabProgress>? progress = null, CancellationToken cancel = default)
    {
        if (o.ShowHelp)
        {
            output.Write(new XenLabCommandLine().HelpText());
            return 0;
        }
        var config = o.File is null ? DomainConfigLoader.Load(DefaultLab.Yaml(), DefaultLab.FileName) : DomainConfigLoader.LoadFile(o.File);
        var host = new XenHost(o.HostMemoryBytes);
        var d = host.CreateDomain(config, progress, cancel);
        Summarise(host, d, o.File ?? "the embedded default lab", o.Samples, output);
        if (o.BalloonMiB is { } target)
        {
            output.WriteLine();
            ulong pages = target == ulong.MaxValue ? d.MaxPages : target << (20 - Page.Shift);
            output.WriteLine($"Balloon to {pages} pages ({pages * 4 / 1024} MiB)");
            var r = d.Balloon(pages);
            output.WriteLine("  " + r.Describe());
            if (r.Outcome == BalloonOutcome.RefusedMappingValid)
            {
                var v = P2mEntryView.Of(d, r.OffendingPfn);
                output.WriteLine($"  gfn 0x{v.Gfn:x} is {v.E820Type} in the E820 but the p2m answers it from {v.Source} (tree [{v.TopIndex}][{v.MidIndex}][{v.Index}]).");
                output.WriteLine("  This is the seed-004 nasty condition; identity_strategy: edges-first avoids it.");
            }
            else
            {
                output.WriteLine($"  now {d.MemoryMiB} MiB populated; " + P2mTreeView.Of(d));
            }
        }
        if (o.Workload is not null && !o.CompareModes)
        {
            output.WriteLine();
            var r = MemoryWorkloads.Run(d, o.Workload, o.Rounds, progress, cancel);
            output.WriteLine($"Workload {r.Workload}, {o.Rounds} rounds, {r.Operations} guest accesses, paging {r.Mode} ({r.Options})");
            foreach (var (name, value) in r.Counters)
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {name,-26} {value,12}"));
        }
        List<WorkloadResult>? compared = null;
        MigrationResult? migration = null;
        if (o.CompareModes)
            compared = CompareModes(config, o, output, progress, cancel);
        if (d.Config.Workload is { } workload && !o.CompareModes)
            RunFrames(d, workload, o, output, progress, cancel);
        if (o.MigrateRatio is { } mr)
        {
            output.WriteLine();
            var m = migration = LiveMigration.PreCopy(d, mr, progress: progress, cancel: cancel);
            output.WriteLine($"Pre-copy live migration, {mr.ToString(CultureInfo.InvariantCulture)} guest writes per page sent, paging {m.Mode}");
            output.WriteLine("  round  pages sent  guest writes  dirty after  log-dirty faults");
            foreach (var r in m.Rounds)
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {r.Round,5}  {r.PagesSent,10}  {r.GuestWrites,12}  {r.DirtyAfter,11}  {r.LogDirtyFaults,16}"));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  stop-and-copy: {m.StopAndCopyPages} page(s); {m.PagesSent} sent in all; {(m.Converged ? "converged" : "did not converge")}: {m.Why}"));
        }
        if (o.PicturesDirectory is not null)
            CliPictures.Write(o.PicturesDirectory, d, migration, compared, o.HostMemoryBytes, output);
        if (o.WriteConfig)
        {
            output.WriteLine();
            output.WriteLine("Configuration (YAML)");
            output.Write(DomainConfigWriter.ToYaml(d.Config));
        }
        return 0;
    }

    public static void Summarise(XenHost host, Domain d, string source, IReadOnlyList<ulong> samples, TextWriter w)
    {
        var inv = CultureInfo.InvariantCulture;
        var c = d.Config;
        w.WriteLine($"XenLab: domain '{d.Name}' (domid {d.Id}) from {source}");
        w.WriteLine(string.Create(inv,
            $"  {d.MemoryMiB} MiB populated ({d.PopulatedPages} pages) of {d.MaxPages} RAM pages in the E820; {d.VcpuCount} vCPU(s); paging {c.Paging.ToString().ToLowerInvariant()}; identity strategy {Strategy(c.IdentityStrategy)}"));
        w.WriteLine(string.Create(inv,
            $"  host: {host.Machine.SizeBytes >> 20} MiB of machine memory, {host.Machine.AllocatedFrames} frames allocated, handed out from the top down"));
        w.WriteLine();
        w.WriteLine("E820");
        w.WriteLine("   #  start           end             type      size");
        foreach (var e in DomainViews.E820(d))
            w.WriteLine(string.Create(inv, $"  {e.Index,2}  0x{e.Start:x12}  0x{e.End:x12}  {e.Type,-8}  {SizeText(e.Size)}"));
        w.WriteLine();
        w.WriteLine("P2M lookups (get_phys_to_machine)");
        w.WriteLine("  gfn          e820        raw entry           meaning                     answered by        [top][mid][idx]");
        foreach (ulong gfn in samples.Count > 0 ? samples : DefaultSamples(d))
        {
            var v = P2mEntryView.Of(d, gfn);
            string meaning = v.Kind switch
            {
                P2mEntryKind.Ram => $"mfn 0x{v.Mfn:x}",
                P2mEntryKind.Identity => $"identity -> 0x{v.Mfn:x}",
                P2mEntryKind.Foreign => $"foreign mfn 0x{v.Mfn:x}",
                _ => "INVALID_P2M_ENTRY",
            };
            w.WriteLine(string.Create(inv,
                $"  0x{gfn,-10:x} {v.E820Type,-10}  0x{v.RawEntry:x16}  {meaning,-26}  {v.Source,-17}  [{v.TopIndex}][{v.MidIndex}][{v.Index}]"));
        }
        w.WriteLine();
        var t = P2mTreeView.Of(d);
        w.WriteLine("P2M tree (512 entries a page; top, mid, leaf)");
        w.WriteLine(string.Create(inv, $"  allocated: {t.AllocatedPages} page(s) = {t.AllocatedKiB} KiB (top {t.TopPages}, mid {t.MidPagesAllocated}, leaf {t.LeafPagesAllocated})"));
        w.WriteLine(string.Create(inv, $"  shared:    {t.SharedPages} pages (p2m_missing, p2m_mid_missing, p2m_identity, p2m_mid_identity)"));
        w.WriteLine(string.Create(inv, $"  top entries -> p2m_mid_missing {t.TopEntriesMidMissing}, -> p2m_mid_identity {t.TopEntriesMidIdentity}"));
        w.WriteLine(string.Create(inv, $"  mid entries -> p2m_missing {t.MidEntriesMissing}, -> p2m_identity {t.MidEntriesIdentity}"));
        w.WriteLine(string.Create(inv, $"  pfns answering identity: {t.IdentityPfns} ({t.IdentityPfns * 4 / 1024} MiB)"));
        w.WriteLine();
        var check = BalloonCheck(d);
        w.WriteLine("Balloon check (seed 004): pfns the balloon would populate that the p2m does not answer INVALID");
        w.WriteLine(check.Count == 0
            ? "  none: ballooning up to maxmem is safe"
            : string.Create(inv, $"  {check.Count} pfn(s), first 0x{check.First:x}: a balloon up into them hits BUG_ON(phys_to_machine_mapping_valid(pfn))"));
        w.WriteLine();
        w.WriteLine("Counters (non-zero)");
        foreach (var pc in PerfCounterView.Of(d, includeZero: false))
            w.WriteLine(string.Create(inv, $"  {pc.Name,-22} {pc.Value,12}  {pc.Description}"));
    }

    /// <summary>Runs the guest workload frame by frame, printing each framebuffer's dirty pages and rectangles as each frame ends.</summary>
    public static void RunFrames(Domain d, WorkloadConfig w, LabOptions o, TextWriter output, IProgress<LabProgress>? progress = null, CancellationToken cancel = default)
    {
        var inv = CultureInfo.InvariantCulture;
        if (o.PngDirectory is not null) Directory.CreateDirectory(o.PngDirectory);
        int frames = o.Frames ?? w.Frames;
        output.WriteLine();
        output.WriteLine(string.Create(inv, $"Guest workload: {w.Steps.Count} step(s), {frames} frame(s), paging {d.PagingMode.ToString().ToLowerInvariant()}"));
        long before = d.Counters[PerfCounter.CpuInstructionsRetired];
        GuestPrograms.LoadWorkload(d, w);
        GuestPrograms.RunFrames(d, frames, w.BudgetPerFrame, 0, o.PngDirectory, r => PrintFrame(r, output), progress, cancel);
        output.WriteLine(string.Create(inv, $"  {d.Counters[PerfCounter.CpuInstructionsRetired] - before} instructions in all{(o.PngDirectory is null ? "" : $"; PNGs in {o.PngDirectory}")}"));
        output.WriteLine();
        output.WriteLine("Counters after the workload (non-zero)");
        foreach (var pc in PerfCounterView.Of(d, includeZero: false))
            output.WriteLine(string.Create(inv, $"  {pc.Name,-26} {pc.Value,12}  {pc.Description}"));
    }

    private static void PrintFrame(FrameReport r, TextWriter output)
    {
        var inv = CultureInfo.InvariantCulture;
        output.WriteLine(string.Create(inv, $"  frame {r.Frame}: {r.Instructions} instructions, {r.Stop.Reason}"));
        if (!r.Completed) output.WriteLine("    stopped: " + r.Stop);
        foreach (var v in r.Framebuffers)
        {
            var rects = v.Rectangles();
            var text = new System.Text.StringBuilder();
            for (int i = 0; i < rects.Count && i < 6; i++) text.Append(i == 0 ? "" : " ").Append(rects[i].Width).Append('x').Append(rects[i].Height).Append('+').Append(rects[i].X).Append('+').Append(rects[i].Y);
            if (rects.Count > 6) text.Append(inv, $" (+{rects.Count - 6} more)");
            output.WriteLine(string.Create(inv, $"    {v.Framebuffer,-10} {v.DirtyPages,6}/{v.Pages} pages dirty{(v.AllDirty ? " (all: " + v.Reason + ")" : "")}; {rects.Count} rectangle(s) {text}"));
        }
    }

    /// <summary>The settings --compare-modes runs, in order.</summary>
    public static readonly (string Name, PagingModeKind Mode, PagingOptions Options)[] ModeVariants =
    {
        ("hap", PagingModeKind.Hap, PagingOptions.Default),
        ("hap, no nested cache", PagingModeKind.Hap, PagingOptions.Default with { HapGpaCacheEntries = 0 }),
        ("shadow, oos snapshot", PagingModeKind.Shadow, PagingOptions.Default),
        ("shadow, oos no snapshot", PagingModeKind.Shadow, PagingOptions.Default with { Oos = OosMode.NoSnapshot }),
        ("shadow, oos off", PagingModeKind.Shadow, PagingOptions.Default with { Oos = OosMode.Off }),
        ("arm stage-2", PagingModeKind.Arm, PagingOptions.Default),
    };

    private static readonly PerfCounter[] CompareColumns =
    {
        PerfCounter.TlbMiss, PerfCounter.HapWalkMemRef, PerfCounter.ShadowWalkMemRef, PerfCounter.Stage2WalkMemRef, PerfCounter.ShadowFaultFixed,
        PerfCounter.ShadowEmulateWrite, PerfCounter.ShadowValidate, PerfCounter.OosUnsync, PerfCounter.OosResync,
        PerfCounter.OosEntriesCompared, PerfCounter.OosEntriesRepropagated,
    };

    /// <summary>Runs the workload on a fresh domain per mode variant and prints the counters side by side.</summary>
    public static List<WorkloadResult> CompareModes(DomainConfig config, LabOptions o, TextWriter w, IProgress<LabProgress>? progress = null, CancellationToken cancel = default)
    {
        string workload = o.Workload ?? "pt-churn";
        var results = new List<WorkloadResult>();
        w.WriteLine();
        w.WriteLine($"Workload {workload}, {o.Rounds} rounds, on a fresh domain per paging mode");
        var header = new System.Text.StringBuilder("  " + "mode".PadRight(26));
        foreach (var c in CompareColumns) header.Append(' ').Append(Short(c).PadLeft(11));
        w.WriteLine(header);
        foreach (var (name, mode, options) in ModeVariants)
        {
            var c = config.Clone();
            c.Paging = mode;
            c.PagingOptions = options;
            var host = new XenHost(o.HostMemoryBytes);
            var d = host.CreateDomain(c, progress, cancel);
            var r = MemoryWorkloads.Run(d, workload, o.Rounds, progress, cancel);
            results.Add(r);
            var line = new System.Text.StringBuilder("  " + name.PadRight(26));
            foreach (var col in CompareColumns) line.Append(' ').Append(r[col].ToString(CultureInfo.InvariantCulture).PadLeft(11));
            w.WriteLine(line);
        }
        w.WriteLine("  columns: " + string.Join(", ", Array.ConvertAll(CompareColumns, c => $"{Short(c)} = {PerfCounterInfo.Name(c)}")));
        return results;
    }

    private static string Short(PerfCounter c) => c switch
    {
        PerfCounter.TlbMiss => "tlb_miss",
        PerfCounter.HapWalkMemRef => "2d_refs",
        PerfCounter.ShadowWalkMemRef => "shadow_refs",
        PerfCounter.Stage2WalkMemRef => "s2_refs",
        PerfCounter.ShadowFaultFixed => "sh_faults",
        PerfCounter.ShadowEmulateWrite => "emulated",
        PerfCounter.ShadowValidate => "validated",
        PerfCounter.OosUnsync => "unsync",
        PerfCounter.OosResync => "resync",
        PerfCounter.OosEntriesCompared => "compared",
        PerfCounter.OosEntriesRepropagated => "reprop",
        _ => PerfCounterInfo.Name(c),
    };

    /// <summary>Unpopulated E820 RAM pfns whose entry is not INVALID: what the nasty condition looks like.</summary>
    public static (ulong Count, ulong First) BalloonCheck(Domain d)
    {
        ulong count = 0, first = 0;
        foreach (ulong pfn in d.BalloonCandidatePfns())
        {
            ulong e = d.P2m.Get(pfn);
            if (e == P2mTree.InvalidEntry || P2mTree.Classify(e) == P2mEntryKind.Ram) continue;
            if (count++ == 0) first = pfn;
        }
        return (count, first);
    }

    /// <summary>Samples around every E820 boundary and the populated edge.</summary>
    public static List<ulong> DefaultSamples(Domain d)
    {
        var set = new SortedSet<ulong>();
        foreach (var e in d.E820.Entries)
        {
            set.Add(e.FirstPfn);
            if (e.EndPfn > 0) set.Add(e.EndPfn - 1);
            set.Add(e.EndPfn);
        }
        ulong populatedTop = 0;
        foreach (var (pfn, _) in d.P2m.EnumerateRamDescending()) { populatedTop = pfn; break; }
        set.Add(populatedTop);
        set.Add(populatedTop + 1);
        set.Add(0xC0000);   // 3 GiB: the thread's identity example
        return new List<ulong>(set);
    }

    private static string Strategy(IdentityStrategy s) => s == IdentityStrategy.Coarse ? "coarse" : "edges-first";

    private static string SizeText(ulong bytes) =>
        bytes % (1UL << 20) == 0 ? $"{bytes >> 20} MiB" : bytes >= 1UL << 20 ? $"{bytes / 1048576.0:0.00} MiB" : $"{bytes >> 10} KiB";
}
