// A domain's own clock (Domain.ClockNs) after time was let pass: what Step-XenDomainClock emits.
using System.Globalization;
using XenLab.Domains;

namespace XenLab.Views;

/// <summary>A domain's clock: where it stands now and how far the last step moved it.</summary>
public sealed record DomainClockView(string DomainName, long ClockNs, long AdvancedNs)
{
    /// <summary>The clock in seconds (exact: nanoseconds as a decimal).</summary>
    public decimal Seconds => ClockNs / 1_000_000_000m;

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"domain '{DomainName}': clock {Seconds:0.000000000} s (+{AdvancedNs / 1_000_000m:0.######} ms)");

    /// <summary>Lets <paramref name="nanoseconds"/> of domain time pass and reports the clock.</summary>
    public static DomainClockView Advance(Domain d, long nanoseconds)
    {
        using var op = d.EnterOperation();
        d.AdvanceClock(nanoseconds);
        return new DomainClockView(d.Name, d.ClockNs, nanoseconds);
    }
}
