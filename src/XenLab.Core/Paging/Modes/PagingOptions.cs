// Switches for every optimisation and strategy a mode has (Xen's SHOPT_* idea): each can be
// turned off on its own so a lab can measure what it buys. Defaults follow what Xen merged.
using System;
using System.Collections.Generic;
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

/// <summary>How shadow mode finds the writable mappings of a page it must write-protect.</summary>
public enum ShadowWriteRemoval
{
    /// <summary>Xen's way: an out-of-sync page's fix-ups first, then a guess from the Linux direct map, then a brute-force scan of every L1 shadow.</summary>
    Xen,
    /// <summary>A reverse map from each gfn to the shadow entries mapping it (what a lab compares the fix-ups with).</summary>
    Rmap,
}

/// <summary>How HAP notices the first write to a ram_logdirty page (issue 11).</summary>
public enum HapLogDirty
{
    /// <summary>Page Modification Logging: the leaf stays writable with its EPT D bit clear; the CPU logs the gfn in a 512-entry per-vCPU buffer and exits only when it is full (Xen's default where the CPU has PML).</summary>
    Pml,
    /// <summary>Write protection: the leaf is read-only and each first write takes an EPT violation.</summary>
    Wp,
}

public sealed record PagingOptions
{
    public const int DefaultOosSlots = 3;          // SHADOW_OOS_PAGES, a prime
    public const int DefaultGpaCacheEntries = 32;

    public OosMode Oos { get; init; } = OosMode.Snapshot;
    public int OosSlots { get; init; } = DefaultOosSlots;
    /// <summary>Prefetch neighbouring shadow L1 entries on a fault (SHOPT_PREFETCH).</summary>
    public bool ShadowPrefetch { get; init; } = true;
    /// <summary>How write access is removed from a page (shadow_write_removal).</summary>
    public ShadowWriteRemoval ShadowWriteRemoval { get; init; } = ShadowWriteRemoval.Xen;
    /// <summary>Entries of each vCPU's nested-walk (guest-physical) cache in HAP mode; 0 = none.</summary>
    public int HapGpaCacheEntries { get; init; } = DefaultGpaCacheEntries;
    public ArmLeafLookup ArmLeafLookup { get; init; } = ArmLeafLookup.Walk;
    /// <summary>HAP's log-dirty mechanism: PML (as Xen on hardware that has it) or write protection.</summary>
    public HapLogDirty HapLogDirty { get; init; } = HapLogDirty.Pml;
    /// <summary>Map RAM with EPT superpages where gfns and frames allow (as Xen does); off = 4 KiB leaves only.</summary>
    public bool HapSuperpages { get; init; } = true;
    /// <summary>With <see cref="HapSuperpages"/>: 1 GiB leaves too where a whole aligned GiB allows (hap_superpages: on), or 2 MiB only (2m).</summary>
    public bool HapSuperpages1G { get; init; } = true;
    /// <summary>The hap_superpages value: on (1 GiB and 2 MiB leaves), 2m (2 MiB only) or off (4 KiB only).</summary>
    public string HapSuperpageText => !HapSuperpages ? "off" : HapSuperpages1G ? "on" : "2m";

    public static readonly PagingOptions Default = new();

    /// <summary>Every out-of-range switch, whatever the mode (a switch stores all of them).</summary>
    public List<string> Problems()
    {
        var p = new List<string>();
        if (OosSlots < 2 || OosSlots > 64) p.Add($"oos_slots {OosSlots} must be between 2 and 64 (with one slot oos_hash_add punts a page into its own slot and resyncs the new page against the old one's snapshot)");
        int gc = HapGpaCacheEntries;
        if (gc < 0 || gc > 4096 || (gc & (gc - 1)) != 0) p.Add($"hap_gpa_cache {gc} must be 0 or a power of two up to 4096");
        if (!Enum.IsDefined(Oos)) p.Add($"oos {(int)Oos} is not a known setting");
        if (!Enum.IsDefined(ShadowWriteRemoval)) p.Add($"shadow_write_removal {(int)ShadowWriteRemoval} is not a known setting");
        if (!Enum.IsDefined(HapLogDirty)) p.Add($"hap_logdirty {(int)HapLogDirty} is not a known setting");
        if (!Enum.IsDefined(ArmLeafLookup)) p.Add($"arm_leaf_lookup {(int)ArmLeafLookup} is not a known setting");
        return p;
    }

    public string Describe(PagingModeKind kind) => kind switch
    {
        PagingModeKind.Shadow => $"oos={Oos.ToString().ToLowerInvariant()} slots={OosSlots} prefetch={(ShadowPrefetch ? "on" : "off")}"
            + (ShadowWriteRemoval == ShadowWriteRemoval.Xen ? "" : " write_removal=rmap"),
        PagingModeKind.Hap => (HapLogDirty == HapLogDirty.Pml ? $"gpa_cache={HapGpaCacheEntries}" : $"gpa_cache={HapGpaCacheEntries} logdirty=wp")
            + (HapSuperpages && HapSuperpages1G ? "" : " superpages=" + HapSuperpageText),
        _ => $"leaf_lookup={ArmLeafLookup.ToString().ToLowerInvariant()}",
    };
}
