using System.Collections.Generic;
using System.Linq;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.P2m;
using XenLab.Paging.Hap;
using XenLab.Paging.Modes;

namespace XenLab.Tests;

/// <summary>
/// The one-walk p2m_change_type_one that the PML flush and the HAP dirty-VRAM query's re-arm use
/// (HapChangeTypeOne.cs). The reference is the general path it replaces on plain leaves:
/// Domain.OnLogDirtyWrite for a logged gfn and HapMode.TypeOf + SetType for a re-armed one,
/// which resolve marks and split superpages as ept_set_entry does.
/// </summary>
public class HapChangeTypeOneTests
{
    private const ulong Fb = 0xF0000, Va = 0x40000000;
    private static readonly ulong[] Written = { 3, 4, 64, 511, 512, 700 };

    private static Domain Armed(HapLogDirty how)
    {
        var d = DirtyVramTests.Build(PagingModeKind.Hap, XenLab.Dirty.VramStrategy.Auto);
        if (how == HapLogDirty.Wp) d.SetPagingMode(PagingModeKind.Hap, d.Config.PagingOptions with { HapLogDirty = HapLogDirty.Wp });
        Assert.True(d.Vram.Track(Fb, 768).AllDirty);
        foreach (ulong p in Written) Assert.True(d.Vcpus[0].WriteVirtual(Va + (p << 12), new byte[] { 7 }).IsOk);
        return d;
    }

    private static HapMode Mode(Domain d) => (HapMode)d.Mode!;

    private static ulong[] Leaves(Domain d) => Enumerable.Range(0, 768).Select(i => Mode(d).Ept.Peek(Fb + (ulong)i)).ToArray();

    [Fact]
    public void ThePmlFlushLeavesWhatTheGeneralPathLeaves()
    {
        // Reference: each logged gfn through Domain.OnLogDirtyWrite, before the flush sees it.
        var reference = Armed(HapLogDirty.Pml);
        var fast = Armed(HapLogDirty.Pml);
        Assert.Equal(Leaves(reference), Leaves(fast));
        foreach (ulong p in Written) reference.OnLogDirtyWrite(Fb + p);
        long changes = fast.Counters[PerfCounter.P2mTypeChange], faults = fast.Counters[PerfCounter.LogDirtyFault];
        long traced = fast.Trace.Total;
        Mode(reference).FlushHardwareCachedDirty();       // every logged gfn is ram_rw already: nothing more
        Mode(fast).FlushHardwareCachedDirty();

        Assert.Equal(Leaves(reference), Leaves(fast));
        foreach (ulong p in Written) Assert.Equal(P2mType.RamRw, fast.GetP2mType(Fb + p));
        Assert.Equal(Written.Length, fast.Counters[PerfCounter.P2mTypeChange] - changes);
        Assert.Equal(Written.Length, fast.Counters[PerfCounter.LogDirtyFault] - faults);
        Assert.Equal(reference.Counters[PerfCounter.P2mTypeChange], fast.Counters[PerfCounter.P2mTypeChange]);
        // One trace event per page, as SetP2mType writes it.
        var events = fast.Trace.Snapshot(traced).Where(e => e.Kind == TraceKind.P2mTypeChange).ToList();
        Assert.Equal(Written.Select(p => Fb + p), events.Select(e => e.Gfn));
        Assert.All(events, e => Assert.Equal("ram_logdirty->ram_rw", e.Detail));
        // ram_logdirty -> ram_rw adds rights: no INVEPT, the gfns only leave the nested-walk cache.
        for (ulong p = 0; p < 768; p++) Assert.Equal(Mode(reference).IsNestedWalkCached(0, Fb + p), Mode(fast).IsNestedWalkCached(0, Fb + p));
        Assert.False(Mode(fast).IsNestedWalkCached(0, Fb + 64));
        Assert.Equal(Written.Length, fast.Vram.Track(Fb, 768).DirtyPages);
    }

    [Theory]
    [InlineData(HapLogDirty.Wp)]
    [InlineData(HapLogDirty.Pml)]
    public void ReArmingLeavesWhatTypeOfAndSetTypeLeave(HapLogDirty how)
    {
        var reference = Armed(how);
        var fast = Armed(how);
        Mode(reference).FlushHardwareCachedDirty();
        Mode(fast).FlushHardwareCachedDirty();
        bool referenceFlush = false, fastFlush = false;
        int changed = 0, slow = 0;
        var cursor = default(HapMode.LeafCursor);
        for (ulong p = 0; p < 768; p++)
        {
            ulong gfn = Fb + p;
            if (Mode(reference).TypeOf(gfn) == P2mType.RamRw) referenceFlush |= Mode(reference).SetType(gfn, P2mType.RamLogDirty);
            var r = Mode(fast).ChangeTypeOne(gfn, P2mType.RamRw, P2mType.RamLogDirty, ref cursor, ref fastFlush);
            if (r == HapMode.ChangeOneResult.Changed) changed++;
            if (r == HapMode.ChangeOneResult.Slow) slow++;
        }
        Assert.Equal(Leaves(reference), Leaves(fast));
        Assert.Equal(Written.Length, changed);             // exactly the written pages were ram_rw
        Assert.Equal(0, slow);                             // the writes resolved both regions' marks
        Assert.True(referenceFlush);                       // ram_rw -> ram_logdirty removes W (with PML, clears D)
        Assert.Equal(referenceFlush, fastFlush);
        for (ulong p = 0; p < 768; p++) Assert.Equal(P2mType.RamLogDirty, Mode(fast).TypeOf(Fb + p));
    }

    [Fact]
    public void ALeafTableIsFoundOnceForItsRegion()
    {
        var d = Armed(HapLogDirty.Wp);
        var cursor = default(HapMode.LeafCursor);
        bool flush = false;
        Assert.Equal(HapMode.ChangeOneResult.Changed, Mode(d).ChangeTypeOne(Fb + 3, P2mType.RamRw, P2mType.RamLogDirty, ref cursor, ref flush));
        var table = cursor.Table;
        Assert.NotNull(table);
        Assert.Equal(HapMode.ChangeOneResult.Changed, Mode(d).ChangeTypeOne(Fb + 511, P2mType.RamRw, P2mType.RamLogDirty, ref cursor, ref flush));
        Assert.Same(table, cursor.Table);                   // same 2 MiB region: no second walk
        Assert.Equal(HapMode.ChangeOneResult.Changed, Mode(d).ChangeTypeOne(Fb + 512, P2mType.RamRw, P2mType.RamLogDirty, ref cursor, ref flush));
        Assert.NotSame(table, cursor.Table);                // the next region has its own leaf table
        // A page that is not ram_rw (never written) is p2m_change_type_one's -EBUSY: left as it is.
        ulong before = Mode(d).Ept.Peek(Fb + 513);
        Assert.Equal(HapMode.ChangeOneResult.NotFrom, Mode(d).ChangeTypeOne(Fb + 513, P2mType.RamRw, P2mType.RamLogDirty, ref cursor, ref flush));
        Assert.Equal(before, Mode(d).Ept.Peek(Fb + 513));
    }

    [Fact]
    public void MarkedEntriesAndSuperpagesTakeTheGeneralPath()
    {
        // Just armed: the range change marked entries for recalculation and nothing resolved them yet.
        var d = DirtyVramTests.Build(PagingModeKind.Hap, XenLab.Dirty.VramStrategy.Auto);
        d.Vram.Track(Fb, 768);
        var cursor = default(HapMode.LeafCursor);
        bool flush = false;
        long misconfigs = d.Counters[PerfCounter.EptMisconfig];
        ulong before = Mode(d).Ept.PeekWithRecalc(Fb + 5, out bool recalc);
        Assert.True(recalc || EptEntry.IsMisconfigured(before));
        Assert.Equal(HapMode.ChangeOneResult.Slow, Mode(d).ChangeTypeOne(Fb + 5, P2mType.RamRw, P2mType.RamLogDirty, ref cursor, ref flush));
        Assert.Equal(before, Mode(d).Ept.PeekWithRecalc(Fb + 5, out _));       // nothing written
        Assert.Equal(misconfigs, d.Counters[PerfCounter.EptMisconfig]);

        // A 2 MiB leaf: changing one page would split it, which only the general path does.
        var sp = HapLazyTypesTests.Hap();
        ulong gfn = 0x2010;                                  // the test domain's data page, in a superpage
        Mode(sp).Ept.PeekWithRecalc(gfn, out _, out bool super);
        Assert.True(super);
        cursor = default;
        long splits = sp.Counters[PerfCounter.EptSplit];
        Assert.Equal(HapMode.ChangeOneResult.Slow, Mode(sp).ChangeTypeOne(gfn, P2mType.RamRw, P2mType.RamLogDirty, ref cursor, ref flush));
        Mode(sp).Ept.PeekWithRecalc(gfn, out _, out super);
        Assert.True(super);
        Assert.Equal(splits, sp.Counters[PerfCounter.EptSplit]);
        Assert.False(flush);
    }
}
