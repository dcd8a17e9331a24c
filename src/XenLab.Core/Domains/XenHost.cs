// The emulated host: machine memory and the domains built on it. One XenHost is one lab
// session (the PowerShell module keeps one per runspace process).
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

    public IReadOnlyList<Domain> Domains => _domains;

    /// <summary>
    /// The scheduler switching a pCPU from <paramref name="from"/> to <paramref name="to"/>: with
    /// shared VLPT slots this is where their rewrite and TLB maintenance are paid. Returns the slots written.
    /// </summary>
    public int ContextSwitch(Domain? from, Domain to) => VlptWindow.ContextSwitch(from, to);

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

    public Domain? Find(string name)
    {
        foreach (var d in _domains)
            if (string.Equals(d.Name, name, StringComparison.OrdinalIgnoreCase)) return d;
        return null;
    }

    public Domain Get(string name) => Find(name) ?? throw new DomainNotFoundException(name);

    public void DestroyDomain(Domain domain)
    {
        if (!_domains.Remove(domain)) throw new DomainNotFoundException(domain.Name);
        domain.Destroy();
    }
}
