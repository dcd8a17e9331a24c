// The log-dirty bitmap as Xen keeps it (paging.c): a four-level tree of 512-entry nodes whose
// leaves are pages of 32,768 bits. Nodes exist only where something was marked, so a clean
// domain of any size costs one top node.
using System;
using System.Numerics;

namespace XenLab.Dirty;

public sealed class LogDirtyBitmap
{
    public const int LeafBits = 32768;              // one 4 KiB page of bits
    private const int LeafShift = 15;
    private const int NodeShift = 9;
    private const int NodeMask = 511;

    private readonly ulong[]?[]?[]?[] _top = new ulong[]?[]?[]?[512];
    private int _nodes = 1, _leaves;

    /// <summary>Tree pages allocated: the top, inner nodes and leaves.</summary>
    public int Pages => _nodes + _leaves;
    public long DirtyCount { get; private set; }

    /// <summary>Sets the bit of <paramref name="pfn"/>; true if it was clear.</summary>
    public bool Mark(ulong pfn)
    {
        ref var l3 = ref _top[(pfn >> (LeafShift + 2 * NodeShift)) & NodeMask];
        if (l3 is null) { l3 = new ulong[]?[]?[512]; _nodes++; }
        ref var l2 = ref l3[(pfn >> (LeafShift + NodeShift)) & NodeMask];
        if (l2 is null) { l2 = new ulong[]?[512]; _nodes++; }
        ref var leaf = ref l2[(pfn >> LeafShift) & NodeMask];
        if (leaf is null) { leaf = new ulong[LeafBits / 64]; _leaves++; }
        int bit = (int)(pfn & (LeafBits - 1));
        ulong mask = 1UL << (bit & 63);
        if ((leaf[bit >> 6] & mask) != 0) return false;
        leaf[bit >> 6] |= mask;
        DirtyCount++;
        return true;
    }

    public bool IsDirty(ulong pfn)
    {
        var leaf = Leaf(pfn);
        if (leaf is null) return false;
        int bit = (int)(pfn & (LeafBits - 1));
        return (leaf[bit >> 6] & (1UL << (bit & 63))) != 0;
    }

    /// <summary>Copies the bits of [start, start + count) into <paramref name="bitmap"/> (LSB first, as Xen hands them out).</summary>
    public void CopyTo(ulong start, ulong count, Span<byte> bitmap)
    {
        bitmap.Slice(0, (int)((count + 7) / 8)).Clear();
        for (ulong i = 0; i < count; i++)
            if (IsDirty(start + i)) bitmap[(int)(i >> 3)] |= (byte)(1 << (int)(i & 7));
    }

    /// <summary>Every dirty pfn, ascending, found by scanning 64-bit words with trailing-zero counts.</summary>
    public System.Collections.Generic.IEnumerable<ulong> DirtyPfns()
    {
        for (int a = 0; a < 512; a++)
        {
            var l3 = _top[a];
            if (l3 is null) continue;
            for (int b = 0; b < 512; b++)
            {
                var l2 = l3[b];
                if (l2 is null) continue;
                for (int c = 0; c < 512; c++)
                {
                    var leaf = l2[c];
                    if (leaf is null) continue;
                    ulong basePfn = ((ulong)a << (LeafShift + 2 * NodeShift)) | ((ulong)b << (LeafShift + NodeShift)) | ((ulong)c << LeafShift);
                    for (int w = 0; w < leaf.Length; w++)
                    {
                        ulong word = leaf[w];
                        while (word != 0)
                        {
                            int t = BitOperations.TrailingZeroCount(word);
                            yield return basePfn + (ulong)(w * 64 + t);
                            word &= word - 1;
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// Clean, as paging_log_dirty_op does it: every leaf is zeroed, every node and leaf stays
    /// allocated (freed only by <see cref="Clear"/>, when log-dirty is disabled). Costs the
    /// leaves that exist, not the domain's size.
    /// </summary>
    public void CleanLeaves()
    {
        foreach (var l3 in _top)
        {
            if (l3 is null) continue;
            foreach (var l2 in l3)
            {
                if (l2 is null) continue;
                foreach (var leaf in l2) if (leaf is not null) Array.Clear(leaf);
            }
        }
        DirtyCount = 0;
    }

    /// <summary>Forgets every bit and frees every node but the top (enable, disable).</summary>
    public void Clear()
    {
        Array.Clear(_top);
        _nodes = 1;
        _leaves = 0;
        DirtyCount = 0;
    }

    private ulong[]? Leaf(ulong pfn) =>
        _top[(pfn >> (LeafShift + 2 * NodeShift)) & NodeMask]?[(pfn >> (LeafShift + NodeShift)) & NodeMask]?[(pfn >> LeafShift) & NodeMask];
}
