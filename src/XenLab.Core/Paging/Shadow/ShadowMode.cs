// Shadow paging (seeds 001, 003; Xen's shadow/common.c and multi.c): the hypervisor builds
// x86 shadow tables from the guest's own, on demand, in a bounded pool, and the "CPU" walks
// only the shadows. Guest page-table pages are write-protected: a guest write to one traps
// and is emulated, then the shadow entry is revalidated. A hardware fault in the shadows is
// either fixed by the hypervisor (propagation, counted shadow_fault_fixed) or is a real guest
// fault re-injected (shadow_fault_guest). Guest accessed/dirty bits are maintained by the
// hypervisor's guest walk; a shadow L1 entry is present only once the guest's A is set and
// writable only once its D is set, so hardware sets A/D in the shadow and the guest's stay exact.
// Out-of-sync L1 shadows and their snapshots live in ShadowMode.Oos.cs; the audit in ShadowMode.Audit.cs.
using System;
using System.Collections.Generic;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Memory;
using XenLab.P2m;
using XenLab.Paging.Modes;

namespace XenLab.Paging.Shadow;

public sealed partial class ShadowMode : IPagingMode
{
    /// <summary>Software bit (AVL, bit 9) marking a shadow L1 entry for device memory.</summary>
    public const ulong ShadowMmio = 1UL << 9;
    /// <summary>Xen's PREFETCH_DISTANCE: entries looked at around a fault.</summary>
    public const int PrefetchDistance = 32;
    private const ulong UpperRights = X86Pte.Present | X86Pte.Writable | X86Pte.User | X86Pte.NoExecute;

    private readonly PagingOptions _options;
    private Domain _domain = null!;
    private MachineMemory _machine = null!;
    private PerfCounters _counters = null!;
    private ShadowPool _pool = null!;
    private readonly Dictionary<(ulong Gfn, ShadowType Type), ShadowPage> _shadows = new();
    private readonly Dictionary<ulong, ShadowPage> _bySmfn = new();
    /// <summary>Per guest gfn: bit (1 &lt;&lt; level) for each level it is shadowed at (a guest page table).</summary>
    private readonly Dictionary<ulong, int> _levelsOf = new();
    /// <summary>Reverse map: every present shadow L1/FL1 entry that maps a gfn.</summary>
    private readonly Dictionary<ulong, List<(ShadowPage Page, int Index)>> _rmap = new();
    private ShadowPage?[] _top = Array.Empty<ShadowPage?>();
    private long _clock;

    public ShadowMode(PagingOptions options)
    {
        // With one slot oos_hash_add punts the occupant into the same slot, then crushes the new
        // page against the old page's snapshot: refused rather than reproduced.
        if (options.OosSlots < 2 || options.OosSlots > 64)
            throw new InvalidConfigurationException($"oos_slots {options.OosSlots} must be between 2 and 64: with one slot oos_hash_add would punt a page into its own slot.");
        _options = options;
    }

    public PagingModeKind Kind => PagingModeKind.Shadow;
    public IGuestPageTableFormat GuestFormat => X86GuestFormat.Instance;
    public string Options => _options.Describe(Kind);
    public ulong FramesHeld => (ulong)(_pool?.Total ?? 0);
    public PagingOptions Settings => _options;
    public int PoolFree => _pool.Free;
    public int PoolTotal => _pool.Total;
    public int ShadowCount => _shadows.Count;

    // ---- life cycle ---------------------------------------------------------------------

    public void Attach(Domain domain)
    {
        _domain = domain;
        _machine = domain.Machine;
        _counters = domain.Counters;
        ulong mib = domain.Config.EffectiveShadowMemoryMiB;
        if (mib > DomainConfig.MaxShadowMemoryMiB)
            throw new InvalidConfigurationException($"shadow_memory of {mib} MiB exceeds the {DomainConfig.MaxShadowMemoryMiB} MiB limit.") { ConfigKey = "shadow_memory" };
        int frames = (int)(mib << 8);
        int snapshots = _options.Oos == OosMode.Snapshot ? domain.Vcpus.Count * _options.OosSlots : 0;
        int minimum = snapshots + 16;
        if (frames < minimum)
            throw new InvalidConfigurationException(
                $"shadow_memory of {domain.Config.EffectiveShadowMemoryMiB} MiB ({frames} pages) is too small: {domain.Vcpus.Count} vCPU(s) need {snapshots} snapshot page(s) plus at least 16 for shadows.");
        _pool = new ShadowPool(_machine, frames);
        _top = new ShadowPage?[domain.Vcpus.Count];
        InitOos(domain.Vcpus.Count);
        foreach (var v in domain.Vcpus) EnsureTop(v);
    }

    public void Detach()
    {
        _vramPages.Clear();
        _backLinks.Clear();
        _shadows.Clear();
        _bySmfn.Clear();
        _levelsOf.Clear();
        _rmap.Clear();
        Array.Clear(_top);
        ClearOos();
        _ldClean = Array.Empty<ulong>();
        _pool?.Dispose();
    }

    // ---- the CPU's walk of the shadows ------------------------------------------------------

    public Translation Translate(Vcpu v, ulong va, AccessKind access)
    {
        for (int attempt = 0; attempt < 4; attempt++)
        {
            var hw = HardwareWalk(v, va, access, null, explain: false);
            if (hw.IsOk) return hw;
            var handled = HandleFault(v, va, access);
            if (handled is { } final) return final;
        }
        throw new InvalidOperationException($"shadow fault at 0x{va:x} did not converge; the shadows are inconsistent (run the audit).");
    }

    /// <summary>
    /// The hardware walk over the shadow tables: CR3 is the vCPU's top-level shadow, the CPU
    /// runs with CR0.WP set whatever the guest's (supervisor writes to read-only guest pages are
    /// emulated), and sets A/D in the shadow entries it uses.
    /// </summary>
    private Translation HardwareWalk(Vcpu v, ulong va, AccessKind access, TranslationTrace? trace, bool explain)
    {
        var top = _top[v.Id];
        if (top is null) return Translation.Fault(TranslateStatus.PageFault, va, 0, PageFaultErrorCode.None, 0);
        if (!explain) top.LastUse = ++_clock;
        Span<ulong> addrs = stackalloc ulong[4];
        Span<ulong> ents = stackalloc ulong[4];
        ulong table = top.Smfn.Value;
        ulong rw = X86Pte.Writable, us = X86Pte.User, nx = 0;
        int refs = 0;
        for (int level = 4; level >= 1; level--)
        {
            int idx = X86Pte.IndexAt(va, level);
            ulong e = _machine.ReadUInt64(new Mfn(table), idx * 8);
            refs++;
            if (!explain) _counters.Inc(PerfCounter.ShadowWalkMemRef);
            trace?.Add(new WalkStep("shadow", level, "s" + X86Pte.LevelName(level), table, idx, (table << 12) + (ulong)idx * 8, e, Describe(e, level)));
            addrs[4 - level] = table;
            ents[4 - level] = e;
            if ((e & X86Pte.Present) == 0) return Translation.Fault(TranslateStatus.PageFault, va, 0, PageFaultErrorCode.None, refs);
            rw &= e;
            us &= e;
            nx |= e & X86Pte.NoExecute;
            table = (e & X86Pte.FrameMask) >> 12;
        }
        bool user = (access & AccessKind.User) != 0;
        if (((access & AccessKind.Write) != 0 && rw == 0) || (user && us == 0)
            || ((access & AccessKind.Fetch) != 0 && nx != 0))
            return Translation.Fault(TranslateStatus.PageFault, va, 0, PageFaultErrorCode.Present, refs);
        ulong leaf = ents[3];
        if (!explain)
        {
            for (int level = 4; level >= 1; level--)
            {
                ulong e = ents[4 - level];
                ulong want = e | X86Pte.Accessed;
                if (level == 1 && (access & AccessKind.Write) != 0) want |= X86Pte.Dirty;
                if (want == e) continue;
                _machine.WriteUInt64(new Mfn(addrs[4 - level]), X86Pte.IndexAt(va, level) * 8, want);
                if (level == 1) leaf = want;
            }
        }
        ulong rights = (rw | us | nx | (leaf & X86Pte.Dirty)) & (TlbRights.Writable | TlbRights.User | TlbRights.NoExecute | TlbRights.Dirty);
        if (rw != 0) rights |= TlbRights.HostWritable;
        if ((leaf & ShadowMmio) != 0) rights |= TlbRights.Mmio;
        var sl1 = _bySmfn[addrs[3]];
        ulong gfn = sl1.MappedGfn![X86Pte.IndexAt(va, 1)];
        return new Translation(TranslateStatus.Ok, va, gfn, (leaf & X86Pte.FrameMask) >> 12, rights, 12, PageFaultErrorCode.None, refs);
    }

    private static string Describe(ulong e, int level) =>
        (e & ShadowMmio) != 0 && level == 1 ? X86Pte.Describe(e & ~ShadowMmio, level) + " (mmio)" : X86Pte.Describe(e, level);

    // ---- the fault handler (sh_page_fault) -------------------------------------------------

    /// <summary>Returns a final translation (guest fault, emulation, p2m refusal) or null when fixed and worth retrying.</summary>
    private Translation? HandleFault(Vcpu v, ulong va, AccessKind access)
    {
        // 1. Walk the guest's tables as the guest's CPU would (this sets the guest's A/D bits).
        var acc = new P2mTableAccess(_domain);
        var gw = GuestWalker.Walk(ref acc, v.Cr3, v.WriteProtect, v.NoExecuteEnable, va, access);
        if (!gw.IsOk)
        {
            if (gw.Status == TranslateStatus.PageFault)
            {
                _counters.Inc(PerfCounter.ShadowFaultGuest);
                _domain.Trace.Add(TraceKind.GuestPageFault, v.Id, va, 0, 0, (ulong)gw.ErrorCode, "re-injected");
            }
            return gw;
        }
        if (!ReadGuestPath(v.Cr3, va, out var path)) return Translation.Fault(TranslateStatus.PhysicalMissing, va, 0, 0, 0);
        if (gw.PageShift == 30)
        {
            // Shadowed guests get no 1 GiB pages (Xen hides pdpe1gb): the PS bit is reserved here.
            _counters.Inc(PerfCounter.ShadowFaultGuest);
            return Translation.Fault(TranslateStatus.PageFault, va, 0, PageFaultErrorCode.Present | PageFaultErrorCode.ReservedBit | (PageFaultErrorCode)((uint)access & 6), 0);
        }
        bool write = (access & AccessKind.Write) != 0;
        ulong gfn = gw.Gfn;
        var kind = P2mTree.Classify(_domain.P2m.Get(gfn));
        if (kind is P2mEntryKind.Missing or P2mEntryKind.Foreign)
            return Translation.Fault(TranslateStatus.PhysicalMissing, va, gfn, PageFaultErrorCode.None, gw.MemoryReferences);
        if (write && kind == P2mEntryKind.Ram)
        {
            var type = _domain.GetP2mType(gfn);
            if (type == P2mType.RamRo) return Translation.Fault(TranslateStatus.P2mReadOnly, va, gfn, PageFaultErrorCode.None, 0);
            if (type == P2mType.RamLogDirty) _domain.OnLogDirtyWrite(gfn);
            // _sh_propagate with a demand write: paging_mark_dirty now, so the entry may be writable.
            if (MarkDirty(gfn)) _counters.Inc(PerfCounter.ShadowLogDirtyDemandWrite);
        }

        // 2. Make sure the pool can hold a full path, and the back-link pages its entries may
        // need (as shadow_prealloc reserves log-dirty's for an L1), then build it top-down.
        Prealloc(5, _options.ShadowPrefetch ? LinksPerFault : 1);
        var top = EnsureTop(v);
        if (top is null) return Translation.Fault(TranslateStatus.PhysicalMissing, va, v.Cr3 >> 12, 0, 0);
        var parent = top;
        bool resync = false;
        for (int level = 4; level >= 2; level--)
        {
            ulong ge = path.Entries[4 - level];
            bool super = level == 2 && (ge & X86Pte.PageSize) != 0;
            var child = super
                ? GetOrCreate((ge & X86Pte.FrameMask) >> 12 & ~511UL, ShadowType.FL1, v)
                : GetOrCreate((ge & X86Pte.FrameMask) >> 12, (ShadowType)(level - 1), v);
            int index = X86Pte.IndexAt(va, level);
            bool wasPresent = (_machine.ReadUInt64(parent.Smfn, index * 8) & X86Pte.Present) != 0;
            SetUpper(parent, index, PropagateUpper(ge, child));
            // shadow_get_and_create_l3e/l2e: linking an L3 or L2 shadow, new or existing, means
            // every out-of-sync page is resynced once the walk is built.
            if (level >= 3 && !wasPresent && (_machine.ReadUInt64(parent.Smfn, index * 8) & X86Pte.Present) != 0) resync = true;
            parent = child;
        }
        if (resync) ResyncAllFully();

        // 3. The leaf: unsync, emulate, or propagate.
        int l1idx = X86Pte.IndexAt(va, 1);
        ulong gl1e = parent.Type == ShadowType.FL1 ? Splinter(path.Entries[2], l1idx) : path.Entries[3];
        bool emulate = false;
        if (write && kind == P2mEntryKind.Ram && IsWriteProtectedTable(gfn))
        {
            if (CanUnsync(gfn)) Unsync(v, gfn, va);
            else emulate = true;
        }
        if (write && (gw.Rights & TlbRights.Writable) == 0) emulate = true;   // guest CR0.WP clear: allowed, not by hardware
        // The D-bit VRAM design's one equality test (seed 003) runs where this entry is made, in
        // VramOnMapped's range lookup: it needs the address and whether the guest maps it writable.
        _writableFaultVa = (gw.Rights & TlbRights.Writable) != 0 ? va & ~Page.OffsetMask : NoFaultVa;
        SetL1(parent, l1idx, PropagateL1(gl1e, gfn0: (gl1e & X86Pte.FrameMask) >> 12, demandWrite: write), gl1e);
        _writableFaultVa = NoFaultVa;
        if (parent.Type == ShadowType.L1) UpdateSnapshot(parent.Gfn, l1idx, gl1e);
        _counters.Inc(PerfCounter.ShadowPropagate);
        _counters.Inc(PerfCounter.ShadowFaultFixed);
        _domain.Trace.Add(TraceKind.ShadowFault, v.Id, va, gfn, parent.Smfn.Value, gl1e, emulate ? "emulate" : "propagated");
        if (_options.ShadowPrefetch) Prefetch(parent, l1idx, path.Entries[2]);
        if (emulate)
        {
            // Counted as shadow_emulate_write when the write itself goes through BeforeGuestWrite.
            _domain.Trace.Add(TraceKind.ShadowEmulate, v.Id, va, gfn, 0, 0, "write to a protected page");
            _domain.TryGetRam(gfn, out var mfn);
            ulong rights = gw.Rights & ~TlbRights.HostWritable | TlbRights.EmulateWrites;
            return new Translation(TranslateStatus.Ok, va, gfn, mfn.Value, rights, 12, PageFaultErrorCode.None, gw.MemoryReferences);
        }
        return null;
    }

    /// <summary>The 4 KiB entry a guest 2 MiB page implies for one of its 512 frames.</summary>
    private static ulong Splinter(ulong gl2e, int index) =>
        ((((gl2e & X86Pte.FrameMask) >> 12) & ~511UL) + (ulong)index) << 12 | (gl2e & ~X86Pte.FrameMask & ~X86Pte.PageSize & ~(1UL << 12));

    private struct GuestPath
    {
        public ulong[] Entries;       // level 4..1 (index 0 = L4)
        public ulong[] TableGfns;
    }

    private bool ReadGuestPath(ulong cr3, ulong va, out GuestPath path)
    {
        path = new GuestPath { Entries = new ulong[4], TableGfns = new ulong[4] };
        ulong table = cr3 & X86Pte.FrameMask;
        for (int level = 4; level >= 1; level--)
        {
            path.TableGfns[4 - level] = table >> 12;
            if (!_domain.TryReadPhysU64(table + (ulong)X86Pte.IndexAt(va, level) * 8, out ulong e)) return false;
            path.Entries[4 - level] = e;
            if (level == 2 && (e & X86Pte.PageSize) != 0) return true;
            table = e & X86Pte.FrameMask;
        }
        return true;
    }

    // ---- propagation (l1e_propagate_from_guest and friends) ---------------------------------

    /// <summary>A higher-level shadow entry pointing at <paramref name="child"/>, rights from the guest.</summary>
    private static ulong PropagateUpper(ulong ge, ShadowPage child)
    {
        // Until the guest's A is set the shadow must fault, so that the hypervisor sets it.
        if ((ge & X86Pte.Present) == 0 || (ge & X86Pte.Accessed) == 0) return 0;
        return (child.Smfn.Value << 12) | (ge & UpperRights) | X86Pte.Accessed;
    }

    /// <summary>
    /// The shadow L1 entry for guest entry <paramref name="gl1e"/> (l1e_propagate_from_guest).
    /// A mapping of a guest page table is read-only unless the page is out of sync and this is the
    /// demand write itself (_sh_propagate's ft_demand_write test): prefetch, validate and read
    /// faults never make one writable.
    /// </summary>
    private ulong PropagateL1(ulong gl1e, ulong gfn0, bool demandWrite = false)
    {
        if ((gl1e & X86Pte.Present) == 0 || (gl1e & X86Pte.Accessed) == 0) return 0;
        ulong gfn = gfn0;
        ulong e = P2mTree.Classify(_domain.P2m.Get(gfn)) switch
        {
            P2mEntryKind.Ram => _domain.P2m.Get(gfn) << 12,
            P2mEntryKind.Identity => (gfn << 12) | ShadowMmio,
            _ => ulong.MaxValue,
        };
        if (e == ulong.MaxValue) return 0;
        // D is not passed through (Xen's pass_thru_flags): the CPU sets it in the shadow on a real
        // write, which is what dirty-VRAM tracking reads and clears.
        e |= gl1e & (X86Pte.Present | X86Pte.Writable | X86Pte.User | X86Pte.NoExecute | X86Pte.Accessed);
        if ((gl1e & X86Pte.Dirty) == 0) e &= ~X86Pte.Writable;              // the first write must fault to set D
        if ((e & ShadowMmio) == 0)
        {
            if (_levelsOf.ContainsKey(gfn) && !(demandWrite && IsOutOfSync(gfn))) e &= ~X86Pte.Writable;   // guest page tables trap writes
            if (P2mTypeInfo.IsWriteProtected(_domain.GetP2mType(gfn))) e &= ~X86Pte.Writable;
            if (LogDirtyClean(gfn)) e &= ~X86Pte.Writable;                  // log-dirty: writable once dirty
            if (!demandWrite && _vramPages.Count != 0 && VramMainlineKeepsReadOnly(gfn)) e &= ~X86Pte.Writable;   // clean VRAM: writes must fault
        }
        return e;
    }

    /// <summary>A guest page table in sync: writes to it must trap.</summary>
    private bool IsWriteProtectedTable(ulong gfn) =>
        _levelsOf.TryGetValue(gfn, out int levels) && levels != 0 && !IsOutOfSync(gfn);

    /// <summary>
    /// sh_prefetch: up to PREFETCH_DISTANCE - 1 entries after the fault, no further than the end
    /// of the shadow page. It stops at the first shadow entry already there, and at a guest entry
    /// that would need another fault to set A or D anyway. An FL1 prefetches from the guest L2.
    /// </summary>
    private void Prefetch(ShadowPage l1, int faultIndex, ulong gl2e)
    {
        ulong guestTable = l1.Gfn << 12;
        int end = Math.Min(512, faultIndex + PrefetchDistance);
        for (int i = faultIndex + 1; i < end; i++)
        {
            if (_machine.ReadUInt64(l1.Smfn, i * 8) != 0) break;
            ulong ge;
            if (l1.Type == ShadowType.FL1) ge = Splinter(gl2e, i);
            else if (!_domain.TryReadPhysU64(guestTable + (ulong)i * 8, out ge)) break;
            if ((ge & X86Pte.Present) != 0
                && ((ge & X86Pte.Accessed) == 0 || ((ge & X86Pte.Writable) != 0 && (ge & X86Pte.Dirty) == 0)))
                break;
            ulong se = PropagateL1(ge, (ge & X86Pte.FrameMask) >> 12);
            SetL1(l1, i, se, ge);
            if (l1.Type == ShadowType.L1) UpdateSnapshot(l1.Gfn, i, ge);
            if (se != 0) _counters.Inc(PerfCounter.ShadowPrefetch);
        }
    }

    // ---- writing shadow entries --------------------------------------------------------------

    private void SetUpper(ShadowPage parent, int index, ulong entry)
    {
        ulong old = _machine.ReadUInt64(parent.Smfn, index * 8);
        if ((old & ~(X86Pte.Accessed | X86Pte.Dirty)) == (entry & ~(X86Pte.Accessed | X86Pte.Dirty)) && (old & X86Pte.Present) == (entry & X86Pte.Present))
            return;
        if ((entry & X86Pte.Present) != 0)
        {
            var child = _bySmfn[(entry & X86Pte.FrameMask) >> 12];
            // shadow_set_l2e: an out-of-sync L1 is resynced before its shadow is linked.
            if (child.Type == ShadowType.L1 && IsOutOfSync(child.Gfn)) ResyncPage(child.Gfn);
            child.RefCount++;
            child.Up = parent;                             // sh_get_ref records the last linker
        }
        _machine.WriteUInt64(parent.Smfn, index * 8, entry);
        if ((old & X86Pte.Present) != 0)
        {
            var oldChild = _bySmfn[(old & X86Pte.FrameMask) >> 12];
            if (ReferenceEquals(oldChild.Up, parent)) oldChild.Up = null;
            if (--oldChild.RefCount == 0 && !oldChild.Pinned) Destroy(oldChild);
            _domain.FlushAllTlbs();                        // SHADOW_SET_FLUSH
        }
    }

    /// <summary>Writes an L1/FL1 shadow entry, keeping the reverse map; never flushes (shadow_set_l1e).</summary>
    private void SetL1(ShadowPage l1, int index, ulong entry, ulong guestEntry)
    {
        ulong old = _machine.ReadUInt64(l1.Smfn, index * 8);
        if (old == entry) return;
        bool oldPresent = (old & X86Pte.Present) != 0, newPresent = (entry & X86Pte.Present) != 0;
        if (oldPresent)
        {
            RmapRemove(l1.MappedGfn![index], l1, index);
            if (_vramPages.Count != 0) VramOnUnmapped(l1.MappedGfn[index], l1, index, old);
        }
        _machine.WriteUInt64(l1.Smfn, index * 8, entry);
        if (newPresent)
        {
            ulong gfn = l1.Type == ShadowType.FL1 ? l1.Gfn + (ulong)index : (guestEntry & X86Pte.FrameMask) >> 12;
            l1.MappedGfn![index] = gfn;
            RmapAdd(gfn, l1, index);
            // shadow_set_l1e: a writable mapping of an out-of-sync page is remembered as a fix-up.
            if ((entry & X86Pte.Writable) != 0 && _oosPages.Count != 0 && IsOutOfSync(gfn)) FixupAdd(gfn, l1, index);
            if (_vramPages.Count != 0) VramOnMapped(gfn, l1, index, entry);
        }
        // No flush here (Xen's shadow_set_l1e): the entry maps the frame the guest entry names, so
        // a stale TLB entry is the guest's to invlpg, as on hardware. Callers that take rights away
        // for the hypervisor's own reasons (write protection, p2m changes, unshadowing) flush.
    }

    private void RmapAdd(ulong gfn, ShadowPage l1, int index)
    {
        if (!_rmap.TryGetValue(gfn, out var list)) _rmap[gfn] = list = new List<(ShadowPage, int)>(2);
        list.Add((l1, index));
    }

    private void RmapRemove(ulong gfn, ShadowPage l1, int index)
    {
        if (!_rmap.TryGetValue(gfn, out var list)) return;
        for (int i = 0; i < list.Count; i++)
            if (ReferenceEquals(list[i].Page, l1) && list[i].Index == index)
            {
                list[i] = list[^1];
                list.RemoveAt(list.Count - 1);
                break;
            }
        if (list.Count == 0) _rmap.Remove(gfn);
    }

    // ---- creating and destroying shadows -----------------------------------------------------

    private ShadowPage? EnsureTop(Vcpu v)
    {
        ulong gfn = v.Cr3 >> 12;
        var current = _top[v.Id];
        if (current is not null && current.Gfn == gfn && _shadows.ContainsKey((gfn, ShadowType.L4))) return current;
        if (_domain.Classify(gfn) != PhysAccessStatus.Ok) { _top[v.Id] = null; return null; }
        Prealloc(1);
        var top = GetOrCreate(gfn, ShadowType.L4, v);
        top.Pinned = true;
        top.LastUse = ++_clock;
        _top[v.Id] = top;
        return top;
    }

    private ShadowPage GetOrCreate(ulong gfn, ShadowType type, Vcpu v)
    {
        if (_shadows.TryGetValue((gfn, type), out var sp)) return sp;
        if (type != ShadowType.FL1)
        {
            // shadow_promote: a page out of sync as an L1 comes back before it is shadowed as anything
            // else. (Resyncing all on an L2/L3 happens when one is linked, not when it is made.)
            if (IsOutOfSync(gfn)) ResyncPage(gfn);
        }
        if (!_pool.TryAllocate(out var smfn))
        {
            Prealloc(1);
            if (!_pool.TryAllocate(out smfn))
                throw new InvalidOperationException("shadow pool exhausted after recycling; shadow_memory is too small for one walk.");
        }
        sp = new ShadowPage(smfn, type, gfn) { LastUse = ++_clock, Frame = _machine.MaterialisedFrame(smfn.Value)! };
        _shadows[(gfn, type)] = sp;
        _bySmfn[smfn.Value] = sp;
        _counters.Inc(PerfCounter.ShadowAlloc);
        if (type != ShadowType.FL1)
        {
            _levelsOf[gfn] = (_levelsOf.TryGetValue(gfn, out int l) ? l : 0) | (1 << (int)type);
            RemoveWriteAccess(gfn, v.Id);                 // promote: the guest table is now protected
        }
        return sp;
    }

    /// <summary>Frees a shadow and, recursively, children no longer referenced.</summary>
    private void Destroy(ShadowPage sp)
    {
        if (!_shadows.Remove((sp.Gfn, sp.Type))) return;
        _bySmfn.Remove(sp.Smfn.Value);
        for (int v = 0; v < _top.Length; v++) if (ReferenceEquals(_top[v], sp)) _top[v] = null;
        if (sp.Type is ShadowType.L1 or ShadowType.FL1)
        {
            for (int i = 0; i < 512; i++)
            {
                ulong e = _machine.ReadUInt64(sp.Smfn, i * 8);
                if ((e & X86Pte.Present) == 0) continue;
                RmapRemove(sp.MappedGfn![i], sp, i);
                if (_vramPages.Count != 0) VramOnUnmapped(sp.MappedGfn[i], sp, i, e);
            }
            if (sp.Type == ShadowType.L1 && IsOutOfSync(sp.Gfn)) DropOutOfSync(sp.Gfn);
        }
        else
        {
            for (int i = 0; i < 512; i++)
            {
                ulong e = _machine.ReadUInt64(sp.Smfn, i * 8);
                if ((e & X86Pte.Present) == 0) continue;
                _machine.WriteUInt64(sp.Smfn, i * 8, 0);
                if (!_bySmfn.TryGetValue((e & X86Pte.FrameMask) >> 12, out var child)) continue;
                if (ReferenceEquals(child.Up, sp)) child.Up = null;
                if (--child.RefCount == 0 && !child.Pinned) Destroy(child);
            }
        }
        if (sp.Type != ShadowType.FL1 && _levelsOf.TryGetValue(sp.Gfn, out int levels))
        {
            levels &= ~(1 << (int)sp.Type);
            if (levels == 0) _levelsOf.Remove(sp.Gfn); else _levelsOf[sp.Gfn] = levels;
        }
        _pool.Release(sp.Smfn);
        _counters.Inc(PerfCounter.ShadowFree);
    }

    /// <summary>
    /// shadow_prealloc: make room for <paramref name="pages"/> by unpinning LRU tops, then by
    /// blowing everything. A walk that may write <paramref name="newLinks"/> L1 entries of tracked
    /// VRAM also makes room for the back-link pages they may need (VramLinkHeadroom), so that
    /// SetL1, where nothing may be recycled, finds a free frame.
    /// </summary>
    private void Prealloc(int pages, int newLinks = 0)
    {
        while (_pool.Free < pages + (newLinks != 0 ? VramLinkHeadroom(pages, newLinks) : 0))
        {
            if (RecycleLruTop(_pool.Free < pages ? "unpin LRU top" : "unpin LRU top: room for a vram back-link page")) continue;
            BlowTables();
            return;
        }
    }

    /// <summary>_shadow_prealloc's first stage, one top at a time: unpin the least recently used top no vCPU runs on. False when there is none.</summary>
    private bool RecycleLruTop(string why)
    {
        ShadowPage? victim = null;
        foreach (var sp in _shadows.Values)
        {
            if (sp.Type != ShadowType.L4 || !sp.Pinned || InUse(sp)) continue;
            if (victim is null || sp.LastUse < victim.LastUse) victim = sp;
        }
        if (victim is null) return false;
        victim.Pinned = false;
        _counters.Inc(PerfCounter.ShadowRecycle);
        _domain.Trace.Add(TraceKind.ShadowRecycle, -1, 0, victim.Gfn, victim.Smfn.Value, 0, why);
        if (victim.RefCount == 0) Destroy(victim);
        _domain.FlushAllTlbs();
        return true;
    }

    private bool InUse(ShadowPage sp)
    {
        foreach (var t in _top) if (ReferenceEquals(t, sp)) return true;
        return false;
    }

    /// <summary>shadow_blow_tables: throw every shadow away; tops are rebuilt on the next access.</summary>
    public void BlowTables() => BlowTables("pool exhausted");

    private void BlowTables(string why)
    {
        _counters.Inc(PerfCounter.ShadowBlowTables);
        _domain.Trace.Add(TraceKind.ShadowBlowTables, -1, 0, 0, 0, (ulong)_shadows.Count, why);
        ResyncAllFully();
        foreach (var sp in new List<ShadowPage>(_shadows.Values))
        {
            sp.Pinned = false;
            Destroy(sp);
        }
        Array.Clear(_top);
        _domain.FlushAllTlbs();
    }

    // ---- guest events -----------------------------------------------------------------------

    public void FlushTlbs() => _domain.FlushAllTlbs();

    public void OnCr3Load(Vcpu v)
    {
        // sh_update_cr3: this vCPU's out-of-sync pages are resynced first; once the new tables are
        // in, the others' are updated in place unless the new tables cannot reach them.
        ResyncCurrentVcpu(v);
        EnsureTop(v);
        SyncOtherVcpus(v);
    }

    /// <summary>
    /// sh_invlpg: the vCPU has already dropped its TLB entry. Only an out-of-sync L1 has its
    /// shadow entry zapped (the guest may have changed the entry without a trap); a splintered
    /// superpage (FL1) flushes the vCPU's whole TLB; an in-sync L1 needs nothing more, its
    /// shadow entry already follows the guest's.
    /// </summary>
    public void OnInvlpg(Vcpu v, ulong va)
    {
        _counters.Inc(PerfCounter.ShadowInvlpg);
        var top = _top[v.Id];
        if (top is null) return;
        ulong table = top.Smfn.Value;
        for (int level = 4; level >= 2; level--)
        {
            ulong e = _machine.ReadUInt64(new Mfn(table), X86Pte.IndexAt(va, level) * 8);
            if ((e & X86Pte.Present) == 0) return;
            table = (e & X86Pte.FrameMask) >> 12;
        }
        var l1 = _bySmfn[table];
        if (l1.Type == ShadowType.FL1)
        {
            _counters.Inc(PerfCounter.ShadowInvlpgFl1Flush);
            v.FlushTlbInOperation();                      // sh_flush_local
            return;
        }
        if (!IsOutOfSync(l1.Gfn)) return;
        int idx = X86Pte.IndexAt(va, 1);
        if ((_machine.ReadUInt64(l1.Smfn, idx * 8) & X86Pte.Present) == 0) return;
        SetL1(l1, idx, 0, 0);
        _counters.Inc(PerfCounter.ShadowInvlpgZap);
    }

    public GuestWriteAction BeforeGuestWrite(ulong gfn, Vcpu? writer)
    {
        var type = _domain.GetP2mType(gfn);
        if (type == P2mType.RamRo) return GuestWriteAction.Discard;
        if (type == P2mType.RamLogDirty) _domain.OnLogDirtyWrite(gfn);
        MarkDirty(gfn);                                   // emulated or hypervisor write: paging_mark_dirty
        if (!IsWriteProtectedTable(gfn)) return GuestWriteAction.Direct;
        if (writer is not null && CanUnsync(gfn))
        {
            // A vCPU's write to a protected L1 through its direct map is a write fault like any other.
            _counters.Inc(PerfCounter.ShadowFaultFixed);
            Unsync(writer, gfn, 0);
            return GuestWriteAction.Direct;
        }
        _counters.Inc(PerfCounter.ShadowEmulateWrite);
        return GuestWriteAction.Validate;
    }

    /// <summary>sh_validate_guest_entry: every shadow of the written page revalidates the entries written.</summary>
    public void AfterGuestWrite(ulong gfn, int offset, int length)
    {
        if (!_levelsOf.TryGetValue(gfn, out int levels)) return;
        int first = offset / 8, last = (offset + length - 1) / 8;
        if ((levels & (1 << (int)ShadowType.L1)) != 0 && _backLinks.Count != 0)
        {
            // Revalidated L1 entries may link VRAM: room for link pages is made now, before any
            // shadow is looked at, as the fault handler does before its walk.
            Prealloc(0, last - first + 1);
            if (!_levelsOf.TryGetValue(gfn, out levels)) return;
        }
        for (int level = 1; level <= 4; level++)
        {
            if ((levels & (1 << level)) == 0 || !_shadows.TryGetValue((gfn, (ShadowType)level), out var sp)) continue;
            for (int i = first; i <= last; i++) Validate(sp, i);
        }
    }

    /// <summary>Recomputes one shadow entry from the guest entry (no new shadows are made here).</summary>
    private void Validate(ShadowPage sp, int index)
    {
        _domain.TryReadPhysU64((sp.Gfn << 12) + (ulong)index * 8, out ulong ge);
        _counters.Inc(PerfCounter.ShadowValidate);
        if (sp.Type == ShadowType.L1)
        {
            SetL1(sp, index, PropagateL1(ge, (ge & X86Pte.FrameMask) >> 12), ge);
            UpdateSnapshot(sp.Gfn, index, ge);
            return;
        }
        ulong entry = 0;
        if ((ge & X86Pte.Present) != 0)
        {
            bool super = sp.Type == ShadowType.L2 && (ge & X86Pte.PageSize) != 0;
            var key = super ? ((ge & X86Pte.FrameMask) >> 12 & ~511UL, ShadowType.FL1) : ((ge & X86Pte.FrameMask) >> 12, (ShadowType)((int)sp.Type - 1));
            if (_shadows.TryGetValue(key, out var child))
            {
                // validate_gl4e/gl3e: an existing L3/L2 shadow about to be linked resyncs everything.
                if (sp.Type is ShadowType.L4 or ShadowType.L3) ResyncAllFully();
                entry = PropagateUpper(ge, child);
            }
        }
        SetUpper(sp, index, entry);
    }

    /// <summary>p2m entries or types changed: every shadow L1 entry mapping those gfns is zapped (refaults re-propagate).</summary>
    public void OnP2mChanged(ulong startGfn, ulong endGfn, bool flush = true)
    {
        var hit = new List<(ShadowPage, int)>();
        if (endGfn - startGfn <= 4096)
        {
            for (ulong g = startGfn; g < endGfn; g++)
                if (_rmap.TryGetValue(g, out var list)) hit.AddRange(list);
        }
        else
        {
            foreach (var (g, list) in _rmap)
                if (g >= startGfn && g < endGfn) hit.AddRange(list);
        }
        foreach (var (page, index) in hit) SetL1(page, index, 0, 0);
        if (hit.Count > 0 && flush) _domain.FlushAllTlbs();
    }

    // ---- explain ------------------------------------------------------------------------------

    public Translation Explain(Vcpu v, ulong va, AccessKind access, TranslationTrace trace)
    {
        var acc = new P2mTableAccess(_domain, trace);
        var gw = GuestWalker.Walk(ref acc, v.Cr3, v.WriteProtect, v.NoExecuteEnable, va, access);
        if (!gw.IsOk)
        {
            trace.Note(gw.Status == TranslateStatus.PageFault
                ? $"guest fault (error code 0x{(uint)gw.ErrorCode:x}): the shadow fault handler re-injects it"
                : $"guest tables unreachable: {gw.Status}");
            return gw;
        }
        var hw = HardwareWalk(v, va, access, trace, explain: true);
        if (hw.IsOk)
        {
            trace.Note($"shadow hit: {hw.MemoryReferences} shadow entries read by the CPU, no guest table touched");
            return hw;
        }
        trace.Note("shadow fault: the hypervisor would walk the guest tables above, build the missing shadows and propagate the entry");
        _domain.TryGetRam(gw.Gfn, out var mfn);
        return gw with { Mfn = mfn.Value };
    }
}
