using System;
using System.Collections.Generic;
using XenLab.Memory;
using XenLab.P2m;

namespace XenLab.Tests;

public class P2mTreeTests
{
    private const ulong Invalid = P2mTree.InvalidEntry;

    [Theory]
    // pfn, top, mid, idx computed by hand: pfn = top*512*512 + mid*512 + idx
    [InlineData(0x0UL, 0, 0, 0)]
    [InlineData(0x1FFUL, 0, 0, 511)]
    [InlineData(0x200UL, 0, 1, 0)]
    [InlineData(0x40000UL, 1, 0, 0)]            // 1 GiB
    [InlineData(0x93C00UL, 2, 158, 0)]          // 2364 MiB: 605184 = 2*262144 + 158*512
    [InlineData(0xC0000UL, 3, 0, 0)]            // 3 GiB, the thread's identity example
    [InlineData(0xFFFFFUL, 3, 511, 511)]        // last pfn below 4 GiB
    public void IndexesSplitThePfnInNineBitFields(ulong pfn, int top, int mid, int idx)
    {
        Assert.Equal(top, P2mTree.TopIndex(pfn));
        Assert.Equal(mid, P2mTree.MidIndex(pfn));
        Assert.Equal(idx, P2mTree.LeafIndex(pfn));
    }

    [Fact]
    public void ANewTreeIsAllMissingAndHoldsOnlyTheTopPage()
    {
        var t = new P2mTree();
        Assert.Equal(Invalid, t.Get(0));
        Assert.Equal(Invalid, t.Get(0xC0000));
        Assert.False(t.IsMappingValid(0x12345));
        var s = t.Stats();
        Assert.Equal(1, s.AllocatedPages);                 // only the top page
        Assert.Equal(512, s.TopEntriesMidMissing);
        Assert.Equal(0UL, t.CountIdentity());
    }

    [Fact]
    public void SettingOneMfnAllocatesOneMidAndOneLeaf()
    {
        var t = new P2mTree();
        t.SetMfn(0x40005, new Mfn(0x290F));
        Assert.Equal(0x290FUL, t.Get(0x40005));
        Assert.Equal(Invalid, t.Get(0x40004));            // the rest of the new leaf is INVALID
        var s = t.Stats();
        Assert.Equal(1, s.MidPagesAllocated);
        Assert.Equal(1, s.LeafPagesAllocated);
        Assert.Equal(511, s.MidEntriesMissing);            // the new mid's other 511 entries still shared
        Assert.Equal(511, s.TopEntriesMidMissing);
    }

    [Fact]
    public void TrySetWithoutALeafFailsForRamButSucceedsForInvalid()
    {
        var t = new P2mTree();
        Assert.False(t.TrySet(0x10, 0x1234));              // __set_phys_to_machine: needs allocation
        Assert.True(t.TrySet(0x10, Invalid));              // storing INVALID in p2m_missing is a no-op
        Assert.Equal(1, t.Stats().AllocatedPages);
    }

    [Fact]
    public void CoarseIdentityOneGiBAlignedMakesTheTopEntryMidIdentity()
    {
        // The thread: "from 3GB to 4GB with identity mapping, so p2m[3] is now p2m_mid_identity".
        var t = new P2mTree();
        ulong changed = t.SetIdentityRange(0xC0000, 0x100000, IdentityStrategy.Coarse);
        Assert.Equal(0x40000UL, changed);                  // exactly 1 GiB of pfns
        var s = t.Stats();
        Assert.Equal(1, s.TopEntriesMidIdentity);
        Assert.Equal(1, s.AllocatedPages);                 // no page allocated: the shared one serves
        Assert.Equal(P2mTree.IdentityFrame(0xC1234), t.Get(0xC1234));
        Assert.Equal(new Mfn(0xC1234), t.Lookup(0xC1234).Mfn);
        Assert.Equal(P2mPageKind.SharedIdentity, t.Lookup(0xC1234).MidPage);
        Assert.Equal(Invalid, t.Get(0x100000));            // p2m[4] still missing
        Assert.Equal(Invalid, t.Get(0xBFFFF));
    }

    [Fact]
    public void EdgesFirstIdentityOneGiBAlignedAllocatesAMidPageAsMerged()
    {
        // 2.6.39's set_phys_range_identity has no p2m_mid_identity: it extend_brk()s a mid page
        // for every 1 GiB the range touches, then swaps each of its p2m_missing leaves.
        var t = new P2mTree();
        ulong changed = t.SetIdentityRange(0xC0000, 0x100000, IdentityStrategy.EdgesFirst);
        Assert.Equal(0x40000UL, changed);
        var s = t.Stats();
        Assert.Equal(0, s.TopEntriesMidIdentity);
        Assert.Equal(1, s.MidPagesAllocated);              // p2m[3]
        Assert.Equal(0, s.LeafPagesAllocated);             // aligned both ends: no __early_alloc_p2m
        Assert.Equal(512, s.MidEntriesIdentity);           // p2m[3][0..511] -> p2m_identity
        Assert.Equal(P2mPageKind.Allocated, t.Lookup(0xC1234).MidPage);
        Assert.Equal(P2mPageKind.SharedIdentity, t.Lookup(0xC1234).LeafPage);
        Assert.Equal(P2mTree.IdentityFrame(0xC1234), t.Get(0xC1234));
        Assert.Equal(Invalid, t.Get(0x100000));
        Assert.Equal(Invalid, t.Get(0xBFFFF));
    }

    [Fact]
    public void OneIdentityPfnInAMissingMidSwitchesAllOfItsGiB()
    {
        // Ian Campbell's question: __set_phys_to_machine(X, X) on p2m_mid_missing switches 512^2 pages.
        var t = new P2mTree();
        Assert.True(t.TrySet(0xC0005, P2mTree.IdentityFrame(0xC0005)));
        Assert.Equal(P2mTree.IdentityFrame(0xC0000), t.Get(0xC0000));
        Assert.Equal(P2mTree.IdentityFrame(0xFFFFF), t.Get(0xFFFFF));
        Assert.Equal(262144UL, t.CountIdentity());
    }

    [Fact]
    public void OneIdentityPfnInAMissingLeafOfAnAllocatedMidSwitchesItsTwoMiB()
    {
        var t = new P2mTree();
        t.SetMfn(0xC0000, new Mfn(7));                     // allocates mid [3] and leaf [3][0]
        Assert.True(t.TrySet(0xC0400, P2mTree.IdentityFrame(0xC0400)));   // leaf [3][2] is p2m_missing
        Assert.Equal(512UL, t.CountIdentity());
        Assert.Equal(P2mTree.IdentityFrame(0xC05FF), t.Get(0xC05FF));
        Assert.Equal(Invalid, t.Get(0xC0600));
        Assert.Equal(P2mPageKind.SharedIdentity, t.Lookup(0xC0401).LeafPage);
    }

    [Fact]
    public void IdentityInsideAnAllocatedLeafSetsTheIdentityFrameBit()
    {
        var t = new P2mTree();
        for (ulong pfn = 0; pfn < 512; pfn++) t.SetMfn(pfn, new Mfn(0x290F - pfn));
        t.SetIdentityRange(0x9F, 0x100, IdentityStrategy.Coarse);
        Assert.Equal(0x9FUL | (1UL << 62), t.Get(0x9F));   // bit 62 = 1 << (BITS_PER_LONG - 2)
        Assert.Equal(0x290FUL - 0x9E, t.Get(0x9E));        // neighbours keep their mfns
        Assert.Equal(0x290FUL - 0x100, t.Get(0x100));
        Assert.Equal(P2mEntryKind.Identity, t.Lookup(0xFF).Kind);
        Assert.Equal(97UL, t.CountIdentity());             // 0x9F..0xFF
    }

    [Fact]
    public void StoringRamInsideASharedIdentityLeafKeepsTheNeighboursIdentity()
    {
        var t = new P2mTree();
        t.SetIdentityRange(0xC0000, 0x100000, IdentityStrategy.EdgesFirst);
        t.SetMfn(0xF0000, new Mfn(0x1234));                // a framebuffer page populated in the hole
        Assert.Equal(0x1234UL, t.Get(0xF0000));
        Assert.Equal(P2mTree.IdentityFrame(0xF0001), t.Get(0xF0001));
        Assert.Equal(P2mTree.IdentityFrame(0xEFFFF), t.Get(0xEFFFF));
        Assert.Equal(0x40000UL - 1, t.CountIdentity());
        var s = t.Stats();
        Assert.Equal(1, s.MidPagesAllocated);
        Assert.Equal(1, s.LeafPagesAllocated);
        Assert.Equal(511, s.MidEntriesIdentity);
    }

    [Fact]
    public void CoarseIdentityFromAnUnalignedHoleStartSwitchesRamBelowIt()
    {
        // dom0_mem=max:2364MB,1GB: populated to 1 GiB, RAM to 2364 MiB, hole from there.
        var t = Populated(0x40000);
        ulong changed = t.SetIdentityRange(0x93C00, 0x100000, IdentityStrategy.Coarse);
        // p2m[2] was p2m_mid_missing: all of 2..3 GiB switched, although RAM goes to 0x93C00.
        Assert.Equal(P2mTree.IdentityFrame(0x80000), t.Get(0x80000));
        Assert.True(t.IsMappingValid(0x93BFF));            // a RAM pfn the balloon will want
        Assert.Equal(0x100000UL - 0x80000, changed);
    }

    [Fact]
    public void EdgesFirstIdentityFromAnUnalignedHoleStartLeavesRamBelowItInvalid()
    {
        var t = Populated(0x40000);
        ulong changed = t.SetIdentityRange(0x93C00, 0x100000, IdentityStrategy.EdgesFirst);
        Assert.Equal(0x100000UL - 0x93C00, changed);       // exactly the hole
        Assert.False(t.IsMappingValid(0x93BFF));
        Assert.False(t.IsMappingValid(0x80000));
        Assert.Equal(P2mTree.IdentityFrame(0x93C00), t.Get(0x93C00));
        var s = t.Stats();
        // mid [2] and [3] allocated (one per 1 GiB touched); 0x93C00 is leaf-aligned (158*512),
        // so leaves [2][158..511] and all of [3] are the shared p2m_identity and [2][0..157]
        // stay p2m_missing.
        Assert.Equal(3, s.MidPagesAllocated);              // [0] from populating, [2] and [3] for the hole
        Assert.Equal(512, s.LeafPagesAllocated);           // [0][0..511] from populating; no edge leaf
        Assert.Equal(512 - 158 + 512, s.MidEntriesIdentity);
        Assert.Equal(0, s.TopEntriesMidIdentity);
    }

    [Fact]
    public void EdgesFirstAllocatesALeafForAHoleEdgeInsideALeaf()
    {
        var t = Populated(0x40000);
        t.SetIdentityRange(0x93C61, 0x100000, IdentityStrategy.EdgesFirst);
        Assert.False(t.IsMappingValid(0x93C60));
        Assert.Equal(P2mTree.IdentityFrame(0x93C61), t.Get(0x93C61));
        Assert.Equal(P2mPageKind.Allocated, t.Lookup(0x93C61).LeafPage);
        Assert.Equal(0x100000UL - 0x93C61, t.CountIdentity());
    }

    [Theory]
    [InlineData(IdentityStrategy.EdgesFirst)]
    [InlineData(IdentityStrategy.Coarse)]
    public void SettingAFrameUnderASharedIdentityLeafKeepsTheSharedPageAndTheNeighbours(IdentityStrategy strategy)
    {
        // 2.6.39's __set_phys_to_machine would store into p2m_identity itself; the reviewers
        // require the shared pages to hold only INVALID. XenLab gives the pfn a private leaf
        // that starts as the identity frames of its 512 pfns.
        var t = new P2mTree();
        t.SetIdentityRange(0xC0000, 0x100000, strategy);
        Assert.Equal(P2mPageKind.SharedIdentity, t.Lookup(0xC0205).LeafPage);
        t.Set(0xC0205, 0x1234);
        Assert.Equal(0x1234UL, t.Get(0xC0205));
        Assert.Equal(P2mPageKind.Allocated, t.Lookup(0xC0205).LeafPage);
        Assert.Equal(P2mTree.IdentityFrame(0xC0204), t.Get(0xC0204));   // neighbours in the same leaf
        Assert.Equal(P2mTree.IdentityFrame(0xC0206), t.Get(0xC0206));
        Assert.Equal(P2mTree.IdentityFrame(0xC0400), t.Get(0xC0400));   // the next leaf still shared
        Assert.Equal(P2mPageKind.SharedIdentity, t.Lookup(0xC0400).LeafPage);
        Assert.True(t.SharedPagesIntact());
        Assert.Equal(0x40000UL - 1, t.CountIdentity());
    }

    [Fact]
    public void EdgesFirstAllocatesTreePagesEvenForAnEmptyUnalignedRangeAsMerged()
    {
        // set_phys_range_identity(pfn, pfn) with pfn not 1 GiB aligned still extend_brk()s the
        // mid page and, pfn not leaf-aligned, __early_alloc_p2m the leaf.
        var t = new P2mTree();
        Assert.Equal(0UL, t.SetIdentityRange(0x40500, 0x40500, IdentityStrategy.EdgesFirst));
        var s = t.Stats();
        Assert.Equal(1, s.MidPagesAllocated);
        Assert.Equal(1, s.LeafPagesAllocated);
        Assert.Equal(0UL, t.CountIdentity());
    }

    [Fact]
    public void EdgesFirstSkipsARangeReachingTheTreesEndAsMerged()
    {
        // "if (pfn_s >= MAX_P2M_PFN || pfn_e >= MAX_P2M_PFN) return 0;"
        var t = new P2mTree();
        Assert.Equal(0UL, t.SetIdentityRange(P2mTree.MaxPfn - 0x100, P2mTree.MaxPfn, IdentityStrategy.EdgesFirst));
        Assert.Equal(P2mTree.InvalidEntry, t.Get(P2mTree.MaxPfn - 1));
        Assert.Equal(1, t.Stats().AllocatedPages);
    }

    [Fact]
    public void AReversedRangeIsRefused()
    {
        var t = new P2mTree();
        Assert.Throws<ArgumentOutOfRangeException>(() => t.SetIdentityRange(10, 5, IdentityStrategy.Coarse));
        Assert.Equal(0UL, t.SetIdentityRange(7, 7, IdentityStrategy.Coarse));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void EdgesFirstMatchesAPerPfnReferenceModel(int seed)
    {
        // Reference: a dictionary of pfn -> entry with the obvious meaning. Edges-first must
        // give identity to exactly the pfns asked for, and sets must land exactly.
        var rng = new Random(seed);
        var t = new P2mTree();
        var model = new Dictionary<ulong, ulong>();
        const ulong span = 0x200000;                       // 8 GiB of pfn space: several tops
        var probes = new List<ulong>();
        for (int op = 0; op < 60; op++)
        {
            if (rng.Next(3) == 0)
            {
                ulong s = (ulong)rng.NextInt64(0, (long)span), len = (ulong)rng.NextInt64(1, 0x50000);
                ulong e = Math.Min(span, s + len);
                // No RAM is ever turned identity (the domain refuses that); skip ranges over RAM.
                bool overRam = false;
                foreach (var kv in model) if (kv.Key >= s && kv.Key < e && P2mTree.Classify(kv.Value) == P2mEntryKind.Ram) { overRam = true; break; }
                if (overRam) continue;
                t.SetIdentityRange(s, e, IdentityStrategy.EdgesFirst);
                for (ulong p = s; p < e; p++) model[p] = P2mTree.IdentityFrame(p);
                probes.Add(s); probes.Add(e - 1); probes.Add(e); if (s > 0) probes.Add(s - 1);
            }
            else
            {
                ulong p = (ulong)rng.NextInt64(0, (long)span);
                ulong mfn = (ulong)rng.NextInt64(0, 1L << 40);
                t.Set(p, mfn);
                model[p] = mfn;
                probes.Add(p); probes.Add(p + 1); if (p > 0) probes.Add(p - 1);
            }
        }
        for (int i = 0; i < 2000; i++) probes.Add((ulong)rng.NextInt64(0, (long)span));
        foreach (ulong p in probes)
        {
            ulong expect = model.TryGetValue(p, out var v) ? v : Invalid;
            Assert.True(expect == t.Get(p), $"seed {seed}: pfn 0x{p:x} expected 0x{expect:x}, tree says 0x{t.Get(p):x}");
        }
        ulong modelIdentity = 0;
        foreach (var v in model.Values) if (P2mTree.Classify(v) == P2mEntryKind.Identity) modelIdentity++;
        Assert.Equal(modelIdentity, t.CountIdentity());
    }

    private static P2mTree Populated(ulong pages)
    {
        var t = new P2mTree();
        for (ulong p = 0; p < pages; p++) t.SetMfn(p, new Mfn(0x10000000 - p));
        return t;
    }

    [Fact]
    public void RamRunsAreTheMaximalRunsOfConsecutivePfnsAndMfnsEntryByEntry()
    {
        // Runs crossing leaf pages, broken by a hole, an identity pfn, a foreign frame, a frame out
        // of step, descending frames and a missing entry; the reference merges EnumerateRam's pairs.
        var t = new P2mTree();
        t.SetRange(0x100, 0x9000, 0x700);                     // crosses a leaf page boundary
        t.Set(0x300, 0x12345);                                // out of step in the middle
        t.Set(0x400, P2mTree.IdentityFrame(0x400));
        t.Set(0x500, 0x9400 | P2mTree.ForeignFrameBit);
        t.Set(0x600, P2mTree.InvalidEntry);
        t.SetRange(0x900, 0x20000, 0x20, descending: true);
        t.SetRange(0x40000 - 3, 0x80000 - 3, 10);             // crosses a mid (1 GiB) boundary
        var expected = new List<(ulong, ulong, ulong)>();
        foreach (var (pfn, mfn) in t.EnumerateRam())
        {
            if (expected.Count > 0)
            {
                var (p, m, n) = expected[^1];
                if (pfn == p + n && mfn.Value == m + n) { expected[^1] = (p, m, n + 1); continue; }
            }
            expected.Add((pfn, mfn.Value, 1));
        }
        Assert.Equal(expected, new List<(ulong, ulong, ulong)>(t.EnumerateRamRuns()));
        Assert.Contains((0x100UL, 0x9000UL, 0x200UL), expected);                 // up to the out-of-step frame
        Assert.Contains((0x40000UL - 3, 0x80000UL - 3, 10UL), expected);         // one run across the GiB
    }
}
