using XenLab.Config;
using XenLab.Paging.Arm;
using XenLab.Paging.Modes;

namespace XenLab.Tests;

public class VlptMeasurementTests
{
    [Fact]
    public void TheHypervisorTlbIsSetAssociativeLruAndCountsRefillsAfterMaintenanceOnly()
    {
        // 4 entries, 2 ways: 2 sets, set = page number & 1. Pages 0, 2, 4 share set 0.
        var tlb = new HypervisorTlb(entries: 4, ways: 2, workingSetPages: 0);
        Assert.False(tlb.Access(0x0000, 12, HypervisorAccess.Vlpt));       // miss, fill
        Assert.False(tlb.Access(0x2000, 12, HypervisorAccess.Vlpt));       // miss, fill (set 0 full)
        Assert.True(tlb.Access(0x0000, 12, HypervisorAccess.Vlpt));        // hit: page 0 is now most recent
        Assert.False(tlb.Access(0x4000, 12, HypervisorAccess.Vlpt));       // evicts page 2 (LRU)
        Assert.True(tlb.Access(0x0000, 12, HypervisorAccess.Vlpt));
        Assert.False(tlb.Access(0x2000, 12, HypervisorAccess.Vlpt));       // capacity miss: not a refill
        Assert.Equal(0, tlb.Refills);
        tlb.InvalidateRange(0x0000, 1);                                    // one TLBI by VA
        Assert.False(tlb.Access(0x0000, 12, HypervisorAccess.Vlpt));       // refill
        Assert.Equal(1, tlb.Refills);
        Assert.Equal(1, tlb.InvalidationsByAddress);
        // A 2 MiB entry covers every 4 KiB page under it, and is a different tag from a 4 KiB one.
        Assert.False(tlb.Access(0x40_0000_0000, 21, HypervisorAccess.MappedTable));
        Assert.True(tlb.Access(0x40_001F_F000, 21, HypervisorAccess.MappedTable));
        tlb.FlushAll();
        Assert.False(tlb.Access(0x40_0000_0000, 21, HypervisorAccess.MappedTable));
        Assert.Equal(2, tlb.Refills);
        Assert.Equal((2L, 5L), (tlb.Hits(HypervisorAccess.Vlpt), tlb.Misses(HypervisorAccess.Vlpt)));
        Assert.Equal((1L, 2L), (tlb.Hits(HypervisorAccess.MappedTable), tlb.Misses(HypervisorAccess.MappedTable)));
    }

    private static VlptExperimentOptions Small(ArmLeafLookup lookup, VlptLayout layout = VlptLayout.PerDomainSlices, VlptInvalidation inv = VlptInvalidation.ByAddress) =>
        new() { Domains = 2, FaultsPerSwitch = 4, Switches = 4, Lookup = lookup, Layout = layout, Invalidation = inv, DomainMemoryMiB = 16 };

    [Fact]
    public void SharedSlotsByAddressPayFiveHundredThirteenTlbisPerSlotWrite()
    {
        // d0 traced, d1 not; measured switches: ->d0 (load its one slot), ->d1 (unload), twice:
        // 4 slot writes, each TLBI by VA for the slot's 512 pages + its alias page = 4 x 513.
        // 2 traced slices x 4 faults = 8 faults, 2 descriptors each through the VLPT (blocks pre-split).
        var m = VlptExperiment.Run(Small(ArmLeafLookup.Vlpt, VlptLayout.SharedSlots));
        Assert.Equal("vlpt shared, by address", m.Strategy);
        Assert.Equal(8, m.Faults);
        Assert.Equal(16, m.DescriptorReads);
        Assert.Equal(0, m.Maps);
        Assert.Equal(4, m.SlotWrites);
        Assert.Equal(4 * 513, m.InvalidationsByAddress);
        Assert.Equal(0, m.FullFlushes);
        Assert.True(m.Refills >= 2);                      // at least the loop's alias page, after each unload
        // Costs in cycles come from the table: only slot writes priced at 1 cycle -> 4 cycles.
        var zero = new VlptCosts { TlbHit = 0, TlbMiss = 0, DescriptorRead = 0, MapDomainPage = 0, SlotWrite = 1, TlbiByAddress = 0, FullFlush = 0 };
        Assert.Equal(4.0, VlptExperiment.Run(Small(ArmLeafLookup.Vlpt, VlptLayout.SharedSlots) with { Costs = zero }).Cycles);
        Assert.Equal(4 * 513.0, VlptExperiment.Run(Small(ArmLeafLookup.Vlpt, VlptLayout.SharedSlots) with { Costs = zero.With("slotwrite", 0).With("TlbiByAddress", 1) }).Cycles);
    }

    [Fact]
    public void SharedSlotsWithFullFlushPayOneFlushPerSwitchAndRefillEverything()
    {
        var m = VlptExperiment.Run(Small(ArmLeafLookup.Vlpt, VlptLayout.SharedSlots, VlptInvalidation.FullFlush));
        Assert.Equal(4, m.SlotWrites);
        Assert.Equal(0, m.InvalidationsByAddress);
        Assert.Equal(4, m.FullFlushes);                   // one per switch that rewrote the slot
        // After each flush the hypervisor's 8 working-set pages refill at the next trap (the switch touched them before its flush).
        Assert.True(m.Refills >= 2 * 8);
    }

    [Fact]
    public void PerDomainSlicesAndTheWalkDoNoUpkeepAtContextSwitch()
    {
        var slices = VlptExperiment.Run(Small(ArmLeafLookup.Vlpt));
        Assert.Equal((8L, 16L, 0L, 0L, 0L, 0L), (slices.Faults, slices.DescriptorReads, slices.SlotWrites, slices.InvalidationsByAddress, slices.FullFlushes, slices.Refills));
        var walk = VlptExperiment.Run(Small(ArmLeafLookup.Walk));
        Assert.Equal("walk", walk.Strategy);
        Assert.Equal((8L, 24L, 24L, 0L), (walk.Faults, walk.DescriptorReads, walk.Maps, walk.SlotWrites));   // 3 levels mapped and read per fault
        // With the default costs the walk pays 3 x (10 + 40) per fault in reads and maps alone; the
        // VLPT 2 x 10 plus its TLB misses (30 each).
        Assert.Equal(walk.TlbMisses * 30 + 24 * 10 + 24 * 40, walk.Cycles);
        Assert.Equal(slices.TlbMisses * 30 + 16 * 10, slices.Cycles);
    }

    [Fact]
    public void BadOptionsAndCostsAreRefused()
    {
        Assert.Throws<InvalidConfigurationException>(() => VlptExperiment.Run(new VlptExperimentOptions { Domains = 0 }));
        Assert.Throws<InvalidConfigurationException>(() => VlptCosts.Default.With("nosuch", 1));
        Assert.Throws<InvalidConfigurationException>(() => VlptCosts.Default.With("TlbMiss", -1));
        Assert.Throws<InvalidConfigurationException>(() => new HypervisorTlb(entries: 12, ways: 4));
    }
}
