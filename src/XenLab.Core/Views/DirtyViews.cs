// Views of framebuffers and their dirty state: one object per framebuffer with the bitmap as
// Xen returns it (bytes) and as a set of page indexes, per dirty page, or per merged dirty
// rectangle in pixel coordinates (what a VNC or SPICE server repaints).
using System;
using System.Collections.Generic;
using System.IO;
using XenLab.Config;
using XenLab.Dirty;
using XenLab.Display;
using XenLab.Domains;
using XenLab.Pictures;

namespace XenLab.Views;

public sealed record FramebufferView(
    string DomainName, string Name, ulong Address, ulong FirstGfn, ulong Pages, int Width, int Height, int Bpp, int Stride,
    IReadOnlyList<ulong> Mounts, bool Tracked, string Strategy)
{
    public string Framebuffer => Name;
    public override string ToString() => $"{Name}: {Width}x{Height}x{Bpp} at 0x{Address:x} ({Pages} pages{(Tracked ? ", tracked" : "")})";

    public static FramebufferView Of(Domain d, Framebuffer fb)
    {
        using var op = d.EnterOperation();
        var range = d.Vram.Find(fb.FirstGfn, fb.Pages);
        var c = fb.Config;
        return new FramebufferView(d.Name, fb.Name, c.Address, fb.FirstGfn, fb.Pages, c.Width, c.Height, c.Bpp, c.EffectiveStride,
            fb.Mounts.ToArray(), range is not null, range?.Strategy.ToString() ?? "");
    }
}

/// <summary>The answer of one track_dirty_vram call for a framebuffer (or a raw gfn range).</summary>
public sealed record DirtyVramView(
    string DomainName, string Framebuffer, ulong FirstGfn, ulong Pages, int DirtyPages, bool AllDirty, string Reason,
    byte[] Bitmap, IReadOnlyList<int> DirtyPageIndexes, string Strategy, string Mode, FramebufferConfig? Geometry)
{
    public override string ToString() =>
        $"{(Framebuffer.Length > 0 ? Framebuffer : $"gfn 0x{FirstGfn:x}")}: {DirtyPages}/{Pages} dirty{(AllDirty ? " (all: " + Reason + ")" : "")}";

    /// <summary>One object per dirty page: its gfn and the scanlines it covers.</summary>
    public List<DirtyPageView> PagesDirty()
    {
        var list = new List<DirtyPageView>(DirtyPageIndexes.Count);
        int stride = Geometry?.EffectiveStride ?? 0;
        foreach (int i in DirtyPageIndexes)
        {
            int first = stride == 0 ? 0 : (int)Math.Min((long)i * 4096 / stride, Geometry!.Height - 1);
            int last = stride == 0 ? 0 : (int)Math.Min(((long)i * 4096 + 4095) / stride, Geometry!.Height - 1);
            list.Add(new DirtyPageView(DomainName, Framebuffer, i, FirstGfn + (ulong)i, first, last));
        }
        return list;
    }

    /// <summary>Merged dirty rectangles in pixel coordinates (needs the framebuffer geometry).</summary>
    public List<DirtyRectView> Rectangles()
    {
        var list = new List<DirtyRectView>();
        if (Geometry is null) return list;
        foreach (var r in DirtyRectangles.FromPages(Geometry, Bitmap))
            list.Add(new DirtyRectView(DomainName, Framebuffer, r.X, r.Y, r.Width, r.Height));
        return list;
    }
}

public sealed record DirtyPageView(string DomainName, string Framebuffer, int Index, ulong Gfn, int FirstRow, int LastRow)
{
    public override string ToString() => $"{Framebuffer} page {Index} (gfn 0x{Gfn:x}) rows {FirstRow}-{LastRow}";
}

public sealed record DirtyRectView(string DomainName, string Framebuffer, int X, int Y, int Width, int Height)
{
    public override string ToString() => $"{Framebuffer} {Width}x{Height}+{X}+{Y}";
}

public sealed record FramebufferExportView(string DomainName, string Framebuffer, string Path, int Width, int Height, int Bytes, int DirtyRectangles)
{
    public override string ToString() => $"{Path}: {Width}x{Height}, {Bytes} bytes, {DirtyRectangles} dirty rectangle(s) outlined";
}

public static class DirtyViews
{
    /// <summary>track_dirty_vram on a framebuffer's range.</summary>
    public static DirtyVramView Query(Domain d, string framebuffer, bool peek)
    {
        using var op = d.EnterOperation();
        var fb = d.FindFramebuffer(framebuffer)
            ?? throw new InvalidConfigurationException($"Domain '{d.Name}' has no framebuffer '{framebuffer}'.");
        return Of(d, fb.Name, fb.Config, d.Vram.Track(fb.FirstGfn, fb.Pages, peek));
    }

    /// <summary>track_dirty_vram on a raw range; the view names the framebuffer it matches, if any.</summary>
    public static DirtyVramView Query(Domain d, ulong gfn, ulong count, bool peek)
    {
        using var op = d.EnterOperation();
        var r = d.Vram.Track(gfn, count, peek);
        foreach (var fb in d.Framebuffers)
            if (fb.FirstGfn == gfn && fb.Pages == count) return Of(d, fb.Name, fb.Config, r);
        return Of(d, "", null, r);
    }

    private static DirtyVramView Of(Domain d, string name, FramebufferConfig? geometry, VramQueryResult r)
    {
        var pages = r.DirtyPageIndexes();
        var range = d.Vram.Find(r.BeginPfn, r.Pages);
        return new DirtyVramView(d.Name, name, r.BeginPfn, r.Pages, pages.Count, r.AllDirty, r.Reason, r.Bitmap, pages,
            range?.Strategy.ToString() ?? "", d.PagingMode.ToString(), geometry);
    }

    /// <summary>
    /// Writes the framebuffer as a PNG; with <paramref name="highlightDirty"/> the pages dirty since
    /// the last query (a peek: nothing is cleared) are outlined in red.
    /// </summary>
    public static FramebufferExportView ExportPng(Domain d, string framebuffer, string path, bool highlightDirty)
    {
        using var op = d.EnterOperation();
        var fb = d.FindFramebuffer(framebuffer)
            ?? throw new InvalidConfigurationException($"Domain '{d.Name}' has no framebuffer '{framebuffer}'.");
        var c = fb.Config;
        var pixels = new byte[fb.Pages << 12];
        d.ReadPhysical(c.Address, pixels);
        List<PixelRect>? list = null;
        if (highlightDirty)
        {
            var view = Query(d, fb.Name, peek: true);
            list = DirtyRectangles.FromPages(c, view.Bitmap);
        }
        var written = FramebufferPicture.Save(c, pixels, list, path);
        int rects = list?.Count ?? 0;
        return new FramebufferExportView(d.Name, fb.Name, path, c.Width, c.Height, (int)written.Bytes, rects);
    }
}
