using System.Linq;
using XenLab.P2m;
using XenLab.Pictures;

namespace XenLab.Tests.Pictures;

public class P2mTreePictureTests
{
    // Lab 00's domain: 1 GiB populated, E820 RAM to 2364 MiB (pfn 0x93c00), not RAM from there to
    // 4 GiB, the legacy hole 0xa0-0xff identity inside the first leaf.
    private static P2mTreeDiagram Lab00(IdentityStrategy strategy, out P2mTree tree)
    {
        var (_, d) = TestDomains.Create(memoryMiB: 1024, maxMemMiB: 2364, strategy: strategy);
        tree = d.P2m;
        return P2mTreePicture.Layout(tree, "lab 00");
    }

    [Fact]
    public void EachSharedPageIsDrawnOnceAndEveryTopEntryPointsSomewhere()
    {
        var diagram = Lab00(IdentityStrategy.EdgesFirst, out _);
        foreach (var shared in new[] { P2mTreePicture.MidMissing, P2mTreePicture.LeafMissing })
            Assert.Single(diagram.Boxes, b => b.Name == shared);
        var top = diagram.Box("top");
        // The 512 top entries are covered by the rows exactly once, in order.
        Assert.Equal(0, top.Rows[0].First);
        Assert.Equal(P2mTree.EntriesPerPage - 1, top.Rows[^1].Last);
        for (int i = 1; i < top.Rows.Count; i++) Assert.Equal(top.Rows[i - 1].Last + 1, top.Rows[i].First);
        // Top entries 0..3 cover 0-4 GiB: the domain's RAM and holes; from 4 the shared missing mid page.
        var tail = top.Rows[^1];
        Assert.Equal(P2mTreePicture.MidMissing, tail.Target);
        Assert.Equal(4, tail.First);
    }

    [Fact]
    public void TheThirdGibIsHoleOnlyAndPointsAtTheSharedIdentityMidPage()
    {
        // 3-4 GiB is wholly not RAM (the PCI hole and the gap). Coarse (the posted patch): top[3] ->
        // p2m_mid_identity. Edges-first (2.6.39): no p2m_mid_identity; set_phys_range_identity
        // allocates a mid page for the GiB and points its 512 entries at the shared p2m_identity leaf.
        var coarse = Lab00(IdentityStrategy.Coarse, out var coarseTree);
        Assert.Equal(P2mPageKind.SharedIdentity, coarseTree.Lookup(3 * P2mTree.PfnsPerMid).MidPage);   // the tree says so too
        var row = coarse.Box("top").Rows.Single(r => r.First <= 3 && r.Last >= 3);
        Assert.Equal(P2mTreePicture.MidIdentity, row.Target);
        Assert.Single(coarse.Boxes, b => b.Name == P2mTreePicture.MidIdentity);
        Assert.Single(coarse.Boxes, b => b.Name == P2mTreePicture.LeafIdentity);

        var edges = Lab00(IdentityStrategy.EdgesFirst, out var edgesTree);
        var look = edgesTree.Lookup(3 * P2mTree.PfnsPerMid);
        Assert.Equal(P2mPageKind.Allocated, look.MidPage);
        Assert.Equal(P2mPageKind.SharedIdentity, look.LeafPage);
        Assert.DoesNotContain(edges.Boxes, b => b.Name == P2mTreePicture.MidIdentity);
        Assert.Single(edges.Boxes, b => b.Name == P2mTreePicture.LeafIdentity);
    }

    [Fact]
    public void TheFirstLeafMixesRamAndTheLegacyHole()
    {
        var diagram = Lab00(IdentityStrategy.EdgesFirst, out _);
        var mid0 = diagram.Box("mid0");
        var firstLeaf = diagram.Box(mid0.Rows[0].Target);
        Assert.Equal(0, mid0.Rows[0].First);
        Assert.Equal(0, mid0.Rows[0].Last);                       // leaf 0 alone: pfn 0-0x1ff holds RAM and 0xa0-0xff identity
        Assert.Equal("leaf page: RAM + identity", firstLeaf.Title);
        Assert.Equal(PictureColors.Mixed, firstLeaf.Fill);
    }

    [Fact]
    public void PictureHasTheLayoutSizeAndTheBoxColoursWhereTheBoxesAre()
    {
        var (_, d) = TestDomains.Create(memoryMiB: 1024, maxMemMiB: 2364, strategy: IdentityStrategy.Coarse);
        var diagram = P2mTreePicture.Layout(d.P2m, "coarse");
        using var files = new PictureFiles();
        var view = P2mTreePicture.Save(d.P2m, "coarse", files.Path("p2m-coarse.png"));
        using var bmp = PictureFiles.Decode(view.Path);
        Assert.Equal((diagram.Width, diagram.Height), (bmp.Width, bmp.Height));
        Assert.Equal((diagram.Width, diagram.Height), (view.Width, view.Height));
        // Inside each box, below its text, right of its border: the fill colour.
        foreach (var name in new[] { P2mTreePicture.LeafIdentity, P2mTreePicture.LeafMissing, P2mTreePicture.MidMissing, "top" })
        {
            var box = diagram.Box(name);
            PictureFiles.AssertColor(box.Fill, bmp, box.Rect.Right - 3, box.Rect.Top + 2, name);
            PictureFiles.AssertColor(PictureColors.Ink, bmp, box.Rect.Left, box.Rect.MidY, name + " border");
        }
        PictureFiles.AssertColor(PictureColors.Identity, bmp, diagram.Box(P2mTreePicture.LeafIdentity).Rect.MidX, diagram.Box(P2mTreePicture.LeafIdentity).Rect.Bottom - 3, "identity page");
        PictureFiles.AssertColor(PictureColors.Background, bmp, 2, 2, "margin");
    }
}
