// Lazy arithmetic flags: add/sub/logic/inc/dec record their operands and result, and the six
// status flags are computed only when something reads them (jcc, setcc, adc, pushfq, a
// register dump). Everything else (shifts, rotates, mul) materialises and sets bits eagerly.
using System.Numerics;
using System.Runtime.CompilerServices;

namespace XenLab.Cpu;

public sealed partial class X86Cpu
{
    private const byte LzNone = 0, LzAdd = 1, LzAdc = 2, LzSub = 3, LzSbb = 4, LzLogic = 5, LzInc = 6, LzDec = 7;

    private byte _lzOp;
    private byte _lzSize;
    private ulong _lzA, _lzB, _lzR, _lzCarry;
    private ulong _rflags = RFlags.Reserved1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Mask(int size) => ulong.MaxValue >> (64 - (size << 3));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void SetLazy(byte op, int size, ulong a, ulong b, ulong r)
    {
        _lzOp = op;
        _lzSize = (byte)size;
        _lzA = a;
        _lzB = b;
        _lzR = r;
    }

    /// <summary>PF, ZF, SF of a result of <paramref name="size"/> bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong SzpFlags(ulong r, int size)
    {
        ulong m = Mask(size);
        r &= m;
        ulong f = (BitOperations.PopCount(r & 0xFF) & 1) == 0 ? RFlags.PF : 0;
        if (r == 0) f |= RFlags.ZF;
        if ((r >> ((size << 3) - 1)) != 0) f |= RFlags.SF;
        return f;
    }

    private ulong StatusFromLazy() => StatusOf(_lzOp, _lzSize, _lzA, _lzB, _lzR, _lzCarry);

    /// <summary>The six status flags of a lazy record (shared with translated code, which keeps the record in locals).</summary>
    private static ulong StatusOf(byte op, int size, ulong a, ulong b, ulong r, ulong carry)
    {
        ulong m = Mask(size);
        ulong sign = 1UL << ((size << 3) - 1);
        a &= m; b &= m; r &= m;
        ulong f = SzpFlags(r, size);
        bool cf, of;
        switch (op)
        {
            case LzAdd: cf = r < a; of = ((a ^ r) & (b ^ r) & sign) != 0; break;
            case LzAdc: cf = carry != 0 ? r <= a : r < a; of = ((a ^ r) & (b ^ r) & sign) != 0; break;
            case LzSub: cf = a < b; of = ((a ^ b) & (a ^ r) & sign) != 0; break;
            case LzSbb: cf = carry != 0 ? a <= b : a < b; of = ((a ^ b) & (a ^ r) & sign) != 0; break;
            case LzInc: cf = carry != 0; of = r == sign; break;
            case LzDec: cf = carry != 0; of = a == sign; break;
            default:                                                    // logic: CF = OF = 0, AF undefined (0 here)
                return f;
        }
        f |= (a ^ b ^ r) & RFlags.AF;
        if (cf) f |= RFlags.CF;
        if (of) f |= RFlags.OF;
        return f;
    }

    /// <summary>Folds pending lazy flags into RFLAGS.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Materialize()
    {
        if (_lzOp != LzNone) MaterializeSlow();
    }

    private void MaterializeSlow()
    {
        _rflags = (_rflags & ~RFlags.Status) | StatusFromLazy();
        _lzOp = LzNone;
    }

    /// <summary>CF, computed from the lazy state without folding the rest.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong CarryFlag()
    {
        byte op = _lzOp;
        if (op >= LzLogic) return op == LzLogic ? 0 : _lzCarry;             // logic: 0; inc/dec: the CF they kept
        return op == LzNone ? _rflags & RFlags.CF : CarryFlagArith();
    }

    private ulong CarryFlagArith()
    {
        int size = _lzSize;
        ulong m = Mask(size);
        switch (_lzOp)
        {
            case LzNone: return _rflags & RFlags.CF;
            case LzAdd: return (_lzR & m) < (_lzA & m) ? 1UL : 0;
            case LzAdc: return (_lzCarry != 0 ? (_lzR & m) <= (_lzA & m) : (_lzR & m) < (_lzA & m)) ? 1UL : 0;
            case LzSub: return (_lzA & m) < (_lzB & m) ? 1UL : 0;
            case LzSbb: return (_lzCarry != 0 ? (_lzA & m) <= (_lzB & m) : (_lzA & m) < (_lzB & m)) ? 1UL : 0;
            case LzInc:
            case LzDec: return _lzCarry;
            default: return 0;
        }
    }

    /// <summary>An x86 condition code 0-15 (o, no, b, ae, e, ne, be, a, s, ns, p, np, l, ge, le, g).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Condition(int cc)
    {
        if (_lzOp != LzNone && (cc >> 1) == 2)
            return ((_lzR & Mask(_lzSize)) == 0) != ((cc & 1) != 0);
        return ConditionSlow(cc);
    }

    private bool ConditionSlow(int cc)
    {
        Materialize();
        return ConditionOf(_rflags, cc);
    }

    /// <summary>Condition code <paramref name="cc"/> on RFLAGS <paramref name="f"/>.</summary>
    private static bool ConditionOf(ulong f, int cc)
    {
        bool sfNeOf = ((f & RFlags.SF) != 0) != ((f & RFlags.OF) != 0);
        bool v = (cc >> 1) switch
        {
            0 => (f & RFlags.OF) != 0,
            1 => (f & RFlags.CF) != 0,
            2 => (f & RFlags.ZF) != 0,
            3 => (f & (RFlags.CF | RFlags.ZF)) != 0,
            4 => (f & RFlags.SF) != 0,
            5 => (f & RFlags.PF) != 0,
            6 => sfNeOf,
            _ => (f & RFlags.ZF) != 0 || sfNeOf,
        };
        return v != ((cc & 1) != 0);
    }

    /// <summary>Binary ALU op with lazy flags; the caller writes the result back unless cmp/test.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong Alu(AluKind kind, ulong a, ulong b, int size)
    {
        ulong r;
        switch (kind)
        {
            case AluKind.Add: r = a + b; SetLazy(LzAdd, size, a, b, r); return r;
            case AluKind.Or: r = a | b; SetLazy(LzLogic, size, a, b, r); return r;
            case AluKind.And:
            case AluKind.Test: r = a & b; SetLazy(LzLogic, size, a, b, r); return r;
            case AluKind.Xor: r = a ^ b; SetLazy(LzLogic, size, a, b, r); return r;
            case AluKind.Sub:
            case AluKind.Cmp: r = a - b; SetLazy(LzSub, size, a, b, r); return r;
            case AluKind.Adc:
            {
                ulong c = CarryFlag();
                r = a + b + c;
                SetLazy(LzAdc, size, a, b, r);
                _lzCarry = c;
                return r;
            }
            default:
            {
                ulong c = CarryFlag();
                r = a - b - c;
                SetLazy(LzSbb, size, a, b, r);
                _lzCarry = c;
                return r;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong Unary(UnaryKind kind, ulong a, int size)
    {
        ulong r;
        switch (kind)
        {
            case UnaryKind.Inc:
            {
                ulong c = CarryFlag();
                r = a + 1;
                SetLazy(LzInc, size, a, 1, r);
                _lzCarry = c;
                return r;
            }
            case UnaryKind.Dec:
            {
                ulong c = CarryFlag();
                r = a - 1;
                SetLazy(LzDec, size, a, 1, r);
                _lzCarry = c;
                return r;
            }
            case UnaryKind.Neg:
                r = 0 - a;
                SetLazy(LzSub, size, 0, a, r);
                return r;
            default:
                return ~a;                                              // not: no flags
        }
    }

    /// <summary>
    /// Shifts and rotates with the count already masked to 5 bits (6 for 64-bit operands).
    /// A zero count changes no flag. Rotates change only CF and OF. OF is architecturally
    /// defined only for a count of 1; for larger counts this computes what Intel hardware
    /// computes (the same formula), which the differential test checks on the host.
    /// </summary>
    private ulong Shift(ShiftKind kind, ulong v, int count, int size)
    {
        int bits = size << 3;
        ulong m = Mask(size);
        v &= m;
        if (count == 0) return v;
        Materialize();
        ulong sign = 1UL << (bits - 1);
        ulong r, cf, of;
        switch (kind)
        {
            case ShiftKind.Rol:
            {
                int n = count & (bits - 1);
                r = n == 0 ? v : ((v << n) | (v >> (bits - n))) & m;
                cf = r & 1;
                of = ((r & sign) != 0 ? 1UL : 0) ^ cf;
                _rflags = (_rflags & ~(RFlags.CF | RFlags.OF)) | cf | (of != 0 ? RFlags.OF : 0);
                return r;
            }
            case ShiftKind.Ror:
            {
                int n = count & (bits - 1);
                r = n == 0 ? v : ((v >> n) | (v << (bits - n))) & m;
                cf = (r & sign) != 0 ? 1UL : 0;
                of = cf ^ ((r >> (bits - 2)) & 1);
                _rflags = (_rflags & ~(RFlags.CF | RFlags.OF)) | cf | (of != 0 ? RFlags.OF : 0);
                return r;
            }
            case ShiftKind.Shl:
                r = count < 64 ? (v << count) & m : 0;
                cf = count <= bits ? (v >> (bits - count)) & 1 : 0;
                of = ((r & sign) != 0 ? 1UL : 0) ^ cf;
                break;
            case ShiftKind.Shr:
                r = count < 64 ? v >> count : 0;
                cf = count <= bits ? (v >> (count - 1)) & 1 : 0;
                of = (v & sign) != 0 ? 1UL : 0;
                break;
            default:
            {
                long sv = (long)(v << (64 - bits)) >> (64 - bits);
                r = (ulong)(sv >> (count < 63 ? count : 63)) & m;
                cf = (ulong)(sv >> (count - 1 < 63 ? count - 1 : 63)) & 1;
                of = 0;
                break;
            }
        }
        _rflags = (_rflags & ~RFlags.Status) | SzpFlags(r, size) | cf | (of != 0 ? RFlags.OF : 0);
        return r;
    }
}
