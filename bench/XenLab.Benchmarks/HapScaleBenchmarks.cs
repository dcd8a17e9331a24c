// HAP's audit and a HAP -> shadow -> HAP round trip on 4, 64 and 256 GiB domains (issue 11,
// point 8): both walk the EPT's entries against the p2m's runs, so a domain mapped with 1 GiB
// leaves costs what its p2m runs and EPT pages cost, not a step per gfn. The round trip also
// pays what the other modes cost for the size: the shadow pool taken and given back (Xen's
// default shadow_memory grows with the domain) and HAP's re-attach (the builder's EPT mapping).
using System.Collections.Generic;
using BenchmarkDotNet.Attributes;
using XenLab.Config;
using XenLab.Domains;

namespace XenLab.Benchmarks;

public class HapScaleBenchmarks
{
    private Domain _domain = null!;
    private readonly List<string> _problems = new();

    [Params(4, 64, 256)]
    public int GiB { get; set; }

    [GlobalSetup]
    public void Build()
    {
        // Room for the domain, its shadow pool while in shadow mode, and tables.
        var host = new XenHost(((ulong)GiB + 2 + (ulong)GiB / 32) << 30);
        _domain = host.CreateDomain(new DomainConfig { Name = "scale", MemoryMiB = (ulong)GiB << 10, Paging = PagingModeKind.Hap });
    }

    [Benchmark]
    public int Audit()
    {
        _problems.Clear();
        _domain.Mode!.Audit(_problems);
        if (_problems.Count != 0) throw new System.InvalidOperationException(_problems[0]);
        return _problems.Count;
    }

    [Benchmark]
    public ulong HapShadowHap()
    {
        _domain.SetPagingMode(PagingModeKind.Shadow);
        _domain.SetPagingMode(PagingModeKind.Hap);
        return _domain.PagingFrames;
    }
}
