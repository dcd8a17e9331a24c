using System;
using System.Collections.Generic;
using XenLab.Config;
using SkiaSharp;
using XenLab.Display;
using XenLab.Pictures;

namespace XenLab.Tests.Display;

public class FramebufferImageTests
{
    private const byte Pad = 0xEE;

    /// <summary>The RGB triple of pixel (x, y).</summary>
    private static (byte, byte, byte) At(byte[] rgb, int width, int x, int y)
    {
        int i = (y * width + x) * 3;
        return (rgb[i], rgb[i + 1], rgb[i + 2]);
    }

    [Fact]
    public void ThirtyTwoBppIsBgrx()
    {
        var fb = new FramebufferConfig("fb0", 0, 2, 1, 32);
        byte[] pixels = { 0x10, 0x20, 0x30, 0xFF, 0x00, 0x00, 0xFF, 0x00 };
        byte[] rgb = FramebufferImage.ToRgb(fb, pixels);
        Assert.Equal(new byte[] { 0x30, 0x20, 0x10, 0xFF, 0x00, 0x00 }, rgb);  // X byte dropped; second pixel pure red
    }

    [Fact]
    public void TwentyFourBppIsBgr()
    {
        var fb = new FramebufferConfig("fb0", 0, 2, 1, 24);
        byte[] pixels = { 0x01, 0x02, 0x03, 0xFF, 0x00, 0x80 };
        Assert.Equal(new byte[] { 0x03, 0x02, 0x01, 0x80, 0x00, 0xFF }, FramebufferImage.ToRgb(fb, pixels));
    }

    [Fact]
    public void SixteenBppIsRgb565WithHighBitsReplicated()
    {
        var fb = new FramebufferConfig("fb0", 0, 5, 1, 16);
        byte[] pixels =
        {
            0x00, 0xF8,  // 0xF800: red 31 -> 255
            0xE0, 0x07,  // 0x07E0: green 63 -> 255
            0x1F, 0x00,  // 0x001F: blue 31 -> 255
            0x10, 0x84,  // 0x8410: r 16 -> 128|4 = 132, g 32 -> 128|2 = 130, b 16 -> 132
            0x00, 0x00,  // black
        };
        byte[] rgb = FramebufferImage.ToRgb(fb, pixels);
        Assert.Equal(new byte[] { 255, 0, 0, 0, 255, 0, 0, 0, 255, 132, 130, 132, 0, 0, 0 }, rgb);
    }

    [Fact]
    public void EightBppIsGrayscale()
    {
        var fb = new FramebufferConfig("fb0", 0, 3, 1, 8);
        Assert.Equal(new byte[] { 0, 0, 0, 0x7F, 0x7F, 0x7F, 255, 255, 255 }, FramebufferImage.ToRgb(fb, new byte[] { 0, 0x7F, 255 }));
    }

    [Theory]
    [InlineData(32, 12)]
    [InlineData(24, 8)]
    [InlineData(16, 7)]
    [InlineData(8, 4)]
    public void TheStrideIsHonouredAndPaddingIgnored(int bpp, int stride)
    {
        // 2x2; row 1 starts at byte `stride`; padding bytes are Pad and must not show.
        int bytes = bpp / 8;
        var fb = new FramebufferConfig("fb0", 0, 2, 2, bpp, stride);
        var pixels = new byte[stride * 2];
        Array.Fill(pixels, Pad);
        for (int y = 0; y < 2; y++)
            pixels.AsSpan(y * stride, 2 * bytes).Clear();
        pixels[stride + bytes] = 0xFF;  // low byte of pixel (1, 1)

        byte[] rgb = FramebufferImage.ToRgb(fb, pixels);
        Assert.Equal(12, rgb.Length);
        Assert.Equal((0, 0, 0), At(rgb, 2, 0, 0));  // padding after row 0 not read as pixel (0, 1)
        Assert.Equal((0, 0, 0), At(rgb, 2, 1, 0));
        Assert.Equal((0, 0, 0), At(rgb, 2, 0, 1));
        var expected = bpp switch
        {
            32 or 24 => ((byte)0, (byte)0, (byte)0xFF),  // the low byte is blue
            16 => ((byte)0, (byte)0x1C, (byte)0xFF),     // 0x00FF: g = 7 -> 28, b = 31 -> 255
            _ => ((byte)0xFF, (byte)0xFF, (byte)0xFF),
        };
        Assert.Equal(expected, At(rgb, 2, 1, 1));
    }

    [Fact]
    public void TooFewBytesAreRefused()
    {
        var fb = new FramebufferConfig("fb0", 0, 2, 2, 32, 12);
        FramebufferImage.ToRgb(fb, new byte[20]);  // the last row needs no padding after it: 12 + 8
        Assert.Throws<ArgumentException>(() => FramebufferImage.ToRgb(fb, new byte[19]));
    }

    /// <summary>Outlines on a black width x height image; returns which pixels turned colour.</summary>
    private static bool[,] Painted(int width, int height, params PixelRect[] rects)
    {
        // A black framebuffer drawn by FramebufferPicture with the rectangles outlined in (255, 0, 128).
        using var bmp = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        bmp.Erase(SKColors.Black);
        using (var canvas = new SKCanvas(bmp)) FramebufferPicture.Outline(canvas, rects, new SKColor(255, 0, 128));
        var painted = new bool[height, width];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                var c = bmp.GetPixel(x, y);
                var px = (c.Red, c.Green, c.Blue);
                Assert.True(px == (0, 0, 0) || px == (255, 0, 128));  // only the outline colour is ever written
                painted[y, x] = px == (255, 0, 128);
            }
        return painted;
    }

    private static bool[,] Mask(params string[] rows)
    {
        var m = new bool[rows.Length, rows[0].Length];
        for (int y = 0; y < rows.Length; y++)
            for (int x = 0; x < rows[y].Length; x++)
                m[y, x] = rows[y][x] == '#';
        return m;
    }

    [Fact]
    public void OutlinePaintsTheEdgeAndNotTheInside()
    {
        Assert.Equal(Mask(
            "......",
            ".####.",
            ".#..#.",
            ".####.",
            "......"), Painted(6, 5, new PixelRect(1, 1, 4, 3)));
    }

    [Fact]
    public void OutlinesOfThinAndSeveralRectangles()
    {
        Assert.Equal(Mask(
            "##....",
            "......",
            "...#..",
            "...#..",
            "......"), Painted(6, 5, new PixelRect(0, 0, 2, 1), new PixelRect(3, 2, 1, 2)));
    }

    [Fact]
    public void OutlineIsClippedToTheImage()
    {
        // (-2, -2, 4, 4) covers x, y in -2..1: only its right column x = 1 and bottom row y = 1 are on screen.
        // (4, 3, 5, 5) covers 4..8, 3..7: only its left column x = 4 and top row y = 3.
        // (10, 10, 2, 2) is off screen altogether.
        Assert.Equal(Mask(
            ".#....",
            "##....",
            "......",
            "....##",
            "....#."), Painted(6, 5, new PixelRect(-2, -2, 4, 4), new PixelRect(4, 3, 5, 5), new PixelRect(10, 10, 2, 2)));
    }

    [Fact]
    public void OutlineOfAFullScreenRectangleIsTheImageBorder()
    {
        Assert.Equal(Mask(
            "####",
            "#..#",
            "####"), Painted(4, 3, new PixelRect(0, 0, 4, 3)));
    }
}
