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
        Types = new P2mTypeMap();
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
    /// <summary>p2m types beyond the defaults (ram_rw for RAM, mmio_direct for identity).</summary>
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
    public ulong MaxPages => E820.RamBytes >> Page.Shift;
    /// <summary>Machine frames the paging mode holds for this domain (EPT, stage-2 tables, shadow pool).</summary>
    public ulong PagingFrames => Mode?.FramesHeld ?? 0;

    /// <summary>Build: populate the first <c>memory</c> RAM pfns with descending mfns, then install identity.</summary>
    internal void Build()
    {
        ulong want = Math.Min(Config.MemoryMiB << (20 - Page.Shift), MaxPages);
        var mfns = new Mfn[want];
        _machine.Allocate(mfns);                          // all or nothing
        ulong i = 0;
        foreach (ulong pfn in E820.RamPfns())
        {
            if (i == want) break;
            P2m.SetMfn(pfn, mfns[i++]);
        }
        _populatedPages = want;
        Counters.Add(PerfCounter.P2mSet, (long)want);
        foreach (var region in E820.NonRamRegions())
            SetIdentityRange(region.Start >> Page.Shift, region.End >> Page.Shift, Config.IdentityStrategy);
        foreach (var hole in Config.Identity)
            SetIdentityRange(hole.Start >> Page.Shift, (hole.End + Page.OffsetMask) >> Page.Shift, Config.IdentityStrategy);
        foreach (var fb in Config.Framebuffers) PopulateFramebuffer(new Framebuffer(fb, this));
        Vram.Strategy = Config.VramStrategy;
        Vram.SkipTlbFlush = !Config.VramTlbFlush;
        Kernel.Initialise(X86GuestFormat.Instance);
        var mode = PagingModes.Create(Config.Paging, Config.PagingOptions);
        if (mode.GuestFormat != Kernel.Format) Kernel.ConvertTables(mode.GuestFormat);
        mode.Attach(this);
        Mode = mode;
    }

    /// <summary>
    /// Switches paging mode while the domain runs. Guest memory and the guest's tables are kept;
    /// switching to or from ARM converts the tables in place between x86-64 and AArch64 formats
    /// (same four levels of 512 entries), keeping every mapping and its accessed/dirty state.
    /// </summary>
    public void SetPagingMode(PagingModeKind kind, PagingOptions? options = null)
    {
        using var op = EnterOperation();
        var problems = (options ?? Config.PagingOptions).Problems();
        if (problems.Count > 0)
            throw new InvalidConfigurationException($"Domain '{Name}' cannot switch paging mode: {string.Join("; ", problems)}. Nothing changed.");
        var next = PagingModes.Create(kind, options ?? Config.PagingOptions);
        var old = Mode;
        Mode = null;                                   // table conversion writes go straight to RAM
        old?.Detach();
        FlushAllTlbs();
        if (next.GuestFormat != Kernel.Format) Kernel.ConvertTables(next.GuestFormat);
        try
        {
            next.Attach(this);
        }
        catch
        {
            // Nothing half-switched: go back to the old mode (re-attach from scratch).
            if (old is not null)
            {
                if (old.GuestFormat != Kernel.Format) Kernel.ConvertTables(old.GuestFormat);
                old.Attach(this);
                Mode = old;
            }
            throw;
        }
        Mode = next;
        Config.Paging = kind;
        LogDirty.Rearm();
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

    public P2mType GetP2mType(ulong gfn) => Types.Get(P2m, gfn);

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
        Types.Set(gfn, type);
        Counters.Inc(PerfCounter.P2mTypeChange);
        Trace.Add(TraceKind.P2mTypeChange, -1, 0, gfn, 0, (ulong)type, P2mTypeInfo.Transition(old, type));
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
        Counters.Inc(PerfCounter.LogDirtyFault);
        SetP2mType(gfn, P2mType.RamRw);
    }

    /// <summary>
    /// p2m_change_type over a range: every RAM gfn of type <paramref name="from"/> in [start, end)
    /// becomes <paramref name="to"/>, and the mode is told once. Returns how many changed.
    /// </summary>
    public int ChangeP2mTypes(ulong startGfn, ulong endGfn, P2mType from, P2mType to, bool flush)
    {
        using var op = EnterOperation();
        int n = 0;
        for (ulong g = startGfn; g < endGfn; g++)
        {
            if (P2mTree.Classify(P2m.Get(g)) != P2mEntryKind.Ram || Types.Get(P2m, g) != from) continue;
            Types.Set(g, to);
            n++;
        }
        if (n == 0) return 0;
        Counters.Add(PerfCounter.P2mTypeChange, n);
        Trace.Add(TraceKind.P2mTypeChange, -1, 0, startGfn, endGfn, (ulong)n, P2mTypeInfo.Transition(from, to));
        Mode?.OnP2mChanged(startGfn, endGfn, flush);
        return n;
    }

    /// <summary>The same for a list of gfns (ascending).</summary>
    public int ChangeP2mTypes(IReadOnlyList<ulong> gfns, P2mType from, P2mType to, bool flush)
    {
        using var op = EnterOperation();
        int n = 0;
        foreach (ulong g in gfns)
        {
            if (P2mTree.Classify(P2m.Get(g)) != P2mEntryKind.Ram || Types.Get(P2m, g) != from) continue;
            Types.Set(g, to);
            n++;
        }
        if (n == 0) return 0;
        Counters.Add(PerfCounter.P2mTypeChange, n);
        Mode?.OnP2mChanged(gfns[0], gfns[^1] + 1, flush);
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
    public bool TryReadPhysU64(ulong gpa, out ulong value)
    {
        ThrowIfRemoved();
        if (!TryGetRam(gpa >> Page.Shift, out var mfn)) { value = 0; return false; }
        value = BinaryPrimitives.ReadUInt64LittleEndian(_machine.Read(mfn).Slice((int)(gpa & Page.OffsetMask), 8));
        return true;
    }

    public bool TryWritePhysU64(ulong gpa, ulong value)
    {
        ThrowIfRemoved();
        if (!TryGetRam(gpa >> Page.Shift, out var mfn)) return false;
        BinaryPrimitives.WriteUInt64LittleEndian(_machine.Write(mfn).Slice((int)(gpa & Page.OffsetMask), 8), value);
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
            }
        }
        return new PhysAccessResult(status, 0);
    }

    // ---- balloon ------------------------------------------------------------------------

    /// <summary>
    /// Moves the domain's reservation to <paramref name="targetPages"/>, as the guest's balloon
    /// driver does. Going up takes the lowest E820 RAM pfns not populated; the driver's
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
        foreach (ulong pfn in E820.RamPfns())
        {
            if ((ulong)pfns.Count == pages) break;
            if (P2mTree.Classify(P2m.Get(pfn)) != P2mEntryKind.Ram) pfns.Add(pfn);
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
            if (Kernel.OwnsPfn(pfn) || !E820.IsRam(pfn) || IsFramebufferGfn(pfn)) continue;
            pfns.Add(pfn);
        }
        foreach (ulong pfn in pfns)
        {
            TryGetRam(pfn, out var mfn);
            P2m.Set(pfn, P2mTree.InvalidEntry);
            Types.Forget(pfn);
            Mode?.OnP2mChanged(pfn, pfn + 1);
            _machine.Free(mfn);
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
            $"({P2mTree.Classify(OffendingEntry)}) for a pfn the E820 calls RAM and that was never populated",
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
