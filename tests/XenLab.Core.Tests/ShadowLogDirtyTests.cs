using System.Linq;
using XenLab.Diagnostics;
using XenLab.Guest;
using XenLab.Paging.Shadow;

namespace XenLab.Tests;

/// <summary>
/// Log-dirty under shadow as Xen's shadow code does it, with no p2m types: sh_enable_log_dirty
/// and sh_clean_dirty_bitmap call shadow_blow_tables (common.c); _sh_propagate (multi.c) calls
/// paging_mark_dirty on a demand write and otherwise drops _PAGE_RW unless the page is already
/// dirty in the bitmap.
/// </summary>
public class ShadowLogDirtyTests
{
    private const ulong Va = 0x400000;
    private const ulong DataGfn = 0x2000;

    [Fact]
    public void EnableAndEveryCleanBlowTheTablesAndOnlyTheDemandWriteMakesAnEntryWritable()
    {
        var d = ShadowModeTests.Shadow(prefetch: true);
        d.Kernel.Map(Va, DataGfn, 4, MapFlags.Writable);
        var v = d.Vcpus[0];
        Assert.True(v.ReadVirtual(Va, new byte[1]).IsOk);
        var mode = (ShadowMode)d.Mode!;
        Assert.True(mode.ShadowCount > 0);
        long blows = d.Counters[PerfCounter.ShadowBlowTables];

        d.LogDirty.Enable();
        Assert.Equal(1, d.Counters[PerfCounter.ShadowLogDirtyBlow]);             // sh_enable_log_dirty
        Assert.Equal(blows + 1, d.Counters[PerfCounter.ShadowBlowTables]);
        Assert.Equal(0, mode.ShadowCount);

        Assert.True(v.ReadVirtual(Va + 0x1000, new byte[1]).IsOk);             // read: prefetched entries stay read-only
        Assert.True(v.WriteVirtual(Va, new byte[] { 1 }).IsOk);                 // demand write: marked dirty at fault time
        Assert.Equal(1, d.Counters[PerfCounter.ShadowLogDirtyDemandWrite]);
        long faults = d.Counters[PerfCounter.ShadowFaultFixed];
        v.FlushTlb();
        Assert.True(v.WriteVirtual(Va, new byte[] { 2 }).IsOk);                 // dirty already: writable shadow, no fault
        Assert.Equal(faults, d.Counters[PerfCounter.ShadowFaultFixed]);
        Assert.True(v.WriteVirtual(Va + 0x1000, new byte[] { 3 }).IsOk);        // was mapped read-only while clean
        Assert.Equal(2, d.Counters[PerfCounter.ShadowLogDirtyDemandWrite]);

        var peek = d.LogDirty.Read(clean: false);
        Assert.Equal(1, d.Counters[PerfCounter.ShadowLogDirtyBlow]);             // a peek blows nothing
        var view = d.LogDirty.Read(clean: true);
        Assert.Equal(new[] { DataGfn, DataGfn + 1 }, view.DirtyGfns().Where(g => g >= DataGfn && g < DataGfn + 4).ToArray());
        Assert.Equal(peek.DirtyPages, view.DirtyPages);
        Assert.Equal(2, d.Counters[PerfCounter.ShadowLogDirtyBlow]);             // sh_clean_dirty_bitmap
        Assert.Equal(0, mode.ShadowCount);
        Assert.Equal(0, d.Counters[PerfCounter.P2mTypeChange]);                  // no p2m_ram_logdirty under shadow

        Assert.True(v.WriteVirtual(Va, new byte[] { 4 }).IsOk);                 // clean again: the rebuild and a new demand write
        Assert.Equal(3, d.Counters[PerfCounter.ShadowLogDirtyDemandWrite]);
        Assert.Equal(new[] { DataGfn }, d.LogDirty.Read(clean: true).DirtyGfns().Where(g => g >= DataGfn && g < DataGfn + 4).ToArray());
        ShadowModeTests.AssertAuditClean(d);
    }
}
