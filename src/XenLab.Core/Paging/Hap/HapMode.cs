// Hardware-assisted paging (seed 000, SPEC 1): the CPU walks the guest's own tables, and
// every guest-physical address on the way (each table, then the data page) goes through the
// EPT. A cold walk of 4-level guest tables over a 4-level EPT reads (4+1)*(4+1)-1 = 24
// entries. The paging-structure cache modelled is a per-vCPU cache of guest-physical
// translations (gfn -> EPT leaf, Intel's "guest-physical mappings"), which lets a walk skip
// the 4 EPT reads of a gfn it has seen; it is flushed by INVEPT whenever the EPT changes.
// RAM on aligned, contiguous frames of one type is mapped with 1 GiB EPT leaves where a whole
// aligned GiB allows, else 2 MiB ones (Ept.cs): a nested walk through a 2 MiB leaf reads 3
// entries, through a 1 GiB leaf 2, so a cold 4-level guest walk reads 5*4-1 = 19 or 5*3-1 = 14
// when every gfn on it is in such a leaf. TLB entries stay 4 KiB. No guest paging-structure
// (PML4/PDPT/PD) caches.
//
// The p2m type lives only in the EPT leaf (sa_p2mt): HAP owns the domain's types
// (IP2mTypeOwner). Changes between ram_rw and ram_logdirty over a range are lazy, as
// p2m_change_type_range does them on EPT: the range joins or leaves the log-dirty ranges
// (p2m->logdirty_ranges; whole-domain log-dirty is the range of every gfn), the fewest covering
// entries are marked, and the next walk through a marked entry takes an EPT misconfiguration
// exit whose handler (resolve_misconfig) recalculates the leaves from those ranges.
using System.Collections.Generic;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Memory;
using XenLab.P2m;
using XenLab.Paging.Modes;

namespace XenLab.Paging.Hap;

public sealed partial class HapMode : IPagingMode, IP2mTypeOwner
{
    private readonly PagingOptions _options;
    private Domain _domain = null!;
    private Ept? _ept;
    // Per-vCPU nested-walk cache: direct-mapped, tag = gfn + 1.
    private ulong[][] _cacheTag = System.Array.Empty<ulong[]>();
    private ulong[][] _cacheLeaf = System.Array.Empty<ulong[]>();
    private int _cacheMask;
    // p2m->logdirty_ranges: [start, end) sorted and disjoint; a changeable leaf recalculated inside is ram_logdirty.
    private readonly List<(ulong Start, ulong End)> _logDirtyRanges = new();
    private readonly System.Func<ulong, P2mType, P2mType> _recalc;

    public HapMode(PagingOptions options)
    {
        if (options.HapGpaCacheEntries < 0 || options.HapGpaCacheEntries > 4096 || (options.HapGpaCacheEntries & (options.HapGpaCacheEntries - 1)) != 0)
            throw new InvalidConfigurationException($"hap_gpa_cache {options.HapGpaCacheEntries} must be 0 or a power of two up to 4096.");
        _options = options;
        _recalc = (gfn, _) => InLogDirtyRange(gfn) ? P2mType.RamLogDirty : P2mType.RamRw;
        _pml = options.HapLogDirty == HapLogDirty.Pml;
    }

    // PML: per vCPU, the gfns logged since the last flush (the 512-entry page the CPU fills).
    public const int PmlEntries = 512;
    private readonly bool _pml;
    private ulong[][] _pmlLog = System.Array.Empty<ulong[]>();
    private int[] _pmlCount = System.Array.Empty<int>();

    /// <summary>Entries waiting in a vCPU's PML buffer.</summary>
    public int PmlPending(int vcpu) => _pmlCount[vcpu];

    /// <summary>
    /// The CPU's side of a write through a writable leaf whose D bit is clear: set D and log the
    /// gfn. A full buffer first takes the PML-full exit (vmx_vcpu_flush_pml_buffer).
    /// </summary>
    private ulong LogWrite(int vcpu, ulong gfn, ulong leaf)
    {
        if (_pmlCount[vcpu] == PmlEntries)
        {
            _domain.Counters.Inc(PerfCounter.PmlFullExit);
            FlushPml(vcpu);
        }
        leaf |= EptEntry.Dirty | EptEntry.Accessed;
        _ept!.Set(gfn, leaf);
        if (_cacheMask >= 0)
        {
            int slot = (int)gfn & _cacheMask;
            if (_cacheTag[vcpu][slot] == gfn + 1) _cacheLeaf[vcpu][slot] = leaf;
        }
        _pmlLog[vcpu][_pmlCount[vcpu]++] = gfn;
        _domain.Counters.Inc(PerfCounter.PmlLogged);
        return leaf;
    }

    /// <summary>
    /// vmx_vcpu_flush_pml_buffer: each logged gfn goes ram_logdirty -> ram_rw (p2m_change_type_one)
    /// and is marked dirty; a gfn no longer ram_logdirty (logged twice) is skipped. Type changes
    /// are counted and traced per page as Domain.SetP2mType does; a plain leaf is changed in place.
    /// </summary>
    private void FlushPml(int vcpu)
    {
        using var op = _domain.EnterOperation();        // once per flush (the general path took it per page)
        int n = _pmlCount[vcpu];
        if (n == 0) return;
        _pmlCount[vcpu] = 0;
        _domain.Counters.Inc(PerfCounter.PmlFlush);
        var log = _pmlLog[vcpu];
        var cursor = default(LeafCursor);
        bool needFlush = false;
        long changed = 0;
        string transition = P2mTypeInfo.Transition(P2mType.RamLogDirty, P2mType.RamRw);
        for (int i = 0; i < n; i++)
        {
            ulong gfn = log[i];
            var r = ChangeTypeOne(gfn, P2mType.RamLogDirty, P2mType.RamRw, ref cursor, ref needFlush);
            if (r == ChangeOneResult.Slow)
            {
                _domain.OnLogDirtyWrite(gfn);        // resolves marks, splits, holes: the general path
                cursor = default;
                continue;
            }
            if (r == ChangeOneResult.NotFrom) continue;
            changed++;
            _domain.Trace.Add(TraceKind.P2mTypeChange, -1, 0, gfn, 0, (ulong)P2mType.RamRw, transition);
            _domain.MarkDirtyAtFault(gfn);
        }
        _domain.Counters.Add(PerfCounter.P2mTypeChange, changed);
        if (needFlush) InvEpt();
    }

    /// <summary>p2m_flush_hardware_cached_dirty: every vCPU's PML buffer, before a peek, clean or VRAM query.</summary>
    public void FlushHardwareCachedDirty()
    {
        for (int v = 0; v < _pmlCount.Length; v++) FlushPml(v);
    }

    public PagingModeKind Kind => PagingModeKind.Hap;
    public IGuestPageTableFormat GuestFormat => X86GuestFormat.Instance;
    public ulong FramesHeld => (ulong)(_ept?.Pages ?? 0);
    public string Options => _options.Describe(Kind);
    public Ept Ept => _ept ?? throw new System.InvalidOperationException("HAP mode is not attached.");

    public void Attach(Domain domain)
    {
        _domain = domain;
        var ept = new Ept(domain.Machine, domain.Counters) { Pml = _pml, LogDirtyRange = LogDirtyRangeState };
        try
        {
            // RAM gets leaves now; identity (MMIO) gfns get mmio_direct on first touch. As Xen's
            // builder maps populated extents: an aligned GiB (or 2 MiB) of gfns on aligned,
            // consecutive frames, all ram_rw, gets one 1 GiB (2 MiB) leaf; the rest 4 KiB leaves.
            // Read from the p2m a run of consecutive frames at a time: the work is per leaf written.
            bool typed = domain.Types.Count > 0;      // some RAM is not ram_rw (a mode switch): check spans page by page
            ulong mapped = 0, nextCheckpoint = Domain.BuildStepPages;
            foreach (var (first, firstMfn, count) in domain.P2m.EnumerateRamRuns())
            {
                for (ulong pfn = first, mfn = firstMfn, end = first + count; pfn < end;)
                {
                    int level = 1;
                    if (_options.HapSuperpages)
                        for (int l = _options.HapSuperpages1G ? 3 : 2; l >= 2 && level == 1; l--)
                        {
                            ulong span = EptEntry.Span(l);
                            if (((pfn | mfn) & (span - 1)) == 0 && end - pfn >= span && (!typed || AllRamRw(domain, pfn, span))) level = l;
                        }
                    if (level > 1) ept.SetSuperpage(pfn, ept.LeafFor(mfn, P2mType.RamRw, superpage: true), level);
                    else ept.Set(pfn, ept.LeafFor(mfn, domain.Types.GetRam(pfn)));
                    ulong step = EptEntry.Span(level);
                    pfn += step;
                    mfn += step;
                    mapped += step;
                    if (mapped >= nextCheckpoint)
                    {
                        domain.BuildCheckpoint(mapped);       // a big build can be stopped here
                        nextCheckpoint = mapped + Domain.BuildStepPages;
                    }
                }
            }
        }
        catch
        {
            ept.Free();
            throw;
        }
        _ept = ept;
        domain.Types.Clear();            // the EPT entries hold the types now (no side copy)
        int n = domain.Vcpus.Count, size = _options.HapGpaCacheEntries;
        _cacheTag = new ulong[n][];
        _cacheLeaf = new ulong[n][];
        for (int i = 0; i < n; i++) { _cacheTag[i] = new ulong[System.Math.Max(size, 1)]; _cacheLeaf[i] = new ulong[System.Math.Max(size, 1)]; }
        _cacheMask = size - 1;
        _pmlLog = new ulong[n][];
        _pmlCount = new int[n];
        for (int i = 0; i < n; i++) _pmlLog[i] = new ulong[PmlEntries];
    }

    public void Detach()
    {
        // The next mode keeps types in the domain's table: hand ours over (ram_rw is the default).
        if (_ept is not null) FlushHardwareCachedDirty();
        if (_ept is not null) ExportTypes();
        _ept?.Free();
        _ept = null;
    }

    /// <summary>INVEPT: every vCPU forgets its cached guest-physical translations.</summary>
    public void InvEpt()
    {
        foreach (var t in _cacheTag) System.Array.Clear(t);
        _domain.Counters.Inc(PerfCounter.InveptFlush);
        _domain.FlushAllTlbs();      // combined mappings are tagged by EPTP too
    }

    private void InvalidateCached(ulong gfn)
    {
        if (_cacheMask < 0) return;
        int slot = (int)gfn & _cacheMask;
        foreach (var tags in _cacheTag) if (tags[slot] == gfn + 1) tags[slot] = 0;
    }

    /// <summary>Whether the vCPU's nested-walk cache holds gfn now: its next nested walk would read no EPT entry (for pictures).</summary>
    public bool IsNestedWalkCached(int vcpu, ulong gfn)
    {
        if (_cacheMask < 0 || vcpu < 0 || vcpu >= _cacheTag.Length) return false;
        return _cacheTag[vcpu][(int)gfn & _cacheMask] == gfn + 1;
    }

    /// <summary>Translates a gfn through the EPT (or the vCPU's cache), counting references.</summary>
    private ulong Nested(int vcpu, ulong gfn, ref int refs, TranslationTrace? trace)
    {
        if (trace is not null) return _ept!.Walk(gfn, ref refs, trace, new PerfCounters());   // explaining: no cache, no counting
        _domain.Counters.Inc(PerfCounter.HapNestedWalk);
        if (_cacheMask >= 0 && trace is null)
        {
            int slot = (int)gfn & _cacheMask;
            if (_cacheTag[vcpu][slot] == gfn + 1)
            {
                _domain.Counters.Inc(PerfCounter.HapGpaCacheHit);
                return _cacheLeaf[vcpu][slot];
            }
            _domain.Counters.Inc(PerfCounter.HapGpaCacheMiss);
            ulong leaf = _ept!.Walk(gfn, ref refs, null);
            if (EptEntry.IsPresent(leaf) && !EptEntry.IsMisconfigured(leaf))
            {
                _cacheTag[vcpu][slot] = gfn + 1;
                _cacheLeaf[vcpu][slot] = leaf;
            }
            return leaf;
        }
        return _ept!.Walk(gfn, ref refs, null);
    }

    /// <summary>
    /// The EPT side of one guest-physical access: walk (or cache), then handle the violation
    /// kinds the hypervisor fixes (mmio populate, first write to ram_logdirty) and retry.
    /// </summary>
    private ulong Resolve(int vcpu, ulong gfn, AccessKind access, ref int refs, TranslationTrace? trace, out TranslateStatus failure)
    {
        for (int attempt = 0; attempt < 4; attempt++)
        {
            ulong leaf = Nested(vcpu, gfn, ref refs, trace);
            if (EptEntry.IsMisconfigured(leaf))
            {
                if (trace is not null)
                {
                    trace.Note($"EPT misconfiguration at gfn 0x{gfn:x}: resolve_misconfig would recalculate the entries marked on the way");
                    leaf = EffectiveLeaf(gfn);
                }
                else
                {
                    _domain.Counters.Inc(PerfCounter.EptMisconfig);
                    _domain.Trace.Add(TraceKind.EptViolation, vcpu, 0, gfn, 0, 0, "misconfig");
                    _ept!.ResolveMisconfig(gfn, _recalc);
                    continue;
                }
            }
            bool write = (access & AccessKind.Write) != 0;
            if (EptEntry.IsPresent(leaf) && (!write || (leaf & EptEntry.Write) != 0))
            {
                failure = TranslateStatus.Ok;
                if (write && _pml && trace is null && (leaf & EptEntry.Dirty) == 0) leaf = LogWrite(vcpu, gfn, leaf);
                return leaf;
            }
            var kind = P2mTree.Classify(_domain.P2m.Get(gfn));
            if (trace is not null)
            {
                // Explaining: say what the violation handler would do, change nothing.
                failure = TranslateStatus.Ok;
                if (!EptEntry.IsPresent(leaf) && kind == P2mEntryKind.Identity)
                {
                    trace.Note($"EPT violation at gfn 0x{gfn:x}: the handler would populate an mmio_direct entry");
                    return EptEntry.Leaf(gfn, P2mType.MmioDirect);
                }
                if (!EptEntry.IsPresent(leaf)) { trace.Note($"EPT violation at gfn 0x{gfn:x}: no p2m entry"); failure = TranslateStatus.PhysicalMissing; return 0; }
                var t = EptEntry.TypeOf(leaf);
                if (t == P2mType.RamLogDirty) { trace.Note($"EPT violation at gfn 0x{gfn:x}: the handler would mark it dirty and make it ram_rw"); return leaf | EptEntry.Write; }
                trace.Note($"EPT violation at gfn 0x{gfn:x}: a write to {P2mTypeInfo.Name(t)} would be discarded");
                failure = TranslateStatus.P2mReadOnly;
                return leaf;
            }
            _domain.Counters.Inc(PerfCounter.EptViolation);
            if (!EptEntry.IsPresent(leaf))
            {
                if (kind == P2mEntryKind.Identity)
                {
                    _domain.Counters.Inc(PerfCounter.EptViolationMmio);
                    _ept!.Set(gfn, EptEntry.Leaf(gfn, P2mType.MmioDirect));
                    trace?.Note($"EPT violation at gfn 0x{gfn:x}: identity frame, mmio_direct entry populated");
                    continue;
                }
                _domain.Counters.Inc(PerfCounter.EptViolationMissing);
                _domain.Trace.Add(TraceKind.EptViolation, vcpu, 0, gfn, 0, 0, "missing");
                trace?.Note($"EPT violation at gfn 0x{gfn:x}: no p2m entry");
                failure = TranslateStatus.PhysicalMissing;
                return 0;
            }
            var type = EptEntry.TypeOf(leaf);
            if (type == P2mType.RamLogDirty)
            {
                _domain.Counters.Inc(PerfCounter.EptViolationLogDirty);
                _domain.Trace.Add(TraceKind.EptViolation, vcpu, 0, gfn, EptEntry.FrameOf(leaf), (ulong)type, "logdirty write");
                trace?.Note($"EPT violation at gfn 0x{gfn:x}: first write to ram_logdirty, marked dirty, back to ram_rw");
                _domain.OnLogDirtyWrite(gfn);      // marks dirty and sets ram_rw, which rewrites our entry
                continue;
            }
            _domain.Counters.Inc(PerfCounter.EptViolationRamRo);
            _domain.Trace.Add(TraceKind.EptViolation, vcpu, 0, gfn, EptEntry.FrameOf(leaf), (ulong)type, P2mTypeInfo.Name(type) + " write");
            trace?.Note($"EPT violation at gfn 0x{gfn:x}: write to {P2mTypeInfo.Name(type)}, discarded");
            failure = TranslateStatus.P2mReadOnly;
            return leaf;
        }
        failure = TranslateStatus.PhysicalMissing;
        return 0;
    }

    /// <summary>The EPT as the guest walker's second stage.</summary>
    private readonly struct EptStage : INestedStage
    {
        private readonly HapMode _m;
        public EptStage(HapMode m) => _m = m;
        public ulong Resolve(int vcpu, ulong gfn, AccessKind access, ref int refs, TranslationTrace? trace, PerfCounters counters, out TranslateStatus failure) =>
            _m.Resolve(vcpu, gfn, access, ref refs, trace, out failure);
        public ulong Peek(ulong gfn)
        {
            ulong leaf = _m._ept!.PeekWithRecalc(gfn, out bool recalc);
            return recalc ? EptEntry.MarkMisconfigured(leaf, true) : leaf;   // the CPU would take a misconfiguration first
        }
        public bool IsWritableLeaf(ulong leaf) => EptEntry.IsPresent(leaf) && (leaf & EptEntry.Write) != 0 && !EptEntry.IsMisconfigured(leaf)
            && (!_m._pml || (leaf & EptEntry.Dirty) != 0);     // with PML a clear D bit means the write must be logged
        public bool IsDeviceLeaf(ulong leaf) => EptEntry.TypeOf(leaf) == P2mType.MmioDirect;
        public ulong FrameOf(ulong leaf) => EptEntry.FrameOf(leaf);
        public MachineMemory Machine => _m._domain.Machine;
    }

    public Translation Translate(Vcpu v, ulong va, AccessKind access) => TranslateCore(v, va, access, null);

    public Translation Explain(Vcpu v, ulong va, AccessKind access, TranslationTrace trace) => TranslateCore(v, va, access, trace);

    private Translation TranslateCore(Vcpu v, ulong va, AccessKind access, TranslationTrace? trace)
    {
        var acc = new NestedTableAccess<EptStage>(new EptStage(this), v.Id, trace, trace is null ? _domain.Counters : new PerfCounters());
        var t = GuestWalker.Walk(ref acc, v.Cr3, v.WriteProtect, v.NoExecuteEnable, va, access);
        if (!t.IsOk)
        {
            if (trace is null)
            {
                if (t.Status == TranslateStatus.PageFault)
                    _domain.Trace.Add(TraceKind.GuestPageFault, v.Id, va, 0, 0, (ulong)t.ErrorCode, "guest tables");
                _domain.Counters.Add(PerfCounter.HapWalkMemRef, t.MemoryReferences);
            }
            return t;
        }
        int refs = t.MemoryReferences;
        ulong leaf = Resolve(v.Id, t.Gfn, access & AccessKind.Write, ref refs, trace, out var failure);
        if (trace is null) _domain.Counters.Add(PerfCounter.HapWalkMemRef, refs);
        if (failure != TranslateStatus.Ok)
            return Translation.Fault(failure, va, t.Gfn, PageFaultErrorCode.None, refs);
        ulong rights = t.Rights;
        // With PML a leaf whose D bit is clear is not cached writable: the first write must set D and log.
        if ((leaf & EptEntry.Write) != 0 && (!_pml || (leaf & EptEntry.Dirty) != 0)) rights |= TlbRights.HostWritable;
        if (EptEntry.TypeOf(leaf) == P2mType.MmioDirect) rights |= TlbRights.Mmio;
        trace?.Note($"2D walk: {refs} memory reference(s)");
        return new Translation(TranslateStatus.Ok, va, t.Gfn, EptEntry.FrameOf(leaf), rights, 12, PageFaultErrorCode.None, refs);
    }

    public XenLab.Dirty.IVramStrategy? CreateVramStrategy(XenLab.Dirty.VramStrategy kind) =>
        kind == XenLab.Dirty.VramStrategy.Tracker ? new HapVramStrategy(_domain, this) : null;
    public void FlushTlbs() => InvEpt();
    public void OnCr3Load(Vcpu v) { }
    public void OnInvlpg(Vcpu v, ulong va) { }

    public GuestWriteAction BeforeGuestWrite(ulong gfn, Vcpu? writer)
    {
        // The hypervisor's own lookup (get_gfn): the type with any pending recalculation applied.
        ulong leaf = _ept!.PeekWithRecalc(gfn, out bool recalc);
        if (!EptEntry.IsPresent(leaf)) return GuestWriteAction.Direct;
        var type = recalc ? TypeOf(gfn) : EptEntry.TypeOf(leaf);
        if (!P2mTypeInfo.IsWriteProtected(type)) return GuestWriteAction.Direct;
        if (type == P2mType.RamLogDirty)
        {
            // The hypervisor's own write marks the page itself (paging_mark_dirty); only a write-protected leaf counts as a violation.
            if ((leaf & EptEntry.Write) == 0)
            {
                _domain.Counters.Inc(PerfCounter.EptViolation);
                _domain.Counters.Inc(PerfCounter.EptViolationLogDirty);
            }
            _domain.OnLogDirtyWrite(gfn);
            return GuestWriteAction.Direct;
        }
        _domain.Counters.Inc(PerfCounter.EptViolation);
        _domain.Counters.Inc(PerfCounter.EptViolationRamRo);
        return GuestWriteAction.Discard;
    }

    public void AfterGuestWrite(ulong gfn, int offset, int length) { }

    public XenLab.Dirty.IDirtyTracker DirtyTracker => _tracker ??= new HapDirtyTracker(_domain);
    private XenLab.Dirty.IDirtyTracker? _tracker;

    public void OnP2mChanged(ulong startGfn, ulong endGfn, bool flush = true)
    {
        bool needFlush = false;
        for (ulong gfn = startGfn; gfn < endGfn; gfn++)
        {
            ulong want = Expected(gfn);
            ulong have = _ept!.Peek(gfn);
            // An mmio_direct leaf is populated lazily: keep it only while the gfn is still identity.
            if (want == 0 && EptEntry.TypeOf(have) == P2mType.MmioDirect && EptEntry.IsPresent(have)
                && P2mTree.Classify(_domain.P2m.Get(gfn)) == P2mEntryKind.Identity) continue;
            if (want == have || (want == 0 && !EptEntry.IsPresent(have))) continue;
            _ept.Set(gfn, want);
            // Only a removed right or a moved frame can leave a stale cached translation.
            bool upgrade = EptEntry.IsPresent(have) && EptEntry.FrameOf(have) == EptEntry.FrameOf(want)
                && ((have & EptEntry.Rwx) & ~(want & EptEntry.Rwx)) == 0;
            if (!upgrade) needFlush = true;
            else InvalidateCached(gfn);
        }
        if (needFlush && flush) InvEpt();
    }

    /// <summary>The leaf the EPT should hold for a RAM gfn; 0 for anything else (populated lazily or absent).</summary>
    private ulong Expected(ulong gfn)
    {
        if (!_domain.TryGetRam(gfn, out var mfn)) return 0;
        return _ept!.LeafFor(mfn.Value, _domain.GetP2mType(gfn));
    }

    /// <summary>
    /// Every RAM gfn's EPT leaf maps its p2m frame with the bits its type gives. Walked as the
    /// p2m's runs against the EPT's entries, so the cost is per entry, not per gfn: inside one
    /// run the p2m's frames go up by one, and inside a superpage so do the leaf's (its frame is
    /// aligned, AuditStructure checks that), with every other bit shared; so the first gfn's
    /// check holds for all of the run's gfns under the superpage. When it fails, each gfn is
    /// checked on its own, giving the messages a per-gfn walk would.
    /// </summary>
    public void Audit(List<string> problems)
    {
        _ept!.AuditStructure(problems);
        var machine = _domain.Machine;
        foreach (var x in RamEntrySpans())
        {
            if (x.Level == 1)
                for (ulong gfn = x.First; gfn < x.Stop; gfn++)
                {
                    ulong leaf = machine.ReadUInt64(new Mfn(x.Table), (int)(gfn & 511) * 8);
                    AuditOne(gfn, x.MfnOf(gfn), leaf, x.RecalcAbove || (leaf & EptEntry.Recalc) != 0, false, problems);
                }
            else if (!EptEntry.IsPresent(x.Entry))
                for (ulong gfn = x.First; gfn < x.Stop; gfn++) AuditOne(gfn, x.MfnOf(gfn), 0, false, false, problems);
            else
            {
                bool recalc = x.RecalcAbove || (x.Entry & EptEntry.Recalc) != 0;
                if (!AuditOne(x.First, x.MfnOf(x.First), EptEntry.PageOf(x.Entry, x.First, x.Level), recalc, true, problems))
                    for (ulong g = x.First + 1; g < x.Stop; g++)
                        AuditOne(g, x.MfnOf(g), EptEntry.PageOf(x.Entry, g, x.Level), recalc, true, problems);
            }
        }
    }

    /// <summary>
    /// The RAM gfns [First, Stop) of one p2m run that one EPT entry decides: a superpage or a
    /// not-present upper entry (Level &gt; 1, Entry), or the part of a leaf table's 512 gfns in the
    /// run (Level 1, Table); RecalcAbove when a table entry above it is marked for recalculation.
    /// </summary>
    private readonly record struct RamEntrySpan(ulong First, ulong Stop, ulong RunFirst, ulong RunMfn, int Level, ulong Entry, ulong Table, bool RecalcAbove)
    {
        public ulong MfnOf(ulong gfn) => RunMfn + (gfn - RunFirst);
    }

    /// <summary>The p2m's RAM runs cut where the EPT's entries end: what the audit and the type hand-over walk, one step per entry.</summary>
    private IEnumerable<RamEntrySpan> RamEntrySpans()
    {
        foreach (var (first, firstMfn, count) in _domain.P2m.EnumerateRamRuns())
            for (ulong gfn = first, end = first + count; gfn < end;)
            {
                ulong e = _ept!.Locate(gfn, out int level, out ulong table, out bool recalcAbove);
                ulong span = level == 1 ? 512 : EptEntry.Span(level);
                ulong stop = System.Math.Min(end, (gfn | (span - 1)) + 1);
                yield return new RamEntrySpan(gfn, stop, first, firstMfn, level, e, table, recalcAbove);
                gfn = stop;
            }
    }

    /// <summary>The audit of one RAM gfn's leaf (as PeekWithRecalc reads it); false when a problem was added.</summary>
    private bool AuditOne(ulong pfn, ulong mfn, ulong have, bool recalc, bool super, List<string> problems)
    {
        if (!EptEntry.IsPresent(have) || EptEntry.FrameOf(have) != mfn)
        {
            problems.Add($"hap: gfn 0x{pfn:x}: EPT leaf 0x{have:x16} does not map mfn 0x{mfn:x}");
            return false;
        }
        if (recalc || EptEntry.IsMisconfigured(have)) return true;      // resolved on the next misconfiguration exit
        ulong want = _ept!.LeafFor(mfn, EptEntry.TypeOf(have), super) & ~(EptEntry.Accessed | EptEntry.Dirty | EptEntry.PageSize);
        have &= ~(EptEntry.Accessed | EptEntry.Dirty);
        if (have == want) return true;
        problems.Add($"hap: gfn 0x{pfn:x}: EPT leaf 0x{have:x16}, its type says 0x{want:x16} ({EptEntry.Describe(want, 1)})");
        return false;
    }

    /// <summary>
    /// Detach's hand-over: every RAM gfn not ram_rw gets its type (as TypeOf reads it) in the
    /// domain's table. Walked as the audit is, per EPT entry: a superpage (or a hole) has one type
    /// for all its gfns unless a pending recalculation makes it follow the log-dirty ranges, and
    /// those are asked once per entry (p2m_is_logdirty_range); only a mixed entry goes per gfn.
    /// </summary>
    private void ExportTypes()
    {
        var machine = _domain.Machine;
        var types = _domain.Types;
        foreach (var x in RamEntrySpans())
        {
            if (x.Level == 1)
            {
                for (ulong gfn = x.First; gfn < x.Stop; gfn++)
                {
                    ulong leaf = machine.ReadUInt64(new Mfn(x.Table), (int)(gfn & 511) * 8);
                    P2mType t;
                    if (!EptEntry.IsPresent(leaf)) t = _recalc(gfn, P2mType.RamRw);
                    else
                    {
                        t = EptEntry.TypeOf(leaf);
                        if ((x.RecalcAbove || (leaf & EptEntry.Recalc) != 0) && EptEntry.IsChangeable(t)) t = _recalc(gfn, t);
                    }
                    if (t != P2mType.RamRw) types.Set(gfn, t);
                }
                continue;
            }
            P2mType type;
            bool followsRanges = !EptEntry.IsPresent(x.Entry);
            if (followsRanges) type = P2mType.RamRw;
            else
            {
                type = EptEntry.TypeOf(x.Entry);
                followsRanges = (x.RecalcAbove || (x.Entry & EptEntry.Recalc) != 0) && EptEntry.IsChangeable(type);
            }
            if (followsRanges)
            {
                int state = LogDirtyRangeState(x.First, x.Stop - 1);
                if (state < 0)
                {
                    for (ulong gfn = x.First; gfn < x.Stop; gfn++) if (InLogDirtyRange(gfn)) types.Set(gfn, P2mType.RamLogDirty);
                    continue;
                }
                type = state == 1 ? P2mType.RamLogDirty : P2mType.RamRw;
            }
            if (type != P2mType.RamRw) for (ulong g = x.First; g < x.Stop; g++) types.Set(g, type);
        }
    }

    // ---- p2m types in the EPT (IP2mTypeOwner) ---------------------------------------------

    private static bool AllRamRw(Domain domain, ulong first, ulong span)
    {
        for (ulong g = first; g < first + span; g++) if (domain.Types.GetRam(g) != P2mType.RamRw) return false;
        return true;
    }

    /// <summary>p2m_is_logdirty_range: 1 when all of [first, last] is in a log-dirty range, 0 when none of it, -1 when part.</summary>
    private int LogDirtyRangeState(ulong first, ulong last)
    {
        foreach (var (s, e) in _logDirtyRanges)
        {
            if (e <= first) continue;
            if (s > last) return 0;
            return s <= first && e > last ? 1 : -1;
        }
        return 0;
    }

    /// <summary>p2m_is_logdirty_range for one gfn.</summary>
    private bool InLogDirtyRange(ulong gfn)
    {
        foreach (var (s, e) in _logDirtyRanges)
        {
            if (gfn < s) return false;
            if (gfn < e) return true;
        }
        return false;
    }

    /// <summary>The log-dirty ranges (p2m->logdirty_ranges), for tests and display.</summary>
    public IReadOnlyList<(ulong Start, ulong End)> LogDirtyRanges => _logDirtyRanges;

    public P2mType TypeOf(ulong gfn)
    {
        ulong leaf = _ept!.PeekWithRecalc(gfn, out bool recalc);
        // A RAM gfn without a leaf yet (just populated) gets ram_rw, or ram_logdirty inside a log-dirty range.
        if (!EptEntry.IsPresent(leaf)) return _recalc(gfn, P2mType.RamRw);
        var t = EptEntry.TypeOf(leaf);
        return recalc && EptEntry.IsChangeable(t) ? _recalc(gfn, t) : t;
    }

    /// <summary>The leaf resolve_misconfig would leave for gfn (for explaining; writes nothing).</summary>
    private ulong EffectiveLeaf(ulong gfn)
    {
        ulong leaf = _ept!.Peek(gfn);
        return EptEntry.IsPresent(leaf) ? _ept.LeafFor(EptEntry.FrameOf(leaf), TypeOf(gfn)) : 0;
    }

    public bool SetType(ulong gfn, P2mType type)
    {
        // ept_set_entry: "carry out any eventually pending earlier changes first".
        ulong have = _ept!.PeekWithRecalc(gfn, out bool recalc);
        if (recalc || EptEntry.IsMisconfigured(have))
        {
            _ept.ResolveMisconfig(gfn, _recalc);
            have = _ept.Peek(gfn);
        }
        ulong mfn;
        if (EptEntry.IsPresent(have)) mfn = EptEntry.FrameOf(have);
        else if (_domain.TryGetRam(gfn, out var m)) mfn = m.Value;
        else return false;
        ulong want = _ept.LeafFor(mfn, type);
        if (want == have) return false;
        _ept.Set(gfn, want);
        // Only a removed right (with PML, a cleared D bit) or a moved frame can leave a stale cached translation.
        bool upgrade = !RemovesRight(have, want);
        if (upgrade) InvalidateCached(gfn);
        return !upgrade;
    }

    public long ChangeTypeRange(ulong startGfn, ulong endGfn, P2mType from, P2mType to)
    {
        if (to == P2mType.RamLogDirty) AddLogDirtyRange(startGfn, endGfn);
        else RemoveLogDirtyRange(startGfn, endGfn);
        return _ept!.InvalidateRange(startGfn, endGfn - 1);
    }

    private void AddLogDirtyRange(ulong s, ulong e)
    {
        RemoveLogDirtyRange(s, e);
        int i = 0;
        while (i < _logDirtyRanges.Count && _logDirtyRanges[i].Start < s) i++;
        _logDirtyRanges.Insert(i, (s, e));
        // Merge neighbours that touch.
        for (int k = _logDirtyRanges.Count - 1; k > 0; k--)
            if (_logDirtyRanges[k - 1].End >= _logDirtyRanges[k].Start)
            {
                _logDirtyRanges[k - 1] = (_logDirtyRanges[k - 1].Start, System.Math.Max(_logDirtyRanges[k - 1].End, _logDirtyRanges[k].End));
                _logDirtyRanges.RemoveAt(k);
            }
    }

    private void RemoveLogDirtyRange(ulong s, ulong e)
    {
        for (int k = _logDirtyRanges.Count - 1; k >= 0; k--)
        {
            var (rs, re) = _logDirtyRanges[k];
            if (re <= s || rs >= e) continue;
            _logDirtyRanges.RemoveAt(k);
            if (re > e) _logDirtyRanges.Insert(k, (e, re));
            if (rs < s) _logDirtyRanges.Insert(k, (rs, s));
        }
    }
}

/// <summary>
/// HAP's dirty tracker: ranges by lazy type changes (the type-based tracker), and whole-domain
/// log-dirty as hap.c does it: enable and clean are one global type change
/// (p2m_change_entry_type_global), and the fault marks the bitmap tree itself.
/// </summary>
internal sealed class HapDirtyTracker : XenLab.Dirty.IGlobalDirtyTracker
{
    private readonly Domain _domain;
    private readonly XenLab.Dirty.TypeDirtyTracker _ranges;

    public HapDirtyTracker(Domain domain)
    {
        _domain = domain;
        _ranges = new XenLab.Dirty.TypeDirtyTracker(domain);
    }

    public void Start(ulong startGfn, ulong endGfn)
    {
        FlushHardwareCachedDirty();          // nothing logged before arming may disarm a page after it
        _ranges.Start(startGfn, endGfn);
    }
    public void Stop(ulong startGfn, ulong endGfn) => _ranges.Stop(startGfn, endGfn);
    public void Collect(ulong startGfn, ulong endGfn, System.Span<byte> bitmap, bool clear, bool flush)
    {
        ((HapMode)_domain.Mode!).FlushHardwareCachedDirty();
        _ranges.Collect(startGfn, endGfn, bitmap, clear, flush);
    }

    public void FlushHardwareCachedDirty() => ((HapMode)_domain.Mode!).FlushHardwareCachedDirty();

    /// <summary>hap_enable_log_dirty: every gfn joins the log-dirty ranges; the root's entries are marked.</summary>
    public void StartGlobal()
    {
        FlushHardwareCachedDirty();
        _domain.ChangeP2mTypes(0, P2mTree.MaxPfn, P2mType.RamRw, P2mType.RamLogDirty, flush: true);
    }
    /// <summary>hap_disable_log_dirty.</summary>
    public void StopGlobal() => _domain.ChangeP2mTypes(0, P2mTree.MaxPfn, P2mType.RamLogDirty, P2mType.RamRw, flush: true);
    /// <summary>hap_clean_dirty_bitmap: written pages go back to ram_logdirty, lazily, then one flush.</summary>
    public void CleanGlobal(bool flush) => _domain.ChangeP2mTypes(0, P2mTree.MaxPfn, P2mType.RamRw, P2mType.RamLogDirty, flush);
}
