using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Paging;
using XenLab.Paging.Modes;
using XenLab.Paging.Shadow;

namespace XenLab.Tests;

/// <summary>
/// Write-access removal as Xen's shadow code does it (oos.c oos_fixup_add and
/// oos_remove_write_access, common.c sh_remove_write_access): SHADOW_OOS_FIXUPS = 2 fix-ups per
/// out-of-sync page, evicting the oldest (made read-only at once); at resync the fix-ups go
/// first, then the direct-map guess, then a brute-force scan of every L1 shadow.
/// </summary>
public class ShadowWriteAccessTests
{
    private const ulong Va = 0x400000;
    private const ulong DataGfn = 0x2000;
    private const ulong TableGfn = 0x2100;                         // a data page that becomes an L1 table
    private const ulong Pte = X86Pte.Present | X86Pte.Writable | X86Pte.Accessed | X86Pte.Dirty;
    private const ulong Upper = X86Pte.Present | X86Pte.Writable | X86Pte.User | X86Pte.Accessed;

    private static Domain Build(ShadowWriteRemoval removal)
    {
        var host = new XenHost(4UL << 30);
        var c = TestDomains.Config("wr", 64, 128, 1);
        c.Paging = PagingModeKind.Shadow;
        c.ShadowMemoryMiB = 4;
        c.PagingOptions = c.PagingOptions with { ShadowPrefetch = false, ShadowWriteRemoval = removal };
        var d = host.CreateDomain(c);
        d.Kernel.Map(Va, DataGfn, 1, MapFlags.Writable);
        Assert.True(d.Vcpus[0].ReadVirtual(Va, new byte[1]).IsOk);
        return d;
    }

    private static ulong L1Of(Domain d) => GuestWalkerTests.GuestSteps(d, Va)[^1].EntryAddress >> 12;

    [Fact]
    public void ThreeWritableMappingsOfAnOutOfSyncPageKeepTwoFixupsAndTheResyncUsesOnlyThem()
    {
        var d = Build(ShadowWriteRemoval.Xen);
        ulong l1 = L1Of(d);
        ulong[] aliases = { 0x10000000, 0x10200000, 0x10400000 };     // three mappings of the L1 table, each in its own L1
        foreach (ulong a in aliases) d.Kernel.Map(a, l1, 1, MapFlags.Writable);
        var v = d.Vcpus[0];
        foreach (ulong a in aliases) Assert.True(v.WriteVirtual(a + 8 * 100, System.BitConverter.GetBytes((0x2001UL << 12) | Pte)).IsOk);
        Assert.True(((ShadowMode)d.Mode!).IsOutOfSync(l1));
        Assert.Equal(3, d.Counters[PerfCounter.OosFixupAdd]);
        Assert.Equal(1, d.Counters[PerfCounter.OosFixupEvict]);         // the first alias went read-only at once
        long wp = d.Counters[PerfCounter.ShadowWriteProtect];
        v.LoadCr3(v.Cr3);                                              // resync
        Assert.Equal(2, d.Counters[PerfCounter.OosFixupRemove]);
        Assert.Equal(wp + 2, d.Counters[PerfCounter.ShadowWriteProtect]);
        Assert.Equal(0, d.Counters[PerfCounter.ShadowWriteableBruteForce]);
        Assert.Equal(0, d.Counters[PerfCounter.ShadowWriteableGuess]);
        ShadowModeTests.AssertAuditClean(d);
    }

    [Theory]
    [InlineData(ShadowWriteRemoval.Xen, 0x800000UL, 0, 1)]                       // no fix-up, no guess: brute force
    [InlineData(ShadowWriteRemoval.Xen, 0xffff880000000000UL + (TableGfn << 12), 1, 0)]   // Linux's direct map: the guess finds it
    [InlineData(ShadowWriteRemoval.Rmap, 0x800000UL, 0, 0)]                      // the reverse map goes straight there
    public void PromotingAWritablyMappedPageFindsTheMappingByGuessOrBruteForce(ShadowWriteRemoval removal, ulong mapVa, int guesses, int bruteForce)
    {
        var d = Build(removal);
        var v = d.Vcpus[0];
        d.Kernel.Map(mapVa, TableGfn, 1, MapFlags.Writable);
        Assert.True(v.WriteVirtual(mapVa, System.BitConverter.GetBytes((DataGfn << 12) | Pte)).IsOk);   // entry 0 of the future table
        ulong pd = GuestWalkerTests.GuestSteps(d, Va)[^2].EntryAddress >> 12;
        d.WriteGuestPhysU64((pd << 12) + 5 * 8, (TableGfn << 12) | Upper);      // 0xA00000 now goes through TableGfn
        long wp = d.Counters[PerfCounter.ShadowWriteProtect];
        Assert.True(v.ReadVirtual(0xA00000, new byte[1]).IsOk);                  // shadowing it as an L1 removes write access
        Assert.Equal(wp + 1, d.Counters[PerfCounter.ShadowWriteProtect]);
        Assert.Equal(guesses, d.Counters[PerfCounter.ShadowWriteableGuess]);
        Assert.Equal(bruteForce, d.Counters[PerfCounter.ShadowWriteableBruteForce]);
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void TheNextPageOfARunIsFoundInTheShadowWhereTheLastBruteForceSucceeded()
    {
        // common.c sh_remove_write_access: after the guesses, the L1 shadow of the vCPU's last
        // successful brute-force search (last_writeable_pte_smfn, perf counter h_5) before any
        // new brute force. Two future tables mapped side by side share one guest L1, so one shadow.
        var d = Build(ShadowWriteRemoval.Xen);
        var v = d.Vcpus[0];
        const ulong mapVa = 0x800000;
        d.Kernel.Map(mapVa, TableGfn, 2, MapFlags.Writable);
        for (ulong k = 0; k < 2; k++)
            Assert.True(v.WriteVirtual(mapVa + (k << 12), System.BitConverter.GetBytes((DataGfn << 12) | Pte)).IsOk);
        ulong pd = GuestWalkerTests.GuestSteps(d, Va)[^2].EntryAddress >> 12;
        d.WriteGuestPhysU64((pd << 12) + 5 * 8, (TableGfn << 12) | Upper);          // 0xA00000 through TableGfn
        d.WriteGuestPhysU64((pd << 12) + 6 * 8, ((TableGfn + 1) << 12) | Upper);    // 0xC00000 through TableGfn + 1
        Assert.True(v.ReadVirtual(0xA00000, new byte[1]).IsOk);
        Assert.Equal(1, d.Counters[PerfCounter.ShadowWriteableBruteForce]);
        Assert.Equal(0, d.Counters[PerfCounter.ShadowWriteableLast]);
        Assert.True(v.ReadVirtual(0xC00000, new byte[1]).IsOk);
        Assert.Equal(1, d.Counters[PerfCounter.ShadowWriteableBruteForce]);          // no second scan
        Assert.Equal(1, d.Counters[PerfCounter.ShadowWriteableLast]);
        Assert.True(v.WriteVirtual(mapVa + 4096 + 8, System.BitConverter.GetBytes(0UL)).IsOk);   // still writable for the guest: emulated now
        ShadowModeTests.AssertAuditClean(d);
    }
}
