using System;
using System.Collections.Generic;
using System.Threading;
using XenLab.Config;
using XenLab.Cpu.Workloads;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Lab;
using XenLab.Paging.Modes;
using XenLab.Progress;
using XenLab.Views;

namespace XenLab.Tests;

/// <summary>
/// Long work reports progress and stops between whole steps: a stopped run leaves the domain as
/// a shorter run would have (same counters, clean audit) and usable afterwards.
/// </summary>
public class LabProgressTests
{
    /// <summary>A sink that records every report and asks for a stop once <paramref name="stopWhen"/> holds.</summary>
    private sealed class StopAt : IProgress<LabProgress>
    {
        private readonly Func<LabProgress, bool> _stopWhen;
        public readonly CancellationTokenSource Source = new();
        public readonly List<LabProgress> Reports = new();
        public StopAt(Func<LabProgress, bool> stopWhen) => _stopWhen = stopWhen;
        public CancellationToken Token => Source.Token;
        public void Report(LabProgress value)
        {
            Reports.Add(value);
            if (_stopWhen(value)) Source.Cancel();
        }
    }

    private static Domain Build(PagingModeKind mode, string name = "p", ulong memoryMiB = 128, int vcpus = 1)
    {
        var host = new XenHost(4UL << 30);
        var c = TestDomains.Config(name, memoryMiB, vcpus: vcpus);
        c.Paging = mode;
        c.ShadowMemoryMiB = 8;
        return host.CreateDomain(c);
    }

    private static void AssertSameCounters(Domain expected, Domain actual)
    {
        for (int i = 0; i < PerfCounterInfo.Count; i++)
            Assert.True(expected.Counters[(PerfCounter)i] == actual.Counters[(PerfCounter)i],
                $"{PerfCounterInfo.Name((PerfCounter)i)}: a run stopped after N rounds has {actual.Counters[(PerfCounter)i]}, one of exactly N rounds {expected.Counters[(PerfCounter)i]}");
    }

    private static void AssertAuditClean(Domain d)
    {
        var audit = PagingAuditView.Of(d);
        Assert.True(audit.IsClean, string.Join("\n", audit.Problems));
    }

    [Fact]
    public void TheReporterSendsAboutOneReportPerPercentAndStopsAtTheStepThatSawTheStop()
    {
        var sink = new StopAt(p => p.Done == 700);
        var r = new ProgressReporter(sink, sink.Token);
        r.Begin("count", 1000, "step");
        int done = 0;
        var ex = Record.Exception(() => { for (int i = 1; i <= 1000; i++) { r.Step(i); done = i; } });
        Assert.IsAssignableFrom<OperationCanceledException>(ex);
        Assert.Equal(699, done);                                  // step 700 reported, then threw
        Assert.Equal(71, sink.Reports.Count);                     // 0%, then one per 10 steps up to 70%
        Assert.Equal("step 700 of 1000", sink.Reports[^1].Status);
        Assert.Equal(70, sink.Reports[^1].PercentComplete);
        for (int i = 1; i < sink.Reports.Count; i++) Assert.True(sink.Reports[i].PercentComplete > sink.Reports[i - 1].PercentComplete);
    }

    [Fact]
    public void AnUnknownTotalReportsEveryStepWithoutAPercentage()
    {
        var seen = new List<LabProgress>();
        var r = new ProgressReporter(new SynchronousProgress(seen.Add), CancellationToken.None);
        r.Begin("open-ended", 0, "item");
        r.Step(1);
        r.Step(2);
        r.Complete(2);
        Assert.Equal(new[] { -1, -1, -1, -1 }, seen.ConvertAll(p => p.PercentComplete));
        Assert.Equal("2 item(s)", seen[2].Status);
        Assert.True(seen[3].Completed);
    }

    [Fact]
    public void AStopAskedForBeforeTheStartDoesNoWork()
    {
        var d = Build(PagingModeKind.Hap);
        long before = d.Counters[PerfCounter.TlbMiss];
        Assert.ThrowsAny<OperationCanceledException>(() => MemoryWorkloads.Run(d, "pt-churn", 10, cancel: new CancellationToken(canceled: true)));
        Assert.Equal(before, d.Counters[PerfCounter.TlbMiss]);
        Assert.Empty(d.Kernel.Mappings().FindAll(m => m.VirtualAddress == MemoryWorkloads.RegionVa));
    }

    [Theory]
    [InlineData(PagingModeKind.Hap, "pt-churn")]
    [InlineData(PagingModeKind.Shadow, "pt-churn")]
    [InlineData(PagingModeKind.Arm, "pt-churn")]
    [InlineData(PagingModeKind.Hap, "pte-update")]
    [InlineData(PagingModeKind.Shadow, "pte-update")]
    [InlineData(PagingModeKind.Arm, "pte-update")]
    public void AWorkloadStoppedAfterNRoundsLeavesTheDomainAsNRoundsWould(PagingModeKind mode, string workload)
    {
        const int n = 48;
        var stopped = Build(mode, vcpus: 2);
        var sink = new StopAt(p => p.Done == n);
        Assert.ThrowsAny<OperationCanceledException>(() => MemoryWorkloads.Run(stopped, workload, 200, sink, sink.Token));

        var reference = Build(mode, vcpus: 2);
        MemoryWorkloads.Run(reference, workload, n);
        AssertSameCounters(reference, stopped);                  // exactly n whole rounds ran
        Assert.Equal(reference.Kernel.Mappings().Count, stopped.Kernel.Mappings().Count);
        AssertAuditClean(stopped);
        Assert.Equal($"round {n} of 200", sink.Reports[^1].Status);
        Assert.Equal(24, sink.Reports[^1].PercentComplete);

        // Still usable: the same workload runs to the end afterwards.
        var again = MemoryWorkloads.Run(stopped, workload, 16);
        Assert.True(again.Operations > 0);
        AssertAuditClean(stopped);
    }

    [Theory]
    [InlineData(PagingModeKind.Hap, false)]
    [InlineData(PagingModeKind.Shadow, false)]
    [InlineData(PagingModeKind.Arm, false)]
    [InlineData(PagingModeKind.Hap, true)]
    public void AMigrationStoppedMidRoundPutsLogDirtyBackAndCanRunAgain(PagingModeKind mode, bool logDirtyWasOn)
    {
        var d = Build(mode);
        if (logDirtyWasOn) d.LogDirty.Enable();
        // Round 1 sends every populated page; at ratio 1 the guest writes as many times: stop after 8192 writes.
        var sink = new StopAt(p => p.Activity.Contains("round 1,") && p.Done == 8192);
        Assert.ThrowsAny<OperationCanceledException>(() => LiveMigration.PreCopy(d, dirtyRatio: 1.0, workingSetPages: 2048, progress: sink, cancel: sink.Token));
        Assert.Equal(logDirtyWasOn, d.LogDirty.Enabled);         // as it was before the migration
        Assert.Equal($"guest write 8192 of {d.PopulatedPages}", sink.Reports[^1].Status);
        // Left on, its log holds what the stopped round's 8192 writes dirtied (at most the 2048-page working set).
        if (logDirtyWasOn) Assert.InRange(d.LogDirty.Read(clean: false).DirtyPages, 1, 2048);
        AssertAuditClean(d);

        var r = LiveMigration.PreCopy(d, dirtyRatio: 0.02, workingSetPages: 2048);
        Assert.True(r.Converged, r.Why);
        Assert.Equal((long)d.PopulatedPages, r.Rounds[0].PagesSent);
        Assert.Equal(logDirtyWasOn, d.LogDirty.Enabled);
        AssertAuditClean(d);
    }

    private static Domain BuildWithMonitor(PagingModeKind mode)
    {
        var host = new XenHost(4UL << 30);
        var c = TestDomains.Config("frames", 128);
        c.Paging = mode;
        c.ShadowMemoryMiB = 8;
        c.Framebuffers.Add(new FramebufferConfig("mon0", 0xF0000000, 320, 200, 32));
        return host.CreateDomain(c);
    }

    private static readonly WorkloadConfig Fill = new(10, WorkloadConfig.DefaultBudget,
        new[] { new WorkloadStep(WorkloadStepKind.Fill, "mon0", X: 0, Y: 0, Width: 64, Height: 8, Dy: 8) });

    [Theory]
    [InlineData(PagingModeKind.Hap)]
    [InlineData(PagingModeKind.Shadow)]
    public void GuestFramesStopBetweenFramesAndResumeLater(PagingModeKind mode)
    {
        var d = BuildWithMonitor(mode);
        GuestPrograms.LoadWorkload(d, Fill);
        var frames = new List<FrameReport>();
        var sink = new StopAt(p => p.Done == 3);
        Assert.ThrowsAny<OperationCanceledException>(() => GuestPrograms.RunFrames(d, 10, Fill.BudgetPerFrame, 0, null, frames.Add, sink, sink.Token));
        Assert.Equal(3, frames.Count);                           // frames 0, 1 and 2 ran and were reported
        Assert.All(frames, f => Assert.True(f.Completed));
        long instructions = 0;
        foreach (var f in frames) instructions += f.Instructions;
        Assert.Equal(instructions, d.Counters[PerfCounter.CpuInstructionsRetired]);   // nothing ran past the last reported frame
        Assert.Equal("frame 3 of 10", sink.Reports[^1].Status);   // the last report, at the safe point after frame 2
        AssertAuditClean(d);

        // The vCPU sits after frame 2's yield: two more frames run on, each dirtying what it drew.
        var more = new List<FrameReport>();
        Assert.Equal(2, GuestPrograms.RunFrames(d, 2, Fill.BudgetPerFrame, 0, null, more.Add));
        Assert.All(more, f => Assert.True(f.Completed));
        Assert.All(more, f => Assert.True(f.Framebuffers[0].DirtyPages > 0));
        AssertAuditClean(d);
    }

    [Theory]
    [InlineData(PagingModeKind.Hap, true)]
    [InlineData(PagingModeKind.Arm, true)]
    [InlineData(PagingModeKind.Shadow, false)]
    [InlineData(PagingModeKind.Hap, false)]
    public void AStoppedBuildLeavesNothingBehind(PagingModeKind mode, bool duringPagingTables)
    {
        var host = new XenHost(8UL << 30);
        ulong baseline = host.Machine.AllocatedFrames;
        var c = TestDomains.Config("big", 2048);                // about 524288 pages: eight safe points while populating, eight while mapping
        c.Paging = mode;
        long stopAt = duringPagingTables ? 524288 + 3 * 65536 : 3 * 65536;
        var sink = new StopAt(p => p.Done >= stopAt);
        Assert.ThrowsAny<OperationCanceledException>(() => host.CreateDomain(c, sink, sink.Token));
        Assert.Equal(duringPagingTables, sink.Reports[^1].Done > sink.Reports[^1].Total / 2);   // stopped in the phase meant
        Assert.Empty(host.Domains);
        Assert.Equal(baseline, host.Machine.AllocatedFrames);    // RAM, p2m-mode tables and VLPT slots all given back
        Assert.Contains(sink.Reports, p => p.Activity.StartsWith("Building domain 'big'"));

        // The name is free and the memory is there: the same build now runs to the end.
        var seen = new List<LabProgress>();
        var d = host.CreateDomain(c, new SynchronousProgress(seen.Add));
        Assert.Equal(d.MaxPages, d.PopulatedPages);                  // every E820 RAM page (2 GiB less the legacy hole)
        Assert.True(seen[^1].Completed);
        Assert.Equal(100, seen[^1].PercentComplete);
        AssertAuditClean(d);
    }
}
