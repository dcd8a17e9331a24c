// A guest framebuffer as a picture, its dirty rectangles outlined: what Export-XenFramebuffer
// -HighlightDirty and the workload runners' PNG directories show. The pixel formats are
// converted by FramebufferImage.ToRgb; SkiaSharp draws the outlines and encodes the PNG.
using System;
using System.Collections.Generic;
using SkiaSharp;
using XenLab.Config;
using XenLab.Display;

namespace XenLab.Pictures;

public static class FramebufferPicture
{
    /// <summary>Outline colour of dirty rectangles.</summary>
    public static readonly SKColor OutlineColor = new(255, 0, 0);

    /// <summary>The framebuffer's pixels as a bitmap, one pixel per guest pixel, rectangles outlined when given.</summary>
    public static SKBitmap Draw(FramebufferConfig fb, ReadOnlySpan<byte> pixels, IReadOnlyList<PixelRect>? dirty)
    {
        byte[] rgb = FramebufferImage.ToRgb(fb, pixels);
        var bmp = new SKBitmap(new SKImageInfo(fb.Width, fb.Height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        Span<byte> dst = bmp.GetPixelSpan();
        for (int s = 0, d = 0; s < rgb.Length; s += 3, d += 4)
        {
            dst[d] = rgb[s];
            dst[d + 1] = rgb[s + 1];
            dst[d + 2] = rgb[s + 2];
            dst[d + 3] = 255;
        }
        if (dirty is not null)
        {
            using var canvas = new SKCanvas(bmp);
            Outline(canvas, dirty, OutlineColor);
        }
        return bmp;
    }

    /// <summary>
    /// Paints each rectangle's edge pixels (its first and last row and column, inside the
    /// rectangle) in the colour; the canvas clips what falls outside the image, the interior is
    /// left as it was. Filled one-pixel bands, not strokes, so every edge pixel is exact.
    /// </summary>
    public static void Outline(SKCanvas canvas, IReadOnlyList<PixelRect> rects, SKColor color)
    {
        ArgumentNullException.ThrowIfNull(canvas);
        ArgumentNullException.ThrowIfNull(rects);
        using var paint = PictureKit.Fill(color);
        for (int i = 0; i < rects.Count; i++)
        {
            PixelRect r = rects[i];
            if (r.Width <= 0 || r.Height <= 0) continue;
            float left = r.X, top = r.Y, right = (float)((long)r.X + r.Width), bottom = (float)((long)r.Y + r.Height);
            canvas.DrawRect(new SKRect(left, top, right, top + 1), paint);
            canvas.DrawRect(new SKRect(left, bottom - 1, right, bottom), paint);
            canvas.DrawRect(new SKRect(left, top, left + 1, bottom), paint);
            canvas.DrawRect(new SKRect(right - 1, top, right, bottom), paint);
        }
    }

    /// <summary>Writes the framebuffer (rectangles outlined when given) as a PNG.</summary>
    public static PictureView Save(FramebufferConfig fb, ReadOnlySpan<byte> pixels, IReadOnlyList<PixelRect>? dirty, string path)
    {
        using var bmp = Draw(fb, pixels, dirty);
        return PictureKit.Save(bmp, path, "Framebuffer");
    }
}
