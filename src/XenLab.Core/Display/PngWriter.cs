// A minimal PNG encoder (8-bit RGB, no interlace, filter 0) so a framebuffer can be exported
// without a package: signature, IHDR, one IDAT deflated by ZLibStream, IEND; CRC-32 by table.
using System;
using System.Buffers.Binary;
using System.IO;
using System.IO.Compression;

namespace XenLab.Display;

public static class PngWriter
{
    private static ReadOnlySpan<byte> Signature => new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A };

    /// <summary>Writes <paramref name="rgb"/> (width * height * 3 bytes, rows top to bottom) as a PNG.</summary>
    public static void Write(Stream output, int width, int height, ReadOnlySpan<byte> rgb)
    {
        ArgumentNullException.ThrowIfNull(output);
        if (width < 1 || height < 1)
            throw new ArgumentOutOfRangeException(nameof(width), $"{width}x{height}: both must be at least 1");
        long rowBytes = (long)width * 3;
        if (rgb.Length != rowBytes * height)
            throw new ArgumentException($"{width}x{height} RGB needs {rowBytes * height} bytes, got {rgb.Length}", nameof(rgb));

        output.Write(Signature);

        Span<byte> ihdr = stackalloc byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteInt32BigEndian(ihdr[4..], height);
        ihdr[8] = 8;   // bit depth
        ihdr[9] = 2;   // colour type: RGB
        ihdr[10] = 0;  // compression: deflate
        ihdr[11] = 0;  // filter method 0
        ihdr[12] = 0;  // no interlace
        WriteChunk(output, "IHDR"u8, ihdr);

        WriteChunk(output, "IDAT"u8, Compress(rgb, (int)rowBytes, height));
        WriteChunk(output, "IEND"u8, ReadOnlySpan<byte>.Empty);
    }

    /// <summary>The PNG bytes of <paramref name="rgb"/>; see <see cref="Write"/>.</summary>
    public static byte[] Encode(int width, int height, ReadOnlySpan<byte> rgb)
    {
        var ms = new MemoryStream();
        Write(ms, width, height, rgb);
        return ms.ToArray();
    }

    /// <summary>The zlib stream of the scanlines, each preceded by filter type 0 (None).</summary>
    private static ReadOnlySpan<byte> Compress(ReadOnlySpan<byte> rgb, int rowBytes, int height)
    {
        var compressed = new MemoryStream();
        using (var z = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
        {
            ReadOnlySpan<byte> filterNone = stackalloc byte[1] { 0 };
            for (int y = 0; y < height; y++)
            {
                z.Write(filterNone);
                z.Write(rgb.Slice(y * rowBytes, rowBytes));
            }
        }
        return compressed.GetBuffer().AsSpan(0, (int)compressed.Length);
    }

    private static void WriteChunk(Stream output, ReadOnlySpan<byte> type, ReadOnlySpan<byte> data)
    {
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(word, data.Length);
        output.Write(word);
        output.Write(type);
        output.Write(data);
        uint crc = Crc32.Update(Crc32.Initial, type);
        crc = Crc32.Update(crc, data);
        BinaryPrimitives.WriteUInt32BigEndian(word, Crc32.Finish(crc));
        output.Write(word);
    }
}

/// <summary>CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) as PNG and zlib's crc32 use it.</summary>
internal static class Crc32
{
    public const uint Initial = 0xFFFFFFFFu;
    private static readonly uint[] Table = BuildTable();

    private static uint[] BuildTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++)
                c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[n] = c;
        }
        return table;
    }

    /// <summary>Feeds <paramref name="data"/> into a running (not yet finished) CRC.</summary>
    public static uint Update(uint crc, ReadOnlySpan<byte> data)
    {
        uint[] table = Table;
        foreach (byte b in data)
            crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return crc;
    }

    public static uint Finish(uint crc) => crc ^ 0xFFFFFFFFu;

    /// <summary>The CRC-32 of <paramref name="data"/>.</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => Finish(Update(Initial, data));
}
