// The guest's own (stage-1) page-table format. x86 domains use x86-64 4-level entries; ARM
// domains AArch64 descriptors with the 4 KiB granule. Both have four levels of 512 entries
// indexed by the same VA bits, so the guest kernel writes either through this interface and a
// mode switch can convert tables in place.
using XenLab.Guest;

namespace XenLab.Paging;

/// <summary>An entry's meaning, independent of format.</summary>
public readonly record struct GuestEntryState(bool Present, bool Leaf, ulong Frame, bool Writable, bool User, bool NoExecute, bool Accessed, bool Dirty);

public interface IGuestPageTableFormat
{
    string Name { get; }
    /// <summary>An intermediate entry pointing at the table in <paramref name="gfn"/>.</summary>
    ulong TableEntry(ulong gfn);
    /// <summary>A 4 KiB leaf for <paramref name="gfn"/> with accessed/dirty clear.</summary>
    ulong LeafEntry(ulong gfn, MapFlags flags);
    GuestEntryState Decode(ulong entry, int level);
    /// <summary>Encodes a state (the inverse of Decode for the states this format can hold).</summary>
    ulong Encode(GuestEntryState state, int level);
    string Describe(ulong entry, int level);
    string LevelName(int level);
}

public sealed class X86GuestFormat : IGuestPageTableFormat
{
    public static readonly X86GuestFormat Instance = new();
    private const ulong TableFlags = X86Pte.Present | X86Pte.Writable | X86Pte.User;

    public string Name => "x86-64";
    public ulong TableEntry(ulong gfn) => (gfn << 12) | TableFlags;

    public ulong LeafEntry(ulong gfn, MapFlags flags) => (gfn << 12) | X86Pte.Present
        | ((flags & MapFlags.Writable) != 0 ? X86Pte.Writable : 0)
        | ((flags & MapFlags.User) != 0 ? X86Pte.User : 0)
        | ((flags & MapFlags.NoExecute) != 0 ? X86Pte.NoExecute : 0);

    public GuestEntryState Decode(ulong e, int level)
    {
        bool present = (e & X86Pte.Present) != 0;
        bool leaf = present && (level == 1 || (e & X86Pte.PageSize) != 0);
        return new GuestEntryState(present, leaf, (e & X86Pte.FrameMask) >> 12,
            (e & X86Pte.Writable) != 0, (e & X86Pte.User) != 0, (e & X86Pte.NoExecute) != 0,
            (e & X86Pte.Accessed) != 0, leaf && (e & X86Pte.Dirty) != 0);
    }

    public ulong Encode(GuestEntryState s, int level)
    {
        if (!s.Present) return 0;
        ulong e = (s.Frame << 12) | X86Pte.Present;
        if (s.Writable) e |= X86Pte.Writable;
        if (s.User) e |= X86Pte.User;
        if (s.NoExecute) e |= X86Pte.NoExecute;
        if (s.Accessed) e |= X86Pte.Accessed;
        if (s.Leaf && s.Dirty) e |= X86Pte.Dirty;
        if (s.Leaf && level > 1) e |= X86Pte.PageSize;
        return e;
    }

    public string Describe(ulong e, int level) => X86Pte.Describe(e, level);
    public string LevelName(int level) => X86Pte.LevelName(level);
}
