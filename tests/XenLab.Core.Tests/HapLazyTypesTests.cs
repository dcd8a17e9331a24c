using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Memory;
using XenLab.P2m;
using XenLab.Paging.Hap;
using XenLab.Paging.Modes;

namespace XenLab.Tests;

/// <summary>
/// Issue 11, points 1-3: the p2m type in the EPT entry only, lazy range changes resolved on EPT
/// misconfiguration exits, and log-dirty marking its tree at fault time. Expected values come
/// from xen/arch/x86/mm/p2m-ept.c (ept_entry_t, ept_change_entry_type_range,
/// resolve_misconfig) and paging.c (paging_mark_dirty, paging_log_dirty_op).
/// </summary>
public class HapLazyTypesTests
{
    private const ulong Va = 0x400000;
    private const ulong DataGfn = 0x2010;          // 2 MiB region 0x10

    internal static Domain Hap(HapLogDirty logDirty = HapLogDirty.Wp)
    {
        var host = new XenHost(4UL << 30);
        var c = TestDomains.Config("hap", 64, 128);
        c.PagingOptions = c.PagingOptions with { HapLogDirty = logDirty };
        var d = host.CreateDomain(c);
        d.Kernel.Map(Va, DataGfn, 4, MapFlags.Writable);
        d.Kernel.Map(Va + 0x200000, 0x2410, 1, MapFlags.Writable);   // region 0x12
        return d;
    }

    private static HapMode Mode(Domain d) => (HapMode)d.Mode!;

    [Fact]
    public void TheTypeLivesInTheEptEntrysSoftwareBitsAndNowhereElse()
    {
        var d = Hap();
        d.SetP2mType(DataGfn, P2mType.RamRo);
        ulong leaf = Mode(d).Ept.Peek(DataGfn);
        Assert.Equal(3UL, (leaf >> 52) & 0x3F);                      // sa_p2mt, bits 57:52; p2m_ram_ro = 3
        Assert.Equal(0, d.Types.Count);                              // no side table under HAP
        // Shadow keeps types in the domain's compact table; they come back into the EPT on return.
        d.SetPagingMode(PagingModeKind.Shadow);
        Assert.Equal(1, d.Types.Count);
        Assert.Equal(P2mType.RamRo, d.GetP2mType(DataGfn));
        d.SetPagingMode(PagingModeKind.Hap);
        Assert.Equal(0, d.Types.Count);
        Assert.Equal(P2mType.RamRo, d.GetP2mType(DataGfn));
        Assert.Equal(3UL, (Mode(d).Ept.Peek(DataGfn) >> 52) & 0x3F);
    }

    [Fact]
    public void ARangeChangeMarksTheFewestCoveringEntries()
    {
        var d = Hap();
        long before = d.Counters[PerfCounter.EptInvalidatedEntries];
        // [0x1F0, 0x3010): 16 leaves at the start (0x1F0-0x1FF; region 0 has the low-memory hole,
        // so 4 KiB leaves), the EPDEs of the 2 MiB regions 1..0x17 (23), and at the end the 2 MiB
        // leaf of region 0x18, marked whole (ept_change_entry_type_range's edges).
        int n = d.ChangeP2mTypes(0x1F0, 0x3010, P2mType.RamRw, P2mType.RamLogDirty, flush: true);
        Assert.Equal(16 + 23 + 1, n);
        Assert.Equal(40, d.Counters[PerfCounter.EptInvalidatedEntries] - before);
        Assert.Equal(P2mType.RamLogDirty, d.GetP2mType(0x1F0));
        Assert.Equal(P2mType.RamLogDirty, d.GetP2mType(0x300F));
        Assert.Equal(P2mType.RamRw, d.GetP2mType(0x1EF));
        Assert.Equal(P2mType.RamRw, d.GetP2mType(0x3010));
        // The whole domain: one EPML4 entry, whatever its size.
        before = d.Counters[PerfCounter.EptInvalidatedEntries];
        Assert.Equal(1, d.ChangeP2mTypes(0, P2mTree.MaxPfn, P2mType.RamRw, P2mType.RamLogDirty, flush: true));
        Assert.Equal(1, d.Counters[PerfCounter.EptInvalidatedEntries] - before);
        Assert.Empty(AuditProblems(d));
    }

    [Fact]
    public void TheFirstAccessAfterAChangeTakesExactlyOneMisconfigurationExitPerRegion()
    {
        var d = Hap();
        var v = d.Vcpus[0];
        d.ChangeP2mTypes(0, P2mTree.MaxPfn, P2mType.RamRw, P2mType.RamLogDirty, flush: true);
        Assert.Equal(0, d.Counters[PerfCounter.EptMisconfig]);                 // nothing resolved yet
        // Guest tables sit in region 0, the data page in region 0x10: two regions, two exits.
        Assert.True(v.ReadVirtual(Va, new byte[1]).IsOk);
        Assert.Equal(2, d.Counters[PerfCounter.EptMisconfig]);
        Assert.True(d.Counters[PerfCounter.EptRecalcEntries] > 0);
        Assert.Equal(P2mType.RamLogDirty, EptEntry.TypeOf(Mode(d).Ept.Peek(DataGfn)));   // recalculated into the leaf
        // Another page of region 0x10: no exit. A page of region 0x12: one.
        Assert.True(v.ReadVirtual(Va + 0x1000, new byte[1]).IsOk);
        Assert.Equal(2, d.Counters[PerfCounter.EptMisconfig]);
        Assert.True(v.ReadVirtual(Va + 0x200000, new byte[1]).IsOk);
        Assert.Equal(3, d.Counters[PerfCounter.EptMisconfig]);
        // The first write then takes the log-dirty violation.
        long viol = d.Counters[PerfCounter.EptViolationLogDirty];
        Assert.True(v.WriteVirtual(Va, new byte[] { 1 }).IsOk);
        Assert.Equal(viol + 1, d.Counters[PerfCounter.EptViolationLogDirty]);
        Assert.Equal(P2mType.RamRw, d.GetP2mType(DataGfn));
        Assert.Empty(AuditProblems(d));
    }

    [Fact]
    public void LogDirtyMarksTheTreeAtFaultTimeAndCleanKeepsItsNodes()
    {
        var d = Hap();
        var v = d.Vcpus[0];
        long marked = d.Counters[PerfCounter.EptInvalidatedEntries];
        d.LogDirty.Enable();
        Assert.Equal(1, d.Counters[PerfCounter.EptInvalidatedEntries] - marked);   // p2m_change_entry_type_global: one root entry here
        Assert.True(v.WriteVirtual(Va, new byte[] { 1 }).IsOk);
        Assert.True(d.LogDirty.Bitmap.IsDirty(DataGfn));                        // paging_mark_dirty, before any read
        int pages = d.LogDirty.Bitmap.Pages;
        Assert.Equal(4, pages);                                                  // top, two nodes, one leaf
        var view = d.LogDirty.Read(clean: true);
        Assert.Contains(DataGfn, view.DirtyGfns());
        Assert.Equal(pages, d.LogDirty.Bitmap.Pages);                            // leaves zeroed, nodes kept
        Assert.False(d.LogDirty.Bitmap.IsDirty(DataGfn));
        Assert.Equal(0, d.LogDirty.Read(clean: false).DirtyPages);
        // Cleaned: the page is ram_logdirty again (lazily), and the next write is logged.
        Assert.Equal(P2mType.RamLogDirty, d.GetP2mType(DataGfn));
        Assert.True(v.WriteVirtual(Va, new byte[] { 2 }).IsOk);
        Assert.Equal(1, d.LogDirty.Read(clean: false).DirtyPages);
        d.LogDirty.Disable();
        Assert.Equal(1, d.LogDirty.Bitmap.Pages);                                // freed on disable
        Assert.Equal(P2mType.RamRw, d.GetP2mType(DataGfn));
        Assert.Empty(AuditProblems(d));
    }

    private static System.Collections.Generic.List<string> AuditProblems(Domain d)
    {
        var p = new System.Collections.Generic.List<string>();
        d.Mode!.Audit(p);
        return p;
    }
}

/// <summary>Issue 11, point 4: hap_track_dirty_vram re-arms exactly the pages found dirty and flushes once.</summary>
public class HapVramTests
{
    [Theory]
    [InlineData(HapLogDirty.Wp)]
    [InlineData(HapLogDirty.Pml)]
    public void AQueryReArmsExactlyTheDirtyPagesAndFlushesOnce(HapLogDirty how)
    {
        var d = DirtyVramTests.Build(PagingModeKind.Hap, XenLab.Dirty.VramStrategy.Auto);
        if (how == HapLogDirty.Wp) d.SetPagingMode(PagingModeKind.Hap, d.Config.PagingOptions with { HapLogDirty = HapLogDirty.Wp });
        const ulong fb = 0xF0000, va = 0x40000000;
        Assert.True(d.Vram.Track(fb, 768).AllDirty);                                   // armed: one lazy range change
        foreach (ulong p in new ulong[] { 3, 64, 700 }) Assert.True(d.Vcpus[0].WriteVirtual(va + (p << 12), new byte[] { 9 }).IsOk);
        // Write protection: the violation made it ram_rw. PML: still ram_logdirty, the gfn waits in the log.
        Assert.Equal(how == HapLogDirty.Wp ? P2mType.RamRw : P2mType.RamLogDirty, d.GetP2mType(fb + 64));
        long changes = d.Counters[PerfCounter.P2mTypeChange], flushes = d.Counters[PerfCounter.InveptFlush];
        var r = d.Vram.Track(fb, 768);
        Assert.False(r.AllDirty);
        Assert.Equal(3, r.DirtyPages);
        // p2m_change_type_one per dirty page only: the re-arm; with PML also the flush's ram_logdirty -> ram_rw
        // (vmx_vcpu_flush_pml_buffer) first, so 3 + 3.
        Assert.Equal(how == HapLogDirty.Wp ? 3 : 6, d.Counters[PerfCounter.P2mTypeChange] - changes);
        Assert.Equal(1, d.Counters[PerfCounter.InveptFlush] - flushes);                 // one flush per query
        Assert.Equal(P2mType.RamLogDirty, d.GetP2mType(fb + 64));
        Assert.Equal(0, d.Vram.Track(fb, 768).DirtyPages);
        Assert.True(d.Vcpus[0].WriteVirtual(va + (64UL << 12), new byte[] { 1 }).IsOk);  // re-armed: logged again
        Assert.Equal(1, d.Vram.Track(fb, 768).DirtyPages);
    }
}

/// <summary>Issue 11, point 7: vram_with_logdirty, the seed's -ENODATA or mainline's coexistence.</summary>
public class VramWithLogDirtyTests
{
    private const ulong Fb = 0xF0000, Va = 0x40000000;

    private static Domain Build(XenLab.Dirty.VramWithLogDirty how)
    {
        var d = DirtyVramTests.Build(PagingModeKind.Hap, XenLab.Dirty.VramStrategy.Auto);   // PML, the default
        d.Vram.WithLogDirty = how;
        return d;
    }

    private void Write(Domain d, ulong page) => Assert.True(d.Vcpus[0].WriteVirtual(Va + (page << 12), new byte[] { 5 }).IsOk);

    [Fact]
    public void EnodataRefusesQueriesWhileLogDirtyRuns()
    {
        var d = Build(XenLab.Dirty.VramWithLogDirty.ENoData);
        d.Vram.Track(Fb, 768);
        d.LogDirty.Enable();
        var e = Assert.Throws<XenLab.Dirty.VramException>(() => d.Vram.Track(Fb, 768));
        Assert.Equal(XenLab.Dirty.VramErrno.ENODATA, e.Errno);
    }

    [Fact]
    public void CoexistKeepsBothExactThroughEachOthersCleans()
    {
        var d = Build(XenLab.Dirty.VramWithLogDirty.Coexist);
        Assert.True(d.Vram.Track(Fb, 768).AllDirty);
        d.LogDirty.Enable();
        Write(d, 10);
        Write(d, 20);
        // A log-dirty clean re-arms everything; VRAM still has both writes.
        var log = d.LogDirty.Read(clean: true);
        Assert.Contains(Fb + 10, log.DirtyGfns());
        Assert.Contains(Fb + 20, log.DirtyGfns());
        Write(d, 30);
        var q = d.Vram.Track(Fb, 768);
        Assert.False(q.AllDirty);
        Assert.Equal(3, q.DirtyPages);
        // A VRAM query re-arms its pages; log-dirty still has the write made since its clean.
        // (Other pages may show too: the CPU's A/D updates write the guest's page tables.)
        Assert.Equal(new[] { Fb + 30 }, System.Linq.Enumerable.Where(d.LogDirty.Read(clean: true).DirtyGfns(), g => g >= Fb && g < Fb + 768));
        // Log-dirty off: VRAM goes on, exact.
        Write(d, 40);
        d.LogDirty.Disable();
        Write(d, 50);
        q = d.Vram.Track(Fb, 768);
        Assert.False(q.AllDirty);
        Assert.Equal(2, q.DirtyPages);
        Write(d, 60);
        Assert.Equal(1, d.Vram.Track(Fb, 768).DirtyPages);
    }
}

/// <summary>Issue 11, point 8 (the part done): log-dirty on a HAP domain costs no per-page side structure.</summary>
public class HapLogDirtyCostTests
{
    [Fact]
    public void EnablingAndCleaningLogDirtyAllocatesFarLessThanAByteAPage()
    {
        var host = new XenHost(2UL << 30);
        var d = host.CreateDomain(TestDomains.Config("big", 1024, 1024));
        ulong pages = d.PopulatedPages;
        for (ulong g = 0x10000; g < 0x10000 + 1000; g++) d.WriteGuestPhysU64(g << 12, 1);   // back the frames first: guest data is not log-dirty's cost
        long marked = d.Counters[PerfCounter.EptInvalidatedEntries];
        long before = System.GC.GetAllocatedBytesForCurrentThread();
        d.LogDirty.Enable();
        for (ulong g = 0x10000; g < 0x10000 + 1000; g++) d.WriteGuestPhysU64(g << 12, g);   // 1,000 dirty pages
        var view = d.LogDirty.Read(clean: true);
        long bytes = System.GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(1000, view.DirtyPages);
        // Enable and clean each marked the one EPML4 entry (p2m_change_entry_type_global), no page visited.
        Assert.Equal(2, d.Counters[PerfCounter.EptInvalidatedEntries] - marked);
        // The read's bitmap (1 bit a page) and a leaf of the tree are all that grows with the domain.
        Assert.True(bytes < (long)pages, $"{bytes} bytes allocated for {pages} pages");
    }
}

/// <summary>
/// Issue 11, point 6: PML (vmx.c's PML code): ram_logdirty leaves stay writable with the EPT D
/// bit clear; the CPU logs each first write in a 512-entry per-vCPU buffer (NR_PML_ENTRIES)
/// and exits only when it is full; the buffers are flushed before every peek or clean.
/// </summary>
public class HapPmlTests
{
    private const ulong Va = 0x40000000, FirstGfn = 0x2000;
    private const int Pages = 513;

    private static Domain Build(HapLogDirty how)
    {
        var host = new XenHost(4UL << 30);
        var c = TestDomains.Config("pml", 64, 128);
        // 4 KiB leaves: a superpage's first write is a write-protection fault (it splits), counted apart below.
        c.PagingOptions = c.PagingOptions with { HapLogDirty = how, HapSuperpages = false };
        var d = host.CreateDomain(c);
        d.Kernel.Map(Va, FirstGfn, Pages, MapFlags.Writable);
        // Write every page once first: the guest's A and D bits are then set, so later writes
        // write no guest page table and only the data pages are logged.
        for (int p = 0; p < Pages; p++) Assert.True(d.Vcpus[0].WriteVirtual(Va + ((ulong)p << 12), new byte[] { 1 }).IsOk);
        return d;
    }

    [Fact]
    public void PmlLogs512WritesBeforeItsExit()
    {
        var d = Build(HapLogDirty.Pml);
        var hap = (HapMode)d.Mode!;
        d.LogDirty.Enable();
        for (int p = 0; p < 512; p++) Assert.True(d.Vcpus[0].WriteVirtual(Va + ((ulong)p << 12), new byte[] { 2 }).IsOk);
        Assert.Equal(512, d.Counters[PerfCounter.PmlLogged]);
        Assert.Equal(0, d.Counters[PerfCounter.PmlFullExit]);                 // the log holds 512: no exit yet
        Assert.Equal(0, d.Counters[PerfCounter.EptViolationLogDirty]);         // and no write-protection fault
        Assert.Equal(512, hap.PmlPending(0));
        Assert.Equal(0, d.LogDirty.Bitmap.DirtyCount);                         // nothing in the bitmap until a flush
        Assert.True(d.Vcpus[0].WriteVirtual(Va + (512UL << 12), new byte[] { 2 }).IsOk);   // the 513th
        Assert.Equal(1, d.Counters[PerfCounter.PmlFullExit]);
        Assert.Equal(512, d.LogDirty.Bitmap.DirtyCount);                       // the full log moved into the tree
        Assert.Equal(1, hap.PmlPending(0));
        // A second write to a logged page sets nothing: its D bit is set.
        Assert.True(d.Vcpus[0].WriteVirtual(Va, new byte[] { 3 }).IsOk);
        Assert.Equal(513, d.Counters[PerfCounter.PmlLogged]);
        // A peek flushes every vCPU's log first.
        var view = d.LogDirty.Read(clean: false);
        Assert.Equal(0, hap.PmlPending(0));
        Assert.Equal(513, view.DirtyPages);
    }

    [Theory]
    [InlineData(HapLogDirty.Wp, 513, 0)]
    [InlineData(HapLogDirty.Pml, 0, 1)]
    public void PmlSavesTheExitsWriteProtectionTakes(HapLogDirty how, long wpFaults, long pmlExits)
    {
        var d = Build(how);
        d.LogDirty.Enable();
        for (int p = 0; p < Pages; p++) Assert.True(d.Vcpus[0].WriteVirtual(Va + ((ulong)p << 12), new byte[] { 2 }).IsOk);
        Assert.Equal(wpFaults, d.Counters[PerfCounter.EptViolationLogDirty]);
        Assert.Equal(pmlExits, d.Counters[PerfCounter.PmlFullExit]);
        var view = d.LogDirty.Read(clean: true);
        Assert.Equal(Pages, view.DirtyPages);                                  // the same answer either way
        Assert.True(d.Vcpus[0].WriteVirtual(Va + (7UL << 12), new byte[] { 3 }).IsOk);   // re-armed by the clean
        Assert.Equal(new[] { FirstGfn + 7 }, d.LogDirty.Read(clean: true).DirtyGfns());
    }
}

/// <summary>Lab 04's migration under both HAP log-dirty mechanisms: the same rounds, far fewer exits with PML.</summary>
public class HapPmlMigrationTests
{
    private readonly Xunit.Abstractions.ITestOutputHelper _out;
    public HapPmlMigrationTests(Xunit.Abstractions.ITestOutputHelper output) => _out = output;

    private (XenLab.Lab.MigrationResult R, long Exits, long Logged, long Faults) Run(HapLogDirty how)
    {
        var host = new XenHost(2UL << 30);
        var c = TestDomains.Config("migrant", 256, vcpus: 2);
        c.PagingOptions = c.PagingOptions with { HapLogDirty = how, HapSuperpages = false };   // PML alone: no splitting faults
        var d = host.CreateDomain(c);
        var r = XenLab.Lab.LiveMigration.PreCopy(d, dirtyRatio: 0.5);
        long exits = how == HapLogDirty.Wp ? d.Counters[PerfCounter.EptViolationLogDirty] : d.Counters[PerfCounter.PmlFullExit];
        return (r, exits, d.Counters[PerfCounter.PmlLogged], d.Counters[PerfCounter.LogDirtyFault]);
    }

    [Fact]
    public void BothMechanismsSendTheSamePagesAndPmlSavesTheExits()
    {
        var wp = Run(HapLogDirty.Wp);
        var pml = Run(HapLogDirty.Pml);
        Assert.Equal(wp.R.PagesSent, pml.R.PagesSent);
        Assert.Equal(wp.R.Rounds.Count, pml.R.Rounds.Count);
        Assert.Equal(wp.Faults, wp.Exits);                      // write protection: one exit per first write
        Assert.True(pml.Logged >= wp.Exits, $"{pml.Logged} logged");
        Assert.True(pml.Exits <= pml.Logged / 512, $"{pml.Exits} PML-full exits for {pml.Logged} logged");
        _out.WriteLine($"wp: {wp.Exits} exits; pml: {pml.Logged} logged, {pml.Exits} exits; rounds {pml.R.Rounds.Count}, sent {pml.R.PagesSent}, stop-and-copy {pml.R.StopAndCopyPages}");
    }
}
