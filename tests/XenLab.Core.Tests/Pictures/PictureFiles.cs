using System;
using System.IO;
using SkiaSharp;

namespace XenLab.Tests.Pictures;

/// <summary>Temporary PNG paths and decoding them back with SkiaSharp's decoder.</summary>
internal sealed class PictureFiles : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xenlab-pictures-").FullName;

    public string Path(string name) => System.IO.Path.Combine(_dir, name);

    /// <summary>Decodes a written PNG; XENLAB_KEEP_PICTURES=DIR also copies it there to look at.</summary>
    public static SKBitmap Decode(string path)
    {
        Assert.True(File.Exists(path), $"{path} was not written");
        byte[] bytes = File.ReadAllBytes(path);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes[..4]);   // a PNG signature
        string? keep = Environment.GetEnvironmentVariable("XENLAB_KEEP_PICTURES");
        if (!string.IsNullOrEmpty(keep)) File.Copy(path, System.IO.Path.Combine(keep, System.IO.Path.GetFileName(path)), overwrite: true);
        return SKBitmap.Decode(bytes) ?? throw new InvalidDataException($"{path} does not decode");
    }

    public static void AssertColor(SKColor expected, SKBitmap bmp, float x, float y, string what)
    {
        SKColor actual = bmp.GetPixel((int)x, (int)y);
        Assert.True(expected.Red == actual.Red && expected.Green == actual.Green && expected.Blue == actual.Blue,
            $"{what}: pixel ({(int)x}, {(int)y}) is {actual}, expected {expected}");
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
