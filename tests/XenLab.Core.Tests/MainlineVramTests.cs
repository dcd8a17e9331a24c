using System.Collections.Generic;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Dirty;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Paging.Modes;

namespace XenLab.Tests;

/// <summary>
/// vram_strategy: mainline, against the rules of Xen's shadow_track_dirty_vram (hvm.c) and
/// shadow_vram_get_l1e/put_l1e, with expectations worked out by hand from those rules.
/// </summary>
public class MainlineVramTests
{
    private const ulong FbGfn = 0xF0000;
    private const ulong MountVa = 0x40000000;
    private const long Second = 1_000_000_000;

    private static Domain Armed(out Vcpu v)
    {
        var d = DirtyVramTests.Build(PagingModeKind.Shadow, VramStrategy.Mainline);
        v = d.Vcpus[0];
        var first = d.Vram.Track(FbGfn, 768);
        Assert.True(first.AllDirty);
        return d;
    }

    private static List<int> Dirty(VramQueryResult r) => r.DirtyPageIndexes();

    [Fact]
    public void TheFirstCallBlowsEveryShadowAndAnswersAllDirty()
    {
        var d = DirtyVramTests.Build(PagingModeKind.Shadow, VramStrategy.Mainline);
        long blows = d.Counters[PerfCounter.ShadowBlowTables];
        var first = d.Vram.Track(FbGfn, 768);
        Assert.True(first.AllDirty);
        Assert.Equal(768, first.DirtyPages);
        Assert.Contains("ENODATA", first.Reason);
        Assert.Equal(blows + 1, d.Counters[PerfCounter.ShadowBlowTables]);
        Assert.Equal(1, d.Counters[PerfCounter.VramMainlineBlow]);
        Assert.Equal(VramStrategy.Mainline, d.Vram.Ranges[0].Strategy);
        // Every shadow went: Build's reads had left the framebuffer mapped, now nothing maps it.
        var again = d.Vram.Track(FbGfn, 768);
        Assert.False(again.AllDirty, again.Reason);
        Assert.Empty(Dirty(again));
        Assert.Equal(blows + 1, d.Counters[PerfCounter.ShadowBlowTables]);   // the same range again blows nothing
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void OneWritableMappingIsExactByItsDirtyBit()
    {
        var d = Armed(out var v);
        for (int round = 0; round < 3; round++)
        {
            int[] pages = { round, 100 + round, 767 - round };
            foreach (int p in pages) Assert.True(v.WriteVirtual(MountVa + ((ulong)p << 12) + 9, new byte[] { (byte)(round + 1) }).IsOk);
            var r = d.Vram.Track(FbGfn, 768);
            Assert.False(r.AllDirty, r.Reason);
            Assert.Equal(pages, Dirty(r));
        }
        Assert.Empty(Dirty(d.Vram.Track(FbGfn, 768)));
        // A read of a page never written maps it read-only (guest D clear): no writable mapping, clean.
        v.ReadVirtual(MountVa + 50 * 4096, new byte[1]);
        Assert.Empty(Dirty(d.Vram.Track(FbGfn, 768)));
        Assert.Equal(0, d.Counters[PerfCounter.VramMultiMapDirty]);
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void APageMappedWritableTwiceIsAlwaysDirty()
    {
        var d = Armed(out var v);
        d.Kernel.Map(0x80000000, FbGfn + 9, 1, MapFlags.Writable);
        Assert.True(v.WriteVirtual(MountVa + 9 * 4096, new byte[] { 1 }).IsOk);   // recorded (the first)
        Assert.True(v.WriteVirtual(0x80000000, new byte[] { 2 }).IsOk);           // a second writable mapping
        Assert.True(v.WriteVirtual(MountVa + 20 * 4096, new byte[] { 3 }).IsOk);
        Assert.Equal(new[] { 9, 20 }, Dirty(d.Vram.Track(FbGfn, 768)));
        long multi = d.Counters[PerfCounter.VramMultiMapDirty];
        Assert.Equal(new[] { 9 }, Dirty(d.Vram.Track(FbGfn, 768)));               // nothing written: still dirty
        Assert.Equal(new[] { 9 }, Dirty(d.Vram.Track(FbGfn, 768)));
        Assert.Equal(multi + 2, d.Counters[PerfCounter.VramMultiMapDirty]);
    }

    [Fact]
    public void WhenTheRecordedMappingGoesTheOtherIsUnknownDirtyOnceThenRecordedAnew()
    {
        var d = Armed(out var v);
        d.Kernel.Map(0x80000000, FbGfn + 9, 1, MapFlags.Writable);
        Assert.True(v.WriteVirtual(0x80000000, new byte[] { 1 }).IsOk);            // the alias is recorded (first)
        Assert.True(v.WriteVirtual(MountVa + 9 * 4096, new byte[] { 2 }).IsOk);
        Assert.Equal(new[] { 9 }, Dirty(d.Vram.Track(FbGfn, 768)));
        d.Kernel.Unmap(0x80000000, 1);                                             // put_l1e: not the last one, it was the recorded one
        long unknown = d.Counters[PerfCounter.VramMainlineUnknownMapping];
        Assert.Equal(new[] { 9 }, Dirty(d.Vram.Track(FbGfn, 768)));               // one mapping, none recorded: dirty, mappings dropped
        Assert.Equal(unknown + 1, d.Counters[PerfCounter.VramMainlineUnknownMapping]);
        Assert.Empty(Dirty(d.Vram.Track(FbGfn, 768)));                            // no mapping left: clean
        Assert.True(v.WriteVirtual(MountVa + 9 * 4096, new byte[] { 3 }).IsOk);    // faults, recorded anew
        Assert.Equal(new[] { 9 }, Dirty(d.Vram.Track(FbGfn, 768)));
        Assert.Empty(Dirty(d.Vram.Track(FbGfn, 768)));
        Assert.Equal(unknown + 1, d.Counters[PerfCounter.VramMainlineUnknownMapping]);
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void TwoSecondsOfDomainTimeWithNothingDirtyRemoveWriteAccess()
    {
        var d = Armed(out var v);
        Assert.True(v.WriteVirtual(MountVa + 3 * 4096, new byte[] { 1 }).IsOk);
        d.AdvanceClock(1 * Second);
        Assert.Equal(new[] { 3 }, Dirty(d.Vram.Track(FbGfn, 768)));               // last_dirty = now
        d.AdvanceClock(2 * Second);
        // hvm.c: "if ( dirty_vram->last_dirty + SECONDS(2) < NOW() )", strictly less: exactly 2 s is not yet.
        Assert.Empty(Dirty(d.Vram.Track(FbGfn, 768)));                            // exactly 2 s: not more than 2 s
        Assert.Equal(0, d.Counters[PerfCounter.VramMainlineWriteRemoved]);
        d.AdvanceClock(1);
        long flushes = d.Counters[PerfCounter.TlbFlushAll];
        Assert.Empty(Dirty(d.Vram.Track(FbGfn, 768)));                            // 2 s + 1 ns: write access goes
        Assert.Equal(1, d.Counters[PerfCounter.VramMainlineWriteRemoved]);
        Assert.True(d.Counters[PerfCounter.TlbFlushAll] > flushes);
        d.AdvanceClock(10 * Second);
        Assert.Empty(Dirty(d.Vram.Track(FbGfn, 768)));                            // clean: the empty bitmap, nothing removed again
        Assert.Equal(1, d.Counters[PerfCounter.VramMainlineWriteRemoved]);
        // The next write faults (the mapping is read-only now) and starts the clock again.
        long faults = d.Counters[PerfCounter.ShadowFaultFixed];
        Assert.True(v.WriteVirtual(MountVa + 3 * 4096, new byte[] { 2 }).IsOk);
        Assert.Equal(faults + 1, d.Counters[PerfCounter.ShadowFaultFixed]);
        Assert.Equal(new[] { 3 }, Dirty(d.Vram.Track(FbGfn, 768)));
        Assert.True(v.WriteVirtual(MountVa + 4 * 4096, new byte[] { 2 }).IsOk);
        Assert.Equal(new[] { 4 }, Dirty(d.Vram.Track(FbGfn, 768)));
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void RemovingWriteAccessFromManyPagesFlushesTlbsOnceAsXenDoes()
    {
        // shadow_track_dirty_vram ORs sh_remove_write_access's "flush needed" over the range and
        // calls guest_flush_tlb_mask once at the end: one flush of every vCPU, not one per page.
        var d = Armed(out var v);
        for (int p = 0; p < 10; p++) Assert.True(v.WriteVirtual(MountVa + ((ulong)p << 12), new byte[] { 1 }).IsOk);
        Assert.Equal(10, Dirty(d.Vram.Track(FbGfn, 768)).Count);
        d.AdvanceClock(2 * Second + 1);
        long flushes = d.Counters[PerfCounter.TlbFlushAll];
        Assert.Empty(Dirty(d.Vram.Track(FbGfn, 768)));
        Assert.Equal(1, d.Counters[PerfCounter.VramMainlineWriteRemoved]);
        Assert.Equal(flushes + d.VcpuCount, d.Counters[PerfCounter.TlbFlushAll]);
        for (int p = 0; p < 10; p++) Assert.True(v.WriteVirtual(MountVa + ((ulong)p << 12), new byte[] { 2 }).IsOk);
        Assert.Equal(10, Dirty(d.Vram.Track(FbGfn, 768)).Count);                 // every write faulted back in and was seen
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void GuestInstructionsAndAdvanceClockMoveTheDomainClock()
    {
        var rig = new XenLab.Tests.Cpu.CpuRig();
        rig.Load("mov ecx, 10\ntop:\ndec rcx\njnz top\nhlt");
        long before = rig.Domain.ClockNs;
        var r = rig.Cpu.Run(1000);
        Assert.Equal(1 + 2 * 10 + 1, r.Instructions);
        Assert.Equal(before + 22 * XenLab.Cpu.X86Cpu.NsPerInstruction, rig.Domain.ClockNs);   // 1 ns per retired instruction
        rig.Domain.AdvanceClock(5);
        Assert.Equal(before + 27, rig.Domain.ClockNs);
        Assert.Throws<DomainClockException>(() => rig.Domain.AdvanceClock(-1));
    }

    [Fact]
    public void TheClockRefusesToGoBackOrOverflowAndNamesTheDomain()
    {
        var d = DirtyVramTests.Build(PagingModeKind.Shadow, VramStrategy.Mainline);
        long start = d.ClockNs;
        var back = Assert.Throws<DomainClockException>(() => d.AdvanceClock(-1));
        Assert.Contains($"'{d.Name}'", back.Message);
        Assert.Equal("DomainClockOutOfRange", back.ErrorId);
        d.AdvanceClock(long.MaxValue - start);                                    // exactly to the end: allowed
        Assert.Equal(long.MaxValue, d.ClockNs);
        var over = Assert.Throws<DomainClockException>(() => d.AdvanceClock(1)); // one past: refused, unchanged
        Assert.Contains($"'{d.Name}'", over.Message);
        Assert.Equal(long.MaxValue, d.ClockNs);
        d.AdvanceClock(0);
        Assert.Equal(long.MaxValue, d.ClockNs);
    }

    [Fact]
    public void AGuestRunStopsAtTheClocksEndAndAClockAtItsEndRunsNothing()
    {
        var rig = new XenLab.Tests.Cpu.CpuRig();
        rig.Load("top:\ninc rax\njmp top");
        rig.Domain.AdvanceClock(long.MaxValue - rig.Domain.ClockNs - 5);
        var r = rig.Cpu.Run(1000);
        Assert.Equal(5, r.Instructions);                                          // stopped where the clock ends
        Assert.Equal(XenLab.Cpu.StopReason.BudgetExhausted, r.Reason);
        Assert.Equal(long.MaxValue, rig.Domain.ClockNs);
        ulong rip = rig.Cpu.Rip;
        var e = Assert.Throws<DomainClockException>(() => rig.Cpu.Run(1000));
        Assert.Contains($"'{rig.Domain.Name}'", e.Message);
        Assert.Equal(rip, rig.Cpu.Rip);                                            // nothing ran
    }

    [Fact]
    public void MillisecondsBecomeWholeNanosecondsWithinTheClocksRange()
    {
        var d = DirtyVramTests.Build(PagingModeKind.Shadow, VramStrategy.Mainline);
        Assert.Equal(16_700_000, d.ClockStepFromMilliseconds(16.7m));
        Assert.Equal(2 * Second + 1, d.ClockStepFromMilliseconds(2000.000001m));
        Assert.Equal(16_666_667, d.ClockStepFromMilliseconds(1000m / 60));       // rounded to the nearest
        Assert.Equal(1, d.ClockStepFromMilliseconds(0.0000005m));                // half a nanosecond rounds up
        Assert.Equal(0, d.ClockStepFromMilliseconds(0m));
        Assert.Equal(long.MaxValue, d.ClockStepFromMilliseconds(long.MaxValue / 1_000_000m));
        Assert.Throws<DomainClockException>(() => d.ClockStepFromMilliseconds(-0.000001m));
        var e = Assert.Throws<DomainClockException>(() => d.ClockStepFromMilliseconds(9_223_372_036_855m));
        Assert.Contains($"'{d.Name}'", e.Message);
    }

    [Fact]
    public void TheTimeCounterAddsUpEveryStepAndAResetLeavesTheClock()
    {
        var rig = new XenLab.Tests.Cpu.CpuRig();
        rig.Load("mov ecx, 10\ntop:\ndec rcx\njnz top\nhlt");
        var d = rig.Domain;
        long clock = d.ClockNs, counted = d.Counters[PerfCounter.DomainTimeNs];
        rig.Cpu.Run(1000);                                                         // 22 instructions
        var view = XenLab.Views.DomainClockView.Advance(d, 16_700_000);
        Assert.Equal(clock + 22 + 16_700_000, d.ClockNs);
        Assert.Equal(counted + 22 + 16_700_000, d.Counters[PerfCounter.DomainTimeNs]);
        Assert.Equal(d.ClockNs, view.ClockNs);
        Assert.Equal(16_700_000, view.AdvancedNs);
        Assert.Equal(d.ClockNs / 1_000_000_000m, view.Seconds);
        d.Counters.Reset();
        Assert.Equal(clock + 22 + 16_700_000, d.ClockNs);                          // counters reset, the clock does not
    }

    [Fact]
    public void ARemovedDomainsClockCannotBeAdvanced()
    {
        var host = new XenHost(256UL << 20);
        var d = host.CreateDomain(new DomainConfig { Name = "gone", MemoryMiB = 16 });
        host.DestroyDomain(d);
        Assert.Throws<DomainRemovedException>(() => d.AdvanceClock(1));
        Assert.Throws<DomainRemovedException>(() => XenLab.Views.DomainClockView.Advance(d, 1));
    }

    private static Domain WithMonitor(VramStrategy strategy)
    {
        var c = TestDomains.Config("frames", 128);
        c.Paging = PagingModeKind.Shadow;
        c.ShadowMemoryMiB = 8;
        c.VramStrategy = strategy;
        c.Framebuffers.Add(new FramebufferConfig("mon0", 0xF0000000, 320, 200, 32));
        return new XenHost(4UL << 30).CreateDomain(c);
    }

    // A 64x8 box moving down 8 rows a frame: every frame writes two or three pages of the monitor.
    private static readonly XenLab.Lab.WorkloadConfig Box = new(10, XenLab.Lab.WorkloadConfig.DefaultBudget,
        new[] { new XenLab.Cpu.Workloads.WorkloadStep(XenLab.Cpu.Workloads.WorkloadStepKind.Fill, "mon0", X: 0, Y: 0, Width: 64, Height: 8, Dy: 8) });

    [Fact]
    public void WithoutAFrameIntervalAFrameTakesOnlyItsInstructionsTime()
    {
        var d = WithMonitor(VramStrategy.Mainline);
        XenLab.Lab.GuestPrograms.LoadWorkload(d, Box);
        long before = d.ClockNs;
        var frames = new List<XenLab.Lab.FrameReport>();
        XenLab.Lab.GuestPrograms.RunFrames(d, 3, Box.BudgetPerFrame, 0, null, frames.Add);
        long instructions = 0;
        foreach (var f in frames) { instructions += f.Instructions; Assert.Equal(before + instructions, f.ClockNs); }
        Assert.Equal(before + instructions, d.ClockNs);                            // 1 ns per instruction, nothing else
        // An interval shorter than the frame's own work adds nothing either.
        var r = XenLab.Lab.GuestPrograms.RunFrame(d, 3, Box.BudgetPerFrame, frameIntervalNs: 1);
        Assert.Equal(before + instructions + r.Instructions, r.ClockNs);
        Assert.Throws<InvalidConfigurationException>(() => XenLab.Lab.GuestPrograms.RunFrame(d, 4, Box.BudgetPerFrame, frameIntervalNs: -1));
        Assert.Throws<InvalidConfigurationException>(() => XenLab.Lab.GuestPrograms.RunFrames(d, 1, Box.BudgetPerFrame, 0, null, _ => { },
            frameIntervalNs: XenLab.Lab.GuestPrograms.MaxFrameIntervalNs + 1));
    }

    [Fact]
    public void FramesAt60HzKeepMainlineWritableAndTwoIdleSecondsAfterThemRemoveWriteAccess()
    {
        const long Frame = 16_700_000;
        var d = WithMonitor(VramStrategy.Mainline);
        XenLab.Lab.GuestPrograms.LoadWorkload(d, Box);
        long before = d.ClockNs;
        var frames = new List<XenLab.Lab.FrameReport>();
        // 130 frames are 2.171 s of domain time: longer than the 2 s, but every frame draws.
        XenLab.Lab.GuestPrograms.RunFrames(d, 130, Box.BudgetPerFrame, 0, null, frames.Add, frameIntervalNs: Frame);
        Assert.Equal(130, frames.Count);
        for (int i = 0; i < frames.Count; i++)
        {
            Assert.Equal(before + (i + 1) * Frame, frames[i].ClockNs);             // each frame lasts exactly 16.7 ms
            Assert.True(frames[i].Framebuffers[0].DirtyPages > 0, $"frame {i}");
        }
        Assert.Equal(before + 130 * Frame, d.ClockNs);
        Assert.Equal(0, d.Counters[PerfCounter.VramMainlineWriteRemoved]);
        Assert.Equal(1, d.Counters[PerfCounter.VramMainlineBlow]);
        // The guest stops drawing; the display keeps polling each frame. Last dirty: the last frame's pull.
        long lastDirty = d.ClockNs;
        int idleFrames = 0;
        while (d.ClockNs + Frame - lastDirty <= 2 * Second)
        {
            d.AdvanceClock(Frame);
            Assert.Empty(Dirty(d.Vram.Track(0xF0000, 63)));
            idleFrames++;
        }
        Assert.Equal(119, idleFrames);                                              // 119 x 16.7 ms = 1.9873 s, 120 would be 2.004 s
        Assert.Equal(0, d.Counters[PerfCounter.VramMainlineWriteRemoved]);
        d.AdvanceClock(Frame);                                                      // 2.004 s since the last dirty page
        Assert.Empty(Dirty(d.Vram.Track(0xF0000, 63)));
        Assert.Equal(1, d.Counters[PerfCounter.VramMainlineWriteRemoved]);
        // Drawing again: the first writes fault back in (read-only now) and are reported.
        long faults = d.Counters[PerfCounter.ShadowFaultFixed];
        var again = XenLab.Lab.GuestPrograms.RunFrame(d, 130, Box.BudgetPerFrame, frameIntervalNs: Frame);
        Assert.True(again.Framebuffers[0].DirtyPages > 0);
        Assert.True(d.Counters[PerfCounter.ShadowFaultFixed] > faults);
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void ASecondRangeReplacesTheFirst()
    {
        var d = DirtyVramTests.Build(PagingModeKind.Shadow, VramStrategy.Mainline);
        d.Vram.Track(FbGfn, 100);
        Assert.True(d.Vram.Track(FbGfn + 200, 100).AllDirty);
        Assert.Single(d.Vram.Ranges);
        Assert.Equal(FbGfn + 200, d.Vram.Ranges[0].BeginPfn);
        Assert.Equal(2, d.Counters[PerfCounter.VramMainlineBlow]);
        Assert.True(d.Vram.Track(FbGfn, 100).AllDirty);                           // and back: new again
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void UnderHapMainlineFallsBackToTheModesOwnTracker()
    {
        var d = DirtyVramTests.Build(PagingModeKind.Hap, VramStrategy.Mainline);
        d.Vram.Track(FbGfn, 768);
        Assert.Equal(VramStrategy.Tracker, d.Vram.Ranges[0].Strategy);
    }

    [Fact]
    public void TheConfigKeyRoundTrips()
    {
        var c = DomainConfigLoader.Load("name: a\nmemory: 64\npaging: shadow\nvram_strategy: mainline\n", "m.yaml");
        Assert.Equal(VramStrategy.Mainline, c.VramStrategy);
        Assert.Contains("vram_strategy: mainline\n", DomainConfigWriter.ToYaml(c));
    }
}
