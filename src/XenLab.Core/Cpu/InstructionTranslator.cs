// Iced's Instruction -> the interpreter's DecodedInstruction, once per instruction (the decode
// cache keeps the result). Anything outside the subset becomes Op.Unsupported, so the vCPU
// stops on it with its state intact.
using Iced.Intel;

namespace XenLab.Cpu;

internal static class InstructionTranslator
{
    public static DecodedInstruction Translate(in Instruction ins)
    {
        var d = new DecodedInstruction { Length = (byte)ins.Length, Base = DecodedInstruction.NoReg, Index = DecodedInstruction.NoReg };
        if (ins.IsInvalid || !TryTranslate(in ins, ref d)) d.Op = Op.Unsupported;
        return d;
    }

    private static bool TryTranslate(in Instruction ins, ref DecodedInstruction d)
    {
        // Segment overrides other than the null ones of 64-bit mode (FS/GS bases) are not modelled.
        if (ins.SegmentPrefix is Register.FS or Register.GS) return false;
        switch (ins.Mnemonic)
        {
            case Mnemonic.Nop:
            case Mnemonic.Pause:
                d.Op = Op.Nop;
                return true;
            case Mnemonic.Hlt:
                d.Op = Op.Hlt;
                return true;
            case Mnemonic.Mov:
                if (ins.Code == Code.Mov_cr_r64)
                {
                    if (ins.Op0Register != Register.CR3) return false;
                    d.Op = Op.MovToCr3;
                    d.R1 = Gpr(ins.Op1Register);
                    d.Size = 8;
                    return true;
                }
                if (ins.Code == Code.Mov_r64_cr)
                {
                    if (ins.Op1Register is not (Register.CR3 or Register.CR2)) return false;
                    d.Op = ins.Op1Register == Register.CR3 ? Op.MovFromCr3 : Op.MovFromCr2;
                    d.R0 = Gpr(ins.Op0Register);
                    d.Size = 8;
                    return true;
                }
                return Binary(in ins, ref d, Op.MovRR, Op.MovRM, Op.MovMR, Op.MovRI, Op.MovMI);
            case Mnemonic.Movzx:
            case Mnemonic.Movsx:
            case Mnemonic.Movsxd:
                if (!IsGpr(ins.Op0Register)) return false;
                d.R0 = Gpr(ins.Op0Register);
                d.Size = (byte)ins.Op0Register.GetSize();
                d.Sub = (byte)(ins.Mnemonic == Mnemonic.Movzx ? 0 : 1);
                if (ins.Op1Kind == OpKind.Register)
                {
                    if (!IsGpr(ins.Op1Register)) return false;
                    d.Op = Op.ExtRR;
                    d.R1 = Gpr(ins.Op1Register);
                    d.Size2 = (byte)ins.Op1Register.GetSize();
                    return true;
                }
                d.Op = Op.ExtRM;
                d.Size2 = (byte)ins.MemorySize.GetSize();
                return Memory(in ins, ref d);
            case Mnemonic.Lea:
                if (!IsGpr(ins.Op0Register)) return false;
                d.Op = Op.Lea;
                d.R0 = Gpr(ins.Op0Register);
                d.Size = (byte)ins.Op0Register.GetSize();
                return Memory(in ins, ref d);
            case Mnemonic.Add: return Alu(in ins, ref d, AluKind.Add);
            case Mnemonic.Or: return Alu(in ins, ref d, AluKind.Or);
            case Mnemonic.Adc: return Alu(in ins, ref d, AluKind.Adc);
            case Mnemonic.Sbb: return Alu(in ins, ref d, AluKind.Sbb);
            case Mnemonic.And: return Alu(in ins, ref d, AluKind.And);
            case Mnemonic.Sub: return Alu(in ins, ref d, AluKind.Sub);
            case Mnemonic.Xor: return Alu(in ins, ref d, AluKind.Xor);
            case Mnemonic.Cmp: return Alu(in ins, ref d, AluKind.Cmp);
            case Mnemonic.Test: return Alu(in ins, ref d, AluKind.Test);
            case Mnemonic.Inc: return Unary(in ins, ref d, UnaryKind.Inc);
            case Mnemonic.Dec: return Unary(in ins, ref d, UnaryKind.Dec);
            case Mnemonic.Neg: return Unary(in ins, ref d, UnaryKind.Neg);
            case Mnemonic.Not: return Unary(in ins, ref d, UnaryKind.Not);
            case Mnemonic.Rol: return Shift(in ins, ref d, ShiftKind.Rol);
            case Mnemonic.Ror: return Shift(in ins, ref d, ShiftKind.Ror);
            case Mnemonic.Shl:
            case Mnemonic.Sal: return Shift(in ins, ref d, ShiftKind.Shl);
            case Mnemonic.Shr: return Shift(in ins, ref d, ShiftKind.Shr);
            case Mnemonic.Sar: return Shift(in ins, ref d, ShiftKind.Sar);
            case Mnemonic.Mul: return MulDiv(in ins, ref d, MulKind.Mul);
            case Mnemonic.Div: return MulDiv(in ins, ref d, MulKind.Div);
            case Mnemonic.Idiv: return MulDiv(in ins, ref d, MulKind.Idiv);
            case Mnemonic.Imul:
                if (ins.OpCount == 1) return MulDiv(in ins, ref d, MulKind.Imul);
                if (!IsGpr(ins.Op0Register)) return false;
                d.R0 = Gpr(ins.Op0Register);
                d.Size = (byte)ins.Op0Register.GetSize();
                if (ins.OpCount == 3) d.Imm = (long)ins.GetImmediate(2);
                if (ins.Op1Kind == OpKind.Register)
                {
                    d.Op = ins.OpCount == 3 ? Op.Imul3R : Op.Imul2R;
                    d.R1 = Gpr(ins.Op1Register);
                    return true;
                }
                d.Op = ins.OpCount == 3 ? Op.Imul3M : Op.Imul2M;
                return Memory(in ins, ref d);
            case Mnemonic.Push:
                if (ins.Op0Kind == OpKind.Register)
                {
                    if (!IsGpr(ins.Op0Register)) return false;          // push fs/gs
                    d.Op = Op.PushR;
                    d.R0 = Gpr(ins.Op0Register);
                    d.Size = (byte)ins.Op0Register.GetSize();
                    return true;
                }
                if (ins.Op0Kind == OpKind.Memory)
                {
                    d.Op = Op.PushM;
                    d.Size = (byte)ins.MemorySize.GetSize();
                    return Memory(in ins, ref d);
                }
                d.Op = Op.PushI;
                d.Size = (byte)(ins.Op0Kind is OpKind.Immediate8to16 or OpKind.Immediate16 ? 2 : 8);
                d.Imm = (long)ins.GetImmediate(0);
                return true;
            case Mnemonic.Pop:
                if (ins.Op0Kind == OpKind.Register)
                {
                    if (!IsGpr(ins.Op0Register)) return false;
                    d.Op = Op.PopR;
                    d.R0 = Gpr(ins.Op0Register);
                    d.Size = (byte)ins.Op0Register.GetSize();
                    return true;
                }
                d.Op = Op.PopM;
                d.Size = (byte)ins.MemorySize.GetSize();
                return Memory(in ins, ref d);
            case Mnemonic.Call:
                return NearBranch(in ins, ref d, Op.CallRel, Op.CallR, Op.CallM);
            case Mnemonic.Jmp:
                return NearBranch(in ins, ref d, Op.JmpRel, Op.JmpR, Op.JmpM);
            case Mnemonic.Ret:
                if (ins.Code == Code.Retnq) { d.Op = Op.Ret; return true; }
                if (ins.Code == Code.Retnq_imm16) { d.Op = Op.Ret; d.Imm = ins.Immediate16; return true; }
                return false;
            case Mnemonic.Loop:
            case Mnemonic.Loope:
            case Mnemonic.Loopne:
                if (ins.Code is not (Code.Loop_rel8_64_RCX or Code.Loope_rel8_64_RCX or Code.Loopne_rel8_64_RCX)) return false;
                d.Op = Op.Loop;
                d.Sub = (byte)(ins.Mnemonic == Mnemonic.Loop ? 0 : ins.Mnemonic == Mnemonic.Loope ? 1 : 2);
                d.Disp = Rel(in ins);
                return true;
            case Mnemonic.Jrcxz:
                if (ins.Code != Code.Jrcxz_rel8_64) return false;
                d.Op = Op.Jrcxz;
                d.Disp = Rel(in ins);
                return true;
            case Mnemonic.Xchg:
                if (ins.Op0Kind == OpKind.Register && ins.Op1Kind == OpKind.Register)
                {
                    if (!IsGpr(ins.Op0Register) || !IsGpr(ins.Op1Register)) return false;
                    d.Op = Op.XchgRR;
                    d.R0 = Gpr(ins.Op0Register);
                    d.R1 = Gpr(ins.Op1Register);
                    d.Size = (byte)ins.Op0Register.GetSize();
                    return true;
                }
                {
                    var r = ins.Op0Kind == OpKind.Register ? ins.Op0Register : ins.Op1Register;
                    if (!IsGpr(r)) return false;
                    d.Op = Op.XchgRM;
                    d.R0 = Gpr(r);
                    d.Size = (byte)r.GetSize();
                    return Memory(in ins, ref d);
                }
            case Mnemonic.Cmpxchg:
                if (!IsGpr(ins.Op1Register)) return false;
                d.R1 = Gpr(ins.Op1Register);
                d.Size = (byte)ins.Op1Register.GetSize();
                if (ins.Op0Kind == OpKind.Register)
                {
                    d.Op = Op.CmpxchgR;
                    d.R0 = Gpr(ins.Op0Register);
                    return true;
                }
                d.Op = Op.CmpxchgM;
                return Memory(in ins, ref d);
            case Mnemonic.Invlpg:
                d.Op = Op.Invlpg;
                return Memory(in ins, ref d);
            case Mnemonic.Vmcall:
                d.Op = Op.Vmcall;
                return true;
            case Mnemonic.Iretq:
                d.Op = Op.Iretq;
                return true;
            case Mnemonic.Pushfq:
                d.Op = Op.Pushfq;
                return true;
            case Mnemonic.Popfq:
                d.Op = Op.Popfq;
                return true;
            case Mnemonic.Clc: d.Op = Op.Clc; return true;
            case Mnemonic.Stc: d.Op = Op.Stc; return true;
            case Mnemonic.Cmc: d.Op = Op.Cmc; return true;
            case Mnemonic.Cld: d.Op = Op.Cld; return true;
            case Mnemonic.Std: d.Op = Op.Std; return true;
            case Mnemonic.Cbw: d.Op = Op.ExtendAcc; d.Size = 2; return true;
            case Mnemonic.Cwde: d.Op = Op.ExtendAcc; d.Size = 4; return true;
            case Mnemonic.Cdqe: d.Op = Op.ExtendAcc; d.Size = 8; return true;
            case Mnemonic.Cwd: d.Op = Op.SignToDx; d.Size = 2; return true;
            case Mnemonic.Cdq: d.Op = Op.SignToDx; d.Size = 4; return true;
            case Mnemonic.Cqo: d.Op = Op.SignToDx; d.Size = 8; return true;
        }
        switch (ins.Code)
        {
            case Code.Movsb_m8_m8: return StringOp(in ins, ref d, Op.Movs, 1);
            case Code.Movsw_m16_m16: return StringOp(in ins, ref d, Op.Movs, 2);
            case Code.Movsd_m32_m32: return StringOp(in ins, ref d, Op.Movs, 4);
            case Code.Movsq_m64_m64: return StringOp(in ins, ref d, Op.Movs, 8);
            case Code.Stosb_m8_AL: return StringOp(in ins, ref d, Op.Stos, 1);
            case Code.Stosw_m16_AX: return StringOp(in ins, ref d, Op.Stos, 2);
            case Code.Stosd_m32_EAX: return StringOp(in ins, ref d, Op.Stos, 4);
            case Code.Stosq_m64_RAX: return StringOp(in ins, ref d, Op.Stos, 8);
        }
        if (ins.IsJccShortOrNear)
        {
            d.Op = Op.Jcc;
            d.Sub = (byte)(ins.ConditionCode - ConditionCode.o);
            d.Disp = Rel(in ins);
            return true;
        }
        if (ins.ConditionCode != ConditionCode.None)
        {
            byte cc = (byte)(ins.ConditionCode - ConditionCode.o);
            string name = ins.Mnemonic.ToString();
            if (name.StartsWith("Set", System.StringComparison.Ordinal))
            {
                d.Sub = cc;
                d.Size = 1;
                if (ins.Op0Kind == OpKind.Register) { d.Op = Op.SetccR; d.R0 = Gpr(ins.Op0Register); return true; }
                d.Op = Op.SetccM;
                return Memory(in ins, ref d);
            }
            if (name.StartsWith("Cmov", System.StringComparison.Ordinal))
            {
                d.Sub = cc;
                d.R0 = Gpr(ins.Op0Register);
                d.Size = (byte)ins.Op0Register.GetSize();
                if (ins.Op1Kind == OpKind.Register) { d.Op = Op.CmovR; d.R1 = Gpr(ins.Op1Register); return true; }
                d.Op = Op.CmovM;
                return Memory(in ins, ref d);
            }
        }
        return false;
    }

    private static bool StringOp(in Instruction ins, ref DecodedInstruction d, Op op, byte size)
    {
        if (ins.Op0Kind != OpKind.MemoryESRDI) return false;                   // 32-bit addressing
        if (ins.HasRepnePrefix) return false;
        d.Op = op;
        d.Size = size;
        if (ins.HasRepPrefix) d.Flags |= DecodedFlags.Rep;
        return true;
    }

    private static bool Alu(in Instruction ins, ref DecodedInstruction d, AluKind kind)
    {
        d.Sub = (byte)kind;
        return Binary(in ins, ref d, Op.AluRR, Op.AluRM, Op.AluMR, Op.AluRI, Op.AluMI);
    }

    /// <summary>Two-operand forms: reg,reg / reg,mem / mem,reg / reg,imm / mem,imm.</summary>
    private static bool Binary(in Instruction ins, ref DecodedInstruction d, Op rr, Op rm, Op mr, Op ri, Op mi)
    {
        if (ins.OpCount != 2) return false;
        if (ins.Op0Kind == OpKind.Register)
        {
            if (!IsGpr(ins.Op0Register)) return false;
            d.R0 = Gpr(ins.Op0Register);
            d.Size = (byte)ins.Op0Register.GetSize();
            if (ins.Op1Kind == OpKind.Register)
            {
                if (!IsGpr(ins.Op1Register)) return false;
                d.Op = rr;
                d.R1 = Gpr(ins.Op1Register);
                return true;
            }
            if (ins.Op1Kind == OpKind.Memory) { d.Op = rm; return Memory(in ins, ref d); }
            d.Op = ri;
            d.Imm = (long)ins.GetImmediate(1);
            return true;
        }
        if (ins.Op0Kind != OpKind.Memory) return false;
        d.Size = (byte)ins.MemorySize.GetSize();
        if (ins.Op1Kind == OpKind.Register)
        {
            if (!IsGpr(ins.Op1Register)) return false;
            d.Op = mr;
            d.R1 = Gpr(ins.Op1Register);
            return Memory(in ins, ref d);
        }
        d.Op = mi;
        d.Imm = (long)ins.GetImmediate(1);
        return Memory(in ins, ref d);
    }

    private static bool Unary(in Instruction ins, ref DecodedInstruction d, UnaryKind kind)
    {
        d.Sub = (byte)kind;
        if (ins.Op0Kind == OpKind.Register)
        {
            if (!IsGpr(ins.Op0Register)) return false;
            d.Op = Op.UnaryR;
            d.R0 = Gpr(ins.Op0Register);
            d.Size = (byte)ins.Op0Register.GetSize();
            return true;
        }
        d.Op = Op.UnaryM;
        d.Size = (byte)ins.MemorySize.GetSize();
        return Memory(in ins, ref d);
    }

    private static bool Shift(in Instruction ins, ref DecodedInstruction d, ShiftKind kind)
    {
        d.Sub = (byte)kind;
        if (ins.Op1Kind == OpKind.Register)
        {
            if (ins.Op1Register != Register.CL) return false;
            d.Flags |= DecodedFlags.CountCl;
        }
        else d.Imm = (long)(ins.GetImmediate(1) & 0xFF);
        if (ins.Op0Kind == OpKind.Register)
        {
            if (!IsGpr(ins.Op0Register)) return false;
            d.Op = Op.ShiftR;
            d.R0 = Gpr(ins.Op0Register);
            d.Size = (byte)ins.Op0Register.GetSize();
            return true;
        }
        d.Op = Op.ShiftM;
        d.Size = (byte)ins.MemorySize.GetSize();
        return Memory(in ins, ref d);
    }

    private static bool MulDiv(in Instruction ins, ref DecodedInstruction d, MulKind kind)
    {
        d.Sub = (byte)kind;
        if (ins.Op0Kind == OpKind.Register)
        {
            if (!IsGpr(ins.Op0Register)) return false;
            d.Op = Op.MulR;
            d.R0 = Gpr(ins.Op0Register);
            d.Size = (byte)ins.Op0Register.GetSize();
            return true;
        }
        d.Op = Op.MulM;
        d.Size = (byte)ins.MemorySize.GetSize();
        return Memory(in ins, ref d);
    }

    private static bool NearBranch(in Instruction ins, ref DecodedInstruction d, Op rel, Op reg, Op mem)
    {
        d.Size = 8;
        switch (ins.Op0Kind)
        {
            case OpKind.NearBranch64:
                d.Op = rel;
                d.Disp = Rel(in ins);
                return true;
            case OpKind.Register:
                if (ins.Op0Register.GetSize() != 8) return false;
                d.Op = reg;
                d.R0 = Gpr(ins.Op0Register);
                return true;
            case OpKind.Memory:
                if (ins.MemorySize.GetSize() != 8) return false;
                d.Op = mem;
                return Memory(in ins, ref d);
            default:
                return false;                                                   // far, 16-bit
        }
    }

    private static long Rel(in Instruction ins) => (long)(ins.NearBranch64 - ins.NextIP);

    private static bool Memory(in Instruction ins, ref DecodedInstruction d)
    {
        var b = ins.MemoryBase;
        var x = ins.MemoryIndex;
        if (b == Register.RIP)
        {
            d.Flags |= DecodedFlags.RipRelative;
            d.Disp = (long)(ins.MemoryDisplacement64 - ins.NextIP);
        }
        else
        {
            if (b == Register.EIP) return false;
            if (b != Register.None)
            {
                if (!b.IsGPR64() && !b.IsGPR32()) return false;
                if (b.IsGPR32()) d.Flags |= DecodedFlags.Addr32;
                d.Base = (byte)(b.GetFullRegister() - Register.RAX);
            }
            d.Disp = (long)ins.MemoryDisplacement64;
        }
        if (x != Register.None)
        {
            if (!x.IsGPR64() && !x.IsGPR32()) return false;                     // VSIB
            if (x.IsGPR32()) d.Flags |= DecodedFlags.Addr32;
            d.Index = (byte)(x.GetFullRegister() - Register.RAX);
            d.Scale = (byte)System.Numerics.BitOperations.Log2((uint)ins.MemoryIndexScale);
        }
        return true;
    }

    private static bool IsGpr(Register r) => r.IsGPR8() || r.IsGPR16() || r.IsGPR32() || r.IsGPR64();

    /// <summary>0-15 for RAX..R15 and their low parts, 16-19 for AH, CH, DH, BH.</summary>
    private static byte Gpr(Register r)
    {
        if (r is >= Register.AH and <= Register.BH) return (byte)(DecodedInstruction.HighByteBase + (r - Register.AH));
        return (byte)(r.GetFullRegister() - Register.RAX);
    }
}
