// The emulated host: machine memory and the domains built on it. One XenHost is one lab
// session (the PowerShell module keeps one per process, shared by its runspaces). Threads
// may share it: the domain list and ids are under one lock (never held while taking a
// domain's lock; see Domain's locking rule), machine memory and the VLPT window lock themselves.
using System;
using System.Collections.Generic;
using XenLab.Config;
using XenLab.Memory;
using XenLab.Paging.Arm;

namespace XenLab.Domains;

public sealed class XenHost
{
    /// <summary>Default host memory: frames cost nothing until written, so this can be generous.</summary>
    public const ulong DefaultMemoryBytes = 64UL << 30;

    private readonly List<Domain> _domains = new();
    private readonly object _domainsGate = new();   // _domains and _nextDomid
    private int _nextDomid = 1;

    /// <param name="memoryBytes">Host machine memory.</param>
    /// <param name="vlptWindowBytes">The hypervisor VA region ARM domains' VLPTs share (seed 002: 128 MiB).</param>
    /// <param name="vlptLayout">Per-domain slices of that window (default) or slots shared and rewritten at context switch.</param>
    public XenHost(ulong memoryBytes = DefaultMemoryBytes, ulong vlptWindowBytes = VlptWindow.DefaultBytes,
        VlptLayout vlptLayout = VlptLayout.PerDomainSlices)
    {
        Machine = new MachineMemory(memoryBytes);
        VlptWindow = new VlptWindow(Machine, vlptWindowBytes, vlptLayout);
    }

    public MachineMemory Machine { get; }
    /// <summary>The virtual-linear page table window ARM domains' fault handlers use (ArmLeafLookup.Vlpt).</summary>
    public VlptWindow VlptWindow { get; }

    /// <summary>The domains now, as a snapshot (another thread may add or remove meanwhile).</summary>
    public IReadOnlyList<Domain> Domains
    {
        get { lock (_domainsGate) return _domains.ToArray(); }
    }

    /// <summary>
    /// The scheduler switching a pCPU from <paramref name="from"/> to <paramref name="to"/>: with
    /// shared VLPT slots this is where their rewrite and TLB maintenance are paid. Returns the slots written.
    /// </summary>
    public int ContextSwitch(Domain? from, Domain to)
    {
        // Both domains' state is read and counted: take both, in domid order (no deadlock).
        var (first, second) = from is null || from == to ? (to, null) : from.Id < to.Id ? (from, to) : (to, from);
        using var a = first.EnterOperation();
        using var b = second is null ? default : second.EnterOperation();
        return VlptWindow.ContextSwitch(from, to);
    }

    /// <summary>
    /// Builds a domain; on any failure nothing is left allocated or registered. When the
    /// configuration came from a file, the error names the position of the key that caused it.
    /// A big build reports its progress and can be stopped every 64 Ki pages
    /// (OperationCanceledException): a stopped build leaves nothing behind either.
    /// </summary>
    public Domain CreateDomain(DomainConfig config, IProgress<Progress.LabProgress>? progress = null, System.Threading.CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(config);
        try
        {
            return CreateDomainCore(config, progress, cancel);
        }
        catch (XenLabException e) when (config.Source is { } source)
        {
            e.Locate(source.Locate(e.ConfigKey));
            throw;
        }
    }

    private Domain CreateDomainCore(DomainConfig config, IProgress<Progress.LabProgress>? progress, System.Threading.CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        // Held for the build so that the name check and the registration are one step; a new
        // domain is nobody else's yet, so taking its lock under this one cannot deadlock.
        lock (_domainsGate)
        {
            if (Find(config.Name) is not null)
                throw new InvalidConfigurationException($"A domain named '{config.Name}' already exists.") { ConfigKey = "name" };
            var domain = new Domain(_nextDomid, config.Clone(), Machine) { Host = this };
            try
            {
                domain.Build(progress is null && !cancel.CanBeCanceled ? null : new Progress.ProgressReporter(progress, cancel));
            }
            catch
            {
                domain.Destroy();
                throw;
            }
            _nextDomid++;
            _domains.Add(domain);
            return domain;
        }
    }

    public Domain? Find(string name)
    {
        lock (_domainsGate)
        {
            foreach (var d in _domains)
                if (string.Equals(d.Name, name, StringComparison.OrdinalIgnoreCase)) return d;
            return null;
        }
    }

    public Domain Get(string name) => Find(name) ?? throw new DomainNotFoundException(name);

    /// <summary>
    /// Removes a domain and gives its frames back. Takes the domain's lock first (so it waits for
    /// an operation in progress, and may be called from inside one: a hypercall handler); a domain
    /// already removed is <see cref="DomainRemovedException"/>.
    /// </summary>
    public void DestroyDomain(Domain domain)
    {
        ArgumentNullException.ThrowIfNull(domain);
        using var op = domain.EnterOperation();
        lock (_domainsGate)
            if (!_domains.Remove(domain)) throw new DomainNotFoundException(domain.Name);
        domain.Destroy();
    }
}
