using SkiaSharp;
using XenLab.Pictures;

namespace XenLab.Tests.Pictures;

public class PictureKitTests
{
    [Fact]
    public void TheEmbeddedFontHasGlyphsWhateverTheMachineHas()
    {
        // Loaded from XenLab.Core's resources, not from the system's font manager.
        Assert.Equal(PictureKit.FontFamily, PictureKit.Typeface.FamilyName);
        Assert.True(PictureKit.Typeface.GlyphCount > 3000);
        Assert.NotEqual(0, PictureKit.Typeface.GetGlyph('0'));
        Assert.NotEqual(0, PictureKit.Typeface.GetGlyph('x'));
    }

    [Fact]
    public void TextLeavesInkWhereItIsDrawnAndNowhereElse()
    {
        using var bmp = PictureKit.NewBitmap(120, 40);
        using (var c = new SKCanvas(bmp)) PictureKit.Text(c, "0x93c00", 4, 4, 16, SKColors.Black);
        int inkLeft = 0, inkRight = 0;
        for (int y = 0; y < 40; y++)
            for (int x = 0; x < 120; x++)
            {
                if (bmp.GetPixel(x, y).Red > 128) continue;
                if (x < 90) inkLeft++; else inkRight++;
            }
        Assert.True(inkLeft > 50, $"only {inkLeft} dark pixels: the text did not draw");
        Assert.Equal(0, inkRight);     // "0x93c00" at 16 px is narrower than 86 px
    }

    [Fact]
    public void APathThatCannotBeWrittenIsAnInvalidConfiguration()
    {
        using var bmp = PictureKit.NewBitmap(4, 4);
        var e = Assert.Throws<InvalidConfigurationException>(() => PictureKit.Save(bmp, "/nonexistent-folder/x.png", "Test"));
        Assert.Contains("/nonexistent-folder/x.png", e.Message);
    }
}
