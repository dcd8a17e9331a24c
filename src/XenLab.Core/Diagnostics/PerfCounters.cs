// Every counter is declared once, with its name and description, like Xen's perfc_defn.h.
// Counters are plain longs indexed by enum: incrementing one costs an array store.
using System;

namespace XenLab.Diagnostics;

public enum PerfCounter
{
    GuestPhysRead,
    GuestPhysWrite,
    GuestPhysMissing,
    GuestPhysMmio,
    GuestVirtRead,
    GuestVirtWrite,
    PageWalk,
    PageWalkMemRef,
    AccessedBitSet,
    DirtyBitSet,
    TlbHit,
    TlbMiss,
    TlbDirtyRewalk,
    TlbFlushAll,
    TlbFlushPage,
    Cr3Load,
    GuestPageFault,
    KernelPtePages,
    KernelPteWrite,
    P2mSet,
    P2mIdentitySwitch,
    BalloonUp,
    BalloonDown,
    BalloonRefused,
    PagingModeSwitch,
    HapNestedWalk,
    HapNestedMemRef,
    HapGpaCacheHit,
    HapGpaCacheMiss,
    HapWalkMemRef,
    EptViolation,
    EptViolationMissing,
    EptViolationMmio,
    EptViolationRamRo,
    EptViolationLogDirty,
    EptPages,
    P2mTypeChange,
    InveptFlush,
    ShadowWalkMemRef,
    ShadowFaultFixed,
    ShadowFaultGuest,
    ShadowEmulateWrite,
    ShadowValidate,
    ShadowPropagate,
    ShadowPrefetch,
    ShadowAlloc,
    ShadowFree,
    ShadowRecycle,
    ShadowBlowTables,
    ShadowWriteProtect,
    ShadowInvlpgZap,
    OosUnsync,
    OosResync,
    OosEvict,
    OosLightResync,
    OosEntriesCompared,
    OosEntriesRepropagated,
    OosSnapshotUpdate,
    Stage2Abort,
    Stage2AbortTranslation,
    Stage2AbortPermission,
    Stage2AbortRamRo,
    Stage2AbortLogDirty,
    Stage2WalkMemRef,
    Stage2LeafWalk,
    Stage2LeafWalkMaps,
    Stage2LeafWalkMemRef,
    VlptLookup,
    VlptMemRef,
    VlptSlotWrite,
    VlptTlbFlush,
    ArmDirtyBitSet,
    Stage2Pages,
}

public static class PerfCounterInfo
{
    public static readonly int Count = Enum.GetValues<PerfCounter>().Length;

    public static string Name(PerfCounter c) => Table[(int)c].Name;
    public static string Description(PerfCounter c) => Table[(int)c].Description;

    // In enum order; the static constructor checks the two stay in step.
    private static readonly (string Name, string Description)[] Table =
    {
        ("guest_phys_read", "guest-physical reads (cmdlet or kernel), per page touched"),
        ("guest_phys_write", "guest-physical writes, per page touched"),
        ("guest_phys_missing", "guest-physical accesses refused: the p2m entry is INVALID"),
        ("guest_phys_mmio", "guest-physical accesses that hit an identity (MMIO) frame"),
        ("guest_virt_read", "guest-virtual reads, per page touched"),
        ("guest_virt_write", "guest-virtual writes, per page touched"),
        ("page_walk", "walks of the guest's own tables (by the CPU or the hypervisor)"),
        ("page_walk_mem_ref", "guest page-table entries read by those walks"),
        ("accessed_bit_set", "accessed bits set in guest entries"),
        ("dirty_bit_set", "dirty bits set in guest leaf entries"),
        ("tlb_hit", "translations served by a vCPU TLB"),
        ("tlb_miss", "translations that missed the TLB (or lacked rights) and went to the paging mode"),
        ("tlb_dirty_rewalk", "writes that hit a TLB entry whose dirty bit was clear and so walked again"),
        ("tlb_flush_all", "full TLB flushes, per vCPU"),
        ("tlb_flush_page", "single-page TLB invalidations (invlpg), per vCPU"),
        ("cr3_load", "CR3 loads"),
        ("guest_page_fault", "guest page faults raised (not present, protection, reserved bit)"),
        ("kernel_pt_pages", "page-table pages the guest kernel has allocated"),
        ("kernel_pte_write", "page-table entries the guest kernel wrote"),
        ("p2m_set", "p2m entries set (populate, balloon, framebuffer)"),
        ("p2m_identity_switch", "identity ranges installed in the p2m"),
        ("balloon_up_pages", "pages populated by the balloon"),
        ("balloon_down_pages", "pages released by the balloon"),
        ("balloon_refused", "balloon requests refused (BUG_ON in the guest's balloon driver)"),
        ("paging_mode_switch", "paging mode switches"),
        ("hap_nested_walk", "EPT walks of a guest-physical address (2D walk steps)"),
        ("hap_nested_mem_ref", "EPT entries read by nested walks"),
        ("hap_gpa_cache_hit", "guest-physical translations served by the nested-walk cache"),
        ("hap_gpa_cache_miss", "guest-physical translations that walked the EPT"),
        ("hap_walk_mem_ref", "memory references of whole 2D walks (guest + EPT)"),
        ("ept_violation", "EPT violations (all types)"),
        ("ept_violation_missing", "EPT violations on a gfn with no p2m entry"),
        ("ept_violation_mmio", "EPT violations that populated an mmio_direct entry on demand"),
        ("ept_violation_ram_ro", "EPT violations: write to ram_ro (discarded)"),
        ("ept_violation_logdirty", "EPT violations: first write to ram_logdirty (marked dirty, back to ram_rw)"),
        ("ept_pages", "EPT table pages allocated"),
        ("p2m_type_change", "p2m type changes"),
        ("invept", "nested-walk cache flushes (INVEPT)"),
        ("shadow_walk_mem_ref", "shadow entries read by the hardware walk"),
        ("shadow_fault_fixed", "shadow faults fixed by the hypervisor (propagated, retried)"),
        ("shadow_fault_guest", "shadow faults that were real guest faults (re-injected)"),
        ("shadow_emulate_write", "guest writes to write-protected page tables, emulated"),
        ("shadow_validate", "shadow entries revalidated from a changed guest entry"),
        ("shadow_propagate", "shadow entries propagated from guest entries on a fault"),
        ("shadow_prefetch", "shadow L1 entries prefetched around a fault"),
        ("shadow_alloc", "shadow pages allocated from the pool"),
        ("shadow_free", "shadow pages returned to the pool"),
        ("shadow_recycle", "top-level shadows unpinned and torn down to make room (LRU)"),
        ("shadow_blow_tables", "whole shadow tables blown away because the pool was still short"),
        ("shadow_write_protect", "shadow L1 entries made read-only to protect a guest page table"),
        ("shadow_invlpg_zap", "shadow L1 entries zapped by a guest invlpg"),
        ("oos_unsync", "guest L1 tables let go out of sync"),
        ("oos_resync", "out-of-sync pages pulled back into sync"),
        ("oos_evict", "out-of-sync pages evicted from a slot (resynced)"),
        ("oos_light_resync", "another vCPU's out-of-sync pages updated but left out of sync"),
        ("oos_entries_compared", "guest entries compared with their snapshot at resync"),
        ("oos_entries_repropagated", "entries re-propagated at resync (all of them without a snapshot)"),
        ("oos_snapshot_update", "snapshot entries updated by validate, fault propagation or prefetch"),
        ("stage2_abort", "stage-2 data aborts (all kinds)"),
        ("stage2_abort_translation", "stage-2 translation faults (no entry)"),
        ("stage2_abort_permission", "stage-2 permission faults (write to a write-protected leaf)"),
        ("stage2_abort_ram_ro", "stage-2 permission faults: write to ram_ro (discarded)"),
        ("stage2_abort_logdirty", "stage-2 permission faults: first write to ram_logdirty (back to ram_rw)"),
        ("stage2_walk_mem_ref", "stage-2 descriptors read by the hardware walk"),
        ("stage2_leaf_walk", "leaf lookups by walking the p2m (handler side)"),
        ("stage2_leaf_walk_maps", "p2m table pages mapped on demand by those walks"),
        ("stage2_leaf_walk_mem_ref", "p2m descriptors read by those walks"),
        ("vlpt_lookup", "leaf lookups through the virtual-linear page table"),
        ("vlpt_mem_ref", "descriptors read through the VLPT"),
        ("vlpt_slot_write", "hypervisor page-table slots written to (re)map the VLPT"),
        ("vlpt_tlb_flush", "hypervisor TLB maintenance for the VLPT window"),
        ("arm_dirty_bit_set", "stage-2 leaves marked dirty in their software (avail) bit"),
        ("stage2_pages", "stage-2 table pages allocated"),
    };

    static PerfCounterInfo()
    {
        if (Table.Length != Count)
            throw new InvalidOperationException("PerfCounter table is out of step with the enum.");
    }
}

/// <summary>A set of counters (one per domain).</summary>
public sealed class PerfCounters
{
    private readonly long[] _values = new long[PerfCounterInfo.Count];

    public long this[PerfCounter c] => _values[(int)c];

    public void Inc(PerfCounter c) => _values[(int)c]++;
    public void Add(PerfCounter c, long n) => _values[(int)c] += n;
    public void Reset() => Array.Clear(_values);
}
