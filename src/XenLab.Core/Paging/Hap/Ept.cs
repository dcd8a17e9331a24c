// An EPT (Intel's nested p2m) in its real format, in machine frames: four levels of 512
// 8-byte entries; leaves map 4 KiB. Entry bits: R(0) W(1) X(2), memory type (5:3), ignore
// PAT (6), page size (7), accessed (8), dirty (9), frame (51:12), and Xen's p2m type in the
// software-available bits 57:52 (ept_entry_t.sa_p2mt).
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
    public const ulong Accessed = 1UL << 8;
    public const ulong Dirty = 1UL << 9;
    public const ulong FrameMask = ((1UL << 52) - 1) & ~0xFFFUL;
    public const int TypeShift = 52;
    public const ulong TypeMask = 0x3FUL << TypeShift;

    public static bool IsPresent(ulong e) => (e & Rwx) != 0;
    public static P2mType TypeOf(ulong e) => (P2mType)((e & TypeMask) >> TypeShift);
    public static ulong FrameOf(ulong e) => (e & FrameMask) >> 12;

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
            table = EptEntry.FrameOf(e);
        }
        return 0;
    }

    /// <summary>Reads the leaf without counting (the hypervisor's own lookup).</summary>
    public ulong Peek(ulong gfn)
    {
        ulong table = Root.Value;
        for (int level = 4; level > 1; level--)
        {
            ulong e = _machine.ReadUInt64(new Mfn(table), (int)((gfn >> (9 * (level - 1))) & 511) * 8);
            if (!EptEntry.IsPresent(e)) return 0;
            table = EptEntry.FrameOf(e);
        }
        return _machine.ReadUInt64(new Mfn(table), (int)(gfn & 511) * 8);
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
            table = EptEntry.FrameOf(e);
        }
        _machine.WriteUInt64(new Mfn(table), (int)(gfn & 511) * 8, leaf);
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
