using System.IO;
using System.Linq;
using XenLab.Cli;
using XenLab.Pictures;

namespace XenLab.Tests.Pictures;

public class CliPicturesTests
{
    [Fact]
    public void PicturesOptionWritesTheTreeAWalkPerModeAndTheMigrationsPictures()
    {
        using var files = new PictureFiles();
        string dir = files.Path("out");
        var w = new StringWriter();
        // The embedded default lab, smaller host so the test stays quick; a low dirty rate converges.
        Assert.Equal(0, LabRunner.Run(new LabOptions { PicturesDirectory = dir, MigrateRatio = 0.02 }, w));
        string[] expected = { "p2m-tree.png", "walk-hap.png", "walk-shadow.png", "walk-arm.png", "dirty-rounds.png", "precopy.png" };
        Assert.Equal(expected.OrderBy(x => x), Directory.GetFiles(dir).Select(Path.GetFileName).OrderBy(x => x));
        Assert.Contains("Pictures in " + dir, w.ToString());
        using (var hap = PictureFiles.Decode(Path.Combine(dir, "walk-hap.png")))
        {
            // After one access the nested-walk cache holds the 4 table gfns and the data gfn: the first cell is shaded.
            Assert.True(hap.Width > 700);
            var grey = hap.GetPixel(20 + 210 + 3, 64 + 26 + 50 - 3);
            Assert.Equal(PictureColors.Cached, grey);
        }
        using (var shadow = PictureFiles.Decode(Path.Combine(dir, "walk-shadow.png")))
            Assert.Equal(PictureColors.Shadow, shadow.GetPixel(20 + 210 + 3, 64 + 26 + 50 - 3));
    }

    [Fact]
    public void CompareModesAddsTheWalkReferenceAndRevalidationCharts()
    {
        using var files = new PictureFiles();
        string dir = files.Path("cmp");
        var w = new StringWriter();
        Assert.Equal(0, LabRunner.Run(new LabOptions { PicturesDirectory = dir, CompareModes = true, Rounds = 5 }, w));
        foreach (var chart in new[] { "walk-refs.png", "revalidations.png" })
        {
            using var bmp = PictureFiles.Decode(Path.Combine(dir, chart));
            Assert.Equal((1100, 500), (bmp.Width, bmp.Height));
        }
    }
}
