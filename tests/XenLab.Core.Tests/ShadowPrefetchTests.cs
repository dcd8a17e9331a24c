using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Paging;
using XenLab.Paging.Modes;
using XenLab.Paging.Shadow;

namespace XenLab.Tests;

/// <summary>
/// Prefetch as multi.c's sh_prefetch: it stops at the first shadow entry already present and at a
/// guest entry that is present but not accessed, or writable but not dirty (it would need another
/// fault for A/D anyway); and _sh_propagate makes a mapping of an out-of-sync page table writable
/// only for the demand write (ft_demand_write), never for a read fault or a prefetch.
/// </summary>
public class ShadowPrefetchTests
{
    private const ulong Va = 0x400000;
    private const ulong DataGfn = 0x2000;
    private const ulong Alias = 0x10000000;
    private const ulong Pte = X86Pte.Present | X86Pte.Writable | X86Pte.Accessed | X86Pte.Dirty;

    private static (Domain D, ulong L1) Build(OosMode oos)
    {
        var d = ShadowModeTests.Shadow(oos, prefetch: true);
        d.Kernel.Map(Va, DataGfn, 1, MapFlags.Writable);
        ulong l1 = GuestWalkerTests.GuestSteps(d, Va)[^1].EntryAddress >> 12;    // explain: touches nothing
        return (d, l1);
    }

    private static void SetEntry(Domain d, ulong l1, int i, ulong flags) =>
        d.WriteGuestPhysU64((l1 << 12) + (ulong)i * 8, ((DataGfn + (ulong)i) << 12) | flags);

    [Fact]
    public void PrefetchStopsAtAGuestEntryThatStillNeedsItsDirtyBit()
    {
        var (d, l1) = Build(OosMode.Off);
        for (int i = 0; i < 10; i++) SetEntry(d, l1, i, i == 5 ? Pte & ~X86Pte.Dirty : Pte);
        Assert.True(d.Vcpus[0].ReadVirtual(Va, new byte[1]).IsOk);
        Assert.Equal(4, d.Counters[PerfCounter.ShadowPrefetch]);             // entries 1..4; entry 5 is W without D
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void PrefetchStopsAtTheFirstShadowEntryAlreadyThere()
    {
        var (d, l1) = Build(OosMode.Snapshot);
        d.Kernel.Map(Alias, l1, 1, MapFlags.Writable);
        var v = d.Vcpus[0];
        for (int i = 0; i < 6; i++) SetEntry(d, l1, i, Pte);
        Assert.True(v.ReadVirtual(Va + 5 * 0x1000, new byte[1]).IsOk);     // entry 5 shadowed; 6.. not present in the guest
        Assert.True(v.WriteVirtual(Alias + 8 * 100, new byte[8]).IsOk);      // the table goes out of sync
        Assert.True(((ShadowMode)d.Mode!).IsOutOfSync(l1));
        for (int i = 6; i < 10; i++) SetEntry(d, l1, i, Pte);                 // unseen by the shadow: no trap
        long before = d.Counters[PerfCounter.ShadowPrefetch];
        Assert.True(v.ReadVirtual(Va, new byte[1]).IsOk);
        Assert.Equal(before + 4, d.Counters[PerfCounter.ShadowPrefetch]);   // 1..4, then entry 5 is there: stop
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void OnlyTheDemandWriteMapsAnOutOfSyncTableWritable()
    {
        var (d, l1) = Build(OosMode.Snapshot);
        const ulong Alias2 = Alias + 0x200000;                                 // a second mapping, in another L1
        d.Kernel.Map(Alias, l1, 1, MapFlags.Writable);
        d.Kernel.Map(Alias2, l1, 1, MapFlags.Writable);
        var v = d.Vcpus[0];
        Assert.True(v.ReadVirtual(Va, new byte[1]).IsOk);                    // the table is shadowed
        Assert.True(v.WriteVirtual(Alias + 8 * 100, new byte[8]).IsOk);      // out of sync through the first alias
        Assert.True(v.ReadVirtual(Alias2, new byte[8]).IsOk);                 // a read fault: read-only entry
        long faults = d.Counters[PerfCounter.ShadowFaultFixed];
        Assert.True(v.WriteVirtual(Alias2 + 8 * 101, new byte[8]).IsOk);
        Assert.Equal(faults + 1, d.Counters[PerfCounter.ShadowFaultFixed]);  // the demand write faults, then may write
        ShadowModeTests.AssertAuditClean(d);
    }
}
