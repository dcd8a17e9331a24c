// What every picture shares: the embedded font (so text draws on a machine with no fonts
// installed: the NoDependencies SkiaSharp build has no fontconfig), the palette, text and box
// helpers, and writing the finished bitmap as a PNG through SkiaSharp's encoder.
using System;
using System.IO;
using SkiaSharp;

namespace XenLab.Pictures;

/// <summary>A picture written to disk: where, how big.</summary>
public sealed record PictureView(string Kind, string Path, int Width, int Height, long Bytes)
{
    /// <summary>The domain drawn; empty for a chart of several.</summary>
    public string DomainName { get; init; } = "";

    public override string ToString() => $"{Path}: {Kind}, {Width}x{Height}, {Bytes} bytes";
}

/// <summary>The colours every picture uses for the same meaning.</summary>
public static class PictureColors
{
    public static readonly SKColor Background = SKColors.White;
    public static readonly SKColor Ink = new(0x20, 0x20, 0x20);
    public static readonly SKColor Muted = new(0x70, 0x70, 0x70);
    public static readonly SKColor Ram = new(0x4C, 0xAF, 0x50);          // green: real frames
    public static readonly SKColor Identity = new(0x42, 0x6E, 0xD9);     // blue: 1:1 (holes)
    public static readonly SKColor Missing = new(0xC8, 0xC8, 0xC8);      // grey: INVALID entries
    public static readonly SKColor Mixed = new(0xF2, 0xB1, 0x34);        // amber: a page holding several kinds
    public static readonly SKColor Shared = new(0xFF, 0xF3, 0xD6);       // pale: a page shared by many entries
    public static readonly SKColor Allocated = new(0xF4, 0xF4, 0xF4);    // pale grey: an allocated page
    public static readonly SKColor Cached = new(0xB0, 0xB0, 0xB0);       // grey: a reference a cache saved
    public static readonly SKColor Guest = new(0x9C, 0xCC, 0x65);        // guest table read
    public static readonly SKColor Nested = new(0x64, 0xB5, 0xF6);       // nested (EPT / stage-2) read
    public static readonly SKColor Shadow = new(0xBA, 0x68, 0xC8);       // shadow table read by the CPU
    public static readonly SKColor Data = new(0xFF, 0xCC, 0x80);         // the data access itself
    public static readonly SKColor Dirty = new(0xD3, 0x2F, 0x2F);        // red: dirty
    public static readonly SKColor Clean = new(0xEC, 0xEF, 0xF1);        // near white: clean
}

/// <summary>Font, text and file helpers shared by the pictures.</summary>
public static class PictureKit
{
    /// <summary>Family name of the embedded font (DejaVu Sans, Bitstream Vera licence).</summary>
    public const string FontFamily = "DejaVu Sans";

    private static readonly Lazy<SKTypeface> LazyTypeface = new(LoadTypeface);

    /// <summary>The embedded DejaVu Sans: every picture's text, whatever fonts the machine has.</summary>
    public static SKTypeface Typeface => LazyTypeface.Value;

    private static SKTypeface LoadTypeface()
    {
        using Stream? s = typeof(PictureKit).Assembly.GetManifestResourceStream("XenLab.Pictures.DejaVuSans.ttf");
        if (s is null) throw new XenLabException("The embedded font XenLab.Pictures.DejaVuSans.ttf is missing from XenLab.Core.");
        using var data = SKData.Create(s);
        return SKTypeface.FromData(data) ?? throw new XenLabException("SkiaSharp could not read the embedded DejaVu Sans font.");
    }

    public static SKFont Font(float size) => new(Typeface, size) { Subpixel = true, Edging = SKFontEdging.Antialias };

    public static SKPaint Fill(SKColor c) => new() { Color = c, Style = SKPaintStyle.Fill, IsAntialias = false };

    public static SKPaint Stroke(SKColor c, float width = 1) => new() { Color = c, Style = SKPaintStyle.Stroke, StrokeWidth = width, IsAntialias = true };

    /// <summary>Draws text with its top-left corner at (x, y).</summary>
    public static void Text(SKCanvas canvas, string text, float x, float y, float size, SKColor color, SKTextAlign align = SKTextAlign.Left)
    {
        using var font = Font(size);
        using var paint = new SKPaint { Color = color, IsAntialias = true };
        canvas.DrawText(text, x, y - font.Metrics.Ascent, align, font, paint);
    }

    public static float TextWidth(string text, float size)
    {
        using var font = Font(size);
        return font.MeasureText(text);
    }

    /// <summary>A filled box with a 1-pixel border drawn inside it (pixel-exact, no antialiasing).</summary>
    public static void Box(SKCanvas canvas, SKRect r, SKColor fill, SKColor border)
    {
        using var f = Fill(fill);
        canvas.DrawRect(r, f);
        using var b = new SKPaint { Color = border, Style = SKPaintStyle.Stroke, StrokeWidth = 1, IsAntialias = false };
        canvas.DrawRect(new SKRect(r.Left + 0.5f, r.Top + 0.5f, r.Right - 0.5f, r.Bottom - 0.5f), b);
    }

    /// <summary>A legend row: a swatch per (colour, label), left to right from (x, y).</summary>
    public static float Legend(SKCanvas canvas, float x, float y, params (SKColor Color, string Label)[] items)
    {
        foreach (var (color, label) in items)
        {
            Box(canvas, new SKRect(x, y, x + 14, y + 14), color, PictureColors.Ink);
            Text(canvas, label, x + 19, y, 12, PictureColors.Ink);
            x += 19 + TextWidth(label, 12) + 18;
        }
        return x;
    }

    public static SKBitmap NewBitmap(int width, int height)
    {
        if (width < 1 || height < 1 || (long)width * height > 64L << 20)
            throw new InvalidConfigurationException($"A picture of {width}x{height} pixels is empty or too large.");
        var bmp = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul));
        bmp.Erase(PictureColors.Background);
        return bmp;
    }

    /// <summary>Encodes the bitmap as a PNG and writes it; a path that cannot be written is an InvalidConfiguration error.</summary>
    public static PictureView Save(SKBitmap bitmap, string path, string kind)
    {
        ArgumentNullException.ThrowIfNull(bitmap);
        ArgumentException.ThrowIfNullOrEmpty(path);
        using SKData png = bitmap.Encode(SKEncodedImageFormat.Png, 100)
            ?? throw new XenLabException($"SkiaSharp could not encode a {bitmap.Width}x{bitmap.Height} PNG.");
        try
        {
            using var file = File.Create(path);
            png.SaveTo(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or DirectoryNotFoundException or NotSupportedException)
        {
            throw new InvalidConfigurationException($"Cannot write '{path}': {e.Message}");
        }
        return new PictureView(kind, path, bitmap.Width, bitmap.Height, png.Size);
    }

    /// <summary>Writes a picture the <paramref name="draw"/> callback paints on a fresh canvas.</summary>
    public static PictureView Save(int width, int height, string path, string kind, Action<SKCanvas> draw)
    {
        using var bmp = NewBitmap(width, height);
        using (var canvas = new SKCanvas(bmp)) draw(canvas);
        return Save(bmp, path, kind);
    }
}
