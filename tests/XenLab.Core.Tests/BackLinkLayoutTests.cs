using System.Collections.Generic;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Dirty;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Paging.Modes;

namespace XenLab.Tests;

/// <summary>
/// The back-link query reads 64 pages mapped in order as one block of shadow entries (a run),
/// and every other page link by link. Whatever the layout and however the links change, the
/// answer is the set of pages written since the last query, and the audit checks every link,
/// bit and run against the shadows.
/// </summary>
public class BackLinkLayoutTests
{
    private const ulong FbGfn = 0xF0000;
    private const ulong MountVa = 0x40000000;
    private const ulong Pages = 768;

    private static Domain Build()
    {
        var host = new XenHost(4UL << 30);
        var c = TestDomains.Config("layout", 64, vcpus: 1);
        c.Paging = PagingModeKind.Shadow;
        c.ShadowMemoryMiB = 8;
        c.Framebuffers.Add(new FramebufferConfig("mon0", 0xF0000000, 1024, 768, 32));
        var d = host.CreateDomain(c);
        d.Vram.Strategy = VramStrategy.BackLinks;
        return d;
    }

    private static List<int> Query(Domain d)
    {
        var r = d.Vram.Track(FbGfn, Pages);
        Assert.False(r.AllDirty, r.Reason);
        ShadowModeTests.AssertAuditClean(d);
        return r.DirtyPageIndexes();
    }

    private static void Write(Domain d, ulong va) => Assert.True(d.Vcpus[0].WriteVirtual(va, new byte[] { 0x5a }).IsOk);

    [Fact]
    public void PagesMappedInOrderStayExactAsTheirLinksChange()
    {
        var d = Build();
        d.MountFramebuffer("mon0", MountVa);
        for (ulong p = 0; p < Pages; p++) Write(d, MountVa + (p << 12));    // every page linked once, in order
        Assert.True(d.Vram.Track(FbGfn, Pages).AllDirty);
        Assert.Empty(Query(d));                                              // the query that finds the runs
        Write(d, MountVa + 3 * 4096);
        Write(d, MountVa + 64 * 4096);
        Write(d, MountVa + 767 * 4096);                                      // the last, partial, 64 pages
        Assert.Equal(new[] { 3, 64, 767 }, Query(d));
        Assert.Empty(Query(d));

        // A second writable mapping of page 70 breaks its run (two links): both are read.
        d.Kernel.Map(0x80000000, FbGfn + 70, 1, MapFlags.Writable);
        Write(d, 0x80000000);
        Assert.Equal(new[] { 70 }, Query(d));
        Write(d, MountVa + 70 * 4096);
        Write(d, MountVa + 71 * 4096);
        Assert.Equal(new[] { 70, 71 }, Query(d));

        // Page 5's mapping goes away after a write: its dirtiness is kept, and its run is gone.
        Write(d, MountVa + 5 * 4096);
        d.Kernel.Unmap(MountVa + 5 * 4096, 1);
        d.Vcpus[0].InvalidatePage(MountVa + 5 * 4096);
        Assert.Equal(new[] { 5 }, Query(d));
        Write(d, MountVa + 6 * 4096);
        Assert.Equal(new[] { 6 }, Query(d));

        // Mapped back: linked again, and the 64 pages form a run again.
        d.Kernel.Map(MountVa + 5 * 4096, FbGfn + 5, 1, MapFlags.Writable);
        Write(d, MountVa + 5 * 4096);
        Assert.Equal(new[] { 5 }, Query(d));
        Assert.Empty(Query(d));
        Write(d, MountVa + 5 * 4096);
        Write(d, MountVa + 63 * 4096);
        Assert.Equal(new[] { 5, 63 }, Query(d));
        Assert.Equal(0, d.Counters[PerfCounter.VramLinkExhausted]);
    }

    [Fact]
    public void PagesMappedOutOfOrderAreReadOneByOne()
    {
        // The framebuffer mapped backwards (page p at slot 767 - p): no 64 pages are consecutive
        // entries of one shadow, so no run; the answer must not care.
        var d = Build();
        for (ulong p = 0; p < Pages; p++) d.Kernel.Map(MountVa + ((Pages - 1 - p) << 12), FbGfn + p, 1, MapFlags.Writable);
        for (ulong p = 0; p < Pages; p++) Write(d, MountVa + (p << 12));
        Assert.True(d.Vram.Track(FbGfn, Pages).AllDirty);
        Assert.Empty(Query(d));
        foreach (ulong p in new ulong[] { 0, 1, 100, 640, 767 }) Write(d, MountVa + ((Pages - 1 - p) << 12));
        Assert.Equal(new[] { 0, 1, 100, 640, 767 }, Query(d));
        Assert.Empty(Query(d));
        var peek = d.Vram.Track(FbGfn, Pages, peek: true);
        Assert.Empty(peek.DirtyPageIndexes());
        Write(d, MountVa + ((Pages - 1 - 9) << 12));
        Assert.Equal(new[] { 9 }, d.Vram.Track(FbGfn, Pages, peek: true).DirtyPageIndexes());   // a peek leaves it
        Assert.Equal(new[] { 9 }, Query(d));
        Assert.Empty(Query(d));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(70)]
    [InlineData(8100)]
    public void DirtyPagesCountsEveryReportedPageWhateverTheLength(int pages)
    {
        // The count reads the bitmap eight bytes at a time, then the tail: every third page set,
        // and the last, must come to what the page list says.
        var bitmap = new byte[(pages + 7) / 8];
        int expected = 0;
        for (int i = 0; i < pages; i++)
            if (i % 3 == 0 || i == pages - 1) { bitmap[i >> 3] |= (byte)(1 << (i & 7)); expected++; }
        var r = new VramQueryResult(0, (ulong)pages, bitmap, false, "");
        Assert.Equal(expected, r.DirtyPages);
        Assert.Equal(expected, r.DirtyPageIndexes().Count);
    }
}
