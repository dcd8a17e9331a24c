// Built-in memory workloads that drive a domain through its guest kernel and vCPUs, so a lab
// can compare paging modes on the same work without guest code: page-table churn (map,
// touch, unmap: what fork/exec/munmap do to page tables) and in-place PTE updates (what
// copy-on-write breaks and mprotect do, written through the kernel's own mapping of its
// tables, with context switches). Both stop only between whole rounds: a stopped pt-churn has
// unmapped its last round's pages, a stopped pte-update has its aliases mapped and some leaves
// flipped, and the counters hold exactly the rounds that ran.
using System;
using System.Collections.Generic;
using System.Threading;
using XenLab.Cpu;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Memory;
using XenLab.Paging;
using XenLab.Progress;

namespace XenLab.Lab;

/// <summary>Counter deltas of one workload run.</summary>
public sealed record WorkloadResult(string DomainName, string Workload, string Mode, string Options, long Operations, IReadOnlyDictionary<string, long> Counters)
{
    public long this[PerfCounter c] => Counters.TryGetValue(PerfCounterInfo.Name(c), out long v) ? v : 0;
}

public static class MemoryWorkloads
{
    public const ulong RegionVa = 0x10000000;       // 256 MiB: workload mappings
    public const ulong TableAliasVa = 0x20000000;   // 512 MiB: the kernel's table pool, mapped writable
    public const ulong DataGfn = 0x4000;            // workload frames from 64 MiB up

    public static readonly string[] Names = { "pt-churn", "pte-update" };

    /// <summary>The most rounds one call runs (Invoke-XenWorkload -Rounds has the same bound).</summary>
    public const int MaxRounds = 1_000_000;

    private static void CheckRounds(int rounds)
    {
        if (rounds < 1 || rounds > MaxRounds) throw new InvalidConfigurationException($"rounds {rounds} must be between 1 and {MaxRounds}.");
    }

    /// <summary>Runs a built-in workload; a stop (<paramref name="cancel"/>) comes between rounds as OperationCanceledException.</summary>
    public static WorkloadResult Run(Domain d, string name, int rounds, IProgress<LabProgress>? progress = null, CancellationToken cancel = default)
    {
        using var op = d.EnterOperation();
        return name switch
        {
            "pt-churn" => PageTableChurn(d, rounds, progress: progress, cancel: cancel),
            "pte-update" => PteUpdates(d, rounds, progress, cancel),
            _ => throw new InvalidConfigurationException($"Unknown workload '{name}'; built-in: {string.Join(", ", Names)}."),
        };
    }

    /// <summary>
    /// Each round maps 64 pages in one of four 2 MiB regions, writes and reads every page from a
    /// vCPU chosen round-robin, and unmaps them again.
    /// </summary>
    public static WorkloadResult PageTableChurn(Domain d, int rounds, int pages = 64, IProgress<LabProgress>? progress = null, CancellationToken cancel = default)
    {
        using var op = d.EnterOperation();
        CheckRounds(rounds);
        // Each round's pages sit in one 2 MiB region of four.
        if (pages < 1 || pages > 512) throw new InvalidConfigurationException($"pages {pages} must be between 1 and 512 (one 2 MiB region).");
        RequireFrames(d, (ulong)pages * 4);
        var reporter = new ProgressReporter(progress, cancel);
        reporter.Begin($"Workload pt-churn on domain '{d.Name}'", rounds, "round");
        var before = Snapshot(d);
        var buf = new byte[8];
        long ops = 0;
        for (int r = 0; r < rounds; r++)
        {
            var v = d.Vcpus[r % d.Vcpus.Count];
            ulong va = RegionVa + ((ulong)(r % 4) << 21);
            ulong gfn = DataGfn + (ulong)(r % 4) * (ulong)pages;
            d.Kernel.Map(va, gfn, (ulong)pages, MapFlags.Writable);
            for (int p = 0; p < pages; p++)
            {
                BitConverter.TryWriteBytes(buf, (long)r * pages + p);
                Check(v.WriteVirtual(va + ((ulong)p << Page.Shift), buf), va);
                Check(v.ReadVirtual(va + ((ulong)p << Page.Shift), buf), va);
                ops += 2;
            }
            d.Kernel.Unmap(va, (ulong)pages);
            d.AdvanceClockInOperation(2L * pages * X86Cpu.NsPerInstruction);   // each access as one guest instruction
            reporter.Step(r + 1);                                       // safe point: the round's pages are unmapped again
        }
        reporter.Complete(rounds);
        return Result(d, "pt-churn", ops, before);
    }

    /// <summary>
    /// A 512-page address space whose leaf entries the guest rewrites in place through its own
    /// writable mapping of the page-table pool, flipping each page between two frames (a
    /// copy-on-write break), invalidating the address and touching the page; every 16 updates
    /// every vCPU reloads CR3 (a context switch). Under shadow paging these are the writes that
    /// trap (OOS off) or go out of sync and are resynced on the CR3 load.
    /// </summary>
    public static WorkloadResult PteUpdates(Domain d, int rounds, IProgress<LabProgress>? progress = null, CancellationToken cancel = default)
    {
        using var op = d.EnterOperation();
        CheckRounds(rounds);
        const int Pages = 512;
        RequireFrames(d, Pages * 2);
        var k = d.Kernel;
        if (k.Mappings().Find(m => m.VirtualAddress == TableAliasVa) is null)
            k.Map(TableAliasVa, k.PoolBaseGfn, (ulong)k.PoolPages, MapFlags.Writable);
        if (k.Mappings().Find(m => m.VirtualAddress == RegionVa) is null)
            k.Map(RegionVa, DataGfn, Pages, MapFlags.Writable);
        var leaves = new List<GuestLeaf>();
        foreach (var l in k.Leaves())
            if (l.VirtualAddress >= RegionVa && l.VirtualAddress < RegionVa + ((ulong)Pages << Page.Shift)) leaves.Add(l);
        var reporter = new ProgressReporter(progress, cancel);
        reporter.Begin($"Workload pte-update on domain '{d.Name}'", rounds, "round");
        var before = Snapshot(d);
        var buf = new byte[8];
        var rng = new Random(12345);
        long ops = 0;
        for (int r = 0; r < rounds; r++)
        {
            var v = d.Vcpus[r % d.Vcpus.Count];
            // A process touches a working set, then breaks copy-on-write on a few of its pages.
            for (int i = 0; i < 8; i++)
            {
                var leaf = leaves[rng.Next(leaves.Count)];
                Check(v.ReadVirtual(leaf.VirtualAddress, buf), leaf.VirtualAddress);
                ops++;
            }
            {
                int i = rng.Next(leaves.Count);
                var leaf = leaves[i];
                d.TryReadPhysU64(leaf.EntryAddress, out ulong pte);
                var s = k.Format.Decode(pte, 1);
                ulong frame = s.Frame >= DataGfn + Pages ? s.Frame - Pages : s.Frame + Pages;
                ulong next = k.Format.Encode(s with { Frame = frame, Accessed = false, Dirty = false }, 1);
                ulong alias = TableAliasVa + (leaf.EntryAddress - (k.PoolBaseGfn << Page.Shift));
                BitConverter.TryWriteBytes(buf, next);
                Check(v.WriteVirtual(alias, buf), alias);
                foreach (var cpu in d.Vcpus) cpu.InvalidatePage(leaf.VirtualAddress);
                BitConverter.TryWriteBytes(buf, (long)r);
                Check(v.WriteVirtual(leaf.VirtualAddress, buf), leaf.VirtualAddress);
                ops += 2;
            }
            if (r % 16 == 15)
                foreach (var cpu in d.Vcpus) cpu.LoadCr3(cpu.Cr3);     // a context switch on every CPU
            d.AdvanceClockInOperation(10 * X86Cpu.NsPerInstruction);   // the round's 10 accesses, one guest instruction each
            reporter.Step(r + 1);                                       // safe point: every write of the round went through
        }
        reporter.Complete(rounds);
        return Result(d, "pte-update", ops, before);
    }

    private static void RequireFrames(Domain d, ulong pages)
    {
        for (ulong g = DataGfn; g < DataGfn + pages; g++)
            if (d.Classify(g) != PhysAccessStatus.Ok)
                throw new InvalidConfigurationException($"The workload needs RAM at gfn 0x{DataGfn:x}-0x{DataGfn + pages - 1:x}; gfn 0x{g:x} is not populated (give the domain at least {((DataGfn + pages) >> 8) + 1} MiB).");
    }

    private static void Check(VirtualAccessResult r, ulong va)
    {
        if (!r.IsOk) throw new WorkloadFaultException($"workload access at 0x{va:x} failed: {r}");
    }

    private static long[] Snapshot(Domain d)
    {
        var s = new long[PerfCounterInfo.Count];
        for (int i = 0; i < s.Length; i++) s[i] = d.Counters[(PerfCounter)i];
        return s;
    }

    private static WorkloadResult Result(Domain d, string name, long ops, long[] before)
    {
        var diff = new Dictionary<string, long>();
        for (int i = 0; i < before.Length; i++)
        {
            long delta = d.Counters[(PerfCounter)i] - before[i];
            if (delta != 0) diff[PerfCounterInfo.Name((PerfCounter)i)] = delta;
        }
        return new WorkloadResult(d.Name, name, d.PagingMode.ToString(), d.PagingOptionsText, ops, diff);
    }
}
