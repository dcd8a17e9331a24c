using System;
using System.Linq;
using XenLab.Config;
using XenLab.Cpu;
using XenLab.Diagnostics;
using XenLab.Guest;

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
        Assert.Equal(r.Instructions, rig.Domain.Counters[PerfCounter.CpuInstructionsRetired]);
        Assert.Equal(6, rig.Domain.Counters[PerfCounter.CpuDecodeMiss]);   // six distinct instructions decoded once each
    }

    [Fact]
    public void AnUnmappedReadStopsWithCr2AndErrorCodeZeroAndStateIntact()
    {
        var rig = new CpuRig();
        rig.Load("mov rax, 0x1234\nmov rax, [rdi]\nhlt");
        rig.Cpu[Reg.Rdi] = 0x900008;                              // nothing is mapped at 9 MiB
        var r = rig.Cpu.Run(100);
        Assert.Equal(StopReason.PageFault, r.Reason);
        Assert.Equal(0x900008UL, r.FaultAddress);                // the faulting linear address
        Assert.Equal(0u, r.ErrorCode);                           // not present, read, supervisor
        Assert.Equal(0x900008UL, rig.Cpu.Cr2);                   // CR2 set like hardware
        Assert.Equal(CpuRig.CodeVa + 10, r.Rip);                 // RIP stays on the faulting mov (after the 10-byte mov imm64)
        Assert.Equal("mov rax,[rdi]", r.Instruction);            // Iced's Intel syntax
        Assert.Equal(0x1234UL, rig.Cpu[Reg.Rax]);                // the destination is untouched
        Assert.Equal(1, r.Instructions);                         // only the first mov retired
        var ev = rig.Domain.Trace.Snapshot().Last(e => e.Kind == TraceKind.CpuFault);
        Assert.Contains("mov rax,[rdi]", ev.Detail);             // the trace carries the instruction
    }

    [Fact]
    public void AWriteToAReadOnlyPageFaultsWithErrorCodeThree()
    {
        var rig = new CpuRig();
        rig.Domain.Kernel.Map(0xA00000, 0x2800, 1, MapFlags.None);   // present, read-only
        rig.Load("mov rax, [rdi]\nmov [rdi], rax\nhlt");
        rig.Cpu[Reg.Rdi] = 0xA00010;
        var r = rig.Cpu.Run(100);
        Assert.Equal(StopReason.PageFault, r.Reason);            // the read was fine, the write is not
        Assert.Equal(0x3u, r.ErrorCode);                         // present | write
        Assert.Equal(0xA00010UL, r.FaultAddress);
        Assert.Equal("mov [rdi],rax", r.Instruction);
    }

    [Fact]
    public void APageFaultGoesToTheGuestHandlerWhichReturnsWithIretq()
    {
        var rig = new CpuRig();
        // Main: a faulting 3-byte read, then hlt. Handler at +0x100: error code into RCX, CR2 into
        // RBX, skip the faulting instruction by bumping the saved RIP, return.
        rig.Load("""
            mov rax, [rdi]
            mov edx, 1
            hlt
            """);
        rig.Load("""
            pop rcx
            mov rbx, cr2
            add qword [rsp], 3
            iretq
            """, CpuRig.CodeVa + 0x100);
        rig.Cpu.Rip = CpuRig.CodeVa;
        rig.Cpu.PageFaultHandler = CpuRig.CodeVa + 0x100;
        rig.Cpu[Reg.Rdi] = 0x900000;
        ulong rsp = rig.Cpu[Reg.Rsp];
        var r = rig.Cpu.Run(100);
        Assert.Equal(StopReason.Halted, r.Reason);               // the handler dealt with it
        Assert.Equal(0UL, rig.Cpu[Reg.Rcx]);                     // error code: not present, read
        Assert.Equal(0x900000UL, rig.Cpu[Reg.Rbx]);              // CR2 as the handler saw it
        Assert.Equal(1UL, rig.Cpu[Reg.Rdx]);                     // execution resumed after the faulting mov
        Assert.Equal(rsp, rig.Cpu[Reg.Rsp]);                     // iretq restored the stack pointer
        Assert.Equal(1, rig.Domain.Counters[PerfCounter.CpuPageFaultDelivered]);
        Assert.Equal(6, r.Instructions);                         // mov(faulted, not retired) + 4 handler + mov + hlt
    }

    [Fact]
    public void DivideByZeroStopsWithDivideErrorBeforeAnyChange()
    {
        var rig = new CpuRig();
        rig.Load("mov eax, 5\nxor edx, edx\nxor ecx, ecx\ndiv ecx\nhlt");
        var r = rig.Cpu.Run(100);
        Assert.Equal(StopReason.DivideError, r.Reason);
        Assert.Equal("div ecx", r.Instruction);
        Assert.Equal(5UL, rig.Cpu[Reg.Rax]);                     // quotient register untouched
        Assert.Equal(3, r.Instructions);
    }

    [Fact]
    public void AnUnsupportedInstructionNamesItselfAndLeavesStateIntact()
    {
        var rig = new CpuRig();
        rig.Load("mov eax, 1\ncpuid\nhlt");
        var r = rig.Cpu.Run(100);
        Assert.Equal(StopReason.Unsupported, r.Reason);
        Assert.Equal("cpuid", r.Instruction);                    // named by Iced
        Assert.Equal(CpuRig.CodeVa + 5, r.Rip);                  // RIP on cpuid, not past it
        Assert.Equal(1UL, rig.Cpu[Reg.Rax]);                     // nothing executed
        var again = rig.Cpu.Run(100);
        Assert.Equal(StopReason.Unsupported, again.Reason);      // it stays stuck there
        Assert.Equal(0, again.Instructions);
    }

    [Fact]
    public void SelfModifyingCodeSeesItsOwnWrite()
    {
        var rig = new CpuRig();
        // The first pass runs "mov eax, 7" (decoded and cached), then patches its immediate to 42.
        rig.Load("""
            mov ecx, 2
            lea rdx, [rel patch]
            top:
            patch:
            mov eax, 7
            mov byte [rdx + 1], 42
            dec ecx
            jnz top
            hlt
            """);
        var r = rig.Cpu.Run(100);
        Assert.True(r.Reason == StopReason.Halted, r.ToString());
        Assert.Equal(42UL, rig.Cpu[Reg.Rax]);                    // the second pass ran the patched instruction
        Assert.True(rig.Domain.Counters[PerfCounter.CpuDecodeInvalidate] >= 1, r.ToString());   // the write dropped the decoded page
    }

    [Fact]
    public void CodeRewrittenFromOutsideBetweenRunsIsRedecoded()
    {
        var rig = new CpuRig();
        rig.Load("mov eax, 7\nhlt");
        rig.Cpu.Run(10);
        Assert.Equal(7UL, rig.Cpu[Reg.Rax]);
        rig.Domain.WriteGuestPhysical(CpuRig.CodeGfn * 4096 + 1, new byte[] { 9 });   // a tool patches the immediate
        rig.Cpu.Rip = CpuRig.CodeVa;
        rig.Cpu.Run(10);
        Assert.Equal(9UL, rig.Cpu[Reg.Rax]);                     // the snapshot check caught the change
    }

    [Fact]
    public void BudgetAndBreakpointStopAndResume()
    {
        var rig = new CpuRig();
        var code = rig.Load("""
            mov ecx, 100
            top:
            dec ecx
            jnz top
            mov ebx, 5
            hlt
            """);
        var r = rig.Cpu.Run(5);
        Assert.Equal(StopReason.BudgetExhausted, r.Reason);
        Assert.Equal(5, r.Instructions);                          // exactly the budget
        ulong bp = CpuRig.CodeVa + (ulong)code.Length - 6;        // "mov ebx, 5" (5 bytes) then hlt (1)
        r = rig.Cpu.Run(10_000, new[] { bp });
        Assert.Equal(StopReason.Breakpoint, r.Reason);
        Assert.Equal(bp, r.Rip);                                  // stopped before the instruction
        Assert.Equal("mov ebx,5", r.Instruction);
        Assert.Equal(0UL, rig.Cpu[Reg.Rbx]);                      // not executed yet
        r = rig.Cpu.Run(10_000, new[] { bp });
        Assert.Equal(StopReason.Halted, r.Reason);                // resuming from a breakpoint makes progress
        Assert.Equal(5UL, rig.Cpu[Reg.Rbx]);
    }

    [Fact]
    public void YieldHypercallStopsAndResumesAndHandlersCanBeRegistered()
    {
        var rig = new CpuRig();
        rig.Cpu.Hypercalls.Register(5, (cpu, n) => { cpu[Reg.Rax] = 99; return HypercallOutcome.Continue; });
        rig.Load("""
            xor eax, eax
            vmcall
            mov ebx, 1
            mov eax, 5
            vmcall
            mov ecx, eax
            mov eax, 1234
            vmcall
            hlt
            """);
        var r = rig.Cpu.Run(100);
        Assert.Equal(StopReason.Hypercall, r.Reason);             // number 0: yield
        Assert.Equal(0UL, rig.Cpu[Reg.Rbx]);                      // stopped right after the vmcall
        r = rig.Cpu.Run(100);
        Assert.Equal(StopReason.Halted, r.Reason);
        Assert.Equal(1UL, rig.Cpu[Reg.Rbx]);
        Assert.Equal(99UL, rig.Cpu[Reg.Rcx]);                     // the registered handler's result
        Assert.Equal(unchecked((ulong)-38L), rig.Cpu[Reg.Rax]);  // unknown number: -ENOSYS
        Assert.Equal(3, rig.Domain.Counters[PerfCounter.CpuHypercall]);
    }

    [Fact]
    public void MovCr3ReloadsThroughVcpuAndInvlpgInvalidates()
    {
        var rig = new CpuRig(PagingModeKind.Shadow);
        rig.Load("mov rax, cr3\nmov cr3, rax\ninvlpg [rdi]\nhlt");
        rig.Cpu[Reg.Rdi] = CpuRig.DataVa;
        long loads = rig.Domain.Counters[PerfCounter.Cr3Load];
        long flushes = rig.Domain.Counters[PerfCounter.TlbFlushPage];
        var r = rig.Cpu.Run(10);
        Assert.Equal(StopReason.Halted, r.Reason);
        Assert.Equal(rig.Domain.Vcpus[0].Cr3, rig.Cpu[Reg.Rax]);  // mov from cr3 reads the vCPU's CR3
        Assert.Equal(loads + 1, rig.Domain.Counters[PerfCounter.Cr3Load]);        // went through Vcpu.LoadCr3
        Assert.Equal(flushes + 1, rig.Domain.Counters[PerfCounter.TlbFlushPage]); // and Vcpu.InvalidatePage
    }

    [Fact]
    public void RepStosdFillsAcrossPagesWithOneTranslationEach()
    {
        var rig = new CpuRig();
        rig.Load("mov rdi, 0x600800\nmov ecx, 2048\nmov eax, 0xAABBCCDD\nrep stosd\nhlt");
        var r = rig.Cpu.Run(10);
        Assert.Equal(StopReason.Halted, r.Reason);
        Assert.Equal(0UL, rig.Cpu[Reg.Rcx]);
        Assert.Equal(0x600800UL + 8192, rig.Cpu[Reg.Rdi]);
        Assert.Equal(0xAABBCCDDAABBCCDDUL, rig.ReadU64(0x600800)); // first element
        Assert.Equal(0xAABBCCDDAABBCCDDUL, rig.ReadU64(0x602000 + 0x7F8)); // last element
        Assert.Equal(0UL, rig.ReadU64(0x602800));                 // one past the end untouched
        Assert.Equal(3, rig.Domain.Counters[PerfCounter.CpuStringChunk]);   // 0x800 + 0x1000 + 0x800 bytes: three pages
    }

    [Fact]
    public void AStringWriteFaultingMidwayLeavesRestartableRegisters()
    {
        var rig = new CpuRig();
        // The data mapping ends at 0x610000: 16 KiB of stores from 0x60F000 fault at the first unmapped page.
        rig.Load("mov rdi, 0x60F000\nmov ecx, 4096\nxor eax, eax\nrep stosd\nhlt");
        var r = rig.Cpu.Run(10);
        Assert.Equal(StopReason.PageFault, r.Reason);
        Assert.Equal(0x610000UL, r.FaultAddress);
        Assert.Equal(0x2u, r.ErrorCode);                          // not present, write
        Assert.Equal(0x610000UL, rig.Cpu[Reg.Rdi]);               // one page done
        Assert.Equal(3072UL, rig.Cpu[Reg.Rcx]);                   // 1024 dwords done
        Assert.Equal("rep stosd [rdi]", r.Instruction);           // RIP still on the instruction (Iced shows the implicit operand)
    }

    [Fact]
    public void ArmDomainsRefuseToRunGuestCode()
    {
        var rig = new CpuRig(PagingModeKind.Arm);
        var e = Assert.Throws<GuestArchitectureException>(() => rig.Cpu.Run(1));
        Assert.Contains("x86-64", e.Message);
        Assert.Equal("GuestCodeIsX86Only", e.ErrorId);
    }
}
