using System.Linq;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Dirty;
using XenLab.Domains;
using XenLab.Guest;

namespace XenLab.Tests;

/// <summary>
/// Whole-domain log-dirty's counts as XEN_DOMCTL_SHADOW_OP reports them: the fault and dirty
/// counts are those since enable or the last CLEAN; a CLEAN resets both, a PEEK resets nothing.
/// Every expected number below is counted by hand from the writes the test makes.
/// </summary>
public class LogDirtyTests
{
    private const ulong Va = 0x400000;
    private const ulong DataGfn = 0x1000;
    private const int MappedPages = 8;

    /// <summary>
    /// A domain with 8 pages mapped writable at <see cref="Va"/>, each written once before
    /// log-dirty starts, so the guest's A and D bits are already set and later writes through
    /// the mapping dirty only the data page (no page-table page joins the log).
    /// </summary>
    private static Domain Build(PagingModeKind mode)
    {
        var host = new XenHost(1UL << 30);
        var c = TestDomains.Config("logdirty", 64);
        c.Paging = mode;
        var d = host.CreateDomain(c);
        d.Kernel.Map(Va, DataGfn, MappedPages, MapFlags.Writable);
        for (int p = 0; p < MappedPages; p++)
            Assert.True(d.Vcpus[0].WriteVirtual(Va + ((ulong)p << 12), new byte[] { 0xAA }).IsOk);
        return d;
    }

    private static void WritePage(Domain d, int page, byte value, int offset = 0) =>
        Assert.True(d.Vcpus[0].WriteVirtual(Va + ((ulong)page << 12) + (ulong)offset, new[] { value }).IsOk);

    private static ulong[] Gfns(DirtyLogView v) => v.DirtyGfns().ToArray();

    [Theory]
    [InlineData(PagingModeKind.Hap)]
    [InlineData(PagingModeKind.Shadow)]
    [InlineData(PagingModeKind.Arm)]
    public void CleanResetsTheFaultAndDirtyCountsAndPeekResetsNothing(PagingModeKind mode)
    {
        var d = Build(mode);
        d.LogDirty.Enable();

        // Round 1: five pages, the first written three times (one fault per page: the first
        // write gives write access back).
        WritePage(d, 0, 1);
        WritePage(d, 0, 2, 100);
        WritePage(d, 0, 3, 4000);
        WritePage(d, 1, 1);
        WritePage(d, 2, 1);
        WritePage(d, 5, 1);
        WritePage(d, 7, 1);
        var peek1 = d.LogDirty.Read(clean: false);
        Assert.Equal(5, peek1.FaultCount);
        Assert.Equal(5, peek1.DirtyPages);
        Assert.Equal(new ulong[] { 0x1000, 0x1001, 0x1002, 0x1005, 0x1007 }, Gfns(peek1));
        var peek2 = d.LogDirty.Read(clean: false);                    // a second peek: nothing was reset
        Assert.Equal(5, peek2.FaultCount);
        Assert.Equal(5, peek2.DirtyPages);
        var clean1 = d.LogDirty.Read(clean: true);
        Assert.Equal(5, clean1.FaultCount);
        Assert.Equal(5, clean1.DirtyPages);
        Assert.True(clean1.Cleaned);

        // Round 2: three pages, one of them (page 2) written in round 1 too and re-armed by the clean.
        WritePage(d, 2, 9);
        WritePage(d, 3, 9);
        WritePage(d, 3, 8, 2048);
        WritePage(d, 6, 9);
        var peek3 = d.LogDirty.Read(clean: false);
        Assert.Equal(3, peek3.FaultCount);                           // M, not N + M
        Assert.Equal(3, peek3.DirtyPages);
        Assert.Equal(new ulong[] { 0x1002, 0x1003, 0x1006 }, Gfns(peek3));
        var clean2 = d.LogDirty.Read(clean: true);
        Assert.Equal(3, clean2.FaultCount);
        Assert.Equal(3, clean2.DirtyPages);

        // Round 3: nothing written: zero of both.
        var clean3 = d.LogDirty.Read(clean: true);
        Assert.Equal(0, clean3.FaultCount);
        Assert.Equal(0, clean3.DirtyPages);
        Assert.Equal(3, d.Counters[PerfCounter.LogDirtyPeek]);       // three peeks were counted as peeks...
        Assert.Equal(3, d.Counters[PerfCounter.LogDirtyClean]);      // ...and three cleans as cleans
        Assert.Equal(8, d.Counters[PerfCounter.LogDirtyFault]);      // 5 + 3 over the domain's life
        ShadowModeTests.AssertAuditClean(d);
    }

    [Theory]
    [InlineData(PagingModeKind.Hap)]
    [InlineData(PagingModeKind.Shadow)]
    [InlineData(PagingModeKind.Arm)]
    public void APhysicalWriteFaultsOnceLikeAGuestWrite(PagingModeKind mode)
    {
        // The direct-map / device-model path takes the same fault as the vCPU's.
        var d = Build(mode);
        d.LogDirty.Enable();
        d.WriteGuestPhysical((DataGfn + 4) << 12, new byte[] { 1, 2, 3 }, d.Vcpus[0]);
        d.WriteGuestPhysical(((DataGfn + 4) << 12) + 512, new byte[] { 4 }, null);
        WritePage(d, 4, 5);
        var v = d.LogDirty.Read(clean: true);
        Assert.Equal(1, v.FaultCount);
        Assert.Equal(new ulong[] { 0x1004 }, Gfns(v));
        d.WriteGuestPhysical((DataGfn + 4) << 12, new byte[] { 6 }, null);
        Assert.Equal(1, d.LogDirty.Read(clean: false).FaultCount);    // armed again by the clean
    }

    [Theory]
    [InlineData(PagingModeKind.Hap)]
    [InlineData(PagingModeKind.Shadow)]
    [InlineData(PagingModeKind.Arm)]
    public void EnableStartsTheCountsFromZero(PagingModeKind mode)
    {
        var d = Build(mode);
        d.LogDirty.Enable();
        WritePage(d, 0, 1);
        WritePage(d, 1, 1);
        d.LogDirty.Disable();
        d.LogDirty.Enable();                                         // no clean in between
        WritePage(d, 7, 2);
        var v = d.LogDirty.Read(clean: false);
        Assert.Equal(1, v.FaultCount);
        Assert.Equal(new ulong[] { 0x1007 }, Gfns(v));
    }
}
