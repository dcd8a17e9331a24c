using System;
using XenLab.Cpu;
using XenLab.Diagnostics;

namespace XenLab.Tests.Cpu;

public class X86CpuTests
{
    [Fact]
    public void ALoopSumsAndHalts()
    {
        var rig = new CpuRig();
        rig.Load("""
            mov ecx, 10
            xor eax, eax
            top:
            add rax, rcx
            dec rcx
            jnz top
            hlt
            """);
        var r = rig.Cpu.Run(1000);
        Assert.Equal(StopReason.Halted, r.Reason);              // hlt stops the run
        Assert.Equal(55UL, rig.Cpu[Reg.Rax]);                    // 10+9+...+1
        Assert.Equal(2 + 3 * 10 + 1, r.Instructions);            // two set-up, ten iterations of three, hlt
        Assert.Equal(rig.Cpu.Rip, r.Rip);                        // RIP is past the hlt, as on hardware
    }
}
