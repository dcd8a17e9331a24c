// The "hardware" stage-1 walk of AArch64 tables (4 KiB granule, 4 levels from one root):
// translation faults for invalid descriptors, permission faults from AP/APTable/XN, and
// FEAT_HAFDBS updates (AF on access, AP[2] cleared by the first write to a DBM page). Reads go
// through an IGuestTableAccess, so in ARM mode every table read is itself a stage-2 walk.
//
// Faults are reported in the x86 walker's normalized form (TranslateStatus.PageFault with the
// error-code bits P = permission fault rather than translation fault, W = write, U = EL0,
// I = fetch), so one differential test compares both architectures; the ARM fault status code
// (DFSC) goes with it. Simplifications: TTBR0 and TTBR1 are one root (upper-half addresses
// index entries 256-511 of it, as on x86); no access flag faults (hardware manages AF); no
// implicit PXN for EL0-writable pages; CR0.WP and EFER.NXE do not apply (ARM has neither).
using XenLab.Diagnostics;

namespace XenLab.Paging.Arm;

/// <summary>Fault status codes of ESR_ELx.{I,D}FSC for the faults the model raises.</summary>
public enum ArmFaultKind : byte
{
    None = 0xFF,
    AddressSize = 0x00,      // 0b0000LL
    Translation = 0x04,      // 0b0001LL
    AccessFlag = 0x08,       // 0b0010LL
    Permission = 0x0C,       // 0b0011LL
}

/// <summary>A DFSC: fault kind and the ARM level (0-3) it happened at.</summary>
public readonly record struct ArmFault(ArmFaultKind Kind, int ArmLevel)
{
    public static readonly ArmFault None = new(ArmFaultKind.None, 0);
    public bool IsFault => Kind != ArmFaultKind.None;
    /// <summary>The 6-bit status code as the syndrome register holds it.</summary>
    public int Code => IsFault ? (int)Kind | ArmLevel : 0;
    public override string ToString() => IsFault
        ? $"DFSC 0x{Code:x2} ({Kind switch { ArmFaultKind.AddressSize => "address size", ArmFaultKind.Translation => "translation", ArmFaultKind.AccessFlag => "access flag", _ => "permission" }} fault, level {ArmLevel})"
        : "no fault";
}

public static class Aarch64Walker
{
    /// <summary>
    /// Walks from <paramref name="ttbr"/> for <paramref name="va"/>. On success Gfn is the output
    /// frame and Rights the effective TlbRights (Writable/User/NoExecute and Dirty after this
    /// access); Mfn is left for the mode. <paramref name="fault"/> says which DFSC a guest fault has.
    /// </summary>
    public static Translation Walk<TAccess>(ref TAccess acc, ulong ttbr, ulong va, AccessKind access, out ArmFault fault)
        where TAccess : struct, IGuestTableAccess
    {
        var counters = acc.Counters;
        counters.Inc(PerfCounter.PageWalk);
        fault = ArmFault.None;
        ulong table = ttbr & Aarch64Pte.FrameMask;
        bool tableNoWrite = false, tableNoUser = false, tableUxn = false, tablePxn = false;
        int refs = 0;
        int level = 4;
        ulong leaf = 0, leafAddr = 0;
        for (; level >= 1; level--)
        {
            int idx = X86Pte.IndexAt(va, level);
            ulong addr = table + (ulong)idx * 8;
            if (!acc.TryRead(addr, out ulong d, ref refs, out var failure))
                return Translation.Fault(failure, va, addr >> 12, PageFaultErrorCode.None, refs);
            counters.Inc(PerfCounter.PageWalkMemRef);
            acc.Trace?.Add(new WalkStep("guest", level, Aarch64Pte.LevelName(level), table >> 12, idx, addr, d, Aarch64Pte.Describe(d, level)));
            if (!Aarch64Pte.IsValidAt(d, level))
                return Fault(ref acc, counters, va, access, new ArmFault(ArmFaultKind.Translation, Aarch64Pte.ArmLevel(level)), out fault, refs);
            if ((d & Aarch64Pte.AddressSizeBits) != 0)
                return Fault(ref acc, counters, va, access, new ArmFault(ArmFaultKind.AddressSize, Aarch64Pte.ArmLevel(level)), out fault, refs);
            if (Aarch64Pte.IsLeaf(d, level))
            {
                leaf = d;
                leafAddr = addr;
                break;
            }
            tableNoWrite |= (d & Aarch64Pte.ApTableReadOnly) != 0;
            tableNoUser |= (d & Aarch64Pte.ApTableNoUser) != 0;
            tableUxn |= (d & Aarch64Pte.UxnTable) != 0;
            tablePxn |= (d & Aarch64Pte.PxnTable) != 0;
            table = d & Aarch64Pte.FrameMask;
        }
        int leafLevel = level;
        int pageShift = 12 + 9 * (leafLevel - 1);
        bool user = (access & AccessKind.User) != 0;
        bool write = (access & AccessKind.Write) != 0;
        bool writable = !tableNoWrite && Aarch64Pte.LeafWritable(leaf);
        bool userOk = !tableNoUser && (leaf & Aarch64Pte.ApUser) != 0;
        bool uxn = tableUxn || (leaf & Aarch64Pte.Uxn) != 0;
        bool pxn = tablePxn || (leaf & Aarch64Pte.Pxn) != 0;
        var permission = new ArmFault(ArmFaultKind.Permission, Aarch64Pte.ArmLevel(leafLevel));
        if (user && !userOk) return Fault(ref acc, counters, va, access, permission, out fault, refs);
        if (write && !writable) return Fault(ref acc, counters, va, access, permission, out fault, refs);
        if ((access & AccessKind.Fetch) != 0 && (user ? uxn : pxn)) return Fault(ref acc, counters, va, access, permission, out fault, refs);

        // Success: the hardware sets AF, and a write to a writable-clean page clears AP[2].
        ulong want = leaf | Aarch64Pte.AccessFlag;
        if (write && (leaf & Aarch64Pte.ApReadOnly) != 0) want &= ~Aarch64Pte.ApReadOnly;   // DBM set: writable says so
        if (want != leaf)
        {
            if (!acc.TryWriteAccessedDirty(leafAddr, want, ref refs))
                return Translation.Fault(TranslateStatus.P2mReadOnly, va, leafAddr >> 12, PageFaultErrorCode.None, refs);
            if ((leaf & Aarch64Pte.AccessFlag) == 0) counters.Inc(PerfCounter.AccessedBitSet);
            if (((want ^ leaf) & Aarch64Pte.ApReadOnly) != 0) counters.Inc(PerfCounter.DirtyBitSet);
            leaf = want;
        }
        ulong frame = (leaf & Aarch64Pte.FrameMask) >> 12;
        ulong within = (1UL << (pageShift - 12)) - 1;
        frame = (frame & ~within) | ((va >> 12) & within);
        ulong rights = 0;
        if (writable) rights |= TlbRights.Writable;
        if (userOk) rights |= TlbRights.User;
        if (uxn || pxn) rights |= TlbRights.NoExecute;      // conservative: a refused TLB hit just walks again
        if (Aarch64Pte.LeafDirty(leaf)) rights |= TlbRights.Dirty;
        return new Translation(TranslateStatus.Ok, va, frame, ulong.MaxValue, rights, pageShift, PageFaultErrorCode.None, refs);
    }

    private static Translation Fault<TAccess>(ref TAccess acc, PerfCounters counters, ulong va, AccessKind access, ArmFault f, out ArmFault fault, int refs)
        where TAccess : struct, IGuestTableAccess
    {
        counters.Inc(PerfCounter.GuestPageFault);
        fault = f;
        var code = (PageFaultErrorCode)((uint)access & (uint)(AccessKind.Write | AccessKind.User | AccessKind.Fetch));
        // Translation faults are "not present"; permission and address size faults set P
        // (address size is the nearest thing to x86's reserved-bit fault, so RSVD too).
        if (f.Kind == ArmFaultKind.Permission) code |= PageFaultErrorCode.Present;
        if (f.Kind == ArmFaultKind.AddressSize) code |= PageFaultErrorCode.Present | PageFaultErrorCode.ReservedBit;
        acc.Trace?.Note($"stage-1 {f} at VA 0x{va:x}: injected into the guest as error code 0x{(uint)code:x}");
        return Translation.Fault(TranslateStatus.PageFault, va, 0, code, refs);
    }
}
