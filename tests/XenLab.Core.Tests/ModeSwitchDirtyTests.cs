using System.Collections.Generic;
using XenLab.Config;
using XenLab.Dirty;
using XenLab.Domains;
using XenLab.Paging.Modes;

namespace XenLab.Tests;

/// <summary>
/// Issue 9 section 1: a paging-mode switch (to another kind or to the same kind) must never lose
/// a write. Every tracked VRAM range reports all dirty on its next query after a switch (it was
/// re-armed under the new mode instance), and whole-domain log-dirty keeps every write made
/// before and after the switch.
/// </summary>
public class ModeSwitchDirtyTests
{
    private static readonly FramebufferConfig M0 = new("m0", 0xF0000000, 256, 64, 32);   // 16 pages
    private const ulong Va = 0x40000000;

    private static Domain Build(PagingModeKind mode, VramStrategy strategy = VramStrategy.Auto)
    {
        var host = new XenHost(4UL << 30);
        var c = TestDomains.Config("switch", 64, vcpus: 2);
        c.Paging = mode;
        var d = host.CreateDomain(c);
        d.Vram.Strategy = strategy;
        d.AddFramebuffer(M0);
        d.MountFramebuffer("m0", Va);
        return d;
    }

    private static List<int> Dirty(VramQueryResult r) => r.DirtyPageIndexes();

    [Theory]
    [InlineData(VramStrategy.BackLinks)]
    [InlineData(VramStrategy.DirtyBit)]
    [InlineData(VramStrategy.Tracker)]
    public void ASwitchToTheSameKindLosesNoWrite(VramStrategy strategy)
    {
        var d = Build(PagingModeKind.Shadow, strategy);
        Assert.True(d.Vram.Track(M0.FirstGfn, 16).AllDirty);                  // tracking starts
        d.SetPagingMode(PagingModeKind.Shadow, d.Config.PagingOptions);     // same kind, new instance
        Assert.True(d.Vcpus[0].WriteVirtual(Va + 5 * 4096 + 8, new byte[] { 1, 2, 3 }).IsOk);
        var r = d.Vram.Track(M0.FirstGfn, 16);
        Assert.Contains(5, Dirty(r));                                         // the written page is reported
        Assert.True(r.AllDirty);                                              // re-armed under the new mode: all dirty
        Assert.Contains("paging mode switched", r.Reason);
        for (ulong p = 0; p < 16; p++) d.Vcpus[0].ReadVirtual(Va + (p << 12), new byte[1]);   // the D-bit design needs every entry present
        d.Vram.Track(M0.FirstGfn, 16);
        d.Vcpus[0].WriteVirtual(Va + 9 * 4096, new byte[] { 7 });
        Assert.Equal(new[] { 9 }, Dirty(d.Vram.Track(M0.FirstGfn, 16)));      // and exact again after that
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void ShadowToHapToShadowWithoutAQueryLosesNoWrite()
    {
        var d = Build(PagingModeKind.Shadow, VramStrategy.BackLinks);
        d.Vram.Track(M0.FirstGfn, 16);
        d.SetPagingMode(PagingModeKind.Hap);
        d.Vcpus[0].WriteVirtual(Va + 3 * 4096, new byte[] { 1 });
        d.SetPagingMode(PagingModeKind.Shadow);
        d.Vcpus[1].WriteVirtual(Va + 4 * 4096, new byte[] { 1 });
        var r = d.Vram.Track(M0.FirstGfn, 16);
        Assert.Contains(3, Dirty(r));
        Assert.Contains(4, Dirty(r));
        Assert.True(r.AllDirty);
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void SwitchesWhileLogDirtyIsOnLoseNoVramWrite()
    {
        var d = Build(PagingModeKind.Shadow, VramStrategy.BackLinks);
        d.Vram.Track(M0.FirstGfn, 16);
        d.LogDirty.Enable();
        d.SetPagingMode(PagingModeKind.Hap);
        Assert.Throws<VramException>(() => d.Vram.Track(M0.FirstGfn, 16));  // -ENODATA: nothing handed out
        d.Vcpus[0].WriteVirtual(Va + 6 * 4096, new byte[] { 1 });
        d.SetPagingMode(PagingModeKind.Shadow);
        Assert.Throws<VramException>(() => d.Vram.Track(M0.FirstGfn, 16));
        d.LogDirty.Disable();
        var r = d.Vram.Track(M0.FirstGfn, 16);
        Assert.Contains(6, Dirty(r));
        ShadowModeTests.AssertAuditClean(d);
    }

    [Theory]
    [InlineData(PagingModeKind.Hap, PagingModeKind.Hap)]
    [InlineData(PagingModeKind.Hap, PagingModeKind.Shadow)]
    [InlineData(PagingModeKind.Shadow, PagingModeKind.Shadow)]
    [InlineData(PagingModeKind.Shadow, PagingModeKind.Arm)]
    [InlineData(PagingModeKind.Arm, PagingModeKind.Arm)]
    [InlineData(PagingModeKind.Arm, PagingModeKind.Hap)]
    public void LogDirtySurvivesASwitchExactly(PagingModeKind from, PagingModeKind to)
    {
        var d = Build(from);
        ulong gfnBefore = 0x3000, gfnAfter = 0x3100;
        d.Kernel.Map(0x80000000, gfnBefore, 1, Guest.MapFlags.Writable);
        d.Kernel.Map(0x80001000, gfnAfter, 1, Guest.MapFlags.Writable);
        d.LogDirty.Enable();
        d.LogDirty.Read(clean: true);
        d.Vcpus[0].WriteVirtual(0x80000000, new byte[] { 1 });            // before the switch
        d.SetPagingMode(to);
        d.Vcpus[0].WriteVirtual(0x80001000, new byte[] { 1 });            // after it
        var peek = d.LogDirty.Read(clean: false);
        var dirty = new HashSet<ulong>(peek.DirtyGfns());
        Assert.Contains(gfnBefore, dirty);
        Assert.Contains(gfnAfter, dirty);
        d.LogDirty.Read(clean: true);
        d.Vcpus[1].WriteVirtual(0x80001000, new byte[] { 2 });            // armed again under the new mode
        var next = new HashSet<ulong>(d.LogDirty.Read(clean: true).DirtyGfns());
        Assert.Contains(gfnAfter, next);
        Assert.DoesNotContain(gfnBefore, next);                            // exact: nothing beyond the truth here
        var problems = new List<string>();
        d.Mode!.Audit(problems);
        Assert.Empty(problems);
    }

    [Theory]
    [InlineData(PagingModeKind.Hap)]
    [InlineData(PagingModeKind.Arm)]
    public void StoppingVramTrackingDuringLogDirtyKeepsLogDirtysPagesArmed(PagingModeKind mode)
    {
        var d = Build(mode, VramStrategy.Tracker);
        d.Vram.Track(M0.FirstGfn, 16);                                   // the range's pages are armed by the tracker
        d.LogDirty.Enable();
        d.LogDirty.Read(clean: true);
        d.Vram.Track(0, 0);                                              // nr == 0: all VRAM tracking stops
        d.Vcpus[0].WriteVirtual(Va + 2 * 4096, new byte[] { 1 });
        Assert.Contains(M0.FirstGfn + 2, d.LogDirty.Read(clean: true).DirtyGfns());
        d.RemoveFramebuffer("m0");
        var problems = new List<string>();
        d.Mode!.Audit(problems);
        Assert.Empty(problems);
    }

    [Fact]
    public void StoppingARangeAfterASwitchNeverHandsTheOldPoolsFramesToTheNewPool()
    {
        // Root cause of the NullReferenceException/KeyNotFoundException and refcount audit failures:
        // a back-links range armed by the old shadow instance was disarmed by the new one, which
        // released the old pool's link pages (already given back to the host) into its own pool.
        var d = Build(PagingModeKind.Shadow, VramStrategy.BackLinks);
        for (ulong p = 0; p < 16; p++) d.Vcpus[0].WriteVirtual(Va + (p << 12), new byte[1]);   // writable: linked
        d.Vram.Track(M0.FirstGfn, 16);                                         // links taken from the pool
        var before = (Paging.Shadow.ShadowMode)d.Mode!;
        Assert.True(d.Counters[Diagnostics.PerfCounter.VramLinkPages] > 0);
        d.SetPagingMode(PagingModeKind.Shadow);
        d.Vram.Track(0, 0);                                                    // stop: disarm under the instance that armed it
        var now = (Paging.Shadow.ShadowMode)d.Mode!;
        Assert.NotSame(before, now);
        Assert.True(now.PoolFree <= now.PoolTotal, $"pool free {now.PoolFree} > total {now.PoolTotal}");
        ShadowModeTests.AssertAuditClean(d);
        // A second domain takes the frames the first pool gave back; nothing of it may be shadow memory.
        var host = d.Host!;
        for (int i = 0; i < 200; i++) d.Vcpus[i & 1].WriteVirtual(Va + ((ulong)(i % 16) << 12), new byte[] { (byte)i });
        ShadowModeTests.AssertAuditClean(d);
        host.DestroyDomain(d);                                                 // every frame given back exactly once
        Assert.Equal(0UL, host.Machine.AllocatedFrames);
    }

    [Fact]
    public void BackLinkPagesNeverStarveTheShadowsOfTheirPool()
    {
        // A 1 MiB pool (256 frames) and a 768-page framebuffer mapped 40 times: links could want
        // 120 pool pages. They may take half the pool at most and never its last frames, so a
        // fault always finds room for a full shadow path; past that the range is all dirty (counted).
        var host = new XenHost(4UL << 30);
        var c = TestDomains.Config("starve", 64, vcpus: 2);
        c.Paging = PagingModeKind.Shadow;
        c.ShadowMemoryMiB = 1;
        c.Framebuffers.Add(new FramebufferConfig("big", 0xF0000000, 1024, 768, 32));
        var d = host.CreateDomain(c);
        d.Vram.Strategy = VramStrategy.BackLinks;
        d.Vram.Track(0xF0000, 768);
        for (int a = 0; a < 40; a++)
        {
            ulong va = 0x4000000000UL + ((ulong)a << 30);
            d.MountFramebuffer("big", va);
            for (ulong p = 0; p < 768; p += 1) Assert.True(d.Vcpus[a & 1].WriteVirtual(va + (p << 12), new byte[] { (byte)a }).IsOk);
        }
        var mode = (Paging.Shadow.ShadowMode)d.Mode!;
        Assert.True(d.Counters[Diagnostics.PerfCounter.VramLinkPages] <= mode.PoolTotal / 2, $"{d.Counters[Diagnostics.PerfCounter.VramLinkPages]} link pages of {mode.PoolTotal}");
        Assert.Equal(768, d.Vram.Track(0xF0000, 768).DirtyPages);              // every page was written
        d.Vcpus[0].WriteVirtual(0x4000000000UL + 7 * 4096, new byte[] { 1 });
        var r = d.Vram.Track(0xF0000, 768);
        Assert.Contains(7, Dirty(r));                                          // exact, or all dirty once links ran out (counted)
        Assert.True(!r.AllDirty || d.Counters[Diagnostics.PerfCounter.VramLinkExhausted] > 0);
        ShadowModeTests.AssertAuditClean(d);
    }
}
