// Pictures as PNG files: Export-XenPicture draws a domain's structures (the p2m tree, one
// translation's walk, the log-dirty bitmap) or a migration's dirty map per round; Export-XenChart
// draws a chart of lab results from the objects piped in. Framebuffers keep Export-XenFramebuffer.
// Each body is one call into XenLab.Core's Pictures.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Management.Automation;
using XenLab.Domains;
using XenLab.Lab;
using XenLab.Pictures;

namespace XenLab.PowerShell;

/// <summary>What Export-XenPicture draws.</summary>
public enum PictureKind
{
    /// <summary>The p2m tree: top, mid and leaf pages, each shared page once.</summary>
    P2mTree,
    /// <summary>One translation's memory references (the 2D walk grid under HAP and ARM, the shadow walk).</summary>
    Walk,
    /// <summary>The log-dirty bitmap: now (a peek) for a domain, per round for a migration.</summary>
    DirtyMap,
}

// The default set is Migration so that a piped MigrationResult binds by value before its DomainName
// property could bind by name; domains and names still pick their own sets.
[Cmdlet(VerbsData.Export, "XenPicture", DefaultParameterSetName = MigrationSet, SupportsShouldProcess = true)]
[OutputType(typeof(PictureView))]
public sealed class ExportXenPictureCommand : XenCmdlet
{
    public const string MigrationSet = "Migration";

    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ParameterSets.Domain)]
    [ValidateNotNull]
    public Domain Domain { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainName)]
    [ArgumentCompleter(typeof(DomainNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string DomainName { get; set; } = null!;

    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = MigrationSet)]
    [ValidateNotNull]
    public MigrationResult Migration { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 1)]
    public PictureKind Kind { get; set; }

    [Parameter(Mandatory = true, Position = 2)]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = null!;

    [Parameter(ParameterSetName = ParameterSets.Domain)]
    [Parameter(ParameterSetName = ParameterSets.DomainName)]
    [AddressTransformation]
    public ulong? VirtualAddress { get; set; }

    [Parameter(ParameterSetName = ParameterSets.Domain)]
    [Parameter(ParameterSetName = ParameterSets.DomainName)]
    [ValidateRange(0, 63)]
    public int Vcpu { get; set; }

    protected override void Process()
    {
        if (ParameterSetName == MigrationSet)
        {
            ErrorTarget = Migration;
            if (Kind != PictureKind.DirtyMap)
            {
                WriteFailure("PictureKindNotForMigration", ErrorCategory.InvalidArgument, Migration,
                    $"A migration can be drawn as -Kind DirtyMap only, not {Kind}; draw a domain for {Kind}.");
                return;
            }
            if (!TryResolveOutputFile(Path, $"{Migration.DomainName}-dirtymap.png", $"the dirty map of '{Migration.DomainName}'", out string mfile)) return;
            if (!ShouldProcess(mfile, $"Write the dirty map of {Migration.Rounds.Count} pre-copy round(s) of '{Migration.DomainName}' as a PNG")) return;
            WriteObject(DirtyMapPicture.Save(Migration, mfile));
            return;
        }
        var d = ResolveDomain(ParameterSetName == ParameterSets.Domain ? Domain : null, DomainName);
        if (d is null) return;
        if (Kind == PictureKind.Walk && VirtualAddress is null)
        {
            WriteFailure("VirtualAddressRequired", ErrorCategory.InvalidArgument, d, "-Kind Walk needs -VirtualAddress: the address whose translation to draw.");
            return;
        }
        if (Kind != PictureKind.Walk && VirtualAddress is not null)
        {
            WriteFailure("VirtualAddressNotUsed", ErrorCategory.InvalidArgument, d, $"-VirtualAddress is for -Kind Walk only, not {Kind}.");
            return;
        }
        string name = Kind switch
        {
            PictureKind.P2mTree => $"{d.Name}-p2m.png",
            PictureKind.Walk => string.Create(CultureInfo.InvariantCulture, $"{d.Name}-walk-{VirtualAddress:x}.png"),
            _ => $"{d.Name}-dirtymap.png",
        };
        if (!TryResolveOutputFile(Path, name, $"the {Kind} picture of '{d.Name}'", out string file)) return;
        if (!ShouldProcess(file, $"Write the {Kind} picture of domain '{d.Name}' as a PNG")) return;
        PictureView view = Kind switch
        {
            PictureKind.P2mTree => P2mTreePicture.Save(d.P2m, $"p2m tree of {d.Name} ({d.Config.IdentityStrategy} identity)", file) with { DomainName = d.Name },
            PictureKind.Walk => WalkPicture.Save(d, Vcpu, VirtualAddress!.Value, file),
            _ => DirtyMapPicture.Save(d.LogDirty.Read(clean: false), file),
        };
        WriteObject(view);
    }
}

[Cmdlet(VerbsData.Export, "XenChart", DefaultParameterSetName = TableSet, SupportsShouldProcess = true)]
[OutputType(typeof(PictureView))]
public sealed class ExportXenChartCommand : XenCmdlet
{
    public const string TableSet = "Table";
    public const string MigrationSet = "Migration";

    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = TableSet)]
    [ValidateNotNull]
    public PSObject InputObject { get; set; } = null!;

    [Parameter(Mandatory = true, ParameterSetName = TableSet)]
    [ValidateNotNullOrEmpty]
    public string Category { get; set; } = null!;

    [Parameter(Mandatory = true, ParameterSetName = TableSet)]
    [ValidateNotNullOrEmpty]
    public string[] Value { get; set; } = null!;

    [Parameter(ParameterSetName = TableSet)]
    public SwitchParameter LogScale { get; set; }

    [Parameter(ParameterSetName = TableSet)]
    public string YLabel { get; set; } = "";

    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = MigrationSet)]
    [ValidateNotNull]
    public MigrationResult Migration { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = null!;

    [Parameter]
    public string Title { get; set; } = "";

    [Parameter]
    [ValidateRange(200, 8000)]
    public int Width { get; set; } = LabCharts.DefaultWidth;

    [Parameter]
    [ValidateRange(150, 8000)]
    public int Height { get; set; } = LabCharts.DefaultHeight;

    private readonly List<PSObject> _rows = new();
    private readonly List<MigrationResult> _migrations = new();

    protected override void Process()
    {
        if (ParameterSetName == MigrationSet) _migrations.Add(Migration);
        else _rows.Add(InputObject);
    }

    protected override void EndProcessing()
    {
        try
        {
            ScottPlot.Plot plot;
            string what;
            if (ParameterSetName == MigrationSet)
            {
                if (_migrations.Count == 0) return;
                plot = LabCharts.PreCopyRounds(_migrations, Title.Length > 0 ? Title : "Pages sent per pre-copy round");
                what = $"a chart of {_migrations.Count} migration(s)";
            }
            else
            {
                if (_rows.Count == 0) return;
                if (!TryTable(out var categories, out var series)) return;
                plot = LabCharts.Bars(Title, YLabel.Length > 0 ? YLabel : string.Join(", ", Value), categories, series, LogScale);
                what = $"a chart of {_rows.Count} row(s) of {string.Join(", ", Value)} by {Category}";
            }
            if (!TryResolveOutputFile(Path, "chart.png", what, out string file)) return;
            if (!ShouldProcess(file, $"Write {what} as a PNG")) return;
            WriteObject(LabCharts.Save(plot, file, Width, Height));
        }
        catch (XenLabException e)
        {
            WriteXenError(e, Path);
        }
    }

    /// <summary>Categories from -Category, one series per -Value property; a missing or non-numeric value is an error.</summary>
    private bool TryTable(out List<string> categories, out List<ChartSeries> series)
    {
        categories = new List<string>();
        var values = new List<double>[Value.Length];
        for (int v = 0; v < Value.Length; v++) values[v] = new List<double>();
        foreach (var row in _rows)
        {
            var cat = row.Properties[Category];
            if (cat is null)
            {
                WriteFailure("ChartPropertyNotFound", ErrorCategory.InvalidArgument, row, $"An input object has no property '{Category}' (-Category).");
                series = new List<ChartSeries>();
                return false;
            }
            categories.Add(Convert.ToString(cat.Value, CultureInfo.InvariantCulture) ?? "");
            for (int v = 0; v < Value.Length; v++)
            {
                var p = row.Properties[Value[v]];
                double number;
                try
                {
                    number = p is null ? double.NaN : Convert.ToDouble(PSObject.AsPSObject(p.Value).BaseObject, CultureInfo.InvariantCulture);
                }
                catch (Exception e) when (e is FormatException or InvalidCastException or OverflowException)
                {
                    number = double.NaN;
                }
                if (double.IsNaN(number))
                {
                    WriteFailure("ChartValueNotNumeric", ErrorCategory.InvalidArgument, row,
                        $"Row '{categories[^1]}': property '{Value[v]}' (-Value) is missing or not a number.");
                    series = new List<ChartSeries>();
                    return false;
                }
                values[v].Add(number);
            }
        }
        series = new List<ChartSeries>();
        for (int v = 0; v < Value.Length; v++) series.Add(new ChartSeries(Value[v], values[v]));
        return true;
    }
}
