// The decoded form the interpreter executes: one 32-byte struct per instruction, built once
// from Iced's Instruction and kept in the decode cache. Operation and operand form are folded
// into one byte so execution is a single switch (a jump table) on Op.
using System.Runtime.InteropServices;

namespace XenLab.Cpu;

/// <summary>Operations, with the operand form folded in (R = register, M = memory, I = immediate).</summary>
internal enum Op : byte
{
    Unsupported,
    Nop,
    Hlt,
    MovRR, MovRM, MovMR, MovRI, MovMI,
    /// <summary>movzx/movsx/movsxd: Size2 is the source size, Sub 1 = sign-extend.</summary>
    ExtRR, ExtRM,
    Lea,
    /// <summary>Binary ALU ops: Sub is the <see cref="AluKind"/>.</summary>
    AluRR, AluRI, AluRM, AluMR, AluMI,
    /// <summary>inc/dec/neg/not: Sub is the <see cref="UnaryKind"/>.</summary>
    UnaryR, UnaryM,
    /// <summary>Shifts and rotates: Sub is the <see cref="ShiftKind"/>; count in Imm, or CL when <see cref="DecodedFlags.CountCl"/>.</summary>
    ShiftR, ShiftM,
    /// <summary>One-operand mul/imul/div/idiv: Sub is the <see cref="MulKind"/>.</summary>
    MulR, MulM,
    /// <summary>imul r, r/m (Imul2) and imul r, r/m, imm (Imul3).</summary>
    Imul2R, Imul2M, Imul3R, Imul3M,
    PushR, PushM, PushI, PopR, PopM,
    CallRel, CallR, CallM, Ret, JmpRel, JmpR, JmpM,
    /// <summary>Sub is the x86 condition code 0-15.</summary>
    Jcc,
    /// <summary>loop/loope/loopne: Sub 0, 1, 2.</summary>
    Loop,
    Jrcxz,
    SetccR, SetccM, CmovR, CmovM,
    XchgRR, XchgRM, CmpxchgR, CmpxchgM,
    /// <summary>movs/stos: Size is the element size, <see cref="DecodedFlags.Rep"/> says rep.</summary>
    Movs, Stos,
    MovToCr3, MovFromCr3, MovFromCr2, Invlpg, Vmcall, Iretq,
    Pushfq, Popfq, Clc, Stc, Cmc, Cld, Std,
    /// <summary>cbw/cwde/cdqe: Size is the destination size.</summary>
    ExtendAcc,
    /// <summary>cwd/cdq/cqo: Size is the operand size.</summary>
    SignToDx,
}

internal enum AluKind : byte { Add, Or, Adc, Sbb, And, Sub, Xor, Cmp, Test }
internal enum UnaryKind : byte { Inc, Dec, Neg, Not }
internal enum ShiftKind : byte { Rol, Ror, Shl, Shr, Sar }
internal enum MulKind : byte { Mul, Imul, Div, Idiv }

[System.Flags]
internal enum DecodedFlags : byte
{
    None = 0,
    /// <summary>The memory operand is RIP-relative: Disp is relative to the next instruction.</summary>
    RipRelative = 1,
    /// <summary>67 prefix: the effective address is truncated to 32 bits.</summary>
    Addr32 = 2,
    /// <summary>The shift count is CL.</summary>
    CountCl = 4,
    /// <summary>rep prefix on a string instruction.</summary>
    Rep = 8,
}

/// <summary>
/// One decoded instruction. Register operands are 0-15 (RAX..R15) or 16-19 (AH, CH, DH, BH);
/// Base/Index are 0-15 or <see cref="NoReg"/>. Branch targets are relative to the next
/// instruction, so the same bytes mapped at two virtual addresses share one entry.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal struct DecodedInstruction
{
    public const byte NoReg = 0xFF;
    public const byte HighByteBase = 16;

    public Op Op;
    public byte Sub;
    /// <summary>Operand size in bytes (1, 2, 4, 8).</summary>
    public byte Size;
    /// <summary>Second size: source of movzx/movsx.</summary>
    public byte Size2;
    public byte R0;
    public byte R1;
    public byte Base;
    public byte Index;
    public byte Scale;
    public byte Length;
    public DecodedFlags Flags;
    public byte Reserved;
    public int Reserved2;
    public long Disp;
    public long Imm;
}
