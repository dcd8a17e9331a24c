// A log-dirty clean with the same number of dirty pages (1,000) on a 4 GiB and a 64 GiB HAP
// domain (issue 11: the ratio should be at most 2). Under HAP the clean reads the bitmap
// tree's leaves, zeroes them and re-arms with one global lazy type change; what still grows
// with the domain is the bitmap handed back (1 bit a page, as the caller's buffer in Xen).
using BenchmarkDotNet.Attributes;
using XenLab.Config;
using XenLab.Domains;

namespace XenLab.Benchmarks;

public class LogDirtyBenchmarks
{
    private Domain _domain = null!;
    private ulong _round;

    [Params(4, 64)]
    public int GiB { get; set; }

    [GlobalSetup]
    public void GlobalSetup()
    {
        var host = new XenHost(((ulong)GiB + 2) << 30);
        _domain = host.CreateDomain(new DomainConfig { Name = "ld", MemoryMiB = (ulong)GiB << 10, Paging = PagingModeKind.Hap });
        _domain.LogDirty.Enable();
        for (int i = 0; i < 60; i++) { Dirty(); Clean(); }
        System.Threading.Thread.Sleep(250);
        for (int i = 0; i < 60; i++) { Dirty(); Clean(); }
    }

    [IterationSetup]
    public void Dirty()
    {
        // 1,000 pages spread over the first 2 GiB (the same pages on both sizes), a different set each round.
        _round++;
        for (ulong i = 0; i < 1000; i++) _domain.WriteGuestPhysU64(((0x1000 + i * 509 + _round) % 0x80000) << 12, _round);
    }

    [Benchmark]
    public long Clean() => _domain.LogDirty.Read(clean: true).DirtyPages;
}
