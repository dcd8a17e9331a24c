// The dirty-tracking oracle (issue 9): seeded random operations on a copy of a domain, checked
// against a reference model of which pages were written since each query. No written page may
// be missed by a dirty-VRAM query or a log-dirty read, whatever happens in between: guest writes
// through several aliases, physical writes, guest code, remaps, guest clearing its own D bits,
// shadow pool pressure, hot-plug, log-dirty on/off/peek/clean, balloon and paging-mode switches
// (to the same kind too). Over-reports are allowed and counted; a miss is reported with the
// shortest prefix of operations that shows it, shrunk further by removing operations, printed
// as readable steps. The paging mode's audit (Test-XenPaging's) runs every AuditInterval steps.
//
// Operations are data (kind plus four raw numbers), interpreted against the state at the time
// they run, so any subsequence replays deterministically: that is what makes shrinking work.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using XenLab.Config;
using XenLab.Cpu;
using XenLab.Diagnostics;
using XenLab.Dirty;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Memory;
using XenLab.Paging.Modes;
using XenLab.Paging.Shadow;

namespace XenLab.Lab;

public enum OracleOpKind : byte
{
    WriteAlias,
    WritePhysical,
    WriteScratch,
    GuestCode,
    Remap,
    ClearAccessedDirty,
    PoolPressure,
    HotPlug,
    Query,
    LogDirtyToggle,
    LogDirtyRead,
    Balloon,
    ModeSwitch,
}

/// <summary>One oracle operation: a kind and four raw random numbers it interprets when it runs.</summary>
public readonly record struct OracleOp(OracleOpKind Kind, int A, int B, int C, int D);

/// <summary>One mode/strategy combination the oracle runs.</summary>
/// <remarks>
/// <paramref name="MemoryMiB"/> and <paramref name="ScratchGfn"/> override the domain's size and
/// where the log-dirty scratch pages lie: the 2 GiB HAP variant puts them in a GiB the builder maps
/// with one 1 GiB EPT leaf, so the oracle's writes go through its lazy splits.
/// </remarks>
public sealed record OracleVariant(string Name, PagingModeKind Mode, PagingOptions Options, VramStrategy Strategy,
    ulong? ShadowMemoryMiB = null, ulong? MemoryMiB = null, ulong? ScratchGfn = null)
{
    /// <summary>
    /// A variant that sizes its own domain tests the oracle's default domain only: run on a
    /// domain the user gave, it would test another domain than theirs, so callers skip it there.
    /// </summary>
    public bool DefaultDomainOnly => MemoryMiB is not null || ScratchGfn is not null;

    public override string ToString() => Name;
}

public sealed record DirtyTrackingOracleOptions
{
    public long Steps { get; init; } = 10_000;
    public int Seed { get; init; } = 1;
    /// <summary>Random paging-mode switches among the run's operations (to every kind, the same one included).</summary>
    public bool ModeSwitches { get; init; } = true;
    /// <summary>Run the paging mode's audit every this many steps (and after the last).</summary>
    public int AuditInterval { get; init; } = 16;
    /// <summary>Shrink a failing run to a minimal reproducer.</summary>
    public bool Shrink { get; init; } = true;
    /// <summary>Bound on the replays shrinking may spend.</summary>
    public int MaxShrinkReplays { get; init; } = 400;
    /// <summary>Progress is reported every this many steps.</summary>
    public long ProgressInterval { get; init; } = 1000;
}

/// <summary>What one oracle run found.</summary>
public sealed record DirtyTrackingOracleResult(
    string DomainName, string Variant, string Mode, VramStrategy Strategy, int Seed,
    long Steps, long StepsRequested, long Queries, long LogDirtyReads, long ModeSwitches,
    long MissedPages, long OverReportedPages, long AllDirtyAnswers, long LogDirtyOverReports,
    int AuditProblems, int Errors, IReadOnlyList<string> Problems, IReadOnlyList<string> Reproducer,
    bool Stopped, TimeSpan Elapsed)
{
    public bool Passed => MissedPages == 0 && AuditProblems == 0 && Errors == 0;
    public override string ToString() =>
        $"{Variant} seed {Seed}: {Steps} step(s), {MissedPages} missed, {OverReportedPages} over-reported, {AuditProblems} audit problem(s), {Errors} error(s){(Stopped ? " (stopped)" : "")}";
}

public static class DirtyTrackingOracle
{
    /// <summary>Every mode with each of its settings that matters here, and every VRAM strategy.</summary>
    public static IReadOnlyList<OracleVariant> Variants { get; } = new[]
    {
        new OracleVariant("hap/types", PagingModeKind.Hap, PagingOptions.Default, VramStrategy.Tracker),
        new OracleVariant("hap/memcmp", PagingModeKind.Hap, PagingOptions.Default, VramStrategy.Memcmp),
        new OracleVariant("hap 2 GiB/types, 1 GiB EPT leaves", PagingModeKind.Hap, PagingOptions.Default, VramStrategy.Tracker,
            MemoryMiB: 2048, ScratchGfn: 0x40000 + 0x1F0),
        new OracleVariant("shadow oos=off/backlinks", PagingModeKind.Shadow, PagingOptions.Default with { Oos = OosMode.Off }, VramStrategy.BackLinks),
        new OracleVariant("shadow oos=nosnapshot/backlinks", PagingModeKind.Shadow, PagingOptions.Default with { Oos = OosMode.NoSnapshot }, VramStrategy.BackLinks),
        new OracleVariant("shadow oos=snapshot/backlinks", PagingModeKind.Shadow, PagingOptions.Default, VramStrategy.BackLinks),
        new OracleVariant("shadow oos=snapshot/backlinks, 1 MiB pool", PagingModeKind.Shadow, PagingOptions.Default, VramStrategy.BackLinks, ShadowMemoryMiB: 1),
        new OracleVariant("shadow oos=snapshot/dbit", PagingModeKind.Shadow, PagingOptions.Default, VramStrategy.DirtyBit),
        new OracleVariant("shadow oos=off/dbit", PagingModeKind.Shadow, PagingOptions.Default with { Oos = OosMode.Off }, VramStrategy.DirtyBit),
        new OracleVariant("shadow mainline", PagingModeKind.Shadow, PagingOptions.Default, VramStrategy.Mainline),
        new OracleVariant("shadow oos=snapshot/types", PagingModeKind.Shadow, PagingOptions.Default, VramStrategy.Tracker),
        new OracleVariant("shadow oos=snapshot/memcmp", PagingModeKind.Shadow, PagingOptions.Default, VramStrategy.Memcmp),
        new OracleVariant("arm walk/avail", PagingModeKind.Arm, PagingOptions.Default, VramStrategy.Tracker),
        new OracleVariant("arm vlpt/avail", PagingModeKind.Arm, PagingOptions.Default with { ArmLeafLookup = ArmLeafLookup.Vlpt }, VramStrategy.Tracker),
        new OracleVariant("arm walk/memcmp", PagingModeKind.Arm, PagingOptions.Default, VramStrategy.Memcmp),
    };

    /// <summary>The domain the oracle uses when given none: 64 MiB, two vCPUs, no framebuffer (the oracle plugs its own).</summary>
    public static DomainConfig DefaultConfig() => new() { Name = "oracle", MemoryMiB = 64, Vcpus = 2 };

    /// <summary>
    /// Runs <paramref name="variant"/> on a fresh copy of <paramref name="config"/> in a host of its
    /// own (nothing of the caller's host is touched). <paramref name="stop"/> is polled every step;
    /// <paramref name="progress"/> gets (steps done, steps requested).
    /// </summary>
    public static DirtyTrackingOracleResult Run(DomainConfig config, OracleVariant variant, DirtyTrackingOracleOptions options,
        Func<bool>? stop = null, Action<long, long>? progress = null)
    {
        if (options.Steps < 0) throw new InvalidConfigurationException($"Oracle steps {options.Steps} must not be negative.");
        if (options.AuditInterval < 1) throw new InvalidConfigurationException($"Oracle audit interval {options.AuditInterval} must be at least 1.");
        var watch = Stopwatch.StartNew();
        var ops = new List<OracleOp>();
        var rng = new Random(options.Seed);
        var run = new OracleRun(config, variant, options.AuditInterval, describe: false);
        bool stopped = false;
        for (long step = 0; step < options.Steps; step++)
        {
            if (stop is not null && stop()) { stopped = true; break; }
            var op = Next(rng, options.ModeSwitches);
            ops.Add(op);
            run.Execute(op, step, last: step == options.Steps - 1);
            if (progress is not null && (step + 1) % options.ProgressInterval == 0) progress(step + 1, options.Steps);
            if (run.Fatal) break;
        }
        if (!run.Fatal && ops.Count > 0) run.AuditNow(ops.Count - 1);
        run.Dispose();
        var reproducer = new List<string>();
        if (run.FirstFailureStep >= 0)
        {
            var prefix = ops.GetRange(0, (int)run.FirstFailureStep + 1);
            var shrunk = options.Shrink ? Shrink(config, variant, prefix, run.FirstFailureKind, options.MaxShrinkReplays, stop) : prefix;
            reproducer = Describe(config, variant, shrunk, options.Seed, prefix.Count);
        }
        return new DirtyTrackingOracleResult(config.Name, variant.Name, variant.Mode + " " + variant.Options.Describe(variant.Mode), variant.Strategy, options.Seed,
            run.StepsRun, options.Steps, run.Queries, run.LogDirtyReads, run.ModeSwitches, run.MissedPages, run.OverReportedPages, run.AllDirtyAnswers,
            run.LogDirtyOverReports, run.AuditProblems, run.Errors, run.Problems, reproducer, stopped, watch.Elapsed);
    }

    /// <summary>The next operation (weights per thousand; mode switches become queries when off).</summary>
    public static OracleOp Next(Random rng, bool modeSwitches)
    {
        int roll = rng.Next(1000);
        int a = rng.Next(), b = rng.Next(), c = rng.Next(), d = rng.Next();
        OracleOpKind kind = roll switch
        {
            < 330 => OracleOpKind.WriteAlias,
            < 410 => OracleOpKind.WritePhysical,
            < 470 => OracleOpKind.WriteScratch,
            < 520 => OracleOpKind.GuestCode,
            < 565 => OracleOpKind.Remap,
            < 580 => OracleOpKind.ClearAccessedDirty,
            < 615 => OracleOpKind.PoolPressure,
            < 630 => OracleOpKind.HotPlug,
            < 900 => OracleOpKind.Query,
            < 912 => OracleOpKind.LogDirtyToggle,
            < 950 => OracleOpKind.LogDirtyRead,
            < 958 => OracleOpKind.Balloon,
            < 966 => modeSwitches ? OracleOpKind.ModeSwitch : OracleOpKind.Query,
            _ => OracleOpKind.WriteAlias,
        };
        return new OracleOp(kind, a, b, c, d);
    }

    /// <summary>Replays <paramref name="ops"/> on a fresh domain; the kind of the first failure, or null.</summary>
    private static string? Replay(DomainConfig config, OracleVariant variant, List<OracleOp> ops, int auditInterval)
    {
        var run = new OracleRun(config, variant, auditInterval, describe: false);
        try
        {
            for (int i = 0; i < ops.Count && run.FirstFailureStep < 0 && !run.Fatal; i++) run.Execute(ops[i], i, last: i == ops.Count - 1);
            if (run.FirstFailureStep < 0 && !run.Fatal && ops.Count > 0) run.AuditNow(ops.Count - 1);
            return run.FirstFailureKind;
        }
        finally { run.Dispose(); }
    }

    /// <summary>Delta-debugging by removal: drop chunks of operations while the same kind of failure remains.</summary>
    private static List<OracleOp> Shrink(DomainConfig config, OracleVariant variant, List<OracleOp> ops, string? kind, int maxReplays, Func<bool>? stop)
    {
        if (kind is null) return ops;
        int audit = ops.Count <= 20_000 ? 1 : 16;
        var current = new List<OracleOp>(ops);
        int replays = 0;
        var deadline = Stopwatch.StartNew();
        bool Pass(int chunk, int stride)
        {
            bool removedAny = false;
            for (int start = 0; start + chunk <= current.Count - 1; )   // the failing (last) operation stays
            {
                if (replays++ >= maxReplays || deadline.Elapsed.TotalSeconds > 60 || (stop?.Invoke() ?? false)) return false;
                var trial = new List<OracleOp>(current);
                trial.RemoveRange(start, chunk);
                if (Replay(config, variant, trial, audit) == kind) { current = trial; removedAny = true; }
                else start += stride;
            }
            return removedAny;
        }
        for (int chunk = Math.Max(1, current.Count / 2); chunk >= 1; chunk /= 2)
            while (Pass(chunk, chunk)) { }
        // Operations that only matter in pairs (log-dirty on then off) go together: slide small windows.
        if (current.Count <= 200)
            for (int chunk = 2; chunk <= 3; chunk++)
                while (Pass(chunk, 1)) { }
        return current;
    }

    private static List<string> Describe(DomainConfig config, OracleVariant variant, List<OracleOp> ops, int seed, int prefix)
    {
        var run = new OracleRun(config, variant, auditInterval: 1, describe: true);
        try
        {
            for (int i = 0; i < ops.Count && !run.Fatal; i++) run.Execute(ops[i], i, last: i == ops.Count - 1);
        }
        finally { run.Dispose(); }
        var lines = new List<string> { $"# {variant.Name}, seed {seed}: first failure after {prefix} operation(s), shrunk to {ops.Count}" };
        lines.AddRange(run.Log);
        return lines;
    }
}

/// <summary>One run: the domain, the reference model, and the checks.</summary>
internal sealed class OracleRun : IDisposable
{
    private const int ScratchPages = 32;
    private const ulong ScratchVa = 0x3000000000UL;
    private const ulong ChurnVa = 0x5000000000UL;
    private const int MaxMonitors = 3;
    private const long MainlineIdleNs = ShadowMode.VramMainlineIdleNs + 1;

    private sealed class Monitor
    {
        public required FramebufferConfig Config;
        public bool Plugged, Usable = true;
        public readonly List<ulong> Aliases = new();
        public int Generation;
        public bool[] Truth = Array.Empty<bool>();
        public int TruthCount;
        public ulong Pages => Config.Pages;
    }

    private readonly XenHost _host;
    private readonly Domain _d;
    private readonly OracleVariant _variant;
    private readonly int _auditInterval;
    private readonly bool _describe;
    private readonly Monitor[] _monitors;
    private readonly ulong _scratchGfn;
    private readonly bool _scratchOk, _bigEnough;
    private readonly ulong _basePages;
    private readonly HashSet<ulong> _ldTruth = new();
    private bool _programLoaded;
    private readonly List<string> _problems = new();
    private readonly byte[] _buf = new byte[16];
    private readonly byte[] _one = new byte[1];

    public List<string> Log { get; } = new();
    /// <summary>The domain under test (for tests that look at its counters).</summary>
    internal Domain Domain => _d;
    public IReadOnlyList<string> Problems => _problems;
    public long StepsRun, Queries, LogDirtyReads, ModeSwitches, MissedPages, OverReportedPages, AllDirtyAnswers, LogDirtyOverReports;
    public int AuditProblems, Errors;
    public long FirstFailureStep = -1;
    public string? FirstFailureKind;
    public bool Fatal;

    public OracleRun(DomainConfig config, OracleVariant variant, int auditInterval, bool describe)
    {
        _variant = variant;
        _auditInterval = auditInterval;
        _describe = describe;
        var c = config.Clone();
        c.Paging = variant.Mode;
        c.PagingOptions = variant.Options;
        c.VramStrategy = variant.Strategy;
        if (variant.ShadowMemoryMiB is { } pool) c.ShadowMemoryMiB = pool;
        if (variant.MemoryMiB is { } mem) { c.MemoryMiB = mem; c.MaxMemMiB = null; }
        c.Workload = null;
        _host = new XenHost();
        _d = _host.CreateDomain(c);
        _bigEnough = _d.PopulatedPages >= 0x4000 && _d.TryGetRam(GuestPrograms.StackGfn + GuestPrograms.StackPages, out _);
        _basePages = _d.PopulatedPages;
        // Monitors: the domain's own framebuffers first, then the oracle's (16 pages each) to make three.
        var list = new List<Monitor>();
        foreach (var fb in _d.Framebuffers)
            if (list.Count < MaxMonitors) list.Add(new Monitor { Config = fb.Config, Plugged = true });
        ulong address = 0xF0000000UL;
        for (int k = 0; list.Count < MaxMonitors && k < 64; k++, address += 1UL << 20)
        {
            var cfg = new FramebufferConfig($"oracle{k}", address, 256, 64, 32);
            bool clash = false;
            foreach (var fb in _d.Framebuffers)
                if (cfg.FirstGfn < fb.FirstGfn + fb.Pages && fb.FirstGfn < cfg.FirstGfn + cfg.Pages) clash = true;
            if (!clash) list.Add(new Monitor { Config = cfg });
        }
        _monitors = list.ToArray();
        foreach (var m in _monitors) m.Truth = new bool[m.Pages];
        int plugged = 0;
        foreach (var m in _monitors)
        {
            if (!m.Plugged && plugged < 2) Plug(m);
            if (m.Plugged) { plugged++; for (int a = 0; a < 2; a++) Mount(m); }
        }
        // Scratch RAM for log-dirty: above the guest kernel's page-table pool.
        _scratchGfn = variant.ScratchGfn ?? _d.Kernel.PoolBaseGfn + (ulong)_d.Kernel.PoolPages + 64;
        _scratchOk = true;
        for (ulong g = _scratchGfn; g < _scratchGfn + ScratchPages; g++)
            if (!_d.TryGetRam(g, out _) || _d.IsFramebufferGfn(g)) _scratchOk = false;
        if (_scratchOk) _d.Kernel.Map(ScratchVa, _scratchGfn, ScratchPages, MapFlags.Writable);
        if (_describe)
        {
            Log.Add($"domain: {c.MemoryMiB} MiB, {c.Vcpus} vCPU(s), {variant.Mode} ({variant.Options.Describe(variant.Mode)}), vram strategy {variant.Strategy}");
            foreach (var m in _monitors)
                if (m.Plugged) Log.Add($"monitor {m.Config.Name}: gfn 0x{m.Config.FirstGfn:x}, {m.Pages} pages, mapped at {string.Join(", ", m.Aliases.ConvertAll(v => "0x" + v.ToString("x")))}");
            if (_scratchOk) Log.Add($"scratch: gfn 0x{_scratchGfn:x}, {ScratchPages} pages at 0x{ScratchVa:x}");
        }
    }

    public void Dispose() => _host.DestroyDomain(_d);

    private ulong AliasVa(int slot, int alias, int generation) =>
        0x4000000000UL + ((ulong)slot << 34) + ((ulong)alias << 32) + ((ulong)(generation & 3) << 30);

    private int Slot(Monitor m) => Array.IndexOf(_monitors, m);

    private void Plug(Monitor m)
    {
        try
        {
            _d.AddFramebuffer(m.Config);
            m.Plugged = true;
        }
        catch (InvalidConfigurationException)
        {
            m.Usable = false;                                      // this configuration has no room for it
        }
    }

    private void Mount(Monitor m)
    {
        ulong va = AliasVa(Slot(m), m.Aliases.Count, m.Generation);
        _d.Kernel.Map(va, m.Config.FirstGfn, m.Pages, MapFlags.Writable);
        m.Aliases.Add(va);
    }

    private Monitor? Pick(int r)
    {
        int n = 0;
        foreach (var m in _monitors) if (m.Plugged) n++;
        if (n == 0) return null;
        int k = (int)((uint)r % (uint)n);
        foreach (var m in _monitors)
            if (m.Plugged && k-- == 0) return m;
        return null;
    }

    private void Written(Monitor m, ulong offset, ulong length)
    {
        for (ulong p = offset >> Page.Shift; p <= (offset + length - 1) >> Page.Shift; p++)
        {
            if (!m.Truth[p]) { m.Truth[p] = true; m.TruthCount++; }
            if (_d.LogDirty.Enabled) _ldTruth.Add(m.Config.FirstGfn + p);
        }
    }

    private void Note(string text)
    {
        if (_describe) Log.Add(text);
    }

    public void Execute(OracleOp op, long step, bool last)
    {
        StepsRun = step + 1;
        try
        {
            Apply(op, step);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // An exception the model does not expect: the emulator's state is unknown from here.
            Errors++;
            Fail(step, "exception:" + e.GetType().Name, $"step {step} ({op.Kind}): {e.GetType().Name}: {e.Message}");
            Note($"{step}: !! {e.GetType().Name}: {e.Message}");
            Fatal = true;
            return;
        }
        if ((step + 1) % _auditInterval == 0 || last) AuditNow(step);
    }

    public void AuditNow(long step)
    {
        var problems = new List<string>();
        _d.Mode!.Audit(problems);
        if (problems.Count == 0) return;
        AuditProblems += problems.Count;
        Fail(step, "audit", $"step {step}: audit ({_d.PagingMode}): " + string.Join("; ", problems.GetRange(0, Math.Min(3, problems.Count))));
        Note($"{step}: !! audit: {problems[0]}");
        Fatal = true;                                             // a corrupt state only cascades
    }

    private void Fail(long step, string kind, string message)
    {
        if (_problems.Count < 20) _problems.Add(message);
        if (FirstFailureStep >= 0) return;
        FirstFailureStep = step;
        FirstFailureKind = kind;
    }

    private void Apply(OracleOp op, long step)
    {
        var vcpus = _d.Vcpus;
        switch (op.Kind)
        {
            case OracleOpKind.WriteAlias:
            {
                var m = Pick(op.A);
                if (m is null || m.Aliases.Count == 0) return;
                int alias = (int)((uint)op.B % (uint)m.Aliases.Count);
                int len = 1 + (int)((uint)op.D % 16);
                ulong off = (ulong)((uint)op.C % (uint)(m.Config.SizeBytes - (ulong)len + 1));
                var v = vcpus[(int)((uint)op.D / 16 % (uint)vcpus.Count)];
                var span = _buf.AsSpan(0, len);
                ulong va = m.Aliases[alias] + off;
                var r = v.ReadVirtual(va, span);
                for (int i = 0; i < len; i++) span[i]++;
                var w = v.WriteVirtual(va, span);
                if (!r.IsOk || !w.IsOk) throw new InvalidOperationException($"write through {m.Config.Name} alias {alias} at 0x{va:x} failed: {w}");
                Written(m, off, (ulong)len);
                Note($"{step}: vcpu{v.Id} writes {len} byte(s) to {m.Config.Name} through alias {alias} at 0x{va:x} (page {off >> Page.Shift})");
                return;
            }
            case OracleOpKind.WritePhysical:
            {
                var m = Pick(op.A);
                if (m is null) return;
                ulong off = (ulong)((uint)op.C % (uint)(m.Config.SizeBytes - 3));
                var span = _buf.AsSpan(0, 4);
                _d.ReadPhysical(m.Config.Address + off, span);
                for (int i = 0; i < 4; i++) span[i]++;
                Vcpu? writer = (op.B & 1) == 0 ? null : vcpus[(int)((uint)op.B / 2 % (uint)vcpus.Count)];
                _d.WriteGuestPhysical(m.Config.Address + off, span, writer);
                Written(m, off, 4);
                Note($"{step}: {(writer is null ? "the device model" : $"vcpu{writer.Id}")} writes 4 bytes to {m.Config.Name} at guest-physical 0x{m.Config.Address + off:x} (page {off >> Page.Shift})");
                return;
            }
            case OracleOpKind.WriteScratch:
            {
                if (!_scratchOk) return;
                int page = (int)((uint)op.A % ScratchPages);
                ulong gfn = _scratchGfn + (ulong)page;
                _one[0] = (byte)op.C;
                if ((op.B & 1) == 0)
                {
                    var v = vcpus[(int)((uint)op.B / 2 % (uint)vcpus.Count)];
                    var w = v.WriteVirtual(ScratchVa + ((ulong)page << Page.Shift) + (ulong)((uint)op.D % Page.Size), _one);
                    if (!w.IsOk) throw new InvalidOperationException($"write to scratch page {page} failed: {w}");
                }
                else _d.WriteGuestPhysical((gfn << Page.Shift) + (ulong)((uint)op.D % Page.Size), _one);
                if (_d.LogDirty.Enabled) _ldTruth.Add(gfn);
                Note($"{step}: writes scratch gfn 0x{gfn:x} {((op.B & 1) == 0 ? "through its mapping" : "physically")}");
                return;
            }
            case OracleOpKind.GuestCode:
            {
                if (_d.PagingMode == PagingModeKind.Arm || !_bigEnough) return;
                var m = Pick(op.A);
                if (m is null || m.Aliases.Count == 0) return;
                int alias = (int)((uint)op.B % (uint)m.Aliases.Count);
                ulong off = (ulong)((uint)op.C % (uint)(m.Config.SizeBytes / 4)) * 4;
                var cpu = vcpus[0].Cpu;
                if (!_programLoaded)
                {
                    // add dword [rdi], 1 / xor eax, eax / vmcall (yield) / jmp back: one guest write per run.
                    GuestPrograms.LoadAssembly(_d, "top:\nadd dword [rdi], 1\nxor eax, eax\nvmcall\njmp top");
                    _programLoaded = true;
                }
                cpu[Reg.Rdi] = m.Aliases[alias] + off;
                var stop = cpu.Run(16);
                if (stop.Reason != StopReason.Hypercall) throw new InvalidOperationException($"guest code writing {m.Config.Name} at 0x{m.Aliases[alias] + off:x} stopped: {stop}");
                Written(m, off, 4);
                Note($"{step}: guest code on vcpu0: add dword [0x{m.Aliases[alias] + off:x}], 1 ({m.Config.Name} page {off >> Page.Shift})");
                return;
            }
            case OracleOpKind.Remap:
            {
                var m = Pick(op.A);
                if (m is null || m.Aliases.Count == 0) return;
                int alias = (int)((uint)op.B % (uint)m.Aliases.Count);
                _d.Kernel.Unmap(m.Aliases[alias], m.Pages);
                m.Generation++;
                ulong va = AliasVa(Slot(m), alias, m.Generation);
                _d.Kernel.Map(va, m.Config.FirstGfn, m.Pages, MapFlags.Writable);
                Note($"{step}: the guest moves {m.Config.Name} alias {alias} from 0x{m.Aliases[alias]:x} to 0x{va:x}");
                m.Aliases[alias] = va;
                return;
            }
            case OracleOpKind.ClearAccessedDirty:
            {
                var m = Pick(op.A);
                if (m is null || m.Aliases.Count == 0) return;
                int alias = (int)((uint)op.B % (uint)m.Aliases.Count);
                _d.Kernel.ClearAccessedDirty(m.Aliases[alias], m.Pages);
                Note($"{step}: the guest clears the A/D bits of {m.Config.Name} alias {alias}");
                return;
            }
            case OracleOpKind.PoolPressure:
            {
                if ((uint)op.A % 8 == 0 && _d.Mode is ShadowMode sm)
                {
                    sm.BlowTables();
                    Note($"{step}: shadow_blow_tables");
                    return;
                }
                ulong va = ChurnVa + ((ulong)((uint)op.B % 64) << 21);
                ulong gfn = _scratchOk ? _scratchGfn : _d.Kernel.PoolBaseGfn;
                _d.Kernel.Map(va, gfn, 16, MapFlags.None);
                for (int p = 0; p < 16; p += 3) vcpus[0].ReadVirtual(va + ((ulong)p << Page.Shift), _one);
                _d.Kernel.Unmap(va, 16);
                foreach (var v in vcpus) v.LoadCr3(v.Cr3);
                Note($"{step}: page-table churn at 0x{va:x} and a CR3 reload on every vCPU");
                return;
            }
            case OracleOpKind.HotPlug:
            {
                int plugged = 0;
                foreach (var x in _monitors) if (x.Plugged) plugged++;
                var m = _monitors[(int)((uint)op.A % (uint)_monitors.Length)];
                if (m.Plugged && plugged > 1)
                {
                    foreach (var va in m.Aliases) _d.Kernel.Unmap(va, m.Pages);
                    m.Aliases.Clear();
                    _d.RemoveFramebuffer(m.Config.Name);
                    m.Plugged = false;
                    Array.Clear(m.Truth);
                    m.TruthCount = 0;
                    for (ulong g = 0; g < m.Pages; g++) _ldTruth.Remove(m.Config.FirstGfn + g);
                    Note($"{step}: unplug {m.Config.Name}");
                }
                else if (!m.Plugged && m.Usable)
                {
                    Plug(m);
                    if (!m.Plugged) return;
                    for (int a = 0; a < 2; a++) Mount(m);
                    Note($"{step}: plug {m.Config.Name} in, mapped at 0x{m.Aliases[0]:x} and 0x{m.Aliases[1]:x}");
                }
                return;
            }
            case OracleOpKind.Query:
                Query(op, step);
                return;
            case OracleOpKind.LogDirtyToggle:
                if (_d.LogDirty.Enabled)
                {
                    _d.LogDirty.Disable();
                    _ldTruth.Clear();
                    Note($"{step}: log-dirty off");
                }
                else
                {
                    _d.LogDirty.Enable();
                    _ldTruth.Clear();
                    Note($"{step}: log-dirty on");
                }
                return;
            case OracleOpKind.LogDirtyRead:
                ReadLogDirty(op, step);
                return;
            case OracleOpKind.Balloon:
            {
                if (!_bigEnough) return;
                ulong target = _d.PopulatedPages == _basePages ? _basePages - 1 - (ulong)((uint)op.A % 256) : _basePages;
                var r = _d.Balloon(target);
                Note($"{step}: balloon to {target} pages: {r.Describe()}");
                return;
            }
            case OracleOpKind.ModeSwitch:
            {
                var kind = (PagingModeKind)((uint)op.A % 3);
                var options = _d.Config.PagingOptions with
                {
                    Oos = (OosMode)((uint)op.B % 3),
                    ArmLeafLookup = (ArmLeafLookup)((uint)op.C % 2),
                };
                try
                {
                    _d.SetPagingMode(kind, options);
                    ModeSwitches++;
                    Note($"{step}: switch to {kind} ({options.Describe(kind)})");
                }
                catch (InvalidConfigurationException e)
                {
                    Note($"{step}: switch to {kind} refused: {e.Message}");   // nothing changed: allowed
                }
                return;
            }
        }
    }

    private void Query(OracleOp op, long step)
    {
        var m = Pick(op.A);
        if (m is null) return;
        bool peek = (uint)op.B % 6 == 0;
        // One query in five comes after an idle display: more than mainline's 2 s of domain time
        // pass first, so its write-access removal and the faults that undo it are checked too.
        // Only mainline reads the clock, so the other strategies' runs are unchanged.
        string idle = "";
        if ((uint)op.D % 5 == 0)
        {
            long ns = MainlineIdleNs + (uint)op.C % 1_000_000_000;
            _d.AdvanceClock(ns);
            idle = $"after {ns} ns idle, ";
        }
        long allDirtyBefore = _d.Counters[PerfCounter.VramAllDirty];
        long assumedBefore = _d.Counters[PerfCounter.VramMultiMapDirty] + _d.Counters[PerfCounter.VramDbitUnreadDirty];
        long stuckBefore = _d.Counters[PerfCounter.VramStuckDirty];
        VramQueryResult r;
        try
        {
            r = _d.Vram.Track(m.Config.FirstGfn, m.Pages, peek);
        }
        catch (VramException e) when (e.Errno == VramErrno.ENODATA && _d.LogDirty.Enabled)
        {
            Note($"{step}: query {m.Config.Name}: -ENODATA (log-dirty is on), nothing handed out");
            return;
        }
        catch (VramException e) when (e.Errno == VramErrno.EINVAL && e.Message.Contains("machinery"))
        {
            // Log-dirty disarmed the tracker under the ranges: the documented reset, then all dirty.
            _d.Vram.Track(0, 0);
            Note($"{step}: query {m.Config.Name}: -EINVAL (tracker disarmed by log-dirty); reset with nr = 0");
            return;
        }
        Queries++;
        var bitmap = r.Bitmap;
        int missed = 0, extra = 0, firstMissed = -1;
        for (ulong i = 0; i < m.Pages; i++)
        {
            bool reported = (bitmap[i >> 3] & (1 << (int)(i & 7))) != 0;
            if (m.Truth[i] && !reported) { missed++; if (firstMissed < 0) firstMissed = (int)i; }
            else if (!m.Truth[i] && reported) extra++;
        }
        var strategy = _d.Vram.Find(m.Config.FirstGfn, m.Pages)?.Strategy;
        // The D-bit design counts each page it reports only by assumption (mapped writable more than
        // once, or writable where it cannot read D): that many extras are its design; more are over-reports.
        long assumed = strategy == VramStrategy.DirtyBit
            ? _d.Counters[PerfCounter.VramMultiMapDirty] + _d.Counters[PerfCounter.VramDbitUnreadDirty] - assumedBefore : 0;
        if (r.AllDirty && _d.Counters[PerfCounter.VramAllDirty] > allDirtyBefore) AllDirtyAnswers++;
        // Mainline over-reports by design (pages mapped writable more than once, mappings it did not
        // record, their removal): only its misses count.
        else if (extra > assumed && strategy != VramStrategy.Mainline
                 && _d.Counters[PerfCounter.VramStuckDirty] == stuckBefore)
            OverReportedPages += extra - assumed;
        Note($"{step}: {idle}{(peek ? "peek" : "query")} {m.Config.Name}: {(r.AllDirty ? "all dirty (" + r.Reason + ")" : r.DirtyPages + " dirty page(s)")}{(missed > 0 ? $" -- MISSED {missed} written page(s), first page {firstMissed}" : "")}");
        if (missed > 0)
        {
            MissedPages += missed;
            Fail(step, "vram-miss", $"step {step}: {_variant.Name} ({_d.PagingMode}, range {(_d.Vram.Find(m.Config.FirstGfn, m.Pages)?.Strategy.ToString() ?? "?")}): {m.Config.Name} page {firstMissed} (and {missed - 1} more) written but not reported");
        }
        if (!peek)
        {
            Array.Clear(m.Truth);
            m.TruthCount = 0;
        }
    }

    private void ReadLogDirty(OracleOp op, long step)
    {
        if (!_d.LogDirty.Enabled) return;
        bool clean = (uint)op.A % 3 != 0;
        var view = _d.LogDirty.Read(clean);
        LogDirtyReads++;
        var bits = view.Bitmap;
        bool Reported(ulong g) => g < view.Pfns && (bits[g >> 3] & (1 << (int)(g & 7))) != 0;
        int missed = 0;
        ulong firstMissed = 0;
        foreach (ulong g in _ldTruth)
        {
            if (Reported(g)) continue;
            if (missed++ == 0) firstMissed = g;
        }
        // Over-reports are counted over the pages the oracle watches (kernel page tables are written by the guest too).
        if (_scratchOk)
            for (ulong g = _scratchGfn; g < _scratchGfn + ScratchPages; g++)
                if (Reported(g) && !_ldTruth.Contains(g)) LogDirtyOverReports++;
        foreach (var m in _monitors)
            if (m.Plugged)
                for (ulong i = 0; i < m.Pages; i++)
                    if (Reported(m.Config.FirstGfn + i) && !_ldTruth.Contains(m.Config.FirstGfn + i)) LogDirtyOverReports++;
        Note($"{step}: log-dirty {(clean ? "clean" : "peek")}: {view.DirtyPages} dirty page(s){(missed > 0 ? $" -- MISSED {missed}, first gfn 0x{firstMissed:x}" : "")}");
        if (missed > 0)
        {
            MissedPages += missed;
            Fail(step, "logdirty-miss", $"step {step}: {_variant.Name} ({_d.PagingMode}): log-dirty {(clean ? "clean" : "peek")} missed gfn 0x{firstMissed:x} (and {missed - 1} more)");
        }
        if (clean) _ldTruth.Clear();
    }
}
