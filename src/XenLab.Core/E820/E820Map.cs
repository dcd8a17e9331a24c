// The domain's E820 memory map: what the firmware tells the guest is RAM and what is not.
// Which of it becomes identity in the p2m (seed 004) follows Linux 2.6.39's xen_set_identity
// (arch/x86/xen/setup.c): reserved, ACPI, NVS and the gaps between entries do; RAM and
// *unusable* entries do not; each identity run is [PFN_UP(start), PFN_DOWN(end)), so a
// page only partly outside RAM/unusable stays out of it.
using System;
using System.Collections.Generic;
using System.Globalization;
using XenLab.Memory;

namespace XenLab.E820;

/// <summary>E820 types with their firmware numbers.</summary>
public enum E820Type
{
    Ram = 1,
    Reserved = 2,
    Acpi = 3,
    Nvs = 4,
    Unusable = 5,
}

/// <summary>One E820 entry, [Start, End).</summary>
public readonly record struct E820Entry(ulong Start, ulong Size, E820Type Type)
{
    public ulong End => Start + Size;
    public ulong FirstPfn => Start >> Page.Shift;
    /// <summary>One past the last pfn the entry touches (partial pages included).</summary>
    public ulong EndPfn => (End + Page.OffsetMask) >> Page.Shift;
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"[0x{Start:x12}-0x{End:x12}) {Type}");
}

/// <summary>A contiguous run that is not RAM: an E820 entry of another type, or a gap.</summary>
public readonly record struct NonRamRegion(ulong Start, ulong End, E820Type? Type)
{
    public bool IsGap => Type is null;
}

public sealed class E820Map
{
    private readonly E820Entry[] _entries;

    private E820Map(E820Entry[] sorted) => _entries = sorted;

    public IReadOnlyList<E820Entry> Entries => _entries;

    /// <summary>Builds a map, rejecting zero-length, overlapping and unaligned RAM entries.</summary>
    public static E820Map Create(IEnumerable<E820Entry> entries)
    {
        var list = new List<E820Entry>(entries);
        var problems = new List<string>();
        for (int i = 0; i < list.Count; i++)
        {
            var e = list[i];
            if (e.Size == 0) problems.Add($"entry {i} {e} has zero length");
            if (e.Start + e.Size < e.Start) problems.Add($"entry {i} at 0x{e.Start:x} wraps past the end of the address space");
            if (e.Type == E820Type.Ram && (!Page.IsAligned(e.Start) || !Page.IsAligned(e.Size)))
                problems.Add($"RAM entry {i} {e} is not 4 KiB aligned");
            if (!Enum.IsDefined(e.Type)) problems.Add($"entry {i} has unknown type {(int)e.Type}");
        }
        var order = new int[list.Count];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        Array.Sort(order, (a, b) => list[a].Start.CompareTo(list[b].Start));
        for (int k = 1; k < order.Length; k++)
        {
            var prev = list[order[k - 1]];
            var cur = list[order[k]];
            if (prev.Size != 0 && cur.Start < prev.End)
                problems.Add($"entry {order[k - 1]} {prev} overlaps entry {order[k]} {cur}");
        }
        if (problems.Count > 0)
            throw new InvalidConfigurationException("Invalid E820 map: " + string.Join("; ", problems) + ".");
        var sorted = new E820Entry[order.Length];
        for (int k = 0; k < order.Length; k++) sorted[k] = list[order[k]];
        return new E820Map(sorted);
    }

    /// <summary>Total bytes of RAM entries.</summary>
    public ulong RamBytes
    {
        get
        {
            ulong total = 0;
            foreach (var e in _entries) if (e.Type == E820Type.Ram) total += e.Size;
            return total;
        }
    }

    /// <summary>One past the last byte any entry describes.</summary>
    public ulong Top => _entries.Length == 0 ? 0 : _entries[^1].End;

    /// <summary>RAM pfns in ascending order (whole pages only).</summary>
    public IEnumerable<ulong> RamPfns()
    {
        foreach (var e in _entries)
        {
            if (e.Type != E820Type.Ram) continue;
            for (ulong pfn = e.FirstPfn; pfn < (e.End >> Page.Shift); pfn++) yield return pfn;
        }
    }

    public bool IsRam(ulong pfn)
    {
        ulong addr = pfn << Page.Shift;
        foreach (var e in _entries)
            if (e.Type == E820Type.Ram && addr >= e.Start && addr + Page.Size <= e.End) return true;
        return false;
    }

    /// <summary>The E820 entry containing <paramref name="address"/>, or null inside a gap.</summary>
    public E820Entry? Find(ulong address)
    {
        foreach (var e in _entries)
            if (address >= e.Start && address < e.End) return e;
        return null;
    }

    /// <summary>
    /// Everything below <see cref="Top"/> that is not RAM, page-rounded outward (a page only
    /// partly RAM is not RAM), in ascending order with neighbours merged.
    /// </summary>
    public List<NonRamRegion> NonRamRegions()
    {
        var result = new List<NonRamRegion>();
        ulong cursor = 0;
        foreach (var e in _entries)
        {
            if (e.Start > cursor) Add(result, cursor, e.Start, null);
            if (e.Type != E820Type.Ram) Add(result, e.Start, e.End, e.Type);
            cursor = Math.Max(cursor, e.End);
        }
        return result;

        static void Add(List<NonRamRegion> list, ulong start, ulong end, E820Type? type)
        {
            ulong s = start & ~Page.OffsetMask;
            ulong e = (end + Page.OffsetMask) & ~Page.OffsetMask;
            if (list.Count > 0 && list[^1].End >= s)
            {
                var last = list[^1];
                list[^1] = new NonRamRegion(last.Start, Math.Max(last.End, e), last.Type == type ? type : last.Type ?? type);
                return;
            }
            list.Add(new NonRamRegion(s, e, type));
        }
    }

    /// <summary>
    /// The pfn ranges Linux 2.6.39's xen_set_identity hands to set_phys_range_identity, in
    /// order: runs of everything that is neither RAM nor unusable, from the end of one
    /// RAM/unusable entry to the start of the next (gaps included) and after the last one up
    /// to the end of the last entry, each [PFN_UP(start), PFN_DOWN(end)). A domU starts
    /// at 1 MiB (ISA_END_ADDRESS), dom0 at 0. The list keeps what 2.6.39 computes, ranges
    /// with start &gt;= end included (an empty, unaligned one still allocates tree pages).
    /// </summary>
    public List<(ulong StartPfn, ulong EndPfn)> IdentityPfnRanges(bool initialDomain = true)
    {
        var ranges = new List<(ulong, ulong)>();
        ulong last = initialDomain ? 0 : IsaEnd;
        ulong startPci = last;
        foreach (var e in _entries)
        {
            ulong start = e.Start, end = e.End;
            if (start < last) start = last;
            if (end <= start) continue;
            if (last > end) continue;
            if (e.Type is E820Type.Ram or E820Type.Unusable)
            {
                if (start > startPci) ranges.Add((PfnUp(startPci), start >> Page.Shift));
                last = end;                                   // RAM must not be swallowed at the end
                startPci = end;
                continue;
            }
            startPci = Math.Min(start, startPci);
            last = end;
        }
        if (last > startPci) ranges.Add((PfnUp(startPci), last >> Page.Shift));
        return ranges;
    }

    private static ulong PfnUp(ulong address) => (address + Page.OffsetMask) >> Page.Shift;

    /// <summary>ISA_END_ADDRESS: where a domU's identity and 2.6.39's hole release start.</summary>
    public const ulong IsaEnd = 0x100000;

    public const ulong FourGiB = 1UL << 32;
    public const ulong OneMiB = 1UL << 20;

    /// <summary>
    /// The map an HVM PC gets (after hvmloader): RAM below 636 KiB, the EBDA and the legacy
    /// VGA/BIOS hole, RAM from 1 MiB up to <paramref name="ramTop"/> or the PCI hole below
    /// 4 GiB, the firmware's reserved block at the top of that hole, and the rest of the RAM
    /// relocated above 4 GiB.
    /// </summary>
    /// <param name="ramTop">Where RAM would end without the PCI hole (xl's maxmem); the 384 KiB
    /// below 1 MiB that is not RAM is lost, as on a PC.</param>
    /// <param name="mmioHoleBytes">Size of the PCI hole below 4 GiB (xl's mmio_hole).</param>
    public static E820Map DefaultHvm(ulong ramTop, ulong mmioHoleBytes)
    {
        if (!Page.IsAligned(ramTop) || ramTop < 2 * OneMiB)
            throw new InvalidConfigurationException($"RAM size 0x{ramTop:x} must be a multiple of 4 KiB and at least 2 MiB.");
        if (mmioHoleBytes < 16 * OneMiB || mmioHoleBytes > 3584 * OneMiB || mmioHoleBytes % (16 * OneMiB) != 0)
            throw new InvalidConfigurationException($"mmio_hole of {mmioHoleBytes >> 20} MiB must be a multiple of 16 MiB between 16 and 3584.");
        ulong holeStart = FourGiB - mmioHoleBytes;
        const ulong lowRamEnd = 0x9F000, ebdaEnd = 0xA0000, biosStart = 0xF0000;
        var list = new List<E820Entry>
        {
            new(0, lowRamEnd, E820Type.Ram),
            new(lowRamEnd, ebdaEnd - lowRamEnd, E820Type.Reserved),
            new(biosStart, OneMiB - biosStart, E820Type.Reserved),
            new(OneMiB, Math.Min(ramTop, holeStart) - OneMiB, E820Type.Ram),
        };
        ulong left = ramTop > holeStart ? ramTop - holeStart : 0;
        const ulong firmwareStart = 0xFC000000;
        if (firmwareStart >= holeStart)
            list.Add(new(firmwareStart, FourGiB - firmwareStart, E820Type.Reserved));
        if (left > 0) list.Add(new(FourGiB, left, E820Type.Ram));
        return Create(list);
    }
}
