// A paging mode is a type behind this one interface (Xen's struct paging_mode): the domain
// holds one at a time and may switch at run time. The vCPU owns the TLB and asks the mode
// only on a miss; the mode owns whatever the hypervisor keeps (shadow tables, EPT, stage-2).
using System.Collections.Generic;
using XenLab.Config;
using XenLab.Domains;

namespace XenLab.Paging;

/// <summary>What the hypervisor does with a guest write that reaches a page by a physical path.</summary>
public enum GuestWriteAction
{
    /// <summary>Write straight into the frame.</summary>
    Direct,
    /// <summary>Write, then revalidate what the hypervisor derived from the page (a shadowed page table).</summary>
    Validate,
    /// <summary>The write is dropped (read-only p2m type).</summary>
    Discard,
}

public interface IPagingMode
{
    PagingModeKind Kind { get; }
    /// <summary>Format of the guest's own (stage-1) tables in this mode.</summary>
    IGuestPageTableFormat GuestFormat { get; }
    /// <summary>Options, for display ("oos=snapshot", "leaf lookup=vlpt").</summary>
    string Options { get; }

    /// <summary>Machine frames the mode holds for this domain (EPT or stage-2 tables, shadow pool).</summary>
    ulong FramesHeld { get; }

    /// <summary>Builds the mode's structures for <paramref name="domain"/>'s current memory and tables.</summary>
    void Attach(Domain domain);
    /// <summary>Releases everything the mode holds (pool frames, tables).</summary>
    void Detach();

    /// <summary>A TLB miss: translate as hardware plus hypervisor would, handling hypervisor faults.</summary>
    Translation Translate(Vcpu v, ulong va, AccessKind access);
    /// <summary>The same translation with every entry read, without filling any TLB.</summary>
    Translation Explain(Vcpu v, ulong va, AccessKind access, TranslationTrace trace);

    /// <summary>Flushes every vCPU's TLB and whatever walk caches the mode models (INVEPT under HAP).</summary>
    void FlushTlbs();

    void OnCr3Load(Vcpu v);
    void OnInvlpg(Vcpu v, ulong va);

    /// <summary>
    /// Called before the guest writes RAM page <paramref name="gfn"/> by a physical path (its direct
    /// map). <paramref name="writer"/> is the vCPU doing it, or null for a write from outside the
    /// guest's CPUs (a tool, a device model); shadow mode may let an L1 table go out of sync for a vCPU.
    /// </summary>
    GuestWriteAction BeforeGuestWrite(ulong gfn, Vcpu? writer);
    /// <summary>Called after a write for which <see cref="BeforeGuestWrite"/> said Validate.</summary>
    void AfterGuestWrite(ulong gfn, int offset, int length);
    /// <summary>
    /// The domain's pfn -> mfn entries or types in [start, end) may have changed (balloon, identity,
    /// framebuffer, type change). With <paramref name="flush"/> false the mode updates its entries
    /// but leaves TLBs and walk caches as they are (the teaching switch that loses writes).
    /// </summary>
    void OnP2mChanged(ulong startGfn, ulong endGfn, bool flush = true);

    /// <summary>A mode-specific dirty-VRAM strategy (shadow's back-links or D bits), or null if this mode has none of that kind. Strategies keep no state of their own: DirtyVram makes one per kind and mode instance.</summary>
    XenLab.Dirty.IVramStrategy? CreateVramStrategy(XenLab.Dirty.VramStrategy kind);

    /// <summary>How this mode notices first writes (log-dirty, type-based dirty VRAM).</summary>
    XenLab.Dirty.IDirtyTracker DirtyTracker { get; }

    /// <summary>Checks every entry the mode keeps against the guest and the p2m; adds one line per problem.</summary>
    void Audit(List<string> problems);
}
