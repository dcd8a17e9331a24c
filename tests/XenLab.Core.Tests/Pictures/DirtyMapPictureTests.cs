using XenLab.Config;
using XenLab.Domains;
using XenLab.Lab;
using XenLab.Pictures;

namespace XenLab.Tests.Pictures;

public class DirtyMapPictureTests
{
    private static byte[] Bits(ulong pfns, params ulong[] dirty)
    {
        var b = new byte[(pfns + 7) / 8];
        foreach (ulong p in dirty) b[p >> 3] |= (byte)(1 << (int)(p & 7));
        return b;
    }

    [Fact]
    public void EachDirtyPfnIsARedCellWhereTheLayoutSaysAndTheOthersAreClean()
    {
        const ulong pfns = 1000;
        var maps = new[] { ("a", Bits(pfns, 0, 257, 999)), ("b", Bits(pfns, 1)) };
        var layout = new DirtyMapLayout(pfns, 2);
        Assert.Equal(1UL, layout.PfnsPerCell);
        Assert.Equal(4, layout.Rows);                               // 1000 pfns, 256 a row
        using var files = new PictureFiles();
        var path = files.Path("dirty-synthetic.png");
        using (var bmp0 = DirtyMapPicture.Draw("t", pfns, maps)) XenLab.Pictures.PictureKit.Save(bmp0, path, "DirtyMap");
        using var bmp = PictureFiles.Decode(path);
        Assert.Equal((layout.Width, layout.Height), (bmp.Width, bmp.Height));
        foreach (ulong p in new ulong[] { 0, 257, 999 })
        {
            var c = layout.Cell(0, p);
            PictureFiles.AssertColor(PictureColors.Dirty, bmp, c.X, c.Y, $"panel a pfn {p}");
        }
        var at257 = layout.Cell(0, 257);
        Assert.Equal(layout.Cell(0, 1).X, at257.X);                 // 257 sits under 1: one row down
        PictureFiles.AssertColor(PictureColors.Clean, bmp, layout.Cell(0, 1).X, layout.Cell(0, 1).Y, "panel a pfn 1");
        PictureFiles.AssertColor(PictureColors.Dirty, bmp, layout.Cell(1, 1).X, layout.Cell(1, 1).Y, "panel b pfn 1");
        PictureFiles.AssertColor(PictureColors.Clean, bmp, layout.Cell(1, 0).X, layout.Cell(1, 0).Y, "panel b pfn 0");
    }

    [Fact]
    public void ALargeDomainFoldsSeveralPfnsIntoACell()
    {
        var layout = new DirtyMapLayout(1UL << 20, 1);                // 4 GiB of pfns
        Assert.Equal(16UL, layout.PfnsPerCell);
        Assert.Equal(256, layout.Rows);
        Assert.Equal(layout.Cell(0, 0), layout.Cell(0, 15));
        Assert.NotEqual(layout.Cell(0, 0), layout.Cell(0, 16));
    }

    [Fact]
    public void AMigrationGetsOnePanelPerRoundWithTheRoundsDirtyPagesInRed()
    {
        var host = new XenHost(2UL << 30);
        var c = TestDomains.Config("mig", 128);
        var d = host.CreateDomain(c);
        var r = LiveMigration.PreCopy(d, dirtyRatio: 0.02, workingSetPages: 2048);
        Assert.Equal(r.Rounds.Count, r.DirtyLogs.Count);
        for (int i = 0; i < r.Rounds.Count; i++) Assert.Equal(r.Rounds[i].DirtyAfter, r.DirtyLogs[i].DirtyPages);

        using var files = new PictureFiles();
        var view = DirtyMapPicture.Save(r, files.Path("dirty-migration.png"));
        using var bmp = PictureFiles.Decode(view.Path);
        var layout = new DirtyMapLayout(r.DirtyLogs[0].Pfns, r.Rounds.Count);
        Assert.Equal((layout.Width, layout.Height), (bmp.Width, bmp.Height));
        Assert.Equal(1UL, layout.PfnsPerCell);
        // Count red cells in each panel: exactly the pages the round left dirty.
        for (int i = 0; i < r.Rounds.Count; i++)
        {
            var p = layout.Panel(i);
            long red = 0;
            for (int y = p.Top; y < p.Bottom; y += layout.CellSize)
                for (int x = p.Left; x < p.Right; x += layout.CellSize)
                    if (bmp.GetPixel(x, y) == PictureColors.Dirty) red++;
            Assert.Equal(r.Rounds[i].DirtyAfter, red);
        }
    }
}
