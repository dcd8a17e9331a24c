// Seed 002's open question as a cmdlet: one run of the walk-or-VLPT measurement on a private
// host (the session's domains are not touched), its counts in real units and their cycles.
using System.Collections;
using System.Management.Automation;
using XenLab.Paging.Arm;
using XenLab.Paging.Modes;

namespace XenLab.PowerShell;

[Cmdlet(VerbsDiagnostic.Measure, "XenVlpt")]
[OutputType(typeof(VlptMeasurement))]
public sealed class MeasureXenVlptCommand : XenCmdlet
{
    [Parameter(Position = 0)]
    public ArmLeafLookup Lookup { get; set; } = ArmLeafLookup.Vlpt;

    [Parameter]
    public VlptLayout Layout { get; set; } = VlptLayout.PerDomainSlices;

    [Parameter]
    public VlptInvalidation Invalidation { get; set; } = VlptInvalidation.ByAddress;

    [Parameter]
    [ValidateRange(1, 64)]
    public int Domains { get; set; } = 2;

    [Parameter]
    [ValidateRange(0, 65536)]
    public int FaultsPerSwitch { get; set; } = 16;

    [Parameter]
    [ValidateRange(1, 65536)]
    public int Switches { get; set; } = 64;

    [Parameter]
    [ValidateRange(4, 4096)]
    public int DomainMemoryMB { get; set; } = 64;

    [Parameter]
    [ValidateRange(1, 65536)]
    public int TlbEntries { get; set; } = HypervisorTlb.DefaultEntries;

    [Parameter]
    [ValidateRange(1, 64)]
    public int TlbWays { get; set; } = HypervisorTlb.DefaultWays;

    [Parameter]
    [ValidateRange(0, 4096)]
    public int WorkingSetPages { get; set; } = HypervisorTlb.DefaultWorkingSetPages;

    [Parameter]
    public Hashtable? Cost { get; set; }

    protected override void Process()
    {
        var costs = VlptCosts.Default;
        if (Cost is not null)
            foreach (DictionaryEntry e in Cost)
                costs = costs.With(e.Key?.ToString() ?? "", LanguagePrimitives.ConvertTo<double>(e.Value));
        var options = new VlptExperimentOptions
        {
            Lookup = Lookup, Layout = Layout, Invalidation = Invalidation, Domains = Domains, FaultsPerSwitch = FaultsPerSwitch,
            Switches = Switches, DomainMemoryMiB = (ulong)DomainMemoryMB, TlbEntries = TlbEntries, TlbWays = TlbWays,
            WorkingSetPages = WorkingSetPages, Costs = costs,
        };
        WriteObject(VlptExperiment.Run(options));
    }
}
