// The virtual-linear page table window (seed 002): a fixed region of the hypervisor's own
// address space where domains' p2m leaf tables are slotted in, so the dirty-tracing fault
// handler reads the leaf for IPA x at an address it computes instead of walking the p2m.
//
// Layout, after Ian Campbell's design for Xen's 3-level LPAE tables: the window starts at
// 128 MiB (xen_second[64]); each xen_second entry ("slot") covers 2 MiB of VA and holds a
// domain's p2m *second-level* table as if it were a hypervisor third-level table, so the 512
// p2m third-level tables under it appear as the 512 pages of that 2 MiB: one slot per GiB of
// IPA, and the leaf for IPA x sits at slice base + (x >> 12) * 8. Superpage (second-level)
// entries are reached through a loop: the xen_second entry just after the window points at
// xen_second itself, so the p2m second-level table of slot k appears as one 4 KiB page there,
// and the entry for IPA x sits at the slice's second base + (x >> 21) * 8. The fault handler
// checks that one first to make sure the entry is not a block. The loop is written once; every
// slot written needs hypervisor TLB maintenance for its 2 MiB and for its alias page: counted
// as two VlptTlbFlush per slot write.
//
// Two layouts (VlptLayout): per-domain slices (the default, Jaeyong Yoo's answer, "allocating
// vlpt ... to each migrating domU"): a domain takes its own run of slots sized for its IPA range
// when it starts tracing (log-dirty enable, first dirty-VRAM query) and returns it when tracing
// stops, so nothing changes at context switch and any number of untraced domains coexist; the
// window bounds how many large domains can be traced at once; shared slots
// (Ian's first design): every domain's p2m goes in the same slots, rewritten on a context
// switch to or from a domain that is tracing with the VLPT. ContextSwitch counts what that costs.
// The window's lookups and upkeep also go through Tlb, a model of the hypervisor's own TLB: a
// slot write invalidates its 512 pages and its alias page by address, or (Invalidation =
// FullFlush) marks one full flush done when the operation ends (VlptExperiment measures both).
//
// The window is host-wide: every public method takes its lock (a leaf lock: nothing else is
// taken under it), so domains on different threads can allocate, map and look up at once.
using System;
using System.Collections.Generic;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Memory;

namespace XenLab.Paging.Arm;

public enum VlptLayout
{
    /// <summary>Each domain gets its own slice of the window; no work at context switch.</summary>
    PerDomainSlices,
    /// <summary>All domains share the window's slots; a context switch rewrites them.</summary>
    SharedSlots,
}

/// <summary>A domain's part of the window.</summary>
public sealed class VlptSlice
{
    internal VlptSlice(VlptWindow window, Domain domain, int firstSlot, int slots)
    {
        Window = window;
        Domain = domain;
        FirstSlot = firstSlot;
        Slots = slots;
        Wanted = new ulong[slots];
    }

    public VlptWindow Window { get; }
    public Domain Domain { get; }
    /// <summary>First slot, counted from the window's start.</summary>
    public int FirstSlot { get; }
    /// <summary>Slots (GiB of IPA) the slice covers.</summary>
    public int Slots { get; }
    public ulong Bytes => (ulong)Slots * VlptWindow.SlotBytes;
    /// <summary>VA of the leaf for IPA 0.</summary>
    public ulong LeafBase => Window.BaseVa + (ulong)FirstSlot * VlptWindow.SlotBytes;
    /// <summary>VA of the second-level entry for IPA 0 (through the loop).</summary>
    public ulong SecondBase => Window.LoopVa + (ulong)(Window.FirstXenSlot + FirstSlot) * Page.Size;
    public ulong LeafVa(ulong gfn) => LeafBase + gfn * 8;
    public ulong SecondVa(ulong gfn) => SecondBase + (gfn >> 9) * 8;
    public bool Covers(ulong gfn) => gfn < (ulong)Slots * VlptWindow.GfnsPerSlot;
    /// <summary>What each slot must hold for this domain: a descriptor of its p2m second-level table, or 0.</summary>
    internal ulong[] Wanted { get; }
    public override string ToString() =>
        $"{Domain.Name}: slots {FirstSlot}..{FirstSlot + Slots - 1}, {Bytes >> 20} MiB at 0x{LeafBase:x}, second level at 0x{SecondBase:x}";
}

/// <summary>
/// Starting to trace a domain needs a slice of the window and none is free in one piece. The
/// message names the window and the domains holding it; the domain is left as it was (not tracing).
/// </summary>
public sealed class VlptWindowFullException : XenLabException
{
    internal VlptWindowFullException(VlptWindow window, Domain domain, int slots)
        : base($"The VLPT window ({window.SizeBytes >> 20} MiB at 0x{window.BaseVa:x}, {window.SlotCount} slots of 2 MiB) has no room for domain '{domain.Name}' to start tracing: " +
               $"it needs {((ulong)slots * VlptWindow.SlotBytes) >> 20} MiB in one piece (p2m leaves for {slots} GiB of IPA), {window.LargestFreeBytes >> 20} MiB is free in one piece; " +
               $"{window.UsedBytes >> 20} MiB is held by {window.Holders()}. Tracing was not started; stop tracing another domain or use arm_leaf_lookup walk.")
    {
        DomainName = domain.Name;
        SlotsNeeded = slots;
    }

    public string DomainName { get; }
    public int SlotsNeeded { get; }
    public override string ErrorId => "VlptWindowFull";
}

/// <summary>The host-wide VLPT region and its slots (xen_second entries).</summary>
public sealed class VlptWindow
{
    public const ulong DefaultBytes = 128UL << 20;
    /// <summary>VA one xen_second entry covers, and the leaf-window share of one GiB of IPA.</summary>
    public const ulong SlotBytes = 2UL << 20;
    public const ulong GfnsPerSlot = 512UL * 512;
    /// <summary>Where the window starts in the hypervisor's address space (the thread's 128 MiB).</summary>
    public const ulong DefaultBaseVa = 128UL << 20;
    private const int XenSecondEntries = 512;      // xen_second covers 1 GiB of hypervisor VA

    // xen_second: the hypervisor's second-level table, LPAE descriptors. Entry LoopIndex points
    // back at xen_second itself (not a machine frame in this model, so its frame field is 0).
    private readonly ulong[] _xenSecond = new ulong[XenSecondEntries];
    private readonly MachineMemory _machine;
    private readonly Domain?[] _owner;              // per-domain layout: which domain holds each slot
    private readonly List<VlptSlice> _slices = new();
    private VlptSlice? _loaded;                     // shared layout: whose p2m the slots hold now
    private readonly object _gate = new();          // everything above

    public VlptWindow(MachineMemory machine, ulong sizeBytes = DefaultBytes, VlptLayout layout = VlptLayout.PerDomainSlices)
    {
        if (sizeBytes == 0 || sizeBytes % SlotBytes != 0)
            throw new InvalidConfigurationException($"VLPT window of {sizeBytes} bytes must be a non-zero multiple of 2 MiB (one slot).");
        ulong maxBytes = (XenSecondEntries - 1) * SlotBytes - DefaultBaseVa;
        if (sizeBytes > maxBytes)
            throw new InvalidConfigurationException($"VLPT window of {sizeBytes >> 20} MiB does not fit xen_second: at most {maxBytes >> 20} MiB above {DefaultBaseVa >> 20} MiB.");
        _machine = machine;
        SizeBytes = sizeBytes;
        Layout = layout;
        BaseVa = DefaultBaseVa;
        _owner = new Domain?[SlotCount];
        _xenSecond[LoopIndex] = Stage2Entry.TypeMask | Stage2Entry.AccessFlag;   // table -> xen_second itself
    }

    public ulong SizeBytes { get; }
    public VlptLayout Layout { get; }
    /// <summary>The hypervisor's own TLB (one pCPU), which the VLPT and walk lookups and the slots' maintenance go through.</summary>
    public HypervisorTlb Tlb { get; set; } = new();
    /// <summary>How a rewritten slot's TLB entries are removed: TLBI by VA per page, or one full flush per operation.</summary>
    public VlptInvalidation Invalidation { get; set; } = VlptInvalidation.ByAddress;
    private bool _flushPending;
    public ulong BaseVa { get; }
    public int SlotCount => (int)(SizeBytes / SlotBytes);
    public int FirstXenSlot => (int)(BaseVa / SlotBytes);
    /// <summary>The xen_second entry that loops back to xen_second (just after the window).</summary>
    public int LoopIndex => FirstXenSlot + SlotCount;
    public ulong LoopVa => (ulong)LoopIndex * SlotBytes;
    public IReadOnlyList<VlptSlice> Slices { get { lock (_gate) return _slices.ToArray(); } }
    /// <summary>Bytes of the window held by slices (per-domain layout); 0 for shared slots.</summary>
    public ulong UsedBytes
    {
        get
        {
            if (Layout == VlptLayout.SharedSlots) return 0;
            ulong n = 0;
            lock (_gate) foreach (var s in _slices) n += s.Bytes;
            return n;
        }
    }
    public ulong FreeBytes => SizeBytes - UsedBytes;
    /// <summary>Shared layout: the domain whose p2m the slots hold now.</summary>
    public Domain? LoadedDomain { get { lock (_gate) return _loaded?.Domain; } }
    /// <summary>Host-wide totals, for a lab comparing layouts.</summary>
    public long SlotWrites { get; private set; }
    public long TlbMaintenance { get; private set; }
    public long ContextSwitches { get; private set; }

    /// <summary>Slots a domain needs: one per GiB of IPA up to its highest RAM gfn, or up to <paramref name="endGfn"/> if that is higher (VRAM above RAM).</summary>
    public static int SlotsFor(Domain d, ulong endGfn = 0)
    {
        ulong top = endGfn;
        foreach (var e in d.E820.Entries)
            if (e.Type == E820.E820Type.Ram) top = Math.Max(top, e.End >> Page.Shift);
        return (int)Math.Max(1, (top + GfnsPerSlot - 1) / GfnsPerSlot);
    }

    /// <summary>The raw xen_second entry at <paramref name="index"/>, for display and audits.</summary>
    public ulong XenSecond(int index) { lock (_gate) return _xenSecond[index]; }

    /// <summary>Gives <paramref name="domain"/> a slice for <paramref name="slots"/> GiB of IPA; throws (changing nothing) if it does not fit.</summary>
    public VlptSlice Allocate(Domain domain, int slots)
    {
        lock (_gate) return AllocateLocked(domain, slots);
    }

    private VlptSlice AllocateLocked(Domain domain, int slots)
    {
        if (Layout == VlptLayout.SharedSlots)
        {
            if (slots > SlotCount)
                throw new InvalidConfigurationException(
                    $"The VLPT window is {SizeBytes >> 20} MiB ({SlotCount} slot(s)); domain '{domain.Name}' needs {((ulong)slots * SlotBytes) >> 20} MiB for the p2m leaves of {slots} GiB of IPA, more than the whole shared window.");
            var shared = new VlptSlice(this, domain, 0, slots);
            _slices.Add(shared);
            return shared;
        }
        int run = 0;
        for (int i = 0; i < SlotCount; i++)
        {
            run = _owner[i] is null ? run + 1 : 0;
            if (run < slots) continue;
            int first = i - slots + 1;
            for (int k = first; k <= i; k++) _owner[k] = domain;
            var slice = new VlptSlice(this, domain, first, slots);
            _slices.Add(slice);
            return slice;
        }
        throw new VlptWindowFullException(this, domain, slots);
    }

    /// <summary>Who holds the window now, for an error a user can act on: "big0 (slots 0..3), big1 (slots 4..7)".</summary>
    public string Holders()
    {
        if (_slices.Count == 0) return "nobody";
        var parts = new List<string>(_slices.Count);
        foreach (var s in _slices) parts.Add($"{s.Domain.Name} (slots {s.FirstSlot}..{s.FirstSlot + s.Slots - 1})");
        return string.Join(", ", parts);
    }

    /// <summary>The largest run of free slots, in bytes of window.</summary>
    public ulong LargestFreeBytes => (ulong)LargestFreeRun() * SlotBytes;

    private int LargestFreeRun()
    {
        int best = 0, run = 0;
        foreach (var o in _owner)
        {
            run = o is null ? run + 1 : 0;
            best = Math.Max(best, run);
        }
        return best;
    }

    /// <summary>Releases a slice, clearing its slots (per-domain) or unloading it (shared).</summary>
    public void Free(VlptSlice slice)
    {
        lock (_gate) FreeLocked(slice);
    }

    private void FreeLocked(VlptSlice slice)
    {
        if (!_slices.Remove(slice)) return;
        var counters = slice.Domain.Counters;
        if (Layout == VlptLayout.SharedSlots)
        {
            if (_loaded == slice) Unload(counters);
            return;
        }
        for (int k = 0; k < slice.Slots; k++)
        {
            WriteSlot(slice.FirstSlot + k, 0, counters, slice.Domain);
            _owner[slice.FirstSlot + k] = null;
        }
        CompleteMaintenance();
    }

    /// <summary>Slot <paramref name="k"/> of the slice should map the p2m second-level table <paramref name="table"/>.</summary>
    public void MapSlot(VlptSlice slice, int k, Mfn table)
    {
        lock (_gate) MapSlotLocked(slice, k, table);
    }

    private void MapSlotLocked(VlptSlice slice, int k, Mfn table)
    {
        ulong want = table.IsValid ? Stage2Entry.Table(table.Value) : 0;
        slice.Wanted[k] = want;
        if (Layout == VlptLayout.PerDomainSlices || _loaded == slice)
            WriteSlot(slice.FirstSlot + k, want, slice.Domain.Counters, slice.Domain);
        CompleteMaintenance();
    }

    /// <summary>Shared layout: makes the slots hold <paramref name="slice"/>'s p2m (a switch to its domain).</summary>
    public int EnsureLoaded(VlptSlice slice)
    {
        lock (_gate) return EnsureLoadedLocked(slice);
    }

    private int EnsureLoadedLocked(VlptSlice slice)
    {
        if (Layout == VlptLayout.PerDomainSlices || _loaded == slice) return 0;
        int writes = 0;
        for (int k = 0; k < SlotCount; k++)
        {
            ulong want = k < slice.Slots ? slice.Wanted[k] : 0;
            if (WriteSlot(k, want, slice.Domain.Counters, slice.Domain)) writes++;
        }
        _loaded = slice;
        CompleteMaintenance();
        return writes;
    }

    private int Unload(PerfCounters counters)
    {
        int writes = 0;
        for (int k = 0; k < SlotCount; k++)
            if (WriteSlot(k, 0, counters, _loaded?.Domain)) writes++;
        _loaded = null;
        CompleteMaintenance();
        return writes;
    }

    /// <summary>
    /// A context switch from <paramref name="from"/> to <paramref name="to"/>: with shared slots,
    /// switching to a domain tracing through the VLPT loads its p2m, and switching away from one
    /// unloads it (Ian's "only when switching to/from log-dirty domains"). Per-domain slices cost
    /// nothing. Returns the slots written; they and their TLB maintenance are counted on the
    /// domain they were written for.
    /// </summary>
    public int ContextSwitch(Domain? from, Domain to)
    {
        lock (_gate) return ContextSwitchLocked(from, to);
    }

    private int ContextSwitchLocked(Domain? from, Domain to)
    {
        ContextSwitches++;
        Tlb.TouchWorkingSet();                           // the scheduler's own code and data
        if (Layout == VlptLayout.PerDomainSlices) return 0;
        var toSlice = TracingSlice(to);
        if (toSlice is not null) return EnsureLoadedLocked(toSlice);
        if (_loaded is not null && from is not null && _loaded.Domain == from) return Unload(from.Counters);
        return 0;
    }

    private VlptSlice? TracingSlice(Domain d) =>
        d.Mode is ArmMode { TracingActive: true, VlptSlice: { } s } && _slices.Contains(s) ? s : null;

    private bool WriteSlot(int windowSlot, ulong value, PerfCounters counters, Domain? domain)
    {
        int index = FirstXenSlot + windowSlot;
        if (_xenSecond[index] == value) return false;
        _xenSecond[index] = value;
        SlotWrites++;
        TlbMaintenance += 2;
        counters.Inc(PerfCounter.VlptSlotWrite);
        counters.Add(PerfCounter.VlptTlbFlush, 2);       // the slot's 2 MiB and its alias page in the loop
        if (Invalidation == VlptInvalidation.ByAddress)
        {
            Tlb.InvalidateRange(BaseVa + (ulong)windowSlot * SlotBytes, (int)(SlotBytes >> Page.Shift));
            Tlb.InvalidateRange(LoopVa + (ulong)index * Page.Size, 1);
        }
        else _flushPending = true;
        domain?.Trace.Add(TraceKind.VlptRemap, -1, BaseVa + (ulong)windowSlot * SlotBytes, 0, Stage2Entry.FrameOf(value), (ulong)windowSlot, value == 0 ? "unmap" : "map");
        return true;
    }

    /// <summary>With full-flush invalidation, one TLBI ALLE2 after an operation's slot writes.</summary>
    private void CompleteMaintenance()
    {
        if (!_flushPending) return;
        _flushPending = false;
        Tlb.FlushAll();
    }

    /// <summary>
    /// Translates a hypervisor VA in the window or its loop through xen_second, as the MMU would
    /// (its cost is the Tlb's business: not counted here). False if nothing is mapped there.
    /// </summary>
    public bool TryTranslate(ulong va, out Mfn frame, out int offset)
    {
        lock (_gate) return TryTranslateLocked(va, out frame, out offset);
    }

    private bool TryTranslateLocked(ulong va, out Mfn frame, out int offset)
    {
        frame = Mfn.Invalid;
        offset = (int)(va & Page.OffsetMask);
        ulong i2 = va / SlotBytes;
        if (i2 >= XenSecondEntries) return false;
        ulong e2 = _xenSecond[i2];
        if (!Stage2Entry.IsTable(e2)) return false;
        int i3 = (int)((va >> Page.Shift) & 511);
        // Through the loop xen_second is its own third level; elsewhere the slot's table is a p2m second-level page.
        ulong e3 = (int)i2 == LoopIndex ? _xenSecond[i3] : _machine.ReadUInt64(new Mfn(Stage2Entry.FrameOf(e2)), i3 * 8);
        // A level-3 descriptor must read as a page (0b11) with AF set: p2m table descriptors do.
        if (!Stage2Entry.IsTable(e3) || (e3 & Stage2Entry.AccessFlag) == 0) return false;
        frame = new Mfn(Stage2Entry.FrameOf(e3));
        return true;
    }

    /// <summary>
    /// The fault handler's lookup: the second-level entry through the loop (is it a block?), then
    /// the leaf through the window: two descriptor reads, no mapping work.
    /// </summary>
    public Stage2LeafRef Lookup(VlptSlice slice, ulong gfn, PerfCounters counters)
    {
        lock (_gate) return LookupLocked(slice, gfn, counters);
    }

    private Stage2LeafRef LookupLocked(VlptSlice slice, ulong gfn, PerfCounters counters)
    {
        EnsureLoadedLocked(slice);
        counters.Inc(PerfCounter.VlptLookup);
        if (!slice.Covers(gfn)) return new Stage2LeafRef(Mfn.Invalid, 0, 0, 1);
        Tlb.Access(slice.SecondVa(gfn), Page.Shift, HypervisorAccess.Vlpt);
        if (!TryTranslateLocked(slice.SecondVa(gfn), out var f2, out int o2))
            return new Stage2LeafRef(Mfn.Invalid, 0, 0, 1);
        ulong e2 = _machine.ReadUInt64(f2, o2);
        counters.Inc(PerfCounter.VlptMemRef);
        if (!Stage2Entry.IsValid(e2)) return new Stage2LeafRef(Mfn.Invalid, o2 / 8, 0, 2);
        if (Stage2Entry.IsBlock(e2))
        {
            counters.Inc(PerfCounter.VlptSuperpageLookup);             // found one level up: no leaf read
            return new Stage2LeafRef(f2, o2 / 8, e2, 2);
        }
        Tlb.Access(slice.LeafVa(gfn), Page.Shift, HypervisorAccess.Vlpt);
        if (!TryTranslateLocked(slice.LeafVa(gfn), out var f3, out int o3))
            return new Stage2LeafRef(Mfn.Invalid, 0, 0, 3);
        ulong e3 = _machine.ReadUInt64(f3, o3);
        counters.Inc(PerfCounter.VlptMemRef);
        return new Stage2LeafRef(f3, o3 / 8, e3, 3);
    }

    /// <summary>
    /// The page of the window holding <paramref name="gfn"/>'s leaf, i.e. the p2m third-level
    /// table of its 2 MiB, for a linear read of its 512 contiguous leaves (the dirty-VRAM query);
    /// Invalid where the second-level entry is a block or nothing. A TLB hit: not counted.
    /// </summary>
    public Mfn LeafTable(VlptSlice slice, ulong gfn)
    {
        lock (_gate)
        {
            EnsureLoadedLocked(slice);
            return TryTranslateLocked(slice.LeafVa(gfn & ~511UL), out var frame, out _) ? frame : Mfn.Invalid;
        }
    }

    /// <summary>Checks that the slots hold the slice's current p2m second-level tables.</summary>
    public void Audit(VlptSlice slice, Stage2Table s2, List<string> problems)
    {
        lock (_gate) AuditLocked(slice, s2, problems);
    }

    private void AuditLocked(VlptSlice slice, Stage2Table s2, List<string> problems)
    {
        if (!_slices.Contains(slice)) { problems.Add($"arm: {slice.Domain.Name}: VLPT slice is not registered in the window"); return; }
        for (int k = 0; k < slice.Slots; k++)
        {
            var table = s2.SecondLevelTable(k);
            ulong want = table.IsValid ? Stage2Entry.Table(table.Value) : 0;
            if (slice.Wanted[k] != want)
                problems.Add($"arm: {slice.Domain.Name}: VLPT slot {slice.FirstSlot + k} should map 0x{want:x16}, recorded 0x{slice.Wanted[k]:x16}");
            if (Layout == VlptLayout.SharedSlots && _loaded != slice) continue;
            ulong have = _xenSecond[FirstXenSlot + slice.FirstSlot + k];
            if (have != want)
                problems.Add($"arm: {slice.Domain.Name}: xen_second[{FirstXenSlot + slice.FirstSlot + k}] = 0x{have:x16}, the p2m's second-level table for GiB {k} is 0x{want:x16}");
        }
    }
}
