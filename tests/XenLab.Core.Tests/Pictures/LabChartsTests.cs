using System.Collections.Generic;
using ScottPlot;
using XenLab.Config;
using XenLab.Domains;
using XenLab.Lab;
using XenLab.Pictures;

namespace XenLab.Tests.Pictures;

public class LabChartsTests
{
    [Fact]
    public void EachBarIsDrawnInItsSeriesColourAtItsValue()
    {
        // Lab 01's shape: walk references per mode; two series.
        var categories = new[] { "HAP, no cache", "HAP, cache", "shadow" };
        var series = new List<ChartSeries> { new("walk refs", new double[] { 2400, 900, 400 }), new("TLB misses", new double[] { 100, 100, 100 }) };
        var plot = LabCharts.Bars("walk references per mode", "references", categories, series);
        using var files = new PictureFiles();
        var view = LabCharts.Save(plot, files.Path("bars.png"), 800, 400);
        using var bmp = PictureFiles.Decode(view.Path);
        Assert.Equal((800, 400), (bmp.Width, bmp.Height));
        // Series 0 bars sit left of each category's centre, series 1 right; halfway up each bar is its colour.
        for (int c = 0; c < categories.Length; c++)
        {
            Pixel p0 = plot.GetPixel(new Coordinates(c - 0.2, series[0].Values[c] / 2));
            PictureFiles.AssertColor(LabCharts.Palette[0], bmp, p0.X, p0.Y, $"{categories[c]} walk refs");
            Pixel p1 = plot.GetPixel(new Coordinates(c + 0.2, series[1].Values[c] / 2));
            PictureFiles.AssertColor(LabCharts.Palette[1], bmp, p1.X, p1.Y, $"{categories[c]} TLB misses");
        }
        // Above the shorter bar of the last group: background, not a bar.
        Pixel above = plot.GetPixel(new Coordinates(2 - 0.2, 1000));
        Assert.NotEqual(LabCharts.Palette[0], bmp.GetPixel((int)above.X, (int)above.Y));
    }

    [Fact]
    public void MismatchedSeriesAreRefused()
    {
        Assert.Throws<InvalidConfigurationException>(() =>
            LabCharts.Bars("t", "y", new[] { "a", "b" }, new[] { new ChartSeries("s", new double[] { 1 }) }));
    }

    [Fact]
    public void PreCopyChartPlotsEachRoundsPagesOnALogScale()
    {
        var host = new XenHost(2UL << 30);
        var d = host.CreateDomain(TestDomains.Config("mig", 128));
        var r = LiveMigration.PreCopy(d, dirtyRatio: 0.02, workingSetPages: 2048);
        var plot = LabCharts.PreCopyRounds(new[] { r }, "pre-copy");
        using var files = new PictureFiles();
        var view = LabCharts.Save(plot, files.Path("precopy.png"));
        using var bmp = PictureFiles.Decode(view.Path);
        Assert.Equal((LabCharts.DefaultWidth, LabCharts.DefaultHeight), (bmp.Width, bmp.Height));
        // The marker of round 1 (every populated page) is at log10(pages): in the series colour.
        Pixel p = plot.GetPixel(new Coordinates(1, System.Math.Log10(r.Rounds[0].PagesSent)));
        PictureFiles.AssertColor(LabCharts.Palette[0], bmp, p.X, p.Y, "round 1 marker");
    }
}
