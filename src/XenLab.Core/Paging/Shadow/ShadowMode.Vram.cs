// Dirty VRAM under shadow paging, two designs side by side.
//
// Back-links (seed 000, the multi-framebuffer patch as the reviewer asked for it): every
// VRAM page keeps links to each shadow L1 entry that maps it (a guest may map a framebuffer
// more than once). Links are bounded (64 per page, as the posted patch) and live in pages of
// the shadow pool. Only writable mappings are linked (a read-only one cannot dirty the page, and
// would spend the budget); when a link cannot be had tracking is never silently lost: that page
// alone is stuck dirty (vram_link_exhausted, vram_stuck_dirty) until its last mapping goes. A
// query test-and-clears the D bit of every
// linked entry and adds the dirtiness of entries that went away since the last query; the
// range is kept when its mapping count reaches zero (the guest may remap).
//
// The D-bit design (seed 003, Tim Deegan's review): find the guest's one writable mapping of
// the framebuffer by virtual address, walk its shadow L1 entries reading and clearing D; an
// entry that points elsewhere, or a mapping that is gone, backs off to "all dirty"; a page
// mapped writable more than once is assumed dirty; entries made or cleared set the page's bit.
using System;
using System.Collections.Generic;
using XenLab.Diagnostics;
using XenLab.Dirty;
using XenLab.Memory;

namespace XenLab.Paging.Shadow;

public sealed partial class ShadowMode
{
    public const int MaxLinksPerPage = 64;
    private const int LinksPerPoolPage = 256;           // 16-byte links in a 4 KiB page

    private sealed class BackLinks
    {
        public required VramRange Range;
        public required List<(ShadowPage Page, int Index)>[] Links;
        public required bool[] Stuck;
        public readonly List<Mfn> PoolPages = new();
        public int Used;
    }

    /// <summary>VRAM pages being tracked under shadow, and by what.</summary>
    private readonly Dictionary<ulong, (VramRange Range, BackLinks? Links)> _vramPages = new();
    private int _linkPages;

    public IVramStrategy? CreateVramStrategy(VramStrategy kind) => kind switch
    {
        VramStrategy.BackLinks => new BackLinkStrategy(this),
        VramStrategy.DirtyBit => new DirtyBitStrategy(this),
        VramStrategy.Mainline => new MainlineStrategy(this),
        _ => null,
    };

    /// <summary>A present shadow L1 entry now maps <paramref name="gfn"/>.</summary>
    private void VramOnMapped(ulong gfn, ShadowPage sp, int index, ulong entry)
    {
        if (!_vramPages.TryGetValue(gfn, out var t)) return;
        int i = (int)(gfn - t.Range.BeginPfn);
        if (t.Range.State is MainlineVram mv) { MainlineOnMapped(mv, i, gfn, sp, index, entry); return; }
        if (t.Links is null) { if (t.Range.State is DbitVram dv) DbitOnMapped(dv, i, entry); return; }   // D-bit design
        if ((entry & X86Pte.Writable) != 0) AddLink(t.Links, i, sp, index);   // read-only entries cannot dirty it
    }

    /// <summary>A shadow L1 entry that mapped <paramref name="gfn"/> is gone or replaced.</summary>
    private void VramOnUnmapped(ulong gfn, ShadowPage sp, int index, ulong oldEntry)
    {
        if (!_vramPages.TryGetValue(gfn, out var t)) return;
        int i = (int)(gfn - t.Range.BeginPfn);
        if (t.Range.State is MainlineVram mv) { MainlineOnUnmapped(mv, i, gfn, sp, index, oldEntry); return; }
        if (t.Links is null) { if (t.Range.State is DbitVram dv) DbitOnUnmapped(dv, i, sp, index, oldEntry); return; }   // D-bit design
        var list = t.Links.Links[i];
        for (int k = 0; k < list.Count; k++)
        {
            if (!ReferenceEquals(list[k].Page, sp) || list[k].Index != index) continue;
            list[k] = list[^1];
            list.RemoveAt(list.Count - 1);
            t.Links.Used--;
            break;
        }
        if ((oldEntry & X86Pte.Dirty) != 0)
        {
            // Remember the dirtiness of a mapping removed since the last query.
            t.Range.RemovedDirty[i] = true;
            _counters.Inc(PerfCounter.VramRemovedDirty);
        }
    }

    private void AddLink(BackLinks bl, int i, ShadowPage sp, int index)
    {
        var list = bl.Links[i];
        foreach (var (p, x) in list) if (ReferenceEquals(p, sp) && x == index) return;
        if (list.Count >= MaxLinksPerPage || (bl.Used % LinksPerPoolPage == 0 && bl.Used / LinksPerPoolPage >= bl.PoolPages.Count && !TakeLinkPage(bl)))
        {
            if (!bl.Stuck[i])
                _domain.Trace.Add(TraceKind.ShadowRecycle, -1, 0, bl.Range.BeginPfn + (ulong)i, 0, (ulong)list.Count, "vram back-link not had: this page stuck dirty");
            bl.Stuck[i] = true;
            _counters.Inc(PerfCounter.VramLinkExhausted);
            return;
        }
        list.Add((sp, index));
        bl.Used++;
        _counters.Inc(PerfCounter.VramLinks);
    }

    /// <summary>Frames a link page may never take: a fault must always find a full shadow path (top + 3 levels) without recycling mid-walk.</summary>
    private const int LinkReserve = 8;

    private bool TakeLinkPage(BackLinks bl)
    {
        // Links come from the shadow pool and are not recycled; they may hold half of what the
        // snapshots leave, and never the pool's last frames, so they cannot starve the shadows.
        int snapshots = Snapshots ? _oosSnapshot.Length * Slots : 0;
        if (_linkPages >= (_pool.Total - snapshots) / 2 || _pool.Free <= LinkReserve) return false;
        if (!_pool.TryAllocate(out var m)) return false;
        bl.PoolPages.Add(m);
        _linkPages++;
        _counters.Inc(PerfCounter.VramLinkPages);
        return true;
    }

    private sealed class BackLinkStrategy : IVramStrategy
    {
        private readonly ShadowMode _m;
        public BackLinkStrategy(ShadowMode m) => _m = m;

        public void Arm(VramRange r)
        {
            var bl = new BackLinks { Range = r, Links = new List<(ShadowPage, int)>[r.Pages], Stuck = new bool[r.Pages] };
            for (ulong i = 0; i < r.Pages; i++) bl.Links[i] = new List<(ShadowPage, int)>(1);
            r.State = bl;
            for (ulong i = 0; i < r.Pages; i++)
            {
                ulong gfn = r.BeginPfn + i;
                _m._vramPages[gfn] = (r, bl);
                if (_m._rmap.TryGetValue(gfn, out var maps))
                    foreach (var (p, x) in maps)
                        if ((_m._machine.ReadUInt64(p.Smfn, x * 8) & X86Pte.Writable) != 0) _m.AddLink(bl, (int)i, p, x);
            }
        }

        public void Disarm(VramRange r)
        {
            if (r.State is not BackLinks bl) return;
            for (ulong i = 0; i < r.Pages; i++) _m._vramPages.Remove(r.BeginPfn + i);
            foreach (var m in bl.PoolPages) _m._pool.Release(m);
            _m._linkPages -= bl.PoolPages.Count;
            bl.PoolPages.Clear();
            r.State = null;
        }

        public bool Collect(VramRange r, Span<byte> bitmap, bool clear)
        {
            var bl = (BackLinks)r.State!;
            var machine = _m._machine;
            bool cleared = false;
            for (ulong i = 0; i < r.Pages; i++)
            {
                bool dirty = r.RemovedDirty[i];
                cleared |= dirty;                          // a replaced entry's D may still be cached
                foreach (var (p, x) in bl.Links[i])
                {
                    ulong e = machine.ReadUInt64(p.Smfn, x * 8);
                    if ((e & X86Pte.Dirty) == 0) continue;
                    dirty = true;
                    cleared = true;
                    if (clear) machine.WriteUInt64(p.Smfn, x * 8, e & ~X86Pte.Dirty);
                }
                if (bl.Stuck[i])
                {
                    // A writable mapping without a link: its D bit cannot be read, so always dirty,
                    // until the page has no mapping left at all.
                    dirty = true;
                    _m._counters.Inc(PerfCounter.VramStuckDirty);
                    if (clear && !_m._rmap.ContainsKey(r.BeginPfn + i)) bl.Stuck[i] = false;
                }
                if (clear) r.RemovedDirty[i] = false;
                if (dirty) bitmap[(int)(i >> 3)] |= (byte)(1 << (int)(i & 7));
            }
            // Flush after a clear only if a dirty bit went: otherwise no TLB entry caches one.
            if (clear) r.ClearedDirty = cleared;
            return true;
        }
    }
}
