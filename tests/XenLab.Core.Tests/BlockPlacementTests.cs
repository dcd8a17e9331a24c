using System.Collections.Generic;
using System.Linq;
using XenLab.Memory;
using XenLab.Paging.Arm;

namespace XenLab.Tests;

/// <summary>
/// The builder's frames as runs and their placement in 1 GiB, then 2 MiB extents (the
/// toolstack's populate_physmap with extent orders 18, then 9, then 0), checked by hand.
/// </summary>
public class BlockPlacementTests
{
    [Fact]
    public void AllocateRunsHandsOutTheHighestFreeFramesAsRuns()
    {
        var m = new MachineMemory(4UL << 30);                 // frames 0 .. 0xFFFFF
        var hole = m.AllocateRuns(0x10);                      // 0xFFFF0 .. 0xFFFFF
        Assert.Equal(new[] { (0xFFFF0UL, 0x10UL) }, hole);
        var five = m.AllocateRuns(5);
        Assert.Equal(new[] { (0xFFFEBUL, 5UL) }, five);
        m.Free(new Mfn(0xFFFF8));                             // a free frame above the next run
        m.Free(new Mfn(0xFFFEC));
        var next = m.AllocateRuns(0x43);
        // Highest first: 0xFFFF8 alone, 0xFFFEC alone, then 0xFFFEA down.
        Assert.Equal(new[] { (0xFFFF8UL, 1UL), (0xFFFECUL, 1UL), (0xFFFAAUL, 0x41UL) }, next);
        Assert.Equal(0x100000UL - 0x10 - 5 + 2 - 0x43, m.FreeFrames);
        Assert.Throws<XenLab.MachineMemoryExhaustedException>(() => m.AllocateRuns(m.FreeFrames + 1));
        Assert.Equal(0x100000UL - 0x10 - 5 + 2 - 0x43, m.FreeFrames);     // all or nothing
    }

    [Fact]
    public void FramesArePlacedInOneGiBThenTwoMiBExtentsThenDescending()
    {
        // pfns [0, 0xA0) and [0x100, 0x80060): 0x80000 pages; frames [0x80000, 0x100000) from a
        // fresh 4 GiB host. Aligned 1 GiB of frames: 0xC0000 and 0x80000; of pfns: only 0x40000.
        var m = new MachineMemory(4UL << 30);
        var runs = m.AllocateRuns(0x80000);
        Assert.Equal(new[] { (0x80000UL, 0x80000UL) }, runs);
        var placed = BlockPlacement.Place(new List<(ulong, ulong)> { (0, 0xA0), (0x100, 0x7FF60) }, runs, BlockPlacement.BlockOrders);
        // GiB 1 of pfns gets the highest aligned GiB of frames.
        Assert.Contains(new Placement(0x40000, 0xC0000, 0x40000, false), placed);
        // The 511 whole 2 MiB groups of [0x100, 0x40000) get 2 MiB runs from [0x80000, 0xC0000), highest first.
        var blocks = placed.Where(p => p.Count == 512 && !p.Descending).ToList();
        Assert.Equal(511, blocks.Count);
        Assert.Equal(new Placement(0x200, 0xBFE00, 512, false), blocks[0]);
        Assert.Equal(new Placement(0x3FE00, 0x80200, 512, false), blocks[^1]);
        // The 512 frames left, [0x80000, 0x80200), highest first over the pfns left, lowest first.
        var rest = placed.Where(p => p.Descending).ToList();
        Assert.Equal(new[]
        {
            new Placement(0, 0x801FF, 0xA0, true),
            new Placement(0x100, 0x8015F, 0x100, true),
            new Placement(0x80000, 0x8005F, 0x60, true),
        }, rest);
        Assert.Equal(0x80000UL, placed.Aggregate(0UL, (n, p) => n + p.Count));
        // Every frame once.
        var frames = new HashSet<ulong>();
        foreach (var p in placed) for (ulong i = 0; i < p.Count; i++) Assert.True(frames.Add(p.MfnAt(i)));
        Assert.Equal(0x80000, frames.Count);
    }

    [Fact]
    public void WithoutExtentOrdersFramesKeepTheAllocatorsDescendingOrder()
    {
        var runs = new List<(ulong, ulong)> { (0x5000, 0x10), (0x1000, 0x10) };
        var placed = BlockPlacement.Place(new List<(ulong, ulong)> { (0x100, 0x18), (0x200, 0x8) }, runs, System.Array.Empty<int>());
        Assert.Equal(new[]
        {
            new Placement(0x100, 0x500F, 0x10, true),
            new Placement(0x110, 0x100F, 0x8, true),
            new Placement(0x200, 0x1007, 0x8, true),
        }, placed);
    }
}
