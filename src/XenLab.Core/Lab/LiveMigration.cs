// A pre-copy live migration driven by log-dirty (Xen's xc_domain_save loop): the first round
// sends every page, each later round sends what the guest dirtied while the previous round was
// on the wire, until the dirty set is small enough (or stops shrinking) for a short
// stop-and-copy. The guest keeps writing between rounds through its vCPUs, so every write goes
// through the paging mode's log-dirty machinery; how much it writes per page sent is the
// dirty rate a lab turns up until migration no longer converges.
//
// A stop (cancellation) comes between two guest writes or two rounds, never inside a write: the
// guest's writes so far stay in its memory, the working-set mapping stays, log-dirty is put back
// as it was (disabled again, or, when it was on before, left on with the stopped round's dirty
// pages in its log) and no result is returned: a migration that did not finish moved nothing.
using System;
using System.Collections.Generic;
using System.Threading;
using XenLab.Diagnostics;
using XenLab.Dirty;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Memory;
using XenLab.Progress;

namespace XenLab.Lab;

public sealed record MigrationRound(int Round, long PagesSent, long GuestWrites, long DirtyAfter, long LogDirtyFaults)
{
    public override string ToString() => $"round {Round}: sent {PagesSent}, guest wrote {GuestWrites} times, {DirtyAfter} dirty after";
}

public sealed record MigrationResult(string DomainName, string Mode, IReadOnlyList<MigrationRound> Rounds, bool Converged, long PagesSent, long StopAndCopyPages, string Why)
{
    /// <summary>The log-dirty bitmap read (and cleaned) at the end of each round: what the next round sends.</summary>
    public IReadOnlyList<DirtyLogView> DirtyLogs { get; init; } = Array.Empty<DirtyLogView>();

    public override string ToString() =>
        $"{DomainName} ({Mode}): {Rounds.Count} pre-copy round(s), {PagesSent} pages sent, stop-and-copy of {StopAndCopyPages}: {Why}";
}

public static class LiveMigration
{
    public const ulong WorkingSetVa = 0x30000000;
    public const ulong WorkingSetGfn = 0x4000;

    /// <param name="d">The domain to migrate (log-dirty is enabled for the run).</param>
    /// <param name="dirtyRatio">Guest writes per page sent in the previous round (writes happen while pages are on the wire).</param>
    /// <param name="workingSetPages">Pages the guest writes into; 90% of writes go to the hottest tenth of them.</param>
    /// <param name="maxRounds">Give up pre-copying after this many rounds.</param>
    /// <param name="stopAt">Stop-and-copy once no more than this many pages are dirty.</param>
    /// <param name="seed">Seed of the guest's write pattern.</param>
    /// <param name="progress">Told each round and every few thousand guest writes.</param>
    /// <param name="cancel">Stops the migration between guest writes (OperationCanceledException).</param>
    public static MigrationResult PreCopy(Domain d, double dirtyRatio = 0.05, int workingSetPages = 4096, int maxRounds = 30, long stopAt = 64, int seed = 1,
        IProgress<LabProgress>? progress = null, CancellationToken cancel = default)
    {
        using var op = d.EnterOperation();
        if (!(dirtyRatio >= 0 && dirtyRatio <= 100)) throw new InvalidConfigurationException($"dirty ratio {dirtyRatio} must be between 0 and 100.");
        if (workingSetPages < 16 || workingSetPages > 1 << 20) throw new InvalidConfigurationException($"working set {workingSetPages} pages must be between 16 and 1048576.");
        if (maxRounds < 1 || maxRounds > 1000) throw new InvalidConfigurationException($"max rounds {maxRounds} must be between 1 and 1000.");
        for (ulong g = WorkingSetGfn; g < WorkingSetGfn + (ulong)workingSetPages; g++)
            if (d.Classify(g) != PhysAccessStatus.Ok)
                throw new InvalidConfigurationException($"The working set needs RAM at gfn 0x{WorkingSetGfn:x}-0x{WorkingSetGfn + (ulong)workingSetPages - 1:x}; gfn 0x{g:x} is not populated.");
        if (d.Kernel.Mappings().Find(m => m.VirtualAddress == WorkingSetVa) is null)
            d.Kernel.Map(WorkingSetVa, WorkingSetGfn, (ulong)workingSetPages, MapFlags.Writable);

        var rng = new Random(seed);
        var rounds = new List<MigrationRound>();
        var reporter = new ProgressReporter(progress, cancel);
        bool wasEnabled = d.LogDirty.Enabled;
        d.LogDirty.Enable();
        try
        {
            return RunRounds(d, dirtyRatio, workingSetPages, maxRounds, stopAt, rng, rounds, reporter);
        }
        finally
        {
            if (!wasEnabled) d.LogDirty.Disable();
        }
    }

    /// <summary>Every guest writes this many times between two safe points of a round.</summary>
    private const int WritesPerStep = 4096;

    private static MigrationResult RunRounds(Domain d, double dirtyRatio, int workingSetPages, int maxRounds, long stopAt, Random rng, List<MigrationRound> rounds, ProgressReporter reporter)
    {
        d.LogDirty.Read(clean: true);                                   // start from a clean log
        var logs = new List<DirtyLogView>();
        long toSend = (long)d.PopulatedPages;                         // round 1: every page
        long total = 0, best = long.MaxValue, stalls = 0;
        string why = "";
        bool converged = false;
        var buf = new byte[8];
        for (int round = 1; ; round++)
        {
            long faultsBefore = d.Counters[PerfCounter.LogDirtyFault];
            // While this round's pages are on the wire the guest runs.
            long writes = (long)Math.Ceiling(toSend * dirtyRatio);
            int hot = Math.Max(1, workingSetPages / 10);
            reporter.Begin($"Pre-copy migration of domain '{d.Name}': round {round}, {toSend} page(s) on the wire", writes, "guest write");
            long timed = 0;                                                // writes whose time has passed on the domain clock
            for (long w = 0; w < writes; w++)
            {
                if (w % WritesPerStep == 0 && w > 0)
                {
                    d.AdvanceClockInOperation((w - timed) * Cpu.X86Cpu.NsPerInstruction);   // a guest write as one instruction
                    timed = w;
                    reporter.Step(w);                                      // safe point: between two whole guest writes
                }
                int page = rng.Next(10) < 9 ? rng.Next(hot) : rng.Next(workingSetPages);
                BitConverter.TryWriteBytes(buf, w);
                var v = d.Vcpus[(int)(w % d.Vcpus.Count)];
                var r = v.WriteVirtual(WorkingSetVa + ((ulong)page << Page.Shift) + (ulong)rng.Next(4088), buf);
                if (!r.IsOk) throw new WorkloadFaultException($"migration workload write failed: {r}");
            }
            d.AdvanceClockInOperation((writes - timed) * Cpu.X86Cpu.NsPerInstruction);
            total += toSend;
            var log = d.LogDirty.Read(clean: true);
            rounds.Add(new MigrationRound(round, toSend, writes, log.DirtyPages, d.Counters[PerfCounter.LogDirtyFault] - faultsBefore));
            logs.Add(log);
            toSend = log.DirtyPages;
            if (toSend <= stopAt) { converged = true; why = $"dirty set down to {toSend} page(s) (<= {stopAt})"; break; }
            if (toSend < best) { best = toSend; stalls = 0; }
            else if (++stalls >= 3) { why = $"dirty set stopped shrinking (best {best} pages): the guest dirties pages as fast as they are sent"; break; }
            if (round >= maxRounds) { why = $"round limit {maxRounds} reached"; break; }
        }
        // Stop-and-copy: the guest is paused, what is dirty goes over once.
        total += toSend;
        reporter.Complete(toSend);
        return new MigrationResult(d.Name, d.PagingMode.ToString(), rounds, converged, total, toSend, why) { DirtyLogs = logs };
    }
}
