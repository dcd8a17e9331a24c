using System.Linq;
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
/// The seed-003 D-bit design (Tim Deegan's review): the framebuffer's address is learned by the
/// shadow fault handler, kept against aliases, forgotten only when the query finds it is not the
/// mapping in use; queries read the shadows at that address and never the guest's tables.
/// </summary>
public class ShadowDirtyBitVramTests
{
    private const ulong FbGfn = 0xF0000;
    private const ulong MountVa = 0x40000000;
    private const ulong AliasVa = 0x80000000;

    /// <summary>DirtyVramTests' domain (the framebuffer mapped writable at MountVa, every page read once), range armed.</summary>
    private static Domain Armed(out Vcpu v)
    {
        var d = DirtyVramTests.Build(PagingModeKind.Shadow, VramStrategy.DirtyBit);
        v = d.Vcpus[0];
        Assert.True(d.Vram.Track(FbGfn, 768).AllDirty);                      // arm: the reads before it taught nothing
        Assert.Equal(0, d.Counters[PerfCounter.VramDbitVaLearned]);
        return d;
    }

    private static void Write(Vcpu v, ulong va, byte value = 1) => Assert.True(v.WriteVirtual(va + 8, new[] { value }).IsOk);

    private static int[] Query(Domain d, bool exact = true)
    {
        var r = d.Vram.Track(FbGfn, 768);
        if (exact) Assert.False(r.AllDirty, r.Reason);
        return r.DirtyPageIndexes().ToArray();
    }

    private static TraceEvent[] DbitEvents(Domain d, string detail) =>
        d.Trace.Snapshot().Where(e => e.Kind == TraceKind.VramDbit && e.Detail == detail).ToArray();

    [Fact]
    public void TheAddressIsLearnedFromTheFirstWritableFaultAndTheQueryIsExact()
    {
        var d = Armed(out var v);
        Write(v, MountVa + 5 * 4096);                                        // a write fault on page 5
        var learned = Assert.Single(DbitEvents(d, "va learned"));
        Assert.Equal(MountVa, learned.VirtualAddress);                       // va - (5 << 12)
        Assert.Equal(FbGfn, learned.Gfn);
        Assert.Equal(5UL, learned.Value);                                    // the page that taught it
        Assert.Equal(1, d.Counters[PerfCounter.VramDbitVaLearned]);
        Write(v, MountVa + 700 * 4096);
        Assert.Equal(new[] { 5, 700 }, Query(d));
        Assert.Empty(Query(d));
        Assert.Equal(0, d.Counters[PerfCounter.VramDbitBackoff]);
        Assert.Equal(0, d.Counters[PerfCounter.VramDbitUnreadDirty] + d.Counters[PerfCounter.VramMultiMapDirty]);
        ShadowModeTests.AssertAuditClean(d);                                 // writable counts recounted from the shadows
    }

    [Fact]
    public void AReadOnlyMappingNeverTeaches()
    {
        var d = Armed(out var v);
        d.Kernel.Map(AliasVa, FbGfn, 768, MapFlags.None);                    // a read-only alias
        Assert.True(v.ReadVirtual(AliasVa + 3 * 4096, new byte[1]).IsOk);   // its fault makes a shadow entry
        Assert.Equal(0, d.Counters[PerfCounter.VramDbitVaLearned]);
        Assert.Empty(DbitEvents(d, "va learned"));
        Write(v, MountVa + 7 * 4096);
        Assert.Equal(MountVa, Assert.Single(DbitEvents(d, "va learned")).VirtualAddress);
        Assert.Equal(new[] { 7 }, Query(d));
    }

    [Fact]
    public void AWritableAliasMadeLaterDoesNotReplaceTheAddressAndItsWritesAreReported()
    {
        var d = Armed(out var v);
        Write(v, MountVa + 1 * 4096);                                        // learns MountVa
        Write(v, MountVa + 20 * 4096);
        d.Kernel.Map(AliasVa, FbGfn, 768, MapFlags.Writable);
        Write(v, AliasVa + 20 * 4096);                                       // page 20: two writable entries
        Write(v, AliasVa + 30 * 4096);                                       // page 30: writable only through the alias
        Assert.Single(DbitEvents(d, "va learned"));
        Assert.Equal(2, d.Counters[PerfCounter.VramDbitAliasIgnored]);
        Assert.Equal(new[] { 1, 20, 30 }, Query(d));
        // Nothing written since: 20 (writeable count 2) and 30 (its one writable entry is not at
        // the learned address) are assumed dirty and counted; page 1 is read exactly.
        long multi = d.Counters[PerfCounter.VramMultiMapDirty], unread = d.Counters[PerfCounter.VramDbitUnreadDirty];
        Assert.Equal(new[] { 20, 30 }, Query(d));
        Assert.Equal(1, d.Counters[PerfCounter.VramMultiMapDirty] - multi);
        Assert.Equal(1, d.Counters[PerfCounter.VramDbitUnreadDirty] - unread);
        Write(v, MountVa + 2 * 4096);
        Assert.Equal(new[] { 2, 20, 30 }, Query(d));
        Assert.Equal(0, d.Counters[PerfCounter.VramDbitBackoff]);
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void WhenTheLearnedMappingGoesTheQueryBacksOffOnceThenRelearnsAndIsExactAgain()
    {
        var d = Armed(out var v);
        Write(v, MountVa + 1 * 4096);                                        // learns MountVa
        d.Kernel.Map(AliasVa, FbGfn, 768, MapFlags.Writable);
        Write(v, AliasVa + 20 * 4096);
        Write(v, AliasVa + 30 * 4096);
        Query(d);
        d.Kernel.Unmap(MountVa, 768);                                        // the learned mapping goes...
        // ...from the shadows too once its out-of-sync L1s are resynced (a CR3 load): until then the
        // stale entries still map it, and a query still reads them, as the hardware would use them.
        Assert.Equal(new[] { 20, 30 }, Query(d));
        foreach (var cpu in d.Vcpus) cpu.LoadCr3(cpu.Cr3);
        var off = d.Vram.Track(FbGfn, 768);
        Assert.True(off.AllDirty);                                           // back off: all dirty
        Assert.Equal(1, d.Counters[PerfCounter.VramDbitBackoff]);
        Assert.Single(DbitEvents(d, "back off: no writable entry at the learned address, writable mappings elsewhere"));
        Assert.Equal(2, d.Counters[PerfCounter.VramDbitRelearnDrop]);        // the alias's writable entries of 20 and 30
        Write(v, AliasVa + 50 * 4096);                                       // a fault again: relearned
        var relearned = Assert.Single(DbitEvents(d, "va relearned"));
        Assert.Equal(AliasVa, relearned.VirtualAddress);
        Assert.Equal(1, d.Counters[PerfCounter.VramDbitVaRelearned]);
        Assert.Equal(new[] { 50 }, Query(d));                                // exact again
        Write(v, AliasVa + 30 * 4096);
        Assert.Equal(new[] { 30 }, Query(d));
        Assert.Empty(Query(d));
        Assert.Equal(1, d.Counters[PerfCounter.VramDbitBackoff]);
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void APeekThatBacksOffForgetsNothingAndDropsNothing()
    {
        var d = Armed(out var v);
        Write(v, MountVa + 1 * 4096);
        d.Kernel.Map(AliasVa, FbGfn, 768, MapFlags.Writable);
        Write(v, AliasVa + 20 * 4096);
        d.Kernel.Unmap(MountVa, 768);
        foreach (var cpu in d.Vcpus) cpu.LoadCr3(cpu.Cr3);
        Assert.True(d.Vram.Track(FbGfn, 768, peek: true).AllDirty);
        Assert.Equal(1, d.Counters[PerfCounter.VramDbitBackoff]);
        Assert.Equal(0, d.Counters[PerfCounter.VramDbitRelearnDrop]);         // a peek changes nothing
        Write(v, AliasVa + 21 * 4096);                                       // still an alias: no relearning
        Assert.Empty(DbitEvents(d, "va relearned"));
        Assert.True(d.Vram.Track(FbGfn, 768).AllDirty);                      // the query that clears backs off...
        Assert.Equal(2, d.Counters[PerfCounter.VramDbitRelearnDrop]);        // ...and drops 20 and 21 to relearn
        Write(v, AliasVa + 22 * 4096);
        Assert.Equal(AliasVa, Assert.Single(DbitEvents(d, "va relearned")).VirtualAddress);
        Assert.Equal(new[] { 22 }, Query(d));
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void AnEntryAtTheLearnedAddressThatMapsAnotherFrameBacksOff()
    {
        var d = Armed(out var v);
        Write(v, MountVa + 1 * 4096);
        Assert.Equal(new[] { 1 }, Query(d));
        d.Kernel.Unmap(MountVa, 768);
        d.Kernel.Map(MountVa, d.Kernel.PoolBaseGfn + 200, 4, MapFlags.Writable);   // the address reused for other RAM
        Assert.True(v.ReadVirtual(MountVa, new byte[1]).IsOk);
        Assert.True(d.Vram.Track(FbGfn, 768).AllDirty);
        Assert.Single(DbitEvents(d, "back off: an entry at the learned address maps another frame"));
        d.MountFramebuffer("mon0", AliasVa);
        Write(v, AliasVa + 9 * 4096);
        Assert.Equal(AliasVa, Assert.Single(DbitEvents(d, "va relearned")).VirtualAddress);
        Assert.Equal(new[] { 9 }, Query(d));
    }

    [Fact]
    public void AQueryReadsTheShadowsNeverTheGuestTables()
    {
        var d = Armed(out var v);
        Write(v, MountVa + 5 * 4096);
        Write(v, MountVa + 6 * 4096);
        Assert.Equal(new[] { 5, 6 }, Query(d));
        // The guest's leaf entries of the framebuffer are overwritten raw (no trap, no invlpg): the
        // shadows, and so the hardware, still map it, and a query must answer from them alone.
        var saved = new (ulong Address, ulong Entry)[768];
        for (ulong p = 0; p < 768; p++)
        {
            ulong at = GuestLeafAddress(d, v, MountVa + (p << 12));
            Assert.True(d.TryReadPhysU64(at, out ulong e));
            saved[p] = (at, e);
            Assert.True(d.TryWritePhysU64(at, 0));
        }
        Write(v, MountVa + 5 * 4096, 2);                                     // through the writable shadow entry
        long walks = d.Counters[PerfCounter.PageWalk];
        Assert.Equal(new[] { 5 }, Query(d));                                 // exact: no back-off, no mapping looked for
        Assert.Equal(walks, d.Counters[PerfCounter.PageWalk]);
        Assert.Equal(0, d.Counters[PerfCounter.VramDbitBackoff]);
        foreach (var (at, e) in saved) d.TryWritePhysU64(at, e);
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void WithoutAWritableMappingTheFramebufferIsCleanNotABackOff()
    {
        var d = Armed(out var v);
        Write(v, MountVa + 3 * 4096);
        Assert.Equal(new[] { 3 }, Query(d));
        Write(v, MountVa + 4 * 4096);
        d.Kernel.Unmap(MountVa, 768);                                        // page 4's dirty entry goes
        Assert.Equal(new[] { 4 }, Query(d));                                 // its D bit was remembered
        Assert.Empty(Query(d));                                              // nothing can write it now: clean
        d.MountFramebuffer("mon0", AliasVa, writable: false);
        for (ulong p = 0; p < 768; p += 50) Assert.True(v.ReadVirtual(AliasVa + (p << 12), new byte[1]).IsOk);
        Assert.Empty(Query(d));
        Assert.Equal(0, d.Counters[PerfCounter.VramDbitBackoff]);
        Assert.Single(DbitEvents(d, "va learned"));                          // the read-only mount taught nothing
    }

    [Fact]
    public void ShadowsThrownAwayAreNoReasonToBackOff()
    {
        var d = Armed(out var v);
        Write(v, MountVa + 5 * 4096);
        Assert.Equal(new[] { 5 }, Query(d));
        Write(v, MountVa + 6 * 4096);
        ((ShadowMode)d.Mode!).BlowTables();                                  // page 6's dirty entry goes with them
        Assert.Equal(new[] { 6 }, Query(d));                                 // no entry at the address, none writable: clean
        Write(v, MountVa + 7 * 4096);                                        // rebuilt by the fault; the address is kept
        Assert.Equal(new[] { 7 }, Query(d));
        Assert.Equal(0, d.Counters[PerfCounter.VramDbitBackoff]);
        Assert.Equal(1, d.Counters[PerfCounter.VramDbitVaLearned]);
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void MappingsMadeBeforeArmingAreDroppedSoTheNextWriteTeaches()
    {
        var d = DirtyVramTests.Build(PagingModeKind.Shadow, VramStrategy.DirtyBit);
        var v = d.Vcpus[0];
        Write(v, MountVa + 8 * 4096);                                        // writable before any range exists
        Assert.True(d.Vram.Track(FbGfn, 768).AllDirty);                      // arm: counted, then dropped
        Assert.Equal(1, d.Counters[PerfCounter.VramDbitRelearnDrop]);
        Write(v, MountVa + 8 * 4096, 2);                                     // faults again: teaches
        Assert.Equal(MountVa, Assert.Single(DbitEvents(d, "va learned")).VirtualAddress);
        Assert.Equal(new[] { 8 }, Query(d));
        ShadowModeTests.AssertAuditClean(d);
    }

    /// <summary>The guest-physical address of the guest's leaf entry for <paramref name="va"/> (the test reads the tables; the query must not).</summary>
    private static ulong GuestLeafAddress(Domain d, Vcpu v, ulong va)
    {
        ulong table = v.Cr3 & X86Pte.FrameMask;
        for (int level = 4; level >= 2; level--)
        {
            Assert.True(d.TryReadPhysU64(table + (ulong)X86Pte.IndexAt(va, level) * 8, out ulong e));
            table = e & X86Pte.FrameMask;
        }
        return table + (ulong)X86Pte.IndexAt(va, 1) * 8;
    }
}
