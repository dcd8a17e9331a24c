// The vCPU as a lab sees it: registers, decoded flags, control registers, what it is about to run.
using System.Collections.Generic;
using XenLab.Cpu;
using XenLab.Diagnostics;
using XenLab.Domains;

namespace XenLab.Views;

public sealed record VcpuView(
    string DomainName, int Vcpu, ulong Rip, string Instruction, ulong Rflags, string Flags, ulong Cr3, ulong Cr2,
    ulong Rax, ulong Rbx, ulong Rcx, ulong Rdx, ulong Rsi, ulong Rdi, ulong Rbp, ulong Rsp,
    ulong R8, ulong R9, ulong R10, ulong R11, ulong R12, ulong R13, ulong R14, ulong R15,
    long InstructionsRetired, ulong PageFaultHandler, string PagingMode)
{
    public override string ToString() => $"vcpu{Vcpu} rip=0x{Rip:x} '{Instruction}' [{Flags}]";

    public static VcpuView Of(Domain d, int vcpu)
    {
        using var op = d.EnterOperation();
        if (vcpu < 0 || vcpu >= d.Vcpus.Count) throw new InvalidConfigurationException($"Domain '{d.Name}' has no vcpu {vcpu} (it has {d.Vcpus.Count}).");
        var v = d.Vcpus[vcpu];
        var c = v.Cpu;
        string text;
        try { text = c.Disassemble(c.Rip); }
        catch (XenLabException e) { text = "(" + e.Message + ")"; }
        ulong f = c.Rflags;
        return new VcpuView(d.Name, vcpu, c.Rip, text, f, RFlags.Describe(f), v.Cr3, v.Cr2,
            c[Reg.Rax], c[Reg.Rbx], c[Reg.Rcx], c[Reg.Rdx], c[Reg.Rsi], c[Reg.Rdi], c[Reg.Rbp], c[Reg.Rsp],
            c[Reg.R8], c[Reg.R9], c[Reg.R10], c[Reg.R11], c[Reg.R12], c[Reg.R13], c[Reg.R14], c[Reg.R15],
            c.InstructionsRetired, c.PageFaultHandler, d.PagingMode.ToString());
    }
}

/// <summary>A run's outcome with its domain, for the pipeline.</summary>
public sealed record RunResultView(string DomainName, int Vcpu, StopReason Reason, long Instructions, ulong Rip, string Instruction, ulong FaultAddress, uint ErrorCode, string Detail)
{
    public override string ToString() => $"{Reason} at 0x{Rip:x} '{Instruction}' after {Instructions} instruction(s)";
    public static RunResultView Of(Domain d, int vcpu, RunResult r) =>
        new(d.Name, vcpu, r.Reason, r.Instructions, r.Rip, r.Instruction, r.FaultAddress, r.ErrorCode, r.Detail);
}
