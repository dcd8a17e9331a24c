// Progress and stopping for long work (workloads, guest-code frames, live migration, big domain
// builds, oracle runs). A long operation takes an IProgress<LabProgress> and a CancellationToken
// and hands them to a ProgressReporter, whose Step it calls at safe points: between whole rounds,
// frames, batches of guest writes or chunks of a build, never inside the per-instruction or
// per-access hot paths. A stop surfaces as OperationCanceledException thrown from a Step, so
// whatever the operation was doing at that moment had finished; each operation documents what a
// stop leaves behind.
using System;
using System.Globalization;
using System.Threading;

namespace XenLab.Progress;

/// <summary>Where a long operation is: what it is doing and how far it has got.</summary>
/// <param name="Activity">The operation, e.g. "Workload pt-churn on 'lab'".</param>
/// <param name="Status">Where in it, e.g. "round 120 of 200".</param>
/// <param name="Done">Units finished.</param>
/// <param name="Total">Units in all; 0 or less when not known.</param>
/// <param name="Completed">The last report of the activity: it has finished (or stopped).</param>
public readonly record struct LabProgress(string Activity, string Status, long Done, long Total, bool Completed = false)
{
    /// <summary>0 to 100; -1 when the total is not known.</summary>
    public int PercentComplete => Total <= 0 ? -1 : (int)Math.Clamp(Done * 100 / Total, 0, 100);

    public override string ToString() =>
        PercentComplete < 0 ? $"{Activity}: {Status}" : string.Create(CultureInfo.InvariantCulture, $"{Activity}: {Status} ({PercentComplete}%)");
}

/// <summary>
/// An <see cref="IProgress{T}"/> that calls its handler on the reporting thread, at once.
/// (<see cref="Progress{T}"/> posts to a synchronization context instead, which a PowerShell
/// pipeline or a console does not have in the way a cmdlet's WriteProgress needs.)
/// </summary>
public sealed class SynchronousProgress : IProgress<LabProgress>
{
    private readonly Action<LabProgress> _handler;
    public SynchronousProgress(Action<LabProgress> handler) => _handler = handler ?? throw new ArgumentNullException(nameof(handler));
    public void Report(LabProgress value) => _handler(value);
}

/// <summary>
/// What a long operation calls at its safe points: reports progress when the percentage (or the
/// activity) has moved, so a sink sees at most about a hundred reports per activity, and throws
/// <see cref="OperationCanceledException"/> when a stop has been asked for. A report goes out
/// before the stop check, so a sink that asks for a stop while handling a report stops the
/// operation at exactly that point (what the tests use to stop after a known number of steps).
/// </summary>
public sealed class ProgressReporter
{
    private readonly IProgress<LabProgress>? _sink;
    private readonly CancellationToken _cancel;
    private string _activity = "";
    private string _unit = "";
    private long _total;
    private int _lastPercent = int.MinValue;
    private long _lastDone = long.MinValue;

    public ProgressReporter(IProgress<LabProgress>? sink, CancellationToken cancel)
    {
        _sink = sink;
        _cancel = cancel;
    }

    /// <summary>Nothing watches and nothing stops: what operations use when given neither.</summary>
    public static ProgressReporter None { get; } = new(null, CancellationToken.None);

    public CancellationToken CancellationToken => _cancel;
    public bool IsStopRequested => _cancel.IsCancellationRequested;

    /// <summary>Starts (or moves on to) an activity of <paramref name="total"/> <paramref name="unit"/>s and reports 0 of them.</summary>
    public void Begin(string activity, long total, string unit)
    {
        _activity = activity;
        _total = total;
        _unit = unit;
        _lastPercent = int.MinValue;
        _lastDone = long.MinValue;
        Step(0);
    }

    /// <summary>
    /// A safe point after <paramref name="done"/> units: reports when the percentage moved (every
    /// step when the total is unknown) and throws when a stop was asked for.
    /// </summary>
    /// <param name="done">Units finished so far.</param>
    /// <param name="status">What to show; null: "unit N of TOTAL".</param>
    public void Step(long done, string? status = null)
    {
        if (_sink is not null)
        {
            var p = new LabProgress(_activity, "", done, _total);
            int percent = p.PercentComplete;
            if (percent != _lastPercent || (percent < 0 && done != _lastDone))
            {
                _lastPercent = percent;
                _lastDone = done;
                _sink.Report(p with { Status = status ?? DefaultStatus(done) });
            }
        }
        _cancel.ThrowIfCancellationRequested();
    }

    /// <summary>The activity finished (or stopped): tells the sink so it can take its bar down. Never throws for a stop.</summary>
    public void Complete(long done)
    {
        _sink?.Report(new LabProgress(_activity, DefaultStatus(done), done, _total, Completed: true));
    }

    private string DefaultStatus(long done) => _total > 0
        ? string.Create(CultureInfo.InvariantCulture, $"{_unit} {done} of {_total}")
        : string.Create(CultureInfo.InvariantCulture, $"{done} {_unit}(s)");
}
