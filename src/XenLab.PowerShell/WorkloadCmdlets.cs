// Built-in memory workloads (page-table churn, in-place PTE updates), run through the guest
// kernel and the vCPUs so that labs compare paging modes on the same work.
using System;
using System.Collections.Generic;
using System.Management.Automation;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Lab;
using XenLab.Views;

namespace XenLab.PowerShell;

[Cmdlet(VerbsLifecycle.Invoke, "XenWorkload", DefaultParameterSetName = ParameterSets.DomainName, SupportsShouldProcess = true)]
[OutputType(typeof(WorkloadResult), typeof(PerfCounterView))]
public sealed class InvokeXenWorkloadCommand : DomainCmdlet
{
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateSet("pt-churn", "pte-update")]
    public string Name { get; set; } = null!;

    [Parameter]
    [ValidateRange(1, 1_000_000)]
    public int Rounds { get; set; } = 200;

    [Parameter]
    public SwitchParameter AsCounter { get; set; }

    private static readonly Dictionary<string, PerfCounter> s_byName = ByName();

    protected override void Process(Domain domain)
    {
        // The workload maps pages and writes guest memory: a state change like any other.
        if (!ShouldProcess($"Domain '{domain.Name}'", $"Run workload {Name} for {Rounds} round(s)")) return;
        WorkloadResult result;
        try
        {
            result = MemoryWorkloads.Run(domain, Name.ToLowerInvariant(), Rounds, Progress, StopToken);   // stops between rounds
        }
        catch (WorkloadFaultException e)
        {
            // A guest access of the workload failed: the guest's state is not what the workload set up.
            WriteFailure("WorkloadFault", ErrorCategory.InvalidOperation, domain, $"Workload '{Name}' on domain '{domain.Name}' stopped: {e.Message}");
            return;
        }
        WriteVerbose($"Domain '{domain.Name}': {Name} x {Rounds} in {result.Mode} ({result.Options}): {result.Operations} guest operation(s), {result.Counters.Count} counter(s) moved.");
        if (!AsCounter)
        {
            WriteObject(result);
            return;
        }
        var names = new List<string>(result.Counters.Keys);
        names.Sort(StringComparer.Ordinal);
        foreach (string n in names)
        {
            string description = s_byName.TryGetValue(n, out var c) ? PerfCounterInfo.Description(c) : "";
            WriteObject(new PerfCounterView(domain.Name, n, result.Counters[n], description));
        }
    }

    private static Dictionary<string, PerfCounter> ByName()
    {
        var map = new Dictionary<string, PerfCounter>(StringComparer.Ordinal);
        foreach (var c in Enum.GetValues<PerfCounter>()) map[PerfCounterInfo.Name(c)] = c;
        return map;
    }
}
