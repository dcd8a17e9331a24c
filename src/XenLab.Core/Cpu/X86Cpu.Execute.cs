// Execution: one switch over Op (a jump table). Each instruction translates every memory
// operand before it changes any register, so a fault leaves the state as it was (RIP on
// the faulting instruction). Register operands follow x86-64 rules: 32-bit writes zero the
// upper half, 8- and 16-bit writes merge, 16-19 name AH, CH, DH, BH.
using System;
using System.Runtime.CompilerServices;
using XenLab.Diagnostics;
using XenLab.Memory;
using XenLab.Paging;

namespace XenLab.Cpu;

public sealed partial class X86Cpu
{
    private const int RaxIndex = 0, RcxIndex = 1, RdxIndex = 2, RspIndex = 4, RsiIndex = 6, RdiIndex = 7;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong GetReg(int r, int size)
    {
        if (r >= DecodedInstruction.HighByteBase) return (R(r - DecodedInstruction.HighByteBase) >> 8) & 0xFF;
        return size == 8 ? R(r) : R(r) & Mask(size);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void SetReg(int r, int size, ulong v)
    {
        switch (size)
        {
            case 8: R(r) = v; return;
            case 4: R(r) = (uint)v; return;
            case 2: R(r) = (R(r) & ~0xFFFFUL) | (v & 0xFFFF); return;
            default:
                if (r >= DecodedInstruction.HighByteBase)
                {
                    ref ulong x = ref R(r - DecodedInstruction.HighByteBase);
                    x = (x & ~0xFF00UL) | ((v & 0xFF) << 8);
                }
                else R(r) = (R(r) & ~0xFFUL) | (v & 0xFF);
                return;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong SignExtend(ulong v, int size) => (ulong)((long)(v << (64 - (size << 3))) >> (64 - (size << 3)));

    /// <summary>
    /// The hot register-only forms, in a method small enough for the JIT to inline its helpers
    /// (register access, lazy flags, conditions); everything else goes to <see cref="ExecuteCold"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Execute(ref DecodedInstruction d)
    {
        ulong next = _rip + d.Length;
        int size = d.Size;
        ulong r;
        switch (d.Op)
        {
            case Op.MovRR:
                SetReg(d.R0, size, GetReg(d.R1, size));
                break;
            case Op.MovRI:
                SetReg(d.R0, size, (ulong)d.Imm);
                break;
            case Op.Lea:
                SetReg(d.R0, size, EffectiveAddress(ref d, next));
                break;
            case Op.AluRR:
                r = Alu((AluKind)d.Sub, GetReg(d.R0, size), GetReg(d.R1, size), size);
                if (d.Sub < (byte)AluKind.Cmp) SetReg(d.R0, size, r);
                break;
            case Op.AluRI:
                r = Alu((AluKind)d.Sub, GetReg(d.R0, size), (ulong)d.Imm, size);
                if (d.Sub < (byte)AluKind.Cmp) SetReg(d.R0, size, r);
                break;
            case Op.UnaryR:
                SetReg(d.R0, size, Unary((UnaryKind)d.Sub, GetReg(d.R0, size), size));
                break;
            case Op.Jcc:
                if (Condition(d.Sub)) return Jump(next + (ulong)d.Disp);
                break;
            default:
                return ExecuteCold(ref d);
        }
        _rip = next;
        return Continue;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private int ExecuteCold(ref DecodedInstruction d)
    {
        ulong next = _rip + d.Length;
        int size = d.Size;
        MemLoc m;
        ulong a, b, r;
        switch (d.Op)
        {
            case Op.Nop:
                break;
            case Op.MovRR:
                SetReg(d.R0, size, GetReg(d.R1, size));
                break;
            case Op.MovRI:
                SetReg(d.R0, size, (ulong)d.Imm);
                break;
            case Op.MovRM:
                if (!Resolve(EffectiveAddress(ref d, next), size, AccessKind.Read, out m)) return Fault;
                SetReg(d.R0, size, Load(in m));
                break;
            case Op.MovMR:
                if (!Resolve(EffectiveAddress(ref d, next), size, AccessKind.Write, out m)) return Fault;
                Store(in m, GetReg(d.R1, size));
                break;
            case Op.MovMI:
                if (!Resolve(EffectiveAddress(ref d, next), size, AccessKind.Write, out m)) return Fault;
                Store(in m, (ulong)d.Imm);
                break;
            case Op.ExtRR:
                a = GetReg(d.R1, d.Size2);
                SetReg(d.R0, size, d.Sub != 0 ? SignExtend(a, d.Size2) : a);
                break;
            case Op.ExtRM:
                if (!Resolve(EffectiveAddress(ref d, next), d.Size2, AccessKind.Read, out m)) return Fault;
                a = Load(in m);
                SetReg(d.R0, size, d.Sub != 0 ? SignExtend(a, d.Size2) : a);
                break;
            case Op.Lea:
                SetReg(d.R0, size, EffectiveAddress(ref d, next));
                break;

            case Op.AluRR:
                r = Alu((AluKind)d.Sub, GetReg(d.R0, size), GetReg(d.R1, size), size);
                if (d.Sub < (byte)AluKind.Cmp) SetReg(d.R0, size, r);
                break;
            case Op.AluRI:
                r = Alu((AluKind)d.Sub, GetReg(d.R0, size), (ulong)d.Imm, size);
                if (d.Sub < (byte)AluKind.Cmp) SetReg(d.R0, size, r);
                break;
            case Op.AluRM:
                if (!Resolve(EffectiveAddress(ref d, next), size, AccessKind.Read, out m)) return Fault;
                r = Alu((AluKind)d.Sub, GetReg(d.R0, size), Load(in m), size);
                if (d.Sub < (byte)AluKind.Cmp) SetReg(d.R0, size, r);
                break;
            case Op.AluMR:
            case Op.AluMI:
            {
                bool writes = d.Sub < (byte)AluKind.Cmp;
                if (!Resolve(EffectiveAddress(ref d, next), size, writes ? AccessKind.Write : AccessKind.Read, out m)) return Fault;
                b = d.Op == Op.AluMR ? GetReg(d.R1, size) : (ulong)d.Imm;
                r = Alu((AluKind)d.Sub, Load(in m), b, size);
                if (writes) Store(in m, r);
                break;
            }
            case Op.UnaryR:
                SetReg(d.R0, size, Unary((UnaryKind)d.Sub, GetReg(d.R0, size), size));
                break;
            case Op.UnaryM:
                if (!Resolve(EffectiveAddress(ref d, next), size, AccessKind.Write, out m)) return Fault;
                Store(in m, Unary((UnaryKind)d.Sub, Load(in m), size));
                break;
            case Op.ShiftR:
                SetReg(d.R0, size, Shift((ShiftKind)d.Sub, GetReg(d.R0, size), ShiftCount(ref d), size));
                break;
            case Op.ShiftM:
                if (!Resolve(EffectiveAddress(ref d, next), size, AccessKind.Write, out m)) return Fault;
                Store(in m, Shift((ShiftKind)d.Sub, Load(in m), ShiftCount(ref d), size));
                break;

            case Op.MulR:
                if (!MulDiv((MulKind)d.Sub, GetReg(d.R0, size), size)) return StopHere;
                break;
            case Op.MulM:
                if (!Resolve(EffectiveAddress(ref d, next), size, AccessKind.Read, out m)) return Fault;
                if (!MulDiv((MulKind)d.Sub, Load(in m), size)) return StopHere;
                break;
            case Op.Imul2R:
                SetReg(d.R0, size, Imul(GetReg(d.R0, size), GetReg(d.R1, size), size));
                break;
            case Op.Imul2M:
                if (!Resolve(EffectiveAddress(ref d, next), size, AccessKind.Read, out m)) return Fault;
                SetReg(d.R0, size, Imul(GetReg(d.R0, size), Load(in m), size));
                break;
            case Op.Imul3R:
                SetReg(d.R0, size, Imul(GetReg(d.R1, size), (ulong)d.Imm, size));
                break;
            case Op.Imul3M:
                if (!Resolve(EffectiveAddress(ref d, next), size, AccessKind.Read, out m)) return Fault;
                SetReg(d.R0, size, Imul(Load(in m), (ulong)d.Imm, size));
                break;

            case Op.PushR:
                if (!Push(GetReg(d.R0, size), size)) return Fault;
                break;
            case Op.PushI:
                if (!Push((ulong)d.Imm, size)) return Fault;
                break;
            case Op.PushM:
                if (!Resolve(EffectiveAddress(ref d, next), size, AccessKind.Read, out m)) return Fault;
                if (!Push(Load(in m), size)) return Fault;
                break;
            case Op.PopR:
            {
                ulong rsp = R(RspIndex);
                if (!Resolve(rsp, size, AccessKind.Read, out m)) return Fault;
                a = Load(in m);
                R(RspIndex) = rsp + (ulong)size;
                SetReg(d.R0, size, a);                               // pop rsp: the loaded value wins
                break;
            }
            case Op.PopM:
            {
                ulong rsp = R(RspIndex);
                if (!Resolve(rsp, size, AccessKind.Read, out m)) return Fault;
                a = Load(in m);
                R(RspIndex) = rsp + (ulong)size;                     // the destination address uses the incremented RSP
                if (!Resolve(EffectiveAddress(ref d, next), size, AccessKind.Write, out var dst)) { R(RspIndex) = rsp; return Fault; }
                Store(in dst, a);
                break;
            }

            case Op.CallRel:
                return Call(next, next + (ulong)d.Disp);
            case Op.CallR:
                return Call(next, R(d.R0));
            case Op.CallM:
                if (!Resolve(EffectiveAddress(ref d, next), 8, AccessKind.Read, out m)) return Fault;
                return Call(next, Load(in m));
            case Op.Ret:
            {
                ulong rsp = R(RspIndex);
                if (!Resolve(rsp, 8, AccessKind.Read, out m)) return Fault;
                a = Load(in m);
                if (!IsCanonical(a)) { GeneralProtection(a); return Fault; }
                R(RspIndex) = rsp + 8 + (ulong)d.Imm;
                _rip = a;
                return Continue;
            }
            case Op.JmpRel:
                return Jump(next + (ulong)d.Disp);
            case Op.JmpR:
                return Jump(R(d.R0));
            case Op.JmpM:
                if (!Resolve(EffectiveAddress(ref d, next), 8, AccessKind.Read, out m)) return Fault;
                return Jump(Load(in m));
            case Op.Jcc:
                if (Condition(d.Sub)) return Jump(next + (ulong)d.Disp);
                break;
            case Op.Loop:
            {
                ulong rcx = R(RcxIndex) - 1;
                bool take = rcx != 0 && (d.Sub == 0 || (d.Sub == 1) == Condition(4));
                if (take)
                {
                    ulong target = next + (ulong)d.Disp;
                    if (!IsCanonical(target)) { GeneralProtection(target); return Fault; }
                    R(RcxIndex) = rcx;
                    _rip = target;
                    return Continue;
                }
                R(RcxIndex) = rcx;
                break;
            }
            case Op.Jrcxz:
                if (R(RcxIndex) == 0) return Jump(next + (ulong)d.Disp);
                break;
            case Op.SetccR:
                SetReg(d.R0, 1, Condition(d.Sub) ? 1UL : 0);
                break;
            case Op.SetccM:
                if (!Resolve(EffectiveAddress(ref d, next), 1, AccessKind.Write, out m)) return Fault;
                Store(in m, Condition(d.Sub) ? 1UL : 0);
                break;
            case Op.CmovR:
                if (Condition(d.Sub)) SetReg(d.R0, size, GetReg(d.R1, size));
                else if (size == 4) R(d.R0) = (uint)R(d.R0);        // a 32-bit cmov zero-extends even when not taken
                break;
            case Op.CmovM:
                if (!Resolve(EffectiveAddress(ref d, next), size, AccessKind.Read, out m)) return Fault;
                a = Load(in m);                                       // read (and fault) even when not taken
                if (Condition(d.Sub)) SetReg(d.R0, size, a);
                else if (size == 4) R(d.R0) = (uint)R(d.R0);
                break;

            case Op.XchgRR:
                a = GetReg(d.R0, size);
                b = GetReg(d.R1, size);
                SetReg(d.R0, size, b);
                SetReg(d.R1, size, a);
                break;
            case Op.XchgRM:
                if (!Resolve(EffectiveAddress(ref d, next), size, AccessKind.Write, out m)) return Fault;
                a = Load(in m);
                Store(in m, GetReg(d.R0, size));
                SetReg(d.R0, size, a);
                break;
            case Op.CmpxchgR:
            {
                ulong acc = GetReg(RaxIndex, size);
                a = GetReg(d.R0, size);
                Alu(AluKind.Cmp, acc, a, size);
                if (acc == a) SetReg(d.R0, size, GetReg(d.R1, size));
                else SetReg(RaxIndex, size, a);
                break;
            }
            case Op.CmpxchgM:
            {
                if (!Resolve(EffectiveAddress(ref d, next), size, AccessKind.Write, out m)) return Fault;
                ulong acc = GetReg(RaxIndex, size);
                a = Load(in m);
                Alu(AluKind.Cmp, acc, a, size);
                if (acc == a) Store(in m, GetReg(d.R1, size));
                else
                {
                    Store(in m, a);                                   // the processor always writes the destination
                    SetReg(RaxIndex, size, a);
                }
                break;
            }

            case Op.Movs:
            case Op.Stos:
                return StringOp(ref d, next);

            case Op.Hlt:
                _rip = next;
                SetStop(StopReason.Halted, 0, 0, "");
                return StopAfterRetire;
            case Op.MovToCr3:
                _vcpu.LoadCr3InOperation(R(d.R1));
                _pageVa = ulong.MaxValue;                              // fetch translations are gone with the TLB
                break;
            case Op.MovFromCr3:
                R(d.R0) = _vcpu.Cr3;
                break;
            case Op.MovFromCr2:
                R(d.R0) = _vcpu.Cr2;
                break;
            case Op.Invlpg:
                _vcpu.InvalidatePageInOperation(EffectiveAddress(ref d, next));
                _pageVa = ulong.MaxValue;
                break;
            case Op.Vmcall:
                _rip = next;
                return Hypercall();
            case Op.Iretq:
                return Iretq();
            case Op.Pushfq:
                if (!Push(Rflags, 8)) return Fault;
                break;
            case Op.Popfq:
            {
                ulong rsp = R(RspIndex);
                if (!Resolve(rsp, 8, AccessKind.Read, out m)) return Fault;
                Rflags = Load(in m);
                R(RspIndex) = rsp + 8;
                break;
            }
            case Op.Clc: Materialize(); _rflags &= ~RFlags.CF; break;
            case Op.Stc: Materialize(); _rflags |= RFlags.CF; break;
            case Op.Cmc: Materialize(); _rflags ^= RFlags.CF; break;
            case Op.Cld: _rflags &= ~RFlags.DF; break;
            case Op.Std: _rflags |= RFlags.DF; break;
            case Op.ExtendAcc:
                SetReg(RaxIndex, size, SignExtend(R(RaxIndex), size >> 1));
                break;
            case Op.SignToDx:
                SetReg(RdxIndex, size, (GetReg(RaxIndex, size) >> ((size << 3) - 1)) != 0 ? ulong.MaxValue : 0);
                break;

            default:
                SetStop(StopReason.Unsupported, 0, 0, "instruction outside the vCPU's subset");
                return StopHere;
        }
        _rip = next;
        return Continue;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int ShiftCount(ref DecodedInstruction d)
    {
        int c = (d.Flags & DecodedFlags.CountCl) != 0 ? (int)(R(RcxIndex) & 0xFF) : (int)d.Imm;
        return c & (d.Size == 8 ? 63 : 31);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Jump(ulong target)
    {
        if (!IsCanonical(target)) { GeneralProtection(target); return Fault; }
        _rip = target;
        return Continue;
    }

    private int Call(ulong ret, ulong target)
    {
        if (!IsCanonical(target)) { GeneralProtection(target); return Fault; }
        if (!Push(ret, 8)) return Fault;
        _rip = target;
        return Continue;
    }

    private bool Push(ulong v, int size)
    {
        ulong rsp = R(RspIndex) - (ulong)size;
        if (!Resolve(rsp, size, AccessKind.Write, out var m)) return false;
        Store(in m, v);
        R(RspIndex) = rsp;
        return true;
    }

    /// <summary>imul r, r/m(, imm): truncated product, CF = OF = the product does not fit.</summary>
    private ulong Imul(ulong a, ulong b, int size)
    {
        long sa = (long)SignExtend(a, size), sb = (long)SignExtend(b, size);
        long lo;
        bool overflow;
        if (size == 8)
        {
            long hi = Math.BigMul(sa, sb, out lo);
            overflow = hi != (lo >> 63);
        }
        else
        {
            lo = sa * sb;
            overflow = (long)SignExtend((ulong)lo, size) != lo;
        }
        SetMulFlags((ulong)lo, size, overflow);
        return (ulong)lo;
    }

    /// <summary>
    /// After multiply: CF = OF = overflow. SF, ZF, AF and PF are undefined (SDM); this model
    /// sets SF/ZF/PF from the low half and clears AF, and the differential test masks them.
    /// </summary>
    private void SetMulFlags(ulong lo, int size, bool overflow)
    {
        Materialize();
        _rflags = (_rflags & ~RFlags.Status) | SzpFlags(lo, size) | (overflow ? RFlags.CF | RFlags.OF : 0);
    }

    /// <summary>One-operand mul/imul/div/idiv on the accumulator pair. False (with #DE recorded) on a divide error.</summary>
    private bool MulDiv(MulKind kind, ulong src, int size)
    {
        int bits = size << 3;
        ulong m = Mask(size);
        src &= m;
        ulong acc = R(RaxIndex) & m;
        // The high half of the dividend / product: AH for byte ops, else rDX.
        ulong high = size == 1 ? (R(RaxIndex) >> 8) & 0xFF : R(RdxIndex) & m;
        switch (kind)
        {
            case MulKind.Mul:
            {
                ulong hi, lo;
                if (size == 8) hi = Math.BigMul(acc, src, out lo);
                else { ulong p = acc * src; lo = p & m; hi = p >> bits; }
                WritePair(size, lo, hi);
                SetMulFlags(lo, size, hi != 0);
                return true;
            }
            case MulKind.Imul:
            {
                long sa = (long)SignExtend(acc, size), sb = (long)SignExtend(src, size);
                ulong hi, lo;
                if (size == 8) { hi = (ulong)Math.BigMul(sa, sb, out long l); lo = (ulong)l; }
                else { long p = sa * sb; lo = (ulong)p & m; hi = ((ulong)(p >> bits)) & m; }
                bool overflow = size == 8 ? hi != (ulong)((long)lo >> 63) : (hi & m) != (SignExtend(lo, size) >> bits & m);
                WritePair(size, lo, hi);
                SetMulFlags(lo, size, overflow);
                return true;
            }
            case MulKind.Div:
            {
                if (src == 0) return DivideError("division by zero");
                UInt128 dividend = ((UInt128)high << bits) | acc;
                UInt128 q = dividend / src;
                if (q > m) return DivideError("quotient does not fit");
                WriteQuotient(size, (ulong)q, (ulong)(dividend % src));
                return true;
            }
            default:
            {
                if (src == 0) return DivideError("division by zero");
                Int128 dividend = bits == 64
                    ? (Int128)(((UInt128)high << 64) | acc)
                    : (Int128)((long)(((high << bits) | acc) << (64 - 2 * bits)) >> (64 - 2 * bits));
                Int128 divisor = (long)SignExtend(src, size);
                if (bits == 64 && dividend == Int128.MinValue && divisor == -1) return DivideError("quotient does not fit");
                Int128 q = dividend / divisor;
                Int128 rem = dividend % divisor;
                long min = bits == 64 ? long.MinValue : -(1L << (bits - 1));
                long max = bits == 64 ? long.MaxValue : (1L << (bits - 1)) - 1;
                if (q < min || q > max) return DivideError("quotient does not fit");
                WriteQuotient(size, (ulong)(long)q, (ulong)(long)rem);
                return true;
            }
        }
    }

    /// <summary>Product: AX for byte ops, else rDX:rAX.</summary>
    private void WritePair(int size, ulong lo, ulong hi)
    {
        if (size == 1) { SetReg(RaxIndex, 2, (lo & 0xFF) | ((hi & 0xFF) << 8)); return; }
        SetReg(RaxIndex, size, lo);
        SetReg(RdxIndex, size, hi);
    }

    /// <summary>Quotient in AL/AX/EAX/RAX, remainder in AH/DX/EDX/RDX.</summary>
    private void WriteQuotient(int size, ulong q, ulong rem)
    {
        if (size == 1) { SetReg(RaxIndex, 2, (q & 0xFF) | ((rem & 0xFF) << 8)); return; }
        SetReg(RaxIndex, size, q);
        SetReg(RdxIndex, size, rem);
    }

    private bool DivideError(string why)
    {
        SetStop(StopReason.DivideError, 0, 0, why);
        return false;
    }

    private int Hypercall()
    {
        ulong number = R(RaxIndex);
        _counters.Inc(PerfCounter.CpuHypercall);
        if (!Hypercalls.TryGet(number, out var handler))
        {
            R(RaxIndex) = unchecked((ulong)-HypercallTable.ENOSYS);
            return Continue;
        }
        var outcome = handler.Handle(this, number);
        if (_domain.IsDestroyed)
        {
            // The handler removed this vCPU's own domain (it holds the run's lock, so it could):
            // its memory is gone, nothing more may run.
            SetStop(StopReason.DomainRemoved, 0, 0, $"hypercall {number} removed domain '{_domain.Name}'");
            return StopAfterRetire;
        }
        // The handler may have written guest memory or page tables: re-verify code, re-fetch.
        _cache.NewGeneration();
        _pageVa = ulong.MaxValue;
        if (outcome == HypercallOutcome.Continue) return Continue;
        SetStop(StopReason.Hypercall, 0, 0, $"hypercall {number}");
        return StopAfterRetire;
    }

    /// <summary>
    /// Delivers a #PF to the guest handler: aligns RSP to 16, pushes SS, RSP, RFLAGS, CS, RIP
    /// and the error code (SS and CS are modelled as 0), clears IF and TF, jumps to the handler.
    /// All six slots are translated before anything is written. False if that faults.
    /// </summary>
    private bool DeliverPageFault(ulong rip, uint error)
    {
        ulong oldRsp = R(RspIndex);
        ulong top = oldRsp & ~0xFUL;
        ulong frame = top - 48;
        Span<MemLoc> slots = stackalloc MemLoc[6];
        for (int i = 0; i < 6; i++)
            if (!Resolve(frame + (ulong)(i * 8), 8, AccessKind.Write, out slots[i])) return false;
        ulong flags = Rflags;
        Store(in slots[0], error);
        Store(in slots[1], rip);
        Store(in slots[2], 0);                                      // CS
        Store(in slots[3], flags);
        Store(in slots[4], oldRsp);
        Store(in slots[5], 0);                                      // SS
        R(RspIndex) = frame;
        _rflags &= ~(RFlags.IF | RFlags.TF);
        _rip = PageFaultHandler;
        return true;
    }

    /// <summary>iretq: pops RIP, CS, RFLAGS, RSP, SS (the handler must have popped the error code).</summary>
    private int Iretq()
    {
        ulong rsp = R(RspIndex);
        Span<ulong> v = stackalloc ulong[5];
        for (int i = 0; i < 5; i++)
        {
            if (!Resolve(rsp + (ulong)(i * 8), 8, AccessKind.Read, out var m)) return Fault;
            v[i] = Load(in m);
        }
        if (!IsCanonical(v[0])) { GeneralProtection(v[0]); return Fault; }
        _rip = v[0];
        Rflags = v[2];
        R(RspIndex) = v[3];
        return Continue;
    }
}
