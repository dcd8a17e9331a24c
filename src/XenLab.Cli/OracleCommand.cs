// xenlab --oracle: the dirty-tracking oracle headless (Test-XenDirtyTracking's engine). Runs
// every mode/strategy variant (or the ones named) on a copy of the lab's domain, seeds in
// parallel when asked, and prints one line per run plus the reproducer of any failure. Exit
// code 0 when nothing was missed, 1 otherwise. Kept apart from the main option parser: the
// only hook is one line in Program.cs.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using XenLab.Config;
using XenLab.Lab;

namespace XenLab.Cli;

public static class OracleCommand
{
    public const string Usage =
        "usage: xenlab [lab.yaml] --oracle [--steps N] [--seed S] [--seeds K] [--variant NAME]... [--audit-every N] [--no-switch]\n" +
        "  --oracle          seeded random operations on a copy of the domain, checked against a model of the pages written\n" +
        "  --steps N         operations per run (default 10000)\n" +
        "  --seed S          first seed (default 1)\n" +
        "  --seeds K         run K seeds (S, S+1, ...) per variant, in parallel (default 1)\n" +
        "  --variant NAME    only variants whose name contains NAME (repeatable), e.g. 'hap', 'shadow oos=off', 'dbit'\n" +
        "  --audit-every N   run the paging audit every N steps (default 16)\n" +
        "  --no-switch       no paging-mode switches among the operations\n" +
        "variants: " + "hap/types, hap/memcmp, hap 2 GiB/types (1 GiB EPT leaves), shadow oos=off|nosnapshot|snapshot/backlinks, shadow .../dbit, shadow .../types, shadow .../memcmp, arm walk|vlpt/avail, arm walk/memcmp\n";

    public static bool Handles(string[] args) => Array.IndexOf(args, "--oracle") >= 0;

    public static int Run(string[] args, TextWriter output)
    {
        string? file = null;
        long steps = 10_000;
        int seed = 1, seeds = 1, auditEvery = 16;
        bool switches = true;
        var filters = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            string Next() => i + 1 < args.Length ? args[++i] : throw new XenLabException($"{a} needs a value.");
            switch (a)
            {
                case "--oracle": break;
                case "-h": case "--help": output.Write(Usage); return 0;
                case "--steps": steps = Number(a, Next(), 0, long.MaxValue); break;
                case "--seed": seed = (int)Number(a, Next(), 0, int.MaxValue); break;
                case "--seeds": seeds = (int)Number(a, Next(), 1, 1024); break;
                case "--audit-every": auditEvery = (int)Number(a, Next(), 1, int.MaxValue); break;
                case "--variant": filters.Add(Next()); break;
                case "--no-switch": switches = false; break;
                default:
                    if (a.StartsWith('-')) throw new XenLabException($"Unknown option '{a}' with --oracle.\n{Usage}");
                    if (file is not null) throw new XenLabException($"Only one lab file may be given; got '{file}' and '{a}'.");
                    file = a;
                    break;
            }
        }
        var config = file is null ? DirtyTrackingOracle.DefaultConfig() : DomainConfigLoader.LoadFile(file);
        var variants = new List<OracleVariant>();
        foreach (var v in DirtyTrackingOracle.Variants)
        {
            if (file is not null && v.DefaultDomainOnly) continue;     // it would test another domain than the file's
            bool match = filters.Count == 0;
            foreach (var f in filters) match |= v.Name.Contains(f, StringComparison.OrdinalIgnoreCase);
            if (match) variants.Add(v);
        }
        if (variants.Count == 0) throw new XenLabException($"No oracle variant matches {string.Join(", ", filters)}.\n{Usage}");
        output.WriteLine($"dirty-tracking oracle on a copy of '{config.Name}': {variants.Count} variant(s) x {seeds} seed(s) x {steps} step(s), mode switches {(switches ? "on" : "off")}");
        long missed = 0, totalSteps = 0;
        bool failed = false;
        var gate = new object();
        foreach (var v in variants)
        {
            var results = new DirtyTrackingOracleResult[seeds];
            var opts = new DirtyTrackingOracleOptions { Steps = steps, AuditInterval = auditEvery, ModeSwitches = switches };
            Parallel.For(0, seeds, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, Environment.ProcessorCount) },
                k => results[k] = DirtyTrackingOracle.Run(config, v, opts with { Seed = seed + k }));
            long vSteps = 0, vMissed = 0, vOver = 0, vAll = 0, vSwitch = 0, vLdOver = 0;
            int vAudit = 0, vErr = 0;
            var elapsed = TimeSpan.Zero;
            foreach (var r in results)
            {
                vSteps += r.Steps; vMissed += r.MissedPages; vOver += r.OverReportedPages; vAll += r.AllDirtyAnswers;
                vSwitch += r.ModeSwitches; vLdOver += r.LogDirtyOverReports; vAudit += r.AuditProblems; vErr += r.Errors;
                if (r.Elapsed > elapsed) elapsed = r.Elapsed;
            }
            lock (gate)
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{v.Name,-34} {vSteps,10} steps  {vSwitch,7} switches  missed {vMissed}  over-reported {vOver}  all-dirty answers {vAll}  log-dirty over-reports {vLdOver}  audit {vAudit}  errors {vErr}  ({elapsed.TotalSeconds:0.0} s)"));
                foreach (var r in results)
                {
                    if (r.Passed) continue;
                    failed = true;
                    output.WriteLine($"  seed {r.Seed}: " + string.Join("\n  ", r.Problems));
                    foreach (var line in r.Reproducer) output.WriteLine("    " + line);
                }
            }
            missed += vMissed;
            totalSteps += vSteps;
        }
        output.WriteLine($"total: {totalSteps} steps, {missed} page(s) missed{(failed ? ", FAILED" : "")}");
        return failed ? 1 : 0;
    }

    private static long Number(string option, string text, long min, long max)
    {
        if (!SizeParser.TryParse(text, 1, out ulong v, out string e)) throw new XenLabException($"{option}: {e}.");
        if (v > (ulong)long.MaxValue || (long)v < min || (long)v > max) throw new XenLabException($"{option}: {text} is outside {min}..{max}.");
        return (long)v;
    }
}
