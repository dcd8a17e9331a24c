using System.Collections.Generic;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Dirty;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Paging;
using XenLab.Paging.Modes;
using XenLab.Paging.Shadow;

namespace XenLab.Tests;

/// <summary>
/// Back-link pages come from the shadow pool, and room for them is made as shadow_prealloc makes
/// room for any pool page (Xen's shadow_alloc_p2m_page: prealloc, then alloc): shadows are
/// recycled at the fault handler's safe point, before the walk, so a link is had. Stuck dirty is
/// left for the real limits only: 64 links per page, and the links' half of the pool.
/// </summary>
public class BackLinkPoolTests
{
    private const ulong FbGfn = 0xF0000;
    private const ulong MountVa = 0x40000000;

    private static Domain Build(FramebufferConfig fb)
    {
        var host = new XenHost(4UL << 30);
        var c = TestDomains.Config("links", 64, vcpus: 1);
        c.Paging = PagingModeKind.Shadow;
        c.ShadowMemoryMiB = 1;                                 // 256 frames
        c.Framebuffers.Add(fb);
        var d = host.CreateDomain(c);
        d.Vram.Strategy = VramStrategy.BackLinks;
        return d;
    }

    /// <summary>
    /// Loads CR3s of fresh four-level address spaces (each mapping gfn 0x2000 at 0) and touches
    /// them until the pool has at most the link reserve (8 frames) free: pinned tops fill it.
    /// </summary>
    private static void FillPoolWithOtherAddressSpaces(Domain d, ShadowMode mode, Vcpu v)
    {
        for (int i = 0; mode.PoolFree > 8; i++)
        {
            ulong root = d.Kernel.PoolBaseGfn + 100 + (ulong)i * 4;
            ulong pdpt = root + 1, pd = root + 2, pt = root + 3;
            foreach (var g in new[] { root, pdpt, pd, pt }) d.WriteGuestPhysical(g << 12, new byte[4096]);
            d.WriteGuestPhysU64(root << 12, (pdpt << 12) | 7);
            d.WriteGuestPhysU64(pdpt << 12, (pd << 12) | 7);
            d.WriteGuestPhysU64(pd << 12, (pt << 12) | 7);
            d.WriteGuestPhysU64(pt << 12, (0x2000UL << 12) | 3);
            v.LoadCr3(root << 12);
            Assert.True(v.ReadVirtual(0, new byte[1]).IsOk);
        }
    }

    [Fact]
    public void ANearlyFullPoolRecyclesShadowsForALinkPageInsteadOfGoingStuck()
    {
        var d = Build(new FramebufferConfig("mon0", 0xF0000000, 1024, 768, 32));
        var mode = (ShadowMode)d.Mode!;
        var v = d.Vcpus[0];
        ulong kernelCr3 = v.Cr3;
        d.MountFramebuffer("mon0", MountVa);
        for (ulong p = 0; p < 768; p++) Assert.True(v.ReadVirtual(MountVa + (p << 12), new byte[1]).IsOk);   // read-only entries: no link

        // Other address spaces fill the pool with pinned shadows, down to the link reserve (8
        // frames) or below, without a recycle yet: a link page taken in SetL1 now would fail.
        // (Before arming: once a range may want a link page, every walk keeps room for one.)
        FillPoolWithOtherAddressSpaces(d, mode, v);
        Assert.Equal(0, d.Counters[PerfCounter.ShadowRecycle]);
        Assert.InRange(mode.PoolFree, 5, 8);
        v.LoadCr3(kernelCr3);
        Assert.True(d.Vram.Track(FbGfn, 768).AllDirty);                      // arm: nothing to link yet
        Assert.Equal(0, d.Counters[PerfCounter.VramLinkPages]);
        Assert.Equal(0, d.Counters[PerfCounter.ShadowRecycle]);

        // The first writable mapping of the framebuffer needs a link page: the fault handler
        // recycles tops before its walk, and the link is had.
        Assert.True(v.WriteVirtual(MountVa + 5 * 4096, new byte[] { 1 }).IsOk);
        Assert.True(d.Counters[PerfCounter.ShadowRecycle] > 0);
        Assert.Equal(0, d.Counters[PerfCounter.ShadowBlowTables]);           // unpinning idle tops was enough
        Assert.Equal(1, d.Counters[PerfCounter.VramLinkPages]);
        Assert.Equal(1, d.Counters[PerfCounter.VramLinks]);
        Assert.True(v.WriteVirtual(MountVa + 700 * 4096, new byte[] { 2 }).IsOk);
        Assert.Equal(0, d.Counters[PerfCounter.VramLinkExhausted]);
        Assert.Equal(new[] { 5, 700 }, d.Vram.Track(FbGfn, 768).DirtyPageIndexes());
        Assert.Empty(d.Vram.Track(FbGfn, 768).DirtyPageIndexes());          // exact: nothing stuck
        Assert.True(v.WriteVirtual(MountVa + 5 * 4096, new byte[] { 3 }).IsOk);
        Assert.Equal(new[] { 5 }, d.Vram.Track(FbGfn, 768).DirtyPageIndexes());
        Assert.Equal(0, d.Counters[PerfCounter.VramStuckDirty]);
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void ArmRecyclesShadowsBeforeItLinksTheMappingsItFinds()
    {
        var d = Build(new FramebufferConfig("mon0", 0xF0000000, 1024, 768, 32));
        var mode = (ShadowMode)d.Mode!;
        var v = d.Vcpus[0];
        ulong kernelCr3 = v.Cr3;
        d.MountFramebuffer("mon0", MountVa);
        for (ulong p = 0; p < 300; p++) Assert.True(v.WriteVirtual(MountVa + (p << 12), new byte[1]).IsOk);   // 300 writable entries, untracked
        FillPoolWithOtherAddressSpaces(d, mode, v);
        v.LoadCr3(kernelCr3);
        long recycles = d.Counters[PerfCounter.ShadowRecycle];

        // 300 links want two link pages (256 links each): recycled for before the rmap walk.
        Assert.True(d.Vram.Track(FbGfn, 768).AllDirty);
        Assert.True(d.Counters[PerfCounter.ShadowRecycle] > recycles);
        Assert.Equal(2, d.Counters[PerfCounter.VramLinkPages]);
        Assert.Equal(300, d.Counters[PerfCounter.VramLinks]);
        Assert.Equal(0, d.Counters[PerfCounter.VramLinkExhausted]);
        Assert.True(v.WriteVirtual(MountVa + 299 * 4096, new byte[] { 9 }).IsOk);
        Assert.Equal(new[] { 299 }, d.Vram.Track(FbGfn, 768).DirtyPageIndexes());
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void WhenTheLinksShareOfThePoolIsSpentOnlyThePagesLeftWithoutALinkAreStuck()
    {
        // 1024x512x32: 512 pages, one L1 shadow per mapping. 63 writable aliases of every page
        // take 63 x 512 = 32,256 links, the links' whole share: (256 - 3 snapshots) / 2 = 126
        // pages of 256. A 64th alias written on pages 0..9 cannot be linked (no recycling gives
        // back what the share forbids): those ten pages alone are stuck, reported every query.
        var d = Build(new FramebufferConfig("mon0", 0xF0000000, 1024, 512, 32));
        var mode = (ShadowMode)d.Mode!;
        var v = d.Vcpus[0];
        Assert.True(d.Vram.Track(FbGfn, 512).AllDirty);
        for (int a = 0; a < 64; a++)
        {
            ulong va = 0x80000000UL + ((ulong)a << 21);
            d.Kernel.Map(va, FbGfn, 512, MapFlags.Writable);
            for (ulong p = 0; p < (a < 63 ? 512UL : 10UL); p++)
                Assert.True(v.WriteVirtual(va + (p << 12), new byte[] { (byte)a }).IsOk);
        }
        int share = (mode.PoolTotal - 3) / 2;
        Assert.Equal(126, share);
        Assert.Equal(share, d.Counters[PerfCounter.VramLinkPages]);
        Assert.Equal(share * 256, d.Counters[PerfCounter.VramLinks]);
        Assert.Equal(10, d.Counters[PerfCounter.VramLinkExhausted]);
        Assert.Equal(0, d.Counters[PerfCounter.ShadowBlowTables]);           // no link was lost to a blow

        var all = d.Vram.Track(FbGfn, 512);
        Assert.False(all.AllDirty, all.Reason);
        Assert.Equal(512, all.DirtyPages);                                   // every page was written
        var expectStuck = new List<int>();
        for (int p = 0; p < 10; p++) expectStuck.Add(p);
        long stuck = d.Counters[PerfCounter.VramStuckDirty];
        Assert.Equal(expectStuck, d.Vram.Track(FbGfn, 512).DirtyPageIndexes());   // nothing written: the ten stuck
        Assert.Equal(stuck + 10, d.Counters[PerfCounter.VramStuckDirty]);
        Assert.True(v.WriteVirtual(0x80000000UL + 100 * 4096, new byte[] { 1 }).IsOk);
        expectStuck.Add(100);
        Assert.Equal(expectStuck, d.Vram.Track(FbGfn, 512).DirtyPageIndexes());   // the rest stays exact
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void AnEmulatedPageTableWriteRecyclesForItsLinkPageToo()
    {
        // A guest write to its own (write-protected) L1 table is emulated and the shadow entry
        // revalidated: a writable, dirty entry for a VRAM page is linked there, not at a fault.
        // Room for its link page is made before the revalidation, as before a fault's walk.
        var d = Build(new FramebufferConfig("mon0", 0xF0000000, 1024, 768, 32));
        var mode = (ShadowMode)d.Mode!;
        var v = d.Vcpus[0];
        ulong kernelCr3 = v.Cr3;
        d.MountFramebuffer("mon0", MountVa);
        for (ulong p = 0; p < 768; p++) Assert.True(v.ReadVirtual(MountVa + (p << 12), new byte[1]).IsOk);
        FillPoolWithOtherAddressSpaces(d, mode, v);
        v.LoadCr3(kernelCr3);
        Assert.True(d.Vram.Track(FbGfn, 768).AllDirty);
        Assert.Equal(0, d.Counters[PerfCounter.ShadowRecycle]);

        // The guest sets page 9's PTE writable, accessed and dirty itself (A and D set: the
        // shadow entry may be writable at once), without a fault.
        ulong pte = PteAddress(d, kernelCr3, MountVa + 9 * 4096);
        Assert.True(d.TryReadPhysU64(pte, out ulong old));
        long validates = d.Counters[PerfCounter.ShadowValidate];
        long faults = d.Counters[PerfCounter.ShadowFaultFixed];
        Assert.True(d.WriteGuestPhysU64(pte, old | X86Pte.Writable | X86Pte.Accessed | X86Pte.Dirty));
        Assert.True(d.Counters[PerfCounter.ShadowValidate] > validates);     // emulated and revalidated
        Assert.True(d.Counters[PerfCounter.ShadowRecycle] > 0);
        Assert.Equal(1, d.Counters[PerfCounter.VramLinks]);
        Assert.Equal(0, d.Counters[PerfCounter.VramLinkExhausted]);
        Assert.True(v.WriteVirtual(MountVa + 9 * 4096, new byte[] { 1 }).IsOk);
        Assert.Equal(faults, d.Counters[PerfCounter.ShadowFaultFixed]);      // the write needed no fault
        Assert.Equal(new[] { 9 }, d.Vram.Track(FbGfn, 768).DirtyPageIndexes());
        Assert.Empty(d.Vram.Track(FbGfn, 768).DirtyPageIndexes());
        ShadowModeTests.AssertAuditClean(d);
    }

    private static ulong PteAddress(Domain d, ulong cr3, ulong va)
    {
        ulong table = cr3 & X86Pte.FrameMask;
        for (int level = 4; level > 1; level--)
        {
            Assert.True(d.TryReadPhysU64(table + (ulong)X86Pte.IndexAt(va, level) * 8, out ulong e));
            table = e & X86Pte.FrameMask;
        }
        return table + (ulong)X86Pte.IndexAt(va, 1) * 8;
    }

    [Fact]
    public void StoppingEveryRangeAfterTheTrackerMachineryWentOffStillGivesTheLinkPagesBack()
    {
        // Under shadow, a tracker range (pages 0..383) beside a back-links range (384..767):
        // log-dirty on and off takes the tracker's machinery away, so queries answer -EINVAL
        // until nr = 0 resets. That reset must still disarm the back-links range: its links and
        // link pages go back to the pool, and a new range starts clean (the audit checks links).
        var d = Build(new FramebufferConfig("mon0", 0xF0000000, 1024, 768, 32));
        var mode = (ShadowMode)d.Mode!;
        var v = d.Vcpus[0];
        d.MountFramebuffer("mon0", MountVa);
        d.Vram.Strategy = VramStrategy.Tracker;
        d.Vram.Track(FbGfn, 384);
        d.Vram.Strategy = VramStrategy.BackLinks;
        d.Vram.Track(FbGfn + 384, 384);
        for (ulong p = 384; p < 768; p++) Assert.True(v.WriteVirtual(MountVa + (p << 12), new byte[1]).IsOk);
        Assert.Equal(2, d.Counters[PerfCounter.VramLinkPages]);            // 384 links
        d.LogDirty.Enable();
        d.LogDirty.Disable();
        var e = Assert.Throws<VramException>(() => d.Vram.Track(FbGfn + 384, 384));
        Assert.Equal(VramErrno.EINVAL, e.Errno);
        d.Vram.Track(0, 0);                                                  // nr = 0: everything stops
        Assert.Empty(d.Vram.Ranges);
        ShadowModeTests.AssertAuditClean(d);
        mode.BlowTables();
        Assert.Equal(mode.PoolTotal - 3, mode.PoolFree);                    // all back but the 3 snapshots: no link page kept

        // Tracked again: exact, and the audit finds no link left over from before.
        Assert.True(d.Vram.Track(FbGfn + 384, 384).AllDirty);
        Assert.True(v.WriteVirtual(MountVa + 400 * 4096, new byte[1]).IsOk);
        Assert.Equal(new[] { 16 }, d.Vram.Track(FbGfn + 384, 384).DirtyPageIndexes());
        mode.BlowTables();                                                   // every link goes with its shadow
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void TheTrackerMachineryFlagGoesWithTheLastRange()
    {
        // A tracker range whose machinery log-dirty took away, then stopped: with no range left
        // nothing is inconsistent, so a back-links range made afterwards is queried normally.
        var d = Build(new FramebufferConfig("mon0", 0xF0000000, 1024, 768, 32));
        var v = d.Vcpus[0];
        d.MountFramebuffer("mon0", MountVa);
        d.Vram.Strategy = VramStrategy.Tracker;
        d.Vram.Track(FbGfn, 768);
        d.LogDirty.Enable();
        d.LogDirty.Disable();
        d.Vram.Stop(d.Vram.Find(FbGfn, 768)!);
        d.Vram.Strategy = VramStrategy.BackLinks;
        Assert.True(d.Vram.Track(FbGfn, 768).AllDirty);
        Assert.True(v.WriteVirtual(MountVa + 5 * 4096, new byte[1]).IsOk);
        Assert.Equal(new[] { 5 }, d.Vram.Track(FbGfn, 768).DirtyPageIndexes());
        ShadowModeTests.AssertAuditClean(d);
    }
}
