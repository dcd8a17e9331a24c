// Data accesses: every operand is translated by Vcpu.Translate (TLB, then the paging mode)
// with the access kind the instruction needs: Read, or Write for stores and read-modify-write
// operands (so a RMW on a read-only page faults with W=1, as on hardware). An access that
// crosses a page boundary translates both pages before a byte moves. Device memory (Mmio)
// reads all ones and drops writes; EmulateWrites pages are written through
// Domain.WriteGuestPhysical so the hypervisor revalidates and dirty tracking sees it.
using System;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenLab.Diagnostics;
using XenLab.Memory;
using XenLab.Paging;

namespace XenLab.Cpu;

public sealed partial class X86Cpu
{
    /// <summary>A translated operand: one page, or two when it crosses a boundary (Split bytes in the first).</summary>
    private struct MemLoc
    {
        public ulong Va;
        public int Size;
        public int Split;
        public ulong Gfn0, Mfn0, Rights0;
        public ulong Gfn1, Mfn1, Rights1;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsCanonical(ulong va) => ((long)va << 16 >> 16) == (long)va;

    /// <summary>Translates the operand; false (with the stop recorded) on a fault.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool Resolve(ulong va, int size, AccessKind access, out MemLoc loc)
    {
        loc = default;
        loc.Va = va;
        loc.Size = size;
        int off = (int)(va & Page.OffsetMask);
        if (!IsCanonical(va)) return GeneralProtection(va);
        var t = _vcpu.TranslateInOperation(va, access);
        if (t.Status != TranslateStatus.Ok) return TranslationFault(in t, va);
        loc.Gfn0 = t.Gfn;
        loc.Mfn0 = t.Mfn;
        loc.Rights0 = t.Rights;
        if (off + size <= Page.Size)
        {
            loc.Split = size;
            return true;
        }
        return ResolveSecond(ref loc, access, Page.Size - off);
    }

    private bool ResolveSecond(ref MemLoc loc, AccessKind access, int split)
    {
        ulong va1 = (loc.Va & ~Page.OffsetMask) + Page.Size;
        if (!IsCanonical(va1)) return GeneralProtection(va1);
        var t = _vcpu.TranslateInOperation(va1, access);
        if (t.Status != TranslateStatus.Ok) return TranslationFault(in t, va1);
        loc.Split = split;
        loc.Gfn1 = t.Gfn;
        loc.Mfn1 = t.Mfn;
        loc.Rights1 = t.Rights;
        return true;
    }

    private ulong Load(in MemLoc loc)
    {
        _counters.Inc(PerfCounter.GuestVirtRead);
        if (loc.Split == loc.Size && (loc.Rights0 & TlbRights.Mmio) == 0)
        {
            ref byte p = ref Unsafe.Add(ref MemoryMarshal.GetReference(_machine.Read(new Mfn(loc.Mfn0))), (int)(loc.Va & Page.OffsetMask));
            return loc.Size switch
            {
                1 => p,
                2 => Unsafe.ReadUnaligned<ushort>(ref p),
                4 => Unsafe.ReadUnaligned<uint>(ref p),
                _ => Unsafe.ReadUnaligned<ulong>(ref p),
            };
        }
        return LoadSlow(in loc);
    }

    private ulong LoadSlow(in MemLoc loc)
    {
        Span<byte> tmp = stackalloc byte[8];
        tmp.Clear();
        int off = (int)(loc.Va & Page.OffsetMask);
        ReadPart(loc.Mfn0, loc.Rights0, off, tmp.Slice(0, loc.Split));
        if (loc.Split < loc.Size) ReadPart(loc.Mfn1, loc.Rights1, 0, tmp.Slice(loc.Split, loc.Size - loc.Split));
        return BinaryPrimitives.ReadUInt64LittleEndian(tmp) & Mask(loc.Size);
    }

    private void ReadPart(ulong mfn, ulong rights, int off, Span<byte> into)
    {
        if ((rights & TlbRights.Mmio) != 0) { into.Fill(0xFF); _domain.NoteDeviceAccess(); }
        else _machine.Read(new Mfn(mfn)).Slice(off, into.Length).CopyTo(into);
    }

    private void Store(in MemLoc loc, ulong value)
    {
        _counters.Inc(PerfCounter.GuestVirtWrite);
        if (loc.Split == loc.Size && (loc.Rights0 & (TlbRights.Mmio | TlbRights.EmulateWrites)) == 0)
        {
            ref byte p = ref Unsafe.Add(ref MemoryMarshal.GetReference(_machine.Write(new Mfn(loc.Mfn0))), (int)(loc.Va & Page.OffsetMask));
            switch (loc.Size)
            {
                case 1: p = (byte)value; break;
                case 2: Unsafe.WriteUnaligned(ref p, (ushort)value); break;
                case 4: Unsafe.WriteUnaligned(ref p, (uint)value); break;
                default: Unsafe.WriteUnaligned(ref p, value); break;
            }
            if (_cache.MayHoldCode(loc.Gfn0)) InvalidateCode(loc.Gfn0);
            return;
        }
        StoreSlow(in loc, value);
    }

    private void StoreSlow(in MemLoc loc, ulong value)
    {
        Span<byte> tmp = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(tmp, value);
        int off = (int)(loc.Va & Page.OffsetMask);
        WritePart(loc.Gfn0, loc.Mfn0, loc.Rights0, off, tmp.Slice(0, loc.Split));
        if (loc.Split < loc.Size) WritePart(loc.Gfn1, loc.Mfn1, loc.Rights1, 0, tmp.Slice(loc.Split, loc.Size - loc.Split));
    }

    /// <summary>Writes bytes into one translated page the way its rights say.</summary>
    private void WritePart(ulong gfn, ulong mfn, ulong rights, int off, ReadOnlySpan<byte> bytes)
    {
        if ((rights & TlbRights.Mmio) != 0) { _domain.NoteDeviceAccess(); return; }   // device memory: dropped
        if ((rights & TlbRights.EmulateWrites) != 0)
            _domain.WriteGuestPhysicalInOperation((gfn << Page.Shift) | (uint)off, bytes, _vcpu);   // the hypervisor emulates it
        else
            bytes.CopyTo(_machine.Write(new Mfn(mfn)).Slice(off, bytes.Length));
        if (_cache.MayHoldCode(gfn)) InvalidateCode(gfn);
    }

    private void InvalidateCode(ulong gfn)
    {
        if (!_cache.Invalidate(gfn)) return;
        _counters.Inc(PerfCounter.CpuDecodeInvalidate);
    }

    /// <summary>Effective address of the memory operand; <paramref name="next"/> is the next instruction's RIP.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong EffectiveAddress(ref DecodedInstruction d, ulong next)
    {
        ulong a = (ulong)d.Disp;
        if ((d.Flags & DecodedFlags.RipRelative) != 0) a += next;
        else if (d.Base != DecodedInstruction.NoReg) a += R(d.Base);
        if (d.Index != DecodedInstruction.NoReg) a += R(d.Index) << d.Scale;
        if ((d.Flags & DecodedFlags.Addr32) != 0) a = (uint)a;
        return a;
    }

    // ---- faults as stops -----------------------------------------------------------------

    private bool GeneralProtection(ulong va)
    {
        SetStop(StopReason.GeneralProtection, va, 0, "");
        return false;
    }

    private bool TranslationFault(in Translation t, ulong va)
    {
        switch (t.Status)
        {
            case TranslateStatus.PageFault:
                SetStop(StopReason.PageFault, va, (uint)t.ErrorCode, "");
                break;
            case TranslateStatus.NonCanonical:
                SetStop(StopReason.GeneralProtection, va, 0, "");
                break;
            case TranslateStatus.P2mReadOnly:
                SetStop(StopReason.P2mReadOnly, va, 0, $"gfn 0x{t.Gfn:x} is read-only in the p2m");
                break;
            default:
                SetStop(StopReason.PhysicalMissing, va, 0, $"gfn 0x{t.Gfn:x} has no p2m entry");
                break;
        }
        return false;
    }
}
