using System.Collections.Generic;
using XenLab.E820;

namespace XenLab.Tests;

public class E820MapTests
{
    private const ulong MiB = 1UL << 20, GiB = 1UL << 30;

    [Fact]
    public void DefaultHvmMapBelowTheHole()
    {
        var map = E820Map.DefaultHvm(2364 * MiB, 1024 * MiB);
        var expected = new List<E820Entry>
        {
            new(0, 0x9F000, E820Type.Ram),
            new(0x9F000, 0x1000, E820Type.Reserved),
            new(0xF0000, 0x10000, E820Type.Reserved),
            new(MiB, 2364 * MiB - MiB, E820Type.Ram),
            new(0xFC000000, 0x4000000, E820Type.Reserved),
        };
        Assert.Equal(expected, map.Entries);
        Assert.Equal(2364 * MiB - 0x61000, map.RamBytes);  // the legacy hole's 0x61000 bytes are not RAM
        Assert.Equal(4 * GiB, map.Top);
    }

    [Fact]
    public void DefaultHvmMapRelocatesRamAboveFourGiB()
    {
        var map = E820Map.DefaultHvm(6 * GiB, 1024 * MiB);
        Assert.Equal(new E820Entry(MiB, 3 * GiB - MiB, E820Type.Ram), map.Entries[3]);
        Assert.Equal(new E820Entry(4 * GiB, 3 * GiB, E820Type.Ram), map.Entries[5]);  // 6G - 3G hole start
        Assert.Equal(7 * GiB, map.Top);
    }

    [Fact]
    public void NonRamRegionsIncludeGapsAndAreMerged()
    {
        var map = E820Map.DefaultHvm(2 * GiB, 1024 * MiB);
        var regions = map.NonRamRegions();
        Assert.Equal(0x9F000UL, regions[0].Start);          // EBDA + VGA gap + BIOS merge into one
        Assert.Equal(MiB, regions[0].End);
        Assert.Equal(2 * GiB, regions[1].Start);            // gap from RAM's end to the firmware block
        Assert.Equal(4 * GiB, regions[1].End);
        Assert.Equal(2, regions.Count);
    }

    [Fact]
    public void OverlapsAreRejectedNamingBothEntries()
    {
        var ex = Assert.Throws<InvalidConfigurationException>(() => E820Map.Create(new[]
        {
            new E820Entry(0, 0x100000, E820Type.Ram),
            new E820Entry(0x80000, 0x1000, E820Type.Reserved),
        }));
        Assert.Contains("entry 0", ex.Message);
        Assert.Contains("overlaps entry 1", ex.Message);
    }

    [Fact]
    public void ZeroLengthAndUnalignedRamAreRejected()
    {
        var ex = Assert.Throws<InvalidConfigurationException>(() => E820Map.Create(new[]
        {
            new E820Entry(0x1000, 0, E820Type.Reserved),
            new E820Entry(0x2800, 0x1000, E820Type.Ram),
        }));
        Assert.Contains("entry 0", ex.Message);
        Assert.Contains("zero length", ex.Message);
        Assert.Contains("RAM entry 1", ex.Message);
        Assert.Contains("not 4 KiB aligned", ex.Message);
    }

    [Fact]
    public void UnalignedReservedEntriesAreAllowedAndRoundedOutward()
    {
        var map = E820Map.Create(new[]
        {
            new E820Entry(0, 0x9F000, E820Type.Ram),
            new E820Entry(0x9FC00, 0x400, E820Type.Reserved),
            new E820Entry(0x100000, 0x100000, E820Type.Ram),
        });
        var regions = map.NonRamRegions();
        Assert.Single(regions);
        Assert.Equal(0x9F000UL, regions[0].Start);
        Assert.Equal(0x100000UL, regions[0].End);
    }
}
