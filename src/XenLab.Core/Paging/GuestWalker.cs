// The "hardware" walk of the guest's x86-64 4-level tables over guest-physical memory:
// checks present, reserved and permission bits, and sets accessed/dirty bits as the CPU
// does (A on every level of a successful walk, D on the leaf for a write).
using System.Collections.Generic;
using XenLab.Diagnostics;
using XenLab.Domains;

namespace XenLab.Paging;

public enum TranslateStatus
{
    Ok,
    /// <summary>A guest page fault: the guest's own tables refuse the access.</summary>
    PageFault,
    /// <summary>Not a canonical address: #GP on hardware, before any walk.</summary>
    NonCanonical,
    /// <summary>A page table, or the page itself, is at a gfn the p2m has no entry for.</summary>
    PhysicalMissing,
}

/// <summary>The result of translating one virtual address.</summary>
public readonly record struct Translation(
    TranslateStatus Status, ulong VirtualAddress, ulong Gfn, PageFaultErrorCode ErrorCode, int MemoryReferences)
{
    public bool IsOk => Status == TranslateStatus.Ok;
    public ulong GuestPhysicalAddress => (Gfn << 12) | (VirtualAddress & 0xFFF);
}

/// <summary>One entry read by a walk, raw and decoded.</summary>
public sealed record WalkStep(int Level, string Name, ulong TableGfn, int Index, ulong EntryAddress, ulong RawEntry, string Decoded)
{
    public override string ToString() => $"{Name}[{Index}] @0x{EntryAddress:x} = 0x{RawEntry:x16} {Decoded}";
}

public static class GuestWalker
{
    // Effective-rights flags kept in a TLB entry (same bit positions as the PTE).
    private const ulong RightsMask = X86Pte.Writable | X86Pte.User | X86Pte.NoExecute | X86Pte.Dirty;

    /// <summary>
    /// Walks from <paramref name="cr3"/> for <paramref name="va"/>. On success returns the gfn
    /// and, in <paramref name="rights"/>, the effective Writable/User/NoExecute bits and the
    /// leaf's Dirty bit after this access; <paramref name="pageShift"/> is 12, 21 or 30.
    /// </summary>
    public static Translation Walk(Domain d, ulong cr3, bool wp, bool nxe, ulong va, AccessKind access,
        out ulong rights, out int pageShift, List<WalkStep>? trace = null)
    {
        var counters = d.Counters;
        counters.Inc(PerfCounter.PageWalk);
        rights = 0;
        pageShift = 12;
        ulong table = cr3 & X86Pte.FrameMask;
        ulong rw = X86Pte.Writable, us = X86Pte.User, nx = 0;
        // Remember where each level's entry lives so A/D can be set only once the walk succeeds.
        System.Span<ulong> entryAddr = stackalloc ulong[4];
        System.Span<ulong> entries = stackalloc ulong[4];
        int refs = 0;
        int level = 4;
        for (; level >= 1; level--)
        {
            int idx = X86Pte.IndexAt(va, level);
            ulong addr = table + (ulong)idx * 8;
            if (!d.TryReadPhysU64(addr, out ulong pte))
                return new Translation(TranslateStatus.PhysicalMissing, va, addr >> 12, PageFaultErrorCode.None, refs);
            refs++;
            counters.Inc(PerfCounter.PageWalkMemRef);
            entryAddr[4 - level] = addr;
            entries[4 - level] = pte;
            trace?.Add(new WalkStep(level, X86Pte.LevelName(level), table >> 12, idx, addr, pte, X86Pte.Describe(pte, level)));
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
        pageShift = 12 + 9 * (leafLevel - 1);
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
            if ((e & X86Pte.Accessed) == 0) counters.Inc(PerfCounter.AccessedBitSet);
            if (((want ^ e) & X86Pte.Dirty) != 0) counters.Inc(PerfCounter.DirtyBitSet);
            d.TryWritePhysU64(entryAddr[4 - l], want);
            if (l == leafLevel) leaf = want;
        }
        ulong frame = (leaf & X86Pte.FrameMask) >> 12;
        ulong pageOffsetFrames = (va >> 12) & ((1UL << (pageShift - 12)) - 1);
        frame = (frame & ~((1UL << (pageShift - 12)) - 1)) | pageOffsetFrames;
        rights = (rw | us | nx | (leaf & X86Pte.Dirty)) & RightsMask;
        return new Translation(TranslateStatus.Ok, va, frame, PageFaultErrorCode.None, refs);
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
        return new Translation(TranslateStatus.PageFault, va, 0, code, refs);
    }
}
