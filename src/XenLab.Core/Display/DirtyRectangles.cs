// Turns a framebuffer's dirty-page bitmap (what track_dirty_vram returns) into the pixel
// rectangles a VNC/SPICE server would repaint: spans merged within a row, then rows with the
// same span merged downwards. Scans the bitmap a 64-bit word at a time; no LINQ.
using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Numerics;
using System.Runtime.InteropServices;
using XenLab.Config;
using XenLab.Memory;

namespace XenLab.Display;

/// <summary>A rectangle of pixels: columns [X, X + Width), rows [Y, Y + Height).</summary>
public readonly record struct PixelRect(int X, int Y, int Width, int Height)
{
    public int Right => X + Width;
    public int Bottom => Y + Height;
}

public static class DirtyRectangles
{
    /// <summary>
    /// The dirty pixel regions of <paramref name="fb"/> given its dirty bitmap (bit i = page i of the
    /// framebuffer, LSB first in each byte). Sorted by Y then X; rectangles do not overlap.
    /// Bytes in the stride padding and rows at or past the height produce nothing; a pixel only
    /// partly inside a dirty page counts as dirty.
    /// </summary>
    public static List<PixelRect> FromPages(FramebufferConfig fb, ReadOnlySpan<byte> bitmap)
    {
        ArgumentNullException.ThrowIfNull(fb);
        var builder = new Builder(fb);
        long pages = CheckBitmap(fb, bitmap);

        long bit = 0;
        while (true)
        {
            long start = NextBit(bitmap, bit, pages, findSet: true);
            if (start >= pages) break;
            long end = NextBit(bitmap, start, pages, findSet: false);
            builder.AddByteRun(start << Page.Shift, end << Page.Shift);
            bit = end;
        }
        return builder.Finish();
    }

    /// <summary>Dirty pages among the first <paramref name="pages"/> bits of the bitmap.</summary>
    public static int CountDirty(ReadOnlySpan<byte> bitmap, int pages)
    {
        if (pages < 0 || (long)pages > (long)bitmap.Length * 8)
            throw new ArgumentOutOfRangeException(nameof(pages), pages, $"the bitmap holds {(long)bitmap.Length * 8} bits");
        int words = pages >> 6, count = 0;
        for (int w = 0; w < words; w++)
            count += BitOperations.PopCount(BinaryPrimitives.ReadUInt64LittleEndian(bitmap.Slice(w << 3, 8)));
        int rest = pages & 63;
        if (rest != 0)
            count += BitOperations.PopCount(ReadWord(bitmap, words) & ((1UL << rest) - 1));
        return count;
    }

    /// <summary>The framebuffer's page count, after checking the bitmap covers it and the bpp is one we know.</summary>
    private static long CheckBitmap(FramebufferConfig fb, ReadOnlySpan<byte> bitmap)
    {
        if (fb.Bpp is not (8 or 16 or 24 or 32))
            throw new ArgumentException($"framebuffer '{fb.Name}': bpp {fb.Bpp} must be 8, 16, 24 or 32", nameof(fb));
        if (fb.Width < 1 || fb.Height < 1 || fb.EffectiveStride < fb.Width * (fb.Bpp / 8))
            throw new ArgumentException($"framebuffer '{fb.Name}': {fb.Width}x{fb.Height} with stride {fb.EffectiveStride} is not a valid geometry", nameof(fb));
        ulong pages = fb.Pages;
        if ((ulong)bitmap.Length < (pages + 7) >> 3)
            throw new ArgumentException($"framebuffer '{fb.Name}' has {pages} pages but the bitmap holds only {bitmap.Length * 8L} bits", nameof(bitmap));
        return (long)pages;
    }

    /// <summary>64 bits of the bitmap starting at bit <c>word * 64</c>; bytes past the end read as 0.</summary>
    private static ulong ReadWord(ReadOnlySpan<byte> bitmap, long word)
    {
        long at = word << 3;
        if (at + 8 <= bitmap.Length)
            return BinaryPrimitives.ReadUInt64LittleEndian(bitmap.Slice((int)at, 8));
        ulong v = 0;
        for (int i = 0; at + i < bitmap.Length; i++)
            v |= (ulong)bitmap[(int)at + i] << (i * 8);
        return v;
    }

    /// <summary>The first bit at or after <paramref name="from"/> that is set (or clear); <paramref name="limit"/> if none before it.</summary>
    private static long NextBit(ReadOnlySpan<byte> bitmap, long from, long limit, bool findSet)
    {
        long word = from >> 6;
        ulong w = ReadWord(bitmap, word);
        if (!findSet) w = ~w;
        w &= ulong.MaxValue << (int)(from & 63);
        while (w == 0)
        {
            word++;
            if (word << 6 >= limit) return limit;
            w = ReadWord(bitmap, word);
            if (!findSet) w = ~w;
        }
        return Math.Min(limit, (word << 6) + BitOperations.TrailingZeroCount(w));
    }

    /// <summary>
    /// Builds the rectangles from byte runs given in increasing order. Spans of the row being
    /// filled are merged as they come; when the row changes, each span either extends the
    /// rectangle of the row above with the same x-extent or opens a new one. A rectangle is put
    /// in the output when opened, so the output is already in (Y, X) order.
    /// </summary>
    private sealed class Builder
    {
        private readonly long _stride;
        private readonly int _height, _width, _bytesPerPixel, _rowBytes;
        private readonly long _size;
        private readonly List<PixelRect> _rects = new();

        // The row the last run ended in, and its first byte.
        private int _cursorRow;
        private long _cursorRowStart;

        // Spans of the row being filled: [x0, x1) pairs, sorted and disjoint.
        private int[] _spans;
        private int _spanCount;
        private int _row = -1;

        // Rectangles whose last row is _openRow: x0, x1 and index in _rects, sorted by x0.
        private int[] _open, _nextOpen;
        private int _openCount;
        private int _openRow = -2;

        public Builder(FramebufferConfig fb)
        {
            _stride = fb.EffectiveStride;
            _height = fb.Height;
            _width = fb.Width;
            _bytesPerPixel = fb.Bpp / 8;
            _rowBytes = fb.Width * _bytesPerPixel;
            _size = _stride * _height;
            // Runs are separated by at least a clean page, so at most rowBytes/4096 + 1 touch one row.
            int maxSpans = _rowBytes / Page.Size + 2;
            _spans = new int[maxSpans * 2];
            _open = new int[maxSpans * 3];
            _nextOpen = new int[maxSpans * 3];
        }

        /// <summary>Framebuffer bytes [begin, end) are dirty; runs come in increasing order.</summary>
        public void AddByteRun(long begin, long end)
        {
            if (end > _size) end = _size;
            if (begin >= end) return;
            // Walk the cursor down to the row holding begin: no division, and over a whole
            // query it moves at most Height rows.
            int row = _cursorRow;
            long rowStart = _cursorRowStart;
            while (rowStart + _stride <= begin)
            {
                row++;
                rowStart += _stride;
            }
            while (true)
            {
                long rowEnd = rowStart + _stride;
                if (begin <= rowStart && rowEnd <= end)
                    AddSpan(row, 0, _width);  // the run covers this row from end to end
                else
                    AddRowPart(row, rowStart, begin, end);
                if (rowEnd >= end) break;
                row++;
                rowStart = rowEnd;
            }
            _cursorRow = row;
            _cursorRowStart = rowStart;
        }

        /// <summary>The pixels of the row at <paramref name="rowStart"/> that bytes [begin, end) touch, padding excluded.</summary>
        private void AddRowPart(int row, long rowStart, long begin, long end)
        {
            long s = Math.Max(begin - rowStart, 0);
            long e = Math.Min(end - rowStart, _rowBytes);
            if (s >= e) return;  // only padding of this row
            int x0 = PixelOf(s);
            int x1 = PixelOf(e + _bytesPerPixel - 1);  // a pixel partly inside counts
            AddSpan(row, x0, Math.Min(x1, _width));
        }

        /// <summary>The pixel holding byte <paramref name="offset"/> of a row; constant divisors so the JIT avoids idiv.</summary>
        private int PixelOf(long offset) => _bytesPerPixel switch
        {
            4 => (int)(offset >> 2),
            3 => (int)((ulong)offset / 3),
            2 => (int)(offset >> 1),
            _ => (int)offset,
        };

        private void AddSpan(int row, int x0, int x1)
        {
            if (row != _row)
            {
                FlushRow();
                _row = row;
            }
            // Spans of a row arrive in increasing x; merge one that touches or overlaps the last.
            if (_spanCount > 0 && x0 <= _spans[2 * _spanCount - 1])
            {
                if (x1 > _spans[2 * _spanCount - 1]) _spans[2 * _spanCount - 1] = x1;
                return;
            }
            if (2 * _spanCount == _spans.Length) Array.Resize(ref _spans, _spans.Length * 2);
            _spans[2 * _spanCount] = x0;
            _spans[2 * _spanCount + 1] = x1;
            _spanCount++;
        }

        /// <summary>Match the finished row's spans with the rectangles open from the row above.</summary>
        private void FlushRow()
        {
            if (_spanCount == 0) return;
            int prevCount = _openRow == _row - 1 ? _openCount : 0;
            if (_nextOpen.Length < 3 * _spanCount) _nextOpen = new int[3 * _spanCount];
            Span<PixelRect> rects = default;
            int p = 0;
            for (int i = 0; i < _spanCount; i++)
            {
                int x0 = _spans[2 * i], x1 = _spans[2 * i + 1];
                while (p < prevCount && _open[3 * p] < x0) p++;
                int index;
                if (p < prevCount && _open[3 * p] == x0 && _open[3 * p + 1] == x1)
                {
                    index = _open[3 * p + 2];
                    if (rects.IsEmpty) rects = CollectionsMarshal.AsSpan(_rects);
                    ref PixelRect r = ref rects[index];
                    r = r with { Height = r.Height + 1 };
                }
                else
                {
                    index = _rects.Count;
                    _rects.Add(new PixelRect(x0, _row, x1 - x0, 1));
                    rects = default;  // Add may have moved the list's array
                }
                _nextOpen[3 * i] = x0;
                _nextOpen[3 * i + 1] = x1;
                _nextOpen[3 * i + 2] = index;
            }
            (_open, _nextOpen) = (_nextOpen, _open);
            _openCount = _spanCount;
            _openRow = _row;
            _spanCount = 0;
        }

        public List<PixelRect> Finish()
        {
            FlushRow();
            return _rects;
        }
    }
}
