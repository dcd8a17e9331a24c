// Every counter is declared once, with its description, like Xen's perfc_defn.h.
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
    GuestPageFault,
    KernelPtePages,
    KernelPteWrite,
    P2mSet,
    P2mIdentitySwitch,
    BalloonUp,
    BalloonDown,
    BalloonRefused,
}

public static class PerfCounterInfo
{
    public const int Count = (int)PerfCounter.BalloonRefused + 1;

    public static string Name(PerfCounter c) => Names[(int)c];
    public static string Description(PerfCounter c) => Descriptions[(int)c];

    private static readonly string[] Names =
    {
        "guest_phys_read", "guest_phys_write", "guest_phys_missing", "guest_phys_mmio",
        "guest_virt_read", "guest_virt_write",
        "page_walk", "page_walk_mem_ref", "accessed_bit_set", "dirty_bit_set",
        "tlb_hit", "tlb_miss", "tlb_dirty_rewalk", "tlb_flush_all", "tlb_flush_page",
        "guest_page_fault",
        "kernel_pt_pages", "kernel_pte_write",
        "p2m_set", "p2m_identity_switch",
        "balloon_up_pages", "balloon_down_pages", "balloon_refused",
    };

    private static readonly string[] Descriptions =
    {
        "guest-physical reads (cmdlet or walker), per page touched",
        "guest-physical writes, per page touched",
        "guest-physical accesses refused: the p2m entry is INVALID",
        "guest-physical accesses that hit an identity (MMIO) frame",
        "guest-virtual reads, per page touched",
        "guest-virtual writes, per page touched",
        "guest page-table walks performed",
        "page-table entries read by walks",
        "accessed bits set in guest entries by walks",
        "dirty bits set in guest leaf entries by walks",
        "translations served by a vCPU TLB",
        "translations that missed the TLB and walked",
        "writes that hit a TLB entry whose dirty bit was clear and so walked again",
        "full TLB flushes (CR3 load or flush-all), per vCPU",
        "single-page TLB invalidations (invlpg), per vCPU",
        "guest page faults raised (not present, protection, reserved bit)",
        "page-table pages the guest kernel has allocated",
        "page-table entries the guest kernel wrote",
        "p2m entries set (populate, balloon, framebuffer)",
        "identity ranges installed in the p2m",
        "pages populated by the balloon",
        "pages released by the balloon",
        "balloon requests refused (BUG_ON in the guest's balloon driver)",
    };

    static PerfCounterInfo()
    {
        if (Names.Length != Count || Descriptions.Length != Count)
            throw new InvalidOperationException("PerfCounter tables are out of step with the enum.");
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
