// p2m types, with Xen's x86 numbers. The pfn -> mfn tree says where a frame is; the type
// says what the guest may do with it. Under HAP the type lives only in the EPT entry's sa_p2mt
// bits (the mode owns it, IP2mTypeOwner); under shadow and ARM in the domain's compact
// P2mTypeMap (p2m-pt.c's PTE software bits, one byte per gfn where not ram_rw). A switch
// hands them over: HAP exports its non-default types to the map when detached, and takes them
// from it (leaving it empty) when attached.
using System.Collections.Generic;

namespace XenLab.P2m;

public enum P2mType : byte
{
    RamRw = 0,
    Invalid = 1,
    RamLogDirty = 2,
    RamRo = 3,
    MmioDm = 4,
    MmioDirect = 5,
    PopulateOnDemand = 6,
    GrantMapRw = 7,
    GrantMapRo = 8,
}

public static class P2mTypeInfo
{
    public static string Name(P2mType t) => t switch
    {
        P2mType.RamRw => "ram_rw",
        P2mType.Invalid => "invalid",
        P2mType.RamLogDirty => "ram_logdirty",
        P2mType.RamRo => "ram_ro",
        P2mType.MmioDm => "mmio_dm",
        P2mType.MmioDirect => "mmio_direct",
        P2mType.PopulateOnDemand => "populate_on_demand",
        P2mType.GrantMapRw => "grant_map_rw",
        P2mType.GrantMapRo => "grant_map_ro",
        _ => "type" + (int)t,
    };

    private static readonly string[,] Transitions = BuildTransitions();

    /// <summary>"ram_rw->ram_logdirty", from a table made once: trace events on a hot path allocate nothing.</summary>
    public static string Transition(P2mType from, P2mType to) =>
        (int)from < 16 && (int)to < 16 ? Transitions[(int)from, (int)to] : Name(from) + "->" + Name(to);

    private static string[,] BuildTransitions()
    {
        var t = new string[16, 16];
        for (int a = 0; a < 16; a++)
            for (int b = 0; b < 16; b++) t[a, b] = Name((P2mType)a) + "->" + Name((P2mType)b);
        return t;
    }

    /// <summary>p2m_is_changeable: the types a lazy range change or recalculation may turn into each other.</summary>
    public static bool IsChangeable(P2mType t) => t is P2mType.RamRw or P2mType.RamLogDirty;

    /// <summary>True for types whose guest writes the hardware must not let through.</summary>
    public static bool IsWriteProtected(P2mType t) => t is P2mType.RamRo or P2mType.RamLogDirty or P2mType.GrantMapRo;
}

/// <summary>
/// The p2m types of a domain whose paging mode keeps none of its own (shadow, ARM): Xen's
/// p2m-pt.c keeps each type in its PTE's software bits; this is the compact equivalent, a byte
/// per gfn in 512-entry pages allocated only where some gfn is not ram_rw (the default), under
/// two levels of 512 pointers like a p2m-pt table. Under HAP the EPT entry holds the type
/// (<see cref="IP2mTypeOwner"/>) and this table stays empty. RAM defaults to ram_rw, nothing to
/// invalid, identity to <see cref="IdentityType"/>: mmio_direct for a PV guest (its own p2m
/// maps the frame 1:1 to the host's), mmio_dm for an HVM guest (the hypervisor maps nothing
/// there; the device model emulates it).
/// </summary>
public sealed class P2mTypeMap
{
    private readonly byte[]?[]?[] _top = new byte[]?[]?[512];
    private int _count;

    /// <summary>The type identity (non-RAM) frames have.</summary>
    public P2mType IdentityType { get; init; } = P2mType.MmioDirect;

    /// <summary>RAM gfns whose type is not ram_rw.</summary>
    public int Count => _count;

    public P2mType Get(P2mTree tree, ulong gfn)
    {
        var kind = P2mTree.Classify(tree.Get(gfn));
        if (kind == P2mEntryKind.Missing) return P2mType.Invalid;
        if (kind == P2mEntryKind.Identity) return IdentityType;
        return GetRam(gfn);
    }

    /// <summary>The type of a gfn known to be RAM.</summary>
    public P2mType GetRam(ulong gfn)
    {
        if (_count == 0 || gfn >= P2mTree.MaxPfn) return P2mType.RamRw;
        var leaf = _top[gfn >> 18]?[(gfn >> 9) & 511];
        return leaf is null ? P2mType.RamRw : (P2mType)leaf[gfn & 511];
    }

    /// <summary>Sets the type of a RAM gfn; ram_rw is the default and allocates nothing.</summary>
    public void Set(ulong gfn, P2mType type)
    {
        if (gfn >= P2mTree.MaxPfn) return;
        ref var mid = ref _top[gfn >> 18];
        if (mid is null)
        {
            if (type == P2mType.RamRw) return;
            mid = new byte[]?[512];
        }
        ref var leaf = ref mid[(gfn >> 9) & 511];
        if (leaf is null)
        {
            if (type == P2mType.RamRw) return;
            leaf = new byte[512];
        }
        ref byte slot = ref leaf[gfn & 511];
        if (slot != 0 && type == P2mType.RamRw) _count--;
        else if (slot == 0 && type != P2mType.RamRw) _count++;
        slot = (byte)type;
    }

    public void Forget(ulong gfn) => Set(gfn, P2mType.RamRw);

    /// <summary>Forgets every type (a mode that keeps types in its own entries took them over).</summary>
    public void Clear()
    {
        System.Array.Clear(_top);
        _count = 0;
    }

    public IEnumerable<KeyValuePair<ulong, P2mType>> Overrides
    {
        get
        {
            for (int a = 0; a < 512; a++)
            {
                var mid = _top[a];
                if (mid is null) continue;
                for (int b = 0; b < 512; b++)
                {
                    var leaf = mid[b];
                    if (leaf is null) continue;
                    for (int c = 0; c < 512; c++)
                        if (leaf[c] != 0) yield return new(((ulong)(uint)a << 18) | ((ulong)(uint)b << 9) | (uint)c, (P2mType)leaf[c]);
                }
            }
        }
    }
}

/// <summary>
/// A paging mode that keeps the p2m type in its own entries (HAP: the EPT's sa_p2mt bits), so
/// the domain keeps no copy. The domain asks it for RAM gfns only.
/// </summary>
public interface IP2mTypeOwner
{
    /// <summary>The type of a RAM gfn as ept_get_entry reads it (a pending recalculation applied, nothing written).</summary>
    P2mType TypeOf(ulong gfn);
    /// <summary>p2m_change_type_one: rewrites one entry; true if a TLB/INVEPT flush is needed.</summary>
    bool SetType(ulong gfn, P2mType type);
    /// <summary>p2m_change_type_range between changeable types: lazy; returns the entries marked.</summary>
    long ChangeTypeRange(ulong startGfn, ulong endGfn, P2mType from, P2mType to);
}
