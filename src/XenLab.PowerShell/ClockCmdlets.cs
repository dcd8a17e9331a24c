// The domain's own clock (Domain.ClockNs): what mainline VRAM tracking's two seconds and a
// lab's frame intervals are measured in. Guest instructions move it (1 ns each); this cmdlet
// lets time pass without running guest code, as an idle display does between frames.
using System.Management.Automation;
using XenLab.Domains;
using XenLab.Views;

namespace XenLab.PowerShell;

[Cmdlet(VerbsCommon.Step, "XenDomainClock", DefaultParameterSetName = ParameterSets.DomainName, SupportsShouldProcess = true)]
[OutputType(typeof(DomainClockView))]
public sealed class StepXenDomainClockCommand : DomainCmdlet
{
    /// <summary>Milliseconds of domain time to let pass; decimal so that 2000.000001 is exactly 2 s + 1 ns.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    public decimal Milliseconds { get; set; }

    protected override void Process(Domain domain)
    {
        long ns = domain.ClockStepFromMilliseconds(Milliseconds);          // negative or too large: DomainClockOutOfRange
        if (!ShouldProcess($"Domain '{domain.Name}'", $"Let {ns} ns of domain time pass (clock {domain.ClockNs} ns)")) return;
        WriteObject(DomainClockView.Advance(domain, ns));
    }
}
