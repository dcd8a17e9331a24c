// Host machine memory: a fixed number of 4 KiB machine frames whose bytes exist only once
// written (reads of a never-written frame see zeros), and an allocator that hands frames
// out from the top down, as Xen's allocator does at domain build (seed 004: "descending
// MFN values"). Freed frames are reused highest first, so a domain built after others come
// and go gets a scattered set: nothing may assume a domain's frames are contiguous (seed 003).
//
// Threads share it (one host per PowerShell process): allocation and free take one lock over
// the free bitmap and its count; a frame's bytes are read and written without one (a frame has
// one owner, and its owner's domain lock orders its users), materialised on first write by a
// compare-and-swap so two threads backing frames in the same chunk cannot lose each other's page.
using System;
using System.Collections.Generic;
using System.Numerics;
using System.Threading;

namespace XenLab.Memory;

public sealed class MachineMemory
{
    private const int ChunkShift = 9;               // 512 frames per lazily created chunk
    private const int ChunkFrames = 1 << ChunkShift;

    private readonly byte[]?[]?[] _chunks;          // [mfn >> 9][mfn & 511] -> 4 KiB, or null (zeros)
    private readonly ulong[] _freeBits;             // bit set = frame free; under _allocGate
    private readonly object _allocGate = new();
    private ulong _freeCount;                       // under _allocGate
    private long _backedFrames;                     // Interlocked

    public MachineMemory(ulong sizeBytes)
    {
        if (sizeBytes < Page.Size || !Page.IsAligned(sizeBytes))
            throw new InvalidConfigurationException($"Host memory size 0x{sizeBytes:x} must be a non-zero multiple of 4 KiB.");
        if (sizeBytes > (1UL << 46))
            throw new InvalidConfigurationException($"Host memory size 0x{sizeBytes:x} exceeds the 64 TiB the model supports.");
        FrameCount = sizeBytes >> Page.Shift;
        _chunks = new byte[]?[(int)((FrameCount + ChunkFrames - 1) >> ChunkShift)][];
        _freeBits = new ulong[(FrameCount + 63) / 64];
        Array.Fill(_freeBits, ~0UL);                 // every frame free: a word at a time, not a frame
        if ((FrameCount & 63) != 0) _freeBits[^1] = (1UL << (int)(FrameCount & 63)) - 1;
        _freeCount = FrameCount;
    }

    public ulong FrameCount { get; }
    public ulong SizeBytes => FrameCount << Page.Shift;
    public ulong FreeFrames => Volatile.Read(ref _freeCount);
    public ulong AllocatedFrames => FrameCount - FreeFrames;
    /// <summary>Frames whose bytes have been materialised by a write.</summary>
    public ulong BackedFrames => (ulong)Interlocked.Read(ref _backedFrames);

    public bool IsAllocated(Mfn mfn) =>
        mfn.Value < FrameCount && (Volatile.Read(ref _freeBits[mfn.Value >> 6]) & (1UL << (int)(mfn.Value & 63))) == 0;

    /// <summary>
    /// Allocates <c>into.Length</c> frames, highest free frame first, into
    /// <paramref name="into"/>. All or nothing: on shortage nothing is taken.
    /// </summary>
    public void Allocate(Span<Mfn> into)
    {
        lock (_allocGate) AllocateLocked(into);
    }

    private void AllocateLocked(Span<Mfn> into)
    {
        ulong count = (ulong)into.Length;
        if (count > _freeCount) throw new MachineMemoryExhaustedException(count, _freeCount);
        int filled = 0;
        for (int w = _freeBits.Length - 1; w >= 0 && filled < into.Length; w--)
        {
            ulong bits = _freeBits[w];
            while (bits != 0 && filled < into.Length)
            {
                int bit = 63 - BitOperations.LeadingZeroCount(bits);
                bits &= ~(1UL << bit);
                into[filled++] = new Mfn(((ulong)w << 6) | (uint)bit);
            }
            _freeBits[w] = bits;
        }
        _freeCount -= count;
    }

    /// <summary>
    /// Allocates <paramref name="count"/> frames, highest free frame first, as runs of consecutive
    /// frames [First, First + Count), highest run first: what <see cref="Allocate"/> hands out,
    /// without an array of one entry a frame (a builder of hundreds of GiB). All or nothing.
    /// </summary>
    public List<(ulong First, ulong Count)> AllocateRuns(ulong count)
    {
        var runs = new List<(ulong First, ulong Count)>();
        lock (_allocGate)
        {
            if (count > _freeCount) throw new MachineMemoryExhaustedException(count, _freeCount);
            ulong left = count;
            for (int w = _freeBits.Length - 1; w >= 0 && left > 0; w--)
            {
                ulong bits = _freeBits[w];
                if (bits == 0) continue;
                if (bits == ~0UL && left >= 64)
                {
                    Take((ulong)w << 6, 64);             // a whole free word
                    _freeBits[w] = 0;
                    left -= 64;
                    continue;
                }
                while (bits != 0 && left > 0)
                {
                    int bit = 63 - BitOperations.LeadingZeroCount(bits);
                    bits &= ~(1UL << bit);
                    Take(((ulong)w << 6) | (uint)bit, 1);
                    left--;
                }
                _freeBits[w] = bits;
            }
            _freeCount -= count;
        }
        return runs;

        // Frames come highest first: a run grows downwards.
        void Take(ulong first, ulong n)
        {
            if (runs.Count > 0 && runs[^1].First == first + n) runs[^1] = (first, runs[^1].Count + n);
            else runs.Add((first, n));
        }
    }

    public Mfn AllocateOne()
    {
        Span<Mfn> one = stackalloc Mfn[1];
        Allocate(one);
        return one[0];
    }

    /// <summary>Returns a frame to the pool and forgets its contents (the next owner reads zeros).</summary>
    public void Free(Mfn mfn)
    {
        if (mfn.Value >= FrameCount)
            throw new InvalidOperationException($"Double free or bad frame: {mfn}.");
        // Forget the bytes before the frame can be handed out again, so its next owner reads zeros.
        var chunk = Volatile.Read(ref _chunks[mfn.Value >> ChunkShift]);
        lock (_allocGate)
        {
            if (IsFree(mfn.Value))
                throw new InvalidOperationException($"Double free or bad frame: {mfn}.");
            if (chunk is not null && chunk[mfn.Value & (ChunkFrames - 1)] is not null)
            {
                Volatile.Write(ref chunk[mfn.Value & (ChunkFrames - 1)], null);
                Interlocked.Decrement(ref _backedFrames);
            }
            _freeBits[mfn.Value >> 6] |= 1UL << (int)(mfn.Value & 63);
            _freeCount++;
        }
    }

    private bool IsFree(ulong frame) => (_freeBits[frame >> 6] & (1UL << (int)(frame & 63))) != 0;

    /// <summary>The frame's bytes for reading; a never-written frame reads as zeros.</summary>
    public ReadOnlySpan<byte> Read(Mfn mfn)
    {
        var page = Lookup(mfn.Value);
        return page is null ? ZeroPage : page;
    }

    /// <summary>The frame's bytes for writing, materialised on first use.</summary>
    public Span<byte> Write(Mfn mfn)
    {
        ulong f = mfn.Value;
        if (f >= FrameCount) ThrowBadFrame(f);
        var chunk = _chunks[f >> ChunkShift] ?? NewChunk(f >> ChunkShift);
        return chunk[f & (ChunkFrames - 1)] ?? NewPage(chunk, (int)(f & (ChunkFrames - 1)));
    }

    // First writes: published by compare-and-swap, so a racing thread uses the winner's array.
    private byte[]?[] NewChunk(ulong index) =>
        Interlocked.CompareExchange(ref _chunks[index], new byte[ChunkFrames][], null) ?? _chunks[index]!;

    private byte[] NewPage(byte[]?[] chunk, int slot)
    {
        var page = new byte[Page.Size];
        var won = Interlocked.CompareExchange(ref chunk[slot], page, null);
        if (won is not null) return won;
        Interlocked.Increment(ref _backedFrames);
        return page;
    }

    public ulong ReadUInt64(Mfn mfn, int offset) =>
        System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(Read(mfn).Slice(offset, 8));

    public void WriteUInt64(Mfn mfn, int offset, ulong value) =>
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(Write(mfn).Slice(offset, 8), value);

    /// <summary>The frame's bytes if it has been materialised (for translated code's TLB fast path), else null.</summary>
    internal byte[]? MaterialisedFrame(ulong f) => Lookup(f);

    private byte[]? Lookup(ulong f)
    {
        if (f >= FrameCount) ThrowBadFrame(f);
        var chunk = _chunks[f >> ChunkShift];
        return chunk?[f & (ChunkFrames - 1)];
    }

    private static readonly byte[] ZeroPage = new byte[Page.Size];

    private static void ThrowBadFrame(ulong f) =>
        throw new ArgumentOutOfRangeException(nameof(f), $"Machine frame 0x{f:x} is beyond host memory.");
}
