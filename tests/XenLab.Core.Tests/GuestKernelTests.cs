using XenLab.Diagnostics;
using XenLab.Guest;
using XenLab.Domains;
using XenLab.Paging;

namespace XenLab.Tests;

public class GuestKernelTests
{
    [Fact]
    public void TheFirstMappingCreatesOneTableAtEachLevelBelowThePml4()
    {
        var (_, d) = TestDomains.Create();
        Assert.Equal(1, d.Kernel.PoolPagesUsed);              // the PML4
        Assert.Equal(0x100UL, d.Kernel.Pml4Gfn);              // pool starts at 1 MiB
        Assert.Equal(0x100000UL, d.Vcpus[0].Cr3);
        d.Kernel.Map(0x400000, 0x2000, 1, MapFlags.Writable);
        Assert.Equal(4, d.Kernel.PoolPagesUsed);              // PDPT, PD, PT
    }

    [Fact]
    public void CrossingATwoMiBBoundaryNeedsASecondPageTable()
    {
        var (_, d) = TestDomains.Create();
        d.Kernel.Map(0x3FF000, 0x2000, 2, MapFlags.Writable); // 0x3FF000 and 0x400000: PDE 1 and PDE 2
        Assert.Equal(5, d.Kernel.PoolPagesUsed);
    }

    [Fact]
    public void RunningOutOfTablePagesMapsNothing()
    {
        var host = new XenHost(1UL << 30);
        var d = host.CreateDomain(new Config.DomainConfig { Name = "small", MemoryMiB = 64, KernelPtPages = 8 });
        d.Kernel.Map(0x0, 0x2000, 1, MapFlags.Writable);       // 3 tables: 4 used of 8
        long writes = d.Counters[PerfCounter.KernelPteWrite];
        // 4 GiB apart in two 1 GiB regions of new PDPT entries: 5 L1 tables across 5 PDs > 4 left
        var ex = Assert.Throws<InvalidConfigurationException>(() => d.Kernel.Map(0x8000000000, 0x2000, 512 * 5, MapFlags.Writable));
        Assert.Contains("4 of 8 left", ex.Message);
        Assert.Equal(writes, d.Counters[PerfCounter.KernelPteWrite]);
        Assert.Equal(4, d.Kernel.PoolPagesUsed);
    }

    [Fact]
    public void MappingsAreReadBackFromTheTablesAndMerged()
    {
        var (_, d) = TestDomains.Create();
        d.Kernel.Map(0x400000, 0x2000, 16, MapFlags.Writable);
        d.Kernel.Map(0x410000, 0x2010, 16, MapFlags.Writable);    // continues the first run
        d.Kernel.Map(0x420000, 0x5000, 4, MapFlags.None);
        d.Kernel.Map(0xFFFF_8000_0000_0000, 0x6000, 1, MapFlags.Writable | MapFlags.NoExecute);
        var m = d.Kernel.Mappings();
        Assert.Equal(3, m.Count);
        Assert.Equal((0x400000UL, 0x2000UL, 32UL, true), (m[0].VirtualAddress, m[0].Gfn, m[0].Count, m[0].Writable));
        Assert.Equal((0x420000UL, 0x5000UL, 4UL, false), (m[1].VirtualAddress, m[1].Gfn, m[1].Count, m[1].Writable));
        Assert.Equal(0xFFFF_8000_0000_0000UL, m[2].VirtualAddress);   // sign-extended upper half
        Assert.True(m[2].NoExecute);
    }

    [Fact]
    public void UnmapClearsOnlyPresentEntriesAndShootsDownTlbs()
    {
        var (_, d) = TestDomains.Create(vcpus: 2);
        d.Kernel.Map(0x400000, 0x2000, 8, MapFlags.Writable);
        long pageFlushes = d.Counters[PerfCounter.TlbFlushPage];
        Assert.Equal(8UL, d.Kernel.Unmap(0x400000, 10));      // 2 of the 10 were never mapped
        Assert.Equal(pageFlushes + 2 * 10, d.Counters[PerfCounter.TlbFlushPage]);   // invlpg x 10 on each of 2 vCPUs
        Assert.Empty(d.Kernel.Mappings());
    }

    [Fact]
    public void LargeShootdownsFlushTheWholeTlb()
    {
        var (_, d) = TestDomains.Create(vcpus: 2);
        long full = d.Counters[PerfCounter.TlbFlushAll];
        d.Kernel.Map(0x400000, 0x2000, GuestKernel.SinglePageFlushCeiling + 1, MapFlags.Writable);
        Assert.Equal(full + 2, d.Counters[PerfCounter.TlbFlushAll]);
    }

    [Fact]
    public void ProtectFlipsTheWritableBit()
    {
        var (_, d) = TestDomains.Create();
        d.Kernel.Map(0x400000, 0x2000, 4, MapFlags.Writable);
        Assert.Equal(4UL, d.Kernel.Protect(0x400000, 4, writable: false));
        Assert.Equal(0x3u, (uint)d.Vcpus[0].WriteVirtual(0x401000, new byte[1]).ErrorCode);
        Assert.Equal(0UL, d.Kernel.Protect(0x400000, 4, writable: false));
    }

    [Theory]
    [InlineData(0x400001UL, 1UL, "not 4 KiB aligned")]
    [InlineData(0x0000_7FFF_FFFF_F000UL, 2UL, "not canonical")]
    [InlineData(0x400000UL, 0UL, "at least one page")]
    public void BadRangesAreRefusedWithTheReason(ulong va, ulong count, string why)
    {
        var (_, d) = TestDomains.Create();
        var ex = Assert.Throws<InvalidConfigurationException>(() => d.Kernel.Map(va, 0x2000, count, MapFlags.Writable));
        Assert.Contains(why, ex.Message);
    }
}
