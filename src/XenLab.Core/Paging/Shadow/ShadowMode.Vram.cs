// Dirty VRAM under shadow paging: back-links here, with what the strategies share (the page
// table of tracked gfns and the hooks on shadow L1 entries made and cleared); the D-bit design
// is in ShadowMode.VramDirtyBit.cs, mainline's in ShadowMode.VramMainline.cs.
//
// Back-links (seed 000, the multi-framebuffer patch as the reviewer asked for it): every
// VRAM page keeps links to each shadow L1 entry that maps it (a guest may map a framebuffer
// more than once). Links are bounded (64 per page, as the posted patch) and live in pages of
// the shadow pool. Only writable mappings are linked (a read-only one cannot dirty the page, and
// would spend the budget); when a link cannot be had tracking is never silently lost: that page
// alone is stuck dirty (vram_link_exhausted, vram_stuck_dirty) until its last mapping goes. A
// query test-and-clears the D bit of every linked entry and adds the dirtiness of entries that
// went away since the last query; the range is kept when its mapping count reaches zero (the
// guest may remap). A link page comes from the pool like Xen's p2m pages do (shadow_alloc_p2m_page: shadow_prealloc, then
// shadow_alloc): room for it is made by recycling shadows at the fault handler's safe point
// (and when a range is armed), before any shadow of the walk is touched, never inside SetL1.
//
// Layout, for a query that costs little per page: the first link of each page inline (the
// shadow L1's frame and the entry's index), further links in a per-range chain of slots; per
// page a bit saying it has a link, one that it has more than one, one that it is stuck. Per 64
// pages a "run": when each has one link and they are 64 consecutive entries of one shadow L1
// (a framebuffer mapped in order, the usual case), the query reads those entries as one block.

using System;
using System.Collections.Generic;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenLab.Diagnostics;
using XenLab.Dirty;
using XenLab.Memory;

namespace XenLab.Paging.Shadow;

public sealed partial class ShadowMode
{
    public const int MaxLinksPerPage = 64;
    private const int LinksPerPoolPage = 256;           // 16-byte links in a 4 KiB page
    /// <summary>Links one fault may add with prefetch on: the demand entry and the PREFETCH_DISTANCE - 1 entries sh_prefetch may fill after it.</summary>
    private const int LinksPerFault = PrefetchDistance;

    private sealed class BackLinks
    {
        public BackLinks(VramRange r)
        {
            Range = r;
            int pages = (int)r.Pages;
            int words = (pages + 63) >> 6;
            FirstFrame = new byte[]?[pages];
            FirstIndex = new ushort[pages];
            Count = new byte[pages];
            MoreHead = new int[pages];
            Linked = new ulong[words];
            HasMore = new ulong[words];
            Stuck = new ulong[words];
            RunFrame = new byte[]?[words];
            RunStart = new ushort[words];
            RunChecked = new bool[words];
        }

        public readonly VramRange Range;
        /// <summary>Per page: the frame of the shadow L1 holding its first link (null: none; the frame names the shadow while it lives) and that entry's index.</summary>
        public readonly byte[]?[] FirstFrame;
        public readonly ushort[] FirstIndex;
        /// <summary>Per page: links held (at most MaxLinksPerPage).</summary>
        public readonly byte[] Count;
        /// <summary>Per page: the slot (1-based, 0: none) of its second link; slots chain through MoreNext.</summary>
        public readonly int[] MoreHead;
        public byte[]?[] MoreFrame = Array.Empty<byte[]?>();
        public ushort[] MoreIndex = Array.Empty<ushort>();
        public int[] MoreNext = Array.Empty<int>();
        public int MoreFree;                             // free slots, chained through MoreNext (1-based)
        public int MoreTop;                              // slots ever handed out
        /// <summary>Bit per page: it has a link.</summary>
        public readonly ulong[] Linked;
        /// <summary>Bit per page: it has more than one.</summary>
        public readonly ulong[] HasMore;
        /// <summary>Per 64 pages: the frame whose entries RunStart..RunStart + 63 are, in order, their only links (null: not known to be a run).</summary>
        public readonly byte[]?[] RunFrame;
        public readonly ushort[] RunStart;
        /// <summary>Per 64 pages: found not to be a run since their links last changed (not looked for again until they do).</summary>
        public readonly bool[] RunChecked;
        /// <summary>Bit per page: a writable mapping of it has no link (always dirty).</summary>
        public readonly ulong[] Stuck;
        public readonly List<Mfn> PoolPages = new();
        public int Used;
        /// <summary>Links the rmap walk of Arm is about to make (counted before it, so the pool can make room).</summary>
        public int Pending;
        public int Capacity => PoolPages.Count * LinksPerPoolPage;

        public bool IsStuck(int i) => (Stuck[i >> 6] & (1UL << i)) != 0;

        /// <summary>Page i's links changed: its 64 pages are no longer known to be a run, or not to be one.</summary>
        public void Changed(int i)
        {
            RunFrame[i >> 6] = null;
            RunChecked[i >> 6] = false;
        }
    }

    /// <summary>VRAM pages being tracked under shadow, and by what.</summary>
    private readonly Dictionary<ulong, (VramRange Range, BackLinks? Links)> _vramPages = new();
    private readonly List<BackLinks> _backLinks = new();
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
        RemoveLink(t.Links, i, sp, index);
        if ((oldEntry & X86Pte.Dirty) != 0)
        {
            // Remember the dirtiness of a mapping removed since the last query.
            t.Range.RemovedDirty[i] = true;
            _counters.Inc(PerfCounter.VramRemovedDirty);
        }
    }

    private void AddLink(BackLinks bl, int i, ShadowPage sp, int index)
    {
        int n = bl.Count[i];
        if (n != 0)
        {
            if (IsLinked(bl, i, sp, index)) return;
        }
        if (n >= MaxLinksPerPage || (bl.Used >= bl.Capacity && !TakeLinkPage(bl)))
        {
            if (!bl.IsStuck(i))
                _domain.Trace.Add(TraceKind.ShadowRecycle, -1, 0, bl.Range.BeginPfn + (ulong)i, 0, (ulong)n, "vram back-link not had: this page stuck dirty");
            bl.Stuck[i >> 6] |= 1UL << i;
            _counters.Inc(PerfCounter.VramLinkExhausted);
            return;
        }
        if (n == 0)
        {
            bl.FirstFrame[i] = sp.Frame;
            bl.FirstIndex[i] = (ushort)index;
            bl.Linked[i >> 6] |= 1UL << i;
        }
        else
        {
            int s = NewSlot(bl);
            bl.MoreFrame[s - 1] = sp.Frame;
            bl.MoreIndex[s - 1] = (ushort)index;
            bl.MoreNext[s - 1] = bl.MoreHead[i];
            bl.MoreHead[i] = s;
            bl.HasMore[i >> 6] |= 1UL << i;
        }
        bl.Changed(i);
        bl.Count[i] = (byte)(n + 1);
        bl.Used++;
        _counters.Inc(PerfCounter.VramLinks);
    }

    private static int NewSlot(BackLinks bl)
    {
        if (bl.MoreFree != 0)
        {
            int s = bl.MoreFree;
            bl.MoreFree = bl.MoreNext[s - 1];
            return s;
        }
        if (bl.MoreTop == bl.MoreFrame.Length)
        {
            // Grows with the link pages (a page's worth at a time), never on a query.
            int size = bl.MoreFrame.Length + LinksPerPoolPage;
            Array.Resize(ref bl.MoreFrame, size);
            Array.Resize(ref bl.MoreIndex, size);
            Array.Resize(ref bl.MoreNext, size);
        }
        return ++bl.MoreTop;
    }

    private static void RemoveLink(BackLinks bl, int i, ShadowPage sp, int index)
    {
        if (bl.Count[i] == 0) return;
        var frame = sp.Frame;
        if (ReferenceEquals(bl.FirstFrame[i], frame) && bl.FirstIndex[i] == index)
        {
            int s = bl.MoreHead[i];
            if (s == 0)
            {
                bl.FirstFrame[i] = null;
                bl.Linked[i >> 6] &= ~(1UL << i);
            }
            else
            {
                // The second link moves inline, its slot goes back.
                bl.FirstFrame[i] = bl.MoreFrame[s - 1];
                bl.FirstIndex[i] = bl.MoreIndex[s - 1];
                bl.MoreHead[i] = bl.MoreNext[s - 1];
                FreeSlot(bl, s);
            }
        }
        else
        {
            int prev = 0;
            int s = bl.MoreHead[i];
            while (s != 0 && !(ReferenceEquals(bl.MoreFrame[s - 1], frame) && bl.MoreIndex[s - 1] == index))
            {
                prev = s;
                s = bl.MoreNext[s - 1];
            }
            if (s == 0) return;                          // not linked (a read-only entry)
            if (prev == 0) bl.MoreHead[i] = bl.MoreNext[s - 1];
            else bl.MoreNext[prev - 1] = bl.MoreNext[s - 1];
            FreeSlot(bl, s);
        }
        if (bl.MoreHead[i] == 0) bl.HasMore[i >> 6] &= ~(1UL << i);
        bl.Count[i]--;
        bl.Used--;
        bl.Changed(i);
    }

    private static void FreeSlot(BackLinks bl, int s)
    {
        bl.MoreFrame[s - 1] = null;
        bl.MoreNext[s - 1] = bl.MoreFree;
        bl.MoreFree = s;
    }

    /// <summary>Frames a link page may never take: a fault must always find a full shadow path (top + 3 levels) without recycling mid-walk.</summary>
    private const int LinkReserve = 8;

    private int SnapshotPages => Snapshots ? _oosSnapshot.Length * Slots : 0;

    /// <summary>Link pages may hold half of what the snapshots leave of the pool.</summary>
    private int LinkShare => (_pool.Total - SnapshotPages) / 2;

    private bool TakeLinkPage(BackLinks bl)
    {
        // Links come from the shadow pool and are not recycled; they may hold half of what the
        // snapshots leave, and never the pool's last frames, so they cannot starve the shadows.
        if (_linkPages >= LinkShare || _pool.Free <= LinkReserve) return false;
        if (!_pool.TryAllocate(out var m)) return false;
        bl.PoolPages.Add(m);
        _linkPages++;
        _counters.Inc(PerfCounter.VramLinkPages);
        return true;
    }

    /// <summary>
    /// The pool frames, beyond <paramref name="shadows"/> for the walk, an operation that may add
    /// <paramref name="newLinks"/> links to each tracked range (plus the links Arm is about to
    /// make) must find free so that TakeLinkPage succeeds: the reserve plus a page for every range
    /// that would outgrow its link pages. Xen ties log-dirty's allocations to an L1 request the
    /// same way (shadow_prealloc adds paging_logdirty_levels). Zero when no link page can be had
    /// anyway: beyond the links' share, or beyond what the pool holds with every shadow gone.
    /// </summary>
    private int VramLinkHeadroom(int shadows, int newLinks)
    {
        if (_backLinks.Count == 0) return 0;
        int need = 0;
        foreach (var bl in _backLinks)
        {
            int over = bl.Used + bl.Pending + newLinks - bl.Capacity;
            if (over > 0) need += (over + LinksPerPoolPage - 1) / LinksPerPoolPage;
        }
        if (need == 0) return 0;
        need = Math.Min(need, LinkShare - _linkPages);
        need = Math.Min(need, _pool.Total - SnapshotPages - _linkPages - shadows - LinkReserve);
        return need <= 0 ? 0 : LinkReserve + need;
    }

    /// <summary>Writable mappings of the range's pages that Arm will link (at most 64 a page).</summary>
    private int WritableMappings(VramRange r)
    {
        int n = 0;
        for (ulong i = 0; i < r.Pages; i++) n += Math.Min(WritableCount(r.BeginPfn + i), MaxLinksPerPage);
        return n;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong ReadEntry(byte[] frame, int index)
    {
        ulong e = Unsafe.ReadUnaligned<ulong>(ref frame[index << 3]);
        return BitConverter.IsLittleEndian ? e : System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(e);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WriteEntry(byte[] frame, int index, ulong e) =>
        Unsafe.WriteUnaligned(ref frame[index << 3], BitConverter.IsLittleEndian ? e : System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(e));

    /// <summary>Every link names a present entry mapping its page; every writable mapping of a tracked page is linked, or the page is stuck; runs and bits agree with the links.</summary>
    private void AuditBackLinks(List<string> problems)
    {
        int held = 0;
        var byFrame = new Dictionary<byte[], ShadowPage>(ReferenceEqualityComparer.Instance);
        if (_backLinks.Count != 0) foreach (var sp in _shadows.Values) byFrame[sp.Frame] = sp;
        foreach (var bl in _backLinks)
        {
            held += bl.PoolPages.Count;
            int links = 0;
            var r = bl.Range;
            for (int i = 0; i < (int)r.Pages; i++)
            {
                ulong gfn = r.BeginPfn + (ulong)i;
                int n = 0;
                if (bl.FirstFrame[i] is { } first)
                {
                    n++;
                    AuditLink(byFrame, first, bl.FirstIndex[i], gfn, problems);
                }
                else if (bl.MoreHead[i] != 0) problems.Add($"vram: gfn 0x{gfn:x} has further back-links but no first one");
                for (int s = bl.MoreHead[i]; s != 0 && n <= MaxLinksPerPage; s = bl.MoreNext[s - 1])
                {
                    n++;
                    AuditLink(byFrame, bl.MoreFrame[s - 1]!, bl.MoreIndex[s - 1], gfn, problems);
                }
                if (n != bl.Count[i]) problems.Add($"vram: gfn 0x{gfn:x} has {n} back-links, {bl.Count[i]} counted");
                if ((n != 0) != ((bl.Linked[i >> 6] & (1UL << i)) != 0)) problems.Add($"vram: gfn 0x{gfn:x} linked bit disagrees with its {n} back-links");
                if ((n > 1) != ((bl.HasMore[i >> 6] & (1UL << i)) != 0)) problems.Add($"vram: gfn 0x{gfn:x} more-links bit disagrees with its {n} back-links");
                if (bl.RunFrame[i >> 6] is { } run && (n != 1 || !ReferenceEquals(bl.FirstFrame[i], run) || bl.FirstIndex[i] != bl.RunStart[i >> 6] + (i & 63)))
                    problems.Add($"vram: gfn 0x{gfn:x} is in a run its back-links do not follow");
                links += n;
                if (bl.IsStuck(i) || !_rmap.TryGetValue(gfn, out var maps)) continue;
                foreach (var (p, x) in maps)
                {
                    if ((ReadEntry(p.Frame, x) & X86Pte.Writable) == 0 || IsLinked(bl, i, p, x)) continue;
                    problems.Add($"vram: {p} entry {x} maps gfn 0x{gfn:x} writable without a back-link, and the page is not stuck dirty");
                }
            }
            if (links != bl.Used) problems.Add($"vram: range at gfn 0x{r.BeginPfn:x} holds {links} back-links, {bl.Used} counted");
            if (bl.Used > bl.Capacity) problems.Add($"vram: range at gfn 0x{r.BeginPfn:x} holds {bl.Used} back-links in {bl.PoolPages.Count} link page(s)");
        }
        if (held != _linkPages) problems.Add($"vram: ranges hold {held} link pages, {_linkPages} counted");
    }

    private static void AuditLink(Dictionary<byte[], ShadowPage> byFrame, byte[] frame, int index, ulong gfn, List<string> problems)
    {
        if (!byFrame.TryGetValue(frame, out var sp))
            problems.Add($"vram: gfn 0x{gfn:x} links entry {index} of a shadow that is gone");
        else if ((ReadEntry(frame, index) & X86Pte.Present) == 0 || sp.MappedGfn![index] != gfn)
            problems.Add($"vram: gfn 0x{gfn:x} links {sp} entry {index}, which does not map it");
    }

    private static bool IsLinked(BackLinks bl, int i, ShadowPage sp, int index)
    {
        var frame = sp.Frame;
        if (ReferenceEquals(bl.FirstFrame[i], frame) && bl.FirstIndex[i] == index) return true;
        for (int s = bl.MoreHead[i]; s != 0; s = bl.MoreNext[s - 1])
            if (ReferenceEquals(bl.MoreFrame[s - 1], frame) && bl.MoreIndex[s - 1] == index) return true;
        return false;
    }

    /// <summary>
    /// Arm's shadow_prealloc: before the rmap walk links anything, recycle shadows until the pool
    /// has the link pages the walk will need (recounted after each recycle, which unmaps some).
    /// </summary>
    private void PreallocForArm(BackLinks bl)
    {
        while (true)
        {
            bl.Pending = WritableMappings(bl.Range);
            if (_pool.Free >= VramLinkHeadroom(0, 0)) break;
            if (!RecycleLruTop("unpin LRU top: room for vram back-link pages")) { BlowTables("pool exhausted: room for vram back-link pages"); break; }
        }
        bl.Pending = 0;
    }

    private sealed class BackLinkStrategy : IVramStrategy
    {
        private readonly ShadowMode _m;
        public BackLinkStrategy(ShadowMode m) => _m = m;

        public void Arm(VramRange r)
        {
            var bl = new BackLinks(r);
            r.State = bl;
            for (ulong i = 0; i < r.Pages; i++) _m._vramPages[r.BeginPfn + i] = (r, bl);
            _m._backLinks.Add(bl);
            _m.PreallocForArm(bl);
            for (ulong i = 0; i < r.Pages; i++)
            {
                if (!_m._rmap.TryGetValue(r.BeginPfn + i, out var maps)) continue;
                foreach (var (p, x) in maps)
                    if ((ReadEntry(p.Frame, x) & X86Pte.Writable) != 0) _m.AddLink(bl, (int)i, p, x);
            }
        }

        public void Disarm(VramRange r)
        {
            if (r.State is not BackLinks bl) return;
            for (ulong i = 0; i < r.Pages; i++) _m._vramPages.Remove(r.BeginPfn + i);
            _m._backLinks.Remove(bl);
            foreach (var m in bl.PoolPages) _m._pool.Release(m);
            _m._linkPages -= bl.PoolPages.Count;
            bl.PoolPages.Clear();
            r.State = null;
        }

        /// <summary>
        /// Per 64 pages: one word says which have a link or are stuck, one test says whether any
        /// mapping of them went away dirty; a run is read as one block of entries, other pages one
        /// by one, each link's entry straight from its shadow frame. Nothing is allocated, nothing
        /// looked up per page. Optimised from the first call: a query is a hot path from the start.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public bool Collect(VramRange r, Span<byte> bitmap, bool clear)
        {
            var bl = (BackLinks)r.State!;
            var removed = r.RemovedDirty;
            int pages = (int)r.Pages;
            bool cleared = false;
            long stuckReported = 0;
            int words = bl.Linked.Length;
            for (int w = 0; w < RunsAhead && w < words; w++) PrefetchRun(bl, w);
            for (int w = 0, first = 0; first < pages; w++, first += 64)
            {
                if (w + RunsAhead < words) PrefetchRun(bl, w + RunsAhead);
                int count = Math.Min(64, pages - first);
                ulong gone = RemovedBits(removed, first, count);
                ulong stuck = bl.Stuck[w];
                ulong todo = bl.Linked[w];
                if ((todo | stuck | gone) == 0) continue;
                ulong dirty = gone | stuck;
                if (gone != 0)
                {
                    cleared = true;                            // a replaced entry's D may still be cached
                    if (clear) Array.Clear(removed, first, count);
                }
                ulong seen;
                if (bl.RunFrame[w] is { } run) seen = CollectRun(run, bl.RunStart[w], clear);
                else
                {
                    seen = CollectPages(bl, first, todo, clear);
                    if (!bl.RunChecked[w]) FindRun(bl, w, count);
                }
                if (seen != 0)
                {
                    dirty |= seen;
                    cleared = true;
                }
                if (stuck != 0)
                {
                    // A writable mapping without a link: its D bit cannot be read, so always dirty,
                    // until the page has no mapping left at all.
                    stuckReported += BitOperations.PopCount(stuck);
                    if (clear) bl.Stuck[w] = Unstick(r, first, stuck);
                }
                StoreBits(bitmap, first, count, dirty);
            }
            if (stuckReported != 0) _m._counters.Add(PerfCounter.VramStuckDirty, stuckReported);
            // Flush after a clear only if a dirty bit went: otherwise no TLB entry caches one.
            if (clear) r.ClearedDirty = cleared;
            return true;
        }

        /// <summary>Runs whose entries are asked of memory ahead of their turn: a query after the caches went cold waits on memory, not on work.</summary>
        private const int RunsAhead = 4;

        /// <summary>Asks for a run's 512 bytes of entries (eight cache lines) before they are read.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static unsafe void PrefetchRun(BackLinks bl, int w)
        {
            if (!System.Runtime.Intrinsics.X86.Sse.IsSupported || bl.RunFrame[w] is not { } frame) return;
            fixed (byte* p = &frame[bl.RunStart[w] << 3])
                for (int k = 0; k < 64 * 8; k += 64) System.Runtime.Intrinsics.X86.Sse.Prefetch0(p + k);
        }

        /// <summary>The D bits of 64 consecutive shadow entries, as a word; cleared when asked. Blocks of eight with none set are passed over whole.</summary>
        private static ulong CollectRun(byte[] frame, int start, bool clear)
        {
            var entries = MemoryMarshal.Cast<byte, ulong>(frame.AsSpan(start << 3, 64 * 8));
            ulong d = BitConverter.IsLittleEndian ? X86Pte.Dirty : System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(X86Pte.Dirty);   // in memory order
            ulong bits = 0;
            for (int j = 0; j < 64; j += 8)
            {
                if (((entries[j] | entries[j + 1] | entries[j + 2] | entries[j + 3] | entries[j + 4] | entries[j + 5] | entries[j + 6] | entries[j + 7]) & d) == 0) continue;
                for (int k = j; k < j + 8; k++)
                {
                    ulong e = entries[k];
                    if ((e & d) == 0) continue;
                    bits |= 1UL << k;
                    if (clear) entries[k] = e & ~d;
                }
            }
            return bits;
        }

        /// <summary>The pages of <paramref name="todo"/> one by one: any of a page's links dirty makes it dirty.</summary>
        private static ulong CollectPages(BackLinks bl, int first, ulong todo, bool clear)
        {
            ulong bits = 0;
            ulong more = bl.HasMore[first >> 6];
            while (todo != 0)
            {
                int b = BitOperations.TrailingZeroCount(todo);
                todo &= todo - 1;
                int i = first + b;
                var frame = bl.FirstFrame[i]!;
                int index = bl.FirstIndex[i];
                ulong e = ReadEntry(frame, index);
                if ((e & X86Pte.Dirty) != 0)
                {
                    bits |= 1UL << b;
                    if (clear) WriteEntry(frame, index, e & ~X86Pte.Dirty);
                }
                if ((more & (1UL << b)) != 0 && CollectMore(bl, i, clear)) bits |= 1UL << b;
            }
            return bits;
        }

        /// <summary>Whether 64 pages are a run: each linked once, to consecutive entries of one shadow L1. Looked for once per change of their links.</summary>
        private static void FindRun(BackLinks bl, int w, int count)
        {
            bl.RunChecked[w] = true;
            if (count != 64 || bl.Linked[w] != ulong.MaxValue || bl.HasMore[w] != 0) return;
            int first = w << 6;
            var frame = bl.FirstFrame[first]!;
            int start = bl.FirstIndex[first];
            if (start > 512 - 64) return;
            for (int j = 1; j < 64; j++)
                if (!ReferenceEquals(bl.FirstFrame[first + j], frame) || bl.FirstIndex[first + j] != start + j) return;
            bl.RunFrame[w] = frame;
            bl.RunStart[w] = (ushort)start;
        }

        private static bool CollectMore(BackLinks bl, int i, bool clear)
        {
            bool dirty = false;
            for (int s = bl.MoreHead[i]; s != 0; s = bl.MoreNext[s - 1])
            {
                var frame = bl.MoreFrame[s - 1]!;
                int index = bl.MoreIndex[s - 1];
                ulong e = ReadEntry(frame, index);
                if ((e & X86Pte.Dirty) == 0) continue;
                dirty = true;
                if (clear) WriteEntry(frame, index, e & ~X86Pte.Dirty);
            }
            return dirty;
        }

        /// <summary>Stuck pages stay stuck while any mapping of them is left.</summary>
        private ulong Unstick(VramRange r, int first, ulong stuck)
        {
            ulong keep = stuck;
            for (ulong s = stuck; s != 0; s &= s - 1)
            {
                int b = BitOperations.TrailingZeroCount(s);
                if (!_m._rmap.ContainsKey(r.BeginPfn + (ulong)(first + b))) keep &= ~(1UL << b);
            }
            return keep;
        }

        /// <summary>The removed-dirty flags of up to 64 pages as a word; eight word tests when none is set.</summary>
        private static ulong RemovedBits(bool[] removed, int first, int count)
        {
            if (count == 64)
            {
                var words = MemoryMarshal.Cast<bool, ulong>(removed.AsSpan(first, 64));
                if ((words[0] | words[1] | words[2] | words[3] | words[4] | words[5] | words[6] | words[7]) == 0) return 0;
            }
            ulong bits = 0;
            for (int k = 0; k < count; k++) if (removed[first + k]) bits |= 1UL << k;
            return bits;
        }

        private static void StoreBits(Span<byte> bitmap, int first, int count, ulong bits)
        {
            if (bits == 0) return;
            int at = first >> 3;
            if (count == 64)
            {
                var slot = bitmap.Slice(at, 8);
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(slot, System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(slot) | bits);
                return;
            }
            for (int k = 0; k < (count + 7) >> 3; k++) bitmap[at + k] |= (byte)(bits >> (k * 8));
        }
    }
}
