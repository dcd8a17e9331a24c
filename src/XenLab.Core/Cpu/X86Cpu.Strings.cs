// movs/stos, with rep done a page at a time: each chunk is the run of elements that stays
// inside one destination page (and one source page for movs), translated once, then filled or
// copied in bulk. RCX/RSI/RDI advance per chunk, so a fault in the middle leaves the
// registers describing the elements done and RIP on the instruction, which restarts it (as
// hardware does). DF is honoured. Overlapping movs within one frame runs element by element
// so its result is the architectural sequential one, not memmove's.
using System;
using System.Runtime.InteropServices;
using XenLab.Diagnostics;
using XenLab.Memory;
using XenLab.Paging;

namespace XenLab.Cpu;

public sealed partial class X86Cpu
{
    private int StringOp(ref DecodedInstruction d, ulong next)
    {
        int size = d.Size;
        bool stos = d.Op == Op.Stos;
        if ((d.Flags & DecodedFlags.Rep) == 0)
        {
            if (!StringElement(stos, size)) return Fault;
            _rip = next;
            return Continue;
        }
        bool down = (_rflags & RFlags.DF) != 0;
        while (R(RcxIndex) != 0)
        {
            ulong rdi = R(RdiIndex);
            long n = ElementsInPage(rdi, size, down);
            if (!stos) n = Math.Min(n, ElementsInPage(R(RsiIndex), size, down));
            if (n == 0)
            {
                // An element straddles a page boundary: one element through the general path.
                if (!StringElement(stos, size)) return Fault;
                R(RcxIndex)--;
                continue;
            }
            n = (long)Math.Min((ulong)n, R(RcxIndex));
            if (!(stos ? StosChunk(rdi, size, (int)n, down) : MovsChunk(rdi, R(RsiIndex), size, (int)n, down))) return Fault;
            ulong bytes = (ulong)n * (ulong)size;
            R(RdiIndex) = down ? rdi - bytes : rdi + bytes;
            if (!stos) R(RsiIndex) = down ? R(RsiIndex) - bytes : R(RsiIndex) + bytes;
            R(RcxIndex) -= (ulong)n;
            _counters.Inc(PerfCounter.CpuStringChunk);
        }
        _rip = next;
        return Continue;
    }

    /// <summary>Whole elements from <paramref name="va"/> onward (downward with DF) that stay in its page; 0 if the first straddles.</summary>
    private static long ElementsInPage(ulong va, int size, bool down)
    {
        int off = (int)(va & Page.OffsetMask);
        if (off + size > Page.Size) return 0;
        return down ? off / size + 1 : (Page.Size - off) / size;
    }

    /// <summary>One movs/stos element through the general (page-crossing capable) path; updates RSI/RDI.</summary>
    private bool StringElement(bool stos, int size)
    {
        ulong step = (_rflags & RFlags.DF) != 0 ? unchecked((ulong)-size) : (ulong)size;
        ulong rdi = R(RdiIndex);
        if (stos)
        {
            if (!Resolve(rdi, size, AccessKind.Write, out var dst)) return false;
            Store(in dst, GetReg(RaxIndex, size));
        }
        else
        {
            ulong rsi = R(RsiIndex);
            if (!Resolve(rsi, size, AccessKind.Read, out var src)) return false;
            if (!Resolve(rdi, size, AccessKind.Write, out var dst)) return false;
            Store(in dst, Load(in src));
            R(RsiIndex) = rsi + step;
        }
        R(RdiIndex) = rdi + step;
        return true;
    }

    private bool TranslatePage(ulong va, AccessKind access, out Translation t)
    {
        if (!IsCanonical(va)) { GeneralProtection(va); t = default; return false; }
        t = _vcpu.TranslateInOperation(va, access);
        return t.Status == TranslateStatus.Ok || TranslationFault(in t, va);
    }

    private bool StosChunk(ulong rdi, int size, int n, bool down)
    {
        if (!TranslatePage(rdi, AccessKind.Write, out var t)) return false;
        int bytes = n * size;
        int lo = (int)(rdi & Page.OffsetMask) - (down ? (n - 1) * size : 0);
        ulong value = GetReg(RaxIndex, size);
        _counters.Inc(PerfCounter.GuestVirtWrite);
        if ((t.Rights & TlbRights.Mmio) != 0) { _domain.NoteDeviceAccess(); return true; }
        if ((t.Rights & TlbRights.EmulateWrites) != 0)
        {
            var buf = (_pageBuffer ??= new byte[Page.Size]).AsSpan(0, bytes);
            Fill(buf, value, size);
            WritePart(t.Gfn, t.Mfn, t.Rights, lo, buf);
            return true;
        }
        Fill(_machine.Write(new Mfn(t.Mfn)).Slice(lo, bytes), value, size);
        if (_cache.MayHoldCode(t.Gfn)) InvalidateCode(t.Gfn);
        return true;
    }

    private static void Fill(Span<byte> dst, ulong value, int size)
    {
        switch (size)
        {
            case 1: dst.Fill((byte)value); break;
            case 2: MemoryMarshal.Cast<byte, ushort>(dst).Fill((ushort)value); break;
            case 4: MemoryMarshal.Cast<byte, uint>(dst).Fill((uint)value); break;
            default: MemoryMarshal.Cast<byte, ulong>(dst).Fill(value); break;
        }
    }

    private bool MovsChunk(ulong rdi, ulong rsi, int size, int n, bool down)
    {
        if (!TranslatePage(rsi, AccessKind.Read, out var ts)) return false;
        if (!TranslatePage(rdi, AccessKind.Write, out var td)) return false;
        int bytes = n * size;
        int back = down ? (n - 1) * size : 0;
        int dlo = (int)(rdi & Page.OffsetMask) - back;
        int slo = (int)(rsi & Page.OffsetMask) - back;
        _counters.Inc(PerfCounter.GuestVirtRead);
        _counters.Inc(PerfCounter.GuestVirtWrite);
        bool srcMmio = (ts.Rights & TlbRights.Mmio) != 0;
        bool direct = (td.Rights & (TlbRights.Mmio | TlbRights.EmulateWrites)) == 0;
        if (!srcMmio && direct && ts.Mfn == td.Mfn && slo < dlo + bytes && dlo < slo + bytes && slo != dlo)
        {
            // Overlap inside one frame: the architectural result is element by element.
            var frame = _machine.Write(new Mfn(td.Mfn));
            for (int i = 0; i < n; i++)
            {
                int k = down ? n - 1 - i : i;
                frame.Slice(slo + k * size, size).CopyTo(frame.Slice(dlo + k * size, size));
            }
        }
        else
        {
            var buf = (_pageBuffer ??= new byte[Page.Size]).AsSpan(0, bytes);
            if (srcMmio) { buf.Fill(0xFF); _domain.NoteDeviceAccess(); }
            else _machine.Read(new Mfn(ts.Mfn)).Slice(slo, bytes).CopyTo(buf);
            WritePart(td.Gfn, td.Mfn, td.Rights, dlo, buf);
            return true;
        }
        if (_cache.MayHoldCode(td.Gfn)) InvalidateCode(td.Gfn);
        return true;
    }
}
