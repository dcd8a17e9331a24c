// Guest-code speed: instructions per second of a register-only loop and of a memory loop
// whose accesses hit the TLB, and full 1920x1080x32 redraws per paging mode with dirty VRAM
// tracking queried once per frame: rep stosd over 8100 KiB, and pixel by pixel (a store per
// pixel, as real guest code draws). Each benchmark op is one Run; Translate compares the block
// translator with the interpreter in the same run.
using System.Linq;
using BenchmarkDotNet.Attributes;
using XenLab.Config;
using XenLab.Cpu;
using XenLab.Domains;
using XenLab.Guest;

namespace XenLab.Benchmarks;

[MemoryDiagnoser]
public class CpuBenchmarks
{
    private const ulong Code = 0x400000, Data = 0x600000, Fb = 0x10000000, FbGpa = 0xF0000000;
    public const int LoopIterations = 1_000_000;
    private Domain _d = null!;
    private X86Cpu _cpu = null!;
    private ulong _regLoop, _memLoop, _redraw, _pixels;
    private ulong _fbGfn, _fbPages;

    // No ARM row: guest code is x86-64 only (SPEC section 1) and the vCPU refuses an ARM domain.
    [Params(PagingModeKind.Hap, PagingModeKind.Shadow)]
    public PagingModeKind Mode { get; set; }

    /// <summary>Block translation on (the default) or off (every instruction interpreted).</summary>
    [Params(false, true)]
    public bool Translate { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var host = new XenHost(4UL << 30);
        var c = new DomainConfig { Name = "bench", MemoryMiB = 256, Paging = Mode, Translate = Translate };
        _d = host.CreateDomain(c);
        _d.Kernel.Map(Code, 0x1000, 4, MapFlags.Writable);
        _d.Kernel.Map(Data, 0x2000, 16, MapFlags.Writable);
        _d.Kernel.Map(0x800000 - 0x4000, 0x3000, 4, MapFlags.Writable);
        var fb = _d.AddFramebuffer(new FramebufferConfig("fb", FbGpa, 1920, 1080, 32));
        _d.MountFramebuffer("fb", Fb);
        _fbGfn = fb.FirstGfn;
        _fbPages = fb.Pages;
        _cpu = _d.Vcpus[0].Cpu;
        _regLoop = Load(0x400000, $"""
            mov ecx, {LoopIterations}
            top:
            add rax, rcx
            xor rbx, rax
            dec rcx
            jnz top
            hlt
            """);
        _memLoop = Load(0x401000, $"""
            mov ecx, {LoopIterations}
            mov rsi, {Data}
            xor edx, edx
            top:
            mov rax, [rsi + rdx*8]
            add [rsi + 0x1000], rax
            inc edx
            and edx, 511
            dec ecx
            jnz top
            hlt
            """);
        _redraw = Load(0x402000, $"""
            mov rdi, {Fb}
            mov ecx, {1920 * 1080}
            mov eax, 0x00336699
            rep stosd
            hlt
            """);
        _pixels = Load(0x403000, $"""
            mov rdi, {Fb}
            mov ecx, {1920 * 1080}
            mov eax, 0x00996633
            top:
            mov [rdi], eax
            add rdi, 4
            dec rcx
            jnz top
            hlt
            """);
        // The memory loop reads data the guest has written (a never-written frame has no backing to read fast).
        _d.WriteGuestPhysical(0x2000UL << 12, new byte[4096].Select((_, i) => (byte)i).ToArray());
        Run(_regLoop);
        Run(_memLoop);
        Run(_redraw);
        Run(_pixels);
        _d.Vram.Track(_fbGfn, _fbPages);
    }

    private ulong Load(ulong va, string asm)
    {
        var code = GuestAssembler.Assemble(asm, va);
        _d.WriteGuestPhysical(0x1000000 + (va - Code), code);   // gfn 0x1000 = 16 MiB
        return va;
    }

    private long Run(ulong rip)
    {
        _cpu.Rip = rip;
        var r = _cpu.Run(long.MaxValue);
        if (r.Reason != StopReason.Halted) throw new System.InvalidOperationException(r.ToString());
        return r.Instructions;
    }

    /// <summary>4 register instructions per iteration (add, xor, dec, jnz): 4,000,002 instructions per op.</summary>
    [Benchmark(OperationsPerInvoke = 4 * LoopIterations + 2)]
    public long RegisterLoop() => Run(_regLoop);

    /// <summary>A load and a read-modify-write per iteration (TLB hits), 6 instructions: 6,000,004 per op.</summary>
    [Benchmark(OperationsPerInvoke = 6 * LoopIterations + 4)]
    public long MemoryLoop() => Run(_memLoop);

    /// <summary>One 1920x1080x32 frame: rep stosd over 2025 pages, then the dirty-VRAM query of that frame.</summary>
    [Benchmark]
    public int Redraw()
    {
        Run(_redraw);
        return _d.Vram.Track(_fbGfn, _fbPages).DirtyPages;
    }

    /// <summary>One 1920x1080x32 frame drawn pixel by pixel (mov, add, dec, jnz per pixel), then the dirty-VRAM query; every page must be reported.</summary>
    [Benchmark]
    public int PixelRedraw()
    {
        Run(_pixels);
        int dirty = _d.Vram.Track(_fbGfn, _fbPages).DirtyPages;
        if (dirty != (int)_fbPages) throw new System.InvalidOperationException($"{dirty} of {_fbPages} written pages reported");
        return dirty;
    }
}
