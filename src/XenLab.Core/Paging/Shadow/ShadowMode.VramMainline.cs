// Mainline Xen's dirty-VRAM tracking under shadow (shadow_track_dirty_vram in
// xen/arch/x86/mm/shadow/hvm.c, with shadow_vram_get_l1e / shadow_vram_put_l1e): the baseline
// SPEC 5 compares the multi-framebuffer designs against.
//
// - A new range blows every shadow (shadow_blow_tables) and answers -ENODATA: all dirty.
// - The first writable shadow mapping of a page is recorded (sl1ma); when the last one goes, its
//   D bit (or "unknown", if none was recorded) makes the page dirty.
// - A query, per page, by the number of writable mappings: 0 clean; 1 test-and-clear the
//   recorded entry's D bit (none recorded: dirty, and every mapping is removed so the next one is
//   recorded); more than 1 always dirty. Anything dirty sets last_dirty = now; a cleared D bit
//   flushes TLBs.
// - Nothing dirty for 2 s of domain time (Domain.ClockNs): write access to the range is removed
//   and the range is "clean" (last_dirty = -1): queries only hand out what put_l1e recorded, read
//   faults map the range read-only, and the first write fault starts the clock again.
//
// Difference from Xen kept on purpose: writes through a physical path (NoteDirectWrite) are
// reported too, so the lab's oracle can hold this design to "never miss a page".
using System;
using XenLab.Diagnostics;
using XenLab.Dirty;

namespace XenLab.Paging.Shadow;

public sealed partial class ShadowMode
{
    /// <summary>Xen's SECONDS(2): how long a range stays clean before write access is removed.</summary>
    public const long VramMainlineIdleNs = 2_000_000_000;

    private sealed class MainlineVram
    {
        public required VramRange Range;
        /// <summary>sl1ma: the recorded writable shadow entry of each page (Page null: INVALID_PADDR).</summary>
        public required (ShadowPage? Page, int Index)[] Sl1;
        /// <summary>dirty_vram->dirty_bitmap: pages put_l1e or a query found dirty, not yet handed out.</summary>
        public required bool[] Dirty;
        /// <summary>last_dirty in domain nanoseconds; -1 once write access was removed (clean).</summary>
        public long LastDirty;
    }

    private void MarkMainlineDirty(MainlineVram mv, int i)
    {
        mv.Dirty[i] = true;
        mv.LastDirty = _domain.ClockNs;
    }

    /// <summary>shadow_vram_get_l1e, and _sh_propagate's write fault on a clean range (the clock starts again).</summary>
    private void MainlineOnMapped(MainlineVram mv, int i, ulong gfn, ShadowPage sp, int index, ulong entry)
    {
        if ((entry & X86Pte.Writable) == 0) return;
        if (mv.LastDirty == -1) mv.LastDirty = _domain.ClockNs;            // only a demand write makes one writable now
        if (WritableCount(gfn) == 1) mv.Sl1[i] = (sp, index);             // the initial guest reference
    }

    /// <summary>shadow_vram_put_l1e: a writable mapping went away.</summary>
    private void MainlineOnUnmapped(MainlineVram mv, int i, ulong gfn, ShadowPage sp, int index, ulong oldEntry)
    {
        bool recorded = ReferenceEquals(mv.Sl1[i].Page, sp) && mv.Sl1[i].Index == index;
        if ((oldEntry & X86Pte.Writable) == 0)
        {
            // The recorded entry lost write access behind our back (RemoveWriteFromEntry): Xen's
            // put_l1e would have run then, so its D bit still counts.
            if (!recorded) return;
            mv.Sl1[i] = default;
            if ((oldEntry & X86Pte.Dirty) != 0) MarkMainlineDirty(mv, i);
            return;
        }
        bool dirty;
        if (WritableCount(gfn) == 0)
        {
            // The last reference: unknown means dirty, else its own D bit says.
            dirty = mv.Sl1[i].Page is null || (oldEntry & X86Pte.Dirty) != 0;
            mv.Sl1[i] = default;
        }
        else
        {
            dirty = true;                                                  // more than one: just say dirty
            if (recorded) mv.Sl1[i] = default;                             // remembered the wrong one
        }
        if (dirty) MarkMainlineDirty(mv, i);
    }

    /// <summary>_sh_propagate: while a range is clean, only a write fault maps its pages writable.</summary>
    private bool VramMainlineKeepsReadOnly(ulong gfn) =>
        _vramPages.TryGetValue(gfn, out var t) && t.Range.State is MainlineVram { LastDirty: -1 };

    /// <summary>
    /// The recorded entry, if it is still a live writable mapping of the page. Write access taken
    /// away behind the hooks' back (RemoveWriteFromEntry) is put_l1e as Xen would do it: its D bit
    /// makes the page dirty and the record is dropped.
    /// </summary>
    private bool MainlineRecorded(MainlineVram mv, int i, ulong gfn, out ShadowPage page, out int index)
    {
        (var p, index) = mv.Sl1[i];
        page = p!;
        if (p is null) return false;
        if (_bySmfn.TryGetValue(p.Smfn.Value, out var live) && ReferenceEquals(live, p) && p.MappedGfn![index] == gfn)
        {
            ulong e = _machine.ReadUInt64(p.Smfn, index * 8);
            if ((e & (X86Pte.Present | X86Pte.Writable)) == (X86Pte.Present | X86Pte.Writable)) return true;
            if ((e & (X86Pte.Present | X86Pte.Dirty)) == (X86Pte.Present | X86Pte.Dirty))
            {
                _machine.WriteUInt64(p.Smfn, index * 8, e & ~X86Pte.Dirty);
                MarkMainlineDirty(mv, i);
            }
        }
        mv.Sl1[i] = default;
        return false;
    }

    /// <summary>sh_remove_all_mappings for one page: every shadow entry mapping it is cleared.</summary>
    private void RemoveAllMappings(ulong gfn)
    {
        while (_rmap.TryGetValue(gfn, out var list) && list.Count > 0)
        {
            var (page, index) = list[^1];
            SetL1(page, index, 0, 0);
        }
    }

    private sealed class MainlineStrategy : IVramStrategy
    {
        private readonly ShadowMode _m;
        public MainlineStrategy(ShadowMode m) => _m = m;

        public void Arm(VramRange r)
        {
            var mv = new MainlineVram { Range = r, Sl1 = new (ShadowPage?, int)[r.Pages], Dirty = new bool[r.Pages], LastDirty = _m._domain.ClockNs };
            r.State = mv;
            for (ulong i = 0; i < r.Pages; i++) _m._vramPages[r.BeginPfn + i] = (r, null);
            // No mapping of the range exists unrecorded after this: every one is made anew.
            _m._counters.Inc(PerfCounter.VramMainlineBlow);
            _m.BlowTables("vram: new range (shadow_track_dirty_vram)");
        }

        public void Disarm(VramRange r)
        {
            for (ulong i = 0; i < r.Pages; i++) _m._vramPages.Remove(r.BeginPfn + i);
            r.State = null;
        }

        public bool Collect(VramRange r, Span<byte> bitmap, bool clear)
        {
            var mv = (MainlineVram)r.State!;
            if (!clear) { Peek(mv, bitmap); return true; }
            bool flush = false;
            if (mv.LastDirty != -1)
            {
                for (ulong k = 0; k < r.Pages; k++)
                {
                    int i = (int)k;
                    ulong gfn = r.BeginPfn + k;
                    if (r.RemovedDirty[i]) _m.MarkMainlineDirty(mv, i);     // a physical-path write (not in Xen)
                    bool known = _m.MainlineRecorded(mv, i, gfn, out var page, out int index);
                    switch (_m.WritableCount(gfn))
                    {
                        case 0:
                            break;                                         // no guest reference: nothing to track
                        case 1 when known:
                            ulong e = _m._machine.ReadUInt64(page.Smfn, index * 8);
                            if ((e & X86Pte.Dirty) == 0) break;
                            _m._machine.WriteUInt64(page.Smfn, index * 8, e & ~X86Pte.Dirty);
                            _m.MarkMainlineDirty(mv, i);
                            flush = true;
                            break;
                        case 1:
                            // We don't know which entry maps it: dirty, and drop them all so the next one is recorded.
                            _m.MarkMainlineDirty(mv, i);
                            _m._counters.Inc(PerfCounter.VramMainlineUnknownMapping);
                            _m.RemoveAllMappings(gfn);
                            flush = true;
                            break;
                        default:
                            _m.MarkMainlineDirty(mv, i);                      // more than one: not affordable to track
                            _m._counters.Inc(PerfCounter.VramMultiMapDirty);
                            break;
                    }
                }
            }
            for (int i = 0; i < mv.Dirty.Length; i++)
            {
                if (mv.Dirty[i] || r.RemovedDirty[i]) bitmap[i >> 3] |= (byte)(1 << (i & 7));
                mv.Dirty[i] = false;
                r.RemovedDirty[i] = false;
            }
            if (mv.LastDirty != -1 && _m._domain.ClockNs - mv.LastDirty > VramMainlineIdleNs)
            {
                // Clean for more than two seconds (Xen: last_dirty + SECONDS(2) < NOW()): take write
                // access away; the next write faults. One flush for the range, after the query.
                for (ulong k = 0; k < r.Pages; k++)
                {
                    ulong gfn = r.BeginPfn + k;
                    // A hypercall from the device model: curr is not this domain's, so no heuristics.
                    if (_m.WritableCount(gfn) != 0) flush |= _m.RemoveWriteAccessFlushOwed(gfn, NotCurrent);
                    mv.Sl1[k] = default;
                }
                mv.LastDirty = -1;
                _m._counters.Inc(PerfCounter.VramMainlineWriteRemoved);
                _m._domain.Trace.Add(TraceKind.ShadowBlowTables, -1, 0, r.BeginPfn, r.EndPfn, 0, "vram: clean for 2 s, write access removed");
            }
            r.ClearedDirty = flush;
            return true;
        }

        /// <summary>What a query would report, changing nothing (Xen has no peek; the lab's oracle uses one).</summary>
        private void Peek(MainlineVram mv, Span<byte> bitmap)
        {
            var r = mv.Range;
            for (ulong k = 0; k < r.Pages; k++)
            {
                int i = (int)k;
                ulong gfn = r.BeginPfn + k;
                bool dirty = mv.Dirty[i] || r.RemovedDirty[i];
                if (!dirty && mv.LastDirty != -1)
                {
                    var (p, x) = mv.Sl1[i];
                    int n = _m.WritableCount(gfn);
                    dirty = n > 1 || (n == 1 && (p is null || (_m._machine.ReadUInt64(p.Smfn, x * 8) & X86Pte.Dirty) != 0));
                }
                if (dirty) bitmap[i >> 3] |= (byte)(1 << (i & 7));
            }
        }
    }
}
