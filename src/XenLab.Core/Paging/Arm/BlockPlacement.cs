// Where an ARM domain's RAM frames go at build so that stage 2 can use 2 MiB blocks. Xen's ARM
// toolstack populates a guest with the largest extents it can get (1 GiB, then 2 MiB, then
// 4 KiB: populate_physmap with an extent order), so aligned 2 MiB of guest RAM sits on aligned,
// contiguous 2 MiB of machine memory whenever the allocator has such a run. This rearranges
// frames already allocated (highest first) to the same effect: every aligned 512-frame run among
// them goes, highest first, to the lowest 2 MiB-aligned group of 512 consecutive pfns; the rest
// keep their descending order.
using System;
using System.Collections.Generic;
using XenLab.Memory;

namespace XenLab.Paging.Arm;

public static class BlockPlacement
{
    public const int FramesPerBlock = 512;

    /// <summary>Reorders <paramref name="mfns"/> in place so mfns[i] is the frame for pfns[i] (pfns ascending).</summary>
    public static void ArrangeForBlocks(ReadOnlySpan<ulong> pfns, Span<Mfn> mfns)
    {
        if (pfns.Length != mfns.Length) throw new ArgumentException("one frame per pfn");
        int n = mfns.Length;
        var sorted = new ulong[n];
        // The allocator hands frames out highest first: then reversing sorts them (no O(n log n) sort of a big domain).
        bool descending = true;
        for (int i = 0; i < n; i++)
        {
            sorted[n - 1 - i] = mfns[i].Value;
            if (i > 0 && mfns[i].Value >= mfns[i - 1].Value) descending = false;
        }
        if (!descending) Array.Sort(sorted);
        // Aligned, contiguous runs of 512 frames, highest first.
        var runs = new List<ulong>();
        for (int j = n - FramesPerBlock; j >= 0;)
        {
            ulong v = sorted[j];
            if ((v & (FramesPerBlock - 1)) == 0 && sorted[j + FramesPerBlock - 1] == v + FramesPerBlock - 1)
            {
                runs.Add(v);
                j -= FramesPerBlock;
            }
            else j--;
        }
        if (runs.Count == 0) return;
        var result = new ulong[n];
        var taken = new bool[n == 0 ? 1 : (int)(sorted[n - 1] / FramesPerBlock) + 1];   // by block number: no hashing per frame
        int next = 0;
        var placed = new bool[n];
        for (int i = 0; i + FramesPerBlock <= n && next < runs.Count; i++)
        {
            if ((pfns[i] & (FramesPerBlock - 1)) != 0 || pfns[i + FramesPerBlock - 1] != pfns[i] + FramesPerBlock - 1) continue;
            ulong run = runs[next++];
            taken[(int)(run / FramesPerBlock)] = true;
            for (int k = 0; k < FramesPerBlock; k++)
            {
                result[i + k] = run + (ulong)k;
                placed[i + k] = true;
            }
            i += FramesPerBlock - 1;
        }
        // The rest, in the allocator's (descending) order, skipping frames now in blocks.
        int r = 0;
        for (int i = 0; i < n; i++)
        {
            ulong v = mfns[i].Value;
            if (taken[(int)(v / FramesPerBlock)]) continue;    // in a run given to a block
            while (r < n && placed[r]) r++;
            result[r++] = v;
        }
        for (int i = 0; i < n; i++) mfns[i] = new Mfn(result[i]);
    }
}
