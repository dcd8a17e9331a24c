// A domain's log-dirty bitmap as an image: one cell per pfn (or per run of pfns when the
// domain is large), row after row, dirty cells red. A migration gets one panel per pre-copy
// round, so the dirty set can be watched shrinking to the guest's working set, or not.
using System;
using System.Collections.Generic;
using System.Globalization;
using SkiaSharp;
using XenLab.Dirty;
using XenLab.Lab;

namespace XenLab.Pictures;

/// <summary>Where each panel and each pfn's cell is.</summary>
public sealed class DirtyMapLayout
{
    public const int Columns = 256;          // cells per row
    public const int MaxCells = 256 * 256;   // above this, one cell covers several pfns
    private const float Margin = 20, TitleHeight = 56, PanelTitle = 34, PanelGap = 28, LegendHeight = 40;
    public const int PanelsPerRow = 4;

    public DirtyMapLayout(ulong pfns, int panels)
    {
        if (pfns == 0) throw new InvalidConfigurationException("A dirty map needs at least one pfn.");
        if (panels < 1) throw new InvalidConfigurationException("A dirty map needs at least one bitmap.");
        Pfns = pfns;
        Panels = panels;
        PfnsPerCell = (pfns + MaxCells - 1) / MaxCells;
        ulong cells = (pfns + PfnsPerCell - 1) / PfnsPerCell;
        Rows = (int)((cells + Columns - 1) / Columns);
        CellSize = Rows <= 128 ? 2 : 1;
        int across = Math.Min(panels, PanelsPerRow), down = (panels + PanelsPerRow - 1) / PanelsPerRow;
        PanelWidth = Columns * CellSize;
        PanelHeight = Rows * CellSize;
        Width = (int)(Margin * 2 + across * PanelWidth + (across - 1) * PanelGap + 70);
        Height = (int)(TitleHeight + down * (PanelTitle + PanelHeight + PanelGap) + LegendHeight);
    }

    public ulong Pfns { get; }
    public int Panels { get; }
    public ulong PfnsPerCell { get; }
    public int Rows { get; }
    public int CellSize { get; }
    public int PanelWidth { get; }
    public int PanelHeight { get; }
    public int Width { get; }
    public int Height { get; }

    /// <summary>The panel's pixel area (cells only, without its title).</summary>
    public SKRectI Panel(int i)
    {
        int col = i % PanelsPerRow, row = i / PanelsPerRow;
        int x = (int)(Margin + 70 + col * (PanelWidth + PanelGap));
        int y = (int)(TitleHeight + row * (PanelTitle + PanelHeight + PanelGap) + PanelTitle);
        return new SKRectI(x, y, x + PanelWidth, y + PanelHeight);
    }

    /// <summary>The top-left pixel of the cell holding pfn in panel i.</summary>
    public SKPointI Cell(int panel, ulong pfn)
    {
        var p = Panel(panel);
        ulong cell = pfn / PfnsPerCell;
        return new SKPointI(p.Left + (int)(cell % Columns) * CellSize, p.Top + (int)(cell / Columns) * CellSize);
    }

    internal static float LegendTop(int height) => height - LegendHeight + 10;
    internal static float TitleTop => Margin;
    internal static float LeftMargin => Margin;
}

public static class DirtyMapPicture
{
    /// <summary>Draws one panel per (label, bitmap); each bitmap has a bit per pfn, pfn 0 first.</summary>
    public static SKBitmap Draw(string title, ulong pfns, IReadOnlyList<(string Label, byte[] Bitmap)> maps)
    {
        ArgumentNullException.ThrowIfNull(maps);
        var layout = new DirtyMapLayout(pfns, maps.Count);
        var bmp = PictureKit.NewBitmap(layout.Width, layout.Height);
        using var canvas = new SKCanvas(bmp);
        PictureKit.Text(canvas, title, DirtyMapLayout.LeftMargin, DirtyMapLayout.TitleTop - 4, 16, PictureColors.Ink);
        string scale = layout.PfnsPerCell == 1 ? "one cell per pfn" : $"one cell per {layout.PfnsPerCell} pfns (red if any is dirty)";
        PictureKit.Text(canvas, $"{pfns} pfns, {DirtyMapLayout.Columns} cells a row, {scale}", DirtyMapLayout.LeftMargin, DirtyMapLayout.TitleTop + 18, 12, PictureColors.Muted);
        using var dirty = PictureKit.Fill(PictureColors.Dirty);
        using var clean = PictureKit.Fill(PictureColors.Clean);
        for (int i = 0; i < maps.Count; i++)
        {
            var (label, bits) = maps[i];
            var panel = layout.Panel(i);
            canvas.DrawRect(panel, clean);
            long count = 0;
            for (ulong pfn = 0; pfn < pfns && (pfn >> 3) < (ulong)bits.Length; pfn++)
            {
                if ((bits[pfn >> 3] & (1 << (int)(pfn & 7))) == 0) continue;
                count++;
                var c = layout.Cell(i, pfn);
                canvas.DrawRect(new SKRect(c.X, c.Y, c.X + layout.CellSize, c.Y + layout.CellSize), dirty);
            }
            PictureKit.Text(canvas, $"{label}: {count.ToString("N0", CultureInfo.InvariantCulture)} dirty", panel.Left, panel.Top - 20, 13, PictureColors.Ink);
            using var border = PictureKit.Stroke(PictureColors.Muted);
            canvas.DrawRect(new SKRect(panel.Left - 0.5f, panel.Top - 0.5f, panel.Right + 0.5f, panel.Bottom + 0.5f), border);
            // pfn labels at the panel's first row and last row, left of the panels in the first column.
            if (i % DirtyMapLayout.PanelsPerRow == 0)
            {
                ulong lastRowPfn = (ulong)(layout.Rows - 1) * DirtyMapLayout.Columns * layout.PfnsPerCell;
                PictureKit.Text(canvas, "pfn 0x0", panel.Left - 6, panel.Top, 10, PictureColors.Muted, SKTextAlign.Right);
                PictureKit.Text(canvas, $"0x{lastRowPfn:x}", panel.Left - 6, panel.Bottom - 12, 10, PictureColors.Muted, SKTextAlign.Right);
            }
        }
        PictureKit.Legend(canvas, DirtyMapLayout.LeftMargin, DirtyMapLayout.LegendTop(layout.Height),
            (PictureColors.Dirty, "dirty (sent next round)"), (PictureColors.Clean, "clean"));
        return bmp;
    }

    /// <summary>Panels for the migration's rounds: the dirty log read at the end of each (what the next round sends).</summary>
    public static PictureView Save(MigrationResult migration, string path)
    {
        ArgumentNullException.ThrowIfNull(migration);
        if (migration.DirtyLogs.Count == 0)
            throw new InvalidConfigurationException($"The migration of '{migration.DomainName}' kept no dirty logs to draw.");
        var maps = new List<(string, byte[])>();
        ulong pfns = 0;
        for (int i = 0; i < migration.DirtyLogs.Count; i++)
        {
            maps.Add(($"after round {i + 1}", migration.DirtyLogs[i].Bitmap));
            pfns = Math.Max(pfns, migration.DirtyLogs[i].Pfns);
        }
        string title = $"Log-dirty bitmap of {migration.DomainName} ({migration.Mode}) per pre-copy round: "
            + (migration.Converged ? "converged" : "did not converge") + string.Create(CultureInfo.InvariantCulture, $", {migration.PagesSent} pages sent");
        using var bmp = Draw(title, pfns, maps);
        return PictureKit.Save(bmp, path, "DirtyMap") with { DomainName = migration.DomainName };
    }

    /// <summary>One panel: a log read now (Get-XenDirtyLog).</summary>
    public static PictureView Save(DirtyLogView log, string path)
    {
        ArgumentNullException.ThrowIfNull(log);
        using var bmp = Draw($"Log-dirty bitmap of {log.DomainName}", log.Pfns, new[] { (log.Cleaned ? "read and cleaned" : "peeked", log.Bitmap) });
        return PictureKit.Save(bmp, path, "DirtyMap") with { DomainName = log.DomainName };
    }
}
