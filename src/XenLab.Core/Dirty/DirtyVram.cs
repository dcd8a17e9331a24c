// track_dirty_vram for several framebuffers (seeds 000 and 003, SPEC 2). A range is created on
// demand by its first query, which reports it all dirty; later queries report the pages written
// since the previous one. Bounds follow the reviewer's corrected check; whole-domain log-dirty
// makes a query fail with -ENODATA; VRAM tracking whose machinery was switched off under it is
// an inconsistent state, -EINVAL. nr == 0 stops all VRAM tracking, in every mode (mainline
// HAP's meaning; the review asked for one choice). Strategies are per domain and selectable;
// the device-model memcmp baseline works in every mode.
//
// A range's state belongs to the paging-mode instance that armed it (ArmedBy), never to a mode
// kind: SetPagingMode always builds a new instance, even for the same kind. A switch disarms
// every range under the old instance and re-arms it under the new one before the guest runs
// again; the next query of each range then reports all dirty (writes made before the switch
// were in the old instance's state, which is gone). Memcmp ranges do not depend on the mode and
// stay exact. Should a range ever be queried under an instance that did not arm it, the query
// re-arms it and answers all dirty: when in doubt, repaint.
using System;
using System.Collections.Generic;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Memory;
using XenLab.Paging;

namespace XenLab.Dirty;

public enum VramStrategy
{
    /// <summary>The mode's natural one: back-links under shadow, p2m types under HAP, avail bits on ARM.</summary>
    Auto,
    /// <summary>Shadow: bounded back-links from each VRAM page to the shadow L1 entries mapping it (seed 000).</summary>
    BackLinks,
    /// <summary>Shadow: the D bits of the guest's one writable mapping, found by virtual address (seed 003).</summary>
    DirtyBit,
    /// <summary>The mode's dirty tracker: ram_logdirty types (HAP) or stage-2 avail bits (ARM).</summary>
    Tracker,
    /// <summary>The device model keeps a copy of the framebuffer and compares page by page.</summary>
    Memcmp,
    /// <summary>Shadow: mainline Xen's shadow_track_dirty_vram, one range per domain, one recorded mapping per page (SPEC 5).</summary>
    Mainline,
}

/// <summary>What a VRAM query does while whole-domain log-dirty is on.</summary>
public enum VramWithLogDirty
{
    /// <summary>The seed's answer: -ENODATA, repaint everything.</summary>
    ENoData,
    /// <summary>
    /// Mainline since XSA-397 (hap_track_dirty_vram no longer switches log-dirty on or off for
    /// itself): both run at once. Only ranges whose dirty state survives log-dirty's cleans do:
    /// HAP's tracker (bits marked at fault time) and memcmp; any other range still answers -ENODATA.
    /// </summary>
    Coexist,
}

/// <summary>Errors track_dirty_vram returns, with Xen's errno names.</summary>
public enum VramErrno
{
    /// <summary>-EINVAL: bad bounds, or VRAM tracking state without the machinery under it.</summary>
    EINVAL = 22,
    /// <summary>-ENODATA: whole-domain log-dirty is active; VRAM tracking is not available.</summary>
    ENODATA = 61,
}

public sealed class VramException : XenLabException
{
    public VramException(VramErrno errno, string message) : base($"track_dirty_vram: -{errno}: {message}") => Errno = errno;
    public VramErrno Errno { get; }
    public override string ErrorId => "Vram" + Errno;
}

/// <summary>One tracked range and the state its strategy keeps.</summary>
public sealed class VramRange
{
    internal VramRange(ulong begin, ulong nr, VramStrategy strategy)
    {
        BeginPfn = begin;
        Pages = nr;
        Strategy = strategy;
        RemovedDirty = new bool[nr];
    }

    public ulong BeginPfn { get; }
    public ulong Pages { get; }
    public ulong EndPfn => BeginPfn + Pages;
    public VramStrategy Strategy { get; internal set; }
    /// <summary>The kind of the mode instance that armed the range (for display; the identity that matters is <see cref="ArmedBy"/>).</summary>
    public PagingModeKind? ArmedIn => ArmedBy?.Kind;
    /// <summary>The paging-mode instance whose structures hold this range's state; null while disarmed.</summary>
    internal Paging.IPagingMode? ArmedBy { get; set; }
    /// <summary>How many times the range was armed (creation, mode switches, re-arms).</summary>
    public int Arms { get; internal set; }
    /// <summary>Per page: a dirty mapping went away (or a direct write happened) since the last query.</summary>
    internal bool[] RemovedDirty { get; }
    /// <summary>Created or re-armed by a peek, or re-armed by a mode switch: the next query that clears must still say all dirty.</summary>
    internal bool PendingAllDirty { get; set; }
    /// <summary>Why the pending all-dirty answer is owed (the query's Reason).</summary>
    internal string PendingReason { get; set; } = "armed by a peek: repaint everything";
    /// <summary>Memcmp baseline: the device model's copy.</summary>
    internal byte[]? Copy { get; set; }
    /// <summary>
    /// Set by a strategy that knows whether its last clearing collect took a dirty bit away (a
    /// D bit, or a removed mapping's dirtiness): null means "always flush".
    /// </summary>
    internal bool? ClearedDirty { get; set; }
    /// <summary>A flush after clearing was skipped (SkipTlbFlush): the next one is owed whatever is cleared.</summary>
    internal bool FlushOwed { get; set; }
    /// <summary>Strategy-private state (back-links, the D-bit strategy's mapping address).</summary>
    internal object? State { get; set; }
    public bool Contains(ulong gfn) => gfn >= BeginPfn && gfn < EndPfn;
}

/// <summary>A strategy that can be armed on a range and queried.</summary>
public interface IVramStrategy
{
    void Arm(VramRange range);
    void Disarm(VramRange range);
    /// <summary>Sets a bit per dirty page; with clear, resets what it read. Returns false to say "all dirty".</summary>
    bool Collect(VramRange range, Span<byte> bitmap, bool clear);
}

public readonly record struct VramQueryResult(ulong BeginPfn, ulong Pages, byte[] Bitmap, bool AllDirty, string Reason)
{
    /// <summary>The indexes (from BeginPfn) of the pages the bitmap reports dirty, ascending.</summary>
    public List<int> DirtyPageIndexes()
    {
        var list = new List<int>();
        for (ulong i = 0; i < Pages; i++) if ((Bitmap[i >> 3] & (1 << (int)(i & 7))) != 0) list.Add((int)i);
        return list;
    }

    public int DirtyPages
    {
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
        get
        {
            // Eight bytes' population count at a time, then the tail (bits past Pages are never
            // set); optimised from the first call, as a display reads it only once per query.
            var bytes = Bitmap.AsSpan(0, (int)((Pages + 7) / 8));
            var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(bytes);
            int n = 0;
            foreach (ulong w in words) n += System.Numerics.BitOperations.PopCount(w);
            for (int i = words.Length * 8; i < bytes.Length; i++) n += System.Numerics.BitOperations.PopCount(bytes[i]);
            return n;
        }
    }
}

public sealed class DirtyVram
{
    private readonly Domain _domain;
    private readonly List<VramRange> _ranges = new();
    private bool _machineryOff;

    internal DirtyVram(Domain domain) => _domain = domain;

    public IReadOnlyList<VramRange> Ranges => _ranges;
    /// <summary>Teaching switch: skip the TLB flush after clearing dirty state (writes through stale TLB entries are then missed).</summary>
    public bool SkipTlbFlush { get; set; }
    /// <summary>The strategy new ranges get (Auto: the mode's natural one).</summary>
    public VramStrategy Strategy { get; set; } = VramStrategy.Auto;
    /// <summary>-ENODATA while log-dirty runs (the seed), or both at once (mainline).</summary>
    public VramWithLogDirty WithLogDirty { get; set; } = VramWithLogDirty.ENoData;

    /// <summary>track_dirty_vram(begin_pfn, nr). With peek the dirty state is read but not cleared.</summary>
    public VramQueryResult Track(ulong beginPfn, ulong nr, bool peek = false)
    {
        using var op = _domain.EnterOperation();
        _domain.Counters.Inc(PerfCounter.VramQuery);
        if (nr == 0)
        {
            StopAll();
            return new VramQueryResult(beginPfn, 0, Array.Empty<byte>(), false, "nr == 0: all VRAM tracking stopped");
        }
        ulong end = beginPfn + nr;
        if (end < beginPfn)
            throw new VramException(VramErrno.EINVAL, $"begin_pfn 0x{beginPfn:x} + nr {nr} overflows (end_pfn < begin_pfn).");
        // end_pfn <= max_mapped_pfn + 1 holds at once when the last page is RAM; else find max_mapped_pfn (a descent of the tree).
        ulong maxMapped = _domain.TryGetRam(end - 1, out _) ? end - 1 : _domain.MaxMappedPfn;
        if (end > maxMapped + 1)
            throw new VramException(VramErrno.EINVAL, $"end_pfn 0x{end:x} is beyond max_mapped_pfn + 1 (0x{maxMapped + 1:x}).");
        if (_domain.LogDirty.Enabled && !CoexistsWithLogDirty())
            throw new VramException(VramErrno.ENODATA, "whole-domain log-dirty is active (a migration is running); VRAM tracking is unavailable, repaint everything.");
        if (_machineryOff && _ranges.Count > 0)
            throw new VramException(VramErrno.EINVAL, "VRAM tracking state exists but the log-dirty machinery under it was turned off; call with nr = 0 to reset.");
        var bitmap = new byte[(nr + 7) / 8];
        var range = Find(beginPfn, nr);
        if (range is null)
        {
            // A request over a tracked range of other bounds replaces it (mainline tears the old
            // range down for a new one), so one monitor can change resolution alone.
            for (int k = _ranges.Count - 1; k >= 0; k--)
            {
                var r = _ranges[k];
                if (beginPfn >= r.EndPfn || r.BeginPfn >= end) continue;
                _domain.Trace.Add(TraceKind.ModeSwitch, -1, 0, r.BeginPfn, r.EndPfn, beginPfn, "vram range replaced by an overlapping request");
                _domain.Counters.Inc(PerfCounter.VramRangeReplaced);
                Stop(r);
            }
            var strategy = Resolve(Strategy);
            if (strategy == VramStrategy.Mainline)
            {
                // Mainline keeps one range per domain: a new one frees the old (dirty_vram).
                for (int k = _ranges.Count - 1; k >= 0; k--)
                {
                    if (_ranges[k].Strategy != VramStrategy.Mainline) continue;
                    _domain.Counters.Inc(PerfCounter.VramRangeReplaced);
                    Stop(_ranges[k]);
                }
            }
            range = new VramRange(beginPfn, nr, strategy) { PendingAllDirty = peek };
            ArmFresh(range, peek);
            _ranges.Add(range);
            return AllDirty(range, bitmap, strategy == VramStrategy.Mainline
                ? "new range: all shadows blown, -ENODATA, repaint everything"
                : "new range: tracking starts, repaint everything");
        }
        if (range.Strategy != VramStrategy.Memcmp && !ReferenceEquals(range.ArmedBy, _domain.Mode))
        {
            // Armed under another mode instance (a switch did not re-arm it): arm again, repaint.
            range.Strategy = Resolve(Strategy);
            range.State = null;
            ArmFresh(range, peek);
            range.PendingAllDirty = peek;
            range.PendingReason = "paging mode changed: range re-armed, repaint everything";
            return AllDirty(range, bitmap, "paging mode changed: range re-armed");
        }
        if (range.PendingAllDirty)
        {
            // Armed by a peek: what was written before arming has not been handed out yet.
            StrategyFor(range).Collect(range, bitmap, clear: !peek);
            if (!peek) FlushAfterClear(range);
            range.PendingAllDirty = peek;
            return AllDirty(range, bitmap, range.PendingReason);
        }
        bool exact = StrategyFor(range).Collect(range, bitmap, clear: !peek);
        if (!peek) FlushAfterClear(range);
        if (!exact)
            return AllDirty(range, bitmap, "strategy backed off");
        return new VramQueryResult(beginPfn, nr, bitmap, false, "");
    }

    /// <summary>vram_with_logdirty: coexist, and the strategy new and re-armed ranges get keeps its state through log-dirty's cleans.</summary>
    private bool CoexistsWithLogDirty()
    {
        if (WithLogDirty != VramWithLogDirty.Coexist) return false;
        var s = Resolve(Strategy);
        return s == VramStrategy.Memcmp || (s == VramStrategy.Tracker && _domain.Mode!.Kind == PagingModeKind.Hap);
    }

    /// <summary>Cleared D bits must not survive in a TLB (seed 003); the tracker strategy flushes itself, memcmp needs none.</summary>
    private void FlushAfterClear(VramRange range)
    {
        if (SkipTlbFlush)
        {
            _domain.Counters.Inc(PerfCounter.VramFlushSkipped);
            if (range.ClearedDirty != false) range.FlushOwed = true;
        }
        else if (range.ClearedDirty == false && !range.FlushOwed) _domain.Counters.Inc(PerfCounter.VramFlushAvoided);   // nothing cleared: no entry can be stale
        else if (range.Strategy != VramStrategy.Memcmp && range.Strategy != VramStrategy.Tracker)
        {
            _domain.FlushAllTlbs();
            range.FlushOwed = false;
        }
        range.ClearedDirty = null;
    }

    /// <summary>
    /// Arms a range and, unless this is a peek, forgets whatever dirty state predates it (D bits
    /// set by earlier writes, removed mappings): the all-dirty answer covers those writes.
    /// </summary>
    private void ArmFresh(VramRange range, bool peek)
    {
        var strategy = StrategyFor(range);
        strategy.Arm(range);
        range.ArmedBy = _domain.Mode;
        range.Arms++;
        if (peek) return;
        var scratch = new byte[(range.Pages + 7) / 8];
        strategy.Collect(range, scratch, clear: true);
        if (range.Strategy is not (VramStrategy.Memcmp or VramStrategy.Tracker) && !SkipTlbFlush) _domain.FlushAllTlbs();
    }

    /// <summary>The log-dirty fault handler marked gfn dirty (paging_mark_dirty): ranges that keep fault-time bits record it.</summary>
    internal void NoteLogDirtyFault(ulong gfn)
    {
        for (int i = 0; i < _ranges.Count; i++)      // once per logged page: the cheap bounds test first
        {
            var r = _ranges[i];
            if (r.Contains(gfn) && r.State is IVramFaultBitmap bits) bits.Mark(gfn - r.BeginPfn);
        }
    }

    /// <summary>Pages the guest wrote through a physical path (no mapping to see it): remembered for the back-link and D-bit strategies.</summary>
    internal void NoteDirectWrite(ulong gfn)
    {
        foreach (var r in _ranges)
            if (r.Contains(gfn)) r.RemovedDirty[gfn - r.BeginPfn] = true;
    }

    public VramRange? Find(ulong beginPfn, ulong nr)
    {
        using var op = _domain.EnterOperation();
        foreach (var r in _ranges) if (r.BeginPfn == beginPfn && r.Pages == nr) return r;
        return null;
    }

    /// <summary>Stops tracking one range (a monitor unplugged); the others go on.</summary>
    public void Stop(VramRange range)
    {
        using var op = _domain.EnterOperation();
        if (!_ranges.Remove(range)) return;
        Disarm(range);
        if (_ranges.Count == 0) _machineryOff = false;   // no range left whose machinery is off
    }

    public void StopAll()
    {
        using var op = _domain.EnterOperation();
        foreach (var r in _ranges) Disarm(r);
        _ranges.Clear();
        _machineryOff = false;
    }

    /// <summary>
    /// Undoes what arming did, under the instance that armed it only. A tracker range leaves the
    /// mode's tracker alone while whole-domain log-dirty is on: log-dirty arms the same pages
    /// (p2m types, stage-2 tracing), and disarming them would lose its writes.
    /// </summary>
    private void Disarm(VramRange r)
    {
        var armedBy = r.ArmedBy;
        r.ArmedBy = null;
        if (r.Strategy == VramStrategy.Memcmp) { StrategyFor(r).Disarm(r); return; }
        // Only a tracker range lost its machinery to log-dirty; any other range armed by this mode
        // still holds state there (back-links and their pool pages) and is disarmed.
        if (!ReferenceEquals(armedBy, _domain.Mode) || _domain.Mode is null || (_machineryOff && r.Strategy == VramStrategy.Tracker)) { r.State = null; return; }
        if (r.Strategy == VramStrategy.Tracker && _domain.LogDirty.Enabled) return;
        StrategyFor(r).Disarm(r);
    }

    /// <summary>A paging-mode switch is about to detach the mode in force: every range is disarmed under it (memcmp ranges stay).</summary>
    internal void BeforeModeSwitch()
    {
        foreach (var r in _ranges)
        {
            if (r.Strategy == VramStrategy.Memcmp) continue;
            Disarm(r);
        }
    }

    /// <summary>
    /// The new mode is attached: every range is armed under it before the guest runs again, and
    /// its next query reports all dirty (a peek keeps that pending) since what the old instance
    /// recorded went with it. No collect here: that would clear state log-dirty may share.
    /// </summary>
    internal void AfterModeSwitch()
    {
        _machineryOff = false;
        if (_ranges.Count == 0) return;
        foreach (var r in _ranges)
        {
            if (r.Strategy == VramStrategy.Memcmp) continue;
            r.Strategy = Resolve(Strategy);
            r.State = null;
            Array.Clear(r.RemovedDirty);
            StrategyFor(r).Arm(r);
            r.ArmedBy = _domain.Mode;
            r.Arms++;
            r.PendingAllDirty = true;
            r.PendingReason = "paging mode switched: range re-armed under the new mode, repaint everything";
        }
    }

    /// <summary>Whole-domain log-dirty takes the tracker over: ranges stay, queries answer -ENODATA.</summary>
    internal void OnLogDirtyEnabled() { }

    /// <summary>Log-dirty was disabled while ranges existed: their armed pages were disarmed with it.</summary>
    internal void OnLogDirtyDisabled()
    {
        foreach (var r in _ranges)
        {
            if (r.Strategy != VramStrategy.Tracker) continue;
            if (WithLogDirty == VramWithLogDirty.Coexist && r.State is IVramFaultBitmap && ReferenceEquals(r.ArmedBy, _domain.Mode))
            {
                // Its bits hold every write since its last query: arm its pages again, lose nothing.
                _domain.ChangeP2mTypes(r.BeginPfn, r.EndPfn, XenLab.P2m.P2mType.RamRw, XenLab.P2m.P2mType.RamLogDirty, flush: true);
                continue;
            }
            _machineryOff = true;
        }
    }

    private VramQueryResult AllDirty(VramRange range, byte[] bitmap, string reason)
    {
        for (ulong i = 0; i < range.Pages; i++) bitmap[i >> 3] |= (byte)(1 << (int)(i & 7));
        _domain.Counters.Inc(PerfCounter.VramAllDirty);
        return new VramQueryResult(range.BeginPfn, range.Pages, bitmap, true, reason);
    }

    private VramStrategy Resolve(VramStrategy s)
    {
        var mode = _domain.Mode!;
        if (s == VramStrategy.Auto) return mode.Kind == PagingModeKind.Shadow ? VramStrategy.BackLinks : VramStrategy.Tracker;
        if (s is VramStrategy.Memcmp or VramStrategy.Tracker || StrategyOf(s) is not null) return s;
        // A shadow-only design asked for in another mode (the domain switched): use the mode's own.
        _domain.Trace.Add(TraceKind.ModeSwitch, -1, 0, 0, 0, (ulong)s, $"vram strategy {s} unavailable in {mode.Kind}: using the mode's own");
        return Resolve(VramStrategy.Auto);
    }

    // Strategies keep no state (a range's state is in the range): one per kind and mode instance,
    // made on first use, so a query allocates none.
    private IPagingMode? _strategiesOf;
    private readonly IVramStrategy?[] _strategies = new IVramStrategy?[Enum.GetValues<VramStrategy>().Length];

    /// <summary>The current mode's strategy of this kind, or null if the mode has none.</summary>
    private IVramStrategy? StrategyOf(VramStrategy kind)
    {
        var mode = _domain.Mode!;
        if (!ReferenceEquals(_strategiesOf, mode))
        {
            Array.Clear(_strategies);
            _strategiesOf = mode;
        }
        return _strategies[(int)kind] ??= kind switch
        {
            VramStrategy.Memcmp => new MemcmpVramStrategy(_domain),
            VramStrategy.Tracker => mode.CreateVramStrategy(VramStrategy.Tracker) ?? new TrackerVramStrategy(_domain),
            _ => mode.CreateVramStrategy(kind),
        };
    }

    private IVramStrategy StrategyFor(VramRange r) =>
        StrategyOf(r.Strategy) ?? throw new InvalidConfigurationException($"VRAM strategy {r.Strategy} is not available in {_domain.PagingMode} mode.");
}

/// <summary>A range's dirty bits kept by the mode and marked at fault time (HAP).</summary>
internal interface IVramFaultBitmap
{
    void Mark(ulong index);
}

/// <summary>HAP's p2m types, or ARM's stage-2 avail bits: whatever the mode's dirty tracker does.</summary>
internal sealed class TrackerVramStrategy : IVramStrategy
{
    private readonly Domain _domain;
    public TrackerVramStrategy(Domain domain) => _domain = domain;
    public void Arm(VramRange r) => _domain.Mode!.DirtyTracker.Start(r.BeginPfn, r.EndPfn);
    public void Disarm(VramRange r) => _domain.Mode!.DirtyTracker.Stop(r.BeginPfn, r.EndPfn);
    public bool Collect(VramRange r, Span<byte> bitmap, bool clear)
    {
        _domain.Mode!.DirtyTracker.Collect(r.BeginPfn, r.EndPfn, bitmap, clear, flush: !_domain.Vram.SkipTlbFlush);
        return true;
    }
}

/// <summary>The baseline: the device model's copy of the framebuffer, compared page by page.</summary>
internal sealed class MemcmpVramStrategy : IVramStrategy
{
    private readonly Domain _domain;
    public MemcmpVramStrategy(Domain domain) => _domain = domain;

    public void Arm(VramRange r)
    {
        r.Copy = new byte[r.Pages << Page.Shift];
        Snapshot(r, r.Copy);
    }

    public void Disarm(VramRange r) => r.Copy = null;

    public bool Collect(VramRange r, Span<byte> bitmap, bool clear)
    {
        var copy = r.Copy!;
        var machine = _domain.Machine;
        for (ulong i = 0; i < r.Pages; i++)
        {
            var old = copy.AsSpan((int)(i << Page.Shift), Page.Size);
            ReadOnlySpan<byte> now = _domain.TryGetRam(r.BeginPfn + i, out var mfn) ? machine.Read(mfn) : default;
            _domain.Counters.Add(PerfCounter.VramMemcmpBytes, Page.Size);
            if (now.Length == 0 || old.SequenceEqual(now)) continue;
            bitmap[(int)(i >> 3)] |= (byte)(1 << (int)(i & 7));
            if (clear) now.CopyTo(old);
        }
        return true;
    }

    private void Snapshot(VramRange r, byte[] into)
    {
        for (ulong i = 0; i < r.Pages; i++)
            if (_domain.TryGetRam(r.BeginPfn + i, out var mfn))
                _domain.Machine.Read(mfn).CopyTo(into.AsSpan((int)(i << Page.Shift), Page.Size));
    }
}
