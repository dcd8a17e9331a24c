// A small model of one pCPU's hypervisor (EL2) TLB, to settle seed 002's open question by
// measurement: "doing the domain_map_page walk on each lookup might be offset by the need to do
// all that TLB maintenance on context switch ... something which we can only resolve by
// measuring". It sees the hypervisor's own accesses only: the VLPT lookup's two window pages, the
// walk lookup's table pages through the hypervisor's map of RAM, and a few pages of the
// hypervisor's own text/data/stack touched on every trap and context switch (its working set,
// which a full flush throws away and which then refills). Set-associative with LRU ways, tags
// per page size: VLPT pages are 4 KiB, the map of RAM uses 2 MiB entries. EL2 has no ASIDs, so
// nothing survives a full flush. Counts are real units; VlptCosts turns them into cycles.
// Domains on several threads share the host's one model: each operation takes its lock (a
// leaf lock, also taken under the VLPT window's).
using System;
using System.Collections.Generic;

namespace XenLab.Paging.Arm;

/// <summary>What a hypervisor TLB access was for (the breakdown of hits and misses).</summary>
public enum HypervisorAccess
{
    /// <summary>A VLPT window or loop page (the leaf or second-level entry through the VLPT).</summary>
    Vlpt,
    /// <summary>A p2m table page reached through the hypervisor's map of RAM (map_domain_page).</summary>
    MappedTable,
    /// <summary>The hypervisor's own text, data and stack.</summary>
    WorkingSet,
}

/// <summary>How the slots' TLB entries are kept right when a VLPT slot is rewritten.</summary>
public enum VlptInvalidation
{
    /// <summary>TLBI by VA for every page the slot maps (512) and its alias page in the loop (Xen's flush_xen_data_tlb_range_va).</summary>
    ByAddress,
    /// <summary>One full hypervisor TLB flush per operation that rewrote slots (TLBI ALLE2); everything refills afterwards.</summary>
    FullFlush,
}

public sealed class HypervisorTlb
{
    public const int DefaultEntries = 512;
    public const int DefaultWays = 4;
    /// <summary>Pages of its own the hypervisor touches on each trap and context switch (an assumption).</summary>
    public const int DefaultWorkingSetPages = 8;
    /// <summary>Where the model puts the hypervisor's map of RAM (its page for mfn m is DirectMapVa + m * 4 KiB).</summary>
    public const ulong DirectMapVa = 0x40_0000_0000UL;
    public const int DirectMapShift = 21;
    /// <summary>Where the hypervisor's own working set lives (its text and data, 2 MiB up).</summary>
    public const ulong WorkingSetVa = 0x20_0000UL;

    private readonly ulong[] _tags;       // (page number << 6 | shift) + 1, 0 = empty
    private readonly long[] _lastUse;
    private readonly int _sets;
    private long _clock;
    private readonly HashSet<ulong> _invalidated = new();   // tags thrown out by maintenance, not capacity
    private readonly object _gate = new();

    public HypervisorTlb(int entries = DefaultEntries, int ways = DefaultWays, int workingSetPages = DefaultWorkingSetPages)
    {
        if (ways < 1 || entries < ways || entries % ways != 0 || ((entries / ways) & (entries / ways - 1)) != 0)
            throw new InvalidConfigurationException($"Hypervisor TLB of {entries} entries and {ways} way(s): entries must be a power-of-two number of sets times the ways.");
        if (workingSetPages < 0 || workingSetPages > 4096)
            throw new InvalidConfigurationException($"Hypervisor working set of {workingSetPages} pages must be between 0 and 4096.");
        Entries = entries;
        Ways = ways;
        WorkingSetPages = workingSetPages;
        _sets = entries / ways;
        _tags = new ulong[entries];
        _lastUse = new long[entries];
    }

    public int Entries { get; }
    public int Ways { get; }
    public int WorkingSetPages { get; }

    private readonly long[] _hits = new long[3];
    private readonly long[] _misses = new long[3];
    public long Hits(HypervisorAccess kind) => _hits[(int)kind];
    public long Misses(HypervisorAccess kind) => _misses[(int)kind];
    public long TotalHits => _hits[0] + _hits[1] + _hits[2];
    public long TotalMisses => _misses[0] + _misses[1] + _misses[2];
    /// <summary>Misses on entries that maintenance (not capacity) had thrown out: the price of keeping the slots right.</summary>
    public long Refills { get; private set; }
    /// <summary>TLBI by VA operations issued.</summary>
    public long InvalidationsByAddress { get; private set; }
    /// <summary>Full hypervisor TLB flushes issued.</summary>
    public long FullFlushes { get; private set; }

    private static ulong Tag(ulong va, int shift) => (((va >> shift) << 6) | (uint)shift) + 1;

    /// <summary>The hypervisor reads through VA <paramref name="va"/> mapped with pages of 1 &lt;&lt; <paramref name="shift"/>: true on a hit; a miss fills (LRU way).</summary>
    public bool Access(ulong va, int shift, HypervisorAccess kind)
    {
        lock (_gate) return AccessLocked(va, shift, kind);
    }

    private bool AccessLocked(ulong va, int shift, HypervisorAccess kind)
    {
        ulong tag = Tag(va, shift);
        int set = (int)((va >> shift) & (ulong)(_sets - 1));
        int first = set * Ways, empty = -1, lru = first;
        _clock++;
        for (int i = first; i < first + Ways; i++)
        {
            if (_tags[i] == tag)
            {
                _lastUse[i] = _clock;
                _hits[(int)kind]++;
                return true;
            }
            if (_tags[i] == 0) { if (empty < 0) empty = i; }
            else if (_lastUse[i] < _lastUse[lru]) lru = i;
        }
        int victim = empty >= 0 ? empty : lru;
        _misses[(int)kind]++;
        if (_invalidated.Remove(tag)) Refills++;
        _tags[victim] = tag;
        _lastUse[victim] = _clock;
        return false;
    }

    /// <summary>The hypervisor's own pages touched on entry to a trap or a context switch.</summary>
    public void TouchWorkingSet()
    {
        lock (_gate)
            for (int i = 0; i < WorkingSetPages; i++) AccessLocked(WorkingSetVa + ((ulong)i << 12), 12, HypervisorAccess.WorkingSet);
    }

    /// <summary>TLBI by VA for <paramref name="pages"/> 4 KiB pages from <paramref name="va"/>.</summary>
    public void InvalidateRange(ulong va, int pages)
    {
        lock (_gate)
        {
            for (int p = 0; p < pages; p++)
            {
                ulong a = va + ((ulong)p << 12);
                InvalidationsByAddress++;
                ulong tag = Tag(a, 12);
                int first = (int)((a >> 12) & (ulong)(_sets - 1)) * Ways;
                for (int i = first; i < first + Ways; i++)
                    if (_tags[i] == tag) { _tags[i] = 0; _invalidated.Add(tag); }
            }
        }
    }

    /// <summary>TLBI ALLE2: every entry goes (EL2 has no ASIDs or global bits to keep any).</summary>
    public void FlushAll()
    {
        lock (_gate) FlushAllLocked();
    }

    private void FlushAllLocked()
    {
        FullFlushes++;
        for (int i = 0; i < _tags.Length; i++)
        {
            if (_tags[i] != 0) _invalidated.Add(_tags[i]);
            _tags[i] = 0;
        }
    }
}

/// <summary>
/// The price of each operation, in CPU cycles, that the walk-or-VLPT comparison counts. The
/// defaults are assumptions of the right order for a Cortex-A15/A57-class core, not measurements
/// (XenLab runs on no ARM hardware); a lab sets its own (Measure-XenVlpt -Cost). What each
/// default rests on is said per field.
/// </summary>
public sealed record VlptCosts
{
    /// <summary>Hypervisor TLB hit: folded into the access (0). Assumption.</summary>
    public double TlbHit { get; init; } = 0;
    /// <summary>Hypervisor TLB miss: a stage-1 walk of the hypervisor's 3-level tables, descriptors mostly in L2 (3 x ~10). Assumption.</summary>
    public double TlbMiss { get; init; } = 30;
    /// <summary>Reading one p2m descriptor: an L2-cache hit on a Cortex-A15 class core (~10). Assumption.</summary>
    public double DescriptorRead { get; init; } = 10;
    /// <summary>map_domain_page + unmap per table page. On arm32: a per-CPU slot lookup and refcount, sometimes a slot rewrite with a local TLBI (~40). On arm64 with a direct map about 0 (the thread). Assumption.</summary>
    public double MapDomainPage { get; init; } = 40;
    /// <summary>Writing one xen_second entry with its DSB (~20). Assumption.</summary>
    public double SlotWrite { get; init; } = 20;
    /// <summary>One local TLBI by VA, its share of the DSB/ISB (~10). Assumption.</summary>
    public double TlbiByAddress { get; init; } = 10;
    /// <summary>TLBI ALLE2 + DSB + ISB, not counting the refills that follow (counted as misses) (~100). Assumption.</summary>
    public double FullFlush { get; init; } = 100;

    public static readonly VlptCosts Default = new();

    /// <summary>Every field, for display and for setting by name.</summary>
    public static readonly string[] Names = { nameof(TlbHit), nameof(TlbMiss), nameof(DescriptorRead), nameof(MapDomainPage), nameof(SlotWrite), nameof(TlbiByAddress), nameof(FullFlush) };

    /// <summary>A copy with <paramref name="name"/> (case-insensitive) set to <paramref name="cycles"/>.</summary>
    public VlptCosts With(string name, double cycles)
    {
        if (cycles < 0 || double.IsNaN(cycles) || double.IsInfinity(cycles))
            throw new InvalidConfigurationException($"Cost {name} = {cycles} cycles must be a finite number >= 0.");
        return name.ToLowerInvariant() switch
        {
            "tlbhit" => this with { TlbHit = cycles },
            "tlbmiss" => this with { TlbMiss = cycles },
            "descriptorread" => this with { DescriptorRead = cycles },
            "mapdomainpage" => this with { MapDomainPage = cycles },
            "slotwrite" => this with { SlotWrite = cycles },
            "tlbibyaddress" => this with { TlbiByAddress = cycles },
            "fullflush" => this with { FullFlush = cycles },
            _ => throw new InvalidConfigurationException($"Unknown cost '{name}'; known: {string.Join(", ", Names)}."),
        };
    }
}
