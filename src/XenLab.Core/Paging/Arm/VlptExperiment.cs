// Seed 002's open question, measured: is the leaf lookup of the dirty-tracing fault handler
// cheaper by walking the p2m (map_domain_page per level) or through the VLPT, once the TLB
// maintenance the VLPT needs is paid? One pCPU round-robins over N ARM domains, every other one
// tracing (log-dirty on, as a migration does) and the rest not, so switches alternate between
// traced and untraced domains. A traced domain takes F write faults per time slice on pages
// spread over its RAM. Everything is the emulator's real work: real faults, real lookups
// through the real window, real slot writes at context switch, the hypervisor TLB model in
// between; the cost table turns the counts into cycles.
using System;
using System.Collections.Generic;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Paging.Modes;

namespace XenLab.Paging.Arm;

public sealed record VlptExperimentOptions
{
    public int Domains { get; init; } = 2;
    public int FaultsPerSwitch { get; init; } = 16;
    /// <summary>Context switches measured (after one warm-up pass over every domain).</summary>
    public int Switches { get; init; } = 64;
    public ArmLeafLookup Lookup { get; init; } = ArmLeafLookup.Vlpt;
    public VlptLayout Layout { get; init; } = VlptLayout.PerDomainSlices;
    public VlptInvalidation Invalidation { get; init; } = VlptInvalidation.ByAddress;
    public int TlbEntries { get; init; } = HypervisorTlb.DefaultEntries;
    public int TlbWays { get; init; } = HypervisorTlb.DefaultWays;
    public int WorkingSetPages { get; init; } = HypervisorTlb.DefaultWorkingSetPages;
    public ulong DomainMemoryMiB { get; init; } = 64;
    public VlptCosts Costs { get; init; } = VlptCosts.Default;

    public List<string> Problems()
    {
        var p = new List<string>();
        if (Domains < 1 || Domains > 64) p.Add($"domains {Domains} must be between 1 and 64");
        if (FaultsPerSwitch < 0 || FaultsPerSwitch > 1 << 16) p.Add($"faults per switch {FaultsPerSwitch} must be between 0 and 65536");
        if (Switches < 1 || Switches > 1 << 16) p.Add($"switches {Switches} must be between 1 and 65536");
        if (DomainMemoryMiB < 4 || DomainMemoryMiB > 4096) p.Add($"domain memory {DomainMemoryMiB} MiB must be between 4 and 4096");
        return p;
    }

    /// <summary>"walk", "vlpt slices", "vlpt shared, by address", "vlpt shared, full flush".</summary>
    public string Strategy => Lookup == ArmLeafLookup.Walk ? "walk"
        : Layout == VlptLayout.PerDomainSlices ? "vlpt slices"
        : Invalidation == VlptInvalidation.ByAddress ? "vlpt shared, by address" : "vlpt shared, full flush";
}

/// <summary>What one run counted, in real units, and what the cost table makes of it.</summary>
public sealed record VlptMeasurement(
    string Strategy, int Domains, int TracedDomains, int FaultsPerSwitch, int Switches,
    long Faults, long DescriptorReads, long Maps, long SlotWrites,
    long TlbHits, long TlbMisses, long LookupTlbMisses, long Refills, long InvalidationsByAddress, long FullFlushes,
    double Cycles)
{
    /// <summary>The domains measured, on the experiment's private host ("vlpt0..vlpt3").</summary>
    public string DomainName => Domains == 1 ? "vlpt0" : $"vlpt0..vlpt{Domains - 1}";
    /// <summary>Everything the lookups and the slots' upkeep cost, per fault taken (infinite if none).</summary>
    public double CyclesPerFault => Faults == 0 ? double.PositiveInfinity : Cycles / Faults;
    public double CyclesPerSwitch => Cycles / Switches;
}

public static class VlptExperiment
{
    public static VlptMeasurement Run(VlptExperimentOptions o)
    {
        var problems = o.Problems();
        if (problems.Count > 0) throw new InvalidConfigurationException($"VLPT experiment: {string.Join("; ", problems)}.");
        ulong hostBytes = ((ulong)o.Domains * (o.DomainMemoryMiB + 8) + 256) << 20;
        var host = new XenHost(hostBytes, vlptLayout: o.Layout);
        var window = host.VlptWindow;
        window.Tlb = new HypervisorTlb(o.TlbEntries, o.TlbWays, o.WorkingSetPages);
        window.Invalidation = o.Invalidation;

        var domains = new List<Domain>();
        var streams = new List<FaultStream?>();
        for (int i = 0; i < o.Domains; i++)
        {
            var c = new DomainConfig
            {
                Name = $"vlpt{i}", MemoryMiB = o.DomainMemoryMiB, MaxMemMiB = o.DomainMemoryMiB, Paging = PagingModeKind.Arm,
                PagingOptions = PagingOptions.Default with { ArmLeafLookup = o.Lookup },
            };
            var d = host.CreateDomain(c);
            domains.Add(d);
            bool traced = i % 2 == 0;
            if (traced)
            {
                d.LogDirty.Enable();
                // The steady state of a migration: earlier rounds have split every block already.
                var s2 = ((ArmMode)d.Mode!).Stage2;
                foreach (var (pfn, _) in d.P2m.EnumerateRam())
                    if ((pfn & 511) == 0 && s2.Locate(pfn).ArmLevel == 2) s2.SplitBlock(pfn);
            }
            streams.Add(traced ? new FaultStream(d, seed: i) : null);
        }

        Domain? from = null;
        void Run(int switches)
        {
            for (int s = 0; s < switches; s++)
            {
                var to = domains[s % domains.Count];
                host.ContextSwitch(from, to);
                streams[s % domains.Count]?.Write(o.FaultsPerSwitch);
                from = to;
            }
        }
        Run(domains.Count);                                     // warm-up: every domain once

        var tlb = window.Tlb;
        long C(PerfCounter k) { long n = 0; foreach (var d in domains) n += d.Counters[k]; return n; }
        long faults0 = C(PerfCounter.Stage2AbortPermission), reads0 = C(PerfCounter.VlptMemRef) + C(PerfCounter.Stage2LeafWalkMemRef),
            maps0 = C(PerfCounter.Stage2LeafWalkMaps), slots0 = window.SlotWrites, hits0 = tlb.TotalHits, misses0 = tlb.TotalMisses,
            lookupMisses0 = tlb.Misses(HypervisorAccess.Vlpt) + tlb.Misses(HypervisorAccess.MappedTable),
            refills0 = tlb.Refills, tlbi0 = tlb.InvalidationsByAddress, flushes0 = tlb.FullFlushes;
        // Start the measured switches from the domain after the warm-up's last.
        Run(o.Switches);

        long faults = C(PerfCounter.Stage2AbortPermission) - faults0;
        long reads = C(PerfCounter.VlptMemRef) + C(PerfCounter.Stage2LeafWalkMemRef) - reads0;
        long maps = C(PerfCounter.Stage2LeafWalkMaps) - maps0;
        long slots = window.SlotWrites - slots0;
        long hits = tlb.TotalHits - hits0, misses = tlb.TotalMisses - misses0;
        long lookupMisses = tlb.Misses(HypervisorAccess.Vlpt) + tlb.Misses(HypervisorAccess.MappedTable) - lookupMisses0;
        long refills = tlb.Refills - refills0, tlbi = tlb.InvalidationsByAddress - tlbi0, flushes = tlb.FullFlushes - flushes0;
        var k = o.Costs;
        double cycles = hits * k.TlbHit + misses * k.TlbMiss + reads * k.DescriptorRead + maps * k.MapDomainPage
            + slots * k.SlotWrite + tlbi * k.TlbiByAddress + flushes * k.FullFlush;
        int tracedDomains = (o.Domains + 1) / 2;
        return new VlptMeasurement(o.Strategy, o.Domains, tracedDomains, o.FaultsPerSwitch, o.Switches,
            faults, reads, maps, slots, hits, misses, lookupMisses, refills, tlbi, flushes, cycles);
    }

    /// <summary>
    /// A traced domain's writes: each to a page not yet written this round, in a fixed scattered
    /// order over its RAM (a stride coprime to the page count), so each write faults once; when
    /// every page is written the log is cleaned (a pre-copy round ends) and the order starts again.
    /// </summary>
    private sealed class FaultStream
    {
        private readonly Domain _domain;
        private readonly List<ulong> _gfns = new();
        private readonly ulong _stride;
        private ulong _next;
        private int _written;
        private readonly byte[] _one = { 1 };

        public FaultStream(Domain d, int seed)
        {
            _domain = d;
            foreach (var (pfn, _) in d.P2m.EnumerateRam()) _gfns.Add(pfn);
            ulong n = (ulong)_gfns.Count;
            _stride = 2654435761UL % n;                          // Knuth's multiplicative constant, made coprime below
            while (Gcd(_stride, n) != 1) _stride++;
            _next = (ulong)seed * 7919 % n;
        }

        public void Write(int count)
        {
            for (int i = 0; i < count; i++)
            {
                if (_written == _gfns.Count)
                {
                    _domain.LogDirty.Read(clean: true);
                    _written = 0;
                }
                _domain.WriteGuestPhysical(_gfns[(int)_next] << 12, _one);
                _next = (_next + _stride) % (ulong)_gfns.Count;
                _written++;
            }
        }

        private static ulong Gcd(ulong a, ulong b) { while (b != 0) (a, b) = (b, a % b); return a; }
    }
}
