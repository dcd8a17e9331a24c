// Removing write access to a page (sh_remove_write_access, oos_remove_write_access) as Xen does
// it, or through the reverse map (shadow_write_removal: rmap) so a lab can compare the two.
// Xen keeps no reverse map. For an out-of-sync page each vCPU slot remembers up to
// SHADOW_OOS_FIXUPS = 2 writable shadow entries made while it was out of sync (oos_fixup_add;
// a third evicts the oldest and makes its entry read-only at once). A resync removes write
// access through those fix-ups first; if writable mappings remain (Xen knows from the page's
// type count, modelled here by counting), it tries the guess at the guest's direct map
// (SHOPT_WRITABLE_HEURISTIC for a 64-bit guest), then the L1 shadow where the current vCPU's last
// brute-force search found a writable mapping (last_writeable_pte_smfn: the next page of a run
// is likely in the same table), then scans every L1 shadow (brute force). Both heuristics run
// only when the current vCPU belongs to the domain (`curr->domain == d`): a hypercall from the
// device model (mainline VRAM tracking's two-second rule) goes straight to the brute force.
using System;
using XenLab.Diagnostics;
using XenLab.Memory;
using XenLab.Paging.Modes;

namespace XenLab.Paging.Shadow;

public sealed partial class ShadowMode
{
    /// <summary>SHADOW_OOS_FIXUPS: fix-ups per out-of-sync page per vCPU.</summary>
    public const int OosFixups = 2;

    private struct Fixup
    {
        public ShadowPage? Page0, Page1;
        public int Index0, Index1;
        public int Next;
    }

    /// <summary>Per vCPU, per slot: the fix-ups of the page in that slot (they move with it when punted).</summary>
    private Fixup[][] _oosFixup = Array.Empty<Fixup[]>();

    /// <summary>Xen's SHOPT_WRITABLE_HEURISTIC guesses for a 64-bit guest at level 0: direct maps at these bases + gpa.</summary>
    private static readonly ulong[] DirectMapGuesses =
    {
        0xffff880000000000UL, 0xffff810000000000UL, 0x0000010000000000UL, 0xfffffe0000000000UL, 0xffffff0000000000UL,
    };

    /// <summary>Per vCPU: the L1 shadow where its last brute-force search removed a writable mapping.</summary>
    private ShadowPage?[] _lastWriteablePte = Array.Empty<ShadowPage?>();

    /// <summary>The caller is no vCPU of this domain (a toolstack or device-model hypercall).</summary>
    private const int NotCurrent = -1;

    private void InitFixups(int vcpus)
    {
        _lastWriteablePte = new ShadowPage?[vcpus];
        _oosFixup = new Fixup[vcpus][];
        for (int v = 0; v < vcpus; v++) _oosFixup[v] = new Fixup[Slots];
    }

    /// <summary>oos_fixup_add: remember a writable entry of an out-of-sync page; past two, evict the oldest.</summary>
    private void FixupAdd(ulong gfn, ShadowPage l1, int index)
    {
        var (v, slot) = FindSlotByGfn(gfn);
        if (v < 0) return;
        ref var f = ref _oosFixup[v][slot];
        if ((ReferenceEquals(f.Page0, l1) && f.Index0 == index) || (ReferenceEquals(f.Page1, l1) && f.Index1 == index)) return;
        ref ShadowPage? page = ref (f.Next == 0 ? ref f.Page0 : ref f.Page1);
        ref int idx = ref (f.Next == 0 ? ref f.Index0 : ref f.Index1);
        if (page is not null)
        {
            RemoveWriteFromEntry(gfn, page, idx);           // sh_remove_write_access_from_sl1p
            _counters.Inc(PerfCounter.OosFixupEvict);
        }
        page = l1;
        idx = index;
        f.Next = (f.Next + 1) % OosFixups;
        _counters.Inc(PerfCounter.OosFixupAdd);
    }

    /// <summary>Makes one shadow entry read-only if it still maps <paramref name="gfn"/> writable; true if it did.</summary>
    private bool RemoveWriteFromEntry(ulong gfn, ShadowPage l1, int index)
    {
        if (!_bySmfn.TryGetValue(l1.Smfn.Value, out var live) || !ReferenceEquals(live, l1)) return false;
        ulong e = _machine.ReadUInt64(l1.Smfn, index * 8);
        if ((e & (X86Pte.Present | X86Pte.Writable)) != (X86Pte.Present | X86Pte.Writable) || l1.MappedGfn![index] != gfn) return false;
        _machine.WriteUInt64(l1.Smfn, index * 8, e & ~X86Pte.Writable);
        _counters.Inc(PerfCounter.ShadowWriteProtect);
        if (_vramPages.Count != 0) VramOnWriteRemoved(gfn, l1, index, e);      // the D-bit design's writable count
        return true;
    }

    /// <summary>Writable shadow mappings of a page: what Xen reads from the page's type count.</summary>
    private int WritableCount(ulong gfn)
    {
        if (!_rmap.TryGetValue(gfn, out var list)) return 0;
        int n = 0;
        foreach (var (page, index) in list)
            if ((_machine.ReadUInt64(page.Smfn, index * 8) & X86Pte.Writable) != 0) n++;
        return n;
    }

    /// <summary>
    /// sh_remove_write_access (and, for an out-of-sync page in slot <paramref name="slot"/> of
    /// vCPU <paramref name="vcpu"/>, oos_remove_write_access): every shadow mapping of the page
    /// becomes read-only; TLBs are flushed if anything was taken away.
    /// </summary>
    private void RemoveWriteAccess(ulong gfn, int curr, int vcpu = -1, int slot = -1)
    {
        if (RemoveWriteAccessFlushOwed(gfn, curr, vcpu, slot)) _domain.FlushAllTlbs();
    }

    /// <summary>
    /// RemoveWriteAccess without the flush: true when one is owed. As Xen's sh_remove_write_access
    /// ("returns non-zero if we need to flush TLBs"), for a caller that takes write access from
    /// many pages and flushes once (shadow_track_dirty_vram). <paramref name="curr"/> is the vCPU
    /// the work runs on, or <see cref="NotCurrent"/> for a hypercall from outside the domain.
    /// </summary>
    private bool RemoveWriteAccessFlushOwed(ulong gfn, int curr, int vcpu = -1, int slot = -1)
    {
        if (_options.ShadowWriteRemoval == ShadowWriteRemoval.Rmap)
        {
            bool any = RemoveWriteAccessByRmap(gfn);
            if (vcpu >= 0) _oosFixup[vcpu][slot] = default;
            return any;
        }
        bool flush = false;
        if (vcpu >= 0)
        {
            ref var f = ref _oosFixup[vcpu][slot];
            if (f.Page0 is not null) { RemoveWriteFromEntry(gfn, f.Page0, f.Index0); _counters.Inc(PerfCounter.OosFixupRemove); flush = true; }
            if (f.Page1 is not null) { RemoveWriteFromEntry(gfn, f.Page1, f.Index1); _counters.Inc(PerfCounter.OosFixupRemove); flush = true; }
            f = default;
        }
        if (WritableCount(gfn) != 0)
        {
            flush = true;
            if (curr == NotCurrent || (!GuessWritableMapping(gfn, curr) && !LastWriteablePte(gfn, curr)))
                BruteForceWriteRemoval(gfn, curr);
        }
        return flush;
    }

    /// <summary>The second heuristic: the L1 shadow where this vCPU's last brute-force search succeeded.</summary>
    private bool LastWriteablePte(ulong gfn, int curr)
    {
        var last = _lastWriteablePte[curr];
        if (last is null || !_bySmfn.TryGetValue(last.Smfn.Value, out var live) || !ReferenceEquals(live, last)) return false;
        bool found = false;
        for (int i = 0; i < 512; i++) found |= RemoveWriteFromEntry(gfn, last, i);
        if (found) _counters.Inc(PerfCounter.ShadowWriteableLast);
        return WritableCount(gfn) == 0;
    }

    /// <summary>SHOPT_WRITABLE_HEURISTIC: look where a 64-bit guest's direct map would map the page, in the current vCPU's shadows.</summary>
    private bool GuessWritableMapping(ulong gfn, int curr)
    {
        var top = _top[curr];
        if (top is null) return false;
        foreach (ulong b in DirectMapGuesses)
        {
            ulong va = b + (gfn << Page.Shift);
            ulong table = top.Smfn.Value;
            for (int level = 4; level >= 2 && table != 0; level--)
            {
                ulong e = _machine.ReadUInt64(new Mfn(table), X86Pte.IndexAt(va, level) * 8);
                table = (e & X86Pte.Present) != 0 ? (e & X86Pte.FrameMask) >> 12 : 0;
            }
            if (table == 0 || !_bySmfn.TryGetValue(table, out var l1)) continue;
            if (RemoveWriteFromEntry(gfn, l1, X86Pte.IndexAt(va, 1))) _counters.Inc(PerfCounter.ShadowWriteableGuess);
            if (WritableCount(gfn) == 0) return true;
        }
        return false;
    }

    /// <summary>The brute-force search: every L1 and FL1 shadow, every entry, until no writable mapping is left.</summary>
    private void BruteForceWriteRemoval(ulong gfn, int curr)
    {
        _counters.Inc(PerfCounter.ShadowWriteableBruteForce);
        foreach (var sp in _shadows.Values)
        {
            if (sp.Type is not (ShadowType.L1 or ShadowType.FL1)) continue;
            bool found = false;
            for (int i = 0; i < 512; i++) found |= RemoveWriteFromEntry(gfn, sp, i);
            if (found && curr != NotCurrent) _lastWriteablePte[curr] = sp;   // sh_rm_write_access_from_l1 remembers it
        }
    }

    /// <summary>The reverse map's way: straight to every shadow entry that maps the page.</summary>
    private bool RemoveWriteAccessByRmap(ulong gfn)
    {
        if (!_rmap.TryGetValue(gfn, out var list)) return false;
        bool any = false;
        foreach (var (page, index) in list) any |= RemoveWriteFromEntry(gfn, page, index);
        return any;
    }
}
