// Where an ARM or HAP domain's RAM frames go at build so that stage 2 / the EPT can map blocks.
// Xen's toolstack populates a guest with the largest extents it can get (1 GiB, then 2 MiB, then
// 4 KiB: populate_physmap with an extent order), so an aligned GiB or 2 MiB of guest RAM sits on
// aligned, contiguous machine memory whenever the allocator has such a run. This places frames
// already allocated (highest first) to the same effect, size by size: every aligned 1 GiB run
// among them goes, highest first, to the lowest aligned GiB of pfns still unplaced; then every
// aligned 2 MiB run among the frames left, to the lowest 2 MiB groups left; the rest keep the
// allocator's descending order over the pfns left, ascending. It works on runs of frames and
// ranges of pfns, never on one entry a page, so a domain of hundreds of GiB places in
// microseconds; only what is set in the p2m afterwards is per page.
using System;
using System.Collections.Generic;
using XenLab.Memory;

namespace XenLab.Paging.Arm;

/// <summary>Count pfns from <c>Pfn</c> up get frames from <c>Mfn</c> up (or down, when <c>Descending</c>).</summary>
public readonly record struct Placement(ulong Pfn, ulong Mfn, ulong Count, bool Descending)
{
    public ulong MfnAt(ulong i) => Descending ? Mfn - i : Mfn + i;
}

public static class BlockPlacement
{
    public const int FramesPerBlock = 512;
    /// <summary>Extent orders tried, largest first: 1 GiB, then 2 MiB.</summary>
    public static readonly int[] BlockOrders = { 18, 9 };

    /// <summary>
    /// Places frames on pfns. <paramref name="pfnRanges"/>: ascending, disjoint; <paramref name="frameRuns"/>:
    /// runs of consecutive frames, highest run first (as <see cref="MachineMemory.AllocateRuns"/> gives them),
    /// as many frames as pfns. <paramref name="blockOrders"/>: extent orders, largest first (none: allocator order).
    /// </summary>
    public static List<Placement> Place(IReadOnlyList<(ulong First, ulong Count)> pfnRanges,
        IReadOnlyList<(ulong First, ulong Count)> frameRuns, ReadOnlySpan<int> blockOrders)
    {
        var pfns = new List<(ulong First, ulong Count)>(pfnRanges);
        var frames = new List<(ulong First, ulong Count)>(frameRuns.Count);
        for (int i = frameRuns.Count - 1; i >= 0; i--) frames.Add(frameRuns[i]);       // ascending
        ulong totalPfns = 0, totalFrames = 0;
        foreach (var r in pfns) totalPfns += r.Count;
        foreach (var r in frames) totalFrames += r.Count;
        if (totalPfns != totalFrames) throw new ArgumentException($"{totalPfns} pfns but {totalFrames} frames");
        var placed = new List<Placement>();
        foreach (int order in blockOrders)
        {
            ulong size = 1UL << order;
            var groups = AlignedBlocks(pfns, size, lowestFirst: true, int.MaxValue);
            if (groups.Count == 0) continue;
            var blocks = AlignedBlocks(frames, size, lowestFirst: false, groups.Count);
            if (blocks.Count < groups.Count) groups.RemoveRange(blocks.Count, groups.Count - blocks.Count);
            for (int i = 0; i < groups.Count; i++) placed.Add(new Placement(groups[i], blocks[i], size, false));
            pfns = Subtract(pfns, groups, size);
            blocks.Reverse();
            frames = Subtract(frames, blocks, size);
        }
        // The rest: frames highest first onto pfns lowest first.
        int f = frames.Count - 1;
        ulong fTop = f >= 0 ? frames[f].First + frames[f].Count : 0;       // one past the next frame to hand out
        foreach (var (first, count) in pfns)
        {
            ulong pfn = first, left = count;
            while (left > 0)
            {
                while (fTop == frames[f].First) { f--; fTop = frames[f].First + frames[f].Count; }
                ulong n = Math.Min(left, fTop - frames[f].First);
                placed.Add(new Placement(pfn, fTop - 1, n, true));
                pfn += n;
                left -= n;
                fTop -= n;
            }
        }
        placed.Sort((a, b) => a.Pfn.CompareTo(b.Pfn));
        return placed;
    }

    /// <summary>Starts of the aligned blocks of <paramref name="size"/> inside ascending ranges, lowest or highest first, at most <paramref name="max"/>.</summary>
    private static List<ulong> AlignedBlocks(List<(ulong First, ulong Count)> ranges, ulong size, bool lowestFirst, int max)
    {
        var found = new List<ulong>();
        for (int k = 0; k < ranges.Count && found.Count < max; k++)
        {
            var (first, count) = ranges[lowestFirst ? k : ranges.Count - 1 - k];
            ulong lo = (first + size - 1) & ~(size - 1), hi = (first + count) & ~(size - 1);
            if (hi < lo + size) continue;
            if (lowestFirst) for (ulong b = lo; b + size <= hi && found.Count < max; b += size) found.Add(b);
            else for (ulong b = hi - size; found.Count < max; b -= size) { found.Add(b); if (b == lo) break; }
        }
        return found;
    }

    /// <summary>Ascending ranges less the blocks at <paramref name="starts"/> (ascending, each inside one range).</summary>
    private static List<(ulong First, ulong Count)> Subtract(List<(ulong First, ulong Count)> ranges, List<ulong> starts, ulong size)
    {
        var left = new List<(ulong First, ulong Count)>(ranges.Count + 1);
        int s = 0;
        foreach (var (first, count) in ranges)
        {
            ulong at = first, end = first + count;
            while (s < starts.Count && starts[s] < end)
            {
                if (starts[s] > at) left.Add((at, starts[s] - at));
                at = starts[s] + size;
                s++;
            }
            if (at < end) left.Add((at, end - at));
        }
        return left;
    }

    /// <summary>Reorders <paramref name="mfns"/> in place so mfns[i] is the frame for pfns[i] (pfns ascending): <see cref="Place"/> over arrays.</summary>
    public static void ArrangeForBlocks(ReadOnlySpan<ulong> pfns, Span<Mfn> mfns)
    {
        if (pfns.Length != mfns.Length) throw new ArgumentException("one frame per pfn");
        if (pfns.Length == 0) return;
        var ranges = new List<(ulong First, ulong Count)>();
        foreach (ulong p in pfns)
            if (ranges.Count > 0 && ranges[^1].First + ranges[^1].Count == p) ranges[^1] = (ranges[^1].First, ranges[^1].Count + 1);
            else ranges.Add((p, 1));
        var sorted = new ulong[mfns.Length];
        for (int i = 0; i < sorted.Length; i++) sorted[i] = mfns[i].Value;
        Array.Sort(sorted);
        var runs = new List<(ulong First, ulong Count)>();       // highest first
        for (int i = sorted.Length - 1; i >= 0; i--)
            if (runs.Count > 0 && runs[^1].First == sorted[i] + 1) runs[^1] = (sorted[i], runs[^1].Count + 1);
            else runs.Add((sorted[i], 1));
        int at = 0;
        foreach (var p in Place(ranges, runs, BlockOrders))
        {
            while (pfns[at] != p.Pfn) at++;
            for (ulong i = 0; i < p.Count; i++) mfns[at + (int)i] = new Mfn(p.MfnAt(i));
        }
    }
}
