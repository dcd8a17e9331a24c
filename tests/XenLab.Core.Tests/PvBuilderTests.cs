using System;
using System.Collections.Generic;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.E820;
using XenLab.Guest;
using XenLab.Memory;
using XenLab.P2m;

namespace XenLab.Tests;

/// <summary>The PV-style builder, 2.6.39's identity rules and the pv/hvm layers (issue 12, items 6-8).</summary>
public class PvBuilderTests
{
    private const ulong MiB = 1UL << 20;

    [Fact]
    public void UnusableEntriesAreNotIdentityAndRangesRoundInwardAsXenSetIdentity()
    {
        var map = E820Map.Create(new E820Entry[]
        {
            new(0, 0x9F000, E820Type.Ram),
            new(0x100000, 0x3FF00000, E820Type.Ram),                 // to 1 GiB
            new(0x40000000, 0x800, E820Type.Reserved),              // ends mid-page...
            new(0x40000800, 0x1000, E820Type.Unusable),             // ...into unusable, which ends mid-page too
            new(0x40001800, 0x10000, E820Type.Acpi),
            new(0x50000000, 0x10000000, E820Type.Ram),
            new(0xFEC00000, 0x1400, E820Type.Reserved),             // the last entry ends mid-page
        });
        var ranges = map.IdentityPfnRanges(initialDomain: true);
        Assert.Equal(new List<(ulong, ulong)>
        {
            (0x9F, 0x100),                                          // EBDA, VGA and BIOS (the gap too)
            (0x40000, 0x40000),                                     // [0x40000000, 0x40000800): PFN_DOWN makes it empty
            (0x40002, 0x50000),                                     // PFN_UP(0x40001800) up to the next RAM
            (0x60000, 0xFEC01),                                     // gap + reserved, PFN_DOWN(0xFEC01400)
        }, ranges);
        // A domU starts at ISA_END_ADDRESS: nothing below 1 MiB becomes identity.
        Assert.Equal((0x40000UL, 0x40000UL), map.IdentityPfnRanges(initialDomain: false)[0]);
    }

    [Fact]
    public void AnUnusableEntryStaysMissingInTheP2m()
    {
        var config = new DomainConfig
        {
            Name = "u", MemoryMiB = 64,
            E820 = new List<E820Entry>
            {
                new(0, 0x9F000, E820Type.Ram),
                new(0x100000, 127 * MiB, E820Type.Ram),
                new(128 * MiB, 16 * MiB + 0x800, E820Type.Unusable),
                new(144 * MiB + 0x800, 0x1000, E820Type.Reserved),
                new(160 * MiB, 64 * MiB, E820Type.Ram),
            },
        };
        var d = new XenHost(1UL << 30).CreateDomain(config);
        Assert.Equal(P2mEntryKind.Missing, P2mTree.Classify(d.P2m.Get((128 * MiB) >> 12)));
        Assert.Equal(P2mEntryKind.Missing, P2mTree.Classify(d.P2m.Get((144 * MiB) >> 12)));     // shares a page with unusable
        Assert.Equal(P2mEntryKind.Identity, P2mTree.Classify(d.P2m.Get((144 * MiB >> 12) + 1)));
        Assert.Equal(P2mEntryKind.Identity, P2mTree.Classify(d.P2m.Get((160 * MiB >> 12) - 1)));
    }

    private static DomainConfig Lab(IdentityStrategy strategy, DomainBuilder builder, GuestType type = GuestType.Pv) => new()
    {
        Name = "lab", MemoryMiB = 1024, MaxMemMiB = 2364, IdentityStrategy = strategy, Builder = builder, Type = type,
    };

    [Theory]
    [InlineData(IdentityStrategy.EdgesFirst)]
    [InlineData(IdentityStrategy.Coarse)]
    public void PvBuilderPopulatesFromPfnZeroAndBalloonsAboveFourGiBHighestFirst(IdentityStrategy strategy)
    {
        var d = new XenHost(8UL << 30).CreateDomain(Lab(strategy, DomainBuilder.Pv));
        // pfns 0..0x3FFFF populated with descending mfns, except 0x9F..0xFF: identity over
        // the EBDA/VGA/BIOS region (2.6.39 overwrites them; XenLab gives their frames back).
        Assert.Equal(0x40000UL - 0x61, d.PopulatedPages);
        Assert.Equal(97L, d.Counters[PerfCounter.P2mIdentityOverwritten]);
        Assert.Equal(d.P2m.Get(0) - 1, d.P2m.Get(1));                          // descending mfns
        Assert.Equal(P2mEntryKind.Identity, P2mTree.Classify(d.P2m.Get(0x9F)));
        Assert.Equal(P2mEntryKind.Ram, P2mTree.Classify(d.P2m.Get(0x3FFFF)));
        Assert.Equal(P2mEntryKind.Missing, P2mTree.Classify(d.P2m.Get(0x40000)));
        // E820 RAM cut at 1 GiB (1340 MiB) becomes the balloon region at 4 GiB, highest first.
        var next = d.BalloonedPfnsNextFirst();
        Assert.Equal(1340UL * 256, (ulong)next.Count);
        Assert.Equal(0x100000UL + 1340 * 256 - 1, next[0]);
        Assert.Equal(0x100000UL, next[^1]);
        Assert.Equal(d.PopulatedPages + 1340 * 256, d.MaxPages);
        // The seed's dom0_mem=max:2364MB,1GB: even the coarse switch survives, because 2.6.39's
        // balloon grows above 4 GiB and never into the hole that starts at 2364 MiB.
        var r = d.Balloon(2048 * 256);
        Assert.Equal(BalloonOutcome.Done, r.Outcome);
        Assert.Equal(P2mEntryKind.Ram, P2mTree.Classify(d.P2m.Get(0x153BFF)));
        // Coarse still turned RAM pfns from 2 GiB identity; nothing asks for them here.
        Assert.Equal(strategy == IdentityStrategy.Coarse ? P2mEntryKind.Identity : P2mEntryKind.Missing,
            P2mTree.Classify(d.P2m.Get(0x80000)));
    }

    [Fact]
    public void PvBuilderReleasesGapPagesAndAddsThemToTheBalloonRegion()
    {
        var config = new DomainConfig
        {
            Name = "gap", MemoryMiB = 256, Builder = DomainBuilder.Pv,
            E820 = new List<E820Entry>
            {
                new(0, 0x9F000, E820Type.Ram),
                new(0x9F000, 0x61000, E820Type.Reserved),
                new(MiB, 63 * MiB, E820Type.Ram),
                new(72 * MiB, 440 * MiB, E820Type.Ram),              // a gap [64, 72) MiB
            },
        };
        var d = new XenHost(2UL << 30).CreateDomain(config);
        Assert.Equal(2048L, d.Counters[PerfCounter.BalloonReleasedAtSetup]);
        Assert.Equal(P2mEntryKind.Identity, P2mTree.Classify(d.P2m.Get(64 * 256)));
        Assert.Equal(65536UL - 2048 - 97, d.PopulatedPages);
        // RAM cut at 256 MiB (256 MiB of it) plus the 2048 released pages.
        Assert.Equal(65536UL + 2048, (ulong)d.BalloonedPfnsNextFirst().Count);
        Assert.Equal(0x100000UL, d.BalloonedPfnsNextFirst()[^1]);
    }

    [Fact]
    public void HvmBuilderKeepsTheNastyConditionOfTheSeed()
    {
        var d = new XenHost(8UL << 30).CreateDomain(Lab(IdentityStrategy.Coarse, DomainBuilder.Hvm));
        Assert.Equal(BalloonOutcome.RefusedMappingValid, d.Balloon(2048 * 256).Outcome);
        var e = new XenHost(8UL << 30).CreateDomain(Lab(IdentityStrategy.EdgesFirst, DomainBuilder.Hvm));
        Assert.Equal(BalloonOutcome.Done, e.Balloon(2048 * 256).Outcome);
    }

    [Theory]
    [InlineData(GuestType.Pv, P2mType.MmioDirect, 0L)]
    [InlineData(GuestType.Hvm, P2mType.MmioDm, 3L)]
    public void IdentityIsMmioDirectForPvAndMmioDmWithDeviceModelExitsForHvm(GuestType type, P2mType expected, long exits)
    {
        var d = new XenHost(8UL << 30).CreateDomain(Lab(IdentityStrategy.EdgesFirst, DomainBuilder.Hvm, type));
        Assert.Equal(expected, d.GetP2mType(0xC0000));
        Span<byte> buf = stackalloc byte[16];
        d.ReadPhysical(0xC0000000, buf);                                       // one page: one exit
        Assert.Equal(0xFF, buf[7]);                                              // the device model reads all ones
        d.WriteGuestPhysical(0xC0000010, new byte[] { 1, 2, 3 });               // and discards writes
        d.ReadPhysical(0xC0000010, buf);
        Assert.Equal(0xFF, buf[0]);
        Assert.Equal(exits, d.Counters[PerfCounter.DmExit]);                    // three accesses of one page each
    }

    [Fact]
    public void GuestAccessesThroughThePagingModeToMmioDmCountExits()
    {
        var d = new XenHost(8UL << 30).CreateDomain(Lab(IdentityStrategy.EdgesFirst, DomainBuilder.Hvm, GuestType.Hvm));
        d.Kernel.Map(0x40000000, 0xC0000, 2, MapFlags.Writable);
        Span<byte> buf = stackalloc byte[8];
        var v = d.Vcpus[0];
        v.ReadVirtual(0x40000000, buf);
        v.ReadVirtual(0x40000000, buf);                                          // a TLB hit still exits
        v.WriteVirtual(0x40000ffc, new byte[8]);                                 // two pages, two exits
        Assert.Equal(0xFF, buf[0]);
        Assert.Equal(4L, d.Counters[PerfCounter.DmExit]);
    }

    [Fact]
    public void BuilderAndTypeKeysLoadWriteBackAndAreValidatedWithPositions()
    {
        var c = DomainConfigLoader.Load("name: a\nmemory: 64\nbuilder: pv\ntype: pv\n", "k.yaml");
        Assert.Equal(DomainBuilder.Pv, c.Builder);
        string yaml = DomainConfigWriter.ToYaml(c);
        Assert.Contains("builder: pv\n", yaml);
        Assert.Equal(DomainBuilder.Pv, DomainConfigLoader.Load(yaml).Builder);
        var h = DomainConfigLoader.Load("name: a\nmemory: 64\ntype: hvm\n");
        Assert.Equal(GuestType.Hvm, h.Type);
        Assert.Contains("type: hvm\n", DomainConfigWriter.ToYaml(h));
        Assert.Equal(GuestType.Hvm, DomainConfigLoader.Load(DomainConfigWriter.ToYaml(h)).Type);

        var bad = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load("name: a\nbuilder: generic\n", "k.yaml"));
        Assert.Equal((2L, 10L), (bad.Line, bad.Column));
        var badType = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load("name: a\ntype: pvh\n", "k.yaml"));
        Assert.Equal((2L, 7L), (badType.Line, badType.Column));
        var clash = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load("name: a\ntype: hvm\nbuilder: pv\n", "k.yaml"));
        Assert.Equal((3L, 10L), (clash.Line, clash.Column));
        Assert.Contains("builder 'pv' needs type 'pv'", clash.Message);
    }
}
