// An x86-64 interpreter for one vCPU: registers and flags, the run loop with budget and
// breakpoints, instruction fetch through a per-page fetch translation and the decode cache,
// and stops as results (never exceptions). CR3 stays in Vcpu (LoadCr3 flushes the TLB and
// lets shadow mode resync), CR2 is Vcpu.Cr2 (set by the translation that faulted).
using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Iced.Intel;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Memory;
using XenLab.Paging;

namespace XenLab.Cpu;

[SkipLocalsInit]
public sealed partial class X86Cpu
{
    private readonly Vcpu _vcpu;
    private readonly Domain _domain;
    private readonly MachineMemory _machine;
    private readonly PerfCounters _counters;
    private readonly ulong[] _r = new ulong[16];
    private readonly DecodeCache _cache = new();
    private ulong _rip;

    // Fetch: the code page RIP is in, translated once per entry into it.
    private CodePage? _page;
    private ulong _pageVa = ulong.MaxValue;
    private bool _pageHasBreakpoint;
    private ulong[] _breakpoints = Array.Empty<ulong>();
    private int _breakpointCount;

    // Decoding: one reusable decoder over a 15-byte window, and a slot for page-crossing instructions.
    private readonly WindowReader _reader = new();
    private readonly Decoder _decoder;
    private DecodedInstruction _uncached;
    private long _decodeMisses;

    // The pending stop.
    private StopReason _stopReason;
    private ulong _stopAddress;
    private uint _stopError;
    private string _stopDetail = "";
    private byte[]? _pageBuffer;

    internal X86Cpu(Vcpu vcpu)
    {
        _vcpu = vcpu;
        _domain = vcpu.Domain;
        _machine = _domain.Machine;
        _counters = _domain.Counters;
        _decoder = Decoder.Create(64, _reader);
        _r[(int)Reg.Rsp] = 0;
        _tlbEntries = vcpu.Tlb.Entries;
        _tlbMask = vcpu.Tlb.Mask;
        _translate = _domain.Config.Translate;
    }

    public Vcpu Vcpu => _vcpu;

    /// <summary>Hypercalls this vCPU answers (vmcall with RAX = number). Number 0 yields (stops the run).</summary>
    public HypercallTable Hypercalls { get; set; } = new();

    /// <summary>Guest virtual address of a #PF handler, or 0 for none (a fault then stops the run).</summary>
    public ulong PageFaultHandler { get; set; }

    public ulong Rip
    {
        get => _rip;
        set { _rip = value; _pageVa = ulong.MaxValue; }
    }

    /// <summary>RFLAGS with the status flags computed; setting keeps bit 1 set and only modelled bits.</summary>
    public ulong Rflags
    {
        get { Materialize(); return _rflags; }
        set { _lzOp = LzNone; _rflags = (value & RFlags.Writable) | RFlags.Reserved1; }
    }

    /// <summary>Instructions this vCPU has retired (the domain's counter adds up every vCPU).</summary>
    public long InstructionsRetired { get; private set; }

    public ulong Cr2 => _vcpu.Cr2;
    public ulong Cr3 => _vcpu.Cr3;

    public ulong this[Reg r]
    {
        get => _r[(int)r];
        set => _r[(int)r] = value;
    }

    /// <summary>Decoded code pages currently cached.</summary>
    public int DecodedPages => _cache.Pages;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ref ulong R(int i) => ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_r), i);

    /// <summary>Executes one instruction.</summary>
    public RunResult Step() => Run(1);

    /// <summary>
    /// Runs until <paramref name="budget"/> instructions have retired or something stops the vCPU.
    /// A breakpoint stops before the instruction at its address, except as the first instruction
    /// of a run (so running again from a breakpoint makes progress).
    /// </summary>
    public RunResult Run(long budget, ReadOnlySpan<ulong> breakpoints = default)
    {
        using var op = _domain.EnterOperation();          // once for the whole run (Domain's locking rule)
        if (_domain.PagingMode == PagingModeKind.Arm) ThrowHelper.ArmDomain(_domain.Name);
        if (_domain.Mode is null) ThrowHelper.NoPagingMode(_domain.Name);
        // The domain's clock ends at 2^63-1 ns: a run never carries it past (it stops there, budget
        // spent); a clock already stepped to its end refuses to run anything.
        long room = (long.MaxValue - _domain.ClockNs) / NsPerInstruction;
        if (budget > room)
        {
            if (room == 0) throw new DomainClockException(_domain.Name, $"the clock is at its end ({_domain.ClockNs} ns): no instruction can run.");
            budget = room;
        }
        _cache.NewGeneration();
        _pageVa = ulong.MaxValue;
        if (_breakpoints.Length < breakpoints.Length) _breakpoints = new ulong[breakpoints.Length];
        breakpoints.CopyTo(_breakpoints);
        _breakpointCount = breakpoints.Length;
        long missesBefore = _decodeMisses;
        long retired = 0, delivered = 0;
        int status;
        while (true)
        {
            if (retired >= budget - delivered) { _stopReason = StopReason.BudgetExhausted; _stopDetail = ""; status = 1; break; }
            ulong rip = _rip;
            var page = _page;
            if ((rip & ~Page.OffsetMask) != _pageVa || !page!.Valid)
            {
                if (!EnterPage(rip)) { status = FaultOrDeliver(rip, ref delivered); if (status == 0) continue; break; }
                page = _page!;
            }
            if (_pageHasBreakpoint && retired + delivered > 0 && IsBreakpoint(rip))
            {
                SetStop(StopReason.Breakpoint, 0, 0, "");
                status = 1;
                break;
            }
            int off = (int)(rip & Page.OffsetMask);
            int slot = page.Index[off];
            if (_translate && !_pageHasBreakpoint)
            {
                if (_interpretNext)
                {
                    // The instruction a block left for: interpreted (every side effect), then its TLB entry granted.
                    _interpretNext = false;
                    status = slot != 0 ? Execute(ref page.Instructions[slot - 1]) : DecodeAndExecute(page, rip, off);
                    GrantFast(_missVa);
                    goto executed;
                }
                var block = BlockAt(page, slot, rip, off);
                if (block is not null && budget - delivered - retired >= block.Instructions)
                {
                    status = RunBlocks(block, budget, ref retired, ref delivered);
                    if (status == 0) continue;
                    break;
                }
                slot = page.Index[off];                                   // translating may have decoded it
            }
            status = slot != 0 ? Execute(ref page.Instructions[slot - 1]) : DecodeAndExecute(page, rip, off);
        executed:
            if (status == 0) { retired++; continue; }
            if (status == StopAfterRetire) { retired++; break; }
            if (status == Fault)
            {
                status = FaultOrDeliver(rip, ref delivered);
                if (status == 0) continue;
            }
            break;
        }
        FlushBlockCounters();
        long misses = _decodeMisses - missesBefore;
        InstructionsRetired += retired;
        _domain.AdvanceClockInOperation(retired * NsPerInstruction);
        _counters.Add(PerfCounter.CpuInstructionsRetired, retired);
        _counters.Add(PerfCounter.CpuDecodeMiss, misses);
        _counters.Add(PerfCounter.CpuDecodeHit, Math.Max(0, retired - misses));
        return Stopped(retired);
    }

    /// <summary>Domain time per retired instruction (a 1 GHz, one-per-cycle guest).</summary>
    public const long NsPerInstruction = 1;

    private const int Continue = 0, StopHere = 1, StopAfterRetire = 2, Fault = 3;

    /// <summary>A fault is pending: deliver a #PF to the guest's handler (0 = continue) or stop (1).</summary>
    private int FaultOrDeliver(ulong rip, ref long delivered)
    {
        if (_stopReason == StopReason.PageFault && PageFaultHandler != 0)
        {
            TraceFault(rip, delivered: true);
            if (DeliverPageFault(rip, _stopError))
            {
                delivered++;
                _counters.Inc(PerfCounter.CpuPageFaultDelivered);
                return 0;
            }
            _stopDetail = "double fault: pushing the #PF frame faulted";
        }
        if (_stopReason is StopReason.PageFault or StopReason.GeneralProtection or StopReason.PhysicalMissing or StopReason.P2mReadOnly)
            TraceFault(rip, delivered: false);
        return StopHere;
    }

    private bool IsBreakpoint(ulong rip)
    {
        for (int i = 0; i < _breakpointCount; i++) if (_breakpoints[i] == rip) return true;
        return false;
    }

    /// <summary>RIP moved to another page (or the cached one was invalidated): translate it for fetch.</summary>
    private bool EnterPage(ulong rip)
    {
        if (!IsCanonical(rip)) return GeneralProtection(rip);
        var t = _vcpu.TranslateInOperation(rip, AccessKind.Fetch);
        if (t.Status != TranslateStatus.Ok) return TranslationFault(in t, rip);
        ReadOnlySpan<byte> bytes = (t.Rights & TlbRights.Mmio) != 0 ? AllOnes : _machine.Read(new Mfn(t.Mfn));
        _page = _cache.Get(t.Gfn, t.Mfn, bytes);
        NoteNewCodePages();
        _pageVa = rip & ~Page.OffsetMask;
        _pageHasBreakpoint = false;
        for (int i = 0; i < _breakpointCount; i++)
            if ((_breakpoints[i] & ~Page.OffsetMask) == _pageVa) _pageHasBreakpoint = true;
        return true;
    }

    private static readonly byte[] AllOnes = CreateAllOnes();
    private static byte[] CreateAllOnes()
    {
        var b = new byte[Page.Size];
        b.AsSpan().Fill(0xFF);
        return b;
    }

    private int DecodeAndExecute(CodePage page, ulong rip, int off)
    {
        _decodeMisses++;
        int avail = Page.Size - off;
        var window = _reader.Buffer;
        int n = Math.Min(15, avail);
        page.Snapshot.AsSpan(off, n).CopyTo(window);
        _reader.Reset(n);
        _decoder.IP = rip;
        _decoder.Decode(out var ins);
        if (ins.IsInvalid && _decoder.LastError == DecoderError.NoMoreBytes && n < 15)
        {
            // The instruction runs onto the next page: fetch it too (not cached: the next
            // page may map elsewhere or change without this page changing).
            ulong next = (rip & ~Page.OffsetMask) + Page.Size;
            if (!IsCanonical(next)) { GeneralProtection(next); return Fault; }
            var t = _vcpu.TranslateInOperation(next, AccessKind.Fetch);
            if (t.Status != TranslateStatus.Ok) { TranslationFault(in t, next); return Fault; }
            ReadOnlySpan<byte> second = (t.Rights & TlbRights.Mmio) != 0 ? AllOnes : _machine.Read(new Mfn(t.Mfn));
            second.Slice(0, 15 - n).CopyTo(window.AsSpan(n));
            _reader.Reset(15);
            _decoder.IP = rip;
            _decoder.Decode(out ins);
            _uncached = InstructionTranslator.Translate(in ins);
            return Execute(ref _uncached);
        }
        var d = InstructionTranslator.Translate(in ins);
        if (d.Op == Op.Unsupported)
        {
            _uncached = d;
            return Execute(ref _uncached);
        }
        return Execute(ref page.Add(off, in d));
    }

    // ---- stops ------------------------------------------------------------------------------

    private void SetStop(StopReason reason, ulong address, uint error, string detail)
    {
        _stopReason = reason;
        _stopAddress = address;
        _stopError = error;
        _stopDetail = detail;
    }

    private RunResult Stopped(long retired)
    {
        string text = DisassembleInOperation(_rip);
        var r = new RunResult(_stopReason, retired, _rip, _stopAddress, _stopError, text, _stopDetail);
        if (_stopReason is not (StopReason.BudgetExhausted or StopReason.Hypercall))
        {
            _counters.Inc(PerfCounter.CpuStop);
            // hlt has retired (RIP is past its one byte): the event names the instruction that stopped the vCPU.
            ulong at = _stopReason == StopReason.Halted ? _rip - 1 : _rip;
            _domain.Trace.Add(TraceKind.CpuStop, _vcpu.Id, at, 0, 0, (ulong)_stopReason,
                $"{_stopReason}: {(at == _rip ? text : DisassembleInOperation(at))} at 0x{at:x}");
        }
        return r;
    }

    private void TraceFault(ulong rip, bool delivered)
    {
        string text = DisassembleInOperation(rip);
        string what = _stopReason == StopReason.PageFault ? $"#PF err=0x{_stopError:x}" : _stopReason.ToString();
        _domain.Trace.Add(TraceKind.CpuFault, _vcpu.Id, _stopAddress, 0, 0, rip,
            $"{what} {(delivered ? "delivered" : "stopped")}: {text} at 0x{rip:x}");
    }

    /// <summary>Iced's Intel-syntax text of the instruction at <paramref name="va"/> ("(no code)" if it cannot be read).</summary>
    public string Disassemble(ulong va)
    {
        using var op = _domain.EnterOperation();
        return DisassembleInOperation(va);
    }

    private string DisassembleInOperation(ulong va)
    {
        Span<byte> buf = stackalloc byte[15];
        int n = ReadCodeBytes(va, buf);
        if (n == 0) return "(no code)";
        var reader = new WindowReader();
        buf.Slice(0, n).CopyTo(reader.Buffer);
        reader.Reset(n);
        var dec = Decoder.Create(64, reader);
        dec.IP = va;
        dec.Decode(out var ins);
        if (ins.IsInvalid) return "(bad)";
        var output = new StringOutput();
        var fmt = new IntelFormatter();
        fmt.Options.FirstOperandCharIndex = 0;
        fmt.Format(in ins, output);
        return output.ToStringAndReset();
    }

    /// <summary>Up to 15 code bytes at <paramref name="va"/>, without faulting (Explain does not fill the TLB or set CR2).</summary>
    private int ReadCodeBytes(ulong va, Span<byte> into)
    {
        int n = 0;
        while (n < into.Length)
        {
            ulong a = va + (ulong)n;
            if (!IsCanonical(a) || _domain.Mode is null) break;
            var t = _vcpu.Explain(a, AccessKind.Read, new TranslationTrace());
            if (!t.IsOk) break;
            int off = (int)(a & Page.OffsetMask);
            int k = Math.Min(Page.Size - off, into.Length - n);
            ReadOnlySpan<byte> page = (t.Rights & TlbRights.Mmio) != 0 ? AllOnes : _machine.Read(new Mfn(t.Mfn));
            page.Slice(off, k).CopyTo(into.Slice(n));
            n += k;
        }
        return n;
    }

    /// <summary>A one-line register dump.</summary>
    public override string ToString() =>
        $"rip=0x{_rip:x} rax=0x{_r[0]:x} rcx=0x{_r[1]:x} rdx=0x{_r[2]:x} rbx=0x{_r[3]:x} rsp=0x{_r[4]:x} flags=[{RFlags.Describe(Rflags)}]";

    /// <summary>Iced's CodeReader over a reusable 15-byte window.</summary>
    private sealed class WindowReader : CodeReader
    {
        public readonly byte[] Buffer = new byte[16];
        private int _pos, _len;
        public void Reset(int length) { _pos = 0; _len = length; }
        public override int ReadByte() => _pos < _len ? Buffer[_pos++] : -1;
    }
}
