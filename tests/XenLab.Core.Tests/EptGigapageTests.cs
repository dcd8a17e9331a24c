using System;
using System.Collections.Generic;
using System.Linq;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Memory;
using XenLab.P2m;
using XenLab.Paging;
using XenLab.Paging.Hap;
using XenLab.Paging.Modes;

namespace XenLab.Tests;

/// <summary>
/// Issue 11, point 5: 1 GiB EPT leaves. Expectations from xen/arch/x86/mm/p2m-ept.c: an EPDPTE
/// with the page-size bit where a whole aligned GiB of RAM sits on aligned, contiguous frames
/// (the toolstack populates 1 GiB extents first); ept_set_entry splitting one down to 4 KiB for
/// an order-0 change (ept_split_super_page recursing into every child); resolve_misconfig
/// keeping it whole when p2m_is_logdirty_range says all or none of it, and splitting it one
/// level (into 2 MiB leaves that keep the marks) when part.
/// A 4 GiB domain (maxmem 4 GiB, the default 1 GiB PCI hole) has RAM at [1 MiB, 3 GiB) and
/// [4 GiB, 5 GiB): GiB 0 holds the low-memory hole, so GiBs 1, 2 and 4 can be 1 GiB leaves.
/// Frames are backed lazily, so the domain costs what is written.
/// </summary>
public class EptGigapageTests
{
    private const ulong Gib = 0x40000;                 // gfns a 1 GiB leaf maps
    private const ulong Va = 0x400000;
    private const ulong DataGfn = Gib + 0x10;          // in GiB 1
    private const ulong Va2 = 0x800000;
    private const ulong Data2Gfn = 2 * Gib + 0x2345;   // in GiB 2

    private static Domain Hap(string superpages = "on", HapLogDirty logDirty = HapLogDirty.Pml, int gpaCache = PagingOptions.DefaultGpaCacheEntries)
    {
        var host = new XenHost(8UL << 30);
        var c = TestDomains.Config("gp", 4096, 4096);
        c.PagingOptions = c.PagingOptions with
        {
            HapLogDirty = logDirty, HapGpaCacheEntries = gpaCache,
            HapSuperpages = superpages != "off", HapSuperpages1G = superpages == "on",
        };
        var d = host.CreateDomain(c);
        d.Kernel.Map(Va, DataGfn, 4, MapFlags.Writable);
        d.Kernel.Map(Va2, Data2Gfn, 1, MapFlags.Writable);
        return d;
    }

    private static Ept EptOf(Domain d) => ((HapMode)d.Mode!).Ept;

    /// <summary>The level-3 entry for a gfn, read from the EPT's tables in machine memory.</summary>
    private static ulong L3(Domain d, ulong gfn)
    {
        ulong e4 = d.Machine.ReadUInt64(EptOf(d).Root, (int)((gfn >> 27) & 511) * 8);
        return d.Machine.ReadUInt64(new Mfn(EptEntry.FrameOf(e4)), (int)((gfn >> 18) & 511) * 8);
    }

    /// <summary>The level-2 entry for a gfn (under a level-3 table entry).</summary>
    private static ulong L2(Domain d, ulong gfn) =>
        d.Machine.ReadUInt64(new Mfn(EptEntry.FrameOf(L3(d, gfn))), (int)((gfn >> 9) & 511) * 8);

    /// <summary>The 1 GiB leaves, read from the EPT's tables in machine memory.</summary>
    private static List<ulong> GigaLeafGfns(Domain d)
    {
        var found = new List<ulong>();
        ulong root = EptOf(d).Root.Value;
        for (int i4 = 0; i4 < 512; i4++)
        {
            ulong e4 = d.Machine.ReadUInt64(new Mfn(root), i4 * 8);
            if (!EptEntry.IsPresent(e4)) continue;
            for (int i3 = 0; i3 < 512; i3++)
                if (EptEntry.IsSuperpage(d.Machine.ReadUInt64(new Mfn(EptEntry.FrameOf(e4)), i3 * 8)))
                    found.Add(((ulong)i4 << 27) | ((ulong)i3 << 18));
        }
        return found;
    }

    private static List<string> Audit(Domain d)
    {
        var p = new List<string>();
        d.Mode!.Audit(p);
        return p;
    }

    [Fact]
    public void RamIsMappedWithOneGiBLeavesWhereAWholeAlignedGiBSitsOnAlignedContiguousFrames()
    {
        var d = Hap();
        // By hand from the p2m: each aligned GiB of gfns all RAM, on 262,144 aligned, consecutive frames.
        var expected = new List<ulong>();
        for (ulong g = 0; g < 8 * Gib; g += Gib)
        {
            ulong m0 = d.P2m.Get(g);
            if (P2mTree.Classify(m0) != P2mEntryKind.Ram || (m0 & (Gib - 1)) != 0) continue;
            bool run = true;
            for (ulong k = 1; k < Gib && run; k++) run = d.P2m.Get(g + k) == m0 + k;
            if (run) expected.Add(g);
        }
        Assert.Equal(new[] { Gib, 2 * Gib, 4 * Gib }, expected);
        Assert.Equal(expected, GigaLeafGfns(d));
        Assert.Equal(3, d.Counters[PerfCounter.EptSuperpage1G]);
        // GiB 0: a 2 MiB leaf for each of its regions but region 0, which holds the low-memory hole.
        Assert.Equal(511, d.Counters[PerfCounter.EptSuperpage]);
        // Root, one EPDPT, GiB 0's EPD and region 0's leaf table: four pages map 4 GiB.
        Assert.Equal(4UL, d.PagingFrames);
        Assert.True(d.TryGetRam(DataGfn, out var m));
        Assert.Equal(m.Value, EptEntry.FrameOf(EptOf(d).Peek(DataGfn)));
        Assert.Contains("1G ram_rw", EptEntry.Describe(L3(d, DataGfn), 3));
        Assert.Empty(Audit(d));

        // hap_superpages: 2m keeps those GiBs in 2 MiB leaves (512 each); off, in 4 KiB ones.
        var d2 = Hap("2m");
        Assert.Empty(GigaLeafGfns(d2));
        Assert.Equal(511 + 3 * 512, d2.Counters[PerfCounter.EptSuperpage]);
        Assert.True(EptEntry.IsSuperpage(L2(d2, DataGfn)));
        Assert.Empty(Audit(d2));
        var d0 = Hap("off");
        Assert.Empty(GigaLeafGfns(d0));
        Assert.Equal(0, d0.Counters[PerfCounter.EptSuperpage]);
    }

    [Fact]
    public void TheAuditRefusesAOneGiBLeafOnAMisalignedFrame()
    {
        var d = Hap();
        Assert.Empty(Audit(d));
        // Move GiB 1's leaf one frame up: every page still maps a frame of the domain but the
        // leaf's reserved bits 29:12 are set, which the CPU would refuse.
        ulong e4 = d.Machine.ReadUInt64(EptOf(d).Root, 0);
        var l3 = new Mfn(EptEntry.FrameOf(e4));
        ulong e3 = d.Machine.ReadUInt64(l3, 8);
        d.Machine.WriteUInt64(l3, 8, e3 + 0x1000);
        Assert.Contains(Audit(d), p => p.Contains("1 GiB leaf") && p.Contains("not aligned"));
        d.Machine.WriteUInt64(l3, 8, e3);
        Assert.Empty(Audit(d));
    }

    [Fact]
    public void HapSuperpagesTwoMIsReadAndWrittenBack()
    {
        var c = XenLab.Config.DomainConfigLoader.Load("name: x\nmemory: 64\npaging: hap\nhap_superpages: 2m\n", "x.yaml");
        Assert.True(c.PagingOptions.HapSuperpages);
        Assert.False(c.PagingOptions.HapSuperpages1G);
        Assert.Contains("hap_superpages: 2m", XenLab.Config.DomainConfigWriter.ToYaml(c));
        Assert.Contains("superpages=2m", c.PagingOptions.Describe(XenLab.Config.PagingModeKind.Hap));
        var on = XenLab.Config.DomainConfigLoader.Load("name: x\nmemory: 64\npaging: hap\nhap_superpages: on\n", "x.yaml");
        Assert.True(on.PagingOptions.HapSuperpages1G);
        Assert.DoesNotContain("superpages", on.PagingOptions.Describe(XenLab.Config.PagingModeKind.Hap));
        var off = XenLab.Config.DomainConfigLoader.Load("name: x\nmemory: 64\npaging: hap\nhap_superpages: off\n", "x.yaml");
        Assert.False(off.PagingOptions.HapSuperpages);
        Assert.Contains("hap_superpages: off", XenLab.Config.DomainConfigWriter.ToYaml(off));
    }

    [Theory]
    [InlineData("on", 22, 18)]
    [InlineData("2m", 23, 19)]
    [InlineData("off", 24, 20)]
    public void ANestedWalkEndingInAOneGiBLeafReadsTwoEptEntries(string superpages, int refs, int eptRefs)
    {
        // The guest's four tables sit in region 0 (4 KiB EPT leaves in every setting: 4 EPT reads
        // each), the data page in GiB 1: a cold 2D walk reads 4 guest entries + 4 x 4 EPT entries
        // for the tables + the data gfn's nested walk: 2 (EPML4E, then the 1 GiB EPDPTE), 3
        // (EPML4E, EPDPTE, the 2 MiB EPDE) or 4 (down to the EPTE): 22, 23, 24.
        var d = Hap(superpages, gpaCache: 0);
        var t = d.Vcpus[0].Translate(Va, AccessKind.Read);
        Assert.True(t.IsOk);
        Assert.True(d.TryGetRam(DataGfn, out var dataMfn));
        Assert.Equal(dataMfn.Value, t.Mfn);
        Assert.Equal(refs, t.MemoryReferences);
        Assert.Equal(eptRefs, d.Counters[PerfCounter.HapNestedMemRef]);
        var trace = new TranslationTrace();
        Assert.Equal(refs, d.Vcpus[0].Explain(Va, AccessKind.Read, trace).MemoryReferences);
        Assert.Equal(eptRefs, trace.Steps.FindAll(s => s.Table == "ept").Count);
        if (superpages == "on")
        {
            Assert.Equal(3, trace.Steps[^1].Level);
            Assert.Contains("1G ram_rw", trace.Steps[^1].Decoded);
        }
    }

    [Theory]
    [InlineData(HapLogDirty.Pml)]
    [InlineData(HapLogDirty.Wp)]
    public void LogDirtyMarksOneEntryKeepsGiBLeavesWholeOnTheFirstAccessAndSplitsOnTheFirstWrite(HapLogDirty how)
    {
        var d = Hap(logDirty: how);
        var v = d.Vcpus[0];
        Assert.True(v.WriteVirtual(Va, new byte[] { 1 }).IsOk);          // guest A/D bits set before log-dirty
        Assert.True(v.WriteVirtual(Va2, new byte[] { 1 }).IsOk);
        long marked = d.Counters[PerfCounter.EptInvalidatedEntries], pages = d.Counters[PerfCounter.EptPages];
        d.LogDirty.Enable();
        // hap_enable_log_dirty: one global change marks the one present EPML4 entry.
        Assert.Equal(1, d.Counters[PerfCounter.EptInvalidatedEntries] - marked);
        Assert.Equal(0, d.Counters[PerfCounter.EptSplit1G]);
        // A read: one misconfiguration per region it touches: region 0 (the guest's tables, a leaf
        // table recalculated whole) and GiB 1, which all of is log-dirty (p2m_is_logdirty_range = 1), so it stays whole.
        long mis = d.Counters[PerfCounter.EptMisconfig];
        Assert.True(v.ReadVirtual(Va, new byte[1]).IsOk);
        mis += 1;
        Assert.Equal(mis + 1, d.Counters[PerfCounter.EptMisconfig]);
        Assert.Equal(0, d.Counters[PerfCounter.EptSplit1G]);
        Assert.True(EptEntry.IsSuperpage(L3(d, DataGfn)));
        Assert.Equal(P2mType.RamLogDirty, EptEntry.TypeOf(L3(d, DataGfn)));
        Assert.Equal(0UL, L3(d, DataGfn) & EptEntry.Write);                    // read-only even with PML
        // The first write: a violation whose one-page change splits the GiB down to 4 KiB, as
        // ept_set_entry does: one 1G -> 2M split, then all 512 children 2M -> 4K; 513 new tables.
        Assert.True(v.WriteVirtual(Va, new byte[] { 2 }).IsOk);
        Assert.Equal(mis + 1, d.Counters[PerfCounter.EptMisconfig]);
        Assert.Equal(1, d.Counters[PerfCounter.EptSplit1G]);
        Assert.Equal(512, d.Counters[PerfCounter.EptSplit]);
        Assert.Equal(513, d.Counters[PerfCounter.EptPages] - pages);
        Assert.DoesNotContain(Gib, GigaLeafGfns(d));
        Assert.Equal(P2mType.RamRw, d.GetP2mType(DataGfn));
        Assert.Equal(P2mType.RamLogDirty, d.GetP2mType(DataGfn + 1));
        Assert.Equal(P2mType.RamLogDirty, d.GetP2mType(Gib + 0x3FFFF));
        // GiB 2: its own first access takes exactly one misconfiguration (the mark pushed down to its EPDPTE).
        Assert.True(v.WriteVirtual(Va2, new byte[] { 2 }).IsOk);
        Assert.Equal(mis + 2, d.Counters[PerfCounter.EptMisconfig]);
        Assert.Equal(2, d.Counters[PerfCounter.EptSplit1G]);
        // More writes in GiB 1: no misconfiguration, no split (4 KiB leaves now).
        Assert.True(v.WriteVirtual(Va + 0x1000, new byte[] { 2 }).IsOk);
        Assert.Equal(mis + 2, d.Counters[PerfCounter.EptMisconfig]);
        Assert.Equal(1024, d.Counters[PerfCounter.EptSplit]);
        Assert.Equal(new[] { DataGfn, DataGfn + 1, Data2Gfn },
            d.LogDirty.Read(clean: true).DirtyGfns().Where(g => g >= Gib).ToArray());
        // Cleaned: re-armed lazily; a write logs the page again, no split.
        Assert.True(v.WriteVirtual(Va + 0x2000, new byte[] { 3 }).IsOk);
        Assert.Equal(new[] { DataGfn + 2 }, d.LogDirty.Read(clean: false).DirtyGfns().Where(g => g >= Gib).ToArray());
        Assert.Equal(2, d.Counters[PerfCounter.EptSplit1G]);
        Assert.Empty(Audit(d));
        // GiB 4 was never touched: still one 1 GiB leaf (marked, resolved on its first access).
        Assert.Contains(4 * Gib, GigaLeafGfns(d));
    }

    [Fact]
    public void ARangeCoveringPartOfAGiBSplitsItOneLevelAtATimeOnTheMisconfigurationExits()
    {
        var d = Hap();
        var v = d.Vcpus[0];
        d.Kernel.Map(0xC00000, Gib + 0x10000, 1, MapFlags.Writable);       // GiB 1, 2 MiB region 0x80 of it
        // [GiB 1, GiB 1 + 0x80): part of GiB 1's leaf, which is marked whole.
        d.ChangeP2mTypes(Gib, Gib + 0x80, P2mType.RamRw, P2mType.RamLogDirty, flush: true);
        Assert.Equal(0, d.Counters[PerfCounter.EptSplit1G]);
        // An access elsewhere in GiB 1: the GiB is mixed (split into 2 MiB leaves that keep the
        // mark), its region is wholly outside the range (stays a 2 MiB ram_rw leaf).
        Assert.True(v.ReadVirtual(0xC00000, new byte[1]).IsOk);
        Assert.Equal(1, d.Counters[PerfCounter.EptSplit1G]);
        Assert.Equal(0, d.Counters[PerfCounter.EptSplit]);
        Assert.True(EptEntry.IsSuperpage(L2(d, Gib + 0x10000)));
        Assert.Equal(P2mType.RamRw, EptEntry.TypeOf(L2(d, Gib + 0x10000)));
        Assert.True(EptEntry.IsMisconfigured(L2(d, DataGfn)));              // region 0 of GiB 1: still marked
        // The range's own region: mixed too, split to 4 KiB on its misconfiguration.
        Assert.True(v.ReadVirtual(Va, new byte[1]).IsOk);
        Assert.Equal(1, d.Counters[PerfCounter.EptSplit]);
        Assert.Equal(P2mType.RamLogDirty, d.GetP2mType(Gib + 0x7F));
        Assert.Equal(P2mType.RamRw, d.GetP2mType(Gib + 0x80));
        Assert.Equal(P2mType.RamRw, d.GetP2mType(Gib + 0x10000));
        Assert.Empty(Audit(d));
    }

    [Fact]
    public void BallooningOutOfAGiBSplitsItAndTheDifferentialAgainstFourKiBLeavesStaysClean()
    {
        var on = Hap("on");
        var off = Hap("off");
        // Balloon 100 pages out of the top GiB (RAM ends at 5 GiB): its 1 GiB leaf is split down
        // to 4 KiB (ept_set_entry, order 0), only those pages unmapped.
        Assert.Contains(4 * Gib, GigaLeafGfns(on));
        on.Balloon(on.PopulatedPages - 100);
        off.Balloon(off.PopulatedPages - 100);
        Assert.DoesNotContain(4 * Gib, GigaLeafGfns(on));
        Assert.Equal(1, on.Counters[PerfCounter.EptSplit1G]);
        Assert.Equal(512, on.Counters[PerfCounter.EptSplit]);
        Assert.False(EptEntry.IsPresent(EptOf(on).Peek(5 * Gib - 1)));
        Assert.True(on.TryGetRam(5 * Gib - 101, out var m));
        Assert.Equal(m.Value, EptEntry.FrameOf(EptOf(on).Peek(5 * Gib - 101)));
        Assert.Empty(Audit(on));
        // Then the same random guest writes, reads, a log-dirty enable and cleans on both:
        // identical data and dirty sets, clean audits.
        var rng = new Random(11);
        var gfns = new[] { 0x300UL, Gib + 5, Gib + 0x20000, 2 * Gib + 0x3FFFF, 4 * Gib, 4 * Gib + 0x12345, 2 * Gib + 7 };
        foreach (var d in new[] { on, off })
            for (int i = 0; i < gfns.Length; i++) d.Kernel.Map(0x10000000UL + (ulong)i * 0x1000, gfns[i], 1, MapFlags.Writable);
        bool logDirty = false;
        for (int step = 0; step < 400; step++)
        {
            int op = rng.Next(10), page = rng.Next(gfns.Length);
            ulong va = 0x10000000UL + (ulong)page * 0x1000 + (ulong)rng.Next(4096 - 8);
            byte value = (byte)rng.Next(256);
            foreach (var d in new[] { on, off })
            {
                if (op < 5) Assert.True(d.Vcpus[0].WriteVirtual(va, new[] { value }).IsOk);
                else if (op == 9 && !logDirty) d.LogDirty.Enable();
            }
            if (op == 9) logDirty = true;
            if (op >= 5 && op < 8)
            {
                var a = new byte[1];
                var b = new byte[1];
                Assert.True(on.Vcpus[0].ReadVirtual(va, a).IsOk);
                Assert.True(off.Vcpus[0].ReadVirtual(va, b).IsOk);
                Assert.Equal(b[0], a[0]);
            }
            if (op == 8 && logDirty)
                Assert.Equal(off.LogDirty.Read(clean: true).DirtyGfns().ToArray(), on.LogDirty.Read(clean: true).DirtyGfns().ToArray());
            if (step % 50 == 0) { Assert.Empty(Audit(on)); Assert.Empty(Audit(off)); }
        }
        Assert.True(logDirty);
        Assert.True(on.Counters[PerfCounter.EptSplit1G] > 1);                 // log-dirty split GiBs too
        Assert.Empty(Audit(on));
        Assert.Empty(Audit(off));
    }

    [Fact]
    public void LogDirtyOnAGiBLeafDomainCostsUnderAByteAPageBeyondTheEptPages()
    {
        // Issue 11, point 8 with 1 GiB leaves: the splits' EPT tables (513 for each GiB written)
        // are the EPT's own pages; everything else log-dirty allocates stays under a byte a page.
        var d = Hap();
        ulong pages = d.PopulatedPages;
        for (ulong g = Gib; g < Gib + 1000; g++) d.WriteGuestPhysU64(g << 12, 1);   // back the frames first
        long eptPages = d.Counters[PerfCounter.EptPages];
        long before = GC.GetAllocatedBytesForCurrentThread();
        d.LogDirty.Enable();
        for (ulong g = Gib; g < Gib + 1000; g++) d.WriteGuestPhysU64(g << 12, g);          // 1,000 dirty pages in GiB 1
        var view = d.LogDirty.Read(clean: true);
        long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(513, d.Counters[PerfCounter.EptPages] - eptPages);                     // GiB 1 split down to 4 KiB
        long eptBytes = (d.Counters[PerfCounter.EptPages] - eptPages) * (Page.Size + 64);    // a frame's bytes and its array header
        Assert.Equal(1000, view.DirtyPages);
        Assert.True(bytes - eptBytes < (long)pages, $"{bytes} bytes allocated ({eptBytes} of them EPT pages) for {pages} pages");
    }
}
