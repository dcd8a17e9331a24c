// Guest framebuffer bytes to RGB24 (for PngWriter), and outlines drawn over the dirty
// rectangles: what Export-XenFramebuffer -HighlightDirty shows.
using System;
using System.Collections.Generic;
using XenLab.Config;

namespace XenLab.Display;

public static class FramebufferImage
{
    /// <summary>
    /// Converts the framebuffer's pixels (scanlines <c>fb.EffectiveStride</c> bytes apart) to
    /// width * height * 3 bytes of R, G, B. 32 bpp is B, G, R, X (little-endian XRGB8888, as
    /// VGA and bochs-display lay it out); 24 bpp is B, G, R; 16 bpp is RGB565 little-endian, each
    /// field widened to 8 bits by repeating its high bits; 8 bpp is grayscale.
    /// </summary>
    public static byte[] ToRgb(FramebufferConfig fb, ReadOnlySpan<byte> pixels)
    {
        ArgumentNullException.ThrowIfNull(fb);
        if (fb.Bpp is not (8 or 16 or 24 or 32))
            throw new ArgumentException($"framebuffer '{fb.Name}': bpp {fb.Bpp} must be 8, 16, 24 or 32", nameof(fb));
        int bytesPerPixel = fb.Bpp / 8, width = fb.Width, height = fb.Height, stride = fb.EffectiveStride;
        int rowBytes = width * bytesPerPixel;
        if (width < 1 || height < 1 || stride < rowBytes)
            throw new ArgumentException($"framebuffer '{fb.Name}': {width}x{height} with stride {stride} is not a valid geometry", nameof(fb));
        long needed = (long)(height - 1) * stride + rowBytes;
        if (pixels.Length < needed)
            throw new ArgumentException($"framebuffer '{fb.Name}' needs {needed} bytes, got {pixels.Length}", nameof(pixels));

        var rgb = new byte[checked(width * height * 3)];
        for (int y = 0; y < height; y++)
        {
            ReadOnlySpan<byte> src = pixels.Slice(y * stride, rowBytes);
            Span<byte> dst = rgb.AsSpan(y * width * 3, width * 3);
            switch (fb.Bpp)
            {
                case 32: Row32(src, dst); break;
                case 24: Row24(src, dst); break;
                case 16: Row16(src, dst); break;
                default: Row8(src, dst); break;
            }
        }
        return rgb;
    }

    private static void Row32(ReadOnlySpan<byte> src, Span<byte> dst)
    {
        for (int s = 0, d = 0; d < dst.Length; s += 4, d += 3)
        {
            dst[d] = src[s + 2];
            dst[d + 1] = src[s + 1];
            dst[d + 2] = src[s];
        }
    }

    private static void Row24(ReadOnlySpan<byte> src, Span<byte> dst)
    {
        for (int s = 0, d = 0; d < dst.Length; s += 3, d += 3)
        {
            dst[d] = src[s + 2];
            dst[d + 1] = src[s + 1];
            dst[d + 2] = src[s];
        }
    }

    private static void Row16(ReadOnlySpan<byte> src, Span<byte> dst)
    {
        for (int s = 0, d = 0; d < dst.Length; s += 2, d += 3)
        {
            int v = src[s] | (src[s + 1] << 8);
            int r = v >> 11, g = (v >> 5) & 0x3F, b = v & 0x1F;
            dst[d] = (byte)((r << 3) | (r >> 2));
            dst[d + 1] = (byte)((g << 2) | (g >> 4));
            dst[d + 2] = (byte)((b << 3) | (b >> 2));
        }
    }

    private static void Row8(ReadOnlySpan<byte> src, Span<byte> dst)
    {
        for (int s = 0, d = 0; d < dst.Length; s++, d += 3)
            dst[d] = dst[d + 1] = dst[d + 2] = src[s];
    }

    /// <summary>
    /// Paints each rectangle's edge pixels (its first and last row and column, inside the
    /// rectangle) in the given colour, clipped to the image; the interior is left as it was.
    /// </summary>
    public static void Outline(byte[] rgb, int width, int height, IReadOnlyList<PixelRect> rects, byte r, byte g, byte b)
    {
        ArgumentNullException.ThrowIfNull(rgb);
        ArgumentNullException.ThrowIfNull(rects);
        if (width < 1 || height < 1 || rgb.Length != (long)width * height * 3)
            throw new ArgumentException($"{width}x{height} RGB needs {(long)width * height * 3} bytes, got {rgb.Length}", nameof(rgb));
        for (int i = 0; i < rects.Count; i++)
        {
            PixelRect rect = rects[i];
            if (rect.Width <= 0 || rect.Height <= 0) continue;
            long left = rect.X, top = rect.Y, right = (long)rect.X + rect.Width - 1, bottom = (long)rect.Y + rect.Height - 1;
            int x0 = (int)Math.Max(left, 0), x1 = (int)Math.Min(right, width - 1);
            int y0 = (int)Math.Max(top, 0), y1 = (int)Math.Min(bottom, height - 1);
            if (x0 > x1 || y0 > y1) continue;  // wholly outside the image
            if (top == y0) HLine(rgb, width, y0, x0, x1, r, g, b);
            if (bottom == y1) HLine(rgb, width, y1, x0, x1, r, g, b);
            if (left == x0) VLine(rgb, width, x0, y0, y1, r, g, b);
            if (right == x1) VLine(rgb, width, x1, y0, y1, r, g, b);
        }
    }

    private static void HLine(byte[] rgb, int width, int y, int x0, int x1, byte r, byte g, byte b)
    {
        for (int x = x0; x <= x1; x++) Put(rgb, width, x, y, r, g, b);
    }

    private static void VLine(byte[] rgb, int width, int x, int y0, int y1, byte r, byte g, byte b)
    {
        for (int y = y0; y <= y1; y++) Put(rgb, width, x, y, r, g, b);
    }

    private static void Put(byte[] rgb, int width, int x, int y, byte r, byte g, byte b)
    {
        int i = (y * width + x) * 3;
        rgb[i] = r;
        rgb[i + 1] = g;
        rgb[i + 2] = b;
    }
}
