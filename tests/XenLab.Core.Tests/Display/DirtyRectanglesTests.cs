using System;
using System.Collections.Generic;
using XenLab.Config;
using XenLab.Display;

namespace XenLab.Tests.Display;

public class DirtyRectanglesTests
{
    /// <summary>A bitmap for <paramref name="pages"/> pages with the given pages dirty.</summary>
    private static byte[] Bitmap(ulong pages, params int[] dirty)
    {
        var bits = new byte[(pages + 7) / 8];
        foreach (int p in dirty) bits[p >> 3] |= (byte)(1 << (p & 7));
        return bits;
    }

    private static List<PixelRect> Rects(params PixelRect[] rects) => new(rects);

    [Fact]
    public void OnePagePerRowMergesConsecutiveRows()
    {
        // 1024 * 4 = 4096 bytes a row: page i is exactly row i.
        var fb = new FramebufferConfig("fb0", 0xF0000000, 1024, 768, 32);
        Assert.Equal(768UL, fb.Pages);
        var rects = DirtyRectangles.FromPages(fb, Bitmap(fb.Pages, 3, 4, 5, 10));
        // Rows 3..5 full width as one rectangle, row 10 on its own.
        Assert.Equal(Rects(new PixelRect(0, 3, 1024, 3), new(0, 10, 1024, 1)), rects);
    }

    [Fact]
    public void NoDirtyPagesNoRectangles()
    {
        var fb = new FramebufferConfig("fb0", 0, 1024, 768, 32);
        Assert.Empty(DirtyRectangles.FromPages(fb, Bitmap(fb.Pages)));
    }

    [Fact]
    public void FullHdPageZeroIsTheLeftOfRowZero()
    {
        // Stride 7680. Page 0 = bytes [0, 4096) = row 0 bytes [0, 4096) = pixels [0, 1024).
        var fb = new FramebufferConfig("fb0", 0, 1920, 1080, 32);
        Assert.Equal(2025UL, fb.Pages);  // 7680 * 1080 / 4096
        Assert.Equal(Rects(new PixelRect(0, 0, 1024, 1)), DirtyRectangles.FromPages(fb, Bitmap(fb.Pages, 0)));
    }

    [Fact]
    public void FullHdPageOneStraddlesTwoRows()
    {
        // Page 1 = bytes [4096, 8192).
        // Row 0 = bytes [0, 7680): its part is [4096, 7680) -> pixels [1024, 1920), width 896.
        // Row 1 = bytes [7680, 15360): its part is [0, 512) of the row -> pixels [0, 128).
        var fb = new FramebufferConfig("fb0", 0, 1920, 1080, 32);
        Assert.Equal(Rects(new PixelRect(1024, 0, 896, 1), new(0, 1, 128, 1)), DirtyRectangles.FromPages(fb, Bitmap(fb.Pages, 1)));
    }

    [Fact]
    public void FullHdPagesZeroAndOneMergeRowZero()
    {
        // Bytes [0, 8192): row 0 whole ([0, 1920)), row 1 pixels [0, 128). Different extents: two rectangles.
        var fb = new FramebufferConfig("fb0", 0, 1920, 1080, 32);
        Assert.Equal(Rects(new PixelRect(0, 0, 1920, 1), new(0, 1, 128, 1)), DirtyRectangles.FromPages(fb, Bitmap(fb.Pages, 0, 1)));
    }

    [Fact]
    public void Uhd4kAllDirtyIsOneRectangle()
    {
        // 3840 * 4 = 15360 bytes a row, 2160 rows: 33177600 bytes = 8100 pages exactly.
        var fb = new FramebufferConfig("fb0", 0, 3840, 2160, 32);
        Assert.Equal(8100UL, fb.Pages);
        var bits = new byte[(8100 + 7) / 8];
        Array.Fill(bits, (byte)0xFF);
        bits[^1] = 0x0F;  // 8100 = 1012 * 8 + 4
        Assert.Equal(8100, DirtyRectangles.CountDirty(bits, 8100));
        Assert.Equal(Rects(new PixelRect(0, 0, 3840, 2160)), DirtyRectangles.FromPages(fb, bits));
    }

    [Fact]
    public void ARowEndingJustPastAPageKeepsItsLastPixelClean()
    {
        // 1025 px * 4 = 4100 bytes a row, 2 rows = 8200 bytes = 3 pages. Pixel (1024, 0) is bytes [4096, 4100): page 1.
        var fb = new FramebufferConfig("fb0", 0, 1025, 2, 32);
        Assert.Equal(3UL, fb.Pages);
        // Page 0 = [0, 4096): row 0 pixels [0, 1024), its last pixel not included.
        Assert.Equal(Rects(new PixelRect(0, 0, 1024, 1)), DirtyRectangles.FromPages(fb, Bitmap(3, 0)));
        // Page 1 = [4096, 8192): row 0 pixel 1024; row 1 = [4100, 8200) gets [0, 4092) -> pixels [0, 1023).
        Assert.Equal(Rects(new PixelRect(1024, 0, 1, 1), new(0, 1, 1023, 1)), DirtyRectangles.FromPages(fb, Bitmap(3, 1)));
        // Page 2 = [8192, 8200): row 1 bytes [4092, 4100) -> pixels [1023, 1025).
        Assert.Equal(Rects(new PixelRect(1023, 1, 2, 1)), DirtyRectangles.FromPages(fb, Bitmap(3, 2)));
    }

    [Fact]
    public void SeveralSpansPerRowEachMergeDownwards()
    {
        // 4096 px * 4 = 16384 bytes a row = 4 pages, so page 4r + k is row r, pixels [1024k, 1024k + 1024).
        var fb = new FramebufferConfig("fb0", 0, 4096, 6, 32);
        // Row 0: k 0, 2. Row 1: k 0, 2. Row 2: k 2 only. Row 3: k 1. Row 5: k 0..3 (row 4 clean).
        var rects = DirtyRectangles.FromPages(fb, Bitmap(fb.Pages, 0, 2, 4, 6, 10, 13, 20, 21, 22, 23));
        Assert.Equal(Rects(
            new(0, 0, 1024, 2),      // k 0, rows 0-1; row 2 lacks it, so it ends
            new(2048, 0, 1024, 3),   // k 2, rows 0-2
            new(1024, 3, 1024, 1),   // k 1, row 3
            new(0, 5, 4096, 1)),     // pages 20..23: one span after merging within the row
            rects);
    }

    [Fact]
    public void SameExtentAfterAGapIsANewRectangle()
    {
        var fb = new FramebufferConfig("fb0", 0, 1024, 8, 32);
        // Rows 1 and 3 have the same extent but row 2 is clean between them.
        Assert.Equal(Rects(new PixelRect(0, 1, 1024, 1), new(0, 3, 1024, 1)), DirtyRectangles.FromPages(fb, Bitmap(fb.Pages, 1, 3)));
    }

    [Fact]
    public void SixteenBppRowsAndAPartialRow()
    {
        // 1000 px * 2 = 2000 bytes a row, 10 rows = 20000 bytes = 5 pages.
        var fb = new FramebufferConfig("fb0", 0, 1000, 10, 16);
        Assert.Equal(5UL, fb.Pages);
        // Page 0 = [0, 4096): rows 0, 1 whole; row 2 = [4000, 6000) gets [0, 96) -> pixels [0, 48).
        Assert.Equal(Rects(new PixelRect(0, 0, 1000, 2), new(0, 2, 48, 1)), DirtyRectangles.FromPages(fb, Bitmap(5, 0)));
        // Page 1 = [4096, 8192): row 2 from byte 96 -> pixels [48, 1000); row 3 = [6000, 8000) whole;
        // row 4 = [8000, 10000) gets [0, 192) -> pixels [0, 96).
        Assert.Equal(Rects(new PixelRect(48, 2, 952, 1), new(0, 3, 1000, 1), new(0, 4, 96, 1)), DirtyRectangles.FromPages(fb, Bitmap(5, 1)));
        // Pages 0 and 1 = [0, 8192): rows 0..3 whole, row 4 pixels [0, 96).
        Assert.Equal(Rects(new PixelRect(0, 0, 1000, 4), new(0, 4, 96, 1)), DirtyRectangles.FromPages(fb, Bitmap(5, 0, 1)));
    }

    [Fact]
    public void TwentyFourBppPixelPartlyInAPageCounts()
    {
        // 2000 px * 3 = 6000 bytes a row. Pixel 1365 is bytes [4095, 4098): in both page 0 and page 1.
        var fb = new FramebufferConfig("fb0", 0, 2000, 4, 24);
        // Page 0: row 0 bytes [0, 4096) -> pixels [0, ceil(4096 / 3) = 1366).
        Assert.Equal(Rects(new PixelRect(0, 0, 1366, 1)), DirtyRectangles.FromPages(fb, Bitmap(fb.Pages, 0)));
        // Page 1 = [4096, 8192): row 0 bytes [4096, 6000) -> pixels [1365, 2000);
        // row 1 = [6000, 12000) gets [0, 2192) -> pixels [0, ceil(2192 / 3) = 731).
        Assert.Equal(Rects(new PixelRect(1365, 0, 635, 1), new(0, 1, 731, 1)), DirtyRectangles.FromPages(fb, Bitmap(fb.Pages, 1)));
    }

    [Fact]
    public void StridePaddingProducesNoPixels()
    {
        // Width 100 at 32 bpp = 400 bytes of pixels, stride 512: bytes [400, 512) of each row are padding.
        // 8 rows a page; 64 rows = 32768 bytes = 8 pages.
        var fb = new FramebufferConfig("fb0", 0, 100, 64, 32, Stride: 512);
        Assert.Equal(8UL, fb.Pages);
        // Page 0 = rows 0..7; each row's dirty bytes [0, 512) clip to [0, 400) = pixels [0, 100), not 128.
        Assert.Equal(Rects(new PixelRect(0, 0, 100, 8)), DirtyRectangles.FromPages(fb, Bitmap(8, 0)));
        Assert.Equal(Rects(new PixelRect(0, 8, 100, 16)), DirtyRectangles.FromPages(fb, Bitmap(8, 1, 2)));
    }

    [Fact]
    public void APageOfOnlyPaddingProducesNothing()
    {
        // Stride 12288 = 3 pages a row; only the first 400 bytes of each row are pixels,
        // so pages 3r + 1 and 3r + 2 are all padding.
        var fb = new FramebufferConfig("fb0", 0, 100, 4, 32, Stride: 12288);
        Assert.Equal(12UL, fb.Pages);
        Assert.Empty(DirtyRectangles.FromPages(fb, Bitmap(12, 1, 2, 4, 5)));
        // Page 3 is row 1's pixels; the padding pages around it add nothing.
        Assert.Equal(Rects(new PixelRect(0, 1, 100, 1)), DirtyRectangles.FromPages(fb, Bitmap(12, 1, 2, 3, 4, 5)));
    }

    [Fact]
    public void BytesPastTheLastRowAndBitsPastTheLastPageAreIgnored()
    {
        // 100 x 10 x 32, stride 400: 4000 bytes, one page; bytes [4000, 4096) would be row 10.
        var fb = new FramebufferConfig("fb0", 0, 100, 10, 32);
        Assert.Equal(1UL, fb.Pages);
        // Bits 1..7 (pages the framebuffer does not have) set too.
        Assert.Equal(Rects(new PixelRect(0, 0, 100, 10)), DirtyRectangles.FromPages(fb, new byte[] { 0xFF }));
        Assert.Empty(DirtyRectangles.FromPages(fb, new byte[] { 0xFE, 0xFF }));
    }

    [Fact]
    public void ABitmapShorterThanTheFramebufferIsRefused()
    {
        var fb = new FramebufferConfig("fb0", 0, 1024, 768, 32);
        Assert.Throws<ArgumentException>(() => DirtyRectangles.FromPages(fb, new byte[95]));  // 768 pages need 96 bytes
    }

    [Fact]
    public void RunsAcrossSixtyFourBitWordsAreFound()
    {
        // One page a row; a run 60..70 crosses the first word boundary, 127..128 the second.
        var fb = new FramebufferConfig("fb0", 0, 1024, 200, 32);
        var rects = DirtyRectangles.FromPages(fb, Bitmap(fb.Pages, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 127, 128, 199));
        Assert.Equal(Rects(new PixelRect(0, 60, 1024, 11), new(0, 127, 1024, 2), new(0, 199, 1024, 1)), rects);
    }

    [Fact]
    public void CountDirtyCountsOnlyTheFirstPagesBits()
    {
        var bits = Bitmap(136, 0, 63, 64, 100, 129, 130, 135);
        Assert.Equal(5, DirtyRectangles.CountDirty(bits, 130));   // 130 and 135 are past the first 130
        Assert.Equal(7, DirtyRectangles.CountDirty(bits, 136));
        Assert.Equal(1, DirtyRectangles.CountDirty(bits, 1));
        Assert.Equal(0, DirtyRectangles.CountDirty(bits, 0));
        Assert.Equal(3, DirtyRectangles.CountDirty(bits, 65));    // 0, 63, 64: the whole first word plus one bit
        Assert.Throws<ArgumentOutOfRangeException>(() => DirtyRectangles.CountDirty(bits, 137));
    }

    public static TheoryData<int, int, int, int, int> Geometries => new()
    {
        // seed, width, height, bpp, stride
        { 1, 1920, 1080, 32, 0 },
        { 2, 1366, 768, 24, 0 },
        { 3, 800, 600, 16, 0 },
        { 4, 1280, 1024, 8, 0 },
        { 5, 100, 300, 32, 512 },
        { 6, 3000, 40, 24, 12288 },
        { 7, 640, 480, 16, 1344 },
        { 8, 1025, 50, 32, 0 },      // rows end 4 bytes after a page does
        { 9, 1365, 60, 24, 4097 },   // rows end 1 byte after a page does, one byte of padding
    };

    [Theory]
    [MemberData(nameof(Geometries))]
    public void MatchesAPixelByPixelReference(int seed, int width, int height, int bpp, int stride)
    {
        var fb = new FramebufferConfig("fb0", 0, width, height, bpp, stride);
        var random = new Random(seed);
        var bits = new byte[(fb.Pages + 7) / 8];
        // Half the runs: clumps of pages so rows merge; the rest scattered.
        for (ulong p = 0; p < fb.Pages; p++)
            if (random.Next(4) == 0)
                for (ulong q = p; q < Math.Min(fb.Pages, p + (ulong)random.Next(1, 6)); q++)
                    bits[q >> 3] |= (byte)(1 << (int)(q & 7));

        Assert.Equal(Reference(fb, bits), DirtyRectangles.FromPages(fb, bits));
    }

    /// <summary>
    /// The same rules done the slow way: a pixel is dirty if any of its bytes is in a dirty page;
    /// spans are maximal runs of dirty pixels in a row; a span extends the rectangle ending on the
    /// row above with the same extent. Sorted by Y then X.
    /// </summary>
    private static List<PixelRect> Reference(FramebufferConfig fb, byte[] bits)
    {
        int bpp = fb.Bpp / 8;
        bool PageDirty(long page) => page < (long)fb.Pages && (bits[page >> 3] & (1 << (int)(page & 7))) != 0;
        var rects = new List<PixelRect>();
        var open = new Dictionary<(int, int), int>();  // extent -> index of the rectangle ending on the row above
        for (int y = 0; y < fb.Height; y++)
        {
            var next = new Dictionary<(int, int), int>();
            int x = 0;
            while (x < fb.Width)
            {
                bool Dirty(int px)
                {
                    long b = (long)y * fb.EffectiveStride + (long)px * bpp;
                    for (int i = 0; i < bpp; i++)
                        if (PageDirty((b + i) >> 12)) return true;
                    return false;
                }
                if (!Dirty(x)) { x++; continue; }
                int x0 = x;
                while (x < fb.Width && Dirty(x)) x++;
                if (open.TryGetValue((x0, x), out int index))
                {
                    rects[index] = rects[index] with { Height = rects[index].Height + 1 };
                    next[(x0, x)] = index;
                }
                else
                {
                    next[(x0, x)] = rects.Count;
                    rects.Add(new PixelRect(x0, y, x - x0, 1));
                }
            }
            open = next;
        }
        return rects;
    }
}
