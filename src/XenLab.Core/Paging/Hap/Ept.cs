// An EPT (Intel's nested p2m) in its real format, in machine frames: four levels of 512
// 8-byte entries; leaves map 4 KiB (or 2 MiB / 1 GiB, below). Entry bits: R(0) W(1) X(2), memory type (5:3), ignore
// PAT (6), page size (7), accessed (8), dirty (9), Xen's recalc flag in software-available
// bit 10 (ept_entry_t.recalc), frame (51:12), and Xen's p2m type in the software-available bits
// 57:52 (ept_entry_t.sa_p2mt). Under HAP that type is the only record of a page's type.
//
// Range type changes are lazy, as p2m-ept.c does them: ept_change_entry_type_range marks the
// fewest entries that cover the range (aligned blocks at the highest level they fit, edges
// lower down) with recalc = 1 and emt = MTRR_NUM_TYPES (7), an invalid memory type (a reserved
// value in a table entry), so the CPU's next walk through one raises an EPT misconfiguration.
// resolve_misconfig then walks down: a marked table entry is cleared after its 512 children are
// marked (the mark moves one level down), and at the last level the whole leaf table is
// recalculated (p2m_recalc_type: ram_rw/ram_logdirty from the log-dirty ranges). So the first
// access in each region after a change (a leaf table's 2 MiB, or a whole superpage) takes
// exactly one misconfiguration exit.
//
// Superpages: RAM whose aligned 1 GiB (or 2 MiB) of gfns sits on aligned, contiguous machine
// frames of one type is mapped by a 1 GiB leaf (an EPDPTE with the page-size bit 7) or a 2 MiB
// one (an EPDE with bit 7). A page-granular change inside one (a type change of one page,
// balloon, PML's D bit) splits it first, as ept_set_entry does with ept_split_super_page down
// to the target level: a 2 MiB leaf into 512 leaves of the same type, marks and frames; a 1 GiB
// leaf into 512 2 MiB leaves, each of which is split again (Xen's recursion splits every child,
// not only the one on the path: 513 new tables). resolve_misconfig keeps a marked superpage
// whole when its gfns recalculate to one type (p2m_is_logdirty_range over its span) and splits
// it one level (ept_split_super_page(level, level - 1), the children keep the marks) when they
// would differ, then goes on down. So log-dirty splits lazily: enabling it only marks the top
// entries; the first access takes one misconfiguration that keeps the superpage whole
// (ram_logdirty, read-only even with PML, as ept_p2m_type_to_flags keeps superpages), and the
// first write takes the violation whose one-page type change splits it. Counted apart:
// ept_split_1g (1 GiB -> 2 MiB) and ept_split (2 MiB -> 4 KiB).
using System;
using System.Collections.Generic;
using XenLab.Diagnostics;
using XenLab.Memory;
using XenLab.P2m;

namespace XenLab.Paging.Hap;

public static class EptEntry
{
    public const ulong Read = 1UL << 0;
    public const ulong Write = 1UL << 1;
    public const ulong Exec = 1UL << 2;
    public const ulong Rwx = Read | Write | Exec;
    public const int MemTypeShift = 3;
    public const ulong MemTypeWriteBack = 6UL << MemTypeShift;
    public const ulong MemTypeUncacheable = 0UL << MemTypeShift;
    public const ulong IgnorePat = 1UL << 6;
    /// <summary>Bit 7 of an EPDE or EPDPTE: a 2 MiB or 1 GiB leaf rather than a table.</summary>
    public const ulong PageSize = 1UL << 7;
    public const ulong Accessed = 1UL << 8;
    public const ulong Dirty = 1UL << 9;
    /// <summary>Software bit 10: the type must be recalculated (ept_entry_t.recalc).</summary>
    public const ulong Recalc = 1UL << 10;
    public const ulong MemTypeMask = 7UL << MemTypeShift;
    /// <summary>emt = MTRR_NUM_TYPES: not a memory type, so the CPU raises a misconfiguration.</summary>
    public const ulong MemTypeMisconfig = 7UL << MemTypeShift;
    public const ulong FrameMask = ((1UL << 52) - 1) & ~0xFFFUL;
    public const int TypeShift = 52;
    public const ulong TypeMask = 0x3FUL << TypeShift;

    public static bool IsPresent(ulong e) => (e & Rwx) != 0;
    /// <summary>A present entry the CPU refuses: marked for recalculation (Xen's is_epte_valid and emt == MTRR_NUM_TYPES).</summary>
    public static bool IsMisconfigured(ulong e) => IsPresent(e) && (e & MemTypeMask) == MemTypeMisconfig;
    /// <summary>The entry marked as ept_invalidate_emt does it: emt = MTRR_NUM_TYPES, recalc set if asked.</summary>
    public static ulong MarkMisconfigured(ulong e, bool recalc) => (e & ~MemTypeMask) | MemTypeMisconfig | (recalc ? Recalc : 0);
    /// <summary>p2m_is_changeable: the types a recalculation may turn into each other.</summary>
    public static bool IsChangeable(P2mType t) => t is P2mType.RamRw or P2mType.RamLogDirty;
    public static P2mType TypeOf(ulong e) => (P2mType)((e & TypeMask) >> TypeShift);
    public static ulong FrameOf(ulong e) => (e & FrameMask) >> 12;
    /// <summary>A present level-2 or level-3 entry that maps 2 MiB or 1 GiB itself.</summary>
    public static bool IsSuperpage(ulong e) => IsPresent(e) && (e & PageSize) != 0;
    /// <summary>Gfns a leaf at <paramref name="level"/> maps: 1, 512 (2 MiB) or 262,144 (1 GiB).</summary>
    public static ulong Span(int level) => 1UL << (9 * (level - 1));
    /// <summary>The 4 KiB leaf a 2 MiB superpage gives <paramref name="gfn"/>: same bits, the frame within, no page-size bit.</summary>
    public static ulong PageOf(ulong super, ulong gfn) => PageOf(super, gfn, 2);
    /// <summary>The 4 KiB leaf a superpage at <paramref name="level"/> (2 or 3) gives <paramref name="gfn"/>.</summary>
    public static ulong PageOf(ulong super, ulong gfn, int level) =>
        (super & ~(PageSize | FrameMask)) | ((FrameOf(super) + (gfn & (Span(level) - 1))) << 12);

    /// <summary>The leaf Xen writes for a frame of a type (ept_p2m_type_to_flags).</summary>
    public static ulong Leaf(ulong mfn, P2mType type)
    {
        ulong rights = type switch
        {
            P2mType.RamRw => Rwx,
            P2mType.RamLogDirty or P2mType.RamRo => Read | Exec,
            P2mType.MmioDirect => Read | Write,
            _ => 0,
        };
        ulong memType = type == P2mType.MmioDirect ? MemTypeUncacheable : MemTypeWriteBack | IgnorePat;
        return rights == 0 ? ((ulong)type << TypeShift) : (mfn << 12) | rights | memType | ((ulong)type << TypeShift);
    }

    public static ulong Table(ulong mfn) => (mfn << 12) | Rwx;

    public static string Describe(ulong e, int level)
    {
        if (!IsPresent(e)) return e == 0 ? "not present" : $"not present ({P2mTypeInfo.Name(TypeOf(e))})";
        if ((level == 2 || level == 3) && (e & PageSize) != 0)
            return $"{(IsMisconfigured(e) ? "misconfigured (emt=7" + ((e & Recalc) != 0 ? ", recalc)" : ")") : ((e & Read) != 0 ? "R" : "-") + ((e & Write) != 0 ? "W" : "-") + ((e & Exec) != 0 ? "X" : "-"))} {(level == 3 ? "1G" : "2M")} {P2mTypeInfo.Name(TypeOf(e))} -> mfn 0x{FrameOf(e):x}";
        if (IsMisconfigured(e)) return level == 1
            ? $"misconfigured (emt=7{((e & Recalc) != 0 ? ", recalc" : "")}) {P2mTypeInfo.Name(TypeOf(e))} -> mfn 0x{FrameOf(e):x}"
            : $"misconfigured (emt=7{((e & Recalc) != 0 ? ", recalc" : "")}) table -> mfn 0x{FrameOf(e):x}";
        string r = ((e & Read) != 0 ? "R" : "-") + ((e & Write) != 0 ? "W" : "-") + ((e & Exec) != 0 ? "X" : "-");
        return level == 1
            ? $"{r} {P2mTypeInfo.Name(TypeOf(e))} mt={(e >> MemTypeShift) & 7} -> mfn 0x{FrameOf(e):x}"
            : $"{r} table -> mfn 0x{FrameOf(e):x}";
    }

    public static string LevelName(int level) => level switch { 4 => "EPML4E", 3 => "EPDPTE", 2 => "EPDE", _ => "EPTE" };
}

/// <summary>The EPT of one domain.</summary>
public sealed class Ept
{
    private readonly MachineMemory _machine;
    private readonly PerfCounters _counters;
    private readonly List<Mfn> _pages = new();

    public Ept(MachineMemory machine, PerfCounters counters)
    {
        _machine = machine;
        _counters = counters;
        Root = NewTable();
    }

    /// <summary>
    /// p2m_is_logdirty_range over [first, last]: 1 when all of it is log-dirty, 0 when none, -1
    /// when mixed. resolve_misconfig asks it for a marked superpage (null: ask the per-gfn recalc).
    /// </summary>
    public Func<ulong, ulong, int>? LogDirtyRange { get; init; }

    /// <summary>PML in use: ram_logdirty leaves are writable with D clear, writable ones get A and D preset (ept_p2m_type_to_flags).</summary>
    public bool Pml { get; init; }

    /// <summary>The leaf Xen writes for a frame of a type in this EPT (with PML: D clear only on ram_logdirty).</summary>
    public ulong LeafFor(ulong mfn, P2mType type, bool superpage = false)
    {
        ulong e = EptEntry.Leaf(mfn, type);
        if (superpage && EptEntry.IsPresent(e)) e |= EptEntry.PageSize;
        if (!Pml || !EptEntry.IsPresent(e)) return e;
        // A ram_logdirty superpage stays write-protected even with PML, so the first write splits it.
        if (type == P2mType.RamLogDirty) return superpage ? e | EptEntry.Accessed : e | EptEntry.Write | EptEntry.Accessed;
        return (e & EptEntry.Write) != 0 ? e | EptEntry.Accessed | EptEntry.Dirty : e | EptEntry.Accessed;
    }

    /// <summary>The EPT pointer's frame.</summary>
    public Mfn Root { get; }
    public int Pages => _pages.Count;

    /// <summary>Reads the leaf for <paramref name="gfn"/> as the CPU would, counting each entry read.</summary>
    public ulong Walk(ulong gfn, ref int refs, TranslationTrace? trace, PerfCounters? counters = null)
    {
        counters ??= _counters;
        ulong table = Root.Value;
        for (int level = 4; level >= 1; level--)
        {
            int idx = (int)((gfn >> (9 * (level - 1))) & 511);
            ulong e = _machine.ReadUInt64(new Mfn(table), idx * 8);
            refs++;
            counters.Inc(PerfCounter.HapNestedMemRef);
            trace?.Add(new WalkStep("ept", level, EptEntry.LevelName(level), table, idx, (table << 12) + (ulong)idx * 8, e, EptEntry.Describe(e, level)));
            if (level == 1) return e;
            if (!EptEntry.IsPresent(e)) return 0;
            if (EptEntry.IsMisconfigured(e)) return e;      // the CPU stops here: EPT misconfiguration
            if ((e & EptEntry.PageSize) != 0) return EptEntry.PageOf(e, gfn, level);   // a 2 MiB leaf: 3 reads; 1 GiB: 2
            table = EptEntry.FrameOf(e);
        }
        return 0;
    }

    /// <summary>
    /// The leaf for <paramref name="gfn"/> as ept_get_entry reads it: <paramref name="recalc"/> says
    /// whether any entry on the way (or the leaf) is marked, so the type must be recalculated.
    /// </summary>
    public ulong PeekWithRecalc(ulong gfn, out bool recalc) => PeekWithRecalc(gfn, out recalc, out _);

    /// <summary>As <see cref="PeekWithRecalc(ulong, out bool)"/>; <paramref name="superpage"/> says the leaf came from a 2 MiB or 1 GiB entry.</summary>
    public ulong PeekWithRecalc(ulong gfn, out bool recalc, out bool superpage)
    {
        ulong e = Locate(gfn, out int level, out _, out bool recalcAbove);
        recalc = recalcAbove || (e & EptEntry.Recalc) != 0;          // a not-present upper entry reads 0
        superpage = level > 1 && EptEntry.IsPresent(e);
        return superpage ? EptEntry.PageOf(e, gfn, level) : e;
    }

    /// <summary>
    /// The entry that decides <paramref name="gfn"/>, for loops over whole entries (audit, mode
    /// switch): a not-present entry (0) or a superpage at <paramref name="level"/> 4..2, else the
    /// 4 KiB leaf (level 1) in <paramref name="table"/>. <paramref name="recalcAbove"/> says an
    /// entry above it is marked (as PeekWithRecalc, the entry's own mark not included). Every gfn
    /// of the entry's span (<see cref="EptEntry.Span"/>; for level 1 the leaf table's 512) shares it.
    /// </summary>
    internal ulong Locate(ulong gfn, out int level, out ulong table, out bool recalcAbove)
    {
        recalcAbove = false;
        table = Root.Value;
        for (level = 4; level > 1; level--)
        {
            ulong e = _machine.ReadUInt64(new Mfn(table), (int)((gfn >> (9 * (level - 1))) & 511) * 8);
            if (!EptEntry.IsPresent(e)) return 0;
            if ((e & EptEntry.PageSize) != 0) return e;
            if ((e & EptEntry.Recalc) != 0) recalcAbove = true;
            table = EptEntry.FrameOf(e);
        }
        return _machine.ReadUInt64(new Mfn(table), (int)(gfn & 511) * 8);
    }

    /// <summary>
    /// ept_change_entry_type_range / ept_invalidate_emt_range: marks the fewest present entries
    /// covering [first, last] (inclusive) for recalculation. Returns how many were marked.
    /// </summary>
    public long InvalidateRange(ulong first, ulong last)
    {
        long n = InvalidateIn(Root.Value, 4, 0, first, last);
        _counters.Add(PerfCounter.EptInvalidatedEntries, n);
        return n;
    }

    private long InvalidateIn(ulong table, int level, ulong baseGfn, ulong first, ulong last)
    {
        int shift = 9 * (level - 1);
        ulong span = 1UL << shift;
        ulong lo = first > baseGfn ? (first - baseGfn) >> shift : 0;
        ulong hi = Math.Min(511UL, (last - baseGfn) >> shift);
        long n = 0;
        for (ulong i = lo; i <= hi; i++)
        {
            ulong e = _machine.ReadUInt64(new Mfn(table), (int)i * 8);
            if (!EptEntry.IsPresent(e)) continue;
            ulong s = baseGfn + (i << shift), end = s + span - 1;
            // A superpage partly in the range is marked whole: resolve_misconfig splits it if its pages would differ.
            if (s >= first && end <= last || level == 1 || (e & EptEntry.PageSize) != 0)
            {
                _machine.WriteUInt64(new Mfn(table), (int)i * 8, EptEntry.MarkMisconfigured(e, recalc: true));
                n++;
            }
            else n += InvalidateIn(EptEntry.FrameOf(e), level - 1, s, first, last);
        }
        return n;
    }

    /// <summary>
    /// resolve_misconfig for <paramref name="gfn"/>: pushes each marked table entry's mark down to
    /// its 512 children, then recalculates the whole leaf table (<paramref name="recalc"/> gives
    /// the new type of a changeable leaf). Returns the entries rewritten.
    /// </summary>
    public int ResolveMisconfig(ulong gfn, Func<ulong, P2mType, P2mType> recalc)
    {
        int n = 0;
        ulong table = Root.Value;
        for (int level = 4; level > 1; level--)
        {
            int idx = (int)((gfn >> (9 * (level - 1))) & 511);
            ulong e = _machine.ReadUInt64(new Mfn(table), idx * 8);
            if (!EptEntry.IsPresent(e)) return n;
            if ((e & EptEntry.PageSize) != 0)
            {
                if (!EptEntry.IsMisconfigured(e) && (e & EptEntry.Recalc) == 0) return n;
                ulong span = EptEntry.Span(level), first = gfn & ~(span - 1);
                var t = EptEntry.TypeOf(e);
                if ((e & EptEntry.Recalc) == 0 || !EptEntry.IsChangeable(t))
                {
                    _machine.WriteUInt64(new Mfn(table), idx * 8, LeafFor(EptEntry.FrameOf(e), t, superpage: true));
                    _counters.Add(PerfCounter.EptRecalcEntries, n + 1);
                    return n + 1;
                }
                if (UniformRecalc(first, span, t, recalc, out var nt))
                {
                    _machine.WriteUInt64(new Mfn(table), idx * 8, LeafFor(EptEntry.FrameOf(e), nt, superpage: true));
                    _counters.Add(PerfCounter.EptRecalcEntries, n + 1);
                    return n + 1;
                }
                // Its pages would differ: split one level (the children keep the marks) and go on down.
                e = Split(new Mfn(table), idx, e, level);
                n++;
            }
            else if (EptEntry.IsMisconfigured(e))
            {
                // ept_invalidate_emt_subtree: every present child gets emt = MTRR_NUM_TYPES (and recalc if this had it).
                bool rc = (e & EptEntry.Recalc) != 0;
                var child = new Mfn(EptEntry.FrameOf(e));
                for (int i = 0; i < 512; i++)
                {
                    ulong c = _machine.ReadUInt64(child, i * 8);
                    if (!EptEntry.IsPresent(c)) continue;
                    _machine.WriteUInt64(child, i * 8, EptEntry.MarkMisconfigured(c, rc));
                    n++;
                }
                e &= ~(EptEntry.MemTypeMask | EptEntry.Recalc);
                _machine.WriteUInt64(new Mfn(table), idx * 8, e);
                n++;
            }
            table = EptEntry.FrameOf(e);
        }
        // Level 1: the whole leaf table, as resolve_misconfig does at level 0.
        ulong baseGfn = gfn & ~511UL;
        var leaves = new Mfn(table);
        for (int i = 0; i < 512; i++)
        {
            ulong e = _machine.ReadUInt64(leaves, i * 8);
            if (!EptEntry.IsMisconfigured(e) && (e & EptEntry.Recalc) == 0) continue;
            var t = EptEntry.TypeOf(e);
            var nt = (e & EptEntry.Recalc) != 0 && EptEntry.IsChangeable(t) ? recalc(baseGfn + (ulong)i, t) : t;
            _machine.WriteUInt64(leaves, i * 8, LeafFor(EptEntry.FrameOf(e), nt));
            n++;
        }
        _counters.Add(PerfCounter.EptRecalcEntries, n);
        return n;
    }

    /// <summary>Whether the span's gfns all recalculate to one type (p2m_is_logdirty_range is 0 or 1), and which.</summary>
    private bool UniformRecalc(ulong first, ulong span, P2mType t, Func<ulong, P2mType, P2mType> recalc, out P2mType nt)
    {
        if (LogDirtyRange is { } range)
        {
            int state = range(first, first + span - 1);
            nt = state == 1 ? P2mType.RamLogDirty : P2mType.RamRw;
            return state >= 0;
        }
        nt = recalc(first, t);
        for (ulong i = 1; i < span; i++) if (recalc(first + i, t) != nt) return false;
        return true;
    }

    /// <summary>Reads the leaf without counting (the hypervisor's own lookup).</summary>
    public ulong Peek(ulong gfn)
    {
        ulong e = Locate(gfn, out int level, out _, out _);
        return level > 1 && EptEntry.IsPresent(e) ? EptEntry.PageOf(e, gfn, level) : e;
    }

    /// <summary>
    /// The bytes of the leaf table that maps <paramref name="gfn"/>, for loops that change many
    /// leaves (HapMode.ChangeTypeOne): null unless the way down is plain tables, none marked for
    /// recalculation and none a superpage, so a leaf read there is what ept_get_entry would see.
    /// </summary>
    internal byte[]? PlainLeafTable(ulong gfn)
    {
        ulong table = Root.Value;
        for (int level = 4; level > 1; level--)
        {
            ulong e = _machine.ReadUInt64(new Mfn(table), (int)((gfn >> (9 * (level - 1))) & 511) * 8);
            if (!EptEntry.IsPresent(e) || (e & (EptEntry.Recalc | EptEntry.PageSize)) != 0 || EptEntry.IsMisconfigured(e)) return null;
            table = EptEntry.FrameOf(e);
        }
        return _machine.MaterialisedFrame(table);
    }

    /// <summary>Maps the aligned 2 MiB at <paramref name="gfn"/> with one level-2 leaf (tables above created as needed).</summary>
    public void SetSuperpage(ulong gfn, ulong leaf) => SetSuperpage(gfn, leaf, 2);

    /// <summary>Maps the aligned 2 MiB (level 2) or 1 GiB (level 3) at <paramref name="gfn"/> with one leaf.</summary>
    public void SetSuperpage(ulong gfn, ulong leaf, int leafLevel)
    {
        if (leafLevel is not (2 or 3) || (gfn & (EptEntry.Span(leafLevel) - 1)) != 0 || (leaf & EptEntry.PageSize) == 0)
            throw new ArgumentException($"gfn 0x{gfn:x}: a level-{leafLevel} superpage needs a gfn aligned to its size and a leaf with the page-size bit");
        ulong table = Root.Value;
        for (int level = 4; level > leafLevel; level--)
        {
            int idx = (int)((gfn >> (9 * (level - 1))) & 511);
            ulong e = _machine.ReadUInt64(new Mfn(table), idx * 8);
            if (!EptEntry.IsPresent(e))
            {
                e = EptEntry.Table(NewTable().Value);
                _machine.WriteUInt64(new Mfn(table), idx * 8, e);
            }
            table = EptEntry.FrameOf(e);
        }
        int at = (int)((gfn >> (9 * (leafLevel - 1))) & 511);
        ulong old = _machine.ReadUInt64(new Mfn(table), at * 8);
        if (EptEntry.IsPresent(old) && (old & EptEntry.PageSize) == 0) throw new InvalidOperationException($"gfn 0x{gfn:x}: a table is already there");
        _machine.WriteUInt64(new Mfn(table), at * 8, leaf);
        _counters.Inc(leafLevel == 3 ? PerfCounter.EptSuperpage1G : PerfCounter.EptSuperpage);
    }

    /// <summary>
    /// ept_split_super_page one level: a table of 512 entries with the superpage's type, marks
    /// (emt, recalc) and A/D bits and consecutive frames replaces it: 4 KiB leaves for a 2 MiB
    /// superpage (level 2), 2 MiB leaves for a 1 GiB one (level 3). Returns the new table entry.
    /// </summary>
    private ulong Split(Mfn table, int idx, ulong super, int level)
    {
        var t = NewTable();
        ulong baseMfn = EptEntry.FrameOf(super), step = EptEntry.Span(level - 1);
        bool childIsSuper = level == 3;
        var type = EptEntry.TypeOf(super);
        bool marked = EptEntry.IsMisconfigured(super), rc = (super & EptEntry.Recalc) != 0;
        ulong ad = super & (EptEntry.Accessed | EptEntry.Dirty);
        for (int i = 0; i < 512; i++)
        {
            ulong c = LeafFor(baseMfn + (ulong)i * step, type, childIsSuper);
            if (Pml && type == P2mType.RamLogDirty) c &= ~EptEntry.Dirty;     // each page logged on its own first write
            else c |= ad;
            if (marked) c = EptEntry.MarkMisconfigured(c, rc);
            else if (rc) c |= EptEntry.Recalc;
            _machine.WriteUInt64(t, i * 8, c);
        }
        ulong e = EptEntry.Table(t.Value);
        _machine.WriteUInt64(table, idx * 8, e);
        _counters.Inc(level == 3 ? PerfCounter.EptSplit1G : PerfCounter.EptSplit);
        return e;
    }

    /// <summary>
    /// ept_split_super_page down to 4 KiB, as ept_set_entry does for an order-0 change inside a
    /// superpage: a 1 GiB leaf becomes 512 2 MiB leaves and each of those is split too.
    /// </summary>
    private ulong SplitToPages(Mfn table, int idx, ulong super, int level)
    {
        ulong e = Split(table, idx, super, level);
        if (level == 3)
        {
            var child = new Mfn(EptEntry.FrameOf(e));
            for (int i = 0; i < 512; i++) Split(child, i, _machine.ReadUInt64(child, i * 8), 2);
        }
        return e;
    }

    /// <summary>Writes the leaf for <paramref name="gfn"/>, creating tables on the way.</summary>
    public void Set(ulong gfn, ulong leaf)
    {
        ulong table = Root.Value;
        for (int level = 4; level > 1; level--)
        {
            int idx = (int)((gfn >> (9 * (level - 1))) & 511);
            ulong e = _machine.ReadUInt64(new Mfn(table), idx * 8);
            if (!EptEntry.IsPresent(e))
            {
                if (leaf == 0 || !EptEntry.IsPresent(leaf)) return;   // nothing to clear below
                var t = NewTable();
                e = EptEntry.Table(t.Value);
                _machine.WriteUInt64(new Mfn(table), idx * 8, e);
            }
            else if ((e & EptEntry.PageSize) != 0) e = SplitToPages(new Mfn(table), idx, e, level);   // one page of a superpage changes
            table = EptEntry.FrameOf(e);
        }
        _machine.WriteUInt64(new Mfn(table), (int)(gfn & 511) * 8, leaf);
    }

    /// <summary>
    /// The tables' shape, as the CPU would check it: the page-size bit only in an EPDE or EPDPTE,
    /// a superpage's frame aligned to its size (bits 20:12 or 29:12 of a leaf are reserved), every
    /// table one of this EPT's pages and reached once.
    /// </summary>
    public void AuditStructure(List<string> problems)
    {
        var owned = new HashSet<ulong>();
        foreach (var m in _pages) owned.Add(m.Value);
        int reached = 1;
        AuditTable(Root.Value, 4, 0, owned, ref reached, problems);
        if (reached != _pages.Count) problems.Add($"hap: {_pages.Count} EPT pages allocated, {reached} reachable from the root");
    }

    private void AuditTable(ulong table, int level, ulong baseGfn, HashSet<ulong> owned, ref int reached, List<string> problems)
    {
        for (int i = 0; i < 512; i++)
        {
            ulong e = _machine.ReadUInt64(new Mfn(table), i * 8);
            if (!EptEntry.IsPresent(e) || level == 1) continue;
            ulong gfn = baseGfn + ((ulong)i << (9 * (level - 1)));
            if ((e & EptEntry.PageSize) != 0)
            {
                if (level == 4) problems.Add($"hap: gfn 0x{gfn:x}: the page-size bit is set in an EPML4E (reserved)");
                else if ((EptEntry.FrameOf(e) & (EptEntry.Span(level) - 1)) != 0)
                    problems.Add($"hap: gfn 0x{gfn:x}: {(level == 3 ? "1 GiB" : "2 MiB")} leaf on mfn 0x{EptEntry.FrameOf(e):x}, not aligned to its size");
                continue;
            }
            ulong child = EptEntry.FrameOf(e);
            if (!owned.Remove(child))
            {
                problems.Add($"hap: gfn 0x{gfn:x}: {EptEntry.LevelName(level)} points at mfn 0x{child:x}, not an EPT page (or one reached twice)");
                continue;
            }
            reached++;
            AuditTable(child, level - 1, gfn, owned, ref reached, problems);
        }
    }

    private Mfn NewTable()
    {
        var m = _machine.AllocateOne();
        _machine.Write(m).Clear();
        _pages.Add(m);
        _counters.Inc(PerfCounter.EptPages);
        return m;
    }

    public void Free()
    {
        foreach (var m in _pages) _machine.Free(m);
        _pages.Clear();
    }
}
