// Log-dirty for the whole domain (what a live migration uses): enable arms every RAM page;
// a read with peek keeps the bits, a read with clean hands them out, resets them and re-arms
// the pages found dirty. Fault and dirty counts are reset by a clean, as in Xen.
// As paging.c: the first write to an armed page marks the bitmap tree at fault time
// (paging_mark_dirty); peek and clean read the tree; clean zeroes the leaves and keeps the
// nodes (they are freed when log-dirty is disabled). Under HAP (IGlobalDirtyTracker) enable,
// clean and disable are one global type change each; other modes' trackers are also asked
// what they recorded (shadow, ARM), which adds nothing the faults did not mark already.
using System;
using System.Collections.Generic;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Memory;

namespace XenLab.Dirty;

/// <summary>A read of the log: the bitmap for pfns [0, Pfns), and the counts since the last clean.</summary>
public sealed record DirtyLogView(string DomainName, ulong Pfns, byte[] Bitmap, long DirtyPages, long FaultCount, bool Cleaned, int TreePages)
{
    public IEnumerable<ulong> DirtyGfns()
    {
        for (ulong i = 0; i < Pfns; i++)
            if ((Bitmap[i >> 3] & (1 << (int)(i & 7))) != 0) yield return i;
    }
    public override string ToString() => $"{DomainName}: {DirtyPages} dirty page(s) of {Pfns}, {FaultCount} fault(s){(Cleaned ? ", cleaned" : "")}";
}

public sealed class LogDirty
{
    private readonly Domain _domain;
    private readonly LogDirtyBitmap _bitmap = new();
    private long _faultsAtClean;

    internal LogDirty(Domain domain) => _domain = domain;

    public bool Enabled { get; private set; }
    public LogDirtyBitmap Bitmap => _bitmap;

    public void Enable()
    {
        using var op = _domain.EnterOperation();
        if (Enabled) return;
        _domain.Vram.OnLogDirtyEnabled();
        _bitmap.Clear();
        if (_domain.Mode!.DirtyTracker is IGlobalDirtyTracker g) g.StartGlobal();
        else foreach (var (s, e) in _domain.RamRuns()) _domain.Mode!.DirtyTracker.Start(s, e);
        Enabled = true;                     // only once armed: a refused start (ARM's VLPT window) leaves it off
        _faultsAtClean = _domain.Counters[PerfCounter.LogDirtyFault];
    }

    public void Disable()
    {
        using var op = _domain.EnterOperation();
        if (!Enabled) return;
        if (_domain.Mode!.DirtyTracker is IGlobalDirtyTracker g)
        {
            g.FlushHardwareCachedDirty();        // what PML logged still reaches VRAM ranges that coexist
            g.StopGlobal();
        }
        else foreach (var (s, e) in _domain.RamRuns()) _domain.Mode!.DirtyTracker.Stop(s, e);
        Enabled = false;
        _domain.Vram.OnLogDirtyDisabled();
        _bitmap.Clear();
    }

    /// <summary>Reads the log; with <paramref name="clean"/> also resets it (XEN_DOMCTL_SHADOW_OP_CLEAN vs PEEK).</summary>
    public DirtyLogView Read(bool clean)
    {
        using var op = _domain.EnterOperation();
        if (!Enabled) throw new InvalidConfigurationException($"Log-dirty is not enabled for domain '{_domain.Name}'; enable it first.");
        var tracker = _domain.Mode!.DirtyTracker;
        var global = tracker as IGlobalDirtyTracker;
        global?.FlushHardwareCachedDirty();
        if (global is null)
            foreach (var (s, e) in _domain.RamRuns())
            {
                var part = new byte[(int)((e - s + 7) / 8)];
                tracker.Collect(s, e, part, clear: clean, flush: true);
                for (ulong i = 0; i < e - s; i++)
                    if ((part[i >> 3] & (1 << (int)(i & 7))) != 0) _bitmap.Mark(s + i);
            }
        ulong pfns = _domain.MaxMappedPfn + 1;
        var bytes = new byte[(pfns + 7) / 8];
        long dirty = 0;
        foreach (ulong pfn in _bitmap.DirtyPfns())
        {
            if (pfn >= pfns) continue;
            bytes[pfn >> 3] |= (byte)(1 << (int)(pfn & 7));
            dirty++;
        }
        long faults = _domain.Counters[PerfCounter.LogDirtyFault] - _faultsAtClean;
        var view = new DirtyLogView(_domain.Name, pfns, bytes, dirty, faults, clean, _bitmap.Pages);
        _domain.Counters.Inc(clean ? PerfCounter.LogDirtyClean : PerfCounter.LogDirtyPeek);
        if (clean)
        {
            _bitmap.CleanLeaves();
            global?.CleanGlobal(flush: true);
            _faultsAtClean = _domain.Counters[PerfCounter.LogDirtyFault];
        }
        return view;
    }

    /// <summary>
    /// A paging-mode switch is about to detach the mode in force: what it recorded (pages written
    /// since the last clean) is harvested into the bitmap tree, then its pages are disarmed.
    /// </summary>
    internal void BeforeModeSwitch()
    {
        if (!Enabled || _domain.Mode is null) return;
        var tracker = _domain.Mode.DirtyTracker;
        if (tracker is IGlobalDirtyTracker g)
        {
            g.FlushHardwareCachedDirty();
            g.StopGlobal();                     // the tree already holds every write
            return;
        }
        foreach (var (s, e) in _domain.RamRuns())
        {
            var part = new byte[(int)((e - s + 7) / 8)];
            tracker.Collect(s, e, part, clear: false, flush: false);
            for (ulong i = 0; i < e - s; i++)
                if ((part[i >> 3] & (1 << (int)(i & 7))) != 0) _bitmap.Mark(s + i);
            tracker.Stop(s, e);
        }
    }

    /// <summary>The new mode is attached: every RAM page is armed again, so the next write to each is logged (exact, not all dirty).</summary>
    internal void AfterModeSwitch()
    {
        if (!Enabled) return;
        if (_domain.Mode!.DirtyTracker is IGlobalDirtyTracker g) g.StartGlobal();
        else foreach (var (s, e) in _domain.RamRuns()) _domain.Mode!.DirtyTracker.Start(s, e);
    }

    /// <summary>paging_mark_dirty: the fault handler marks the tree (nothing while log-dirty is off).</summary>
    internal void MarkAtFault(ulong gfn)
    {
        if (Enabled) _bitmap.Mark(gfn);
    }
}
