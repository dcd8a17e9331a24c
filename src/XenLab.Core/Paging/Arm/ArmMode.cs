// Xen-on-ARM style two-stage translation (seed 002, SPEC 1 "ARM"): the guest's AArch64 stage-1
// tables are walked by the "CPU", and every IPA on the way (each table, then the page) goes
// through the stage-2 p2m in LPAE format. A cold walk reads 4 stage-1 levels x (3 stage-2 + 1)
// + 3 = 19 descriptors. No stage-2 walk cache is modelled (every IPA walks stage 2 again).
//
// Dirty tracing the seed's way: write-protect stage-2 leaves; a guest write takes a stage-2
// permission fault; the handler finds the leaf (walking the p2m with on-demand maps, or through
// the VLPT window: PagingOptions.ArmLeafLookup), marks the page dirty in the leaf's avail bit
// and gives write back; the access retries. Which gfns are traced is kept apart from p2m types,
// so ram_ro (write refused), ram_logdirty (first write calls Domain.OnLogDirtyWrite, as HAP's
// EPT violation does) and tracing compose. Tracing state lives in the stage-2 tables, so a
// mode switch (which rebuilds them) ends it. With the VLPT lookup the domain holds a slice of
// the host's window only while something is traced: TakeVlptSliceForTracing when tracing
// starts, ReturnVlptSlice when the last traced range stops or the mode is detached.
using System.Collections.Generic;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Memory;
using XenLab.P2m;
using XenLab.Paging.Modes;

namespace XenLab.Paging.Arm;

public sealed class ArmMode : IPagingMode
{
    private readonly PagingOptions _options;
    private readonly GfnRanges _traced = new();
    private Domain _domain = null!;
    private Stage2Table? _s2;
    private VlptSlice? _slice;

    public ArmMode(PagingOptions options) => _options = options;

    public PagingModeKind Kind => PagingModeKind.Arm;
    public IGuestPageTableFormat GuestFormat => Aarch64GuestFormat.Instance;
    public ulong FramesHeld => (ulong)(_s2?.Pages ?? 0);
    public string Options => _options.Describe(Kind);
    public ArmLeafLookup LeafLookup => _options.ArmLeafLookup;
    public Stage2Table Stage2 => _s2 ?? throw new System.InvalidOperationException("ARM mode is not attached.");
    /// <summary>The domain's part of the host's VLPT window: held while tracing with leaf lookup = vlpt, else null.</summary>
    public VlptSlice? VlptSlice => _slice;
    public bool TracingActive => !_traced.IsEmpty;
    public IReadOnlyList<(ulong Start, ulong End)> TracedRanges => _traced.Ranges;

    public void Attach(Domain domain)
    {
        _domain = domain;
        if (_options.ArmLeafLookup == ArmLeafLookup.Vlpt && domain.Host is null)
            throw new InvalidConfigurationException($"Domain '{domain.Name}' has no host, so no VLPT window; use arm_leaf_lookup walk.");
        var s2 = new Stage2Table(domain.Machine, domain.Counters);
        try
        {
            // Every second-level table the p2m grows is slotted into the window as it appears,
            // while the domain holds a slice (only while it is tracing).
            s2.SecondLevelCreated = (i, table) => { if (_slice is { } s && i < s.Slots) s.Window.MapSlot(s, i, table); };
            // RAM gets leaves (2 MiB blocks where it can) now; identity (MMIO) gfns get mmio_direct on first touch.
            MapRam(domain, s2);
        }
        catch
        {
            s2.Free();
            throw;
        }
        _s2 = s2;
        _slice = null;
        _traced.Clear();
    }

    /// <summary>
    /// Maps every RAM gfn: a run of 512 starting 2 MiB-aligned, contiguous and 2 MiB-aligned in
    /// machine memory and of one p2m type becomes one block, the rest 4 KiB leaves.
    /// </summary>
    private static void MapRam(Domain domain, Stage2Table s2)
    {
        var ram = new List<(ulong Pfn, Mfn Mfn)>(domain.P2m.EnumerateRam());
        int checkpoint = Domain.BuildStepPages;
        for (int i = 0; i < ram.Count;)
        {
            if (i >= checkpoint) { domain.BuildCheckpoint((ulong)i); checkpoint += Domain.BuildStepPages; }   // a big build can be stopped here
            var (pfn, mfn) = ram[i];
            var type = domain.GetP2mType(pfn);
            if (IsBlockRun(domain, ram, i, type))
            {
                s2.MapBlock(pfn, Stage2Entry.Leaf(mfn.Value, type));
                i += 512;
                continue;
            }
            s2.Set(pfn, Stage2Entry.Leaf(mfn.Value, type));
            i++;
        }
    }

    private static bool IsBlockRun(Domain domain, List<(ulong Pfn, Mfn Mfn)> ram, int i, P2mType type)
    {
        var (pfn, mfn) = ram[i];
        if ((pfn & 511) != 0 || (mfn.Value & 511) != 0 || i + 511 >= ram.Count) return false;
        for (int k = 1; k < 512; k++)
        {
            var (p, m) = ram[i + k];
            if (p != pfn + (ulong)k || m.Value != mfn.Value + (ulong)k || domain.GetP2mType(p) != type) return false;
        }
        return true;
    }

    public void Detach()
    {
        ReturnVlptSlice();
        _s2?.Free();
        _s2 = null;
        _traced.Clear();
    }

    // ---- the VLPT slice: held only while tracing (seed 002) ------------------------------

    /// <summary>
    /// Tracing is about to start on [.., <paramref name="endGfn"/>): with the VLPT lookup, take a
    /// slice of the host's window covering the domain's IPA up to there (or a bigger one if the
    /// slice held is too small), and slot the p2m's second-level tables into it. Throws
    /// <see cref="VlptWindowFullException"/> having changed nothing when the window has no room.
    /// </summary>
    private void TakeVlptSliceForTracing(ulong endGfn)
    {
        if (_options.ArmLeafLookup != ArmLeafLookup.Vlpt) return;
        if (_slice is not null && _slice.Covers(endGfn - 1)) return;
        var window = _domain.Host!.VlptWindow;
        var bigger = window.Allocate(_domain, VlptWindow.SlotsFor(_domain, endGfn));   // throws, changing nothing
        ReturnVlptSlice();
        _slice = bigger;
        for (int k = 0; k < bigger.Slots; k++)
        {
            var table = _s2!.SecondLevelTable(k);
            if (table.IsValid) window.MapSlot(bigger, k, table);
        }
    }

    /// <summary>Tracing stopped everywhere (or the mode goes away): the slice goes back to the window.</summary>
    private void ReturnVlptSlice()
    {
        if (_slice is null) return;
        _slice.Window.Free(_slice);
        _slice = null;
    }

    // ---- the two-stage walk ------------------------------------------------------------

    /// <summary>Stage 2 as the stage-1 walker's second stage (S1PTW: table IPAs go through stage 2 too).</summary>
    private readonly struct S2Stage : INestedStage
    {
        private readonly ArmMode _m;
        public S2Stage(ArmMode m) => _m = m;
        public ulong Resolve(int vcpu, ulong gfn, AccessKind access, ref int refs, TranslationTrace? trace, PerfCounters counters, out TranslateStatus failure) =>
            _m.Resolve(vcpu, gfn, access, ref refs, trace, counters, out failure);
        public ulong Peek(ulong gfn) => _m._s2!.Peek(gfn);
        public bool IsWritableLeaf(ulong leaf) => Stage2Entry.IsWritable(leaf);
        public bool IsDeviceLeaf(ulong leaf) => Stage2Entry.TypeOf(leaf) == P2mType.MmioDirect;
        public ulong FrameOf(ulong leaf) => Stage2Entry.FrameOf(leaf);
        public MachineMemory Machine => _m._domain.Machine;
    }

    public Translation Translate(Vcpu v, ulong va, AccessKind access) => TranslateCore(v, va, access, null);

    public Translation Explain(Vcpu v, ulong va, AccessKind access, TranslationTrace trace) => TranslateCore(v, va, access, trace);

    private Translation TranslateCore(Vcpu v, ulong va, AccessKind access, TranslationTrace? trace)
    {
        var counters = trace is null ? _domain.Counters : new PerfCounters();   // explaining counts nothing real
        var acc = new NestedTableAccess<S2Stage>(new S2Stage(this), v.Id, trace, counters);
        var t = Aarch64Walker.Walk(ref acc, v.Cr3, va, access, out var fault);
        if (!t.IsOk)
        {
            if (t.Status == TranslateStatus.PageFault && trace is null)
                _domain.Trace.Add(TraceKind.GuestPageFault, v.Id, va, 0, (ulong)fault.Code, (ulong)t.ErrorCode, FaultWord(fault.Kind));
            return t;
        }
        int refs = t.MemoryReferences;
        ulong leaf = Resolve(v.Id, t.Gfn, access & AccessKind.Write, ref refs, trace, counters, out var failure);
        if (failure != TranslateStatus.Ok)
            return Translation.Fault(failure, va, t.Gfn, PageFaultErrorCode.None, refs);
        ulong rights = t.Rights;
        if (Stage2Entry.IsWritable(leaf)) rights |= TlbRights.HostWritable;
        if (Stage2Entry.TypeOf(leaf) == P2mType.MmioDirect) rights |= TlbRights.Mmio;
        trace?.Note($"two-stage walk: {refs} memory reference(s)");
        return new Translation(TranslateStatus.Ok, va, t.Gfn, Stage2Entry.FrameOf(leaf), rights, 12, PageFaultErrorCode.None, refs);
    }

    private static string FaultWord(ArmFaultKind k) => k switch
    {
        ArmFaultKind.Translation => "s1 translation",
        ArmFaultKind.Permission => "s1 permission",
        ArmFaultKind.AddressSize => "s1 address size",
        _ => "s1 access flag",
    };

    private enum AbortOutcome { Retry, ReadOnly }

    /// <summary>
    /// The stage-2 side of one IPA access: walk, then handle the aborts the hypervisor fixes
    /// (mmio_direct populate, tracing and log-dirty write faults) and retry. When explaining
    /// (trace set) nothing is changed: the notes say what the handler would do.
    /// </summary>
    private ulong Resolve(int vcpu, ulong gfn, AccessKind access, ref int refs, TranslationTrace? trace, PerfCounters counters, out TranslateStatus failure)
    {
        bool write = (access & AccessKind.Write) != 0;
        for (int attempt = 0; attempt < 3; attempt++)
        {
            ulong leaf = _s2!.Walk(gfn, ref refs, counters, trace);
            if (Stage2Entry.IsValid(leaf) && (!write || Stage2Entry.IsWritable(leaf)))
            {
                failure = TranslateStatus.Ok;
                return leaf;
            }
            counters.Inc(PerfCounter.Stage2Abort);
            if (!Stage2Entry.IsValid(leaf))
            {
                counters.Inc(PerfCounter.Stage2AbortTranslation);
                var tf = new ArmFault(ArmFaultKind.Translation, _s2.Locate(gfn).ArmLevel);
                if (P2mTree.Classify(_domain.P2m.Get(gfn)) == P2mEntryKind.Identity)
                {
                    ulong mmio = Stage2Entry.Leaf(gfn, P2mType.MmioDirect);
                    if (trace is not null)
                    {
                        trace.Note($"stage-2 {tf} at IPA 0x{gfn << 12:x}: identity frame; the hypervisor would map it mmio_direct and retry");
                        failure = TranslateStatus.Ok;
                        return mmio;
                    }
                    _domain.Trace.Add(TraceKind.Stage2Abort, vcpu, 0, gfn, gfn, (ulong)tf.Code, "mmio populate");
                    _s2.Set(gfn, mmio);
                    continue;
                }
                _domain.Trace.Add(TraceKind.Stage2Abort, vcpu, 0, gfn, 0, (ulong)tf.Code, "missing");
                trace?.Note($"stage-2 {tf} at IPA 0x{gfn << 12:x}: no p2m entry");
                failure = TranslateStatus.PhysicalMissing;
                return 0;
            }
            counters.Inc(PerfCounter.Stage2AbortPermission);
            if (HandlePermissionFault(vcpu, gfn, leaf, counters, trace, out ulong fixedLeaf) == AbortOutcome.ReadOnly)
            {
                failure = TranslateStatus.P2mReadOnly;
                return leaf;
            }
            if (trace is not null)
            {
                failure = TranslateStatus.Ok;
                return fixedLeaf;                          // what the retry would find
            }
        }
        failure = TranslateStatus.PhysicalMissing;
        return 0;
    }

    /// <summary>
    /// A stage-2 permission fault (a write to a leaf without S2AP write): find the leaf with the
    /// configured strategy, mark it dirty in its avail bit if the gfn is traced, turn a
    /// ram_logdirty page back to ram_rw, give write back. ram_ro stays refused.
    /// </summary>
    private AbortOutcome HandlePermissionFault(int vcpu, ulong gfn, ulong leaf, PerfCounters counters, TranslationTrace? trace, out ulong fixedLeaf)
    {
        var type = Stage2Entry.TypeOf(leaf);
        var pf = new ArmFault(ArmFaultKind.Permission, 3);
        bool traced = _traced.Contains(gfn);
        fixedLeaf = leaf;
        if (!Stage2Entry.TypeAllowsWrite(type) && type != P2mType.RamLogDirty)
        {
            counters.Inc(PerfCounter.Stage2AbortRamRo);
            if (trace is null) _domain.Trace.Add(TraceKind.Stage2Abort, vcpu, 0, gfn, Stage2Entry.FrameOf(leaf), (ulong)type, P2mTypeInfo.Name(type) + " write");
            trace?.Note($"stage-2 {pf} at IPA 0x{gfn << 12:x}: write to {P2mTypeInfo.Name(type)}, discarded");
            return AbortOutcome.ReadOnly;
        }
        if (trace is not null)
        {
            fixedLeaf = leaf | Stage2Entry.S2apWrite | (traced ? Stage2Entry.Dirty : 0);
            if (type == P2mType.RamLogDirty) fixedLeaf = (fixedLeaf & ~Stage2Entry.TypeField) | ((ulong)P2mType.RamRw << Stage2Entry.TypeShift);
            string what = (traced ? "set DIRTY (bit 58) in the leaf, " : "") + (type == P2mType.RamLogDirty ? "turn ram_logdirty back to ram_rw, " : "");
            string split = _s2!.Locate(gfn).ArmLevel == 2 ? "split the 2 MiB block into 512 write-protected pages, " : "";
            trace.Note($"stage-2 {pf} at IPA 0x{gfn << 12:x}: the handler would find the leaf {DescribeLookup(gfn)}, {split}{what}set S2AP write and retry");
            return AbortOutcome.Retry;
        }
        _domain.Host?.VlptWindow.Tlb.TouchWorkingSet();     // entering the hypervisor's trap handler
        var where = FindLeaf(gfn, counters);
        if (where.ArmLevel == 2 && Stage2Entry.IsBlock(where.Value))
        {
            // A write-protected block (tracing, or a type set on all of it): split it on this
            // first write and go on with the new table's leaf; the other 511 stay protected.
            var table = _s2!.SplitBlock(gfn);
            int i = (int)(gfn & 511);
            where = new Stage2LeafRef(table, i, _domain.Machine.ReadUInt64(table, i * 8), 3);
        }
        ulong e = where.Value;
        if (traced && !Stage2Entry.IsDirty(e))
        {
            e |= Stage2Entry.Dirty;
            counters.Inc(PerfCounter.ArmDirtyBitSet);
            // Tracing is how ARM arms log-dirty: this is its log-dirty fault, counted as HAP's
            // EPT violation on ram_logdirty is (a ram_logdirty page is counted by OnLogDirtyWrite below).
            if (type != P2mType.RamLogDirty) counters.Inc(PerfCounter.LogDirtyFault);
        }
        if (type == P2mType.RamLogDirty)
        {
            counters.Inc(PerfCounter.Stage2AbortLogDirty);
            WriteLeaf(where, e);                        // the dirty bit first: the type change keeps it
            _domain.OnLogDirtyWrite(gfn);               // ram_rw again; OnP2mChanged gives write back
        }
        else
        {
            WriteLeaf(where, e | Stage2Entry.S2apWrite);
        }
        fixedLeaf = _s2!.Peek(gfn);
        _domain.Trace.Add(TraceKind.Stage2Abort, vcpu, 0, gfn, Stage2Entry.FrameOf(leaf), fixedLeaf, type == P2mType.RamLogDirty ? "logdirty write" : "dirty");
        return AbortOutcome.Retry;
    }

    private string DescribeLookup(ulong gfn) => UsesVlpt(gfn)
        ? $"through the VLPT (second level at 0x{_slice!.SecondVa(gfn):x}, leaf at 0x{_slice.LeafVa(gfn):x}: 2 reads, no maps)"
        : "by walking the p2m (3 levels mapped on demand, 3 reads)";

    private bool UsesVlpt(ulong gfn) => _options.ArmLeafLookup == ArmLeafLookup.Vlpt && _slice is not null && _slice.Covers(gfn);

    /// <summary>The fault handler's leaf lookup, by the configured strategy, counted.</summary>
    public Stage2LeafRef FindLeaf(ulong gfn, PerfCounters counters)
    {
        if (UsesVlpt(gfn))
        {
            var r = _slice!.Window.Lookup(_slice, gfn, counters);
            if (r.Found) return r;
            _domain.Trace.Add(TraceKind.Stage2Abort, -1, 0, gfn, 0, 0, "vlpt miss, walk");   // should not happen: the audit says why
        }
        return WalkLeaf(gfn, counters);
    }

    /// <summary>Walks the p2m from the root, mapping each level's table page on demand (map_domain_page).</summary>
    private Stage2LeafRef WalkLeaf(ulong gfn, PerfCounters counters)
    {
        counters.Inc(PerfCounter.Stage2LeafWalk);
        var machine = _domain.Machine;
        var tlb = _domain.Host?.VlptWindow.Tlb;
        var table = _s2!.Root;
        for (int level = Stage2Table.Levels; level >= 1; level--)
        {
            int idx = (int)((gfn >> (9 * (level - 1))) & 511);
            counters.Inc(PerfCounter.Stage2LeafWalkMaps);
            tlb?.Access(HypervisorTlb.DirectMapVa + (table.Value << Page.Shift), HypervisorTlb.DirectMapShift, HypervisorAccess.MappedTable);
            ulong e = machine.ReadUInt64(table, idx * 8);
            counters.Inc(PerfCounter.Stage2LeafWalkMemRef);
            int armLevel = Stage2Entry.ArmLevel(level);
            if (level == 1) return new Stage2LeafRef(table, idx, e, armLevel);
            if (!Stage2Entry.IsValid(e)) return new Stage2LeafRef(Mfn.Invalid, idx, 0, armLevel);
            if (Stage2Entry.IsBlock(e)) return new Stage2LeafRef(table, idx, e, armLevel);
            table = new Mfn(Stage2Entry.FrameOf(e));
        }
        return default;
    }

    private void WriteLeaf(Stage2LeafRef where, ulong value) =>
        _domain.Machine.WriteUInt64(where.Table, where.Index * 8, value);

    public void FlushTlbs() => _domain.FlushAllTlbs();
    public void OnCr3Load(Vcpu v) { }
    public void OnInvlpg(Vcpu v, ulong va) { }

    /// <summary>A write through the guest's direct map is a stage-2 access like any other: the same aborts.</summary>
    public GuestWriteAction BeforeGuestWrite(ulong gfn, Vcpu? writer)
    {
        ulong leaf = _s2!.Peek(gfn);
        if (!Stage2Entry.IsValid(leaf) || Stage2Entry.IsWritable(leaf)) return GuestWriteAction.Direct;
        var counters = _domain.Counters;
        counters.Inc(PerfCounter.Stage2Abort);
        counters.Inc(PerfCounter.Stage2AbortPermission);
        return HandlePermissionFault(writer?.Id ?? -1, gfn, leaf, counters, null, out _) == AbortOutcome.ReadOnly
            ? GuestWriteAction.Discard : GuestWriteAction.Direct;
    }

    public void AfterGuestWrite(ulong gfn, int offset, int length) { }

    public void OnP2mChanged(ulong startGfn, ulong endGfn, bool flush = true) => Refresh(startGfn, endGfn, resetDirty: false, allowFlush: flush);

    public XenLab.Dirty.IVramStrategy? CreateVramStrategy(XenLab.Dirty.VramStrategy kind) => null;

    /// <summary>Dirty tracking the seed's way: write-protected leaves, the dirty bit in the entry itself.</summary>
    public XenLab.Dirty.IDirtyTracker DirtyTracker => _tracker ??= new AvailBitTracker(this);
    private XenLab.Dirty.IDirtyTracker? _tracker;

    private sealed class AvailBitTracker : XenLab.Dirty.IDirtyTracker
    {
        private readonly ArmMode _m;
        public AvailBitTracker(ArmMode m) => _m = m;
        public void Start(ulong startGfn, ulong endGfn) { if (endGfn > startGfn) _m.WriteProtectForTracing(startGfn, endGfn); }
        public void Stop(ulong startGfn, ulong endGfn) { if (endGfn > startGfn) _m.StopTracing(startGfn, endGfn); }

        /// <summary>
        /// The avail-bit query: the leaves of a traced run are read linearly, one p2m third-level
        /// table (512 leaves, contiguous in the VLPT) at a time, found once per table through the
        /// domain's VLPT slice when it has one, else by one uncounted walk. Untraced gfns answer
        /// dirty (when in doubt, dirty); a block (a traced 2 MiB block is write-protected until a
        /// write splits it) and a missing leaf answer clean.
        /// </summary>
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
        public void Collect(ulong startGfn, ulong endGfn, System.Span<byte> bitmap, bool clear, bool flush)
        {
            ulong gfn = startGfn;
            foreach (var (ts, te) in _m._traced.Ranges)
            {
                if (te <= gfn) continue;
                if (ts >= endGfn) break;
                if (ts > gfn) { SetBits(bitmap, gfn - startGfn, ts - gfn); gfn = ts; }
                ulong runEnd = System.Math.Min(te, endGfn);
                _m.CollectTracedRun(gfn, runEnd, startGfn, bitmap, clear);
                gfn = runEnd;
            }
            if (gfn < endGfn) SetBits(bitmap, gfn - startGfn, endGfn - gfn);
            if (clear && flush) _m._domain.FlushAllTlbs();       // always after a clean: earlier skipped flushes leave stale entries
        }

        private static void SetBits(System.Span<byte> bitmap, ulong first, ulong count)
        {
            for (ulong i = first; i < first + count; i++) bitmap[(int)(i >> 3)] |= (byte)(1 << (int)(i & 7));
        }
    }

    /// <summary>
    /// Reads (and with <paramref name="clear"/> re-arms) the traced leaves of [start, end), one
    /// leaf table at a time. Compiled optimised from the first call: a display queries a few
    /// times per frame, too few calls for tiered compilation to get here soon.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private void CollectTracedRun(ulong startGfn, ulong endGfn, ulong bitmapBase, System.Span<byte> bitmap, bool clear)
    {
        var machine = _domain.Machine;
        for (ulong gfn = startGfn; gfn < endGfn;)
        {
            ulong chunkEnd = System.Math.Min(endGfn, (gfn | 511) + 1);
            var table = LeafTableOf(gfn);
            if (table.IsValid)
            {
                var leaves = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(machine.Write(table));
                int first = (int)(gfn & 511), last = first + (int)(chunkEnd - gfn);
                ulong bit = gfn - bitmapBase;
                for (int i = first; i < last; i++, bit++)
                {
                    ulong e = leaves[i];
                    if ((e & Stage2Entry.Dirty) == 0) continue;
                    bitmap[(int)(bit >> 3)] |= (byte)(1 << (int)(bit & 7));
                    if (clear) leaves[i] = e & ~(Stage2Entry.Dirty | Stage2Entry.S2apWrite);
                }
            }
            gfn = chunkEnd;
        }
    }

    /// <summary>The p2m third-level table holding <paramref name="gfn"/>'s leaf: through the VLPT when the slice covers it; Invalid for a block or nothing.</summary>
    private Mfn LeafTableOf(ulong gfn)
    {
        if (_slice is not null && _slice.Covers(gfn))
            return _slice.Window.LeafTable(_slice, gfn);
        var where = _s2!.Locate(gfn);
        return where.ArmLevel == 3 ? where.Table : Mfn.Invalid;
    }

    /// <summary>Rewrites the leaves of [start, end) to what the p2m, the types and tracing say; flushes if rights were removed.</summary>
    private void Refresh(ulong startGfn, ulong endGfn, bool resetDirty, bool allowFlush = true)
    {
        bool flush = false;
        for (ulong gfn = startGfn; gfn < endGfn; gfn++)
        {
            if ((gfn & 511) == 0 && gfn + 512 <= endGfn && TryRefreshBlock(gfn, ref flush))
            {
                gfn += 511;
                continue;
            }
            ulong have = _s2!.Peek(gfn);
            ulong want = Expected(gfn, resetDirty ? have & ~Stage2Entry.Dirty : have);
            // An mmio_direct leaf is populated lazily: keep it only while the gfn is still identity.
            if (want == 0 && Stage2Entry.IsValid(have) && Stage2Entry.TypeOf(have) == P2mType.MmioDirect
                && P2mTree.Classify(_domain.P2m.Get(gfn)) == P2mEntryKind.Identity) continue;
            if (want == have || (want == 0 && !Stage2Entry.IsValid(have))) continue;
            _s2.Set(gfn, want);
            bool upgrade = Stage2Entry.IsValid(have) && Stage2Entry.FrameOf(have) == Stage2Entry.FrameOf(want)
                && !(Stage2Entry.IsWritable(have) && !Stage2Entry.IsWritable(want));
            if (!upgrade) flush = true;
        }
        if (flush && allowFlush) _domain.FlushAllTlbs();       // TLBI VMALLS12E1IS: combined entries carry stage-2 rights
    }

    /// <summary>
    /// A whole block inside the range: if the 512 leaves wanted are still one block's pages
    /// (tracing starting or stopping changes only S2AP write on all of them), rewrite the block
    /// and split nothing. False leaves the gfns to the per-page path (which splits if it must).
    /// </summary>
    private bool TryRefreshBlock(ulong first, ref bool flush)
    {
        var where = _s2!.Locate(first);
        if (where.ArmLevel != 2 || !Stage2Entry.IsBlock(where.Value)) return false;
        ulong block = where.Value;
        ulong want0 = Expected(first, Stage2Entry.PageOf(block, first));
        if (!Stage2Entry.IsValid(want0) || (Stage2Entry.FrameOf(want0) & 511) != 0) return false;
        ulong wantBlock = Stage2Entry.BlockOf(want0);
        for (ulong k = 1; k < 512; k++)
        {
            ulong g = first + k;
            if (Expected(g, Stage2Entry.PageOf(block, g)) != Stage2Entry.PageOf(wantBlock, g)) return false;
        }
        if (wantBlock == block) return true;
        _domain.Machine.WriteUInt64(where.Table, where.Index * 8, wantBlock);
        bool upgrade = Stage2Entry.FrameOf(block) == Stage2Entry.FrameOf(wantBlock)
            && !((block & Stage2Entry.S2apWrite) != 0 && (wantBlock & Stage2Entry.S2apWrite) == 0);
        if (!upgrade) flush = true;
        return true;
    }

    /// <summary>The leaf a RAM gfn should have (keeping the dirty bit of <paramref name="have"/> while traced); 0 for anything else.</summary>
    private ulong Expected(ulong gfn, ulong have)
    {
        if (!_domain.TryGetRam(gfn, out var mfn)) return 0;
        bool traced = _traced.Contains(gfn);
        bool dirty = traced && Stage2Entry.IsValid(have) && Stage2Entry.FrameOf(have) == mfn.Value && Stage2Entry.IsDirty(have);
        return Stage2Entry.Leaf(mfn.Value, _domain.GetP2mType(gfn), writeProtect: traced && !dirty, dirty);
    }

    // ---- dirty tracing (seed 002) -------------------------------------------------------

    private static void CheckRange(ulong startGfn, ulong endGfn)
    {
        if (endGfn <= startGfn || endGfn > P2mTree.MaxPfn)
            throw new InvalidConfigurationException($"gfn range [0x{startGfn:x}, 0x{endGfn:x}) is empty, reversed or beyond 0x{P2mTree.MaxPfn:x}.");
    }

    /// <summary>
    /// Starts tracing [start, end): RAM leaves lose S2AP write and their dirty bit, then every
    /// vCPU's TLB is flushed so no cached writable translation survives (seed 003's lesson).
    /// </summary>
    public void WriteProtectForTracing(ulong startGfn, ulong endGfn)
    {
        CheckRange(startGfn, endGfn);
        TakeVlptSliceForTracing(endGfn);                  // may refuse: then nothing is traced
        _traced.Add(startGfn, endGfn);
        Refresh(startGfn, endGfn, resetDirty: true);      // flushes when it removed write anywhere
    }

    /// <summary>
    /// Reads and clears a traced gfn's dirty bit, write-protecting it again (with a TLB flush if
    /// it had been written). A gfn that is not traced answers true: when in doubt, dirty.
    /// </summary>
    public bool TestAndClearDirty(ulong gfn)
    {
        if (!TestAndClearOne(gfn, out bool dirty)) return true;
        if (dirty) _domain.FlushAllTlbs();
        return dirty;
    }

    /// <summary>The traced gfns of [start, end) written since the last call, cleared and write-protected again, with one flush.</summary>
    public List<ulong> TestAndClearDirty(ulong startGfn, ulong endGfn)
    {
        CheckRange(startGfn, endGfn);
        var dirty = new List<ulong>();
        for (ulong gfn = startGfn; gfn < endGfn; gfn++)
        {
            if (!TestAndClearOne(gfn, out bool d) || d) dirty.Add(gfn);
        }
        if (dirty.Count > 0) _domain.FlushAllTlbs();
        return dirty;
    }

    private bool TestAndClearOne(ulong gfn, out bool dirty)
    {
        dirty = false;
        if (!_traced.Contains(gfn)) return false;
        var where = _s2!.Locate(gfn);
        if (!where.Found || !Stage2Entry.IsDirty(where.Value)) return true;
        dirty = true;
        WriteLeaf(where, where.Value & ~(Stage2Entry.Dirty | Stage2Entry.S2apWrite));
        return true;
    }

    /// <summary>Ends tracing of [start, end): write comes back where the type allows it, dirty bits go.</summary>
    public void StopTracing(ulong startGfn, ulong endGfn)
    {
        CheckRange(startGfn, endGfn);
        _traced.Remove(startGfn, endGfn);
        Refresh(startGfn, endGfn, resetDirty: true);
        if (_traced.IsEmpty) ReturnVlptSlice();
    }

    // ---- audit -----------------------------------------------------------------------------

    /// <summary>A RAM gfn's leaf must match the p2m's mfn and type; tracing may only clear write and set DIRTY.</summary>
    private void AuditRam(ulong pfn, Mfn mfn, ulong have, List<string> problems)
    {
        const ulong tracingBits = Stage2Entry.S2apWrite | Stage2Entry.Dirty;
        var type = _domain.GetP2mType(pfn);
        ulong want = Stage2Entry.Leaf(mfn.Value, type);
        bool traced = _traced.Contains(pfn);
        bool dirty = Stage2Entry.IsDirty(have);
        bool writeOk = Stage2Entry.IsWritable(have) == (Stage2Entry.TypeAllowsWrite(type) && (!traced || dirty));
        if ((have & ~tracingBits) != (want & ~tracingBits) || !writeOk || (dirty && !traced))
            problems.Add($"arm: gfn 0x{pfn:x}: stage-2 leaf 0x{have:x16} ({Stage2Entry.Describe(have, 3)}), p2m says 0x{want:x16} ({Stage2Entry.Describe(want, 3)}){(traced ? ", traced" : "")}");
    }

    /// <summary>A leaf for a gfn that is not RAM is allowed only as the lazily made mmio_direct of an identity gfn.</summary>
    private void AuditNonRam(ulong gfn, ulong leaf, List<string> problems)
    {
        var kind = P2mTree.Classify(_domain.P2m.Get(gfn));
        if (kind == P2mEntryKind.Identity && leaf == Stage2Entry.Leaf(gfn, P2mType.MmioDirect)) return;
        problems.Add($"arm: gfn 0x{gfn:x}: stage-2 leaf 0x{leaf:x16} ({Stage2Entry.Describe(leaf, 3)}) for a {kind} gfn");
    }

    public void Audit(List<string> problems)
    {
        // One ascending pass over the p2m's RAM and the stage-2 leaves together.
        using var leaves = _s2!.EnumerateLeaves().GetEnumerator();
        bool more = leaves.MoveNext();
        foreach (var (pfn, mfn) in _domain.P2m.EnumerateRam())
        {
            while (more && leaves.Current.Gfn < pfn)
            {
                AuditNonRam(leaves.Current.Gfn, leaves.Current.Leaf, problems);
                more = leaves.MoveNext();
            }
            ulong have = 0;
            if (more && leaves.Current.Gfn == pfn)
            {
                have = leaves.Current.Leaf;
                more = leaves.MoveNext();
            }
            AuditRam(pfn, mfn, have, problems);
        }
        for (; more; more = leaves.MoveNext()) AuditNonRam(leaves.Current.Gfn, leaves.Current.Leaf, problems);
        if (_slice is not null) _slice.Window.Audit(_slice, _s2, problems);
    }
}
