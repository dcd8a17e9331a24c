// The Linux/Xen PV pfn -> mfn tree of seed 004: three levels (top, mid, leaf) of 512
// entries a page. Unpopulated parts point at shared pages: p2m_mid_missing / p2m_missing
// (every entry INVALID_P2M_ENTRY). Non-RAM regions become identity (pfn -> pfn): a leaf
// pointer swapped to the shared p2m_identity page answers the pfn itself for its 512 pfns;
// inside an allocated leaf an identity frame is stored as pfn | IDENTITY_FRAME_BIT.
//
// Two ways to install identity, switchable:
// - Coarse, the patch as posted in the thread: a shared *missing* page a hole touches is
//   swapped to its identity twin (p2m_mid_identity for a whole top entry, p2m_identity for
//   a leaf), which switches every pfn beneath it (512 or 512*512 of them). A hole that does
//   not start or end on a tree boundary then drags RAM pfns into identity, and a later
//   balloon into them hits BUG_ON(phys_to_machine_mapping_valid(pfn)): the "nasty condition".
// - EdgesFirst, what Linux 2.6.39 merged (arch/x86/xen/p2m.c, set_phys_range_identity):
//   a mid page is allocated for every 1 GiB the range touches (there is no p2m_mid_identity
//   in 2.6.39), __early_alloc_p2m allocates the leaf holding the range's first pfn and the
//   leaf holding its end pfn when they are p2m_missing and not leaf-aligned, then each pfn
//   goes through __set_phys_to_machine(pfn, IDENTITY_FRAME(pfn)): a p2m_missing leaf, now
//   always wholly inside the range, is swapped to p2m_identity; an allocated one gets the
//   frame stored. So exactly the range's pfns become identity.
//
// The shared pages are never written (the reviewers' requirement: the tools accept only
// valid frames or ~0 in any page they can see). Setting a non-identity entry under a
// shared identity leaf (set_phys_to_machine) allocates a private leaf that starts as the
// identity frames of its 512 pfns, then stores. 2.6.39 differs here: its
// __set_phys_to_machine checks only for p2m_missing and would store straight into the
// shared p2m_identity page; and had it failed, its alloc_p2m would have replaced the
// identity leaf with an all-INVALID one, dropping the 511 neighbours' identity.
using System;
using XenLab.Memory;

namespace XenLab.P2m;

/// <summary>How identity holes are installed in the tree.</summary>
public enum IdentityStrategy
{
    /// <summary>Populate mid/leaf pages for the hole's unaligned edges first (safe).</summary>
    EdgesFirst,
    /// <summary>Seed 004 as posted: swap shared missing pages to identity wherever a hole touches them.</summary>
    Coarse,
}

/// <summary>Which page of the tree answered a lookup.</summary>
public enum P2mPageKind
{
    Allocated,
    SharedMissing,
    SharedIdentity,
}

/// <summary>What an entry means.</summary>
public enum P2mEntryKind
{
    /// <summary>A real machine frame.</summary>
    Ram,
    /// <summary>1:1, pfn == mfn (non-RAM: PCI holes, ACPI, gaps).</summary>
    Identity,
    /// <summary>INVALID_P2M_ENTRY: nothing there.</summary>
    Missing,
    /// <summary>A frame of another domain (FOREIGN_FRAME_BIT).</summary>
    Foreign,
}

/// <summary>The outcome of one lookup, with where in the tree it was found.</summary>
public readonly record struct P2mLookup(
    ulong Pfn, ulong RawEntry, int TopIndex, int MidIndex, int Index,
    P2mPageKind MidPage, P2mPageKind LeafPage)
{
    public P2mEntryKind Kind => P2mTree.Classify(RawEntry);
    /// <summary>pfn_to_mfn(): the entry with the identity/foreign bits stripped, or INVALID.</summary>
    public Mfn Mfn => RawEntry == P2mTree.InvalidEntry ? Mfn.Invalid : new Mfn(RawEntry & P2mTree.FrameMask);
}

/// <summary>Pages the tree holds: allocated ones cost memory, shared ones are four pages in all.</summary>
public readonly record struct P2mTreeStats(
    int TopPages, int MidPagesAllocated, int LeafPagesAllocated,
    int TopEntriesMidMissing, int TopEntriesMidIdentity,
    int MidEntriesMissing, int MidEntriesIdentity)
{
    /// <summary>p2m_missing, p2m_mid_missing, p2m_identity, p2m_mid_identity.</summary>
    public const int SharedPages = 4;
    public int AllocatedPages => TopPages + MidPagesAllocated + LeafPagesAllocated;
    public ulong AllocatedBytes => (ulong)AllocatedPages * Page.Size;
}

public sealed class P2mTree
{
    public const int EntriesPerPage = 512;               // P2M_PER_PAGE on 64-bit
    private const int IndexBits = 9;
    private const int IndexMask = EntriesPerPage - 1;
    public const ulong PfnsPerLeaf = EntriesPerPage;                       // 2 MiB
    public const ulong PfnsPerMid = (ulong)EntriesPerPage * EntriesPerPage; // 1 GiB
    public const ulong MaxPfn = PfnsPerMid * EntriesPerPage;               // 512 GiB

    public const ulong InvalidEntry = ulong.MaxValue;    // INVALID_P2M_ENTRY
    public const ulong IdentityFrameBit = 1UL << 62;     // 1 << (BITS_PER_LONG - 2)
    public const ulong ForeignFrameBit = 1UL << 63;
    public const ulong FrameMask = ~(IdentityFrameBit | ForeignFrameBit);

    public static ulong IdentityFrame(ulong pfn) => pfn | IdentityFrameBit;

    // The four shared pages. Entries of both leaf pages are INVALID (as in the thread: the
    // tools accept only valid frames or ~0); identity is told by the page's identity.
    private readonly ulong[] _missing = NewFilled(InvalidEntry);
    private readonly ulong[] _identity = NewFilled(InvalidEntry);
    private readonly ulong[][] _midMissing;
    private readonly ulong[][] _midIdentity;
    private readonly ulong[][][] _top;
    private int _midAllocated, _leafAllocated;

    public P2mTree()
    {
        _midMissing = NewMid(_missing);
        _midIdentity = NewMid(_identity);
        _top = new ulong[EntriesPerPage][][];
        for (int i = 0; i < EntriesPerPage; i++) _top[i] = _midMissing;
    }

    public static int TopIndex(ulong pfn) => (int)(pfn >> (2 * IndexBits));
    public static int MidIndex(ulong pfn) => (int)((pfn >> IndexBits) & IndexMask);
    public static int LeafIndex(ulong pfn) => (int)(pfn & IndexMask);

    public static P2mEntryKind Classify(ulong raw) =>
        raw == InvalidEntry ? P2mEntryKind.Missing
        : (raw & IdentityFrameBit) != 0 ? P2mEntryKind.Identity
        : (raw & ForeignFrameBit) != 0 ? P2mEntryKind.Foreign
        : P2mEntryKind.Ram;

    /// <summary>get_phys_to_machine(): the raw entry; identity pages answer IDENTITY_FRAME(pfn).</summary>
    public ulong Get(ulong pfn)
    {
        if (pfn >= MaxPfn) return InvalidEntry;
        ulong[] leaf = _top[TopIndex(pfn)][MidIndex(pfn)];
        // The reviewer's point: p2m_mid_identity holds only p2m_identity, so one check serves both levels.
        if (ReferenceEquals(leaf, _identity)) return IdentityFrame(pfn);
        return leaf[LeafIndex(pfn)];
    }

    /// <summary>phys_to_machine_mapping_valid(): true unless the entry is INVALID_P2M_ENTRY.</summary>
    public bool IsMappingValid(ulong pfn) => Get(pfn) != InvalidEntry;

    /// <summary>The lookup with the page kinds that answered it, for display.</summary>
    public P2mLookup Lookup(ulong pfn)
    {
        if (pfn >= MaxPfn)
            return new P2mLookup(pfn, InvalidEntry, -1, -1, -1, P2mPageKind.SharedMissing, P2mPageKind.SharedMissing);
        int t = TopIndex(pfn), m = MidIndex(pfn);
        ulong[][] mid = _top[t];
        return new P2mLookup(pfn, Get(pfn), t, m, LeafIndex(pfn), KindOf(mid), KindOf(mid[m]));
    }

    /// <summary>
    /// __set_phys_to_machine(): stores without allocating. An identity request swaps a
    /// shared missing page (mid or leaf) to its identity twin, covering every pfn beneath
    /// it. Returns false when a page would have to be allocated first.
    /// </summary>
    public bool TrySet(ulong pfn, ulong entry)
    {
        if (pfn >= MaxPfn) return entry == InvalidEntry;
        int t = TopIndex(pfn), m = MidIndex(pfn);
        ulong[][] mid = _top[t];
        ulong[] leaf = mid[m];
        if (entry != InvalidEntry && (entry & IdentityFrameBit) != 0)
        {
            if (ReferenceEquals(leaf, _identity)) return true;
            if (ReferenceEquals(mid, _midMissing)) { _top[t] = _midIdentity; return true; }
            if (ReferenceEquals(leaf, _missing)) { mid[m] = _identity; return true; }
        }
        if (ReferenceEquals(leaf, _missing)) return entry == InvalidEntry;
        if (ReferenceEquals(leaf, _identity)) return false;
        leaf[LeafIndex(pfn)] = entry;
        return true;
    }

    /// <summary>set_phys_to_machine(): allocates the mid and leaf pages needed, then stores.</summary>
    public void Set(ulong pfn, ulong entry)
    {
        if (pfn >= MaxPfn)
            throw new ArgumentOutOfRangeException(nameof(pfn), $"pfn 0x{pfn:x} is beyond the tree's reach (0x{MaxPfn:x}).");
        if (TrySet(pfn, entry)) return;
        EnsureLeaf(pfn);
        _top[TopIndex(pfn)][MidIndex(pfn)][LeafIndex(pfn)] = entry;
    }

    public void SetMfn(ulong pfn, Mfn mfn) => Set(pfn, mfn.IsValid ? mfn.Value : InvalidEntry);

    /// <summary>
    /// Sets <paramref name="count"/> RAM entries from <paramref name="pfn"/> to frames from
    /// <paramref name="mfn"/> up (or down): as <see cref="Set"/> for each, a leaf page at a time.
    /// </summary>
    public void SetRange(ulong pfn, ulong mfn, ulong count, bool descending = false)
    {
        while (count > 0)
        {
            Set(pfn, mfn);                                   // allocates the leaf if needed: it is private now
            ulong[] leaf = _top[TopIndex(pfn)][MidIndex(pfn)];
            int i = LeafIndex(pfn);
            int n = (int)Math.Min(count, (ulong)(EntriesPerPage - i));
            for (int k = 1; k < n; k++) leaf[i + k] = descending ? mfn - (ulong)k : mfn + (ulong)k;
            pfn += (ulong)n;
            mfn = descending ? mfn - (ulong)n : mfn + (ulong)n;
            count -= (ulong)n;
        }
    }

    /// <summary>
    /// set_phys_range_identity(): makes [startPfn, endPfn) identity. Returns how many pfns
    /// the tree now answers identity for that it did not before, which with the coarse
    /// strategy can be far more than the range asked for.
    /// </summary>
    public ulong SetIdentityRange(ulong startPfn, ulong endPfn, IdentityStrategy strategy)
    {
        if (endPfn > MaxPfn || startPfn > endPfn)
            throw new ArgumentOutOfRangeException(nameof(endPfn), $"identity range [0x{startPfn:x}, 0x{endPfn:x}) is empty-reversed or beyond 0x{MaxPfn:x}.");
        if (strategy == IdentityStrategy.EdgesFirst) return SetIdentityRangeAsMerged(startPfn, endPfn);
        if (startPfn == endPfn) return 0;
        ulong before = CountIdentity(startPfn, endPfn);
        InstallIdentity(startPfn, endPfn);
        return CountIdentity(startPfn, endPfn) - before;
    }

    private ulong SetIdentityRangeAsMerged(ulong startPfn, ulong endPfn)
    {
        // 2.6.39 gives up on a range whose end reaches MAX_P2M_PFN (pfn_e >= MAX_P2M_PFN).
        if (endPfn >= MaxPfn) return 0;
        ulong before = CountIdentity(startPfn, endPfn);
        // A mid page for every 1 GiB the range touches, even an empty range that is not
        // 1 GiB aligned (the loop runs from pfn_s rounded down to pfn_e rounded up).
        ulong alignedEnd = (endPfn + PfnsPerMid - 1) & ~(PfnsPerMid - 1);
        for (ulong pfn = startPfn & ~(PfnsPerMid - 1); pfn < alignedEnd; pfn += PfnsPerMid)
        {
            int t = TopIndex(pfn);
            if (ReferenceEquals(_top[t], _midMissing)) _top[t] = CopyMid(_midMissing);
        }
        EarlyAllocLeaf(startPfn);
        EarlyAllocLeaf(endPfn);
        InstallIdentity(startPfn, endPfn);
        return CountIdentity(startPfn, endPfn) - before;
    }

    /// <summary>__early_alloc_p2m(): a private leaf where <paramref name="pfn"/> is not leaf-aligned and its leaf is p2m_missing.</summary>
    private void EarlyAllocLeaf(ulong pfn)
    {
        if (LeafIndex(pfn) == 0) return;
        ulong[][] mid = _top[TopIndex(pfn)];
        int m = MidIndex(pfn);
        if (!ReferenceEquals(mid[m], _missing) || IsShared(mid)) return;
        mid[m] = NewFilled(InvalidEntry);
        _leafAllocated++;
    }

    private void InstallIdentity(ulong startPfn, ulong endPfn)
    {
        ulong pfn = startPfn;
        while (pfn < endPfn)
        {
            TrySetOrAllocate(pfn, IdentityFrame(pfn));
            // Skip what a shared identity page now answers for.
            ulong[][] mid = _top[TopIndex(pfn)];
            if (ReferenceEquals(mid, _midIdentity)) pfn = (pfn | (PfnsPerMid - 1)) + 1;
            else if (ReferenceEquals(mid[MidIndex(pfn)], _identity)) pfn = (pfn | (PfnsPerLeaf - 1)) + 1;
            else pfn++;
        }
    }

    /// <summary>
    /// True when the four shared pages hold what they were made with: p2m_missing and
    /// p2m_identity all INVALID, the shared mid pages pointing only at their leaf twin.
    /// </summary>
    public bool SharedPagesIntact()
    {
        foreach (ulong e in _missing) if (e != InvalidEntry) return false;
        foreach (ulong e in _identity) if (e != InvalidEntry) return false;
        foreach (var l in _midMissing) if (!ReferenceEquals(l, _missing)) return false;
        foreach (var l in _midIdentity) if (!ReferenceEquals(l, _identity)) return false;
        return true;
    }

    private void TrySetOrAllocate(ulong pfn, ulong entry)
    {
        if (!TrySet(pfn, entry)) Set(pfn, entry);
    }

    private void EnsureLeaf(ulong pfn)
    {
        int t = TopIndex(pfn), m = MidIndex(pfn);
        if (IsShared(_top[t])) _top[t] = CopyMid(_top[t]);
        ulong[][] mid = _top[t];
        if (ReferenceEquals(mid[m], _missing))
        {
            mid[m] = NewFilled(InvalidEntry);
            _leafAllocated++;
        }
        else if (ReferenceEquals(mid[m], _identity))
        {
            // Keep the neighbours' identity: a leaf replacing p2m_identity starts as identity.
            var leaf = NewLeaf();
            ulong basePfn = pfn & ~(PfnsPerLeaf - 1);
            for (int i = 0; i < EntriesPerPage; i++) leaf[i] = IdentityFrame(basePfn + (ulong)i);
            mid[m] = leaf;
            _leafAllocated++;
        }
    }

    private ulong[][] CopyMid(ulong[][] shared)
    {
        _midAllocated++;
        return (ulong[][])shared.Clone();
    }

    private bool IsShared(ulong[][] mid) => ReferenceEquals(mid, _midMissing) || ReferenceEquals(mid, _midIdentity);

    private P2mPageKind KindOf(ulong[][] mid) =>
        ReferenceEquals(mid, _midMissing) ? P2mPageKind.SharedMissing
        : ReferenceEquals(mid, _midIdentity) ? P2mPageKind.SharedIdentity
        : P2mPageKind.Allocated;

    private P2mPageKind KindOf(ulong[] leaf) =>
        ReferenceEquals(leaf, _missing) ? P2mPageKind.SharedMissing
        : ReferenceEquals(leaf, _identity) ? P2mPageKind.SharedIdentity
        : P2mPageKind.Allocated;

    public P2mTreeStats Stats()
    {
        int topMissing = 0, topIdentity = 0, midMissing = 0, midIdentity = 0;
        foreach (var mid in _top)
        {
            if (ReferenceEquals(mid, _midMissing)) { topMissing++; continue; }
            if (ReferenceEquals(mid, _midIdentity)) { topIdentity++; continue; }
            foreach (var leaf in mid)
            {
                if (ReferenceEquals(leaf, _missing)) midMissing++;
                else if (ReferenceEquals(leaf, _identity)) midIdentity++;
            }
        }
        return new P2mTreeStats(1, _midAllocated, _leafAllocated, topMissing, topIdentity, midMissing, midIdentity);
    }

    /// <summary>How many pfns below MaxPfn the tree answers identity for.</summary>
    public ulong CountIdentity() => CountIdentityInTop(0, EntriesPerPage - 1);

    /// <summary>
    /// Identity pfns under the top entries [<paramref name="startPfn"/>, <paramref name="endPfn"/>)
    /// touches: all an identity install over that range can change (a coarse swap switches at most
    /// the whole mid page it is in), so a build does not count a whole big domain's leaves.
    /// </summary>
    private ulong CountIdentity(ulong startPfn, ulong endPfn) =>
        CountIdentityInTop(TopIndex(startPfn), TopIndex(Math.Max(startPfn, endPfn - 1)));

    private ulong CountIdentityInTop(int firstTop, int lastTop)
    {
        ulong n = 0;
        for (int t = firstTop; t <= lastTop; t++)
        {
            ulong[][] mid = _top[t];
            if (ReferenceEquals(mid, _midMissing)) continue;
            if (ReferenceEquals(mid, _midIdentity)) { n += PfnsPerMid; continue; }
            foreach (var leaf in mid)
            {
                if (ReferenceEquals(leaf, _identity)) { n += PfnsPerLeaf; continue; }
                if (ReferenceEquals(leaf, _missing)) continue;
                foreach (ulong e in leaf)
                    if (e != InvalidEntry && (e & IdentityFrameBit) != 0) n++;
            }
        }
        return n;
    }

    /// <summary>Every (pfn, mfn) the tree maps to RAM, ascending.</summary>
    public System.Collections.Generic.IEnumerable<(ulong Pfn, Mfn Mfn)> EnumerateRam()
    {
        for (int t = 0; t < EntriesPerPage; t++)
        {
            ulong[][] mid = _top[t];
            if (IsShared(mid)) continue;
            for (int m = 0; m < EntriesPerPage; m++)
            {
                ulong[] leaf = mid[m];
                if (ReferenceEquals(leaf, _missing) || ReferenceEquals(leaf, _identity)) continue;
                ulong basePfn = ((ulong)t << (2 * IndexBits)) | ((ulong)m << IndexBits);
                for (int i = 0; i < EntriesPerPage; i++)
                    if (Classify(leaf[i]) == P2mEntryKind.Ram) yield return (basePfn + (ulong)i, new Mfn(leaf[i]));
            }
        }
    }

    /// <summary>
    /// The RAM the tree maps as maximal runs whose pfns and mfns both go up by one, ascending:
    /// what a builder maps with large leaves, read a leaf page at a time (one step per run, not per page).
    /// </summary>
    public System.Collections.Generic.IEnumerable<(ulong Pfn, ulong Mfn, ulong Count)> EnumerateRamRuns()
    {
        ulong runPfn = 0, runMfn = 0, runCount = 0;
        for (int t = 0; t < EntriesPerPage; t++)
        {
            ulong[][] mid = _top[t];
            if (IsShared(mid)) continue;
            for (int m = 0; m < EntriesPerPage; m++)
            {
                ulong[] leaf = mid[m];
                if (ReferenceEquals(leaf, _missing) || ReferenceEquals(leaf, _identity)) continue;
                ulong basePfn = ((ulong)t << (2 * IndexBits)) | ((ulong)m << IndexBits);
                for (int i = 0; i < EntriesPerPage; i++)
                {
                    ulong e = leaf[i];
                    ulong pfn = basePfn + (ulong)i;
                    if (runCount > 0 && pfn == runPfn + runCount && e == runMfn + runCount)
                    {
                        // The run goes on (a RAM frame one up is RAM): take the rest of it in this leaf in one tight loop.
                        int k = i + 1;
                        ulong next = e + 1;
                        while (k < EntriesPerPage && leaf[k] == next) { k++; next++; }
                        runCount += (ulong)(k - i);
                        i = k - 1;
                        continue;
                    }
                    if (Classify(e) != P2mEntryKind.Ram) continue;
                    if (runCount > 0) yield return (runPfn, runMfn, runCount);
                    runPfn = pfn;
                    runMfn = e;
                    runCount = 1;
                }
            }
        }
        if (runCount > 0) yield return (runPfn, runMfn, runCount);
    }

    /// <summary>Every (pfn, mfn) the tree maps to RAM, descending.</summary>
    public System.Collections.Generic.IEnumerable<(ulong Pfn, Mfn Mfn)> EnumerateRamDescending()
    {
        for (int t = EntriesPerPage - 1; t >= 0; t--)
        {
            ulong[][] mid = _top[t];
            if (IsShared(mid)) continue;
            for (int m = EntriesPerPage - 1; m >= 0; m--)
            {
                ulong[] leaf = mid[m];
                if (ReferenceEquals(leaf, _missing) || ReferenceEquals(leaf, _identity)) continue;
                ulong basePfn = ((ulong)t << (2 * IndexBits)) | ((ulong)m << IndexBits);
                for (int i = EntriesPerPage - 1; i >= 0; i--)
                    if (Classify(leaf[i]) == P2mEntryKind.Ram) yield return (basePfn + (ulong)i, new Mfn(leaf[i]));
            }
        }
    }

    private static ulong[] NewFilled(ulong value)
    {
        var page = NewLeaf();
        Array.Fill(page, value);
        return page;
    }

    /// <summary>
    /// A leaf page lives as long as its domain, like the page it models: allocated where the GC
    /// never moves it (the pinned heap), so building a domain of hundreds of GiB does not copy
    /// its hundreds of MiB of leaves through each GC generation.
    /// </summary>
    private static ulong[] NewLeaf() => GC.AllocateUninitializedArray<ulong>(EntriesPerPage, pinned: true);

    private static ulong[][] NewMid(ulong[] leaf)
    {
        var mid = new ulong[EntriesPerPage][];
        Array.Fill(mid, leaf);
        return mid;
    }
}
