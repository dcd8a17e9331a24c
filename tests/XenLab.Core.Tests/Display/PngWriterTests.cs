using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.IO.Compression;
using System.Text;
using XenLab.Display;

namespace XenLab.Tests.Display;

public class PngWriterTests
{
    private static readonly byte[] Signature = { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A };

    // 2x2: red, green / blue, white.
    private static readonly byte[] TwoByTwo =
    {
        255, 0, 0,    0, 255, 0,
        0, 0, 255,    255, 255, 255,
    };

    /// <summary>Bit by bit, no table: an independent check on the encoder's CRC.</summary>
    private static uint BitwiseCrc32(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++)
                crc = (crc >> 1) ^ (0xEDB88320u & (uint)-(int)(crc & 1));
        }
        return ~crc;
    }

    private sealed record Chunk(string Type, byte[] Data, uint StoredCrc, uint ComputedCrc);

    /// <summary>Splits a PNG into chunks, recomputing each CRC over type and data.</summary>
    private static List<Chunk> Chunks(byte[] png)
    {
        Assert.Equal(Signature, png[..8]);
        var chunks = new List<Chunk>();
        int at = 8;
        while (at < png.Length)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(at));
            string type = Encoding.ASCII.GetString(png, at + 4, 4);
            byte[] data = png[(at + 8)..(at + 8 + length)];
            uint stored = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(at + 8 + length));
            uint computed = BitwiseCrc32(png.AsSpan(at + 4, 4 + length));
            chunks.Add(new Chunk(type, data, stored, computed));
            at += 12 + length;
        }
        Assert.Equal(png.Length, at);  // no trailing bytes, no chunk running past the end
        return chunks;
    }

    private static byte[] Inflate(byte[] zlib)
    {
        using var z = new ZLibStream(new MemoryStream(zlib), CompressionMode.Decompress);
        var raw = new MemoryStream();
        z.CopyTo(raw);
        return raw.ToArray();
    }

    [Fact]
    public void TheCrcMatchesTheStandardCheckValue()
    {
        byte[] check = Encoding.ASCII.GetBytes("123456789");
        Assert.Equal(0xCBF43926u, BitwiseCrc32(check));  // the catalogued CRC-32/ISO-HDLC check value
        Assert.Equal(0xCBF43926u, Crc32.Compute(check));
    }

    [Fact]
    public void ATwoByTwoImageHasTheExpectedChunksAndScanlines()
    {
        byte[] png = PngWriter.Encode(2, 2, TwoByTwo);
        var chunks = Chunks(png);

        Assert.Equal(new[] { "IHDR", "IDAT", "IEND" }, chunks.ConvertAll(c => c.Type));
        foreach (var c in chunks)
            Assert.Equal(c.ComputedCrc, c.StoredCrc);  // every chunk's CRC agrees with the bitwise one

        byte[] ihdr = chunks[0].Data;
        Assert.Equal(13, ihdr.Length);
        Assert.Equal(2, BinaryPrimitives.ReadInt32BigEndian(ihdr));       // width
        Assert.Equal(2, BinaryPrimitives.ReadInt32BigEndian(ihdr.AsSpan(4)));  // height
        Assert.Equal(8, ihdr[8]);    // bit depth
        Assert.Equal(2, ihdr[9]);    // colour type RGB
        Assert.Equal(0, ihdr[10]);   // deflate
        Assert.Equal(0, ihdr[11]);   // filter method 0
        Assert.Equal(0, ihdr[12]);   // not interlaced

        // Each scanline: filter type 0, then the row's RGB bytes.
        byte[] expected =
        {
            0, 255, 0, 0,   0, 255, 0,
            0, 0, 0, 255,   255, 255, 255,
        };
        Assert.Equal(expected, Inflate(chunks[1].Data));

        Assert.Empty(chunks[2].Data);
        Assert.Equal(0xAE426082u, chunks[2].StoredCrc);  // IEND's CRC is the same in every PNG
    }

    [Fact]
    public void WriteAndEncodeProduceTheSameBytes()
    {
        var ms = new MemoryStream();
        PngWriter.Write(ms, 2, 2, TwoByTwo);
        Assert.Equal(PngWriter.Encode(2, 2, TwoByTwo), ms.ToArray());
    }

    [Fact]
    public void ALargerImageRoundTripsThroughZlib()
    {
        const int width = 300, height = 7;
        var rgb = new byte[width * height * 3];
        for (int i = 0; i < rgb.Length; i++) rgb[i] = (byte)(i * 7 + i / 11);
        var chunks = Chunks(PngWriter.Encode(width, height, rgb));
        foreach (var c in chunks)
            Assert.Equal(c.ComputedCrc, c.StoredCrc);

        byte[] raw = Inflate(chunks[1].Data);
        Assert.Equal(height * (1 + width * 3), raw.Length);
        for (int y = 0; y < height; y++)
        {
            Assert.Equal(0, raw[y * (1 + width * 3)]);  // filter None
            Assert.Equal(rgb.AsSpan(y * width * 3, width * 3).ToArray(), raw.AsSpan(y * (1 + width * 3) + 1, width * 3).ToArray());
        }
    }

    [Fact]
    public void AWrongBufferSizeIsRefused()
    {
        Assert.Throws<ArgumentException>(() => PngWriter.Encode(2, 2, new byte[11]));
        Assert.Throws<ArgumentOutOfRangeException>(() => PngWriter.Encode(0, 2, Array.Empty<byte>()));
    }
}
