using System;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Memory;
using XenLab.P2m;

namespace XenLab.Tests;

public class DomainTests
{
    [Fact]
    public void BuildPopulatesRamPfnsWithDescendingMfns()
    {
        // Shadow: HAP and ARM domains are rearranged into 2 MiB extents (BlockPlacement) for superpages.
        var host = new XenHost(1UL << 30);
        var c = TestDomains.Config("t", 64);
        c.Paging = PagingModeKind.Shadow;
        var d = host.CreateDomain(c);
        ulong top = host.Machine.FrameCount - 1;             // 0x3FFFF for 1 GiB
        Assert.Equal(top, d.P2m.Get(0));                     // pfn 0 gets the highest frame
        Assert.Equal(top - 1, d.P2m.Get(1));
        Assert.Equal(top - 0x9F, d.P2m.Get(0x100));          // RAM resumes at 1 MiB after 0x9F pages
        // memory == maxmem: the E820 has 64 MiB less the 0x61 pages of the legacy hole as RAM.
        Assert.Equal(64UL * 256 - 0x61, d.PopulatedPages);
        Assert.Equal(64UL * 256 - 0x61 + d.PagingFrames, host.Machine.AllocatedFrames);
    }

    [Fact]
    public void NonRamOfTheE820IsIdentityAndUnpopulatedRamIsInvalid()
    {
        var (_, d) = TestDomains.Create(memoryMiB: 64, maxMemMiB: 128);
        Assert.Equal(P2mTree.IdentityFrame(0x9F), d.P2m.Get(0x9F));      // EBDA
        Assert.Equal(P2mTree.IdentityFrame(0xB8), d.P2m.Get(0xB8));      // VGA text memory (gap)
        Assert.Equal(P2mTree.IdentityFrame(0xC0000), d.P2m.Get(0xC0000));// PCI hole at 3 GiB
        Assert.Equal(P2mTree.InvalidEntry, d.P2m.Get(0x7FFF));           // RAM in E820, not populated
        Assert.Equal(P2mTree.IdentityFrame(0x8000), d.P2m.Get(0x8000));  // the gap above 128 MiB
    }

    [Fact]
    public void PhysicalWritesReadBackAndCrossPages()
    {
        var (_, d) = TestDomains.Create();
        var data = new byte[6000];
        new Random(1).NextBytes(data);
        long writesBefore = d.Counters[PerfCounter.GuestPhysWrite];
        Assert.Equal(PhysAccessStatus.Ok, d.WriteGuestPhysical(0x200FF0, data).Status);
        var back = new byte[6000];
        Assert.Equal(PhysAccessStatus.Ok, d.ReadPhysical(0x200FF0, back).Status);
        Assert.Equal(data, back);
        Assert.Equal(writesBefore + 3, d.Counters[PerfCounter.GuestPhysWrite]);        // 0x200FF0..0x202770 touches 3 pages
    }

    [Fact]
    public void AnAccessTouchingAMissingPageMovesNoByte()
    {
        var (_, d) = TestDomains.Create(memoryMiB: 64, maxMemMiB: 128);
        ulong lastPopulated = 0x3FFF + 0x61;                 // 64 MiB of pages: 0x9F below 1 MiB, the rest from 0x100
        Assert.Equal(PhysAccessStatus.Ok, d.Classify(lastPopulated));
        Assert.Equal(PhysAccessStatus.Missing, d.Classify(lastPopulated + 1));
        var r = d.WriteGuestPhysical((lastPopulated << 12) + 0xFF8, new byte[16] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 });
        Assert.Equal(PhysAccessStatus.Missing, r.Status);
        Assert.Equal(lastPopulated + 1, r.FirstBadGfn);
        var back = new byte[8];
        d.ReadPhysical((lastPopulated << 12) + 0xFF8, back);
        Assert.Equal(new byte[8], back);                     // the first page was not written either
    }

    [Fact]
    public void IdentityFramesReadAllOnesAndDropWrites()
    {
        var (_, d) = TestDomains.Create();
        var r = d.WriteGuestPhysical(0xC0000000, new byte[] { 1, 2, 3 });
        Assert.Equal(PhysAccessStatus.Mmio, r.Status);
        var back = new byte[3];
        d.ReadPhysical(0xC0000000, back);
        Assert.Equal(new byte[] { 0xFF, 0xFF, 0xFF }, back);
    }

    [Fact]
    public void ExhaustionLeavesTheHostAsItWas()
    {
        var host = new XenHost(64UL << 20);                  // 64 MiB host
        host.CreateDomain(TestDomains.Config("a", 32));
        ulong before = host.Machine.FreeFrames;
        Assert.Throws<MachineMemoryExhaustedException>(() => host.CreateDomain(TestDomains.Config("b", 48)));
        Assert.Equal(before, host.Machine.FreeFrames);
        Assert.Single(host.Domains);
        Assert.Null(host.Find("b"));
    }

    [Fact]
    public void DestroyReturnsEveryFrameIncludingBallooned()
    {
        var (host, d) = TestDomains.Create(memoryMiB: 32, maxMemMiB: 64);
        d.Balloon(48UL * 256);
        host.DestroyDomain(d);
        Assert.Equal(0UL, host.Machine.AllocatedFrames);
        Assert.Empty(host.Domains);
    }

    [Fact]
    public void DuplicateNamesAndBadConfigsAreRefused()
    {
        var host = new XenHost(1UL << 30);
        host.CreateDomain(TestDomains.Config("a", 16));
        Assert.Throws<InvalidConfigurationException>(() => host.CreateDomain(TestDomains.Config("A", 16)));
        var ex = Assert.Throws<InvalidConfigurationException>(() => host.CreateDomain(TestDomains.Config("b", 16, maxMemMiB: 8)));
        Assert.Contains("maxmem 8 MiB is below memory 16 MiB", ex.Message);
    }

    [Fact]
    public void BalloonUpAndDownMovesTheReservation()
    {
        var (host, d) = TestDomains.Create(memoryMiB: 32, maxMemMiB: 64);
        Assert.Equal(PhysAccessStatus.Ok, d.Classify(0x2060));
        Assert.Equal(PhysAccessStatus.Missing, d.Classify(0x2061));
        var up = d.Balloon(40UL * 256);
        Assert.Equal(BalloonOutcome.Done, up.Outcome);
        Assert.Equal(8L * 256, up.PagesChanged);
        Assert.Equal(PhysAccessStatus.Ok, d.Classify(0x2061));           // first pfn past the original 32 MiB (0x100 + 8192 - 0x9F)
        var down = d.Balloon(16UL * 256);
        Assert.Equal(-24L * 256, down.PagesChanged);
        Assert.Equal(16UL * 256, d.PopulatedPages);
        Assert.Equal(16UL * 256 + d.PagingFrames, host.Machine.AllocatedFrames);
        Assert.Equal(PhysAccessStatus.Ok, d.Classify(d.Kernel.PoolBaseGfn));  // kernel tables are kept
    }

    [Fact]
    public void NastyConditionCoarseIdentityMakesTheBalloonDriverBug()
    {
        // Seed 004: dom0_mem=max:2364MB,1GB. RAM in the E820 to 2364 MiB, 1 GiB populated,
        // the hole from 2364 MiB: with the coarse swap p2m[2] becomes p2m_mid_identity.
        var (host, d) = TestDomains.Create(memoryMiB: 1024, maxMemMiB: 2364, strategy: IdentityStrategy.Coarse);
        ulong frames = host.Machine.AllocatedFrames;
        var r = d.Balloon(2048UL * 256);
        Assert.Equal(BalloonOutcome.RefusedMappingValid, r.Outcome);
        Assert.Equal(0x80000UL, r.OffendingPfn);              // first RAM pfn of p2m[2], 2 GiB
        Assert.Equal(P2mTree.IdentityFrame(0x80000), r.OffendingEntry);
        Assert.Equal(frames, host.Machine.AllocatedFrames);   // nothing changed
        Assert.Equal(1024UL * 256, d.PopulatedPages);
        Assert.Equal(1, d.Counters[PerfCounter.BalloonRefused]);
        // Ballooning within p2m[1] (below 2 GiB) still works.
        Assert.Equal(BalloonOutcome.Done, d.Balloon(1500UL * 256).Outcome);
    }

    [Fact]
    public void NastyConditionEdgesFirstBalloonsIntoTheHoleEdge()
    {
        var (_, d) = TestDomains.Create(memoryMiB: 1024, maxMemMiB: 2364, strategy: IdentityStrategy.EdgesFirst);
        var r = d.Balloon(d.MaxPages);                         // every RAM page the E820 offers
        Assert.Equal(BalloonOutcome.Done, r.Outcome);
        Assert.Equal(PhysAccessStatus.Ok, d.Classify(0x93BFF));           // last RAM pfn below the hole
        Assert.Equal(PhysAccessStatus.Mmio, d.Classify(0x93C00));         // first pfn of the hole
    }

    [Fact]
    public void IdentityOverPopulatedRamIsRefusedAndChangesNothing()
    {
        var (_, d) = TestDomains.Create();
        ulong before = d.P2m.CountIdentity();
        var ex = Assert.Throws<InvalidConfigurationException>(() => d.SetIdentityRange(0x1000, 0x1010, IdentityStrategy.Coarse));
        Assert.Contains("gfn 0x1000", ex.Message);
        Assert.Equal(before, d.P2m.CountIdentity());
    }
}
