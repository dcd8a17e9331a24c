using System.Collections.Generic;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Memory;
using XenLab.P2m;
using XenLab.Paging;
using XenLab.Paging.Hap;
using XenLab.Paging.Modes;

namespace XenLab.Tests;

public class HapModeTests
{
    private const ulong Va = 0x400000;
    // Not 0x2000: the nested cache is direct-mapped (gfn & 31) and 0x2000 would share slot 0
    // with the PML4 at gfn 0x100, which the cache test below must not be confused by.
    private const ulong DataGfn = 0x2010;

    // 4 KiB EPT leaves here (the counts of SPEC 5); EptSuperpageTests covers 2 MiB leaves.
    private static Domain Hap(int gpaCache = PagingOptions.DefaultGpaCacheEntries, HapLogDirty logDirty = HapLogDirty.Pml)
    {
        var host = new XenHost(4UL << 30);
        var c = TestDomains.Config("hap", 64, 128);
        c.PagingOptions = c.PagingOptions with { HapGpaCacheEntries = gpaCache, HapLogDirty = logDirty, HapSuperpages = false };
        var d = host.CreateDomain(c);
        d.Kernel.Map(Va, DataGfn, 4, MapFlags.Writable);
        return d;
    }

    [Fact]
    public void AColdTwoDimensionalWalkCostsTwentyFourReferences()
    {
        // (4 guest levels + 1) x (4 EPT levels + 1) - 1 = 24 (SPEC 5).
        var d = Hap(gpaCache: 0);
        var t = d.Vcpus[0].Translate(Va, AccessKind.Read);
        Assert.True(t.IsOk);
        Assert.Equal(24, t.MemoryReferences);
        Assert.Equal(24, d.Counters[PerfCounter.HapWalkMemRef]);
        Assert.Equal(20, d.Counters[PerfCounter.HapNestedMemRef]);   // 5 EPT walks of 4
    }

    [Fact]
    public void TheNestedCacheSparesTheEptWalksOfTablesAlreadySeen()
    {
        var d = Hap();
        var v = d.Vcpus[0];
        Assert.Equal(24, v.Translate(Va, AccessKind.Read).MemoryReferences);   // cold
        // Same guest tables, another data page: 4 guest entries, each table gfn cached; the
        // new data gfn walks the EPT: 4 + 4.
        Assert.Equal(8, v.Translate(Va + 0x1000, AccessKind.Read).MemoryReferences);
    }

    [Fact]
    public void ExplainShowsGuestAndEptStepsWithoutChangingAnything()
    {
        var d = Hap();
        var trace = new TranslationTrace();
        long walks = d.Counters[PerfCounter.PageWalk];
        var t = d.Vcpus[0].Explain(Va, AccessKind.Write, trace);
        Assert.True(t.IsOk);
        Assert.Equal(24, t.MemoryReferences);
        Assert.Equal(4, trace.Steps.FindAll(s => s.Table == "guest").Count);
        Assert.Equal(20, trace.Steps.FindAll(s => s.Table == "ept").Count);
        Assert.Equal(walks, d.Counters[PerfCounter.PageWalk]);
        Assert.Equal(0UL, GuestWalkerTests.GuestSteps(d, Va)[^1].RawEntry & X86Pte.Accessed);   // A not set by explaining
        Assert.StartsWith("RWX ram_rw", trace.Steps[^1].Decoded);
    }

    [Fact]
    public void ExplainingAWriteToALogDirtyPageChangesNeitherTypeNorCounters()
    {
        var d = Hap(logDirty: HapLogDirty.Wp);          // write protection: the violation the note explains
        d.SetP2mType(DataGfn, P2mType.RamLogDirty);
        long violations = d.Counters[PerfCounter.EptViolation], refs = d.Counters[PerfCounter.HapWalkMemRef];
        var trace = new TranslationTrace();
        var t = d.Vcpus[0].Explain(Va, AccessKind.Write, trace);
        Assert.True(t.IsOk);
        Assert.Equal(P2mType.RamLogDirty, d.GetP2mType(DataGfn));          // the handler did not run
        Assert.Equal(violations, d.Counters[PerfCounter.EptViolation]);
        Assert.Equal(refs, d.Counters[PerfCounter.HapWalkMemRef]);
        Assert.Contains(trace.Notes, n => n.Contains("would mark it dirty"));
    }

    [Fact]
    public void WritesToRamRoAreDiscardedAndCountedReadsWork()
    {
        var d = Hap();
        var v = d.Vcpus[0];
        d.SetP2mType(DataGfn, P2mType.RamRo);
        var r = v.WriteVirtual(Va, new byte[] { 1 });
        Assert.Equal(TranslateStatus.P2mReadOnly, r.Status);
        Assert.Equal(1, d.Counters[PerfCounter.EptViolationRamRo]);
        Assert.True(v.ReadVirtual(Va, new byte[1]).IsOk);
        Assert.Equal(P2mType.RamRo, EptEntry.TypeOf(((HapMode)d.Mode!).Ept.Peek(DataGfn)));
    }

    [Fact]
    public void TheFirstWriteToALogDirtyPageTurnsItBackToRamRw()
    {
        var d = Hap(logDirty: HapLogDirty.Wp);
        var v = d.Vcpus[0];
        v.ReadVirtual(Va, new byte[1]);                     // cached read-only in the TLB
        d.SetP2mType(DataGfn, P2mType.RamLogDirty);
        Assert.True(v.WriteVirtual(Va, new byte[] { 7 }).IsOk);
        Assert.Equal(1, d.Counters[PerfCounter.EptViolationLogDirty]);
        Assert.Equal(P2mType.RamRw, d.GetP2mType(DataGfn));
        Assert.True(v.WriteVirtual(Va, new byte[] { 8 }).IsOk);
        Assert.Equal(1, d.Counters[PerfCounter.EptViolationLogDirty]);  // no second violation
        var b = new byte[1];
        d.ReadPhysical(DataGfn << 12, b);
        Assert.Equal(8, b[0]);
    }

    [Fact]
    public void IdentityFramesGetMmioDirectOnFirstTouch()
    {
        var d = Hap();
        d.Kernel.Map(0x800000, 0xC0000, 1, MapFlags.Writable);
        var b = new byte[2];
        Assert.True(d.Vcpus[0].ReadVirtual(0x800000, b).IsOk);
        Assert.Equal(new byte[] { 0xFF, 0xFF }, b);
        Assert.Equal(1, d.Counters[PerfCounter.EptViolationMmio]);
        Assert.Equal(P2mType.MmioDirect, EptEntry.TypeOf(((HapMode)d.Mode!).Ept.Peek(0xC0000)));
    }

    [Fact]
    public void BallooningOutAMappedPageMakesItsAccessFailAsMissing()
    {
        var d = Hap();
        var v = d.Vcpus[0];
        ulong top = 0;
        foreach (var (pfn, _) in d.P2m.EnumerateRamDescending()) { top = pfn; break; }
        d.Kernel.Map(0x900000, top, 1, MapFlags.Writable);
        Assert.True(v.WriteVirtual(0x900000, new byte[] { 1 }).IsOk);
        d.Balloon(d.PopulatedPages - 1);                     // releases the highest pfn
        var r = v.ReadVirtual(0x900000, new byte[1]);
        Assert.Equal(TranslateStatus.PhysicalMissing, r.Status);
        Assert.Equal(top, r.BadGfn);
    }

    [Fact]
    public void TheAuditIsCleanAndCatchesACorruptedLeaf()
    {
        var d = Hap();
        var problems = new List<string>();
        d.Mode!.Audit(problems);
        Assert.Empty(problems);
        var ept = ((HapMode)d.Mode!).Ept;
        // Corrupt the leaf for the data gfn behind the hypervisor's back.
        ulong leaf = ept.Peek(DataGfn);
        ulong bad = leaf ^ (1UL << 12);
        SetLeafRaw(d, ept, DataGfn, bad);
        d.Mode.Audit(problems);
        Assert.Single(problems);
        Assert.Contains("gfn 0x2010", problems[0]);
    }

    private static void SetLeafRaw(Domain d, Ept ept, ulong gfn, ulong value)
    {
        ulong table = ept.Root.Value;
        for (int level = 4; level > 1; level--)
            table = EptEntry.FrameOf(d.Machine.ReadUInt64(new Mfn(table), (int)((gfn >> (9 * (level - 1))) & 511) * 8));
        d.Machine.WriteUInt64(new Mfn(table), (int)(gfn & 511) * 8, value);
    }
}
