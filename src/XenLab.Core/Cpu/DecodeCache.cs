// The decoded-instruction cache, keyed by guest-physical address: one CodePage per guest frame
// that held executed code, with a 4 KiB offset -> slot index and the decoded instructions.
// Invalidation: the vCPU's own writes (direct, or emulated through Domain.WriteGuestPhysical)
// drop the page at once; writes from anywhere else (the guest kernel, a cmdlet, another vCPU,
// a hypercall handler) happen between runs, so each page keeps a snapshot of the bytes it was
// decoded from and is re-verified the first time it is entered in a new run "generation".
using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using XenLab.Memory;

namespace XenLab.Cpu;

internal sealed class CodePage
{
    public CodePage(ulong gfn, ulong mfn, ReadOnlySpan<byte> bytes, long generation)
    {
        Gfn = gfn;
        Mfn = mfn;
        bytes.CopyTo(Snapshot);
        VerifiedGeneration = generation;
    }

    public readonly ulong Gfn;
    public ulong Mfn;
    /// <summary>The bytes the instructions were decoded from.</summary>
    public readonly byte[] Snapshot = new byte[Page.Size];
    /// <summary>Per byte offset: 0 = not decoded, else slot + 1.</summary>
    public readonly ushort[] Index = new ushort[Page.Size];
    public DecodedInstruction[] Instructions = new DecodedInstruction[16];
    public int Count;
    /// <summary>Cleared when the page is invalidated, so a vCPU holding it re-fetches.</summary>
    public bool Valid = true;
    public long VerifiedGeneration;

    /// <summary>Per slot: the translated block starting there (or <see cref="Blocks.TranslatedBlock.Untranslatable"/>), made on demand.</summary>
    public Blocks.TranslatedBlock?[]? Blocks;
    /// <summary>Per slot: how often the interpreter started there, until it is translated.</summary>
    public byte[]? Heat;
    /// <summary>Translated blocks on this page (counted as invalidated when the page goes).</summary>
    public int BlockCount;

    public ref DecodedInstruction Add(int offset, in DecodedInstruction d)
    {
        if (Count == Instructions.Length)
        {
            Array.Resize(ref Instructions, Count * 2);
            if (Blocks is not null) Array.Resize(ref Blocks, Count * 2);
            if (Heat is not null) Array.Resize(ref Heat, Count * 2);
        }
        Instructions[Count] = d;
        Index[offset] = (ushort)(Count + 1);
        return ref Instructions[Count++];
    }
}

internal sealed class DecodeCache
{
    /// <summary>Code pages kept before the whole cache is dropped (a guest churning through code).</summary>
    public const int MaxPages = 4096;
    private const int FilterWords = 1024;                          // 65,536 bits, hashed by gfn

    private readonly Dictionary<ulong, CodePage> _pages = new();
    private readonly ulong[] _filter = new ulong[FilterWords];
    private long _generation = 1;

    public int Pages => _pages.Count;
    public long Invalidations { get; private set; }
    /// <summary>Translated blocks dropped with their pages.</summary>
    public long BlocksInvalidated { get; private set; }
    /// <summary>Pages created (a frame newly holding code: the vCPU revokes fast writes).</summary>
    public long Created { get; private set; }

    /// <summary>A new run: pages must be re-verified against guest memory before use.</summary>
    public void NewGeneration() => _generation++;

    /// <summary>False means the gfn certainly holds no cached code (a Bloom-style filter; true may be a false positive).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool MayHoldCode(ulong gfn) => (_filter[(gfn >> 6) & (FilterWords - 1)] & (1UL << (int)(gfn & 63))) != 0;

    /// <summary>The page for <paramref name="gfn"/>, verified against <paramref name="bytes"/> (its current contents) once per generation.</summary>
    public CodePage Get(ulong gfn, ulong mfn, ReadOnlySpan<byte> bytes)
    {
        if (_pages.TryGetValue(gfn, out var page))
        {
            if (page.VerifiedGeneration == _generation && page.Mfn == mfn) return page;
            if (bytes.SequenceEqual(page.Snapshot))
            {
                page.VerifiedGeneration = _generation;
                page.Mfn = mfn;
                return page;
            }
            Drop(page);
        }
        if (_pages.Count >= MaxPages) Clear();
        page = new CodePage(gfn, mfn, bytes, _generation);
        Created++;
        _pages[gfn] = page;
        _filter[(gfn >> 6) & (FilterWords - 1)] |= 1UL << (int)(gfn & 63);
        return page;
    }

    /// <summary>A write hit <paramref name="gfn"/>: drop its decoded instructions. True if there were any.</summary>
    public bool Invalidate(ulong gfn)
    {
        if (!MayHoldCode(gfn) || !_pages.TryGetValue(gfn, out var page)) return false;
        Drop(page);
        return true;
    }

    public void Clear()
    {
        foreach (var p in _pages.Values) Unlink(p);
        Invalidations += _pages.Count;
        _pages.Clear();
        Array.Clear(_filter);
    }

    private void Drop(CodePage page)
    {
        Unlink(page);
        _pages.Remove(page.Gfn);
        Invalidations++;
    }

    /// <summary>The page's code is gone: its translated blocks lose their successors and may not run again.</summary>
    private void Unlink(CodePage page)
    {
        page.Valid = false;
        if (page.Blocks is null) return;
        foreach (var b in page.Blocks) b?.Unlink();
        BlocksInvalidated += page.BlockCount;
        page.BlockCount = 0;
    }
}
