// Dirty VRAM under shadow, the D-bit design (seed 003, Tim Deegan's review):
//
// - The framebuffer's virtual address is learned in the shadow fault handler: when the leaf
//   entry it makes maps a page of a tracked range through a guest mapping that is writable, that
//   is "the VA of the writable mapping" (sh_page_fault's single equality test). A read-only
//   mapping never teaches. Kept per range.
// - Xen's PGT_writable_page count is kept per page: +1 when a writable shadow L1 entry is made,
//   -1 when one is cleared, replaced or loses write access. A query reads no reverse map (only a
//   back-off does, to drop mappings).
// - A query walks the shadow tables from the learned address only, one pass: per page, the entry
//   there is read and its D cleared; a page with a writable mapping other than that entry (count
//   more than what the entry accounts for) is assumed dirty, as the review says of a writeable
//   count > 1. A page without an entry there and without any writable mapping cannot have been
//   written (a write would fault and make one), so it is clean: shadows come and go (recycling,
//   blow_tables) without the query backing off.
// - Writable entries cleared with D set (or write access removed from them) make their page
//   dirty for the next query, as do the device model's physical writes.
//
// The alias rule. The first writable fault teaches the address, and a later writable fault
// through another address (an alias) never replaces it: an alias that taught would make the
// query read the wrong entries, and two aliases would teach in turn. The learned address is kept
// while it is the mapping in use, and given up only when a query finds it is not: an entry there
// maps another frame (the guest reused the address), or no page has a writable entry there while
// some page has one elsewhere (the guest moved or unmapped it). Then the query backs off (all
// dirty, as the thread says), forgets the address, and drops every writable shadow mapping of
// the range (sh_remove_all_mappings, writable ones only, counted), so the guest's next write
// faults and teaches again; dropping only the first page's would leave relearning to the guest
// writing that page. Without a learned address, pages with a writable mapping are assumed dirty
// (counted) and those mappings are dropped the same way.
//
// Left simple: the walk uses the first vCPU's top-level shadow (a guest whose vCPUs run other
// kernel tables would need one walk per top); a partial writable alias that faults first teaches
// its address; pages outside it are then assumed dirty until that alias goes (or, where its
// neighbouring addresses map other frames, the next query backs off and relearns).
using System;
using XenLab.Diagnostics;
using XenLab.Dirty;
using XenLab.Memory;

namespace XenLab.Paging.Shadow;

public sealed partial class ShadowMode
{
    private const ulong NoFaultVa = ulong.MaxValue;

    /// <summary>
    /// Set by the fault handler around the leaf entry it makes, when the guest's mapping is
    /// writable: the page address the D-bit design may learn from (otherwise NoFaultVa).
    /// </summary>
    private ulong _writableFaultVa = NoFaultVa;

    private sealed class DbitVram
    {
        public required VramRange Range;
        /// <summary>Per page: writable shadow L1 entries mapping it (Xen's PGT_writable_page type count).</summary>
        public required int[] Writable;
        /// <summary>Per page: a writable entry not at the learned address went (or lost write access) with D set: assumed dirty.</summary>
        public required bool[] Unread;
        /// <summary>The learned virtual address of page 0, valid while HasVa.</summary>
        public ulong Va;
        public bool HasVa;
        /// <summary>An address was learned once and forgotten by a back-off: the next one is a relearn.</summary>
        public bool Forgot;
    }

    /// <summary>shadow_set_l1e's new-mapping side for a D-bit range; and sh_page_fault's equality test.</summary>
    private void DbitOnMapped(DbitVram dv, int i, ulong entry)
    {
        if ((entry & X86Pte.Writable) != 0) dv.Writable[i]++;
        if (_writableFaultVa == NoFaultVa) return;
        ulong va = _writableFaultVa - ((ulong)i << Page.Shift);
        if (dv.HasVa)
        {
            if (va != dv.Va) _counters.Inc(PerfCounter.VramDbitAliasIgnored);   // the first mapping keeps it
            return;
        }
        dv.Va = va;
        dv.HasVa = true;
        _counters.Inc(dv.Forgot ? PerfCounter.VramDbitVaRelearned : PerfCounter.VramDbitVaLearned);
        _domain.Trace.Add(TraceKind.VramDbit, -1, va, dv.Range.BeginPfn, 0, (ulong)i, dv.Forgot ? "va relearned" : "va learned");
    }

    /// <summary>shadow_set_l1e's departing-mapping side for a D-bit range.</summary>
    private void DbitOnUnmapped(DbitVram dv, int i, ShadowPage sp, int index, ulong oldEntry)
    {
        if ((oldEntry & X86Pte.Writable) != 0) dv.Writable[i]--;
        if ((oldEntry & X86Pte.Dirty) == 0) return;
        // Its D bit goes with it. The learned entry's D was cleared by the last query, so it means
        // a write since; an alias's D is never cleared and may be older: dirty, but assumed.
        if (IsLearnedEntry(dv, i, sp, index)) dv.Range.RemovedDirty[i] = true;
        else dv.Unread[i] = true;
        _counters.Inc(PerfCounter.VramRemovedDirty);
    }

    /// <summary>Whether shadow entry (sp, index) is where the query reads page i (a walk of the shadows, only when a dirty entry goes).</summary>
    private bool IsLearnedEntry(DbitVram dv, int i, ShadowPage sp, int index)
    {
        if (!dv.HasVa) return false;
        ulong va = dv.Va + ((ulong)i << Page.Shift);
        return X86Pte.IndexAt(va, 1) == index && ReferenceEquals(ShadowL1At(FirstTop(), va), sp);
    }

    private ShadowPage? FirstTop()
    {
        foreach (var t in _top) if (t is not null) return t;
        return null;
    }

    /// <summary>Write access was taken from a shadow entry in place (RemoveWriteFromEntry): the count follows.</summary>
    private void VramOnWriteRemoved(ulong gfn, ShadowPage sp, int index, ulong oldEntry)
    {
        if (!_vramPages.TryGetValue(gfn, out var t) || t.Range.State is not DbitVram dv) return;
        int i = (int)(gfn - t.Range.BeginPfn);
        dv.Writable[i]--;
        // The entry stays with its D: the query reads the learned one; an alias's is never read.
        if ((oldEntry & X86Pte.Dirty) != 0 && !IsLearnedEntry(dv, i, sp, index)) dv.Unread[i] = true;
    }

    /// <summary>The shadow L1 (or FL1) that maps <paramref name="va"/> under <paramref name="top"/>, or null.</summary>
    private ShadowPage? ShadowL1At(ShadowPage? top, ulong va)
    {
        if (top is null) return null;
        ulong table = top.Smfn.Value;
        for (int level = 4; level >= 2; level--)
        {
            ulong e = _machine.ReadUInt64(new Mfn(table), X86Pte.IndexAt(va, level) * 8);
            if ((e & X86Pte.Present) == 0) return null;
            table = (e & X86Pte.FrameMask) >> 12;
        }
        return _bySmfn.TryGetValue(table, out var l1) ? l1 : null;
    }

    /// <summary>Drops every writable shadow entry of the range's pages that has one, so the next write faults; returns how many.</summary>
    private int DbitDropWritable(DbitVram dv)
    {
        var r = dv.Range;
        int dropped = 0;
        for (int k = 0; k < dv.Writable.Length; k++)
        {
            if (dv.Writable[k] == 0 || !_rmap.TryGetValue(r.BeginPfn + (ulong)k, out var list)) continue;
            for (int x = list.Count - 1; x >= 0 && x < list.Count; x--)
            {
                var (page, index) = list[x];
                if ((_machine.ReadUInt64(page.Smfn, index * 8) & X86Pte.Writable) == 0) continue;
                SetL1(page, index, 0, 0);
                dropped++;
            }
        }
        if (dropped == 0) return 0;
        _counters.Add(PerfCounter.VramDbitRelearnDrop, dropped);
        _domain.FlushAllTlbs();                            // rights taken away: no TLB may keep them
        _domain.Trace.Add(TraceKind.VramDbit, -1, 0, r.BeginPfn, 0, (ulong)dropped, "writable mappings dropped to relearn");
        return dropped;
    }

    /// <summary>Each D-bit range's writable counts against the reverse map (the audit's recount).</summary>
    private void AuditDbit(System.Collections.Generic.List<string> problems)
    {
        foreach (var (gfn, t) in _vramPages)
        {
            if (t.Range.State is not DbitVram dv) continue;
            int counted = WritableCount(gfn), kept = dv.Writable[gfn - t.Range.BeginPfn];
            if (counted != kept) problems.Add($"vram: D-bit range at gfn 0x{t.Range.BeginPfn:x} counts {kept} writable mapping(s) of gfn 0x{gfn:x}, the shadows hold {counted}");
        }
    }

    private sealed class DirtyBitStrategy : IVramStrategy
    {
        private readonly ShadowMode _m;
        public DirtyBitStrategy(ShadowMode m) => _m = m;

        public void Arm(VramRange r)
        {
            var dv = new DbitVram { Range = r, Writable = new int[r.Pages], Unread = new bool[r.Pages] };
            r.State = dv;
            for (ulong i = 0; i < r.Pages; i++)
            {
                ulong gfn = r.BeginPfn + i;
                _m._vramPages[gfn] = (r, null);
                dv.Writable[i] = _m.WritableCount(gfn);   // mappings made before arming, counted once here (not per query)
            }
        }

        public void Disarm(VramRange r)
        {
            for (ulong i = 0; i < r.Pages; i++) _m._vramPages.Remove(r.BeginPfn + i);
            r.State = null;
        }

        public bool Collect(VramRange r, Span<byte> bitmap, bool clear)
        {
            var dv = (DbitVram)r.State!;
            return dv.HasVa ? Walk(dv, bitmap, clear) : WithoutAddress(dv, bitmap, clear);
        }

        /// <summary>The single for() loop over the shadow linear tables at the learned address.</summary>
        private bool Walk(DbitVram dv, Span<byte> bitmap, bool clear)
        {
            var r = dv.Range;
            var machine = _m._machine;
            var removed = r.RemovedDirty;
            var writable = dv.Writable;
            var unreadFrom = dv.Unread;
            var top = _m.FirstTop();
            int pages = writable.Length;
            ulong gfn0 = r.BeginPfn;
            ShadowPage? l1 = null;
            bool cleared = false;
            int mine = 0, elsewhere = 0, unread = 0, multi = 0;
            for (int k = 0; k < pages; k++)
            {
                ulong va = dv.Va + ((ulong)k << Page.Shift);
                int idx = X86Pte.IndexAt(va, 1);
                if (k == 0 || idx == 0) l1 = _m.ShadowL1At(top, va);      // upper levels once per 2 MiB
                ulong sl1e = 0;
                if (l1 is not null)
                {
                    sl1e = machine.ReadUInt64(l1.Smfn, idx * 8);
                    if ((sl1e & X86Pte.Present) != 0 && l1.MappedGfn![idx] != gfn0 + (ulong)k)
                        return BackOff(dv, "an entry at the learned address maps another frame", clear);
                }
                bool known = removed[k];
                if ((sl1e & X86Pte.Dirty) != 0)
                {
                    known = true;
                    if (clear) { machine.WriteUInt64(l1!.Smfn, idx * 8, sl1e & ~X86Pte.Dirty); cleared = true; }
                }
                int here = (int)((sl1e & X86Pte.Writable) >> 1);
                mine += here;
                bool other = writable[k] > here;
                if (other) elsewhere++;
                // A writable mapping this walk cannot read: assume dirty (the review's writeable count > 1).
                bool assumed = other || unreadFrom[k];
                if (assumed && !known) { if (writable[k] > 1) multi++; else unread++; }
                if (clear)
                {
                    cleared |= removed[k];                             // a replaced entry's D may still be cached
                    removed[k] = false;
                    unreadFrom[k] = false;
                }
                if (known || assumed) bitmap[k >> 3] |= (byte)(1 << (k & 7));
            }
            if (mine == 0 && elsewhere > 0)
                return BackOff(dv, "no writable entry at the learned address, writable mappings elsewhere", clear);
            _m._counters.Add(PerfCounter.VramMultiMapDirty, multi);
            _m._counters.Add(PerfCounter.VramDbitUnreadDirty, unread);
            // Flush after a clear only if dirty state went: otherwise no TLB entry caches one.
            if (clear) r.ClearedDirty = cleared;
            return true;
        }

        /// <summary>No address learned: a page is clean unless a writable mapping of it exists (then assumed dirty, and dropped to teach).</summary>
        private bool WithoutAddress(DbitVram dv, Span<byte> bitmap, bool clear)
        {
            var r = dv.Range;
            var removed = r.RemovedDirty;
            var writable = dv.Writable;
            var unreadFrom = dv.Unread;
            int unread = 0, mapped = 0;
            bool cleared = false;
            for (int k = 0; k < writable.Length; k++)
            {
                bool known = removed[k];
                bool assumed = writable[k] > 0 || unreadFrom[k];
                if (writable[k] > 0) mapped++;
                if (assumed && !known) unread++;
                if (clear) { cleared |= removed[k]; removed[k] = false; unreadFrom[k] = false; }
                if (known || assumed) bitmap[k >> 3] |= (byte)(1 << (k & 7));
            }
            _m._counters.Add(PerfCounter.VramDbitUnreadDirty, unread);
            if (clear && mapped > 0)
            {
                _m.DbitDropWritable(dv);
                Array.Clear(removed);                      // what the dropped entries held is in this answer
                Array.Clear(unreadFrom);
            }
            if (clear) r.ClearedDirty = cleared;
            return true;
        }

        /// <summary>Back off (all dirty); a query that clears also forgets the address and drops the range's writable mappings to relearn.</summary>
        private bool BackOff(DbitVram dv, string why, bool clear)
        {
            var r = dv.Range;
            _m._counters.Inc(PerfCounter.VramDbitBackoff);
            _m._domain.Trace.Add(TraceKind.VramDbit, -1, dv.Va, r.BeginPfn, 0, 0, "back off: " + why);
            if (!clear) return false;
            dv.HasVa = false;
            dv.Forgot = true;
            _m.DbitDropWritable(dv);
            Array.Clear(r.RemovedDirty);                   // all dirty covers them
            Array.Clear(dv.Unread);
            return false;
        }
    }
}
