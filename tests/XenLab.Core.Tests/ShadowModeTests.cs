using System.Collections.Generic;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.P2m;
using XenLab.Paging;
using XenLab.Paging.Modes;
using XenLab.Paging.Shadow;

namespace XenLab.Tests;

public class ShadowModeTests
{
    private const ulong Va = 0x400000;
    private const ulong DataGfn = 0x2000;

    internal static Domain Shadow(OosMode oos = OosMode.Snapshot, int vcpus = 1, ulong shadowMiB = 4, bool prefetch = true, int slots = 3)
    {
        var host = new XenHost(4UL << 30);
        var c = TestDomains.Config("sh", 64, 128, vcpus);
        c.Paging = PagingModeKind.Shadow;
        c.ShadowMemoryMiB = shadowMiB;
        c.PagingOptions = c.PagingOptions with { Oos = oos, ShadowPrefetch = prefetch, OosSlots = slots };
        return host.CreateDomain(c);
    }

    internal static void AssertAuditClean(Domain d)
    {
        var problems = new List<string>();
        d.Mode!.Audit(problems);
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public void AFirstReadTakesAShadowFaultAndTheSecondHitsTheShadows()
    {
        var d = Shadow();
        d.Kernel.Map(Va, DataGfn, 4, MapFlags.Writable);
        var v = d.Vcpus[0];
        Assert.True(v.WriteVirtual(Va, new byte[] { 42 }).IsOk);
        Assert.Equal(1, d.Counters[PerfCounter.ShadowFaultFixed]);    // one fault built the path
        v.FlushTlb();
        var b = new byte[1];
        Assert.True(v.ReadVirtual(Va, b).IsOk);
        Assert.Equal(42, b[0]);
        Assert.Equal(1, d.Counters[PerfCounter.ShadowFaultFixed]);    // the shadows were there
        // The first walk stops at the empty top entry (1), the retry reads 4, the reread after the flush 4.
        Assert.Equal(1 + 4 + 4, d.Counters[PerfCounter.ShadowWalkMemRef]);
        AssertAuditClean(d);
    }

    [Fact]
    public void GuestAccessedAndDirtyBitsAreMaintainedByTheHypervisor()
    {
        var d = Shadow();
        d.Kernel.Map(Va, DataGfn, 1, MapFlags.Writable);
        var v = d.Vcpus[0];
        v.ReadVirtual(Va, new byte[1]);
        ulong pte = GuestWalkerTests.GuestSteps(d, Va)[^1].RawEntry;
        Assert.Equal(X86Pte.Accessed, pte & (X86Pte.Accessed | X86Pte.Dirty));
        v.WriteVirtual(Va, new byte[1]);
        pte = GuestWalkerTests.GuestSteps(d, Va)[^1].RawEntry;
        Assert.Equal(X86Pte.Accessed | X86Pte.Dirty, pte & (X86Pte.Accessed | X86Pte.Dirty));
        Assert.Equal(2, d.Counters[PerfCounter.ShadowFaultFixed]);    // the read fault and the first-write fault
        AssertAuditClean(d);
    }

    [Fact]
    public void AGuestFaultIsReInjectedWithItsErrorCode()
    {
        var d = Shadow();
        d.Kernel.Map(Va, DataGfn, 1, MapFlags.None);
        var r = d.Vcpus[0].WriteVirtual(Va, new byte[1]);
        Assert.Equal(0x3u, (uint)r.ErrorCode);
        Assert.Equal(1, d.Counters[PerfCounter.ShadowFaultGuest]);
        AssertAuditClean(d);
    }

    [Fact]
    public void WritesToAShadowedPageTableAreEmulatedWhenOosIsOff()
    {
        var d = Shadow(OosMode.Off);
        d.Kernel.Map(Va, DataGfn, 1, MapFlags.Writable);
        var v = d.Vcpus[0];
        v.ReadVirtual(Va, new byte[1]);                      // shadows the L1 at the kernel's 4th table page
        long emulated = d.Counters[PerfCounter.ShadowEmulateWrite];
        d.Kernel.Map(Va + 0x1000, DataGfn + 1, 1, MapFlags.Writable);   // the kernel writes that L1
        Assert.Equal(emulated + 1, d.Counters[PerfCounter.ShadowEmulateWrite]);
        Assert.True(d.Counters[PerfCounter.ShadowValidate] >= 1);
        Assert.True(v.WriteVirtual(Va + 0x1000, new byte[] { 5 }).IsOk);
        AssertAuditClean(d);
    }

    [Fact]
    public void AWriteFaultOnAShadowedL1UnsyncsItAndLaterWritesDoNotTrap()
    {
        var d = Shadow(OosMode.Snapshot);
        d.Kernel.Map(Va, DataGfn, 1, MapFlags.Writable);
        d.Kernel.Map(0x10000000, d.Kernel.PoolBaseGfn + 3, 1, MapFlags.Writable);   // the L1 table itself, mapped writable
        var v = d.Vcpus[0];
        v.ReadVirtual(Va, new byte[1]);                                        // L1 (gfn pool+3) now shadowed
        Assert.True(v.WriteVirtual(0x10000000 + 8, new byte[8]).IsOk);         // guest writes its own L1 entry 1
        Assert.Equal(1, d.Counters[PerfCounter.OosUnsync]);
        long faults = d.Counters[PerfCounter.ShadowFaultFixed];
        Assert.True(v.WriteVirtual(0x10000000 + 16, new byte[8]).IsOk);
        Assert.Equal(faults, d.Counters[PerfCounter.ShadowFaultFixed]);        // no trap: out of sync
        Assert.True(((ShadowMode)d.Mode!).IsOutOfSync(d.Kernel.PoolBaseGfn + 3));
        AssertAuditClean(d);
        v.LoadCr3(v.Cr3);                                                      // CR3 load resyncs
        Assert.False(((ShadowMode)d.Mode!).IsOutOfSync(d.Kernel.PoolBaseGfn + 3));
        Assert.Equal(1, d.Counters[PerfCounter.OosResync]);
        AssertAuditClean(d);
    }

    [Fact]
    public void ASmallPoolRecyclesTopsInsteadOfFailing()
    {
        var d = Shadow(shadowMiB: 1, vcpus: 1);                  // 256 frames - 3 snapshots
        var v = d.Vcpus[0];
        // Many address spaces: each CR3 gets its own top and path; the pool must recycle.
        var roots = new List<ulong>();
        for (int i = 0; i < 80; i++)
        {
            ulong root = d.Kernel.PoolBaseGfn + 100 + (ulong)i * 4;
            d.WriteGuestPhysical(root << 12, new byte[4096]);
            ulong pdpt = root + 1, pd = root + 2, pt = root + 3;
            d.WriteGuestPhysical(pdpt << 12, new byte[4096]);
            d.WriteGuestPhysical(pd << 12, new byte[4096]);
            d.WriteGuestPhysical(pt << 12, new byte[4096]);
            d.WriteGuestPhysU64(root << 12, (pdpt << 12) | 7);
            d.WriteGuestPhysU64(pdpt << 12, (pd << 12) | 7);
            d.WriteGuestPhysU64(pd << 12, (pt << 12) | 7);
            d.WriteGuestPhysU64(pt << 12, (DataGfn << 12) | 3);
            v.LoadCr3(root << 12);
            Assert.True(v.ReadVirtual(0, new byte[1]).IsOk);
        }
        Assert.True(d.Counters[PerfCounter.ShadowRecycle] > 0);
        AssertAuditClean(d);
    }
}
