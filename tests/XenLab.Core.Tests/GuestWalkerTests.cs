using System;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Paging;

namespace XenLab.Tests;

public class GuestWalkerTests
{
    private const ulong Va = 0x400000;                      // 4 MiB
    private const ulong DataGfn = 0x2000;

    private static (Domain D, Vcpu V) Mapped(MapFlags flags = MapFlags.Writable, ulong pages = 4)
    {
        var (_, d) = TestDomains.Create();
        d.Kernel.Map(Va, DataGfn, pages, flags);
        return (d, d.Vcpus[0]);
    }

    /// <summary>The guest's own entries for <paramref name="va"/>, top level first (no EPT steps).</summary>
    internal static System.Collections.Generic.List<WalkStep> GuestSteps(Domain d, ulong va)
    {
        var trace = new TranslationTrace();
        d.Vcpus[0].Explain(va, AccessKind.Read, trace);
        return trace.Steps.FindAll(s => s.Table == "guest");
    }

    private static ulong LeafPte(Domain d, ulong va) => GuestSteps(d, va)[^1].RawEntry;

    [Fact]
    public void VirtualWritesLandInTheMappedGfn()
    {
        var (d, v) = Mapped();
        Assert.True(v.WriteVirtual(Va + 0x1FFC, new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }).IsOk);
        var phys = new byte[8];
        d.ReadPhysical(((DataGfn + 1) << 12) + 0xFFC, phys);   // crosses into gfn 0x2002
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }, phys);
    }

    [Fact]
    public void AWalkSetsAccessedOnEveryLevelAndDirtyOnlyForWrites()
    {
        var (d, v) = Mapped();
        var buf = new byte[1];
        v.ReadVirtual(Va, buf);
        ulong pte = LeafPte(d, Va);
        Assert.NotEqual(0UL, pte & X86Pte.Accessed);
        Assert.Equal(0UL, pte & X86Pte.Dirty);
        v.WriteVirtual(Va, buf);
        pte = LeafPte(d, Va);
        Assert.NotEqual(0UL, pte & X86Pte.Dirty);
        var steps = GuestSteps(d, Va);
        Assert.Equal(4, steps.Count);
        foreach (var s in steps) Assert.NotEqual(0UL, s.RawEntry & X86Pte.Accessed);
        Assert.Equal((DataGfn << 12) | X86Pte.Present | X86Pte.Writable | X86Pte.Accessed | X86Pte.Dirty, pte);
    }

    [Fact]
    public void ASecondAccessHitsTheTlb()
    {
        var (d, v) = Mapped();
        var buf = new byte[8];
        v.ReadVirtual(Va, buf);
        long walks = d.Counters[PerfCounter.PageWalk];
        v.ReadVirtual(Va + 8, buf);
        Assert.Equal(walks, d.Counters[PerfCounter.PageWalk]);
        Assert.Equal(1, d.Counters[PerfCounter.TlbHit]);
        Assert.Equal(4, d.Counters[PerfCounter.PageWalkMemRef]);   // one 4-level walk so far
    }

    [Fact]
    public void AWriteThroughACleanTlbEntryWalksAgainToSetDirty()
    {
        var (d, v) = Mapped();
        var buf = new byte[1];
        v.ReadVirtual(Va, buf);                                 // fills the TLB with D clear
        v.WriteVirtual(Va, buf);
        Assert.Equal(1, d.Counters[PerfCounter.TlbDirtyRewalk]);
        Assert.Equal(2, d.Counters[PerfCounter.PageWalk]);
        v.WriteVirtual(Va, buf);                                // D now cached: no walk
        Assert.Equal(2, d.Counters[PerfCounter.PageWalk]);
    }

    [Fact]
    public void ClearingDirtyWithoutAFlushLosesTheNextWrite()
    {
        // Seed 003: "After clearing the dirty bits, you need to flush TLBs to make sure they'll get set again."
        var (d, v) = Mapped();
        var buf = new byte[1];
        v.WriteVirtual(Va, buf);
        var steps = GuestSteps(d, Va);
        ulong pteAddr = steps[^1].EntryAddress;
        d.WriteGuestPhysU64(pteAddr, steps[^1].RawEntry & ~X86Pte.Dirty);   // clear D, no flush
        v.WriteVirtual(Va, buf);
        Assert.Equal(0UL, LeafPte(d, Va) & X86Pte.Dirty);      // the write went through the stale entry
        v.InvalidatePage(Va);
        v.WriteVirtual(Va, buf);
        Assert.NotEqual(0UL, LeafPte(d, Va) & X86Pte.Dirty);   // after invlpg it is seen again
    }

    [Fact]
    public void ReadOfAnUnmappedAddressIsANotPresentFault()
    {
        var (_, v) = Mapped();
        var r = v.ReadVirtual(0x7000_0000, new byte[4]);
        Assert.Equal(TranslateStatus.PageFault, r.Status);
        Assert.Equal(0x7000_0000UL, r.FaultAddress);
        Assert.Equal(0x0u, (uint)r.ErrorCode);
        Assert.Equal(0x7000_0000UL, v.Cr2);
    }

    [Fact]
    public void WriteToAReadOnlyPageIsAProtectionFaultWithErrorCode3()
    {
        var (d, v) = Mapped(MapFlags.None);
        var before = new byte[4];
        d.ReadPhysical(DataGfn << 12, before);
        var r = v.WriteVirtual(Va, new byte[] { 9, 9, 9, 9 });
        Assert.Equal(0x3u, (uint)r.ErrorCode);                 // P | W
        var after = new byte[4];
        d.ReadPhysical(DataGfn << 12, after);
        Assert.Equal(before, after);
        Assert.Equal(1, d.Counters[PerfCounter.GuestPageFault]);
    }

    [Fact]
    public void SupervisorWritesToReadOnlyPagesSucceedWhenCr0WpIsClear()
    {
        var (_, v) = Mapped(MapFlags.None);
        v.WriteProtect = false;
        Assert.True(v.WriteVirtual(Va, new byte[] { 1 }).IsOk);
        Assert.Equal(0x7u, (uint)v.WriteVirtual(Va, new byte[] { 1 }, AccessKind.User).ErrorCode);  // P|W|U: user pages are not US here
    }

    [Fact]
    public void UserReadOfASupervisorPageHasErrorCode5()
    {
        var (_, v) = Mapped(MapFlags.Writable);
        Assert.Equal(0x5u, (uint)v.ReadVirtual(Va, new byte[1], AccessKind.User).ErrorCode);
    }

    [Fact]
    public void AReservedBitFaultsWithRsvdSet()
    {
        var (d, v) = Mapped();
        var steps = GuestSteps(d, Va);
        d.WriteGuestPhysU64(steps[^1].EntryAddress, steps[^1].RawEntry | (1UL << 50));   // above MAXPHYADDR 46
        v.InvalidatePage(Va);
        var r = v.ReadVirtual(Va, new byte[1]);
        Assert.Equal(0x9u, (uint)r.ErrorCode);                 // P | RSVD
    }

    [Fact]
    public void FetchFromAnNxPageReportsTheInstructionBit()
    {
        var (_, v) = Mapped(MapFlags.Writable | MapFlags.NoExecute);
        var t = v.Translate(Va, AccessKind.Fetch);
        Assert.Equal(0x11u, (uint)t.ErrorCode);                // P | I/D
    }

    [Fact]
    public void ATwoMiBPageWrittenRawTranslatesEveryFourKiBInside()
    {
        var (d, v) = Mapped();
        var steps = GuestSteps(d, Va);
        ulong pdeAddr = steps[2].EntryAddress;                  // PDE for 4 MiB
        d.WriteGuestPhysU64(pdeAddr, 0x1000000UL | X86Pte.Present | X86Pte.Writable | X86Pte.PageSize);  // -> gfn 0x1000
        v.FlushTlb();
        var t = v.Translate(Va + 0x5123, AccessKind.Read);
        Assert.True(t.IsOk);
        Assert.Equal(0x1005UL, t.Gfn);
        Assert.Equal(0x1005123UL, t.GuestPhysicalAddress);
        // HAP, cold: 3 guest levels x (4 EPT reads + the entry) + 3 EPT reads for the data page
        // (gfn 0x1005 lies in a 2 MiB EPT leaf: the nested walk ends at the EPDE).
        Assert.Equal(3 * 5 + 3, t.MemoryReferences);
    }

    [Fact]
    public void NonCanonicalAddressesAreRefusedBeforeAnyWalk()
    {
        var (d, v) = Mapped();
        var r = v.ReadVirtual(0x0000_8000_0000_0000, new byte[1]);
        Assert.Equal(TranslateStatus.NonCanonical, r.Status);
        Assert.Equal(0, d.Counters[PerfCounter.PageWalk]);      // no walk happened at all (Map writes tables, it does not walk)
    }

    [Fact]
    public void AMappingToAMissingGfnIsReportedNotCrashed()
    {
        var (_, d) = TestDomains.Create(memoryMiB: 64, maxMemMiB: 128);
        d.Kernel.Map(Va, 0x7000, 1, MapFlags.Writable);         // gfn 0x7000 is RAM in the E820 but unpopulated
        var r = d.Vcpus[0].WriteVirtual(Va, new byte[1]);
        Assert.Equal(TranslateStatus.PhysicalMissing, r.Status);
        Assert.Equal(0x7000UL, r.BadGfn);
    }
}
