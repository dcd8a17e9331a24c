// The ARM p2m: VMSAv8-64 stage-2 LPAE descriptors in machine frames, 4 KiB granule, 39-bit
// IPA (VTCR_EL2.T0SZ=25, SL0=1), so three levels from ARM level 1: the root's 512 entries
// cover 1 GiB each, which is the 512 GiB the p2m tree reaches. Leaves are 4 KiB pages at
// level 3; no blocks are made (a block would be found by the VLPT's second-level check).
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
            if (Stage2Entry.IsBlock(e)) return e;
            table = Stage2Entry.FrameOf(e);
        }
        return 0;
    }

    /// <summary>The hypervisor's own uncounted lookup (through its direct map).</summary>
    public ulong Peek(ulong gfn) => Locate(gfn).Value;

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
            table = Stage2Entry.FrameOf(e);
        }
        _machine.WriteUInt64(new Mfn(table), IndexAt(gfn, 1) * 8, leaf);
    }

    /// <summary>Every valid leaf (gfn, descriptor), ascending.</summary>
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
                if (!Stage2Entry.IsTable(e2)) continue;
                var l3 = new Mfn(Stage2Entry.FrameOf(e2));
                ulong baseGfn = ((ulong)i1 << 18) | ((ulong)i2 << 9);
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
