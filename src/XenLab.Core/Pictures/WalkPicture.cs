// One translation's memory references as a grid. Under HAP (and ARM's two stages) it is the
// 2D walk: a row per guest table level plus one for the data, a column per nested level plus
// one for the guest entry itself, (4+1) x (4+1) - 1 = 24 references cold; rows whose nested
// walk the vCPU's nested-walk cache holds are shaded, their references saved. Under shadow
// paging the CPU walks the shadow tables only: one row of 4, the guest's tables not read.
// Built from Get-XenTranslation -Step's data (TranslationView), nothing else.
using System;
using System.Collections.Generic;
using SkiaSharp;
using XenLab.Config;
using XenLab.Domains;
using XenLab.Paging;
using XenLab.Paging.Hap;
using XenLab.Views;

namespace XenLab.Pictures;

public enum WalkCellKind
{
    /// <summary>A guest page-table entry read.</summary>
    Guest,
    /// <summary>A nested (EPT / stage-2) entry read.</summary>
    Nested,
    /// <summary>A nested entry the nested-walk cache saves: not read.</summary>
    Cached,
    /// <summary>A shadow page-table entry read by the CPU.</summary>
    Shadow,
    /// <summary>The access to the data itself (not a page-table reference).</summary>
    Data,
    /// <summary>An entry this mode does not read at all (guest tables under a shadow hit).</summary>
    NotRead,
}

public sealed record WalkCell(WalkCellKind Kind, string Label, int Order, SKRect Rect);

public sealed record WalkRow(string Header, IReadOnlyList<WalkCell> Cells);

public sealed class WalkDiagram
{
    public string Title { get; init; } = "";
    public string Subtitle { get; init; } = "";
    public IReadOnlyList<string> Columns { get; init; } = Array.Empty<string>();
    public List<WalkRow> Rows { get; } = new();
    public int Width { get; init; }
    public int Height { get; init; }
    /// <summary>References the walk makes as drawn (cached cells excluded, the data access excluded).</summary>
    public int References { get; init; }
    public int CachedReferences { get; init; }
    public WalkCell Cell(int row, int column) => Rows[row].Cells[column];
}

public static class WalkPicture
{
    private const float Margin = 20, TitleHeight = 64, HeaderWidth = 210, ColumnHeaderHeight = 26, CellWidth = 132, CellHeight = 50, Gap = 4, LegendHeight = 44;

    public static SKColor ColorOf(WalkCellKind kind) => kind switch
    {
        WalkCellKind.Guest => PictureColors.Guest,
        WalkCellKind.Nested => PictureColors.Nested,
        WalkCellKind.Cached => PictureColors.Cached,
        WalkCellKind.Shadow => PictureColors.Shadow,
        WalkCellKind.Data => PictureColors.Data,
        _ => PictureColors.Clean,
    };

    /// <summary>
    /// Lays the translation out. <paramref name="nestedCached"/> tells, for a guest frame, whether
    /// the nested walk for it would be served from the nested-walk cache (HAP); null: nothing cached.
    /// </summary>
    public static WalkDiagram Layout(TranslationView view, Func<ulong, bool>? nestedCached = null)
    {
        ArgumentNullException.ThrowIfNull(view);
        var rows = new List<(string Header, List<(WalkCellKind Kind, string Label)> Cells)>();
        var columns = new List<string>();
        bool shadow = view.Mode == nameof(PagingModeKind.Shadow);
        foreach (var s in view.Steps) if (s.Table == "shadow") shadow = true;

        if (shadow) LayoutShadow(view, rows, columns);
        else LayoutNested(view, nestedCached, rows, columns);

        int order = 0, refs = 0, cached = 0, cold = 0;
        float y = TitleHeight + ColumnHeaderHeight;
        // Reference order: the hardware reads row by row, nested entries before the guest entry they locate.
        var placed = new List<WalkRow>();
        foreach (var (header, cells) in rows)
        {
            var list = new List<WalkCell>(cells.Count);
            for (int c = 0; c < cells.Count; c++)
            {
                var (kind, label) = cells[c];
                int n = kind is WalkCellKind.Guest or WalkCellKind.Nested or WalkCellKind.Shadow ? ++order : 0;
                if (n > 0) refs++;
                if (kind == WalkCellKind.Cached) cached++;
                if (n > 0 || kind == WalkCellKind.Cached) cold++;
                float x = Margin + HeaderWidth + c * (CellWidth + Gap);
                list.Add(new WalkCell(kind, label, n, new SKRect(x, y, x + CellWidth, y + CellHeight)));
            }
            placed.Add(new WalkRow(header, list));
            y += CellHeight + Gap;
        }
        int guestLevels = rows.Count - 1, nestedLevels = columns.Count - 1;
        string subtitle = shadow
            ? $"{refs} references: the CPU reads only the shadow tables on a hit (a cold 2D walk under HAP reads 24)"
            : ColdText(cold, guestLevels, nestedLevels)
              + (nestedCached is null ? "" : $"; the nested-walk cache saves {cached}: {refs} now");
        var result = new WalkDiagram
        {
            Title = $"{view.Mode}: translating VA 0x{view.VirtualAddress:x} on vCPU {view.Vcpu} of domain {view.DomainName}",
            Subtitle = subtitle,
            Columns = columns,
            Width = (int)(Margin * 2 + HeaderWidth + columns.Count * (CellWidth + Gap)),
            Height = (int)(TitleHeight + ColumnHeaderHeight + rows.Count * (CellHeight + Gap) + LegendHeight + Margin),
            References = refs,
            CachedReferences = cached,
        };
        result.Rows.AddRange(placed);
        return result;
    }

    private static void LayoutNested(TranslationView view, Func<ulong, bool>? nestedCached,
        List<(string, List<(WalkCellKind, string)>)> rows, List<string> columns)
    {
        // Group: the nested steps before each guest step translate that guest table's frame.
        var groups = new List<(List<WalkStepView> Nested, WalkStepView? Guest)>();
        var pending = new List<WalkStepView>();
        foreach (var s in view.Steps)
        {
            if (s.Table == "guest") { groups.Add((pending, s)); pending = new List<WalkStepView>(); }
            else pending.Add(s);
        }
        groups.Add((pending, null));                    // the data page's own nested walk
        int depth = 1;
        List<WalkStepView>? full = null;
        foreach (var g in groups) if (g.Nested.Count >= depth) { depth = g.Nested.Count; full = g.Nested; }
        string stage = full is not null && full.Count > 0 && full[0].Table == "stage2" ? "stage-2" : "EPT";
        for (int i = 0; i < depth; i++) columns.Add(full is not null && i < full.Count ? $"{stage} {full[i].Name}" : $"{stage} level {i}");
        columns.Add("guest entry / data");

        foreach (var (nested, guest) in groups)
        {
            ulong gfn = guest is not null ? guest.TableFrame : view.Gfn ?? 0;
            bool cached = nestedCached is not null && nestedCached(gfn);
            var cells = new List<(WalkCellKind, string)>();
            for (int i = 0; i < depth; i++)
            {
                if (i >= nested.Count) { cells.Add((WalkCellKind.NotRead, "(larger page)")); continue; }
                cells.Add((cached ? WalkCellKind.Cached : WalkCellKind.Nested, $"{nested[i].Name}[{nested[i].Index}]"));
            }
            if (guest is not null) cells.Add((WalkCellKind.Guest, $"{guest.Name}[{guest.Index}]"));
            else cells.Add((WalkCellKind.Data, "data"));
            string header = guest is not null ? $"guest {guest.Name} table, gfn 0x{gfn:x}" : $"data page, gfn 0x{gfn:x}";
            rows.Add((header, cells));
        }
    }

    private static void LayoutShadow(TranslationView view, List<(string, List<(WalkCellKind, string)>)> rows, List<string> columns)
    {
        // The explanation shows the guest's tables too; on a shadow hit the CPU never reads them,
        // on a shadow fault the hypervisor walks them to build the shadows.
        bool hit = false;
        foreach (var n in view.Notes) if (n.StartsWith("shadow hit", StringComparison.Ordinal)) hit = true;
        var shadowCells = new List<(WalkCellKind, string)>();
        var guestCells = new List<(WalkCellKind, string)>();
        foreach (var s in view.Steps)
        {
            if (s.Table == "shadow") { shadowCells.Add((WalkCellKind.Shadow, $"{s.Name}[{s.Index}]")); columns.Add(s.Name); }
            else if (s.Table == "guest") guestCells.Add((hit ? WalkCellKind.NotRead : WalkCellKind.Guest, $"{s.Name}[{s.Index}]"));
        }
        columns.Add("data");
        shadowCells.Add((WalkCellKind.Data, "data"));
        rows.Add((hit ? "CPU walks the shadow tables" : "shadow tables (missing entry)", shadowCells));
        rows.Add((hit ? "guest tables: not read" : "guest tables (hypervisor)", guestCells));
    }

    public static SKBitmap Draw(WalkDiagram diagram)
    {
        ArgumentNullException.ThrowIfNull(diagram);
        var bmp = PictureKit.NewBitmap(diagram.Width, diagram.Height);
        using var canvas = new SKCanvas(bmp);
        PictureKit.Text(canvas, diagram.Title, Margin, Margin - 4, 16, PictureColors.Ink);
        PictureKit.Text(canvas, diagram.Subtitle, Margin, Margin + 20, 12, PictureColors.Muted);
        for (int c = 0; c < diagram.Columns.Count; c++)
        {
            float x = Margin + HeaderWidth + c * (CellWidth + Gap);
            PictureKit.Text(canvas, diagram.Columns[c], x + CellWidth / 2, TitleHeight + 4, 12, PictureColors.Ink, SKTextAlign.Center);
        }
        foreach (var row in diagram.Rows)
        {
            if (row.Cells.Count == 0) continue;
            float y = row.Cells[0].Rect.Top;
            PictureKit.Text(canvas, row.Header, Margin, y + CellHeight / 2 - 8, 12, PictureColors.Ink);
            foreach (var cell in row.Cells)
            {
                PictureKit.Box(canvas, cell.Rect, ColorOf(cell.Kind), PictureColors.Ink);
                var ink = cell.Kind == WalkCellKind.NotRead || cell.Kind == WalkCellKind.Cached ? PictureColors.Muted : PictureColors.Ink;
                PictureKit.Text(canvas, cell.Label, cell.Rect.MidX, cell.Rect.Top + 8, 12, ink, SKTextAlign.Center);
                string note = cell.Kind switch
                {
                    WalkCellKind.Cached => "cached: not read",
                    WalkCellKind.Data => "the access itself",
                    WalkCellKind.NotRead => "",
                    _ => $"reference {cell.Order}",
                };
                PictureKit.Text(canvas, note, cell.Rect.MidX, cell.Rect.Top + 28, 10, ink, SKTextAlign.Center);
            }
        }
        PictureKit.Legend(canvas, Margin, diagram.Height - LegendHeight + 8,
            (PictureColors.Guest, "guest entry"), (PictureColors.Nested, "nested entry (EPT / stage-2)"), (PictureColors.Cached, "cached, not read"),
            (PictureColors.Shadow, "shadow entry"), (PictureColors.Data, "data"), (PictureColors.Clean, "not read"));
        return bmp;
    }

    /// <summary>The translation of <paramref name="va"/> by the domain's current mode, drawn and written as a PNG.</summary>
    public static PictureView Save(Domain d, int vcpu, ulong va, string path)
    {
        ArgumentNullException.ThrowIfNull(d);
        var view = TranslationView.Of(d, vcpu, va, AccessKind.Read);
        Func<ulong, bool>? cached = d.Mode is HapMode hap ? gfn => hap.IsNestedWalkCached(vcpu, gfn) : null;
        using var bmp = Draw(Layout(view, cached));
        return PictureKit.Save(bmp, path, "Walk") with { DomainName = d.Name };
    }

    /// <summary>The full 2D walk's count, and what a larger nested page (a 2 MiB EPT leaf or stage-2 block) saved.</summary>
    private static string ColdText(int cold, int guestLevels, int nestedLevels)
    {
        int full = (guestLevels + 1) * (nestedLevels + 1) - 1;
        string formula = $"({guestLevels} guest levels + 1) x ({nestedLevels} nested levels + 1) - 1 = {full}";
        return cold == full
            ? $"{cold} memory references cold: {formula}"
            : $"{cold} references cold ({full} for a full ({guestLevels}+1) x ({nestedLevels}+1) - 1 walk; larger nested pages end early)";
    }
}
