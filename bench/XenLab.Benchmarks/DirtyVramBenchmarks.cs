// One dirty-VRAM query over four 3840x2160x32 framebuffers (8,100 pages each), per mode and
// strategy, against the device model's memcmp baseline, after the same writes: 1% of each
// framebuffer's pages written through the guest's mapping before every query.
using BenchmarkDotNet.Attributes;
using XenLab.Config;
using XenLab.Dirty;
using XenLab.Domains;
using XenLab.Paging.Modes;

namespace XenLab.Benchmarks;

public class DirtyVramBenchmarks
{
    private const int Monitors = 4;
    private const ulong Pages = 8100;
    private Domain _domain = null!;
    private readonly byte[] _pixel = { 1, 2, 3, 4 };
    private int _frame;

    [Params("hap/tracker", "hap/memcmp", "shadow/backlinks", "shadow/dbit", "shadow/memcmp", "arm-walk/tracker", "arm-vlpt/tracker")]
    public string Setup { get; set; } = "";

    private static ulong Va(int m) => 0x40000000UL + ((ulong)m << 26);
    private static ulong Address(int m) => 0xC0000000UL + ((ulong)m << 25);

    [GlobalSetup]
    public void GlobalSetup()
    {
        var parts = Setup.Split('/');
        var mode = parts[0] switch { "hap" => PagingModeKind.Hap, "shadow" => PagingModeKind.Shadow, _ => PagingModeKind.Arm };
        var options = PagingOptions.Default with { ArmLeafLookup = parts[0] == "arm-vlpt" ? ArmLeafLookup.Vlpt : ArmLeafLookup.Walk };
        var host = new XenHost(8UL << 30);
        var c = new DomainConfig { Name = "vram", MemoryMiB = 256, Paging = mode, PagingOptions = options, ShadowMemoryMiB = 64, KernelPtPages = 1024 };
        for (int m = 0; m < Monitors; m++) c.Framebuffers.Add(new FramebufferConfig($"m{m}", Address(m), 3840, 2160, 32));
        _domain = host.CreateDomain(c);
        _domain.Vram.Strategy = parts[1] switch
        {
            "backlinks" => VramStrategy.BackLinks,
            "dbit" => VramStrategy.DirtyBit,
            "memcmp" => VramStrategy.Memcmp,
            _ => VramStrategy.Tracker,
        };
        for (int m = 0; m < Monitors; m++)
        {
            _domain.MountFramebuffer($"m{m}", Va(m));
            for (ulong p = 0; p < Pages; p++) _domain.Vcpus[0].WriteVirtual(Va(m) + (p << 12), _pixel);
            _domain.Vram.Track(Address(m) >> 12, Pages);                 // arm
            _domain.Vram.Track(Address(m) >> 12, Pages);
        }
    }

    [IterationSetup]
    public void Draw()
    {
        // 1% of each framebuffer: 81 pages spread over the screen, a different set each frame.
        _frame++;
        for (int m = 0; m < Monitors; m++)
            for (ulong i = 0; i < 81; i++)
                _domain.Vcpus[0].WriteVirtual(Va(m) + (((i * 100 + (ulong)_frame) % Pages) << 12), _pixel);
    }

    [Benchmark]
    public int QueryFourMonitors()
    {
        int dirty = 0;
        for (int m = 0; m < Monitors; m++) dirty += _domain.Vram.Track(Address(m) >> 12, Pages).DirtyPages;
        return dirty;
    }
}
