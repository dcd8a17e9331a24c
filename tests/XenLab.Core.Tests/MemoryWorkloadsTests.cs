using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Lab;
using XenLab.Paging.Modes;

namespace XenLab.Tests;

public class MemoryWorkloadsTests
{
    private static Domain Build(PagingModeKind mode, OosMode oos)
    {
        var host = new XenHost(2UL << 30);
        var c = TestDomains.Config("w", 128);
        c.Paging = mode;
        c.PagingOptions = c.PagingOptions with { Oos = oos };
        return host.CreateDomain(c);
    }

    [Fact]
    public void WorkloadsLetDomainTimePassOneNanosecondPerGuestAccess()
    {
        // Each access a workload makes through a vCPU counts as one guest instruction (1 ns), as
        // guest code does: pt-churn's 100 rounds of 64 writes and 64 reads, pte-update's 10 a round.
        var d = Build(PagingModeKind.Hap, OosMode.Snapshot);
        long t0 = d.ClockNs;
        var r = MemoryWorkloads.PageTableChurn(d, 100);
        Assert.Equal(12_800, d.ClockNs - t0);
        Assert.Equal(12_800, r[PerfCounter.DomainTimeNs]);
        var u = MemoryWorkloads.PteUpdates(d, 16);
        Assert.Equal(160, u[PerfCounter.DomainTimeNs]);
        Assert.Equal(12_960, d.ClockNs - t0);
    }

    [Fact]
    public void OneRoundOfChurnUnderShadowEmulatesTheTopEntryAndTheUnmap()
    {
        // Round 0 maps 64 pages at 0x10000000: the kernel writes PML4[0] (the PML4 is shadowed as
        // the vCPU's top: emulated), then PDPT[0], PD[128] and 64 leaves in tables nobody has
        // shadowed yet (direct). The accesses shadow those tables; the unmap's 64 clears of the
        // now-shadowed L1 are emulated: 1 + 64.
        var d = Build(PagingModeKind.Shadow, OosMode.Off);
        var r = MemoryWorkloads.PageTableChurn(d, 1);
        Assert.Equal(65, r[PerfCounter.ShadowEmulateWrite]);
        Assert.Equal(128, r.Operations);
        Assert.Equal(64, r[PerfCounter.TlbMiss]);            // each page misses on its write, hits on its read
    }

    [Fact]
    public void WithOosTheFirstUnmapWriteUnsyncsTheTableAndTheRestGoStraight()
    {
        var d = Build(PagingModeKind.Shadow, OosMode.Snapshot);
        var r = MemoryWorkloads.PageTableChurn(d, 1);
        Assert.Equal(1, r[PerfCounter.ShadowEmulateWrite]);   // only PML4[0]
        Assert.Equal(1, r[PerfCounter.OosUnsync]);
    }

    [Fact]
    public void PteUpdatesUnderHapCauseNoHypervisorWork()
    {
        var d = Build(PagingModeKind.Hap, OosMode.Snapshot);
        var r = MemoryWorkloads.PteUpdates(d, 32);
        Assert.Equal(0, r[PerfCounter.EptViolation]);
        Assert.Equal(2, r[PerfCounter.Cr3Load]);              // every 16 rounds, one vCPU
        Assert.Equal(32 * 10, r.Operations);
    }

    [Fact]
    public void AnUnknownWorkloadIsNamed()
    {
        var d = Build(PagingModeKind.Hap, OosMode.Snapshot);
        var ex = Assert.Throws<InvalidConfigurationException>(() => MemoryWorkloads.Run(d, "fork-bomb", 1));
        Assert.Contains("pt-churn, pte-update", ex.Message);
    }
}
