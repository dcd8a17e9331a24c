// p2m types, with Xen's x86 numbers. The pfn -> mfn tree says where a frame is; the type
// says what the guest may do with it. Types are kept per domain (not per mode), so they
// survive a paging-mode switch; each mode mirrors them in its own format (EPT sa_p2mt bits,
// shadow entry rights, stage-2 software bits).
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

    /// <summary>True for types whose guest writes the hardware must not let through.</summary>
    public static bool IsWriteProtected(P2mType t) => t is P2mType.RamRo or P2mType.RamLogDirty or P2mType.GrantMapRo;
}

/// <summary>
/// A domain's type overrides: RAM defaults to ram_rw, nothing to invalid, identity to
/// <see cref="IdentityType"/>: mmio_direct for a PV guest (its own p2m maps the frame 1:1 to
/// the host's), mmio_dm for an HVM guest (the hypervisor maps nothing there; the device
/// model emulates it).
/// </summary>
public sealed class P2mTypeMap
{
    private readonly Dictionary<ulong, P2mType> _overrides = new();

    /// <summary>The type identity (non-RAM) frames have.</summary>
    public P2mType IdentityType { get; init; } = P2mType.MmioDirect;

    public int Count => _overrides.Count;

    public P2mType Get(P2mTree tree, ulong gfn)
    {
        var kind = P2mTree.Classify(tree.Get(gfn));
        if (kind == P2mEntryKind.Missing) return P2mType.Invalid;
        if (kind == P2mEntryKind.Identity) return IdentityType;
        return _overrides.Count != 0 && _overrides.TryGetValue(gfn, out var t) ? t : P2mType.RamRw;
    }

    /// <summary>Sets the type of a RAM gfn; ram_rw removes the override.</summary>
    public void Set(ulong gfn, P2mType type)
    {
        if (type == P2mType.RamRw) _overrides.Remove(gfn);
        else _overrides[gfn] = type;
    }

    public void Forget(ulong gfn) => _overrides.Remove(gfn);

    public IEnumerable<KeyValuePair<ulong, P2mType>> Overrides => _overrides;
}
