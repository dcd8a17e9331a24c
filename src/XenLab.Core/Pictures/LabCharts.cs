// Charts of lab results, drawn by ScottPlot 5 (on the same SkiaSharp as the other pictures):
// pages sent per pre-copy round (lab 04), and grouped bars for any table of numbers: walk
// references per paging mode (lab 01), revalidations with and without snapshots (lab 02).
// Text uses the embedded font through a ScottPlot font resolver, so no system font is needed.
using System;
using System.Collections.Generic;
using ScottPlot;
using SkiaSharp;
using XenLab.Lab;

namespace XenLab.Pictures;

/// <summary>One bar series: a name for the legend and a value per category.</summary>
public sealed record ChartSeries(string Name, IReadOnlyList<double> Values);

public static class LabCharts
{
    public const int DefaultWidth = 900, DefaultHeight = 500;

    /// <summary>Series colours, in order (distinguishable, colour-blind friendly: Okabe-Ito).</summary>
    public static readonly SKColor[] Palette =
    {
        new(0x00, 0x72, 0xB2), new(0xE6, 0x9F, 0x00), new(0x00, 0x9E, 0x73), new(0xCC, 0x79, 0xA7),
        new(0x56, 0xB4, 0xE9), new(0xD5, 0x5E, 0x00), new(0xF0, 0xE4, 0x42), new(0x00, 0x00, 0x00),
    };

    private static readonly object FontLock = new();
    private static bool _fontRegistered;

    private sealed class EmbeddedFontResolver : IFontResolver
    {
        public SKTypeface? CreateTypeface(string fontName, bool bold, bool italic) =>
            string.Equals(fontName, PictureKit.FontFamily, StringComparison.OrdinalIgnoreCase) ? PictureKit.Typeface : null;

        public SKTypeface? CreateTypeface(string fontName, FontWeight weight, FontSlant slant, FontSpacing width) =>
            CreateTypeface(fontName, false, false);
    }

    private static Plot NewPlot(string title, string xLabel, string yLabel)
    {
        lock (FontLock)
        {
            if (!_fontRegistered)
            {
                Fonts.FontResolvers.Insert(0, new EmbeddedFontResolver());
                _fontRegistered = true;
            }
        }
        var plot = new Plot();
        plot.Font.Set(PictureKit.FontFamily);
        plot.Title(title, size: 16);
        plot.XLabel(xLabel, size: 13);
        plot.YLabel(yLabel, size: 13);
        return plot;
    }

    private static Color ColorOf(int i) { var c = Palette[i % Palette.Length]; return new Color(c.Red, c.Green, c.Blue); }

    /// <summary>
    /// Grouped bars: a group per category, a bar per series in it. With <paramref name="logScale"/>
    /// the bars show log10 of each value (ticks labelled in plain numbers), for counts that span decades.
    /// </summary>
    public static Plot Bars(string title, string yLabel, IReadOnlyList<string> categories, IReadOnlyList<ChartSeries> series, bool logScale = false)
    {
        ArgumentNullException.ThrowIfNull(categories);
        ArgumentNullException.ThrowIfNull(series);
        if (categories.Count == 0 || series.Count == 0) throw new InvalidConfigurationException("A bar chart needs at least one category and one series.");
        foreach (var s in series)
            if (s.Values.Count != categories.Count)
                throw new InvalidConfigurationException($"Series '{s.Name}' has {s.Values.Count} value(s) for {categories.Count} categories.");
        var plot = NewPlot(title, "", logScale ? yLabel + " (log scale)" : yLabel);
        double groupWidth = 0.8, barWidth = groupWidth / series.Count;
        for (int s = 0; s < series.Count; s++)
        {
            var bars = new List<Bar>();
            for (int c = 0; c < categories.Count; c++)
            {
                double v = series[s].Values[c];
                bars.Add(new Bar
                {
                    Position = c - groupWidth / 2 + barWidth * (s + 0.5),
                    Value = logScale ? Math.Log10(Math.Max(v, 1)) : v,
                    Size = barWidth * 0.92,
                    FillColor = ColorOf(s),
                    LineWidth = 0,
                });
            }
            var plottable = plot.Add.Bars(bars);
            plottable.LegendText = series[s].Name;
        }
        var ticks = new Tick[categories.Count];
        for (int c = 0; c < categories.Count; c++) ticks[c] = new Tick(c, categories[c]);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks);
        plot.Axes.Bottom.MajorTickStyle.Length = 0;
        if (logScale) LogTicks(plot);
        plot.Axes.Margins(bottom: 0);
        if (series.Count > 1) plot.ShowLegend(Edge.Right);   // outside the data area: never over a bar
        else plot.HideLegend();
        return plot;
    }

    private static void LogTicks(Plot plot)
    {
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
        {
            MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
            IntegerTicksOnly = true,
            LabelFormatter = y => Math.Pow(10, y).ToString("N0", System.Globalization.CultureInfo.InvariantCulture),
        };
    }

    /// <summary>Lab 04: pages sent in each pre-copy round, one line per migration (log scale: round 1 sends everything).</summary>
    public static Plot PreCopyRounds(IReadOnlyList<MigrationResult> runs, string title, IReadOnlyList<string>? labels = null)
    {
        ArgumentNullException.ThrowIfNull(runs);
        if (runs.Count == 0) throw new InvalidConfigurationException("A pre-copy chart needs at least one migration.");
        var plot = NewPlot(title, "pre-copy round (the last point: stop-and-copy)", "pages sent (log scale)");
        for (int i = 0; i < runs.Count; i++)
        {
            var r = runs[i];
            var xs = new double[r.Rounds.Count + 1];
            var ys = new double[r.Rounds.Count + 1];
            for (int k = 0; k < r.Rounds.Count; k++) { xs[k] = r.Rounds[k].Round; ys[k] = Math.Log10(Math.Max(1, r.Rounds[k].PagesSent)); }
            xs[^1] = r.Rounds.Count + 1;
            ys[^1] = Math.Log10(Math.Max(1, r.StopAndCopyPages));
            var line = plot.Add.Scatter(xs, ys, ColorOf(i));
            line.LineWidth = 2;
            line.MarkerSize = 6;
            string label = labels is not null && i < labels.Count ? labels[i] : $"{r.DomainName} ({r.Mode})";
            line.LegendText = $"{label}: {r.Rounds.Count} rounds, {(r.Converged ? "converged" : "no convergence")}";
        }
        LogTicks(plot);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        plot.ShowLegend(Edge.Right);
        return plot;
    }

    /// <summary>Renders the chart and writes it as a PNG.</summary>
    public static PictureView Save(Plot plot, string path, int width = DefaultWidth, int height = DefaultHeight)
    {
        ArgumentNullException.ThrowIfNull(plot);
        if (width < 200 || height < 150 || width > 8000 || height > 8000)
            throw new InvalidConfigurationException($"A chart of {width}x{height} pixels is too small or too large (200x150 to 8000x8000).");
        using var bmp = PictureKit.NewBitmap(width, height);
        using (var canvas = new SKCanvas(bmp)) plot.Render(canvas, width, height);
        return PictureKit.Save(bmp, path, "Chart");
    }
}
