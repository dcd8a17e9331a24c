// The p2m tree of seed 004 as a picture: the top page, every allocated mid page, the allocated
// leaf pages (runs of alike leaves drawn as one box), and each of the four shared pages
// (p2m_mid_missing, p2m_mid_identity, p2m_missing, p2m_identity) drawn once, with an arrow from
// every run of entries that points at it. This is the picture the thread drew in ASCII: which
// entries a coarse identity switch turns, and what ballooning would then find "valid".
// The tree is read through P2mTree.Lookup/Get only, so its internals may change freely.
using System;
using System.Collections.Generic;
using SkiaSharp;
using XenLab.P2m;

namespace XenLab.Pictures;

/// <summary>A box of the p2m picture: a page (or a run of alike leaf pages) with its entry rows.</summary>
public sealed record P2mPictureBox(string Name, string Title, string Detail, SKColor Fill, SKRect Rect, IReadOnlyList<P2mPictureRow> Rows);

/// <summary>A run of consecutive entries of one page that point at the same target box.</summary>
public sealed record P2mPictureRow(int First, int Last, string Target, SKRect Rect);

/// <summary>The p2m picture laid out: boxes, rows and arrows, before anything is drawn.</summary>
public sealed class P2mTreeDiagram
{
    public string Title { get; init; } = "";
    public int Width { get; init; }
    public int Height { get; init; }
    public List<P2mPictureBox> Boxes { get; } = new();
    public P2mPictureBox Box(string name) => Boxes.Find(b => b.Name == name) ?? throw new KeyNotFoundException($"no box '{name}' in the p2m picture");
    public bool HasBox(string name) => Boxes.Exists(b => b.Name == name);
}

public static class P2mTreePicture
{
    public const string MidMissing = "p2m_mid_missing", MidIdentity = "p2m_mid_identity", LeafMissing = "p2m_missing", LeafIdentity = "p2m_identity";

    private const float RowHeight = 18, HeaderHeight = 38, BoxGap = 14, Margin = 20, TitleHeight = 56, LegendHeight = 40;
    private const float ColumnTop = Margin + TitleHeight;
    private const float TopX = Margin, TopWidth = 230, MidX = 340, MidWidth = 290, LeafX = 730, LeafWidth = 330;

    // What one leaf page holds, from its entries.
    [Flags]
    private enum Content { None = 0, Ram = 1, Identity = 2, Missing = 4, Foreign = 8 }

    /// <summary>Lays the tree out; <paramref name="title"/> heads the picture.</summary>
    public static P2mTreeDiagram Layout(P2mTree tree, string title)
    {
        ArgumentNullException.ThrowIfNull(tree);
        // Column contents first (names, rows and targets), then positions.
        var top = new List<(int First, int Last, string Target)>();
        var mids = new List<(string Name, int T, List<(int First, int Last, string Target)> Rows)>();
        var leaves = new List<(string Name, int Count, ulong FirstPfn, ulong EndPfn, Content Content)>();
        bool midMissing = false, midIdentity = false, leafMissing = false, leafIdentity = false;

        for (int t = 0; t < P2mTree.EntriesPerPage; t++)
        {
            ulong midBase = (ulong)t * P2mTree.PfnsPerMid;
            P2mPageKind midKind = tree.Lookup(midBase).MidPage;
            string target;
            if (midKind == P2mPageKind.SharedMissing) { target = MidMissing; midMissing = true; }
            else if (midKind == P2mPageKind.SharedIdentity) { target = MidIdentity; midIdentity = true; leafIdentity = true; }
            else
            {
                target = $"mid{t}";
                var rows = new List<(int First, int Last, string Target)>();
                string? lastLeaf = null;
                for (int m = 0; m < P2mTree.EntriesPerPage; m++)
                {
                    ulong leafBase = midBase + (ulong)m * P2mTree.PfnsPerLeaf;
                    P2mPageKind leafKind = tree.Lookup(leafBase).LeafPage;
                    string leafTarget;
                    if (leafKind == P2mPageKind.SharedMissing) { leafTarget = LeafMissing; leafMissing = true; }
                    else if (leafKind == P2mPageKind.SharedIdentity) { leafTarget = LeafIdentity; leafIdentity = true; }
                    else
                    {
                        Content c = LeafContent(tree, leafBase);
                        // Consecutive allocated leaves with the same content share one box.
                        if (lastLeaf is not null && leaves.Count > 0 && leaves[^1].Name == lastLeaf && leaves[^1].Content == c && leaves[^1].EndPfn == leafBase)
                        {
                            var l = leaves[^1];
                            leaves[^1] = (l.Name, l.Count + 1, l.FirstPfn, leafBase + P2mTree.PfnsPerLeaf, c);
                        }
                        else leaves.Add(($"leaf{leaves.Count}", 1, leafBase, leafBase + P2mTree.PfnsPerLeaf, c));
                        leafTarget = leaves[^1].Name;
                    }
                    lastLeaf = leafTarget;
                    AddRun(rows, m, leafTarget);
                }
                mids.Add((target, t, rows));
            }
            AddRun(top, t, target);
        }
        if (midMissing) leafMissing = true;

        // Positions. Column heights decide the picture's height.
        var d0 = new List<P2mPictureBox>();
        float y = ColumnTop;
        d0.Add(MakeBox("top", "top page (p2m_top)", "512 entries, one per GiB", PictureColors.Allocated, TopX, ref y, TopWidth, top));
        float topBottom = y;

        y = ColumnTop;
        foreach (var (name, t, rows) in mids)
            d0.Add(MakeBox(name, $"mid page top[{t}]", $"pfn 0x{(ulong)t * P2mTree.PfnsPerMid:x} +1 GiB", PictureColors.Allocated, MidX, ref y, MidWidth, rows));
        if (midIdentity)
            d0.Add(MakeBox(MidIdentity, MidIdentity + " (shared)", "every entry: p2m_identity", PictureColors.Shared, MidX, ref y, MidWidth,
                new() { (0, P2mTree.EntriesPerPage - 1, LeafIdentity) }));
        if (midMissing)
            d0.Add(MakeBox(MidMissing, MidMissing + " (shared)", "every entry: p2m_missing", PictureColors.Shared, MidX, ref y, MidWidth,
                new() { (0, P2mTree.EntriesPerPage - 1, LeafMissing) }));
        float midBottom = y;

        y = ColumnTop;
        foreach (var (name, count, first, end, content) in leaves)
            d0.Add(MakeBox(name, count == 1 ? "leaf page: " + Describe(content) : $"{count} leaf pages: " + Describe(content),
                $"pfn 0x{first:x}-0x{end - 1:x}", Fill(content), LeafX, ref y, LeafWidth, new()));
        if (leafIdentity)
            d0.Add(MakeBox(LeafIdentity, LeafIdentity + " (shared)", "a lookup here answers the pfn itself", PictureColors.Identity, LeafX, ref y, LeafWidth, new()));
        if (leafMissing)
            d0.Add(MakeBox(LeafMissing, LeafMissing + " (shared)", "every entry INVALID_P2M_ENTRY", PictureColors.Missing, LeafX, ref y, LeafWidth, new()));
        float leafBottom = y;

        float bottom = Math.Max(topBottom, Math.Max(midBottom, leafBottom));
        var diagram = new P2mTreeDiagram { Title = title, Width = (int)(LeafX + LeafWidth + Margin), Height = (int)(bottom + LegendHeight) };
        diagram.Boxes.AddRange(d0);
        return diagram;
    }

    private static void AddRun(List<(int First, int Last, string Target)> rows, int index, string target)
    {
        if (rows.Count > 0 && rows[^1].Target == target && rows[^1].Last == index - 1)
            rows[^1] = (rows[^1].First, index, target);
        else rows.Add((index, index, target));
    }

    private static Content LeafContent(P2mTree tree, ulong leafBase)
    {
        Content c = Content.None;
        for (ulong i = 0; i < P2mTree.PfnsPerLeaf; i++)
        {
            c |= P2mTree.Classify(tree.Get(leafBase + i)) switch
            {
                P2mEntryKind.Ram => Content.Ram,
                P2mEntryKind.Identity => Content.Identity,
                P2mEntryKind.Foreign => Content.Foreign,
                _ => Content.Missing,
            };
        }
        return c;
    }

    private static string Describe(Content c)
    {
        var parts = new List<string>();
        if ((c & Content.Ram) != 0) parts.Add("RAM");
        if ((c & Content.Foreign) != 0) parts.Add("foreign");
        if ((c & Content.Identity) != 0) parts.Add("identity");
        if ((c & Content.Missing) != 0) parts.Add("missing");
        return string.Join(" + ", parts);
    }

    private static SKColor Fill(Content c) => c switch
    {
        Content.Ram => PictureColors.Ram,
        Content.Identity => PictureColors.Identity,
        Content.Missing => PictureColors.Missing,
        _ => PictureColors.Mixed,
    };

    private static P2mPictureBox MakeBox(string name, string title, string detail, SKColor fill, float x, ref float y,
        float width, List<(int First, int Last, string Target)> rows)
    {
        float height = HeaderHeight + rows.Count * RowHeight + (rows.Count > 0 ? 4 : 0);
        var rect = new SKRect(x, y, x + width, y + height);
        var placed = new List<P2mPictureRow>(rows.Count);
        for (int i = 0; i < rows.Count; i++)
        {
            float ry = y + HeaderHeight + i * RowHeight;
            placed.Add(new P2mPictureRow(rows[i].First, rows[i].Last, rows[i].Target, new SKRect(x + 4, ry, x + width - 4, ry + RowHeight)));
        }
        y += height + BoxGap;
        return new P2mPictureBox(name, title, detail, fill, rect, placed);
    }

    /// <summary>Draws the laid-out tree on a fresh bitmap.</summary>
    public static SKBitmap Draw(P2mTreeDiagram diagram)
    {
        ArgumentNullException.ThrowIfNull(diagram);
        var bmp = PictureKit.NewBitmap(diagram.Width, diagram.Height);
        using var canvas = new SKCanvas(bmp);
        PictureKit.Text(canvas, diagram.Title, Margin, Margin, 17, PictureColors.Ink);
        PictureKit.Text(canvas, "top", TopX, ColumnTop - 20, 12, PictureColors.Muted);
        PictureKit.Text(canvas, "mid pages (512 entries, 2 MiB each)", MidX, ColumnTop - 20, 12, PictureColors.Muted);
        PictureKit.Text(canvas, "leaf pages (512 entries, one per pfn)", LeafX, ColumnTop - 20, 12, PictureColors.Muted);

        var byName = new Dictionary<string, P2mPictureBox>();
        foreach (var b in diagram.Boxes) byName[b.Name] = b;

        // Arrows under the boxes: from each row's right edge to the target box's left edge.
        foreach (var b in diagram.Boxes)
            foreach (var r in b.Rows)
            {
                var target = byName[r.Target];
                var color = target.Name is LeafIdentity or MidIdentity ? PictureColors.Identity
                    : target.Name is LeafMissing or MidMissing ? PictureColors.Muted : PictureColors.Ink;
                Arrow(canvas, r.Rect.Right, r.Rect.MidY, target.Rect.Left, Math.Clamp(r.Rect.MidY, target.Rect.Top + 10, target.Rect.Bottom - 10), color);
            }

        foreach (var b in diagram.Boxes)
        {
            bool dark = b.Fill == PictureColors.Identity, pale = b.Fill == PictureColors.Allocated || b.Fill == PictureColors.Shared;
            PictureKit.Box(canvas, b.Rect, b.Fill, PictureColors.Ink);
            PictureKit.Text(canvas, b.Title, b.Rect.Left + 6, b.Rect.Top + 4, 12, dark ? SKColors.White : PictureColors.Ink);
            PictureKit.Text(canvas, b.Detail, b.Rect.Left + 6, b.Rect.Top + 20, 11, dark ? SKColors.White : pale ? PictureColors.Muted : PictureColors.Ink);
            foreach (var r in b.Rows)
            {
                string index = r.First == r.Last ? $"[{r.First}]" : $"[{r.First}..{r.Last}]";
                var target = byName[r.Target];
                string to = "-> " + (target.Name.StartsWith("p2m_", StringComparison.Ordinal) ? target.Name : target.Title);
                PictureKit.Text(canvas, index, r.Rect.Left + 2, r.Rect.Top + 2, 11, PictureColors.Ink);
                float w = r.Rect.Width - 80;
                PictureKit.Text(canvas, Fit(to, w, 11), r.Rect.Right - 4, r.Rect.Top + 2, 11, PictureColors.Muted, SKTextAlign.Right);
            }
        }

        float ly = diagram.Height - LegendHeight + 12;
        PictureKit.Legend(canvas, Margin, ly,
            (PictureColors.Ram, "RAM"), (PictureColors.Identity, "identity (1:1)"), (PictureColors.Missing, "missing (INVALID)"),
            (PictureColors.Mixed, "leaf of mixed kinds"), (PictureColors.Shared, "shared page"), (PictureColors.Allocated, "allocated page"));
        return bmp;
    }

    private static string Fit(string s, float width, float size)
    {
        if (PictureKit.TextWidth(s, size) <= width) return s;
        while (s.Length > 4 && PictureKit.TextWidth(s + "...", size) > width) s = s[..^1];
        return s + "...";
    }

    private static void Arrow(SKCanvas canvas, float x0, float y0, float x1, float y1, SKColor color)
    {
        using var paint = PictureKit.Stroke(color, 1.2f);
        using var path = new SKPath();
        float mid = (x0 + x1) / 2;
        path.MoveTo(x0, y0);
        path.CubicTo(mid, y0, mid, y1, x1 - 6, y1);
        canvas.DrawPath(path, paint);
        using var head = new SKPath();
        head.MoveTo(x1, y1);
        head.LineTo(x1 - 7, y1 - 4);
        head.LineTo(x1 - 7, y1 + 4);
        head.Close();
        using var fill = new SKPaint { Color = color, Style = SKPaintStyle.Fill, IsAntialias = true };
        canvas.DrawPath(head, fill);
    }

    /// <summary>Lays out, draws and writes the tree as a PNG.</summary>
    public static PictureView Save(P2mTree tree, string title, string path)
    {
        var diagram = Layout(tree, title);
        using var bmp = Draw(diagram);
        return PictureKit.Save(bmp, path, "P2mTree");
    }
}
