using System.Collections.Generic;
using Iced.Intel;
using XenLab.Cpu.Workloads;

namespace XenLab.Tests.Cpu;

public class GuestWorkloadsTests
{
    private static readonly Dictionary<string, GuestFramebuffer> Fbs = new()
    {
        ["mon0"] = new GuestFramebuffer("mon0", 0x40000000, 1024, 768, 4096),
        ["mon1"] = new GuestFramebuffer("mon1", 0x48000000, 800, 600, 3200),
    };

    private static List<string> Disassemble(byte[] code, ulong origin)
    {
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(code));
        decoder.IP = origin;
        var formatter = new NasmFormatter();
        var list = new List<string>();
        while (decoder.IP < origin + (ulong)code.Length)
        {
            decoder.Decode(out var instr);
            var output = new StringOutput();
            formatter.Format(instr, output);
            list.Add(output.ToStringAndReset());
        }
        return list;
    }

    [Fact]
    public void AFillFrameEndsWithTheYieldHypercallAndLoops()
    {
        var code = GuestWorkloads.FrameLoop(new[] { new WorkloadStep(WorkloadStepKind.Fill, "mon0", X: 8, Y: 2, Width: 16, Height: 4) },
            Fbs, new ChurnEntry[0], 0x70000000, 0x70100000);
        var text = Disassemble(code, 0x70000000);
        Assert.Equal("xor r15,r15", text[0]);
        Assert.Contains("rep stosd", text);
        // The first pixel of the rectangle: 0x40000000 + 2 * 4096 + 8 * 4.
        Assert.Contains(text, t => t.Contains("40002020"));
        Assert.Equal("vmcall", text[^3]);
        Assert.Equal("inc r15", text[^2]);
        Assert.StartsWith("jmp", text[^1]);
    }

    [Fact]
    public void ScrollMovesAllButTheFreedLinesWithRepMovsq()
    {
        var code = GuestWorkloads.FrameLoop(new[] { new WorkloadStep(WorkloadStepKind.Scroll, "mon1", Lines: 2) },
            Fbs, new ChurnEntry[0], 0x70000000, 0x70100000);
        var text = Disassemble(code, 0x70000000);
        Assert.Contains("rep movsq", text);
        // (600 - 2) lines of 3200 bytes in qwords: 239200 = 0x3a660.
        Assert.Contains(text, t => t.StartsWith("mov rcx,") && t.Contains("3A660", System.StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public void ARectangleOutsideTheFramebufferIsRefused()
    {
        var ex = Assert.Throws<InvalidConfigurationException>(() => GuestWorkloads.FrameLoop(
            new[] { new WorkloadStep(WorkloadStepKind.Fill, "mon1", X: 790, Y: 0, Width: 20, Height: 1) }, Fbs, new ChurnEntry[0], 0, 0));
        Assert.Contains("does not fit framebuffer 'mon1' (800x600)", ex.Message);
        Assert.Throws<InvalidConfigurationException>(() => GuestWorkloads.FrameLoop(
            new[] { new WorkloadStep(WorkloadStepKind.Cursor, "nope") }, Fbs, new ChurnEntry[0], 0, 0));
    }
}

public class GuestProgramsTests
{
    [Fact]
    public void LoadingAShorterProgramLeavesNothingOfTheLongerOne()
    {
        var d = new XenLab.Domains.XenHost(1UL << 30).CreateDomain(new XenLab.Config.DomainConfig { Name = "p", MemoryMiB = 64 });
        XenLab.Lab.GuestPrograms.LoadAssembly(d, "mov rax, 1\nmov rbx, 2\nmov rcx, 3\nhlt");
        XenLab.Lab.GuestPrograms.LoadAssembly(d, "hlt");
        var bytes = new byte[16];
        d.ReadPhysical(XenLab.Lab.GuestPrograms.CodeGfn << 12, bytes);
        Assert.Equal(0xF4, bytes[0]);                               // hlt
        Assert.All(bytes[1..], b => Assert.Equal(0, b));            // the old movs are gone
        var r = d.Vcpus[0].Cpu.Run(10);
        Assert.Equal(XenLab.Cpu.StopReason.Halted, r.Reason);
        var ev = XenLab.Views.TraceEventView.Of(d).FindLast(e => e.Kind == XenLab.Diagnostics.TraceKind.CpuStop);
        Assert.NotNull(ev);
        Assert.Contains("hlt", ev!.Detail);                          // the event names the hlt, not what follows
    }
}
