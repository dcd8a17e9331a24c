using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Paging;
using XenLab.Paging.Modes;
using XenLab.Paging.Shadow;

namespace XenLab.Tests;

/// <summary>
/// TLB rules under shadow paging, from Xen's shadow code: shadow_set_l1e never flushes ("it's
/// the guest's responsibility to trigger a flush", set.c), and sh_invlpg (multi.c) zaps the
/// shadow entry only for an out-of-sync L1, flushes the local TLB for a splintered superpage
/// (FL1) and otherwise leaves the shadow alone. A guest that changes a PTE without invlpg keeps
/// using the stale translation, exactly as on hardware.
/// </summary>
public class ShadowTlbRulesTests
{
    private const ulong Va = 0x400000;
    private const ulong DataGfn = 0x2000;
    private const ulong Alias = 0x10000000;
    private const ulong Pte = X86Pte.Present | X86Pte.Writable | X86Pte.Accessed | X86Pte.Dirty;

    private static (Domain D, Vcpu V) Mapped(OosMode oos)
    {
        var d = ShadowModeTests.Shadow(oos);
        d.Kernel.Map(Va, DataGfn, 1, MapFlags.Writable);
        d.WriteGuestPhysical(DataGfn << 12, new byte[] { 0xAA });
        d.WriteGuestPhysical((DataGfn + 1) << 12, new byte[] { 0xBB });
        return (d, d.Vcpus[0]);
    }

    private static byte ReadByte(Vcpu v)
    {
        var b = new byte[1];
        Assert.True(v.ReadVirtual(Va, b).IsOk);
        return b[0];
    }

    private static ulong LeafAddress(Domain d) => GuestWalkerTests.GuestSteps(d, Va)[^1].EntryAddress;
    private static ulong LeafPte(Domain d) => GuestWalkerTests.GuestSteps(d, Va)[^1].RawEntry;

    [Theory]
    [InlineData(OosMode.Off)]
    [InlineData(OosMode.Snapshot)]
    public void ClearingDWithoutInvlpgLosesTheNextWriteAsOnHardware(OosMode oos)
    {
        var (d, v) = Mapped(oos);
        Assert.True(v.WriteVirtual(Va, new byte[1]).IsOk);                     // D set, cached in the TLB
        long flushes = d.Counters[PerfCounter.TlbFlushAll];
        d.WriteGuestPhysU64(LeafAddress(d), LeafPte(d) & ~X86Pte.Dirty);        // emulated PTE write: shadow revalidated
        Assert.Equal(flushes, d.Counters[PerfCounter.TlbFlushAll]);             // shadow_set_l1e flushes nothing
        Assert.True(v.WriteVirtual(Va, new byte[1]).IsOk);
        Assert.Equal(0UL, LeafPte(d) & X86Pte.Dirty);                           // went through the stale TLB entry
        long invlpgs = d.Counters[PerfCounter.ShadowInvlpg];
        v.InvalidatePage(Va);
        Assert.True(v.WriteVirtual(Va, new byte[1]).IsOk);
        Assert.NotEqual(0UL, LeafPte(d) & X86Pte.Dirty);                        // after invlpg: a fault sets D again
        Assert.Equal(0, d.Counters[PerfCounter.ShadowInvlpgZap]);               // in sync: nothing to zap
        Assert.Equal(invlpgs + 1, d.Counters[PerfCounter.ShadowInvlpg]);
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void RemappingAPteWithoutInvlpgKeepsTheOldFrame()
    {
        var (d, v) = Mapped(OosMode.Off);
        Assert.Equal(0xAA, ReadByte(v));
        d.WriteGuestPhysU64(LeafAddress(d), ((DataGfn + 1) << 12) | Pte);      // remap to the next frame
        Assert.Equal(0xAA, ReadByte(v));                                        // stale TLB entry: old frame
        v.InvalidatePage(Va);
        Assert.Equal(0xBB, ReadByte(v));                                        // shadow already followed the guest
        Assert.Equal(0, d.Counters[PerfCounter.ShadowInvlpgZap]);
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void InvlpgZapsTheShadowEntryOfAnOutOfSyncL1()
    {
        var (d, v) = Mapped(OosMode.Snapshot);
        ulong l1 = LeafAddress(d) >> 12;
        d.Kernel.Map(Alias, l1, 1, MapFlags.Writable);                          // the L1 table, mapped writable
        Assert.Equal(0xAA, ReadByte(v));
        int index = X86Pte.IndexAt(Va, 1);
        Assert.True(v.WriteVirtual(Alias + 8 * (ulong)((index + 1) % 512), new byte[8]).IsOk);   // unsync
        Assert.True(((ShadowMode)d.Mode!).IsOutOfSync(l1));
        Assert.True(v.WriteVirtual(Alias + 8 * (ulong)index, System.BitConverter.GetBytes(((DataGfn + 1) << 12) | Pte)).IsOk);
        Assert.Equal(0xAA, ReadByte(v));                                        // no trap, no invlpg: old frame
        v.InvalidatePage(Va);
        Assert.Equal(1, d.Counters[PerfCounter.ShadowInvlpgZap]);               // only an OOS L1 is zapped
        Assert.Equal(0xBB, ReadByte(v));                                        // re-propagated on the next fault
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void InvlpgInASplinteredSuperpageFlushesTheWholeTlb()
    {
        var (d, v) = Mapped(OosMode.Off);
        var steps = GuestWalkerTests.GuestSteps(d, Va);
        d.WriteGuestPhysU64(steps[^2].EntryAddress, (DataGfn << 12) | Pte | X86Pte.PageSize);   // a 2 MiB page
        v.FlushTlb();
        Assert.Equal(0xAA, ReadByte(v));                                        // through an FL1 shadow
        long flushes = d.Counters[PerfCounter.TlbFlushAll];
        v.InvalidatePage(Va + 0x1000);
        Assert.Equal(1, d.Counters[PerfCounter.ShadowInvlpgFl1Flush]);
        Assert.Equal(flushes + 1, d.Counters[PerfCounter.TlbFlushAll]);         // sh_flush_local
        Assert.Equal(0, v.Tlb.ValidEntries);
        ShadowModeTests.AssertAuditClean(d);
    }
}
