// The vCPU's public vocabulary: register names, RFLAGS bits, why a run stopped, and the
// hypercall extension point (vmcall with RAX = number).
using System;
using System.Collections.Generic;

namespace XenLab.Cpu;

/// <summary>The sixteen general-purpose registers in encoding order.</summary>
public enum Reg
{
    Rax, Rcx, Rdx, Rbx, Rsp, Rbp, Rsi, Rdi, R8, R9, R10, R11, R12, R13, R14, R15,
}

/// <summary>RFLAGS bits the vCPU models.</summary>
public static class RFlags
{
    public const ulong CF = 1UL << 0;
    /// <summary>Bit 1 always reads as one.</summary>
    public const ulong Reserved1 = 1UL << 1;
    public const ulong PF = 1UL << 2;
    public const ulong AF = 1UL << 4;
    public const ulong ZF = 1UL << 6;
    public const ulong SF = 1UL << 7;
    public const ulong TF = 1UL << 8;
    public const ulong IF = 1UL << 9;
    public const ulong DF = 1UL << 10;
    public const ulong OF = 1UL << 11;
    /// <summary>The six arithmetic status flags.</summary>
    public const ulong Status = CF | PF | AF | ZF | SF | OF;
    /// <summary>Bits popfq/iretq may change in this model (status, DF, IF, TF).</summary>
    public const ulong Writable = Status | DF | IF | TF;

    public static string Describe(ulong f)
    {
        var parts = new List<string>();
        if ((f & CF) != 0) parts.Add("CF");
        if ((f & PF) != 0) parts.Add("PF");
        if ((f & AF) != 0) parts.Add("AF");
        if ((f & ZF) != 0) parts.Add("ZF");
        if ((f & SF) != 0) parts.Add("SF");
        if ((f & DF) != 0) parts.Add("DF");
        if ((f & OF) != 0) parts.Add("OF");
        return parts.Count == 0 ? "-" : string.Join(" ", parts);
    }
}

/// <summary>Why <see cref="X86Cpu.Run"/> returned.</summary>
public enum StopReason
{
    /// <summary>The instruction budget was used up; RIP is the next instruction.</summary>
    BudgetExhausted,
    /// <summary>hlt retired; RIP is after it.</summary>
    Halted,
    /// <summary>RIP reached a breakpoint; the instruction there has not run.</summary>
    Breakpoint,
    /// <summary>A hypercall handler asked to stop (the built-in yield, number 0); RIP is after the vmcall.</summary>
    Hypercall,
    /// <summary>A guest page fault with no guest handler installed (or a fault delivering it); CR2 and the error code say where and why.</summary>
    PageFault,
    /// <summary>#GP: a non-canonical address.</summary>
    GeneralProtection,
    /// <summary>#DE: division by zero or a quotient that does not fit.</summary>
    DivideError,
    /// <summary>An instruction outside the subset (or an invalid encoding); RIP and registers are untouched.</summary>
    Unsupported,
    /// <summary>The access reached a gfn with no p2m entry (the hypervisor cannot back it).</summary>
    PhysicalMissing,
    /// <summary>A page-table A/D update hit a read-only p2m page (ram_ro).</summary>
    P2mReadOnly,
    /// <summary>A hypercall handler removed the vCPU's own domain; nothing ran after the vmcall.</summary>
    DomainRemoved,
}

/// <summary>What a run did and why it stopped. <see cref="Instruction"/> is Iced's Intel-syntax text of the instruction at <see cref="Rip"/>.</summary>
public readonly record struct RunResult(
    StopReason Reason, long Instructions, ulong Rip, ulong FaultAddress, uint ErrorCode, string Instruction, string Detail)
{
    public override string ToString() => Reason switch
    {
        StopReason.PageFault => $"#PF at 0x{FaultAddress:x} error code 0x{ErrorCode:x} by '{Instruction}' at 0x{Rip:x} after {Instructions} instruction(s)",
        StopReason.GeneralProtection => $"#GP (0x{FaultAddress:x} not canonical) by '{Instruction}' at 0x{Rip:x} after {Instructions} instruction(s)",
        StopReason.PhysicalMissing or StopReason.P2mReadOnly =>
            $"{Reason} at 0x{FaultAddress:x} by '{Instruction}' at 0x{Rip:x} after {Instructions} instruction(s){(Detail.Length > 0 ? ": " + Detail : "")}",
        _ => $"{Reason} at 0x{Rip:x} '{Instruction}' after {Instructions} instruction(s){(Detail.Length > 0 ? ": " + Detail : "")}",
    };
}

/// <summary>What a hypercall handler wants the vCPU to do next.</summary>
public enum HypercallOutcome
{
    /// <summary>Keep running the guest.</summary>
    Continue,
    /// <summary>Stop the run with <see cref="StopReason.Hypercall"/>; the next run resumes after the vmcall.</summary>
    Stop,
}

/// <summary>
/// A hypercall: the guest executes vmcall with RAX = number. The handler runs with RIP already
/// past the vmcall, may read and write registers (by convention the result goes in RAX), and
/// says whether the run continues.
/// </summary>
public interface IHypercallHandler
{
    HypercallOutcome Handle(X86Cpu cpu, ulong number);
}

/// <summary>A handler from a delegate.</summary>
public sealed class DelegateHypercallHandler : IHypercallHandler
{
    private readonly Func<X86Cpu, ulong, HypercallOutcome> _f;
    public DelegateHypercallHandler(Func<X86Cpu, ulong, HypercallOutcome> f) => _f = f;
    public HypercallOutcome Handle(X86Cpu cpu, ulong number) => _f(cpu, number);
}

/// <summary>
/// The hypercall numbers a vCPU answers. Number 0 is the built-in "yield": it stops the run
/// (reason Hypercall) so a lab can do per-frame work and resume. An unknown number returns
/// -ENOSYS (-38) in RAX and the guest continues, as Xen does.
/// </summary>
public sealed class HypercallTable
{
    public const ulong Yield = 0;
    public const long ENOSYS = 38;
    private readonly Dictionary<ulong, IHypercallHandler> _handlers = new();

    public HypercallTable() => _handlers[Yield] = new DelegateHypercallHandler(static (_, _) => HypercallOutcome.Stop);

    public void Register(ulong number, IHypercallHandler handler) => _handlers[number] = handler;
    public void Register(ulong number, Func<X86Cpu, ulong, HypercallOutcome> handler) => _handlers[number] = new DelegateHypercallHandler(handler);
    public bool Unregister(ulong number) => _handlers.Remove(number);
    public bool TryGet(ulong number, out IHypercallHandler handler) => _handlers.TryGetValue(number, out handler!);
}
