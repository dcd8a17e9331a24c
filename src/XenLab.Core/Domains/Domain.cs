// A guest domain: its E820, its pfn -> mfn tree, its vCPUs, its built-in guest kernel, and
// guest-physical access. Built by XenHost; every failure during build leaves nothing behind.
using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Threading;
using XenLab.Config;
using XenLab.Paging.Modes;
using XenLab.Diagnostics;
using XenLab.E820;
using XenLab.Guest;
using XenLab.Memory;
using XenLab.P2m;
using XenLab.Paging;

namespace XenLab.Domains;

/// <summary>Outcome of a guest-physical access.</summary>
public enum PhysAccessStatus
{
    Ok,
    /// <summary>At least one page has no p2m entry (INVALID): nothing was read or written.</summary>
    Missing,
    /// <summary>Identity (MMIO) frames were touched: reads there see 0xFF, writes are dropped.</summary>
    Mmio,
}

public readonly record struct PhysAccessResult(PhysAccessStatus Status, ulong FirstBadGfn)
{
    public bool IsOk => Status != PhysAccessStatus.Missing;
}

public sealed class Domain
{
    private readonly MachineMemory _machine;
    private readonly Vcpu[] _vcpus;
    private ulong _populatedPages;
    private ulong _pvMaxPages;
    // The PV balloon driver's list of ballooned pfns (2.6.39 drivers/xen/balloon.c on x86-64:
    // no highmem, so __balloon_append puts every page at the head and balloon_retrieve takes
    // the head): a stack. balloon_init seeds it with the extra region in ascending order, so
    // the highest pfn comes back first; pages ballooned out go on top and come back first.
    // Kept as the region's untaken part [_regionFirst, _regionNext), taken from the top, under
    // a stack of pages given back (the head is the stack's end, then _regionNext - 1).
    private readonly List<ulong> _ballooned = new();
    private ulong _regionFirst, _regionNext;
    private ulong BalloonListCount => (ulong)_ballooned.Count + (_regionNext - _regionFirst);

    // Locking rule (issue 9): every public operation on a domain, and on what it hands out
    // (vCPUs, kernel, log-dirty, VRAM tracking, framebuffers, guest programs), runs inside
    // EnterOperation(): this domain's lock, re-entrant (a nested call from the same thread just
    // goes deeper), and a check that the domain was not removed. Removal takes it too. A guest
    // run takes it once for the run; what the interpreter calls per instruction is the
    // *InOperation form, which takes nothing. Locks are taken in one order: a domain's, then
    // the host's domain list, then the VLPT window, then machine memory; never a second
    // domain's while holding one (XenHost.ContextSwitch takes two in domid order).
    private readonly object _gate = new();
    private volatile bool _removed;

    internal Domain(int id, DomainConfig config, MachineMemory machine)
    {
        Id = id;
        Config = config;
        _machine = machine;
        E820 = config.BuildE820();
        P2m = new P2mTree();
        Types = new P2mTypeMap { IdentityType = config.Type == GuestType.Hvm ? P2mType.MmioDm : P2mType.MmioDirect };
        Counters = new PerfCounters();
        Trace = new TraceLog();
        LogDirty = new Dirty.LogDirty(this);
        Vram = new Dirty.DirtyVram(this);
        _vcpus = new Vcpu[config.Vcpus];
        for (int i = 0; i < _vcpus.Length; i++) _vcpus[i] = new Vcpu(this, i, config.TlbEntries);
        Kernel = new GuestKernel(this, E820Map.OneMiB >> Page.Shift, config.KernelPtPages);
    }

    public int Id { get; }
    /// <summary>The host that built the domain (its host-wide resources, such as the VLPT window).</summary>
    public XenHost? Host { get; internal set; }
    public string Name => Config.Name;
    public DomainConfig Config { get; }
    public E820Map E820 { get; }
    public P2mTree P2m { get; }
    /// <summary>p2m types beyond the defaults (ram_rw for RAM, mmio_direct or mmio_dm for identity by <c>type</c>).</summary>
    public P2mTypeMap Types { get; }
    public PerfCounters Counters { get; }
    public TraceLog Trace { get; }
    /// <summary>Whole-domain log-dirty (live migration).</summary>
    public Dirty.LogDirty LogDirty { get; }
    /// <summary>Dirty VRAM tracking for the domain's framebuffers.</summary>
    public Dirty.DirtyVram Vram { get; }
    private readonly List<Framebuffer> _framebuffers = new();
    public IReadOnlyList<Framebuffer> Framebuffers => _framebuffers;
    /// <summary>The paging mode in force; null only while the domain is being built.</summary>
    public IPagingMode? Mode { get; private set; }
    public GuestKernel Kernel { get; }
    public IReadOnlyList<Vcpu> Vcpus => _vcpus;
    public MachineMemory Machine => _machine;
    public IdentityStrategy IdentityStrategy => Config.IdentityStrategy;
    /// <summary>Removed from its host: every operation on it throws <see cref="DomainRemovedException"/>.</summary>
    public bool IsDestroyed => _removed;

    /// <summary>
    /// Enters one operation on the domain: takes its lock (re-entrant) and fails with
    /// <see cref="DomainRemovedException"/> if it was removed. Dispose to leave. A caller that
    /// needs several calls to see one consistent state holds one around them.
    /// </summary>
    public DomainOperation EnterOperation()
    {
        Monitor.Enter(_gate);
        if (_removed)
        {
            Monitor.Exit(_gate);
            ThrowRemoved();
        }
        return new DomainOperation(_gate);
    }

    /// <summary>The cheap check (no lock) of the raw primitives the paging modes use inside an operation.</summary>
    internal void ThrowIfRemoved()
    {
        if (_removed) ThrowRemoved();
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private void ThrowRemoved() => throw new DomainRemovedException(Name, Id);

    public PagingModeKind PagingMode => Mode?.Kind ?? Config.Paging;
    /// <summary>The mode's switches, e.g. "oos=snapshot slots=3 prefetch=on".</summary>
    public string PagingOptionsText => Mode?.Options ?? "";
    public int VcpuCount => _vcpus.Length;
    public ulong MemoryMiB => _populatedPages >> (20 - Page.Shift);
    public ulong MaxMemMiB => MaxPages >> (20 - Page.Shift);

    /// <summary>Pages of RAM the domain holds (xl's current memory).</summary>
    public ulong PopulatedPages => _populatedPages;
    /// <summary>The balloon ceiling: E820 RAM (HVM builder), or what the PV builder holds plus its balloon region.</summary>
    public ulong MaxPages => Config.Builder == DomainBuilder.Pv ? _pvMaxPages : E820.RamBytes >> Page.Shift;
    /// <summary>Machine frames the paging mode holds for this domain (EPT, stage-2 tables, shadow pool).</summary>
    public ulong PagingFrames => Mode?.FramesHeld ?? 0;

    /// <summary>
    /// The domain's own clock in nanoseconds (Xen's NOW() for what a lab times, e.g. mainline VRAM
    /// tracking's two seconds): advanced by guest instructions (1 ns each; a workload's or a
    /// migration's guest access counts as one) and by AdvanceClock,
    /// never by the wall clock, so runs are reproducible.
    /// </summary>
    public long ClockNs { get; private set; }

    /// <summary>
    /// Lets domain time pass (a frame, an idle period) without running guest code. Refused, with
    /// the clock unchanged, for a negative step or one past <see cref="long.MaxValue"/> ns (292 years).
    /// </summary>
    public void AdvanceClock(long nanoseconds)
    {
        using var op = EnterOperation();
        AdvanceClockInOperation(nanoseconds);
    }

    /// <summary>
    /// A clock step of <paramref name="milliseconds"/> in whole nanoseconds (rounded to the nearest,
    /// so 1000/60 ms is 16,666,667 ns). Refused when negative or beyond what the clock can hold.
    /// </summary>
    public long ClockStepFromMilliseconds(decimal milliseconds)
    {
        if (milliseconds < 0) throw new DomainClockException(Name, $"the clock cannot go back ({milliseconds} ms).");
        if (milliseconds > long.MaxValue / 1_000_000m)
            throw new DomainClockException(Name, $"{milliseconds} ms is more than the clock can hold ({long.MaxValue} ns, about 292 years).");
        return (long)Math.Round(milliseconds * 1_000_000m, MidpointRounding.AwayFromZero);
    }

    /// <summary>AdvanceClock for callers already inside an operation (a guest run's retired instructions).</summary>
    internal void AdvanceClockInOperation(long nanoseconds)
    {
        if (nanoseconds < 0) throw new DomainClockException(Name, $"the clock cannot go back ({nanoseconds} ns).");
        if (nanoseconds > long.MaxValue - ClockNs)
            throw new DomainClockException(Name, $"advancing the clock from {ClockNs} ns by {nanoseconds} ns would pass its end ({long.MaxValue} ns, about 292 years); nothing changed.");
        ClockNs += nanoseconds;
        Counters.Add(PerfCounter.DomainTimeNs, nanoseconds);
    }

    /// <summary>Reports and stops a build in progress; nothing once built (later mode switches run to the end).</summary>
    private Progress.ProgressReporter _build = Progress.ProgressReporter.None;

    /// <summary>Pages between two safe points of a build (populating, or a paging mode mapping RAM).</summary>
    internal const int BuildStepPages = 1 << 16;

    /// <summary>
    /// A safe point of a build: <paramref name="pagesMapped"/> pages of RAM now have paging-mode
    /// entries. Throws OperationCanceledException when a stop was asked for; XenHost then destroys
    /// the half-built domain, so a stopped build leaves nothing allocated or registered.
    /// </summary>
    internal void BuildCheckpoint(ulong pagesMapped) => _build.Step((long)(_populatedPages + pagesMapped));

    /// <summary>
    /// Build: populate memory (HVM-style: the first <c>memory</c> E820 RAM pfns; PV-style: pfns
    /// 0..N-1 then 2.6.39's xen_memory_setup), install identity from the E820, then the rest.
    /// </summary>
    internal void Build(Progress.ProgressReporter? progress = null)
    {
        _build = progress ?? Progress.ProgressReporter.None;
        // Each step names the configuration key it realises, so that a failure (host memory
        // exhausted, identity over RAM, ...) can point at that key in the file it came from.
        string key = "memory";
        try
        {
            if (Config.Builder == DomainBuilder.Pv) { key = "builder"; BuildPv(); }
            else
            {
                ulong want = Math.Min(Config.MemoryMiB << (20 - Page.Shift), MaxPages);
                if (want > _machine.FreeFrames) throw new MachineMemoryExhaustedException(want, _machine.FreeFrames);
                // Populating is one half of the work, the paging mode mapping every page the other.
                _build.Begin($"Building domain '{Name}' ({want} pages, {Config.Paging.ToString().ToLowerInvariant()})", (long)want * 2, "page");
                // Frames and pfns as runs and ranges, never an array of one entry a page.
                var runs = _machine.AllocateRuns(want);           // all or nothing, highest frame first
                var ranges = new List<(ulong First, ulong Count)>();
                ulong left = want;
                foreach (var e in E820.Entries)
                {
                    if (e.Type != E820Type.Ram || left == 0) continue;
                    ulong n = Math.Min(left, (e.End >> Page.Shift) > e.FirstPfn ? (e.End >> Page.Shift) - e.FirstPfn : 0);
                    if (n == 0) continue;
                    ranges.Add((e.FirstPfn, n));
                    left -= n;
                }
                // ARM and HAP guests are populated in 1 GiB, then 2 MiB extents where possible, so stage 2 / the EPT can map blocks.
                var placed = Paging.Arm.BlockPlacement.Place(ranges, runs,
                    Config.Paging is PagingModeKind.Arm or PagingModeKind.Hap ? Paging.Arm.BlockPlacement.BlockOrders : Array.Empty<int>());
                int a = 0;
                ulong off = 0, done = 0;
                try
                {
                    for (; a < placed.Count; a++, off = 0)
                        while (off < placed[a].Count)
                        {
                            // Up to the next safe point: a stop leaves the p2m holding exactly what was set.
                            ulong n = Math.Min(placed[a].Count - off, (ulong)BuildStepPages - (done & (BuildStepPages - 1)));
                            P2m.SetRange(placed[a].Pfn + off, placed[a].MfnAt(off), n, placed[a].Descending);
                            off += n;
                            done += n;
                            if ((done & (BuildStepPages - 1)) == 0) _build.Step((long)done);
                        }
                }
                catch
                {
                    // Stopped while populating: Destroy frees what the p2m holds, the rest is freed here.
                    for (; a < placed.Count; a++, off = 0)
                        for (; off < placed[a].Count; off++) _machine.Free(new Mfn(placed[a].MfnAt(off)));
                    throw;
                }
                _populatedPages = want;
                Counters.Add(PerfCounter.P2mSet, (long)want);
                key = Config.E820 is null ? "mmio_hole" : "e820";
                InstallE820Identity();
            }
            for (int h = 0; h < Config.Identity.Count; h++)
            {
                key = $"identity[{h}]";
                SetIdentityRange(Config.Identity[h].StartPfn, Config.Identity[h].EndPfn, Config.IdentityStrategy);
            }
            for (int f = 0; f < Config.Framebuffers.Count; f++)
            {
                key = $"framebuffers[{f}]";
                PopulateFramebuffer(new Framebuffer(Config.Framebuffers[f], this));
            }
            Vram.Strategy = Config.VramStrategy;
            Vram.SkipTlbFlush = !Config.VramTlbFlush;
            Vram.WithLogDirty = Config.VramWithLogDirty;
            key = "kernel_pt_pages";
            Kernel.Initialise(X86GuestFormat.Instance);
            key = Config.Paging == PagingModeKind.Shadow ? "shadow_memory" : "paging";
            var mode = PagingModes.Create(Config.Paging, Config.PagingOptions);
            if (mode.GuestFormat != Kernel.Format) Kernel.ConvertTables(mode.GuestFormat);
            mode.Attach(this);
            Mode = mode;
            _build.Complete((long)_populatedPages * 2);
        }
        catch (XenLabException e) when (e.ConfigKey is null)
        {
            e.ConfigKey = key;
            throw;
        }
        finally
        {
            _build = Progress.ProgressReporter.None;
        }
    }

    /// <summary>
    /// xen_set_identity: every range of <see cref="E820Map.IdentityPfnRanges"/> goes to
    /// set_phys_range_identity, dom0-style (from pfn 0). A range 2.6.39 would skip (start past
    /// end, or reaching the tree's end) is skipped. Populated frames under a range are given
    /// back first (see <see cref="BuildPv"/>).
    /// </summary>
    private void InstallE820Identity()
    {
        foreach (var (s, e) in E820.IdentityPfnRanges(initialDomain: true))
        {
            if (s > e || e >= P2mTree.MaxPfn) continue;
            ReleasePopulated(s, e, PerfCounter.P2mIdentityOverwritten);
            SetIdentityRange(s, e, Config.IdentityStrategy);
        }
    }

    /// <summary>Frees the machine frames of populated pfns in [start, end) and marks them INVALID (no tree page allocated).</summary>
    private ulong ReleasePopulated(ulong start, ulong end, PerfCounter counter)
    {
        ulong n = 0;
        for (ulong pfn = start; pfn < end; pfn++)
        {
            var look = P2m.Lookup(pfn);
            if (look.LeafPage != P2mPageKind.Allocated) { pfn |= P2mTree.PfnsPerLeaf - 1; continue; }
            if (look.Kind != P2mEntryKind.Ram) continue;
            P2m.TrySet(pfn, P2mTree.InvalidEntry);
            Types.Forget(pfn);
            _machine.Free(look.Mfn);
            n++;
        }
        _populatedPages -= n;
        Counters.Add(counter, (long)n);
        return n;
    }

    /// <summary>
    /// The PV-style build, as the domain builder and Linux 2.6.39's xen_memory_setup do it
    /// (arch/x86/xen/setup.c, 64-bit):
    /// <list type="number">
    /// <item>nr_pages = memory: pfns 0..nr-1 get the builder's descending mfns whatever the E820
    /// says (xen_build_dynamic_phys_to_machine grafts mfn_list in: a mid page per 1 GiB, a leaf
    /// per 2 MiB, the tail of the last leaf INVALID).</item>
    /// <item>RAM entries are cut at nr_pages; what is cut off counts as extra pages. The extra
    /// region starts at max(4 GiB, nr_pages, the end of every non-RAM entry).</item>
    /// <item>xen_return_unused_memory / xen_release_chunk: populated pfns in the gaps between
    /// entries, from 1 MiB up to nr_pages, [PFN_UP(start), PFN_DOWN(end)), are given back to Xen
    /// and set INVALID (no tree page allocated); they count as extra pages too.</item>
    /// <item>Extra pages are clamped to EXTRA_MEM_RATIO (10) x nr_pages - nr_pages; the balloon
    /// driver gets pfns [PFN_UP(start), PFN_DOWN(start + extra)).</item>
    /// <item>xen_set_identity over the E820 as given (dom0-style, from pfn 0).</item>
    /// </list>
    /// One difference: 2.6.39 writes identity over populated pfns it did not release (those
    /// inside reserved/ACPI/NVS entries, and gaps below 1 MiB) and so loses track of their
    /// frames; XenLab hands those frames back to the host (counted as p2m_identity_overwritten)
    /// so nothing leaks. Lookups and tree shapes are the same either way.
    /// </summary>
    private void BuildPv()
    {
        ulong nr = Math.Min(Config.MemoryMiB << (20 - Page.Shift), P2mTree.MaxPfn - 1);
        var mfns = new Mfn[nr];
        _machine.Allocate(mfns);                              // all or nothing; descending
        for (ulong pfn = 0; pfn < nr; pfn++) P2m.SetMfn(pfn, mfns[pfn]);
        _populatedPages = nr;
        Counters.Add(PerfCounter.P2mSet, (long)nr);

        ulong memEnd = nr << Page.Shift;
        ulong extraStart = Math.Max(E820Map.FourGiB, memEnd);
        ulong extraPages = 0;
        foreach (var e in E820.Entries)
        {
            ulong size = e.Size, end = e.End;
            if (e.Type == E820Type.Ram && end > memEnd)
            {
                ulong delta = Math.Min(size, end - memEnd);
                size -= delta;
                end -= delta;
                extraPages += delta >> Page.Shift;
            }
            if (size > 0 && end > extraStart) extraStart = end;
        }

        // Gaps of the kernel's E820 (the map above, RAM cut at nr_pages, plus the ISA hole as
        // reserved) from 1 MiB to nr_pages: below nr_pages that is the gaps of the map as given.
        ulong lastEnd = E820Map.IsaEnd, released = 0;
        foreach (var e in E820.Entries)
        {
            if (lastEnd >= memEnd) break;
            ulong end = Math.Min(memEnd, e.Start);
            if (lastEnd < end) released += ReleaseChunk(lastEnd, end);
            lastEnd = Math.Max(lastEnd, e.End);
        }
        if (lastEnd < memEnd) released += ReleaseChunk(lastEnd, memEnd);
        extraPages += released;

        const ulong extraMemRatio = 10;
        ulong extraLimit = Math.Min(extraMemRatio * nr, nr + extraPages);
        extraPages = extraLimit >= nr ? extraLimit - nr : 0;
        // xen_add_extra_mem then stores INVALID for the region's pfns with
        // __set_phys_to_machine, which allocates nothing and finds nothing populated there.
        ulong first = (extraStart + Page.OffsetMask) >> Page.Shift;
        ulong limit = Math.Min((extraStart + (extraPages << Page.Shift)) >> Page.Shift, P2mTree.MaxPfn);
        _ballooned.Clear();
        _regionFirst = first;
        _regionNext = Math.Max(first, limit);

        InstallE820Identity();
        _pvMaxPages = _populatedPages + BalloonListCount;
        Trace.Add(TraceKind.Balloon, -1, 0, first, limit, released, "pv setup: extra region");
    }

    /// <summary>xen_release_chunk(start, end): give back populated pfns [PFN_UP(start), PFN_DOWN(end)).</summary>
    private ulong ReleaseChunk(ulong startAddress, ulong endAddress)
    {
        ulong start = (startAddress + Page.OffsetMask) >> Page.Shift, end = endAddress >> Page.Shift;
        return end <= start ? 0 : ReleasePopulated(start, end, PerfCounter.BalloonReleasedAtSetup);
    }

    /// <summary>
    /// Every pfn a balloon up to the ceiling could populate, in the order it would: HVM builder,
    /// the E820 RAM pfns not populated, lowest first; PV builder, the balloon list, head first.
    /// </summary>
    public IEnumerable<ulong> BalloonCandidatePfns()
    {
        if (Config.Builder == DomainBuilder.Pv)
        {
            foreach (ulong pfn in BalloonListHeadFirst()) yield return pfn;
            yield break;
        }
        foreach (ulong pfn in E820.RamPfns())
            if (P2mTree.Classify(P2m.Get(pfn)) != P2mEntryKind.Ram) yield return pfn;
    }

    /// <summary>The PV balloon driver's list, next page to be populated first.</summary>
    public IReadOnlyList<ulong> BalloonedPfnsNextFirst()
    {
        var list = new List<ulong>((int)Math.Min(BalloonListCount, int.MaxValue));
        foreach (ulong pfn in BalloonListHeadFirst()) list.Add(pfn);
        return list;
    }

    private IEnumerable<ulong> BalloonListHeadFirst()
    {
        for (int i = _ballooned.Count - 1; i >= 0; i--) yield return _ballooned[i];
        for (ulong pfn = _regionNext; pfn > _regionFirst; pfn--) yield return pfn - 1;
    }

    /// <summary>
    /// Switches paging mode while the domain runs. Guest memory and the guest's tables are kept;
    /// switching to or from ARM converts the tables in place between x86-64 and AArch64 formats
    /// (same four levels of 512 entries), keeping every mapping and its accessed/dirty state.
    /// Dirty tracking survives: log-dirty harvests the old mode's dirty pages into its bitmap and
    /// re-arms every page in the new mode (exact); each dirty-VRAM range is disarmed under the old
    /// instance and re-armed under the new one, its next query reporting all dirty.
    /// </summary>
    public void SetPagingMode(PagingModeKind kind, PagingOptions? options = null)
    {
        using var op = EnterOperation();
        var problems = (options ?? Config.PagingOptions).Problems();
        if (problems.Count > 0)
            throw new InvalidConfigurationException($"Domain '{Name}' cannot switch paging mode: {string.Join("; ", problems)}. Nothing changed.");
        var next = PagingModes.Create(kind, options ?? Config.PagingOptions);
        var old = Mode;
        Vram.BeforeModeSwitch();
        LogDirty.BeforeModeSwitch();
        Mode = null;                                   // table conversion writes go straight to RAM
        old?.Detach();
        FlushAllTlbs();
        if (next.GuestFormat != Kernel.Format) Kernel.ConvertTables(next.GuestFormat);
        try
        {
            next.Attach(this);
            Mode = next;
            // Re-arming is part of the switch: it can be refused too (an ARM domain with VLPT
            // lookups needs a slice of the window to trace), and then the switch is undone.
            LogDirty.AfterModeSwitch();
            Vram.AfterModeSwitch();
        }
        catch
        {
            // Nothing half-switched: take the new mode down again if it got that far, then go
            // back to the old mode (re-attach from scratch) and re-arm what was armed under it.
            if (ReferenceEquals(Mode, next))
            {
                Vram.BeforeModeSwitch();
                LogDirty.BeforeModeSwitch();
                Mode = null;
                next.Detach();
                FlushAllTlbs();
            }
            if (old is not null)
            {
                if (old.GuestFormat != Kernel.Format) Kernel.ConvertTables(old.GuestFormat);
                old.Attach(this);
                Mode = old;
                LogDirty.AfterModeSwitch();
                Vram.AfterModeSwitch();
            }
            throw;
        }
        Config.Paging = kind;
        if (options is not null) Config.PagingOptions = options;
        foreach (var v in _vcpus) v.FlushTlb();
        Counters.Inc(PerfCounter.PagingModeSwitch);
        Trace.Add(TraceKind.ModeSwitch, -1, 0, 0, 0, (ulong)kind, $"{old?.Kind}->{kind} {next.Options}");
    }

    /// <summary>
    /// Releases every machine frame the domain holds and empties its p2m, so no entry names a
    /// frame another domain may own next. Under the domain's lock (XenHost.DestroyDomain), so
    /// an operation on another thread either finished before or fails with DomainRemoved after.
    /// </summary>
    internal void Destroy()
    {
        if (_removed) return;
        Mode?.Detach();
        Mode = null;
        foreach (var v in _vcpus) v.FlushTlbInOperation();   // no cached translation outlives the frames
        foreach (var (start, end) in RamRuns())
            for (ulong pfn = start; pfn < end; pfn++)
            {
                TryGetRam(pfn, out var mfn);
                P2m.Set(pfn, P2mTree.InvalidEntry);
                _machine.Free(mfn);
            }
        _populatedPages = 0;
        _removed = true;
    }

    /// <summary>Installs an identity range; returns the pfns newly answering identity.</summary>
    public ulong SetIdentityRange(ulong startPfn, ulong endPfn, IdentityStrategy strategy)
    {
        using var op = EnterOperation();
        if (startPfn > endPfn || endPfn > P2mTree.MaxPfn)
            throw new InvalidConfigurationException($"Identity range [gfn 0x{startPfn:x}, 0x{endPfn:x}) is reversed or goes beyond the p2m tree's reach (gfn 0x{P2mTree.MaxPfn:x}, 512 GiB).");
        if (!Enum.IsDefined(strategy)) throw new InvalidConfigurationException($"Identity strategy {(int)strategy} is not EdgesFirst or Coarse.");
        // Identity over populated RAM would leak its frames: refuse before touching anything.
        for (ulong pfn = startPfn; pfn < endPfn; pfn++)
        {
            ulong e = P2m.Get(pfn);
            if (P2mTree.Classify(e) == P2mEntryKind.Ram)
                throw new InvalidConfigurationException(
                    $"Identity range [gfn 0x{startPfn:x}, 0x{endPfn:x}) covers populated RAM at gfn 0x{pfn:x} (mfn 0x{e:x}); balloon it out first.");
            if (pfn >= P2mTree.MaxPfn) break;
            // Skip whole shared pages quickly.
            var look = P2m.Lookup(pfn);
            if (look.LeafPage != P2mPageKind.Allocated) pfn |= P2mTree.PfnsPerLeaf - 1;
        }
        Counters.Inc(PerfCounter.P2mIdentitySwitch);
        ulong changed = P2m.SetIdentityRange(startPfn, endPfn, strategy);
        Trace.Add(TraceKind.IdentityHole, -1, 0, startPfn, endPfn, changed, strategy.ToString());
        // The coarse switch may change pfns outside the range: tell the mode about whole 1 GiB spans.
        ulong lo = startPfn & ~(P2mTree.PfnsPerMid - 1), hi = (endPfn + P2mTree.PfnsPerMid - 1) & ~(P2mTree.PfnsPerMid - 1);
        Mode?.OnP2mChanged(lo, Math.Min(hi, P2mTree.MaxPfn));
        FlushAllTlbs();
        return changed;
    }

    /// <summary>The p2m type of a gfn: from the mode's own entries where it keeps them (HAP's EPT), else from <see cref="Types"/>.</summary>
    public P2mType GetP2mType(ulong gfn)
    {
        var kind = P2mTree.Classify(P2m.Get(gfn));
        if (kind == P2mEntryKind.Missing) return P2mType.Invalid;
        if (kind == P2mEntryKind.Identity) return Types.IdentityType;
        return Mode is IP2mTypeOwner owner ? owner.TypeOf(gfn) : Types.GetRam(gfn);
    }

    /// <summary>
    /// p2m_change_type: sets a RAM gfn's type and tells the mode, which rewrites its entry and
    /// flushes what it must. Only RAM types can be set (ram_rw, ram_ro, ram_logdirty).
    /// </summary>
    public void SetP2mType(ulong gfn, P2mType type)
    {
        using var op = EnterOperation();
        if (P2mTree.Classify(P2m.Get(gfn)) != P2mEntryKind.Ram)
            throw new InvalidConfigurationException($"gfn 0x{gfn:x} is not RAM ({P2mTree.Classify(P2m.Get(gfn))}); only RAM pages change type.");
        if (type is not (P2mType.RamRw or P2mType.RamRo or P2mType.RamLogDirty))
            throw new InvalidConfigurationException($"p2m type {P2mTypeInfo.Name(type)} cannot be set on RAM; use ram_rw, ram_ro or ram_logdirty.");
        var old = GetP2mType(gfn);
        if (old == type) return;
        Counters.Inc(PerfCounter.P2mTypeChange);
        Trace.Add(TraceKind.P2mTypeChange, -1, 0, gfn, 0, (ulong)type, P2mTypeInfo.Transition(old, type));
        if (Mode is IP2mTypeOwner owner)
        {
            if (owner.SetType(gfn, type)) Mode.FlushTlbs();
            return;
        }
        Types.Set(gfn, type);
        Mode?.OnP2mChanged(gfn, gfn + 1);
    }

    /// <summary>
    /// The first guest write to a ram_logdirty page (an EPT violation or its equivalent in the
    /// other modes): the type goes back to ram_rw so later writes run at full speed.
    /// </summary>
    public void OnLogDirtyWrite(ulong gfn)
    {
        using var op = EnterOperation();
        if (GetP2mType(gfn) != P2mType.RamLogDirty) return;
        MarkDirtyAtFault(gfn);
        SetP2mType(gfn, P2mType.RamRw);
    }

    /// <summary>
    /// paging_mark_dirty for a first write the caller has already turned ram_logdirty -> ram_rw
    /// (HAP's PML flush does the type change itself): the fault counted, the bitmap tree and the
    /// VRAM ranges marked.
    /// </summary>
    internal void MarkDirtyAtFault(ulong gfn)
    {
        Counters.Inc(PerfCounter.LogDirtyFault);
        LogDirty.MarkAtFault(gfn);                                    // paging_mark_dirty, now
        if (Vram.Ranges.Count != 0) Vram.NoteLogDirtyFault(gfn);
    }

    /// <summary>
    /// p2m_change_type over a range: every RAM gfn of type <paramref name="from"/> in [start, end)
    /// becomes <paramref name="to"/>, and the mode is told once. Returns how many changed; under
    /// HAP a change between ram_rw and ram_logdirty is p2m_change_type_range, lazy, and returns
    /// the EPT entries it marked for recalculation instead (its cost: no page is visited).
    /// </summary>
    public int ChangeP2mTypes(ulong startGfn, ulong endGfn, P2mType from, P2mType to, bool flush)
    {
        using var op = EnterOperation();
        if (startGfn > endGfn) throw new InvalidConfigurationException($"gfn range [0x{startGfn:x}, 0x{endGfn:x}) is reversed.");
        if (to is not (P2mType.RamRw or P2mType.RamRo or P2mType.RamLogDirty))
            throw new InvalidConfigurationException($"p2m type {P2mTypeInfo.Name(to)} cannot be set on RAM; use ram_rw, ram_ro or ram_logdirty.");
        endGfn = Math.Min(endGfn, P2mTree.MaxPfn);                    // nothing is RAM beyond the tree's reach
        var owner = Mode as IP2mTypeOwner;
        if (owner is not null && P2mTypeInfo.IsChangeable(from) && P2mTypeInfo.IsChangeable(to))
        {
            if (startGfn >= endGfn || from == to) return 0;
            long marked = owner.ChangeTypeRange(startGfn, endGfn, from, to);
            Counters.Inc(PerfCounter.P2mTypeChange);
            Trace.Add(TraceKind.P2mTypeChange, -1, 0, startGfn, endGfn, (ulong)marked, P2mTypeInfo.Transition(from, to) + " (range, lazy)");
            if (marked > 0 && flush) Mode!.FlushTlbs();               // ept_sync_domain
            return (int)marked;
        }
        int n = 0;
        bool needFlush = false;
        ulong lo = ulong.MaxValue, hi = 0;
        for (ulong g = startGfn; g < endGfn; g++)
        {
            // A leaf page the tree shares (missing or identity) holds no RAM: skip all of it.
            if ((g == startGfn || (g & (P2mTree.PfnsPerLeaf - 1)) == 0) && P2m.Lookup(g).LeafPage != P2mPageKind.Allocated)
            {
                g |= P2mTree.PfnsPerLeaf - 1;
                continue;
            }
            if (P2mTree.Classify(P2m.Get(g)) != P2mEntryKind.Ram || GetP2mType(g) != from) continue;
            if (owner is not null) needFlush |= owner.SetType(g, to);
            else Types.Set(g, to);
            n++;
            lo = Math.Min(lo, g);
            hi = g;
        }
        if (n == 0) return 0;
        Counters.Add(PerfCounter.P2mTypeChange, n);
        Trace.Add(TraceKind.P2mTypeChange, -1, 0, startGfn, endGfn, (ulong)n, P2mTypeInfo.Transition(from, to));
        if (owner is not null) { if (needFlush && flush) Mode!.FlushTlbs(); }
        else Mode?.OnP2mChanged(lo, hi + 1, flush);                   // the span that changed, not the span asked
        return n;
    }

    /// <summary>The same for a list of gfns (in any order; the mode is told the span they cover).</summary>
    public int ChangeP2mTypes(IReadOnlyList<ulong> gfns, P2mType from, P2mType to, bool flush)
    {
        using var op = EnterOperation();
        ArgumentNullException.ThrowIfNull(gfns);
        if (to is not (P2mType.RamRw or P2mType.RamRo or P2mType.RamLogDirty))
            throw new InvalidConfigurationException($"p2m type {P2mTypeInfo.Name(to)} cannot be set on RAM; use ram_rw, ram_ro or ram_logdirty.");
        var owner = Mode as IP2mTypeOwner;
        int n = 0;
        bool needFlush = false;
        ulong lo = ulong.MaxValue, hi = 0;
        foreach (ulong g in gfns)
        {
            if (P2mTree.Classify(P2m.Get(g)) != P2mEntryKind.Ram || GetP2mType(g) != from) continue;
            if (owner is not null) needFlush |= owner.SetType(g, to);   // p2m_change_type_one, flushed once below
            else Types.Set(g, to);
            n++;
            lo = Math.Min(lo, g);
            hi = Math.Max(hi, g);
        }
        if (n == 0) return 0;
        Counters.Add(PerfCounter.P2mTypeChange, n);
        if (owner is not null) { if (needFlush && flush) Mode!.FlushTlbs(); }
        else Mode?.OnP2mChanged(lo, hi + 1, flush);
        return n;
    }

    /// <summary>Maximal runs [start, end) of gfns that are RAM in the p2m, ascending.</summary>
    public List<(ulong Start, ulong End)> RamRuns()
    {
        using var op = EnterOperation();
        var runs = new List<(ulong, ulong)>();
        ulong start = 0, next = ulong.MaxValue;
        foreach (var (pfn, _) in P2m.EnumerateRam())
        {
            if (pfn != next)
            {
                if (next != ulong.MaxValue) runs.Add((start, next));
                start = pfn;
            }
            next = pfn + 1;
        }
        if (next != ulong.MaxValue) runs.Add((start, next));
        return runs;
    }

    /// <summary>The highest gfn with RAM behind it (Xen's max_mapped_pfn).</summary>
    public ulong MaxMappedPfn
    {
        get
        {
            foreach (var (pfn, _) in P2m.EnumerateRamDescending()) return pfn;
            return 0;
        }
    }

    // ---- framebuffers ---------------------------------------------------------------------

    public Framebuffer? FindFramebuffer(string name)
    {
        using var op = EnterOperation();
        foreach (var f in _framebuffers) if (string.Equals(f.Name, name, StringComparison.OrdinalIgnoreCase)) return f;
        return null;
    }

    /// <summary>
    /// Plugs a monitor in: its gfn range is backed by RAM (frames are populated where the p2m has
    /// none or an identity entry, as a PCI BAR of VRAM would be), and it can then be tracked.
    /// </summary>
    public Framebuffer AddFramebuffer(FramebufferConfig config)
    {
        using var op = EnterOperation();
        ArgumentNullException.ThrowIfNull(config);
        var probe = Config.Clone();
        probe.Framebuffers = new List<FramebufferConfig>(Config.Framebuffers) { config };
        var problems = probe.Problems();
        if (problems.Count > 0) throw new InvalidConfigurationException($"Framebuffer '{config.Name}' cannot be added: {string.Join("; ", problems)}.");
        var fb = new Framebuffer(config, this);
        PopulateFramebuffer(fb);
        Config.Framebuffers.Add(config);
        return fb;
    }

    private void PopulateFramebuffer(Framebuffer fb)
    {
        ulong first = fb.Config.FirstGfn, pages = fb.Config.Pages;
        if (first + pages > P2mTree.MaxPfn)
            throw new InvalidConfigurationException($"Framebuffer '{fb.Name}' at gfn 0x{first:x} is beyond the p2m tree's reach.");
        foreach (var other in _framebuffers)
            if (first < other.Config.FirstGfn + other.Config.Pages && other.Config.FirstGfn < first + pages)
                throw new InvalidConfigurationException($"Framebuffer '{fb.Name}' overlaps framebuffer '{other.Name}'.");
        var need = new List<ulong>();
        for (ulong g = first; g < first + pages; g++)
            if (P2mTree.Classify(P2m.Get(g)) != P2mEntryKind.Ram) need.Add(g);
        var mfns = new Mfn[need.Count];
        _machine.Allocate(mfns);                          // all or nothing
        for (int i = 0; i < need.Count; i++)
        {
            fb.Populated.Add((need[i], P2m.Get(need[i])));
            P2m.SetMfn(need[i], mfns[i]);
        }
        Counters.Add(PerfCounter.FramebufferPages, need.Count);
        Counters.Add(PerfCounter.P2mSet, need.Count);
        if (need.Count > 0) Mode?.OnP2mChanged(first, first + pages);
        _framebuffers.Add(fb);
    }

    /// <summary>Unplugs a monitor: stops tracking its range and gives back the frames plugging it in populated.</summary>
    public void RemoveFramebuffer(string name)
    {
        using var op = EnterOperation();
        var fb = FindFramebuffer(name) ?? throw new InvalidConfigurationException($"Domain '{Name}' has no framebuffer '{name}'.");
        ulong first = fb.Config.FirstGfn, pages = fb.Config.Pages;
        var range = Vram.Find(first, pages);
        if (range is not null) Vram.Stop(range);
        foreach (var (gfn, previous) in fb.Populated)
        {
            TryGetRam(gfn, out var mfn);
            Types.Forget(gfn);
            if (P2mTree.Classify(previous) == P2mEntryKind.Identity) P2m.Set(gfn, P2mTree.IdentityFrame(gfn));
            else P2m.Set(gfn, P2mTree.InvalidEntry);
            _machine.Free(mfn);
        }
        if (fb.Populated.Count > 0) Mode?.OnP2mChanged(first, first + pages);
        FlushAllTlbs();
        _framebuffers.Remove(fb);
        Config.Framebuffers.RemoveAll(f => string.Equals(f.Name, fb.Name, StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>Asks the guest kernel to map a framebuffer at <paramref name="va"/> (several aliases allowed).</summary>
    public void MountFramebuffer(string name, ulong va, bool writable = true)
    {
        using var op = EnterOperation();
        var fb = FindFramebuffer(name) ?? throw new InvalidConfigurationException($"Domain '{Name}' has no framebuffer '{name}'.");
        Kernel.Map(va, fb.Config.FirstGfn, fb.Config.Pages, writable ? Guest.MapFlags.Writable : Guest.MapFlags.None);
    }

    public bool IsFramebufferGfn(ulong gfn)
    {
        foreach (var f in _framebuffers)
            if (gfn >= f.Config.FirstGfn && gfn < f.Config.FirstGfn + f.Config.Pages) return true;
        return false;
    }

    // ---- guest-physical access -------------------------------------------------------

    /// <summary>Resolves a gfn to RAM; false for missing and identity (MMIO) frames.</summary>
    public bool TryGetRam(ulong gfn, out Mfn mfn)
    {
        ulong e = P2m.Get(gfn);
        if ((e & (P2mTree.IdentityFrameBit | P2mTree.ForeignFrameBit)) == 0)   // excludes INVALID too
        {
            mfn = new Mfn(e);
            return true;
        }
        mfn = Mfn.Invalid;
        return false;
    }

    // TryGetRam, TryReadPhysU64, TryWritePhysU64, GetP2mType and Classify are the primitives the
    // paging modes call inside walks: no lock (the caller is inside an operation; a thread that
    // shares the domain holds EnterOperation around them). A removed domain's p2m is empty.
    /// <summary>Reads 8 bytes of RAM; false (nothing read) unless every byte is RAM. An entry may straddle two pages.</summary>
    public bool TryReadPhysU64(ulong gpa, out ulong value)
    {
        ThrowIfRemoved();
        int off = (int)(gpa & Page.OffsetMask);
        if (off > Page.Size - 8) return TryReadPhysU64Straddling(gpa, out value);
        if (!TryGetRam(gpa >> Page.Shift, out var mfn)) { value = 0; return false; }
        value = BinaryPrimitives.ReadUInt64LittleEndian(_machine.Read(mfn).Slice(off, 8));
        return true;
    }

    /// <summary>Writes 8 bytes of RAM raw (no mode sees it); false (nothing written) unless every byte is RAM.</summary>
    public bool TryWritePhysU64(ulong gpa, ulong value)
    {
        ThrowIfRemoved();
        int off = (int)(gpa & Page.OffsetMask);
        if (off > Page.Size - 8) return TryWritePhysU64Straddling(gpa, value);
        if (!TryGetRam(gpa >> Page.Shift, out var mfn)) return false;
        BinaryPrimitives.WriteUInt64LittleEndian(_machine.Write(mfn).Slice(off, 8), value);
        return true;
    }

    // The slow paths for the last 7 bytes of a page: the bytes are split over this page and the next.
    private bool TryReadPhysU64Straddling(ulong gpa, out ulong value)
    {
        value = 0;
        int first = Page.Size - (int)(gpa & Page.OffsetMask);
        ulong next = (gpa >> Page.Shift) + 1;
        if (next == 0 || !TryGetRam(gpa >> Page.Shift, out var a) || !TryGetRam(next, out var b)) return false;
        Span<byte> bytes = stackalloc byte[8];
        _machine.Read(a).Slice(Page.Size - first, first).CopyTo(bytes);
        _machine.Read(b).Slice(0, 8 - first).CopyTo(bytes[first..]);
        value = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        return true;
    }

    private bool TryWritePhysU64Straddling(ulong gpa, ulong value)
    {
        int first = Page.Size - (int)(gpa & Page.OffsetMask);
        ulong next = (gpa >> Page.Shift) + 1;
        if (next == 0 || !TryGetRam(gpa >> Page.Shift, out var a) || !TryGetRam(next, out var b)) return false;
        Span<byte> bytes = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
        bytes[..first].CopyTo(_machine.Write(a).Slice(Page.Size - first, first));
        bytes[first..].CopyTo(_machine.Write(b).Slice(0, 8 - first));
        return true;
    }

    /// <summary>
    /// The hypervisor setting accessed/dirty bits in a guest entry on the guest's behalf (shadow
    /// mode's guest walk): a raw write that log-dirty mode must still see.
    /// </summary>
    internal bool WriteAccessedDirty(ulong gpa, ulong value)
    {
        if (!TryWritePhysU64(gpa, value)) return false;
        if (GetP2mType(gpa >> Page.Shift) == P2mType.RamLogDirty) OnLogDirtyWrite(gpa >> Page.Shift);
        if (Mode is Paging.Shadow.ShadowMode shadow) shadow.OnHypervisorWrite(gpa >> Page.Shift);   // shadow log-dirty has no types
        return true;
    }

    /// <summary>Reads guest-physical memory; checks every page first, so a Missing result reads nothing.</summary>
    public PhysAccessResult ReadPhysical(ulong gpa, Span<byte> destination)
    {
        using var op = EnterOperation();
        var check = CheckRange(gpa, (ulong)destination.Length);
        if (check.Status == PhysAccessStatus.Missing) return check;
        int done = 0;
        while (done < destination.Length)
        {
            ulong addr = gpa + (ulong)done;
            int off = (int)(addr & Page.OffsetMask);
            int n = Math.Min(Page.Size - off, destination.Length - done);
            var dst = destination.Slice(done, n);
            if (TryGetRam(addr >> Page.Shift, out var mfn)) _machine.Read(mfn).Slice(off, n).CopyTo(dst);
            else dst.Fill(0xFF);                                          // unclaimed MMIO reads all ones
            Counters.Inc(PerfCounter.GuestPhysRead);
            done += n;
        }
        return check;
    }

    /// <summary>
    /// A guest write to guest-physical memory (through its direct map): the paging mode sees it,
    /// so a write to a shadowed page table is emulated and revalidated, and a write to a
    /// log-dirty page is logged. Checks every page first, so a Missing result writes nothing.
    /// </summary>
    public PhysAccessResult WriteGuestPhysical(ulong gpa, ReadOnlySpan<byte> source, Vcpu? writer = null)
    {
        using var op = EnterOperation();
        return WriteGuestPhysicalInOperation(gpa, source, writer);
    }

    /// <summary>The same, for a caller already inside an operation (the interpreter's emulated writes).</summary>
    internal PhysAccessResult WriteGuestPhysicalInOperation(ulong gpa, ReadOnlySpan<byte> source, Vcpu? writer)
    {
        var check = CheckRange(gpa, (ulong)source.Length);
        if (check.Status == PhysAccessStatus.Missing) return check;
        int done = 0;
        while (done < source.Length)
        {
            ulong addr = gpa + (ulong)done;
            ulong gfn = addr >> Page.Shift;
            int off = (int)(addr & Page.OffsetMask);
            int n = Math.Min(Page.Size - off, source.Length - done);
            if (TryGetRam(gfn, out var mfn))
            {
                if (Vram.Ranges.Count != 0) Vram.NoteDirectWrite(gfn);
                var action = Mode?.BeforeGuestWrite(gfn, writer) ?? GuestWriteAction.Direct;
                if (action != GuestWriteAction.Discard)
                    source.Slice(done, n).CopyTo(_machine.Write(mfn).Slice(off, n));
                if (action == GuestWriteAction.Validate) Mode!.AfterGuestWrite(gfn, off, n);
            }
            Counters.Inc(PerfCounter.GuestPhysWrite);
            done += n;
        }
        return check;
    }

    /// <summary>Writes one 8-byte entry as the guest would (see <see cref="WriteGuestPhysical"/>).</summary>
    public bool WriteGuestPhysU64(ulong gpa, ulong value, Vcpu? writer = null)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        return WriteGuestPhysical(gpa, b, writer).Status != PhysAccessStatus.Missing;
    }

    /// <summary>
    /// An access reached a device (identity) frame. For type hvm that frame is mmio_dm: the
    /// access exits to the device model, which XenLab defines as no device at all (reads
    /// return all ones, writes are discarded: what the callers already do), and the exit is
    /// counted. For type pv the frame is mmio_direct: the access goes to the host's frame
    /// without an exit (unclaimed, so it reads all ones too). One call per access and page.
    /// </summary>
    internal void NoteDeviceAccess()
    {
        if (Types.IdentityType == P2mType.MmioDm) Counters.Inc(PerfCounter.DmExit);
    }

    /// <summary>What a gfn is to an access: RAM (Ok), identity (Mmio) or nothing (Missing).</summary>
    public PhysAccessStatus Classify(ulong gfn) => P2mTree.Classify(P2m.Get(gfn)) switch
    {
        P2mEntryKind.Ram => PhysAccessStatus.Ok,
        P2mEntryKind.Identity => PhysAccessStatus.Mmio,
        _ => PhysAccessStatus.Missing,
    };

    private PhysAccessResult CheckRange(ulong gpa, ulong length)
    {
        if (length == 0) return new PhysAccessResult(PhysAccessStatus.Ok, 0);
        if (gpa + length < gpa) return new PhysAccessResult(PhysAccessStatus.Missing, gpa >> Page.Shift);
        var status = PhysAccessStatus.Ok;
        for (ulong g = gpa >> Page.Shift; g <= (gpa + length - 1) >> Page.Shift; g++)
        {
            var kind = P2mTree.Classify(P2m.Get(g));
            if (kind == P2mEntryKind.Missing || kind == P2mEntryKind.Foreign)
            {
                Counters.Inc(PerfCounter.GuestPhysMissing);
                return new PhysAccessResult(PhysAccessStatus.Missing, g);
            }
            if (kind == P2mEntryKind.Identity)
            {
                status = PhysAccessStatus.Mmio;
                Counters.Inc(PerfCounter.GuestPhysMmio);
                NoteDeviceAccess();
            }
        }
        return new PhysAccessResult(status, 0);
    }

    // ---- balloon ------------------------------------------------------------------------

    /// <summary>
    /// Moves the domain's reservation to <paramref name="targetPages"/>, as the guest's balloon
    /// driver does. Going up takes, with the HVM builder, the lowest E820 RAM pfns not
    /// populated; with the PV builder, the head of the balloon list (2.6.39's balloon driver:
    /// the extra region above 4 GiB, highest pfn first, pages ballooned out coming back first); the driver's
    /// BUG_ON(phys_to_machine_mapping_valid(pfn)) fires (and nothing changes) if any of them
    /// already has a valid entry, which is how the seed's "nasty condition" shows. Going down
    /// releases the highest populated RAM pfns outside the guest kernel's page-table area.
    /// </summary>
    public BalloonResult Balloon(ulong targetPages)
    {
        using var op = EnterOperation();
        if (targetPages > MaxPages)
            throw new InvalidConfigurationException($"Balloon target {targetPages} pages exceeds the E820's {MaxPages} RAM pages (maxmem).");
        if (targetPages < (ulong)Config.KernelPtPages + 256)
            throw new InvalidConfigurationException($"Balloon target {targetPages} pages is below what the guest kernel keeps ({Config.KernelPtPages + 256} pages).");
        if (targetPages == _populatedPages) return new BalloonResult(BalloonOutcome.Unchanged, 0, P2mTree.InvalidEntry, 0);
        return targetPages > _populatedPages ? BalloonUp(targetPages - _populatedPages) : BalloonDown(_populatedPages - targetPages);
    }

    private BalloonResult BalloonUp(ulong pages)
    {
        var pfns = new List<ulong>();
        if (Config.Builder == DomainBuilder.Pv)
        {
            // increase_reservation: the pfns are the balloon list's first pages, head first.
            foreach (ulong pfn in BalloonListHeadFirst())
            {
                if ((ulong)pfns.Count == pages) break;
                pfns.Add(pfn);
            }
        }
        else
        {
            foreach (ulong pfn in E820.RamPfns())
            {
                if ((ulong)pfns.Count == pages) break;
                if (P2mTree.Classify(P2m.Get(pfn)) != P2mEntryKind.Ram) pfns.Add(pfn);
            }
        }
        foreach (ulong pfn in pfns)
        {
            ulong e = P2m.Get(pfn);
            if (e != P2mTree.InvalidEntry)
            {
                Counters.Inc(PerfCounter.BalloonRefused);
                Trace.Add(TraceKind.Balloon, -1, 0, pfn, 0, e, "refused: phys_to_machine_mapping_valid");
                return new BalloonResult(BalloonOutcome.RefusedMappingValid, pfn, e, 0);
            }
        }
        var mfns = new Mfn[pfns.Count];
        _machine.Allocate(mfns);
        if (Config.Builder == DomainBuilder.Pv)
        {
            int fromStack = Math.Min(pfns.Count, _ballooned.Count);
            _ballooned.RemoveRange(_ballooned.Count - fromStack, fromStack);
            _regionNext -= (ulong)(pfns.Count - fromStack);
        }
        for (int i = 0; i < pfns.Count; i++)
        {
            P2m.SetMfn(pfns[i], mfns[i]);
            Mode?.OnP2mChanged(pfns[i], pfns[i] + 1);
        }
        _populatedPages += (ulong)pfns.Count;
        Trace.Add(TraceKind.Balloon, -1, 0, pfns.Count > 0 ? pfns[0] : 0, 0, (ulong)pfns.Count, "up");
        Counters.Add(PerfCounter.BalloonUp, pfns.Count);
        Counters.Add(PerfCounter.P2mSet, pfns.Count);
        return new BalloonResult(BalloonOutcome.Done, 0, P2mTree.InvalidEntry, pfns.Count);
    }

    private BalloonResult BalloonDown(ulong pages)
    {
        var pfns = new List<ulong>();
        foreach (var (pfn, _) in P2m.EnumerateRamDescending())
        {
            if ((ulong)pfns.Count == pages) break;
            if (Kernel.OwnsPfn(pfn) || IsFramebufferGfn(pfn)) continue;
            // HVM builder: only E820 RAM. PV: any populated page (the extra region above 4 GiB
            // is RAM in the guest's own E820, not in the one the domain was given).
            if (Config.Builder != DomainBuilder.Pv && !E820.IsRam(pfn)) continue;
            pfns.Add(pfn);
        }
        foreach (ulong pfn in pfns)
        {
            TryGetRam(pfn, out var mfn);
            P2m.Set(pfn, P2mTree.InvalidEntry);
            Types.Forget(pfn);
            Mode?.OnP2mChanged(pfn, pfn + 1);
            _machine.Free(mfn);
            if (Config.Builder == DomainBuilder.Pv) _ballooned.Add(pfn);     // balloon_append: to the head
        }
        _populatedPages -= (ulong)pfns.Count;
        Counters.Add(PerfCounter.BalloonDown, pfns.Count);
        FlushAllTlbs();
        return new BalloonResult(BalloonOutcome.Done, 0, P2mTree.InvalidEntry, -pfns.Count);
    }

    public void FlushAllTlbs()
    {
        using var op = EnterOperation();
        foreach (var v in _vcpus) v.FlushTlbInOperation();
    }

    public override string ToString() => $"{Name} (domid {Id})";
}

/// <summary>A plugged-in monitor: its geometry, where the guest mapped it, and the frames plugging it in populated.</summary>
public sealed class Framebuffer
{
    internal Framebuffer(FramebufferConfig config, Domain owner)
    {
        Config = config;
        _owner = owner;
    }

    private readonly Domain _owner;
    public FramebufferConfig Config { get; }
    public string Name => Config.Name;
    public ulong FirstGfn => Config.FirstGfn;
    public ulong Pages => Config.Pages;
    /// <summary>Virtual addresses where the guest's tables map the whole framebuffer now (read from the tables).</summary>
    public List<ulong> Mounts => MappedAt(writableOnly: false);

    /// <summary>Where the guest maps all of it writable: what seed 003's design looks for.</summary>
    public List<ulong> WritableMounts => MappedAt(writableOnly: true);

    private List<ulong> MappedAt(bool writableOnly)
    {
        using var op = _owner.EnterOperation();
        var list = new List<ulong>();
        foreach (var m in _owner.Kernel.Mappings())
        {
            if (writableOnly && !m.Writable) continue;
            if (m.Gfn <= FirstGfn && m.Gfn + m.Count >= FirstGfn + Pages)
                list.Add(m.VirtualAddress + ((FirstGfn - m.Gfn) << Page.Shift));
        }
        return list;
    }
    internal List<(ulong Gfn, ulong Previous)> Populated { get; } = new();
    public override string ToString() => $"{Name}: {Config.Width}x{Config.Height}x{Config.Bpp} at gfn 0x{FirstGfn:x} ({Pages} pages)";
}

public enum BalloonOutcome
{
    Done,
    Unchanged,
    /// <summary>The guest's balloon driver hit BUG_ON(phys_to_machine_mapping_valid(pfn)); nothing changed.</summary>
    RefusedMappingValid,
}

/// <summary>What a balloon request did: pages added (positive) or released (negative), or why it was refused.</summary>
public readonly record struct BalloonResult(BalloonOutcome Outcome, ulong OffendingPfn, ulong OffendingEntry, long PagesChanged)
{
    public string Describe() => Outcome switch
    {
        BalloonOutcome.RefusedMappingValid =>
            $"balloon driver BUG_ON(phys_to_machine_mapping_valid(0x{OffendingPfn:x})): the p2m answers 0x{OffendingEntry:x} " +
            $"({P2mTree.Classify(OffendingEntry)}) for a pfn it was about to populate (never populated before)",
        BalloonOutcome.Unchanged => "already at target",
        _ => PagesChanged >= 0 ? $"populated {PagesChanged} page(s)" : $"released {-PagesChanged} page(s)",
    };
}

/// <summary>One operation in progress on a domain (<see cref="Domain.EnterOperation"/>): dispose to leave it.</summary>
public readonly struct DomainOperation : IDisposable
{
    private readonly object? _gate;
    internal DomainOperation(object gate) => _gate = gate;
    public void Dispose()
    {
        if (_gate is not null) Monitor.Exit(_gate);
    }
}
