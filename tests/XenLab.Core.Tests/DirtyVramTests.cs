using System;
using System.Collections.Generic;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Dirty;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Paging.Modes;

namespace XenLab.Tests;

/// <summary>The reviewer's points of seed 000, in every mode that has VRAM tracking.</summary>
public class DirtyVramTests
{
    // 1024x768x32: stride 4096, 768 pages, in the PCI hole at 3.75 GiB (populated on plug-in).
    private static readonly FramebufferConfig Mon0 = new("mon0", 0xF0000000, 1024, 768, 32);
    private const ulong FbGfn = 0xF0000;
    private const ulong MountVa = 0x40000000;

    public static IEnumerable<object[]> Setups() => new[]
    {
        new object[] { PagingModeKind.Hap, VramStrategy.Auto },
        new object[] { PagingModeKind.Hap, VramStrategy.Memcmp },
        new object[] { PagingModeKind.Shadow, VramStrategy.BackLinks },
        new object[] { PagingModeKind.Shadow, VramStrategy.DirtyBit },
        new object[] { PagingModeKind.Shadow, VramStrategy.Memcmp },
        new object[] { PagingModeKind.Shadow, VramStrategy.Tracker },
        new object[] { PagingModeKind.Arm, VramStrategy.Auto },
        new object[] { PagingModeKind.Arm, VramStrategy.Memcmp },
    };

    internal static Domain Build(PagingModeKind mode, VramStrategy strategy, ulong shadowMiB = 8)
    {
        var host = new XenHost(4UL << 30);
        var c = TestDomains.Config("vram", 64, vcpus: 2);
        c.Paging = mode;
        c.ShadowMemoryMiB = shadowMiB;
        c.Framebuffers.Add(Mon0);
        var d = host.CreateDomain(c);
        d.Vram.Strategy = strategy;
        d.MountFramebuffer("mon0", MountVa);
        // Touch every page once so the D-bit design finds present entries.
        for (ulong p = 0; p < 768; p++) d.Vcpus[0].ReadVirtual(MountVa + (p << 12), new byte[1]);
        return d;
    }

    private static List<int> Dirty(VramQueryResult r) => r.DirtyPageIndexes();

    [Theory]
    [MemberData(nameof(Setups))]
    public void TheFirstQueryIsAllDirtyThenOnlyWrittenPagesAre(PagingModeKind mode, VramStrategy strategy)
    {
        var d = Build(mode, strategy);
        var first = d.Vram.Track(FbGfn, 768);
        Assert.True(first.AllDirty);
        Assert.Equal(768, first.DirtyPages);
        var v = d.Vcpus[0];
        v.WriteVirtual(MountVa + 5 * 4096 + 100, new byte[] { 1, 2, 3 });
        v.WriteVirtual(MountVa + 700 * 4096, new byte[] { 9 });
        var second = d.Vram.Track(FbGfn, 768);
        // Build maps the framebuffer writable once, at one address, every entry present: even the
        // D-bit design has no reason to back off here, so every design must be exact.
        Assert.False(second.AllDirty, second.Reason);
        Assert.Equal(new[] { 5, 700 }, Dirty(second));
        Assert.Empty(Dirty(d.Vram.Track(FbGfn, 768)));                       // nothing since
        ShadowModeTests.AssertAuditClean(d);
    }

    [Theory]
    [MemberData(nameof(Setups))]
    public void PeekKeepsWhatItRead(PagingModeKind mode, VramStrategy strategy)
    {
        var d = Build(mode, strategy);
        d.Vram.Track(FbGfn, 768);
        d.Vcpus[1].WriteVirtual(MountVa + 3 * 4096, new byte[] { 7 });
        var peek = d.Vram.Track(FbGfn, 768, peek: true);
        var read = d.Vram.Track(FbGfn, 768);
        Assert.False(peek.AllDirty, peek.Reason);                             // no back-off allowed (see above)
        Assert.False(read.AllDirty, read.Reason);
        Assert.Equal(new[] { 3 }, Dirty(peek));
        Assert.Equal(new[] { 3 }, Dirty(read));
    }

    [Fact]
    public void BackLinksFlushAfterAQueryOnlyWhenItClearedADirtyBit()
    {
        // The review: a flush is needed after clearing D bits (seed 003), and only then.
        var d = Build(PagingModeKind.Shadow, VramStrategy.BackLinks);
        var v = d.Vcpus[0];
        d.Vram.Track(FbGfn, 768);                                            // arm
        Assert.True(v.WriteVirtual(MountVa + 7 * 4096, new byte[1]).IsOk);
        long flushes = d.Counters[PerfCounter.TlbFlushAll];
        Assert.Equal(new[] { 7 }, Dirty(d.Vram.Track(FbGfn, 768)));
        Assert.Equal(flushes + 2, d.Counters[PerfCounter.TlbFlushAll]);      // one per vCPU: a D bit was cleared
        Assert.Empty(Dirty(d.Vram.Track(FbGfn, 768)));
        Assert.Equal(flushes + 2, d.Counters[PerfCounter.TlbFlushAll]);      // nothing cleared, nothing flushed
        Assert.Equal(1, d.Counters[PerfCounter.VramFlushAvoided]);
        d.Vram.SkipTlbFlush = true;                                          // the teaching switch: a flush is skipped...
        Assert.True(v.WriteVirtual(MountVa + 8 * 4096, new byte[1]).IsOk);
        Assert.Equal(new[] { 8 }, Dirty(d.Vram.Track(FbGfn, 768)));
        d.Vram.SkipTlbFlush = false;
        flushes = d.Counters[PerfCounter.TlbFlushAll];
        Assert.Empty(Dirty(d.Vram.Track(FbGfn, 768)));
        Assert.Equal(flushes + 2, d.Counters[PerfCounter.TlbFlushAll]);      // ...and owed: the next query flushes
    }

    // ---- the D-bit design (seed 003): exact at its address; more in ShadowDirtyBitVramTests ----

    private static Domain DbitArmed(out Vcpu v)
    {
        var d = Build(PagingModeKind.Shadow, VramStrategy.DirtyBit);
        v = d.Vcpus[0];
        Assert.True(d.Vram.Track(FbGfn, 768).AllDirty);                     // arm
        return d;
    }

    [Fact]
    public void TheDbitDesignIsExactWithOneWritableMappingAtTheLearnedAddress()
    {
        var d = DbitArmed(out var v);
        long backoffs = d.Counters[PerfCounter.VramDbitBackoff], multi = d.Counters[PerfCounter.VramMultiMapDirty];
        for (int round = 0; round < 3; round++)
        {
            int[] pages = { round, 100 + round, 767 - round };
            foreach (int p in pages) Assert.True(v.WriteVirtual(MountVa + ((ulong)p << 12) + 17, new byte[] { (byte)(round + 1) }).IsOk);
            var r = d.Vram.Track(FbGfn, 768);
            Assert.False(r.AllDirty, r.Reason);
            Assert.Equal(pages, Dirty(r));
        }
        Assert.Empty(Dirty(d.Vram.Track(FbGfn, 768)));
        Assert.Equal(backoffs, d.Counters[PerfCounter.VramDbitBackoff]);     // never gave up
        Assert.Equal(multi, d.Counters[PerfCounter.VramMultiMapDirty]);      // never assumed
    }

    [Fact]
    public void TheDbitDesignAssumesDirtyOnlyThePagesMappedWritableTwice()
    {
        var d = DbitArmed(out var v);
        v.WriteVirtual(MountVa + 300 * 4096, new byte[] { 1 });              // the first write fault teaches MountVa
        d.Kernel.Map(0x80000000, FbGfn + 9, 2, MapFlags.Writable);          // pages 9 and 10 again
        foreach (ulong va in new ulong[] { 0x80000000, 0x80001000, MountVa + 9 * 4096, MountVa + 10 * 4096 })
            Assert.True(v.WriteVirtual(va + 64, new byte[] { 5 }).IsOk);     // both mappings of each now writable in the shadows
        var written = d.Vram.Track(FbGfn, 768);
        Assert.False(written.AllDirty, written.Reason);
        Assert.Equal(new[] { 9, 10, 300 }, Dirty(written));
        // Nothing written since, but 9 and 10 have two writable entries the design cannot both
        // read: assumed dirty, counted; the rest of the range stays exact.
        long multi = d.Counters[PerfCounter.VramMultiMapDirty];
        var quiet = d.Vram.Track(FbGfn, 768);
        Assert.False(quiet.AllDirty, quiet.Reason);                           // no reason to give up on the whole range
        Assert.Equal(new[] { 9, 10 }, Dirty(quiet));
        Assert.Equal(2, d.Counters[PerfCounter.VramMultiMapDirty] - multi);
        d.Kernel.Unmap(0x80000000, 2);                                       // back to one mapping each
        var after = d.Vram.Track(FbGfn, 768);
        Assert.False(after.AllDirty, after.Reason);
        Assert.Equal(new[] { 9, 10 }, Dirty(after));                          // the removed entries' last word...
        Assert.Empty(Dirty(d.Vram.Track(FbGfn, 768)));                        // ...then exact
        Assert.Equal(2, d.Counters[PerfCounter.VramMultiMapDirty] - multi);
        Assert.Equal(0, d.Counters[PerfCounter.VramDbitBackoff]);
    }

    [Fact]
    public void BoundsFollowTheCorrectedCheck()
    {
        var d = Build(PagingModeKind.Hap, VramStrategy.Auto);
        ulong max = d.MaxMappedPfn;
        Assert.Equal(FbGfn + 767, max);                                      // the framebuffer is the highest RAM
        var over = Assert.Throws<VramException>(() => d.Vram.Track(FbGfn, 769));   // end = max + 2
        Assert.Equal(VramErrno.EINVAL, over.Errno);
        d.Vram.Track(FbGfn, 768);                                            // end == max + 1 is allowed
        var wrap = Assert.Throws<VramException>(() => d.Vram.Track(ulong.MaxValue - 1, 4));
        Assert.Contains("end_pfn < begin_pfn", wrap.Message);
    }

    [Theory]
    [InlineData(PagingModeKind.Hap)]
    [InlineData(PagingModeKind.Shadow)]
    public void NrZeroStopsAllTrackingAndTheNextQueryStartsAgain(PagingModeKind mode)
    {
        // XenLab's one meaning of nr == 0, the same in every mode: stop all VRAM tracking.
        var d = Build(mode, VramStrategy.Auto);
        d.Vram.Track(FbGfn, 768);
        var replaced = d.Vram.Track(FbGfn, 384);                            // another size over a tracked range replaces it
        Assert.True(replaced.AllDirty);
        Assert.Equal(384UL, Assert.Single(d.Vram.Ranges).Pages);
        Assert.Equal(1, d.Counters[PerfCounter.VramRangeReplaced]);
        var stop = d.Vram.Track(FbGfn, 0);
        Assert.Equal(0UL, stop.Pages);
        Assert.Empty(d.Vram.Ranges);
        Assert.Equal(P2m.P2mType.RamRw, d.GetP2mType(FbGfn));                 // HAP: types restored
        Assert.True(d.Vram.Track(FbGfn, 384).AllDirty);                      // a new range starts all dirty
        ShadowModeTests.AssertAuditClean(d);
    }

    [Fact]
    public void WholeDomainLogDirtyMakesVramTrackingFailWithEnodata()
    {
        var d = Build(PagingModeKind.Hap, VramStrategy.Auto);
        d.LogDirty.Enable();
        var ex = Assert.Throws<VramException>(() => d.Vram.Track(FbGfn, 768));
        Assert.Equal(VramErrno.ENODATA, ex.Errno);
        Assert.Equal("VramENODATA", ex.ErrorId);
    }

    [Fact]
    public void DisablingLogDirtyUnderVramTrackingIsAnInconsistentStateEinval()
    {
        var d = Build(PagingModeKind.Hap, VramStrategy.Auto);
        d.Vram.Track(FbGfn, 768);
        d.LogDirty.Enable();
        d.LogDirty.Disable();
        var ex = Assert.Throws<VramException>(() => d.Vram.Track(FbGfn, 768));
        Assert.Equal(VramErrno.EINVAL, ex.Errno);
        Assert.Contains("machinery", ex.Message);
        d.Vram.Track(FbGfn, 0);                                              // nr == 0 resets
        Assert.True(d.Vram.Track(FbGfn, 768).AllDirty);
    }

    [Fact]
    public void DirtyPagesCountsEveryBitIncludingTheLastPartialWord()
    {
        // 8,100 pages: 1,013 bytes, 126 whole ulong words and a 5-byte tail.
        var bitmap = new byte[1013];
        foreach (int p in new[] { 0, 63, 64, 8063, 8064, 8099 }) bitmap[p >> 3] |= (byte)(1 << (p & 7));
        var r = new VramQueryResult(0xC0000, 8100, bitmap, false, "");
        Assert.Equal(6, r.DirtyPages);
        Assert.Equal(new[] { 0, 63, 64, 8063, 8064, 8099 }, r.DirtyPageIndexes());
    }

    [Fact]
    public void AnUntrackedRangeIsAllDirtyAndARangeSurvivesZeroMappings()
    {
        var d = Build(PagingModeKind.Shadow, VramStrategy.BackLinks);
        d.Vram.Track(FbGfn, 768);
        d.Kernel.Unmap(MountVa, 768);                                        // the guest unmaps the framebuffer entirely
        Assert.Single(d.Vram.Ranges);                                        // not freed at zero mappings
        var r = d.Vram.Track(FbGfn, 768);
        Assert.False(r.AllDirty);
        d.MountFramebuffer("mon0", MountVa);
        d.Vcpus[0].WriteVirtual(MountVa + 42 * 4096, new byte[] { 1 });
        Assert.Equal(new[] { 42 }, Dirty(d.Vram.Track(FbGfn, 768)));
    }
}
