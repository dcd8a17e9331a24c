// The "hardware" walk of the guest's x86-64 4-level tables: checks present, reserved and
// permission bits, and sets accessed/dirty bits as the CPU does (A on every level of a
// successful walk, D on the leaf for a write). How a guest-physical table address reaches
// memory is the accessor's business: through the p2m tree (shadow's guest walk, the
// kernel), or through the nested EPT walk (HAP), so one walker serves every mode.
using XenLab.Diagnostics;

namespace XenLab.Paging;

/// <summary>How a walker reads and updates guest-physical memory holding guest tables.</summary>
public interface IGuestTableAccess
{
    /// <summary>Reads the 8-byte entry at <paramref name="gpa"/>; false if it cannot be reached (status says why).</summary>
    bool TryRead(ulong gpa, out ulong value, ref int refs, out TranslateStatus failure);
    /// <summary>Writes back an entry with A/D set; false if the hypervisor refused the write.</summary>
    bool TryWriteAccessedDirty(ulong gpa, ulong value, ref int refs);
    PerfCounters Counters { get; }
    /// <summary>Receives every entry read, for explaining a walk (null on the fast path).</summary>
    TranslationTrace? Trace { get; }
}

public static class GuestWalker
{
    private const ulong RightsMask = X86Pte.Writable | X86Pte.User | X86Pte.NoExecute | X86Pte.Dirty;

    /// <summary>
    /// Walks from <paramref name="cr3"/> for <paramref name="va"/>. On success the result's Gfn is
    /// the guest frame and Rights the effective Writable/User/NoExecute bits with the leaf's Dirty
    /// bit after this access; Mfn is left for the caller (the mode) to fill.
    /// </summary>
    public static Translation Walk<TAccess>(ref TAccess acc, ulong cr3, bool wp, bool nxe, ulong va, AccessKind access)
        where TAccess : struct, IGuestTableAccess
    {
        var counters = acc.Counters;
        counters.Inc(PerfCounter.PageWalk);
        ulong table = cr3 & X86Pte.FrameMask;
        ulong rw = X86Pte.Writable, us = X86Pte.User, nx = 0;
        System.Span<ulong> entryAddr = stackalloc ulong[4];
        System.Span<ulong> entries = stackalloc ulong[4];
        int refs = 0;
        int level = 4;
        for (; level >= 1; level--)
        {
            int idx = X86Pte.IndexAt(va, level);
            ulong addr = table + (ulong)idx * 8;
            if (!acc.TryRead(addr, out ulong pte, ref refs, out var failure))
                return Translation.Fault(failure, va, addr >> 12, PageFaultErrorCode.None, refs);
            counters.Inc(PerfCounter.PageWalkMemRef);
            entryAddr[4 - level] = addr;
            entries[4 - level] = pte;
            acc.Trace?.Add(new WalkStep("guest", level, X86Pte.LevelName(level), table >> 12, idx, addr, pte, X86Pte.Describe(pte, level)));
            if ((pte & X86Pte.Present) == 0)
                return Fault(counters, nxe, va, access, PageFaultErrorCode.None, refs);
            if (HasReservedBits(pte, level, nxe))
                return Fault(counters, nxe, va, access, PageFaultErrorCode.Present | PageFaultErrorCode.ReservedBit, refs);
            rw &= pte;
            us &= pte;
            nx |= pte & X86Pte.NoExecute;
            if (level == 1 || (pte & X86Pte.PageSize) != 0)
                break;
            table = pte & X86Pte.FrameMask;
        }
        int leafLevel = level;
        ulong leaf = entries[4 - leafLevel];
        int pageShift = 12 + 9 * (leafLevel - 1);
        bool user = (access & AccessKind.User) != 0;
        if ((access & AccessKind.Write) != 0 && rw == 0 && (user || wp))
            return Fault(counters, nxe, va, access, PageFaultErrorCode.Present, refs);
        if (user && us == 0)
            return Fault(counters, nxe, va, access, PageFaultErrorCode.Present, refs);
        if ((access & AccessKind.Fetch) != 0 && nxe && nx != 0)
            return Fault(counters, nxe, va, access, PageFaultErrorCode.Present, refs);

        // Success: set A on every level (and D on the leaf for a write), as the CPU does.
        for (int l = 4; l >= leafLevel; l--)
        {
            ulong e = entries[4 - l];
            ulong want = e | X86Pte.Accessed;
            if (l == leafLevel && (access & AccessKind.Write) != 0) want |= X86Pte.Dirty;
            if (want == e) continue;
            if (!acc.TryWriteAccessedDirty(entryAddr[4 - l], want, ref refs))
                return Translation.Fault(TranslateStatus.P2mReadOnly, va, entryAddr[4 - l] >> 12, PageFaultErrorCode.None, refs);
            if ((e & X86Pte.Accessed) == 0) counters.Inc(PerfCounter.AccessedBitSet);
            if (((want ^ e) & X86Pte.Dirty) != 0) counters.Inc(PerfCounter.DirtyBitSet);
            if (l == leafLevel) leaf = want;
        }
        ulong frame = (leaf & X86Pte.FrameMask) >> 12;
        ulong within = (1UL << (pageShift - 12)) - 1;
        frame = (frame & ~within) | ((va >> 12) & within);
        ulong rights = (rw | us | nx | (leaf & X86Pte.Dirty)) & RightsMask;
        return new Translation(TranslateStatus.Ok, va, frame, ulong.MaxValue, rights, pageShift, PageFaultErrorCode.None, refs);
    }

    private static bool HasReservedBits(ulong pte, int level, bool nxe)
    {
        if ((pte & X86Pte.ReservedHighBits) != 0) return true;
        if (!nxe && (pte & X86Pte.NoExecute) != 0) return true;
        if ((pte & X86Pte.PageSize) != 0)
        {
            if (level == 4) return true;                                  // no 512 GiB pages
            if (level == 3 && (pte & 0x3FFFE000UL) != 0) return true;      // 1 GiB: bits 29:13
            if (level == 2 && (pte & 0x1FE000UL) != 0) return true;        // 2 MiB: bits 20:13
        }
        return false;
    }

    private static Translation Fault(PerfCounters counters, bool nxe, ulong va, AccessKind access, PageFaultErrorCode bits, int refs)
    {
        counters.Inc(PerfCounter.GuestPageFault);
        // I/D is reported only where execute protection exists (EFER.NXE; no SMEP modelled).
        var mask = AccessKind.Write | AccessKind.User | (nxe ? AccessKind.Fetch : 0);
        var code = bits | (PageFaultErrorCode)((uint)access & (uint)mask);
        return Translation.Fault(TranslateStatus.PageFault, va, 0, code, refs);
    }
}
