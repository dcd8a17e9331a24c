// xenlab --pictures DIR: the run's pictures as PNG files, the same ones the cmdlets draw.
// Always the p2m tree of the domain and one translation's walk in each paging mode (on fresh
// copies of the domain, so the run itself is not disturbed); with --migrate the dirty map per
// round and the pages-sent chart; with --compare-modes the walk references and revalidations
// per mode. Framebuffers per frame stay with --png.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using XenLab.Config;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Lab;
using XenLab.Pictures;

namespace XenLab.Cli;

public static class CliPictures
{
    /// <summary>Where the walk pictures map their page (a free VA) and which gfn they map.</summary>
    public const ulong WalkVa = 0x7F0000000000, WalkGfn = 0x2010;

    public static List<PictureView> Write(string directory, Domain d, MigrationResult? migration, IReadOnlyList<WorkloadResult>? compared,
        ulong hostMemoryBytes, TextWriter output)
    {
        Directory.CreateDirectory(directory);
        var written = new List<PictureView>
        {
            P2mTreePicture.Save(d.P2m, $"p2m tree of {d.Name} ({d.Config.IdentityStrategy} identity)", Path.Combine(directory, "p2m-tree.png")),
        };
        foreach (var mode in new[] { PagingModeKind.Hap, PagingModeKind.Shadow, PagingModeKind.Arm })
        {
            var c = d.Config.Clone();
            c.Paging = mode;
            c.Workload = null;
            var copy = new XenHost(hostMemoryBytes).CreateDomain(c);
            copy.Kernel.Map(WalkVa, WalkGfn, 1, MapFlags.Writable);
            copy.Vcpus[0].ReadVirtual(WalkVa, new byte[1]);      // builds the shadows, fills the nested-walk cache
            written.Add(WalkPicture.Save(copy, 0, WalkVa, Path.Combine(directory, $"walk-{mode.ToString().ToLowerInvariant()}.png")));
        }
        if (migration is not null)
        {
            written.Add(DirtyMapPicture.Save(migration, Path.Combine(directory, "dirty-rounds.png")));
            written.Add(LabCharts.Save(LabCharts.PreCopyRounds(new[] { migration }, "Pages sent per pre-copy round"), Path.Combine(directory, "precopy.png")));
        }
        if (compared is not null && compared.Count > 0)
        {
            var names = new List<string>();
            var refs = new double[compared.Count];
            var emulated = new double[compared.Count];
            var reprop = new double[compared.Count];
            for (int i = 0; i < compared.Count; i++)
            {
                var r = compared[i];
                names.Add(i < LabRunner.ModeVariants.Length ? LabRunner.ModeVariants[i].Name : r.Mode);
                refs[i] = r[Diagnostics.PerfCounter.HapWalkMemRef] + r[Diagnostics.PerfCounter.ShadowWalkMemRef] + r[Diagnostics.PerfCounter.Stage2WalkMemRef];
                emulated[i] = r[Diagnostics.PerfCounter.ShadowEmulateWrite];
                reprop[i] = r[Diagnostics.PerfCounter.OosEntriesRepropagated];
            }
            string workload = compared[0].Workload;
            written.Add(LabCharts.Save(LabCharts.Bars($"Walk memory references per mode ({workload})", "references",
                names, new[] { new ChartSeries("walk references", refs) }, logScale: true), Path.Combine(directory, "walk-refs.png"), 1100, 500));
            written.Add(LabCharts.Save(LabCharts.Bars($"Shadow revalidation work per mode ({workload})", "entries",
                names, new[] { new ChartSeries("emulated writes", emulated), new ChartSeries("entries repropagated", reprop) }),
                Path.Combine(directory, "revalidations.png"), 1100, 500));
        }
        output.WriteLine();
        output.WriteLine($"Pictures in {directory}");
        foreach (var p in written)
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {Path.GetFileName(p.Path),-20} {p.Kind,-12} {p.Width}x{p.Height}"));
        return written;
    }
}
