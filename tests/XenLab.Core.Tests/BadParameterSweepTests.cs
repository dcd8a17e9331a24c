using System;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using XenLab.Config;
using XenLab.Cpu.Workloads;
using XenLab.Dirty;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Lab;
using XenLab.Memory;
using XenLab.P2m;
using XenLab.Paging;
using XenLab.Paging.Modes;
using XenLab.Views;

namespace XenLab.Tests;

/// <summary>
/// Issue 9 section 4's sweep: every public method of Domain, GuestKernel, DirtyVram, LogDirty,
/// Vcpu, GuestPrograms, MemoryWorkloads and LiveMigration, found by reflection (so a new one is swept without being listed), is
/// called with extreme values for each of its parameters (0, -1, huge, 2^63, unaligned, beyond
/// the p2m tree, unknown enum values) one at a time and in seeded random combinations.
/// The contract: the only exceptions that escape are XenLabException, ArgumentNullException
/// where the sweep passed null for a reference (a programming error, not a bad value: the one
/// ArgumentException subclass the API chooses), and OperationCanceledException where it passed
/// a cancelled token (a stop asked for, by design of the progress/stop support). After each method the
/// paging mode's audit is clean, and after the domain is removed every frame is back.
/// Methods taking spans cannot be called by reflection; they are swept by hand below.
/// </summary>
public class BadParameterSweepTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private static readonly ulong[] U64 =
    {
        0, 1, 7, 0xFF9, 0x1000, 0x2000, 0x3FFF, 0x4000, 0x400000, 0x400001, 0x2000000, P2mTree.MaxPfn - 1, P2mTree.MaxPfn,
        P2mTree.MaxPfn + 1, 1UL << 32, 1UL << 35, 1UL << 36, 1UL << 40, 1UL << 47, 1UL << 52, 1UL << 63, ulong.MaxValue - 0xFFF, ulong.MaxValue,
    };
    private static readonly long[] I64 = { 0, -1, 1, 1000, 1L << 40, long.MinValue, long.MaxValue };
    private static readonly int[] I32 = { 0, -1, 1, 2, 63, 64, 1 << 20, int.MinValue, int.MaxValue };

    private static readonly Type[] Swept =
    {
        typeof(Domain), typeof(GuestKernel), typeof(DirtyVram), typeof(LogDirty), typeof(Vcpu), typeof(GuestPrograms),
        typeof(MemoryWorkloads), typeof(LiveMigration),
    };

    /// <summary>Methods with span parameters (swept by hand in <see cref="SpanMethodsRefuseExtremesToo"/>).</summary>
    private static readonly string[] ByHand =
    {
        "Domain.ReadPhysical", "Domain.WriteGuestPhysical", "GuestPrograms.Load", "Vcpu.ReadVirtual", "Vcpu.WriteVirtual",
    };

    public static IEnumerable<object[]> Modes() =>
        new[] { PagingModeKind.Hap, PagingModeKind.Shadow, PagingModeKind.Arm }.Select(m => new object[] { m });

    [Theory]
    [MemberData(nameof(Modes))]
    public void EveryEntryPointRefusesExtremesWithXenLabErrorsOnly(PagingModeKind mode)
    {
        var host = new XenHost(2UL << 30);
        ulong framesBefore = host.Machine.AllocatedFrames;
        // 160 MiB: the built-in workloads and the migration use RAM from 64 MiB up, so they really run.
        var d = host.CreateDomain(new DomainConfig { Name = "sweep", MemoryMiB = 160, MaxMemMiB = 256, Vcpus = 2, Paging = mode });
        d.AddFramebuffer(new FramebufferConfig("m", 0xF0000000, 64, 64, 32));
        d.Kernel.Map(0x400000, 0x2000, 8, MapFlags.Writable);
        var rng = new Random(9);
        var failures = new List<string>();
        var skipped = new List<string>();
        int calls = 0, methods = 0;
        // The workloads and the migration get a domain of their own: by the time they are swept,
        // the domain methods have ballooned and remapped the first one, and they need its RAM.
        var lab = host.CreateDomain(new DomainConfig { Name = "sweep-lab", MemoryMiB = 160, Vcpus = 2, Paging = mode });
        foreach (var type in Swept)
        {
            var dom = type == typeof(MemoryWorkloads) || type == typeof(LiveMigration) ? lab : d;
            var flags = BindingFlags.Public | BindingFlags.DeclaredOnly | (type.IsAbstract && type.IsSealed ? BindingFlags.Static : BindingFlags.Instance);
            foreach (var m in type.GetMethods(flags).Where(m => !m.IsSpecialName && m.DeclaringType == type && m.Name != "ToString").OrderBy(m => m.ToString()))
            {
                string name = $"{type.Name}.{m.Name}";
                var ps = m.GetParameters();
                if (ps.Any(p => IsSpan(p.ParameterType)))
                {
                    skipped.Add(name);
                    continue;
                }
                methods++;
                var choices = ps.Select(p => Values(p, dom)).ToArray();
                var sw = System.Diagnostics.Stopwatch.StartNew();
                foreach (var args in Calls(choices, rng))
                {
                    calls++;
                    object? target = m.IsStatic ? null : TargetOf(type, d);
                    if (Call(m, target, args) is { } bad) failures.Add($"{name}({string.Join(", ", args.Select(Show))}): {bad}");
                    if (failures.Count > 20) break;
                }
                output.WriteLine($"{name}: {sw.ElapsedMilliseconds} ms");
                var audit = PagingAuditView.Of(dom);
                Assert.True(audit.IsClean, $"after {name}: {string.Join("; ", audit.Problems.Take(5))}");
                d.Kernel.Mappings();                                     // the tables still read back
            }
        }
        output.WriteLine($"{mode}: {methods} methods, {calls} calls");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.Equal(ByHand.OrderBy(s => s), skipped.Distinct().OrderBy(s => s));
        Assert.True(methods >= 40, $"only {methods} methods swept");        // the reflection found the API
        Assert.True(calls > 1000, $"only {calls} calls");
        host.DestroyDomain(d);
        host.DestroyDomain(lab);
        Assert.Equal(framesBefore, host.Machine.AllocatedFrames);         // every frame is back
    }

    [Fact]
    public void SpanMethodsRefuseExtremesToo()
    {
        var (host, d) = TestDomains.Create();
        var buffer = new byte[16];
        foreach (ulong gpa in U64)
        {
            var r = d.ReadPhysical(gpa, buffer);
            Assert.True(r.Status != PhysAccessStatus.Ok || gpa + 16 <= d.PopulatedPages << Page.Shift, $"read 0x{gpa:x}: {r.Status}");
            d.WriteGuestPhysical(gpa, buffer);
            var v = d.Vcpus[0];
            v.ReadVirtual(gpa, buffer);
            v.WriteVirtual(gpa, buffer);
        }
        Assert.Throws<InvalidConfigurationException>(() => GuestPrograms.Load(d, new byte[1], vcpu: -1));
        Assert.Throws<InvalidConfigurationException>(() => GuestPrograms.Load(d, new byte[1], vcpu: 1));
        Assert.Throws<InvalidConfigurationException>(() => GuestPrograms.Load(d, ReadOnlySpan<byte>.Empty));
        Assert.Throws<InvalidConfigurationException>(() => GuestPrograms.Load(d, new byte[GuestPrograms.CodePages * Page.Size + 1]));
        Assert.True(PagingAuditView.Of(d).IsClean);
    }

    private static readonly System.Threading.CancellationToken Cancelled = new(canceled: true);

    private static object TargetOf(Type type, Domain d) =>
        type == typeof(Domain) ? d
        : type == typeof(GuestKernel) ? d.Kernel
        : type == typeof(DirtyVram) ? d.Vram
        : type == typeof(LogDirty) ? d.LogDirty
        : type == typeof(Vcpu) ? d.Vcpus[1]
        : throw new InvalidOperationException(type.Name);

    private static bool IsSpan(Type t) =>
        t.IsByRefLike || (t.IsByRef && t.GetElementType()!.IsByRefLike);

    /// <summary>The values a parameter takes: a sensible one first (the others vary around it), then extremes.</summary>
    private static object?[] Values(ParameterInfo p, Domain d)
    {
        var t = p.ParameterType.IsByRef ? p.ParameterType.GetElementType()! : p.ParameterType;
        if (p.IsOut) return new object?[] { null };
        string n = p.Name!.ToLowerInvariant();
        var u = Nullable.GetUnderlyingType(t);
        if (u is not null) return new object?[] { null }.Concat(Values(u, n, d)).ToArray();
        return Values(t, n, d);
    }

    private static object?[] Values(Type t, string n, Domain d)
    {
        if (t == typeof(Domain)) return new object?[] { d };
        if (t == typeof(double)) return new object?[] { 0.5, 0.0, -1.0, double.NaN, double.PositiveInfinity, 1e300 };
        if (t == typeof(decimal)) return new object?[] { 16.7m, 0m, -1m, -0.0000001m, 0.0000005m, 9_223_372_036_854.775807m, 9_223_372_036_855m, decimal.MaxValue, decimal.MinValue };
        if (t == typeof(ulong))
        {
            ulong sane = n.Contains("va") || n.Contains("address") ? 0x400000
                : n.Contains("gpa") ? 0x2000UL << Page.Shift
                : n.Contains("gfn") || n.Contains("pfn") ? 0x2000
                : n.Contains("cr3") ? d.Kernel.Pml4Gfn << Page.Shift
                : n.Contains("target") ? d.PopulatedPages
                : 4;
            return new object?[] { sane }.Concat(U64.Select(v => (object?)v)).ToArray();
        }
        if (t == typeof(long)) return new object?[] { 100L }.Concat(I64.Select(v => (object?)v)).ToArray();
        if (t == typeof(int))
        {
            // A count the workloads and the migration accept, so that with the others sensible they really run.
            int sane = n.Contains("round") ? 2 : n == "pages" ? 8 : n.Contains("workingSet") ? 64 : 0;
            return new object?[] { sane }.Concat(I32.Select(v => (object?)v)).ToArray();
        }
        if (t == typeof(bool)) return new object?[] { false, true };
        if (t == typeof(string))
            return n.Contains("png") || n.Contains("directory")
                ? new object?[] { null, "/nonexistent/xenlab-sweep" }
                : n == "name" ? new object?[] { "pt-churn", "pte-update", "m", "", "nope", new string('x', 300), null }
                : new object?[] { "m", "", "nope", "  ", new string('x', 300), null };
        if (t.IsEnum)
        {
            var defined = Enum.GetValues(t).Cast<object>();
            var undefined = new[] { Enum.ToObject(t, 99), Enum.ToObject(t, t.GetEnumUnderlyingType() == typeof(byte) ? 255 : -1) };
            return defined.Concat(undefined).Cast<object?>().ToArray();
        }
        if (t == typeof(FramebufferConfig))
            return new object?[]
            {
                new FramebufferConfig("n", 0xE0000000, 64, 64, 32), null,
                new FramebufferConfig("n", 0xE0000000, 0, 10, 32), new FramebufferConfig("n", 0xE0000000, -1, -1, 32),
                new FramebufferConfig("n", 0xE0000001, 64, 64, 32), new FramebufferConfig("n", ulong.MaxValue & ~0xFFFUL, 64, 64, 32),
                new FramebufferConfig("n", 0x7FFFFFF000, 16384, 16384, 32), new FramebufferConfig("n", 0xE0000000, 64, 64, 7),
                new FramebufferConfig("n", 0xE0000000, 64, 64, 32, int.MaxValue), new FramebufferConfig("n", 0xE0000000, 64, 64, 32, -5),
                new FramebufferConfig("", 0xE0000000, 64, 64, 32), new FramebufferConfig("m", 0xE0000000, 64, 64, 32),
                new FramebufferConfig("n", 0x200000, 64, 64, 32),                                  // over RAM and the kernel's tables
            };
        if (t == typeof(WorkloadConfig))
            return new object?[]
            {
                new WorkloadConfig(1, 100_000, new[] { new WorkloadStep(WorkloadStepKind.Fill) { Framebuffer = "m", Width = 8, Height = 8 } }), null,
                new WorkloadConfig(-1, -1, Array.Empty<WorkloadStep>()),
                new WorkloadConfig(1, 1000, new[] { new WorkloadStep(WorkloadStepKind.Fill) { Framebuffer = "nope", Width = 8, Height = 8 } }),
                new WorkloadConfig(1, 1000, new[] { new WorkloadStep(WorkloadStepKind.Fill) { Framebuffer = "m", X = 100000, Width = 1 << 20, Height = -3 } }),
                new WorkloadConfig(1, 1000, new[] { new WorkloadStep(WorkloadStepKind.PageTableChurn) { Pages = 1 << 20 } }),
            };
        if (t == typeof(IReadOnlyList<ulong>))
            return new object?[] { new ulong[] { 0x2000 }, null, Array.Empty<ulong>(), new ulong[] { 5, 2 }, new ulong[] { ulong.MaxValue, 0 }, U64 };
        if (t == typeof(Vcpu)) return new object?[] { d.Vcpus[0], null };
        if (t == typeof(PagingOptions))
            return new object?[] { null, PagingOptions.Default, new PagingOptions { OosSlots = 0 }, new PagingOptions { HapGpaCacheEntries = 3 }, new PagingOptions { Oos = (OosMode)9 } };
        if (t == typeof(VramRange)) return new object?[] { null, d.Vram.Ranges.FirstOrDefault() };
        if (t == typeof(TranslationTrace)) return new object?[] { new TranslationTrace(), null };
        if (t == typeof(Action<FrameReport>)) return new object?[] { (Action<FrameReport>)(_ => { }), null };
        if (t == typeof(IProgress<XenLab.Progress.LabProgress>)) return new object?[] { null, new XenLab.Progress.SynchronousProgress(_ => { }) };
        if (t == typeof(System.Threading.CancellationToken)) return new object?[] { default(System.Threading.CancellationToken), Cancelled };
        throw new InvalidOperationException($"the sweep has no values for {t.Name} '{n}': add some");
    }

    /// <summary>Each parameter's values in turn with the others sensible, then seeded random mixes.</summary>
    private static IEnumerable<object?[]> Calls(object?[][] choices, Random rng)
    {
        var sane = choices.Select(c => c[0]).ToArray();
        yield return (object?[])sane.Clone();
        for (int i = 0; i < choices.Length; i++)
            for (int j = 1; j < choices[i].Length; j++)
            {
                var args = (object?[])sane.Clone();
                args[i] = choices[i][j];
                yield return args;
            }
        if (choices.Length > 1)
            for (int k = 0; k < 12; k++)
                yield return choices.Select(c => c[rng.Next(c.Length)]).ToArray();
    }

    /// <summary>Calls and classifies: null when the outcome is allowed, else what went wrong.</summary>
    private static string? Call(MethodInfo m, object? target, object?[] args)
    {
        try
        {
            var result = m.Invoke(target, (object?[])args.Clone());
            if (result is System.Collections.IEnumerable e and not string) foreach (var _ in e) { }   // lazy results run too
            return null;
        }
        catch (TargetInvocationException tie) when (tie.InnerException is { } inner)
        {
            if (inner is XenLabException) return null;
            if (inner is ArgumentNullException && args.Any(a => a is null)) return null;
            if (inner is OperationCanceledException && args.Any(a => a is System.Threading.CancellationToken { IsCancellationRequested: true })) return null;
            return $"{inner.GetType().Name}: {inner.Message}\n{inner.StackTrace}";
        }
    }

    private static string Show(object? a) => a switch
    {
        null => "null",
        ulong u => $"0x{u:x}",
        string s => $"\"{(s.Length > 10 ? s[..10] + "..." : s)}\"",
        Array arr => $"[{arr.Length}]",
        _ => a.ToString() ?? "?",
    };
}
