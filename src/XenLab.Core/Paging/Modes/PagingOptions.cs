// Switches for every optimisation and strategy a mode has (Xen's SHOPT_* idea): each can be
// turned off on its own so a lab can measure what it buys. Defaults follow what Xen merged.
using XenLab.Config;

namespace XenLab.Paging.Modes;

/// <summary>Out-of-sync L1 shadows (seed 001).</summary>
public enum OosMode
{
    /// <summary>Every guest write to a shadowed L1 table traps and is emulated.</summary>
    Off,
    /// <summary>L1 tables go out of sync; a resync revalidates every entry (before the 2008 snapshot patch).</summary>
    NoSnapshot,
    /// <summary>L1 tables go out of sync with a snapshot; a resync re-propagates only changed entries.</summary>
    Snapshot,
}

/// <summary>How the ARM stage-2 fault handler finds the leaf entry of a faulting address (seed 002).</summary>
public enum ArmLeafLookup
{
    /// <summary>Walk the p2m from the root, mapping each level's table page on demand.</summary>
    Walk,
    /// <summary>Read it through the virtual-linear page table window.</summary>
    Vlpt,
}

public sealed record PagingOptions
{
    public const int DefaultOosSlots = 3;          // SHADOW_OOS_PAGES, a prime
    public const int DefaultGpaCacheEntries = 32;

    public OosMode Oos { get; init; } = OosMode.Snapshot;
    public int OosSlots { get; init; } = DefaultOosSlots;
    /// <summary>Prefetch neighbouring shadow L1 entries on a fault (SHOPT_PREFETCH).</summary>
    public bool ShadowPrefetch { get; init; } = true;
    /// <summary>Entries of each vCPU's nested-walk (guest-physical) cache in HAP mode; 0 = none.</summary>
    public int HapGpaCacheEntries { get; init; } = DefaultGpaCacheEntries;
    public ArmLeafLookup ArmLeafLookup { get; init; } = ArmLeafLookup.Walk;

    public static readonly PagingOptions Default = new();

    public string Describe(PagingModeKind kind) => kind switch
    {
        PagingModeKind.Shadow => $"oos={Oos.ToString().ToLowerInvariant()} slots={OosSlots} prefetch={(ShadowPrefetch ? "on" : "off")}",
        PagingModeKind.Hap => $"gpa_cache={HapGpaCacheEntries}",
        _ => $"leaf_lookup={ArmLeafLookup.ToString().ToLowerInvariant()}",
    };
}
