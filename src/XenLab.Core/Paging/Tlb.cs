// A vCPU's TLB: direct-mapped, one entry per 4 KiB virtual page. It caches the translation
// and the dirty state of the leaf entry: a write through an entry whose dirty bit is already
// cached does not walk again, so clearing D in a page table without a flush loses later
// writes, exactly as on hardware (seed 003).
using System;
using System.Runtime.CompilerServices;

namespace XenLab.Paging;

public struct TlbEntry
{
    /// <summary>Virtual page number + 1 (0 = empty).</summary>
    public ulong Tag;
    public ulong Gfn;
    /// <summary>Machine frame the data lives in (unused for MMIO).</summary>
    public ulong Mfn;
    /// <summary><see cref="TlbRights"/>: effective guest rights, the leaf's dirty bit, host write permission.</summary>
    public ulong Flags;
    /// <summary>Size of the page the walk found (12, 21 or 30 bits): invlpg drops the whole page.</summary>
    public byte PageShift;
    /// <summary>
    /// <see cref="Tlb.FastRead"/> / <see cref="Tlb.FastWrite"/>: what translated code may do through
    /// <see cref="Backing"/> with no side effect. Set only by the vCPU's slow path after it checked
    /// every condition; every fill, invlpg and flush resets the entry, and so clears them.
    /// </summary>
    public byte Fast;
    /// <summary>The host bytes of <see cref="Mfn"/> (valid only while <see cref="Fast"/> is non-zero).</summary>
    public byte[]? Backing;
}

public sealed class Tlb
{
    public const int DefaultEntries = 512;
    /// <summary>Reads may use the entry's backing directly: not device memory, frame materialised.</summary>
    public const byte FastRead = 1;
    /// <summary>
    /// Writes may use the backing directly: the leaf's D bit is cached set, the host side lets the
    /// write through (not armed for log-dirty or VRAM tracking, not write-protected by shadow),
    /// not MMIO, not emulated, and the frame holds no decoded or translated code.
    /// </summary>
    public const byte FastWrite = 2;
    private readonly TlbEntry[] _entries;
    private readonly int _mask;
    private int _largeEntries;
    // Fill is the only way an entry becomes valid: a flush with no fill since the last one has
    // nothing to clear (several flushes in a row, e.g. one per VRAM range queried, are cheap).
    private bool _filledSinceFlush;

    public Tlb(int entries = DefaultEntries)
    {
        if (entries <= 0 || (entries & (entries - 1)) != 0)
            throw new InvalidConfigurationException($"TLB size {entries} must be a power of two.");
        _entries = new TlbEntry[entries];
        _mask = entries - 1;
    }

    public int Size => _entries.Length;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref TlbEntry Slot(ulong va) => ref _entries[(int)(va >> 12) & _mask];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Matches(in TlbEntry e, ulong va) => e.Tag == (va >> 12) + 1;

    public void Fill(ulong va, ulong gfn, ulong mfn, ulong flags, int pageShift)
    {
        _filledSinceFlush = true;
        ref var e = ref Slot(va);
        if (e.Tag != 0 && e.PageShift != 12) _largeEntries--;
        e.Tag = (va >> 12) + 1;
        e.Gfn = gfn;
        e.Mfn = mfn;
        e.Flags = flags;
        e.PageShift = (byte)pageShift;
        e.Fast = 0;
        e.Backing = null;
        if (pageShift != 12) _largeEntries++;
    }

    /// <summary>invlpg: drops the entry for <paramref name="va"/>, and any entry of a large page containing it.</summary>
    public void Invalidate(ulong va)
    {
        ref var e = ref Slot(va);
        if (Matches(e, va)) Drop(ref e);
        if (_largeEntries == 0) return;
        for (int i = 0; i < _entries.Length; i++)
        {
            ref var x = ref _entries[i];
            if (x.Tag == 0 || x.PageShift == 12) continue;
            ulong pageVa = (x.Tag - 1) << 12;
            if ((pageVa >> x.PageShift) == (va >> x.PageShift)) Drop(ref x);
        }
    }

    /// <summary>The entries array and index mask, for translated code's inlined lookup.</summary>
    internal TlbEntry[] Entries => _entries;
    internal int Mask => _mask;

    /// <summary>Grants fast access through the entry for <paramref name="va"/> (the caller verified the conditions).</summary>
    internal void GrantFast(ulong va, byte fast, byte[] backing)
    {
        ref var e = ref Slot(va);
        if (!Matches(e, va)) return;
        e.Fast |= fast;
        e.Backing = backing;
    }

    /// <summary>A frame became code: no entry may write without the slow path's invalidation check.</summary>
    internal void RevokeFastWrites()
    {
        foreach (ref var e in _entries.AsSpan()) e.Fast &= unchecked((byte)~FastWrite);
    }

    public void FlushAll()
    {
        if (!_filledSinceFlush) return;            // nothing can be cached: a flush of an empty TLB costs nothing
        Array.Clear(_entries);
        _largeEntries = 0;
        _filledSinceFlush = false;
    }

    public int ValidEntries
    {
        get
        {
            int n = 0;
            foreach (ref readonly var e in _entries.AsSpan()) if (e.Tag != 0) n++;
            return n;
        }
    }

    private void Drop(ref TlbEntry e)
    {
        if (e.PageShift != 12) _largeEntries--;
        e = default;
    }
}
