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
/// Issue 11, point 5: EPT superpages. Expectations from xen/arch/x86/mm/p2m-ept.c: 2 MiB leaves
/// (EPDE bit 7) where gfns and frames are aligned and contiguous; ept_split_super_page before a
/// page-granular change; resolve_misconfig keeping a superpage whole when its pages recalculate
/// to one type; ept_p2m_type_to_flags keeping a ram_logdirty superpage read-only even with PML.
/// </summary>
public class EptSuperpageTests
{
    private const ulong Va = 0x400000;
    private const ulong DataGfn = 0x2010;          // 2 MiB region 0x10

    private static Domain Hap(HapLogDirty logDirty = HapLogDirty.Pml, int gpaCache = PagingOptions.DefaultGpaCacheEntries)
    {
        var host = new XenHost(4UL << 30);
        var c = TestDomains.Config("sp", 64, 128);
        c.PagingOptions = c.PagingOptions with { HapLogDirty = logDirty, HapGpaCacheEntries = gpaCache };
        var d = host.CreateDomain(c);
        d.Kernel.Map(Va, DataGfn, 4, MapFlags.Writable);
        d.Kernel.Map(Va + 0x200000, 0x2100, 1, MapFlags.Writable);   // the same region, 0xF0 pages on
        return d;
    }

    private static Ept EptOf(Domain d) => ((HapMode)d.Mode!).Ept;

    /// <summary>The 2 MiB leaves, read from the EPT's tables in machine memory.</summary>
    private static List<ulong> SuperpageGfns(Domain d)
    {
        var m = d.Machine;
        var found = new List<ulong>();
        ulong root = EptOf(d).Root.Value;
        for (int i4 = 0; i4 < 512; i4++)
        {
            ulong e4 = m.ReadUInt64(new Mfn(root), i4 * 8);
            if (!EptEntry.IsPresent(e4)) continue;
            for (int i3 = 0; i3 < 512; i3++)
            {
                ulong e3 = m.ReadUInt64(new Mfn(EptEntry.FrameOf(e4)), i3 * 8);
                if (!EptEntry.IsPresent(e3) || EptEntry.IsSuperpage(e3)) continue;      // a 1 GiB leaf: no EPDEs below
                for (int i2 = 0; i2 < 512; i2++)
                {
                    ulong e2 = m.ReadUInt64(new Mfn(EptEntry.FrameOf(e3)), i2 * 8);
                    if (EptEntry.IsSuperpage(e2)) found.Add(((ulong)i4 << 27) | ((ulong)i3 << 18) | ((ulong)i2 << 9));
                }
            }
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
    public void RamIsMappedWithTwoMiBLeavesWhereGfnsAndFramesAreAlignedAndContiguous()
    {
        var d = Hap();
        // By hand from the p2m: each aligned 512 gfns of RAM on 512 aligned, consecutive frames.
        var ram = d.P2m.EnumerateRam().ToDictionary(x => x.Pfn, x => x.Mfn.Value);
        var expected = new List<ulong>();
        foreach (ulong g in ram.Keys.Where(g => (g & 511) == 0).OrderBy(g => g))
        {
            ulong m0 = ram[g];
            if ((m0 & 511) != 0) continue;
            bool run = true;
            for (ulong k = 1; k < 512 && run; k++) run = ram.TryGetValue(g + k, out var mk) && mk == m0 + k;
            if (run) expected.Add(g);
        }
        var found = SuperpageGfns(d);
        Assert.Equal(expected, found);
        // 64 MiB = 32 regions of 2 MiB; region 0 holds the low-memory hole (its RAM runs on past 64 MiB
        // into a 33rd, partial region), so 31 regions are whole and get a 2 MiB leaf each.
        Assert.Equal(31, found.Count);
        Assert.Equal(31, d.Counters[PerfCounter.EptSuperpage]);
        Assert.Equal(0, d.Counters[PerfCounter.EptSplit]);
        Assert.DoesNotContain(0UL, found);
        Assert.Contains(DataGfn & ~511UL, found);
        Assert.Empty(Audit(d));
        // The leaf of a page inside reads as its own frame.
        Assert.Equal(ram[DataGfn], EptEntry.FrameOf(EptOf(d).Peek(DataGfn)));
    }

    [Fact]
    public void ANestedWalkEndingInASuperpageReadsThreeEptEntries()
    {
        // Guest tables in region 0 (4 KiB EPT leaves: 4 reads each), the data page in a 2 MiB leaf
        // (3 reads): 4 guest entries + 4 x 4 + 3 = 23 instead of 24.
        var d = Hap(gpaCache: 0);
        var t = d.Vcpus[0].Translate(Va, AccessKind.Read);
        Assert.True(t.IsOk);
        Assert.True(d.TryGetRam(DataGfn, out var dataMfn));
        Assert.Equal(dataMfn.Value, t.Mfn);
        Assert.Equal(23, t.MemoryReferences);
        Assert.Equal(19, d.Counters[PerfCounter.HapNestedMemRef]);
        // Explained: the last nested walk's third step is the 2 MiB EPDE itself.
        var trace = new TranslationTrace();
        Assert.Equal(23, d.Vcpus[0].Explain(Va, AccessKind.Read, trace).MemoryReferences);
        Assert.Equal(19, trace.Steps.FindAll(s => s.Table == "ept").Count);
        Assert.Equal(2, trace.Steps[^1].Level);
        Assert.Contains("2M ram_rw", trace.Steps[^1].Decoded);
        // The walk picture: 5 rows, the last one short by the EPT level the superpage saves.
        var diagram = XenLab.Pictures.WalkPicture.Layout(XenLab.Views.TranslationView.Of(d, 0, Va, AccessKind.Read));
        Assert.Equal(23, diagram.References);
        Assert.Equal(5, diagram.Rows.Count);
        // Off: 24 (SPEC 5's cold walk).
        var host = new XenHost(4UL << 30);
        var c = TestDomains.Config("sp4k", 64, 128);
        c.PagingOptions = c.PagingOptions with { HapGpaCacheEntries = 0, HapSuperpages = false };
        var d4 = host.CreateDomain(c);
        d4.Kernel.Map(Va, DataGfn, 4, MapFlags.Writable);
        Assert.Equal(24, d4.Vcpus[0].Translate(Va, AccessKind.Read).MemoryReferences);
        Assert.Equal(0, d4.Counters[PerfCounter.EptSuperpage]);
    }

    [Theory]
    [InlineData(HapLogDirty.Pml)]
    [InlineData(HapLogDirty.Wp)]
    public void LogDirtySplitsASuperpageOnItsFirstWriteAndTracksEveryPageAfter(HapLogDirty how)
    {
        var d = Hap(how);
        var v = d.Vcpus[0];
        ulong region = DataGfn & ~511UL;
        Assert.True(v.WriteVirtual(Va, new byte[] { 1 }).IsOk);              // guest A/D bits set before log-dirty
        Assert.True(v.WriteVirtual(Va + 0x1000, new byte[] { 1 }).IsOk);
        Assert.True(v.WriteVirtual(Va + 0x200000, new byte[] { 1 }).IsOk);
        d.LogDirty.Enable();
        Assert.Equal(0, d.Counters[PerfCounter.EptSplit]);                    // enabling marks, splits nothing
        // A read resolves the misconfiguration: all 512 pages are ram_logdirty, so the superpage stays whole.
        Assert.True(v.ReadVirtual(Va, new byte[1]).IsOk);
        Assert.Equal(0, d.Counters[PerfCounter.EptSplit]);
        Assert.Contains(region, SuperpageGfns(d));
        Assert.Equal(P2mType.RamLogDirty, d.GetP2mType(DataGfn));
        Assert.Equal(0UL, EptOf(d).Peek(DataGfn) & EptEntry.Write);           // read-only even with PML
        // The first write: one violation, one split of that region, the page logged.
        long viol = d.Counters[PerfCounter.EptViolationLogDirty];
        Assert.True(v.WriteVirtual(Va, new byte[] { 2 }).IsOk);
        Assert.Equal(1, d.Counters[PerfCounter.EptSplit]);
        Assert.Equal(viol + 1, d.Counters[PerfCounter.EptViolationLogDirty]);
        Assert.DoesNotContain(region, SuperpageGfns(d));
        Assert.Equal(P2mType.RamLogDirty, d.GetP2mType(DataGfn + 1));         // the other 511 still tracked
        // Another page of the region: logged (by PML or by its own fault), no further split.
        Assert.True(v.WriteVirtual(Va + 0x1000, new byte[] { 2 }).IsOk);
        Assert.True(v.WriteVirtual(Va + 0x200000, new byte[] { 2 }).IsOk);   // gfn 0x2100
        Assert.Equal(1, d.Counters[PerfCounter.EptSplit]);
        var dirty = d.LogDirty.Read(clean: true).DirtyGfns().Where(g => g >= region && g < region + 512).ToArray();
        Assert.Equal(new[] { DataGfn, DataGfn + 1, 0x2100UL }, dirty);
        // Cleaned: the split region's pages are re-armed one by one.
        Assert.True(v.WriteVirtual(Va + 0x2000, new byte[] { 3 }).IsOk);
        Assert.Equal(new[] { DataGfn + 2 }, d.LogDirty.Read(clean: false).DirtyGfns().Where(g => g >= region && g < region + 512).ToArray());
        Assert.Equal(1, d.Counters[PerfCounter.EptSplit]);
        Assert.Empty(Audit(d));
    }

    [Fact]
    public void HapSuperpagesOffIsReadAndWrittenBackAndMapsFourKiBLeavesOnly()
    {
        var c = XenLab.Config.DomainConfigLoader.Load("name: x\nmemory: 64\npaging: hap\nhap_superpages: off\n", "x.yaml");
        Assert.False(c.PagingOptions.HapSuperpages);
        Assert.Contains("hap_superpages: off", XenLab.Config.DomainConfigWriter.ToYaml(c));
        Assert.DoesNotContain("hap_superpages", XenLab.Config.DomainConfigWriter.ToYaml(XenLab.Config.DomainConfigLoader.Load("name: x\nmemory: 64\n", "x.yaml")));
        var d = new XenHost(4UL << 30).CreateDomain(c);
        Assert.Empty(SuperpageGfns(d));
        Assert.Empty(Audit(d));
        Assert.Throws<ConfigFileException>(() => XenLab.Config.DomainConfigLoader.Load("name: x\nhap_superpages: maybe\n", "x.yaml"));
    }

    [Fact]
    public void AChangeToOnePageSplitsItsSuperpageFirst()
    {
        var d = Hap();
        Assert.True(d.TryGetRam(0x2105, out var m));
        ulong mfn = m.Value;
        d.SetP2mType(0x2105, P2mType.RamRo);
        Assert.Equal(1, d.Counters[PerfCounter.EptSplit]);
        Assert.Equal(P2mType.RamRo, d.GetP2mType(0x2105));
        Assert.Equal(P2mType.RamRw, d.GetP2mType(0x2104));
        Assert.Equal(mfn, EptEntry.FrameOf(EptOf(d).Peek(0x2105)));
        Assert.Equal(mfn - 1, EptEntry.FrameOf(EptOf(d).Peek(0x2104)));
        Assert.Empty(Audit(d));
    }

    [Fact]
    public void BallooningPagesOutOfASuperpageSplitsItAndUnmapsOnlyThem()
    {
        var d = Hap();
        // RAM ends at 0x4060 (64 MiB less the 0x61-page hole, plus the hole's worth past 64 MiB):
        // the 97 pages 0x4000-0x4060 have 4 KiB leaves, the next 3 down (0x3FFD-0x3FFF) sit in
        // region 0x1F's superpage.
        var r = d.Balloon(d.PopulatedPages - 100);
        Assert.Equal(-100, r.PagesChanged);                                   // released
        Assert.Equal(1, d.Counters[PerfCounter.EptSplit]);
        Assert.False(EptEntry.IsPresent(EptOf(d).Peek(0x3FFD)));
        Assert.True(d.TryGetRam(0x3FFC, out var m));
        Assert.Equal(m.Value, EptEntry.FrameOf(EptOf(d).Peek(0x3FFC)));
        Assert.DoesNotContain(0x3E00UL, SuperpageGfns(d));
        Assert.Empty(Audit(d));
        d.Balloon(d.PopulatedPages + 100);                                     // back: 4 KiB leaves
        Assert.True(d.TryGetRam(0x3FFD, out m));
        Assert.Equal(m.Value, EptEntry.FrameOf(EptOf(d).Peek(0x3FFD)));
        Assert.Empty(Audit(d));
    }

    [Fact]
    public void ARangeCoveringPartOfASuperpageSplitsItOnTheMisconfigurationExit()
    {
        var d = Hap();
        var v = d.Vcpus[0];
        // [0x2000, 0x2080): part of region 0x10. The superpage is marked whole; its pages would differ.
        d.ChangeP2mTypes(0x2000, 0x2080, P2mType.RamRw, P2mType.RamLogDirty, flush: true);
        Assert.Equal(0, d.Counters[PerfCounter.EptSplit]);
        Assert.True(v.ReadVirtual(Va + 0x200000, new byte[1]).IsOk);          // gfn 0x2100, outside the range
        Assert.Equal(1, d.Counters[PerfCounter.EptSplit]);
        Assert.Equal(P2mType.RamLogDirty, d.GetP2mType(0x207F));
        Assert.Equal(P2mType.RamRw, d.GetP2mType(0x2080));
        Assert.Equal(P2mType.RamRw, d.GetP2mType(0x2100));
        Assert.Empty(Audit(d));
    }
}
