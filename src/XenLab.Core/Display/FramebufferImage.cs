// Guest framebuffer bytes to RGB24, whatever the guest's pixel format: what
// Pictures/FramebufferPicture draws.
using System;
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
}
