// The emulated host: machine memory and the domains built on it. One XenHost is one lab
// session (the PowerShell module keeps one per runspace process).
using System;
using System.Collections.Generic;
using XenLab.Config;
using XenLab.Memory;

namespace XenLab.Domains;

public sealed class XenHost
{
    /// <summary>Default host memory: frames cost nothing until written, so this can be generous.</summary>
    public const ulong DefaultMemoryBytes = 64UL << 30;

    private readonly List<Domain> _domains = new();
    private int _nextDomid = 1;

    public XenHost(ulong memoryBytes = DefaultMemoryBytes)
    {
        Machine = new MachineMemory(memoryBytes);
    }

    public MachineMemory Machine { get; }
    public IReadOnlyList<Domain> Domains => _domains;

    /// <summary>Builds a domain; on any failure nothing is left allocated or registered.</summary>
    public Domain CreateDomain(DomainConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        if (Find(config.Name) is not null)
            throw new InvalidConfigurationException($"A domain named '{config.Name}' already exists.");
        var domain = new Domain(_nextDomid, config.Clone(), Machine);
        try
        {
            domain.Build();
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
