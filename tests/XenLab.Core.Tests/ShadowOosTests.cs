using System.Collections.Generic;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Paging;
using XenLab.Paging.Modes;
using XenLab.Paging.Shadow;

namespace XenLab.Tests;

/// <summary>
/// Out-of-sync L1 shadows against hand-computed expectations (seed 001): which slot a page
/// lands in, who is punted, who is evicted, and how many entries a resync re-propagates with
/// and without snapshots.
/// </summary>
public class ShadowOosTests
{
    private const ulong HostBytes = 4UL << 30;        // 0x100000 frames
    private const ulong RegionVa = 0x400000;          // region k at 0x400000 + k * 2 MiB has its own L1 table
    private const ulong AliasVa = 0x40000000;         // the kernel's page-table pool, mapped writable

    private static Domain Build(OosMode oos, int vcpus = 1, int regions = 6, int slots = PagingOptions.DefaultOosSlots)
    {
        var host = new XenHost(HostBytes);
        var c = TestDomains.Config("oos", 64, 128, vcpus);
        c.Paging = PagingModeKind.Shadow;
        c.ShadowMemoryMiB = 4;
        c.KernelPtPages = 64;
        c.PagingOptions = c.PagingOptions with { Oos = oos, ShadowPrefetch = false, OosSlots = slots };
        var d = host.CreateDomain(c);
        // Tables: PML4 = pool+0, PDPT = pool+1, PD = pool+2, then one L1 per 2 MiB region: pool+3+k.
        for (int k = 0; k < regions; k++)
            d.Kernel.Map(RegionVa + ((ulong)k << 21), 0x2000 + (ulong)k * 8, 8, MapFlags.Writable);
        // The alias needs its own PDPT/PD/L1 pages after those.
        d.Kernel.Map(AliasVa, d.Kernel.PoolBaseGfn, 64, MapFlags.Writable);
        foreach (var v in d.Vcpus)
            for (int k = 0; k < regions; k++) v.ReadVirtual(RegionVa + ((ulong)k << 21), new byte[1]);   // shadow every L1
        return d;
    }

    /// <summary>The L1 table of region k: pool pfn 0x100 + 3 + k.</summary>
    private static ulong L1Gfn(Domain d, int k) => d.Kernel.PoolBaseGfn + 3 + (ulong)k;

    /// <summary>
    /// Independent model of the build: populated pfns ascending (0..0x9e, then 0x100..) take frames
    /// from the top down, so pfn 0x100 + n gets frame 0x100000 - 1 - 0x9f - n.
    /// </summary>
    private static ulong ExpectedGmfn(ulong pfn) => (HostBytes >> 12) - 1 - 0x9F - (pfn - 0x100);

    private static void WriteEntryThroughAlias(Domain d, int vcpu, ulong tableGfn, int index, ulong value)
    {
        ulong va = AliasVa + ((tableGfn - d.Kernel.PoolBaseGfn) << 12) + (ulong)index * 8;
        Assert.True(d.Vcpus[vcpu].WriteVirtual(va, System.BitConverter.GetBytes(value)).IsOk);
    }

    private static ShadowMode Mode(Domain d) => (ShadowMode)d.Mode!;

    [Fact]
    public void PagesLandInGmfnModThreeThenPuntAndEvictAsTheSeedSays()
    {
        var d = Build(OosMode.Snapshot);
        var sm = Mode(d);
        var g = new ulong[6];
        for (int k = 0; k < 6; k++)
        {
            g[k] = ExpectedGmfn(L1Gfn(d, k));
            Assert.True(d.TryGetRam(L1Gfn(d, k), out var m));
            Assert.Equal(g[k], m.Value);                               // the model of the allocator holds
        }
        int h0 = (int)(g[0] % 3);
        // Consecutive descending gmfns: g[k] % 3 == (h0 - k) mod 3, so g[3] shares P0's slot,
        // g[1] hashes to h0+2 and g[2] to h0+1.
        Assert.Equal(h0, (int)(g[3] % 3));
        Assert.Equal((h0 + 2) % 3, (int)(g[1] % 3));
        Assert.Equal((h0 + 1) % 3, (int)(g[2] % 3));

        ulong entry = (0x2100UL << 12) | 0x7;          // any new, valid leaf
        WriteEntryThroughAlias(d, 0, L1Gfn(d, 0), 100, entry);          // P0 out of sync: slot h0
        Assert.Equal(new[] { (h0, g[0]) }, Slots(sm));

        WriteEntryThroughAlias(d, 0, L1Gfn(d, 3), 100, entry);          // P3 hashes to h0 too: P0, which hashes there, is punted to h0+1
        Assert.Equal(new[] { (h0, g[3]), ((h0 + 1) % 3, g[0]) }, Sorted(Slots(sm), h0));
        Assert.Equal(0, d.Counters[PerfCounter.OosEvict]);

        WriteEntryThroughAlias(d, 0, L1Gfn(d, 1), 100, entry);          // P1 into its own empty slot h0+2
        Assert.Equal(3, Slots(sm).Count);

        WriteEntryThroughAlias(d, 0, L1Gfn(d, 2), 100, entry);          // P2 hashes to h0+1, held by P0 which hashes elsewhere: P0 is evicted
        Assert.Equal(1, d.Counters[PerfCounter.OosEvict]);
        Assert.Equal(1, d.Counters[PerfCounter.OosResync]);
        Assert.False(sm.IsOutOfSync(L1Gfn(d, 0)));
        Assert.Equal(new[] { (h0, g[3]), ((h0 + 1) % 3, g[2]), ((h0 + 2) % 3, g[1]) }, Sorted(Slots(sm), h0));
        ShadowModeTests.AssertAuditClean(d);
    }

    [Theory]
    [InlineData(OosMode.Snapshot, 5, 512)]     // only the 5 changed entries; all 512 compared
    [InlineData(OosMode.NoSnapshot, 512, 0)]   // every entry revalidated, nothing to compare with
    public void AResyncRepropagatesOnlyWhatChangedWhenThereIsASnapshot(OosMode oos, int repropagated, int compared)
    {
        var d = Build(oos, regions: 1);
        ulong l1 = L1Gfn(d, 0);
        for (int i = 0; i < 5; i++) WriteEntryThroughAlias(d, 0, l1, 200 + i, ((0x2100UL + (ulong)i) << 12) | 0x7);
        Assert.Equal(1, d.Counters[PerfCounter.OosUnsync]);
        long before = d.Counters[PerfCounter.OosEntriesRepropagated];
        d.Vcpus[0].LoadCr3(d.Vcpus[0].Cr3);                         // resync on CR3 load
        Assert.Equal(repropagated, d.Counters[PerfCounter.OosEntriesRepropagated] - before);
        Assert.Equal(compared, d.Counters[PerfCounter.OosEntriesCompared]);
        Assert.False(Mode(d).IsOutOfSync(l1));
        ShadowModeTests.AssertAuditClean(d);
        // The new entries are in force: 0x400000 + 200 pages now reads gfn 0x2100.
        d.WriteGuestPhysical(0x2100UL << 12, new byte[] { 0xAB });
        var b = new byte[1];
        Assert.True(d.Vcpus[0].ReadVirtual(RegionVa + (200UL << 12), b).IsOk);
        Assert.Equal(0xAB, b[0]);
    }

    [Fact]
    public void WithOosOffEveryGuestWriteToTheTableTraps()
    {
        var d = Build(OosMode.Off, regions: 1);
        long emulated = d.Counters[PerfCounter.ShadowEmulateWrite];
        for (int i = 0; i < 5; i++) WriteEntryThroughAlias(d, 0, L1Gfn(d, 0), 200 + i, ((0x2100UL + (ulong)i) << 12) | 0x7);
        Assert.Equal(emulated + 5, d.Counters[PerfCounter.ShadowEmulateWrite]);
        Assert.Equal(0, d.Counters[PerfCounter.OosUnsync]);
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void ACr3LoadOnAnotherVcpuOnlyUpdatesThePageAndLeavesItOutOfSync()
    {
        var d = Build(OosMode.Snapshot, vcpus: 2, regions: 1);
        ulong l1 = L1Gfn(d, 0);
        WriteEntryThroughAlias(d, 1, l1, 300, (0x2100UL << 12) | 0x7);    // vcpu1 unsyncs it
        WriteEntryThroughAlias(d, 1, l1, 301, (0x2101UL << 12) | 0x7);
        d.Vcpus[0].LoadCr3(d.Vcpus[0].Cr3);
        Assert.True(Mode(d).IsOutOfSync(l1));
        Assert.Equal(1, d.Counters[PerfCounter.OosLightResync]);
        Assert.Equal(2, d.Counters[PerfCounter.OosEntriesRepropagated]);
        ShadowModeTests.AssertAuditClean(d);
        d.Vcpus[1].LoadCr3(d.Vcpus[1].Cr3);                             // its own vCPU resyncs it
        Assert.False(Mode(d).IsOutOfSync(l1));
        Assert.Equal(2, d.Counters[PerfCounter.OosEntriesRepropagated]); // nothing changed since the light update
        ShadowModeTests.AssertAuditClean(d);
    }

    /// <summary>
    /// oos_hash_add as oos.c writes it, as a model: the slot is gmfn % N; an occupant that hashes
    /// there is punted to the next slot; whatever holds the slot then is crushed (resynced).
    /// Returns whether something was evicted.
    /// </summary>
    private static bool ModelHashAdd(ulong[] oos, ulong gmfn)
    {
        int n = oos.Length, idx = (int)(gmfn % (ulong)n);
        if (oos[idx] != 0 && (int)(oos[idx] % (ulong)n) == idx)
        {
            (oos[idx], gmfn) = (gmfn, oos[idx]);
            idx = (idx + 1) % n;
        }
        bool evicted = oos[idx] != 0;
        oos[idx] = gmfn;
        return evicted;
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(7)]
    public void SlotsFollowOosHashAddForEveryCount(int slots)
    {
        const int regions = 10;
        var d = Build(OosMode.Snapshot, regions: regions, slots: slots);
        var sm = Mode(d);
        var model = new ulong[slots];
        long evictions = 0;
        uint lcg = 12345;
        for (int step = 0; step < 40; step++)
        {
            lcg = lcg * 1103515245 + 12345;
            int k = (int)((lcg >> 16) % regions);
            ulong gmfn = ExpectedGmfn(L1Gfn(d, k));
            if (System.Array.IndexOf(model, gmfn) < 0 && ModelHashAdd(model, gmfn)) evictions++;
            WriteEntryThroughAlias(d, 0, L1Gfn(d, k), 100 + step % 8, (0x2100UL << 12) | 0x7);
            var expected = new List<(int, ulong)>();
            for (int i = 0; i < slots; i++) if (model[i] != 0) expected.Add((i, model[i]));
            Assert.Equal(expected, Slots(sm));
            Assert.Equal(evictions, d.Counters[PerfCounter.OosEvict]);
        }
        Assert.True(evictions > 0);
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void OneSlotIsRefusedWithAClearError()
    {
        var host = new XenHost(HostBytes);
        var c = TestDomains.Config("oos1", 64, 128, 1);
        c.Paging = PagingModeKind.Shadow;
        c.PagingOptions = c.PagingOptions with { OosSlots = 1 };
        var ex = Assert.ThrowsAny<XenLabException>(() => host.CreateDomain(c));
        Assert.Contains("oos_slots 1 must be between 2 and 64", ex.Message);
    }

    private const ulong UpperEntry = X86Pte.Present | X86Pte.Writable | X86Pte.User | X86Pte.Accessed;

    [Fact]
    public void AnOutOfSyncL1IsResyncedWhenItsShadowIsLinkedIntoAnL2()
    {
        // shadow_set_l2e: "if the new sl2e points at an out-of-sync L1, sh_resync it" before linking.
        var d = Build(OosMode.Snapshot, regions: 2);
        ulong p0 = L1Gfn(d, 0), pd = d.Kernel.PoolBaseGfn + 2;
        WriteEntryThroughAlias(d, 0, p0, 100, (0x2100UL << 12) | 0x7);
        Assert.True(Mode(d).IsOutOfSync(p0));
        d.WriteGuestPhysU64((pd << 12) + 10 * 8, (p0 << 12) | UpperEntry);     // a second PD entry for the same L1
        Assert.False(Mode(d).IsOutOfSync(p0));
        Assert.Equal(1, d.Counters[PerfCounter.OosResync]);
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void LinkingAnExistingL3ShadowResyncsEveryOutOfSyncPage()
    {
        // sh_map_and_validate_gl4e: a valid sl3mfn for the new entry means shadow_resync_all.
        var d = Build(OosMode.Snapshot, regions: 2);
        ulong pml4 = d.Kernel.PoolBaseGfn, pdpt = pml4 + 1;
        WriteEntryThroughAlias(d, 0, L1Gfn(d, 0), 100, (0x2100UL << 12) | 0x7);
        WriteEntryThroughAlias(d, 0, L1Gfn(d, 1), 100, (0x2100UL << 12) | 0x7);
        Assert.Equal(2, Mode(d).OosSlots().Count);
        long allocs = d.Counters[PerfCounter.ShadowAlloc];
        d.WriteGuestPhysU64((pml4 << 12) + 1 * 8, (pdpt << 12) | UpperEntry);   // an existing L3 shadow, linked again
        Assert.Equal(allocs, d.Counters[PerfCounter.ShadowAlloc]);              // nothing made: linking alone resyncs
        Assert.Empty(Mode(d).OosSlots());
        Assert.Equal(2, d.Counters[PerfCounter.OosResync]);
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void ACr3LoadSkipsTheLightResyncOfAPageTheNewTablesCannotReach()
    {
        // sh_safe_not_to_sync: the L1 shadow is linked once, up single links to a top that is not
        // the loading vCPU's, so shadow_sync_other_vcpus leaves it alone.
        var d = Build(OosMode.Snapshot, vcpus: 2, regions: 1);
        ulong l1 = L1Gfn(d, 0), original = d.Vcpus[0].Cr3;
        WriteEntryThroughAlias(d, 1, l1, 300, (0x2100UL << 12) | 0x7);          // vcpu1 unsyncs it
        ulong root = d.Kernel.PoolBaseGfn + 50;
        for (ulong t = 0; t < 4; t++) d.WriteGuestPhysical((root + t) << 12, new byte[4096]);
        for (ulong t = 0; t < 3; t++) d.WriteGuestPhysU64((root + t) << 12, ((root + t + 1) << 12) | 7);
        d.WriteGuestPhysU64((root + 3) << 12, (0x2000UL << 12) | 3);
        d.Vcpus[0].LoadCr3(root << 12);                                          // a separate address space
        Assert.Equal(1, d.Counters[PerfCounter.OosLightResyncSkipped]);
        Assert.Equal(0, d.Counters[PerfCounter.OosLightResync]);
        Assert.True(Mode(d).IsOutOfSync(l1));
        d.Vcpus[0].LoadCr3(original);                                            // back on tables that reach it
        Assert.Equal(1, d.Counters[PerfCounter.OosLightResync]);
        Assert.Equal(1, d.Counters[PerfCounter.OosLightResyncSkipped]);
        ShadowModeTests.AssertAuditClean(d);
    }

    private static List<(int, ulong)> Slots(ShadowMode sm)
    {
        var list = new List<(int, ulong)>();
        foreach (var s in sm.OosSlots()) list.Add((s.Slot, s.Gmfn));
        return list;
    }

    private static (int, ulong)[] Sorted(List<(int, ulong)> slots, int h0)
    {
        slots.Sort((a, b) => ((a.Item1 - h0 + 3) % 3).CompareTo((b.Item1 - h0 + 3) % 3));
        return slots.ToArray();
    }
}
