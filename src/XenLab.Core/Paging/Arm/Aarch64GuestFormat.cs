// AArch64 stage-1 descriptors (VMSAv8-64, 4 KiB granule, 48-bit VA): the guest's own tables
// in an ARM domain. Our levels 4..1 are ARM levels 0..3 and use the same 9-bit VA indexes as
// x86-64, so the guest kernel writes either format and a mode switch converts in place.
//
// Access and dirty state are managed by the "hardware" as with FEAT_HAFDBS: the walker sets AF
// on access; a writable page is encoded DBM=1 with AP[2]=1 ("writable-clean") and the first
// write clears AP[2] ("writable-dirty"); read-only is DBM=0, AP[2]=1. A read-only page that
// was dirty keeps that in software bit 55, as Linux's PTE_DIRTY does, so every state the x86
// format can hold survives the round trip. Table descriptors carry no AF: tables decode with
// Accessed false, and their rights are the hierarchical APTable/XNTable bits.
using System.Text;
using XenLab.Guest;

namespace XenLab.Paging.Arm;

/// <summary>Stage-1 descriptor bits (Arm ARM D8.3).</summary>
public static class Aarch64Pte
{
    public const ulong Valid = 1UL << 0;
    /// <summary>Bit 1: table (levels 0-2) or page (level 3); clear at levels 1-2 means block.</summary>
    public const ulong TableOrPage = 1UL << 1;
    public const ulong TypeMask = Valid | TableOrPage;
    public const int AttrIndxShift = 2;                 // AttrIndx[4:2], index into MAIR_EL1
    public const ulong AttrIndxMask = 7UL << AttrIndxShift;
    public const ulong NonSecure = 1UL << 5;
    /// <summary>AP[1]: EL0 may access (with the same read/write rights as EL1).</summary>
    public const ulong ApUser = 1UL << 6;
    /// <summary>AP[2]: read-only (at every exception level).</summary>
    public const ulong ApReadOnly = 1UL << 7;
    public const int ShShift = 8;
    public const ulong ShInner = 3UL << ShShift;       // SH[9:8] = 0b11, inner shareable
    public const ulong ShMask = 3UL << ShShift;
    public const ulong AccessFlag = 1UL << 10;
    public const ulong NotGlobal = 1UL << 11;
    /// <summary>Output address bits [47:12] (48-bit PA, no FEAT_LPA).</summary>
    public const ulong FrameMask = ((1UL << 48) - 1) & ~0xFFFUL;
    /// <summary>Bits [50:48] must be zero with a 48-bit PA: an Address size fault otherwise.</summary>
    public const ulong AddressSizeBits = 7UL << 48;
    /// <summary>Dirty Bit Modifier: with FEAT_HAFDBS, a write clears AP[2] instead of faulting.</summary>
    public const ulong Dbm = 1UL << 51;
    public const ulong Contiguous = 1UL << 52;
    public const ulong Pxn = 1UL << 53;
    public const ulong Uxn = 1UL << 54;
    /// <summary>Software bit 55: dirty while read-only (Linux's PTE_DIRTY).</summary>
    public const ulong SoftwareDirty = 1UL << 55;
    public const ulong PxnTable = 1UL << 59;
    public const ulong UxnTable = 1UL << 60;
    /// <summary>APTable[0]: no EL0 access anywhere below this table.</summary>
    public const ulong ApTableNoUser = 1UL << 61;
    /// <summary>APTable[1]: no write anywhere below this table.</summary>
    public const ulong ApTableReadOnly = 1UL << 62;

    /// <summary>ARM's own level number (0..3) for our level (4..1).</summary>
    public static int ArmLevel(int level) => 4 - level;

    /// <summary>True for a table descriptor at a level that can hold one (our 4..2).</summary>
    public static bool IsTable(ulong e, int level) => level > 1 && (e & TypeMask) == TypeMask;

    /// <summary>True for a leaf a walk stops at: a page (our level 1) or a block (our levels 3, 2).</summary>
    public static bool IsLeaf(ulong e, int level) =>
        level == 1 ? (e & TypeMask) == TypeMask : (level is 2 or 3) && (e & TypeMask) == Valid;

    /// <summary>A descriptor a walk accepts at this level; anything else is a translation fault.</summary>
    public static bool IsValidAt(ulong e, int level) => IsTable(e, level) || IsLeaf(e, level);

    /// <summary>Writable in the FEAT_HAFDBS sense: DBM set (writable-clean) or AP[2] clear.</summary>
    public static bool LeafWritable(ulong e) => (e & Dbm) != 0 || (e & ApReadOnly) == 0;

    /// <summary>Dirty: AP[2] clear (written), or software-dirty.</summary>
    public static bool LeafDirty(ulong e) => (e & ApReadOnly) == 0 || (e & SoftwareDirty) != 0;

    public static string Describe(ulong e, int level)
    {
        if (!IsValidAt(e, level)) return e == 0 ? "invalid" : $"invalid (0x{e:x})";
        var sb = new StringBuilder();
        if (IsTable(e, level))
        {
            sb.Append("table");
            if ((e & ApTableReadOnly) != 0) sb.Append(" APTable=RO");
            if ((e & ApTableNoUser) != 0) sb.Append(" APTable=noEL0");
            if ((e & UxnTable) != 0) sb.Append(" UXNTable");
            if ((e & PxnTable) != 0) sb.Append(" PXNTable");
        }
        else
        {
            sb.Append(level == 1 ? "page" : "block");
            bool w = LeafWritable(e);
            sb.Append(w ? ((e & ApReadOnly) != 0 ? " RW-clean" : " RW-dirty") : " RO");
            if ((e & ApUser) != 0) sb.Append(" EL0");
            sb.Append(" Attr").Append((e & AttrIndxMask) >> AttrIndxShift);
            if ((e & ShMask) == ShInner) sb.Append(" IS");
            if ((e & AccessFlag) != 0) sb.Append(" AF");
            if ((e & Dbm) != 0) sb.Append(" DBM");
            if ((e & SoftwareDirty) != 0) sb.Append(" SWD");
            if ((e & Uxn) != 0) sb.Append(" UXN");
            if ((e & Pxn) != 0) sb.Append(" PXN");
        }
        sb.Append(" -> 0x").Append((e & FrameMask).ToString("x"));
        return sb.ToString();
    }

    public static string LevelName(int level) => level switch
    {
        4 => "L0",
        3 => "L1",
        2 => "L2",
        1 => "L3",
        _ => throw new System.ArgumentOutOfRangeException(nameof(level)),
    };
}

public sealed class Aarch64GuestFormat : IGuestPageTableFormat
{
    public static readonly Aarch64GuestFormat Instance = new();

    /// <summary>Attributes of every leaf the kernel writes: MAIR index 0 (normal write-back), inner shareable.</summary>
    private const ulong LeafAttributes = (0UL << Aarch64Pte.AttrIndxShift) | Aarch64Pte.ShInner;

    public string Name => "aarch64";

    public ulong TableEntry(ulong gfn) => (gfn << 12) | Aarch64Pte.TypeMask;

    public ulong LeafEntry(ulong gfn, MapFlags flags) => Encode(new GuestEntryState(
        true, true, gfn, (flags & MapFlags.Writable) != 0, (flags & MapFlags.User) != 0,
        (flags & MapFlags.NoExecute) != 0, false, false), 1);

    public GuestEntryState Decode(ulong e, int level)
    {
        if (!Aarch64Pte.IsValidAt(e, level)) return default;
        ulong frame = (e & Aarch64Pte.FrameMask) >> 12;
        if (Aarch64Pte.IsTable(e, level))
            return new GuestEntryState(true, false, frame,
                (e & Aarch64Pte.ApTableReadOnly) == 0, (e & Aarch64Pte.ApTableNoUser) == 0,
                (e & (Aarch64Pte.UxnTable | Aarch64Pte.PxnTable)) != 0, false, false);
        bool user = (e & Aarch64Pte.ApUser) != 0;
        // Execute-never of the exception level that owns the page: UXN for EL0 pages, PXN otherwise.
        bool nx = (e & (user ? Aarch64Pte.Uxn : Aarch64Pte.Pxn)) != 0;
        return new GuestEntryState(true, true, frame, Aarch64Pte.LeafWritable(e), user, nx,
            (e & Aarch64Pte.AccessFlag) != 0, Aarch64Pte.LeafDirty(e));
    }

    public ulong Encode(GuestEntryState s, int level)
    {
        if (!s.Present) return 0;
        ulong e = (s.Frame << 12) & Aarch64Pte.FrameMask;
        if (!s.Leaf)
        {
            e |= Aarch64Pte.TypeMask;
            if (!s.Writable) e |= Aarch64Pte.ApTableReadOnly;
            if (!s.User) e |= Aarch64Pte.ApTableNoUser;
            if (s.NoExecute) e |= Aarch64Pte.UxnTable | Aarch64Pte.PxnTable;
            return e;                                  // tables have no AF: Accessed is dropped
        }
        e |= (level == 1 ? Aarch64Pte.TypeMask : Aarch64Pte.Valid) | LeafAttributes;
        if (s.User) e |= Aarch64Pte.ApUser;
        if (s.Writable) e |= Aarch64Pte.Dbm | (s.Dirty ? 0 : Aarch64Pte.ApReadOnly);
        else e |= Aarch64Pte.ApReadOnly | (s.Dirty ? Aarch64Pte.SoftwareDirty : 0);
        if (s.Accessed) e |= Aarch64Pte.AccessFlag;
        if (s.NoExecute) e |= Aarch64Pte.Uxn | Aarch64Pte.Pxn;
        return e;
    }

    public string Describe(ulong entry, int level) => Aarch64Pte.Describe(entry, level);
    public string LevelName(int level) => Aarch64Pte.LevelName(level);
}
