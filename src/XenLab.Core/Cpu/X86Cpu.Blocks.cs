// The run loop's side of block translation: when to translate (a slot's heat), running blocks
// and following their links, and the slow path. A memory operand without fast access leaves
// the block; the interpreter runs that one instruction (Resolve/Load/Store with every side
// effect), and then the TLB entry it left behind is granted fast access (Tlb.FastRead /
// FastWrite) only if a later access through it could have none.
using System;
using System.Runtime.CompilerServices;
using XenLab.Cpu.Blocks;
using XenLab.Diagnostics;
using XenLab.Memory;
using XenLab.Paging;

namespace XenLab.Cpu;

public sealed partial class X86Cpu
{
    /// <summary>Default executions of a block start before it is translated.</summary>
    public const int DefaultTranslationThreshold = 8;

    private readonly TlbEntry[] _tlbEntries;
    private readonly int _tlbMask;
    private bool _translate;
    private int _threshold = DefaultTranslationThreshold;
    private long _createdSeen;
    private long _blocksInvalidatedSeen;

    // Written by translated code (through IL, which the compiler does not see).
#pragma warning disable CS0649
    private long _blockRetired;
    private ulong _missVa;
#pragma warning restore CS0649
    // A block left before a memory instruction: interpret it, then grant its TLB entry.
    private bool _interpretNext;

    // Counted here and added to the domain's counters once per run.
    private long _blocksTranslated, _blocksExecuted, _blocksChained;

    /// <summary>Translate hot code to IL (the domain's `translate` key; on by default).</summary>
    public bool TranslationEnabled
    {
        get => _translate;
        set => _translate = value;
    }

    /// <summary>Executions of a block start before it is translated (0 = at once, for tests; at most 255).</summary>
    public int TranslationThreshold
    {
        get => _threshold;
        set
        {
            if (value < 0 || value > 255) throw new InvalidConfigurationException($"Translation threshold {value} must be 0 to 255 executions.");
            _threshold = value;
        }
    }

    /// <summary>The translated block starting at this slot, translating it when hot enough; null to interpret.</summary>
    private TranslatedBlock? BlockAt(CodePage page, int slot, ulong rip, int off)
    {
        if (slot != 0)
        {
            var b = page.Blocks?[slot - 1];
            if (b is not null) return b.Code is null ? null : b;
            if (_threshold > 0)
            {
                var heat = page.Heat ??= new byte[page.Instructions.Length];
                if (++heat[slot - 1] < _threshold) return null;
            }
        }
        else if (_threshold > 0) return null;                          // not even decoded yet: the interpreter goes first
        return TranslateAt(page, rip, off);
    }

    private TranslatedBlock? TranslateAt(CodePage page, ulong rip, int off)
    {
        int first = DecodeAhead(page, rip, off);
        if (first < 0) return null;
        var block = BlockTranslator.Translate(page, first, off, this, rip - (ulong)off);
        page.Blocks ??= new TranslatedBlock?[page.Instructions.Length];
        if (page.Blocks.Length < page.Instructions.Length) Array.Resize(ref page.Blocks, page.Instructions.Length);
        page.Blocks[first] = block ?? TranslatedBlock.Untranslatable;
        if (block is null) return null;
        page.BlockCount++;
        _blocksTranslated++;
        return block;
    }

    /// <summary>
    /// The slot of the instruction at <paramref name="off"/>, decoding it into the page if needed
    /// (without running it); -1 if it cannot be cached (it crosses the page, or is invalid).
    /// </summary>
    internal int DecodeAhead(CodePage page, ulong rip, int off)
    {
        int slot = page.Index[off];
        if (slot != 0) return slot - 1;
        int n = Math.Min(15, Page.Size - off);
        var window = _reader.Buffer;
        page.Snapshot.AsSpan(off, n).CopyTo(window);
        _reader.Reset(n);
        _decoder.IP = rip;
        _decoder.Decode(out var ins);
        if (ins.IsInvalid) return -1;
        var d = InstructionTranslator.Translate(in ins);
        if (d.Op == Op.Unsupported) return -1;
        page.Add(off, in d);
        return page.Index[off] - 1;
    }

    /// <summary>Runs <paramref name="block"/> and the blocks it links to. 0 = go on interpreting, else the run stops.</summary>
    private int RunBlocks(TranslatedBlock block, long budget, ref long retired, ref long delivered)
    {
        while (true)
        {
            _blocksExecuted++;
            int exit = block.Code!(this, budget - delivered - retired);
            retired += _blockRetired;
            if (exit == TranslatedBlock.ExitSlow) { _interpretNext = true; return Continue; }
            if (exit == TranslatedBlock.ExitFault) return FaultOrDeliver(_rip, ref delivered);
            var page = block.Page;
            ulong rip = _rip;
            if (!page.Valid || !ReferenceEquals(page, _page) || (rip & ~Page.OffsetMask) != _pageVa) return Continue;
            var next = exit == TranslatedBlock.ExitTaken ? block.Taken : block.Next;
            if (next is null || !next.Valid)
            {
                int slot = page.Index[(int)(rip & Page.OffsetMask)];
                if (slot == 0 || page.Blocks is null || slot > page.Blocks.Length) return Continue;
                next = page.Blocks[slot - 1];
                if (next is null || next.Code is null) return Continue;
                if (exit == TranslatedBlock.ExitTaken) block.Taken = next;
                else block.Next = next;
            }
            if (budget - delivered - retired < next.Instructions) return Continue;
            _blocksChained++;
            block = next;
        }
    }

    private void NoteNewCodePages()
    {
        if (_cache.Created == _createdSeen) return;
        _createdSeen = _cache.Created;
        _vcpu.Tlb.RevokeFastWrites();                                 // a frame holding code may not be written past the invalidation check
    }

    private void FlushBlockCounters()
    {
        long inv = _cache.BlocksInvalidated - _blocksInvalidatedSeen;
        _blocksInvalidatedSeen = _cache.BlocksInvalidated;
        if ((_blocksTranslated | _blocksExecuted | _blocksChained | inv) == 0) return;
        _counters.Add(PerfCounter.CpuBlockTranslated, _blocksTranslated);
        _counters.Add(PerfCounter.CpuBlockExecuted, _blocksExecuted);
        _counters.Add(PerfCounter.CpuBlockChained, _blocksChained);
        _counters.Add(PerfCounter.CpuBlockInvalidated, inv);
        _blocksTranslated = _blocksExecuted = _blocksChained = 0;
    }

    // ---- helpers called by translated code -------------------------------------------------

    /// <summary>
    /// After the interpreter ran an instruction a block left for: grant the TLB entry for
    /// <paramref name="va"/> fast reads (not device memory, frame materialised) and fast writes
    /// (the D bit cached, the host lets writes through, writable, not emulated, no code in the
    /// frame), i.e. exactly when the interpreter's own access through it would have no side effect.
    /// </summary>
    private void GrantFast(ulong va)
    {
        ref var e = ref _vcpu.Tlb.Slot(va);
        if (!Tlb.Matches(e, va) || (e.Flags & TlbRights.Mmio) != 0) return;
        var frame = _machine.MaterialisedFrame(e.Mfn);
        if (frame is null) return;
        byte fast = Tlb.FastRead;
        const ulong need = TlbRights.Dirty | TlbRights.HostWritable | TlbRights.Writable;
        if ((e.Flags & (need | TlbRights.EmulateWrites)) == need && !_cache.MayHoldCode(e.Gfn)) fast |= Tlb.FastWrite;
        e.Fast = fast;
        e.Backing = frame;
    }

    /// <summary>What the fast path did, as the interpreter would have counted it.</summary>
    internal void BlockCounts(long tlbHits, long reads, long writes)
    {
        _counters.Add(PerfCounter.TlbHit, tlbHits);
        _counters.Add(PerfCounter.GuestVirtRead, reads);
        _counters.Add(PerfCounter.GuestVirtWrite, writes);
    }

    /// <summary>A shift or rotate for translated code (which has put the lazy record in the fields): the interpreter's Shift.</summary>
    internal ulong BlockShift(int kind, ulong value, int count, int size) => Shift((ShiftKind)kind, value, count, size);

    /// <summary>#GP for a jump to a non-canonical target, recorded as the interpreter does.</summary>
    internal void BlockGeneralProtection(ulong target) => GeneralProtection(target);

    /// <summary>A condition from lazy flags held in translated code's locals (op LzNone: from RFLAGS).</summary>
    internal static bool ConditionFrom(int op, int size, ulong a, ulong b, ulong r, ulong carry, ulong rflags, int cc)
    {
        ulong f = op == LzNone ? rflags : StatusOf((byte)op, size, a, b, r, carry);
        return ConditionOf(f, cc);
    }

    /// <summary>CF from lazy flags held in translated code's locals, as <see cref="CarryFlag"/> computes it.</summary>
    internal static ulong CarryFrom(int op, int size, ulong a, ulong b, ulong r, ulong carry, ulong rflags)
    {
        if (op == LzNone) return rflags & RFlags.CF;
        return StatusOf((byte)op, size, a, b, r, carry) & RFlags.CF;
    }
}
