// x86-64 4-level paging entry format (Intel SDM vol. 3, 4.5), shared by the guest walker,
// the guest kernel and every decoded view.
using System;
using System.Text;

namespace XenLab.Paging;

public static class X86Pte
{
    public const ulong Present = 1UL << 0;
    public const ulong Writable = 1UL << 1;
    public const ulong User = 1UL << 2;
    public const ulong WriteThrough = 1UL << 3;
    public const ulong CacheDisable = 1UL << 4;
    public const ulong Accessed = 1UL << 5;
    public const ulong Dirty = 1UL << 6;
    public const ulong PageSize = 1UL << 7;
    public const ulong Global = 1UL << 8;
    public const ulong NoExecute = 1UL << 63;

    /// <summary>The model's MAXPHYADDR: physical address bits above this are reserved.</summary>
    public const int MaxPhysAddrBits = 46;
    public const ulong FrameMask = ((1UL << MaxPhysAddrBits) - 1) & ~0xFFFUL;
    /// <summary>Bits 51:MAXPHYADDR must be zero in every entry.</summary>
    public const ulong ReservedHighBits = ((1UL << 52) - 1) & ~((1UL << MaxPhysAddrBits) - 1);

    public static int IndexAt(ulong va, int level) => (int)((va >> (12 + 9 * (level - 1))) & 511);

    /// <summary>A canonical 48-bit address: bits 63:47 all equal.</summary>
    public static bool IsCanonical(ulong va) => (ulong)((long)(va << 16) >> 16) == va;

    /// <summary>Decoded flags, e.g. "P RW US A D".</summary>
    public static string Describe(ulong pte, int level)
    {
        if ((pte & Present) == 0) return pte == 0 ? "not present" : $"not present (0x{pte:x})";
        var sb = new StringBuilder("P");
        if ((pte & Writable) != 0) sb.Append(" RW");
        if ((pte & User) != 0) sb.Append(" US");
        if ((pte & WriteThrough) != 0) sb.Append(" PWT");
        if ((pte & CacheDisable) != 0) sb.Append(" PCD");
        if ((pte & Accessed) != 0) sb.Append(" A");
        if ((pte & Dirty) != 0 && (level == 1 || (pte & PageSize) != 0)) sb.Append(" D");
        if ((pte & PageSize) != 0 && level > 1) sb.Append(" PS");
        if ((pte & Global) != 0) sb.Append(" G");
        if ((pte & NoExecute) != 0) sb.Append(" NX");
        sb.Append(" -> 0x").Append((pte & FrameMask).ToString("x"));
        return sb.ToString();
    }

    public static string LevelName(int level) => level switch
    {
        4 => "PML4E",
        3 => "PDPTE",
        2 => "PDE",
        1 => "PTE",
        _ => throw new ArgumentOutOfRangeException(nameof(level)),
    };
}

/// <summary>
/// What an access wants; the values are the x86 page-fault error code bits, so a fault's
/// error code is the access ORed with P (protection) and RSVD.
/// </summary>
[Flags]
public enum AccessKind : uint
{
    Read = 0,
    Write = 1 << 1,
    User = 1 << 2,
    Fetch = 1 << 4,
}

/// <summary>x86 page-fault error code bits.</summary>
[Flags]
public enum PageFaultErrorCode : uint
{
    None = 0,
    Present = 1 << 0,
    Write = 1 << 1,
    User = 1 << 2,
    ReservedBit = 1 << 3,
    InstructionFetch = 1 << 4,
}
