// The ARM p2m: VMSAv8-64 stage-2 LPAE descriptors in machine frames, 4 KiB granule, 39-bit
// IPA (VTCR_EL2.T0SZ=25, SL0=1), so three levels from ARM level 1: the root's 512 entries
// cover 1 GiB each, which is the 512 GiB the p2m tree reaches. Leaves are 4 KiB pages at
// level 3, or 2 MiB blocks at level 2 where 512 gfns of RAM are aligned, contiguous in machine
// memory and of one type (MapBlock; no 1 GiB blocks, as Ian's "no 1GB P2M mappings for the time
// being"). A block is split into a level-3 table of the same 512 pages when part of it must
// change (SplitBlock): dirty tracing write-protects a whole block and splits it on its first
// write fault (see ArmMode), as the seed's handler checks the second level for a block first.
// Walk and Peek answer a gfn under a block with the 4 KiB page descriptor it stands for
// (PageOf), so callers see one format.
//
// Page descriptor: bits[1:0]=0b11, MemAttr[5:2], S2AP[7:6] (6 read, 7 write), SH[9:8],
// AF[10], output address [47:12], XN[54], software bits: the p2m type in 57:55 (its x86
// number, as the EPT's sa_p2mt holds it; only ram_rw, ram_logdirty, ram_ro and mmio_direct
// appear) and the seed's DIRTY avail bit in 58. Table descriptors also set bit 10, which the
// stage-2 walk ignores, so that a p2m table used as the hypervisor's own third level by the
// VLPT reads as an accessed page.
using System.Collections.Generic;
using XenLab.Diagnostics;
using XenLab.Memory;
using XenLab.P2m;

namespace XenLab.Paging.Arm;

public static class Stage2Entry
{
    public const ulong Valid = 1UL << 0;
    public const ulong TableOrPage = 1UL << 1;
    public const ulong TypeMask = Valid | TableOrPage;
    public const int MemAttrShift = 2;
    /// <summary>MemAttr 0b1111: normal memory, outer and inner write-back.</summary>
    public const ulong MemAttrNormalWb = 0xFUL << MemAttrShift;
    /// <summary>MemAttr 0b0001: device nGnRE.</summary>
    public const ulong MemAttrDevice = 0x1UL << MemAttrShift;
    public const ulong S2apRead = 1UL << 6;
    public const ulong S2apWrite = 1UL << 7;
    public const ulong ShInner = 3UL << 8;
    public const ulong AccessFlag = 1UL << 10;
    public const ulong FrameMask = ((1UL << 48) - 1) & ~0xFFFUL;
    public const ulong ExecuteNever = 1UL << 54;
    public const int TypeShift = 55;
    public const ulong TypeField = 7UL << TypeShift;
    /// <summary>The avail bit the dirty-tracing handler sets (seed 002).</summary>
    public const ulong Dirty = 1UL << 58;

    public static bool IsValid(ulong e) => (e & Valid) != 0;
    public static bool IsTable(ulong e) => (e & TypeMask) == TypeMask;
    /// <summary>A block (bits[1:0]=0b01) at level 1 or 2.</summary>
    public static bool IsBlock(ulong e) => (e & TypeMask) == Valid;
    public static bool IsWritable(ulong e) => IsValid(e) && (e & S2apWrite) != 0;
    public static bool IsDirty(ulong e) => (e & Dirty) != 0;
    public static P2mType TypeOf(ulong e) => (P2mType)((e & TypeField) >> TypeShift);
    public static ulong FrameOf(ulong e) => (e & FrameMask) >> 12;

    /// <summary>Whether the type lets guest writes through (before any tracing write-protection).</summary>
    public static bool TypeAllowsWrite(P2mType type) => type is P2mType.RamRw or P2mType.MmioDirect;

    /// <summary>
    /// The leaf for a frame of a type. <paramref name="writeProtect"/> clears S2AP write even
    /// where the type allows it (dirty tracing); <paramref name="dirty"/> sets the avail bit.
    /// </summary>
    public static ulong Leaf(ulong mfn, P2mType type, bool writeProtect = false, bool dirty = false)
    {
        if ((int)type > 7) throw new System.ArgumentOutOfRangeException(nameof(type), $"p2m type {P2mTypeInfo.Name(type)} does not fit the stage-2 software bits.");
        bool device = type == P2mType.MmioDirect;
        ulong e = (mfn << 12) | TypeMask | S2apRead | AccessFlag | ((ulong)type << TypeShift)
            | (device ? MemAttrDevice | ExecuteNever : MemAttrNormalWb | ShInner);
        if (TypeAllowsWrite(type) && !writeProtect) e |= S2apWrite;
        if (dirty) e |= Dirty;
        return e;
    }

    public static ulong Table(ulong mfn) => (mfn << 12) | TypeMask | AccessFlag;

    /// <summary>The 2 MiB block (bits[1:0] = 0b01) with the attributes of page leaf <paramref name="firstPage"/>, whose frame must be 512-aligned.</summary>
    public static ulong BlockOf(ulong firstPage) => firstPage & ~TableOrPage;

    /// <summary>The page descriptor a block stands for at <paramref name="gfn"/>: same attributes, frame + (gfn mod 512).</summary>
    public static ulong PageOf(ulong block, ulong gfn) => (block | TableOrPage) + ((gfn & 511) << 12);

    public static string Describe(ulong e, int armLevel)
    {
        if (!IsValid(e)) return e == 0 ? "invalid" : $"invalid (0x{e:x})";
        if (armLevel < 3 && IsTable(e)) return $"table -> mfn 0x{FrameOf(e):x}";
        if (armLevel == 3 && !IsTable(e)) return $"reserved (0x{e:x})";
        string ap = ((e & S2apRead) != 0 ? "R" : "-") + ((e & S2apWrite) != 0 ? "W" : "-") + ((e & ExecuteNever) != 0 ? "-" : "X");
        string kind = armLevel == 3 ? "page" : "block";
        return $"{kind} {ap} {P2mTypeInfo.Name(TypeOf(e))} memattr=0x{(e >> MemAttrShift) & 0xF:x}{((e & AccessFlag) != 0 ? " AF" : "")}{(IsDirty(e) ? " DIRTY" : "")} -> mfn 0x{FrameOf(e):x}";
    }

    /// <summary>Our level (3..1, 1 = leaf) to the ARM stage-2 level (1..3).</summary>
    public static int ArmLevel(int level) => 4 - level;
    public static string LevelName(int level) => $"S2L{ArmLevel(level)}";
}

/// <summary>Where a leaf lives: the table page, the index in it, and its value when read.</summary>
public readonly record struct Stage2LeafRef(Mfn Table, int Index, ulong Value, int ArmLevel)
{
    public bool Found => Table.IsValid && Stage2Entry.IsValid(Value);
}

/// <summary>The stage-2 tables of one domain.</summary>
public sealed class Stage2Table
{
    public const int Levels = 3;
    public const int IpaBits = 39;
    public const ulong GfnsPerSecondLevelTable = 512UL * 512;   // 1 GiB: what one root entry covers

    private readonly MachineMemory _machine;
    private readonly PerfCounters _counters;
    private readonly List<Mfn> _pages = new();

    public Stage2Table(MachineMemory machine, PerfCounters counters)
    {
        _machine = machine;
        _counters = counters;
        Root = NewTable();
    }

    /// <summary>VTTBR_EL2's base address frame: the ARM level-1 table.</summary>
    public Mfn Root { get; }
    public int Pages => _pages.Count;
    public MachineMemory Machine => _machine;

    /// <summary>Called with the root index when a second-level table is created (the VLPT maps it).</summary>
    public System.Action<int, Mfn>? SecondLevelCreated { get; set; }

    private static int IndexAt(ulong gfn, int level) => (int)((gfn >> (9 * (level - 1))) & 511);

    /// <summary>Reads the leaf for <paramref name="gfn"/> as the MMU's stage-2 walk would, counting each descriptor.</summary>
    public ulong Walk(ulong gfn, ref int refs, PerfCounters counters, TranslationTrace? trace)
    {
        ulong table = Root.Value;
        for (int level = Levels; level >= 1; level--)
        {
            int idx = IndexAt(gfn, level);
            ulong e = _machine.ReadUInt64(new Mfn(table), idx * 8);
            refs++;
            counters.Inc(PerfCounter.Stage2WalkMemRef);
            trace?.Add(new WalkStep("stage2", level, Stage2Entry.LevelName(level), table, idx, (table << 12) + (ulong)idx * 8, e, Stage2Entry.Describe(e, Stage2Entry.ArmLevel(level))));
            if (level == 1) return e;
            if (!Stage2Entry.IsValid(e)) return 0;
            if (Stage2Entry.IsBlock(e)) return Stage2Entry.PageOf(e, gfn);   // a block: one level fewer
            table = Stage2Entry.FrameOf(e);
        }
        return 0;
    }

    /// <summary>The hypervisor's own uncounted lookup (through its direct map); under a block, the page it stands for.</summary>
    public ulong Peek(ulong gfn)
    {
        var r = Locate(gfn);
        return r.ArmLevel == 2 && Stage2Entry.IsBlock(r.Value) ? Stage2Entry.PageOf(r.Value, gfn) : r.Value;
    }

    /// <summary>Finds the leaf without counting: table page, index and value.</summary>
    public Stage2LeafRef Locate(ulong gfn)
    {
        if (gfn >> (IpaBits - 12) != 0) return new Stage2LeafRef(Mfn.Invalid, 0, 0, 0);
        ulong table = Root.Value;
        for (int level = Levels; level > 1; level--)
        {
            int idx = IndexAt(gfn, level);
            ulong e = _machine.ReadUInt64(new Mfn(table), idx * 8);
            if (!Stage2Entry.IsValid(e)) return new Stage2LeafRef(Mfn.Invalid, idx, 0, Stage2Entry.ArmLevel(level));
            if (Stage2Entry.IsBlock(e)) return new Stage2LeafRef(new Mfn(table), idx, e, Stage2Entry.ArmLevel(level));
            table = Stage2Entry.FrameOf(e);
        }
        int i = IndexAt(gfn, 1);
        return new Stage2LeafRef(new Mfn(table), i, _machine.ReadUInt64(new Mfn(table), i * 8), 3);
    }

    /// <summary>The second-level table under root entry <paramref name="rootIndex"/>, or Invalid.</summary>
    public Mfn SecondLevelTable(int rootIndex)
    {
        ulong e = _machine.ReadUInt64(Root, rootIndex * 8);
        return Stage2Entry.IsTable(e) ? new Mfn(Stage2Entry.FrameOf(e)) : Mfn.Invalid;
    }

    /// <summary>Writes the leaf for <paramref name="gfn"/>, creating tables on the way (not for a clear).</summary>
    public void Set(ulong gfn, ulong leaf)
    {
        if (gfn >> (IpaBits - 12) != 0)
            throw new System.ArgumentOutOfRangeException(nameof(gfn), $"gfn 0x{gfn:x} is beyond the {IpaBits}-bit IPA space.");
        ulong table = Root.Value;
        for (int level = Levels; level > 1; level--)
        {
            int idx = IndexAt(gfn, level);
            ulong e = _machine.ReadUInt64(new Mfn(table), idx * 8);
            if (!Stage2Entry.IsValid(e))
            {
                if (!Stage2Entry.IsValid(leaf)) return;       // nothing to clear below
                var t = NewTable();
                e = Stage2Entry.Table(t.Value);
                _machine.WriteUInt64(new Mfn(table), idx * 8, e);
                if (level == Levels) SecondLevelCreated?.Invoke(idx, t);
            }
            else if (Stage2Entry.IsBlock(e))
            {
                if (Stage2Entry.PageOf(e, gfn) == leaf) return;   // already what the block says
                e = Stage2Entry.Table(SplitBlock(gfn).Value);
            }
            table = Stage2Entry.FrameOf(e);
        }
        _machine.WriteUInt64(new Mfn(table), IndexAt(gfn, 1) * 8, leaf);
    }

    /// <summary>Maps the 2 MiB at <paramref name="gfn"/> (512-aligned) as one block with the attributes of <paramref name="firstPage"/>.</summary>
    public void MapBlock(ulong gfn, ulong firstPage)
    {
        if ((gfn & 511) != 0 || (Stage2Entry.FrameOf(firstPage) & 511) != 0 || gfn >> (IpaBits - 12) != 0)
            throw new System.ArgumentOutOfRangeException(nameof(gfn), $"a block needs gfn 0x{gfn:x} and mfn 0x{Stage2Entry.FrameOf(firstPage):x} 2 MiB-aligned within the IPA space.");
        int i1 = IndexAt(gfn, Levels);
        ulong e1 = _machine.ReadUInt64(Root, i1 * 8);
        if (!Stage2Entry.IsValid(e1))
        {
            var t = NewTable();
            e1 = Stage2Entry.Table(t.Value);
            _machine.WriteUInt64(Root, i1 * 8, e1);
            SecondLevelCreated?.Invoke(i1, t);
        }
        var second = new Mfn(Stage2Entry.FrameOf(e1));
        int i2 = IndexAt(gfn, 2);
        if (Stage2Entry.IsTable(_machine.ReadUInt64(second, i2 * 8)))
            throw new System.InvalidOperationException($"gfn 0x{gfn:x} already has a stage-2 leaf table; a block would leak it.");
        _machine.WriteUInt64(second, i2 * 8, Stage2Entry.BlockOf(firstPage));
        _counters.Inc(PerfCounter.Stage2Block);
    }

    /// <summary>
    /// Replaces the block covering <paramref name="gfn"/> by a new level-3 table holding the same
    /// 512 pages, and returns the table. Every page keeps the block's frame and rights, so no TLB
    /// entry made from the block becomes wrong (the break-before-make invalidate is not modelled).
    /// </summary>
    public Mfn SplitBlock(ulong gfn)
    {
        var where = Locate(gfn);
        if (where.ArmLevel != 2 || !Stage2Entry.IsBlock(where.Value))
            throw new System.InvalidOperationException($"gfn 0x{gfn:x} is not under a stage-2 block.");
        var t = NewTable();
        var pages = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(_machine.Write(t));
        ulong first = gfn & ~511UL;
        for (int i = 0; i < 512; i++) pages[i] = Stage2Entry.PageOf(where.Value, first + (ulong)i);
        _machine.WriteUInt64(where.Table, where.Index * 8, Stage2Entry.Table(t.Value));
        _counters.Inc(PerfCounter.Stage2BlockSplit);
        return t;
    }

    /// <summary>Blocks mapped now (a count for tests and displays).</summary>
    public int CountBlocks()
    {
        int n = 0;
        for (int i1 = 0; i1 < 512; i1++)
        {
            var l2 = SecondLevelTable(i1);
            if (!l2.IsValid) continue;
            for (int i2 = 0; i2 < 512; i2++)
                if (Stage2Entry.IsBlock(_machine.ReadUInt64(l2, i2 * 8))) n++;
        }
        return n;
    }

    /// <summary>Every valid leaf (gfn, descriptor), ascending; a block as the 512 pages it stands for.</summary>
    public IEnumerable<(ulong Gfn, ulong Leaf)> EnumerateLeaves()
    {
        var entries = new ulong[512];
        for (int i1 = 0; i1 < 512; i1++)
        {
            ulong e1 = _machine.ReadUInt64(Root, i1 * 8);
            if (!Stage2Entry.IsTable(e1)) continue;
            var l2 = new Mfn(Stage2Entry.FrameOf(e1));
            for (int i2 = 0; i2 < 512; i2++)
            {
                ulong e2 = _machine.ReadUInt64(l2, i2 * 8);
                ulong baseGfn = ((ulong)i1 << 18) | ((ulong)i2 << 9);
                if (Stage2Entry.IsBlock(e2))
                {
                    for (ulong k = 0; k < 512; k++) yield return (baseGfn + k, Stage2Entry.PageOf(e2, baseGfn + k));
                    continue;
                }
                if (!Stage2Entry.IsTable(e2)) continue;
                var l3 = new Mfn(Stage2Entry.FrameOf(e2));
                System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(_machine.Read(l3)).CopyTo(entries);
                for (int i3 = 0; i3 < 512; i3++)
                    if (Stage2Entry.IsValid(entries[i3])) yield return (baseGfn + (ulong)i3, entries[i3]);
            }
        }
    }

    private Mfn NewTable()
    {
        var m = _machine.AllocateOne();
        _machine.Write(m).Clear();
        _pages.Add(m);
        _counters.Inc(PerfCounter.Stage2Pages);
        return m;
    }

    public void Free()
    {
        foreach (var m in _pages) _machine.Free(m);
        _pages.Clear();
    }
}
