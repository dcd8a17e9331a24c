// Translations per second in each paging mode: TLB hits (the common case) and TLB misses
// (a working set of 4096 pages through a 512-entry TLB, so every access misses and the mode's
// walk runs: 2D walk under HAP, shadow walk under shadow paging, stage-1 over stage-2 on ARM).
// Measured as the interpreter pays it: TranslateInOperation, the form a run (which holds the
// domain's operation once) calls per access; the public Translate adds the domain lock.
using BenchmarkDotNet.Attributes;
using XenLab.Config;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Paging;

namespace XenLab.Benchmarks;

[MemoryDiagnoser]
public class TranslationBenchmarks
{
    private const ulong Va = 0x10000000;
    private const int Pages = 4096;
    public const int OperationsPerInvoke = 4096;
    private Vcpu _vcpu = null!;

    [Params(PagingModeKind.Hap, PagingModeKind.Shadow, PagingModeKind.Arm)]
    public PagingModeKind Mode { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var host = new XenHost(4UL << 30);
        var c = new DomainConfig { Name = "bench", MemoryMiB = 256, Paging = Mode, ShadowMemoryMiB = 16 };
        var d = host.CreateDomain(c);
        d.Kernel.Map(Va, 0x4000, Pages, MapFlags.Writable);
        _vcpu = d.Vcpus[0];
        // Warm: every shadow / stage-2 entry built, every guest A bit set.
        for (int i = 0; i < Pages; i++) _vcpu.Translate(Va + ((ulong)i << 12), AccessKind.Read);
    }

    [Benchmark(OperationsPerInvoke = OperationsPerInvoke)]
    public ulong TlbHit()
    {
        ulong sum = 0;
        for (int i = 0; i < OperationsPerInvoke; i++)
            sum += _vcpu.TranslateInOperation(Va + ((ulong)(i & 63) << 12), AccessKind.Read).Mfn;
        return sum;
    }

    [Benchmark(OperationsPerInvoke = OperationsPerInvoke)]
    public ulong TlbMiss()
    {
        ulong sum = 0;
        // Stride 513 pages mod 4096: consecutive accesses never share a TLB slot or entry.
        for (int i = 0; i < OperationsPerInvoke; i++)
            sum += _vcpu.TranslateInOperation(Va + ((ulong)((i * 513) & (Pages - 1)) << 12), AccessKind.Read).Mfn;
        return sum;
    }
}
