// Decoded instructions -> one DynamicMethod per block. The block keeps guest registers and the
// lazy-flags record (op, size, a, b, r, carry) in IL locals, loaded at entry and written back at
// the single exit; operand sizes, register numbers, immediates and displacements are IL
// constants. Flags stay in the interpreter's lazy form: an instruction records its operands and
// result, and only a jcc/setcc/cmov or a carry reader computes anything (inline when the
// producer is known at translation time, else through the interpreter's own formula), and the
// record reaches the _lz locals only when the block leaves. Memory operands look up the vCPU's
// TLB inline (after a one-entry host cache) and use the entry's backing when the run loop
// granted fast access; otherwise the block leaves before the instruction and the interpreter
// runs it, so every fault, A/D bit, log-dirty mark, emulated write and code invalidation
// happens exactly as interpreted, and the translated code makes no calls on its hot path.
// A block whose branch targets its own start is an IL loop that checks the budget once a pass.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using System.Reflection.Emit;
using XenLab.Memory;
using XenLab.Paging;

namespace XenLab.Cpu.Blocks;

internal static class BlockTranslator
{
    /// <summary>Most instructions in one block.</summary>
    public const int MaxInstructions = 64;

    private const byte LzNone = 0, LzAdd = 1, LzAdc = 2, LzSub = 3, LzSbb = 4, LzLogic = 5, LzInc = 6, LzDec = 7;
    private const int RspIndex = 4;
    private const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;
    private static readonly Type Cpu = typeof(X86Cpu);
    private static readonly FieldInfo FRegs = Cpu.GetField("_r", Private)!;
    private static readonly FieldInfo FRip = Cpu.GetField("_rip", Private)!;
    private static readonly FieldInfo FLzOp = Cpu.GetField("_lzOp", Private)!;
    private static readonly FieldInfo FLzSize = Cpu.GetField("_lzSize", Private)!;
    private static readonly FieldInfo FLzA = Cpu.GetField("_lzA", Private)!;
    private static readonly FieldInfo FLzB = Cpu.GetField("_lzB", Private)!;
    private static readonly FieldInfo FLzR = Cpu.GetField("_lzR", Private)!;
    private static readonly FieldInfo FLzCarry = Cpu.GetField("_lzCarry", Private)!;
    private static readonly FieldInfo FRflags = Cpu.GetField("_rflags", Private)!;
    private static readonly FieldInfo FRetired = Cpu.GetField("_blockRetired", Private)!;
    private static readonly FieldInfo FTlb = Cpu.GetField("_tlbEntries", Private)!;
    private static readonly FieldInfo FTlbMask = Cpu.GetField("_tlbMask", Private)!;
    private static readonly FieldInfo FTag = typeof(TlbEntry).GetField(nameof(TlbEntry.Tag))!;
    private static readonly FieldInfo FFast = typeof(TlbEntry).GetField(nameof(TlbEntry.Fast))!;
    private static readonly FieldInfo FBacking = typeof(TlbEntry).GetField(nameof(TlbEntry.Backing))!;
    private static readonly MethodInfo MDataRef = typeof(System.Runtime.InteropServices.MemoryMarshal)
        .GetMethods().Single(m => m.Name == nameof(System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference) && m.IsGenericMethodDefinition)
        .MakeGenericMethod(typeof(byte));
    private static readonly MethodInfo MShift = Cpu.GetMethod(nameof(X86Cpu.BlockShift), Private)!;
    private static readonly FieldInfo FMissVa = Cpu.GetField("_missVa", Private)!;
    private static readonly MethodInfo MCounts = Cpu.GetMethod(nameof(X86Cpu.BlockCounts), Private)!;
    private static readonly MethodInfo MGp = Cpu.GetMethod(nameof(X86Cpu.BlockGeneralProtection), Private)!;
    private static readonly MethodInfo MCondition = Cpu.GetMethod(nameof(X86Cpu.ConditionFrom), BindingFlags.NonPublic | BindingFlags.Static)!;
    private static readonly MethodInfo MCarry = Cpu.GetMethod(nameof(X86Cpu.CarryFrom), BindingFlags.NonPublic | BindingFlags.Static)!;

    /// <summary>Can this instruction be part of a block?</summary>
    public static bool Supported(in DecodedInstruction d) => d.Op switch
    {
        Op.Nop or Op.MovRR or Op.MovRI or Op.Lea or Op.ExtRR or Op.ExtRM or Op.MovRM or Op.MovMR or Op.MovMI
            or Op.AluRR or Op.AluRI or Op.AluRM or Op.AluMR or Op.AluMI or Op.UnaryR
            or Op.ShiftR or Op.PushR or Op.PushI or Op.PopR or Op.SetccR or Op.CmovR or Op.Jcc or Op.JmpRel => true,
        _ => false,
    };

    /// <summary>Translates the block starting at <paramref name="firstSlot"/> (page offset <paramref name="startOff"/>); null if its first instruction is not supported.</summary>
    public static TranslatedBlock? Translate(CodePage page, int firstSlot, int startOff, X86Cpu cpu, ulong pageVa)
    {
        var ins = new List<DecodedInstruction>();
        var offs = new List<int>();
        int off = startOff;
        int slot = firstSlot;
        while (ins.Count < MaxInstructions)
        {
            var d = page.Instructions[slot];
            if (!Supported(in d)) break;
            ins.Add(d);
            offs.Add(off);
            if (d.Op is Op.Jcc or Op.JmpRel) break;
            off += d.Length;
            if (off >= Page.Size) break;
            slot = cpu.DecodeAhead(page, pageVa + (ulong)off, off);
            if (slot < 0) break;
        }
        if (ins.Count == 0) return null;
        var e = new Emitter(ins, offs, startOff);
        var code = e.Build();
        return new TranslatedBlock(page, code, startOff, ins.Count, e.Loops);
    }

    private sealed class Emitter
    {
        private readonly List<DecodedInstruction> _ins;
        private readonly List<int> _offs;
        private readonly int _start;
        private readonly DynamicMethod _dm;
        private readonly ILGenerator _il;
        private readonly LocalBuilder?[] _reg = new LocalBuilder?[16];
        private readonly bool[] _written = new bool[16];
        private LocalBuilder _regs = null!, _base = null!, _passes = null!;
        private LocalBuilder _lzOp = null!, _lzSize = null!, _lzA = null!, _lzB = null!, _lzR = null!, _lzC = null!;
        private LocalBuilder _exitCode = null!, _exitRetired = null!, _exitRip = null!;
        private LocalBuilder _tlb = null!, _mask = null!;
        // Fast-path accounting: per pass every memory instruction runs once (a miss leaves the
        // block), so the epilogue derives the accesses from the passes and the exit point.
        private LocalBuilder _exitA = null!, _exitR = null!, _exitW = null!;
        private int[] _accBefore = null!, _readBefore = null!, _writeBefore = null!;
        // The host entry last used (virtual page, rights, backing): a hit skips the TLB lookup.
        // Reset after every slow-path call, the only code that can change the TLB.
        private LocalBuilder _cVpnR = null!, _cBackR = null!, _cVpnW = null!, _cBackW = null!, _tvpn = null!, _curBack = null!;
        private LocalBuilder _passesLeft = null!, _exitJ = null!;
        private LocalBuilder _ta = null!, _tb = null!, _tr = null!, _tc = null!, _tv = null!, _tva = null!, _toff = null!, _entry = null!, _ptr = null!;
        private Label _exit;
        // The lazy-flags record pending in per-instruction locals (op LzNone = not known here:
        // the record is in the _lz locals). Committed to the _lz locals only when leaving.
        private byte _knownOp;
        private int _knownSize;
        private int _pk = -1;
        private LocalBuilder?[] _pa = null!, _pb = null!, _pr = null!, _pc = null!;
        private long?[] _paConst = null!, _pbConst = null!, _paDelta = null!;
        private int _k;
        private bool _usesFlags, _usesMemory;
        public bool Loops { get; private set; }

        public Emitter(List<DecodedInstruction> ins, List<int> offs, int start)
        {
            _ins = ins;
            _offs = offs;
            _start = start;
            _dm = new DynamicMethod($"guest_block_{start:x3}", typeof(int), new[] { typeof(X86Cpu), typeof(long) }, typeof(X86Cpu), skipVisibility: true);
            _il = _dm.GetILGenerator();
        }

        public BlockCode Build()
        {
            foreach (var d in _ins) Scan(in d);
            var last = _ins[^1];
            int lastNext = _offs[^1] + last.Length;
            Loops = last.Op is Op.Jcc or Op.JmpRel && lastNext + last.Disp == _start;
            int n = _ins.Count;
            _pa = new LocalBuilder?[n];
            _paConst = new long?[n];
            _paDelta = new long?[n];
            _pbConst = new long?[n];
            _pb = new LocalBuilder?[n];
            _pr = new LocalBuilder?[n];
            _pc = new LocalBuilder?[n];
            _accBefore = new int[n + 1];
            _readBefore = new int[n + 1];
            _writeBefore = new int[n + 1];
            for (int k = 0; k < n; k++)
            {
                var (acc, rd, wr) = Accesses(_ins[k]);
                _accBefore[k + 1] = _accBefore[k] + acc;
                _readBefore[k + 1] = _readBefore[k] + rd;
                _writeBefore[k + 1] = _writeBefore[k] + wr;
            }

            var il = _il;
            _regs = il.DeclareLocal(typeof(ulong[]));
            _base = il.DeclareLocal(typeof(ulong));
            _passes = il.DeclareLocal(typeof(long));
            _passesLeft = il.DeclareLocal(typeof(long));
            _exitJ = il.DeclareLocal(typeof(long));
            _exitCode = il.DeclareLocal(typeof(int));
            _exitRetired = il.DeclareLocal(typeof(long));
            _exitRip = il.DeclareLocal(typeof(ulong));
            _ta = il.DeclareLocal(typeof(ulong));
            _tb = il.DeclareLocal(typeof(ulong));
            _tr = il.DeclareLocal(typeof(ulong));
            _tc = il.DeclareLocal(typeof(ulong));
            _tv = il.DeclareLocal(typeof(ulong));
            _exit = il.DefineLabel();

            // Prologue: registers, the lazy-flags record, the TLB.
            il.Emit(OpCodes.Ldarg_0);
            il.Emit(OpCodes.Ldfld, FRegs);
            il.Emit(OpCodes.Stloc, _regs);
            for (int i = 0; i < 16; i++)
            {
                if (_reg[i] is null) continue;
                il.Emit(OpCodes.Ldloc, _regs);
                il.Emit(OpCodes.Ldc_I4, i);
                il.Emit(OpCodes.Ldelem_I8);
                il.Emit(OpCodes.Stloc, _reg[i]!);
            }
            il.Emit(OpCodes.Ldarg_0);
            il.Emit(OpCodes.Ldfld, FRip);
            il.Emit(OpCodes.Stloc, _base);
            if (Loops)
            {
                // Whole passes the budget allows (the run loop enters with room for at least one).
                il.Emit(OpCodes.Ldarg_1);
                il.Emit(OpCodes.Ldc_I8, (long)n);
                il.Emit(OpCodes.Div);
                il.Emit(OpCodes.Stloc, _passesLeft);
            }
            if (_usesFlags)
            {
                _lzOp = il.DeclareLocal(typeof(int));
                _lzSize = il.DeclareLocal(typeof(int));
                _lzA = il.DeclareLocal(typeof(ulong));
                _lzB = il.DeclareLocal(typeof(ulong));
                _lzR = il.DeclareLocal(typeof(ulong));
                _lzC = il.DeclareLocal(typeof(ulong));
                LoadField(FLzOp, _lzOp);
                LoadField(FLzSize, _lzSize);
                LoadField(FLzA, _lzA);
                LoadField(FLzB, _lzB);
                LoadField(FLzR, _lzR);
                LoadField(FLzCarry, _lzC);
            }
            if (_usesMemory)
            {
                _tlb = il.DeclareLocal(typeof(TlbEntry[]));
                _mask = il.DeclareLocal(typeof(int));
                _exitA = il.DeclareLocal(typeof(long));
                _exitR = il.DeclareLocal(typeof(long));
                _exitW = il.DeclareLocal(typeof(long));
                _cVpnR = il.DeclareLocal(typeof(ulong));
                _cBackR = il.DeclareLocal(typeof(byte[]));
                _cVpnW = il.DeclareLocal(typeof(ulong));
                _cBackW = il.DeclareLocal(typeof(byte[]));
                _tvpn = il.DeclareLocal(typeof(ulong));
                _tva = il.DeclareLocal(typeof(ulong));
                _toff = il.DeclareLocal(typeof(int));
                _entry = il.DeclareLocal(typeof(TlbEntry).MakeByRefType());
                _ptr = il.DeclareLocal(typeof(byte).MakeByRefType());
                LoadField(FTlb, _tlb);
                LoadField(FTlbMask, _mask);
                ResetHostEntry();
            }

            // One pass; a block that loops emits a second copy that loops on itself, entered with
            // the flag producer of the end of a pass known (so the loop commits nothing per pass).
            _knownOp = LzNone;
            _pk = -1;
            EmitPass(secondCopy: false);
            if (Loops)
            {
                EmitPass(secondCopy: true);
            }

            // The one exit: write back what the block changed.
            il.MarkLabel(_exit);
            if (Loops)
            {
                il.Emit(OpCodes.Ldarg_1);
                il.Emit(OpCodes.Ldc_I8, (long)n);
                il.Emit(OpCodes.Div);
                il.Emit(OpCodes.Ldloc, _passesLeft);
                il.Emit(OpCodes.Sub);
                il.Emit(OpCodes.Stloc, _passes);
            }
            il.Emit(OpCodes.Ldloc, _passes);
            il.Emit(OpCodes.Ldc_I8, (long)n);
            il.Emit(OpCodes.Mul);
            il.Emit(OpCodes.Ldloc, _exitJ);
            il.Emit(OpCodes.Add);
            il.Emit(OpCodes.Stloc, _exitRetired);
            for (int i = 0; i < 16; i++)
            {
                if (!_written[i]) continue;
                il.Emit(OpCodes.Ldloc, _regs);
                il.Emit(OpCodes.Ldc_I4, i);
                il.Emit(OpCodes.Ldloc, _reg[i]!);
                il.Emit(OpCodes.Stelem_I8);
            }
            if (_usesFlags)
            {
                StoreField(FLzOp, _lzOp, OpCodes.Conv_U1);
                StoreField(FLzSize, _lzSize, OpCodes.Conv_U1);
                StoreField(FLzA, _lzA, null);
                StoreField(FLzB, _lzB, null);
                StoreField(FLzR, _lzR, null);
                StoreField(FLzCarry, _lzC, null);
            }
            StoreField(FRip, _exitRip, null);
            StoreField(FRetired, _exitRetired, null);
            if (_usesMemory)
            {
                // fast = passes * per-pass + before the exit point - slow
                il.Emit(OpCodes.Ldarg_0);
                FastCount(_accBefore[n], _exitA);
                FastCount(_readBefore[n], _exitR);
                FastCount(_writeBefore[n], _exitW);
                il.Emit(OpCodes.Call, MCounts);
            }
            il.Emit(OpCodes.Ldloc, _exitCode);
            il.Emit(OpCodes.Ret);
            return (BlockCode)_dm.CreateDelegate(typeof(BlockCode));
        }

        private Label _secondHead;
        private byte _beforeOp;
        private int _beforeSize, _beforePk;

        /// <summary>
        /// The fast path fell through to here; <paramref name="slow"/> (no fast access) leaves the
        /// block before instruction <paramref name="k"/>, which the interpreter then runs with
        /// every side effect, and the run loop grants the TLB entry fast access if it now may.
        /// </summary>
        private void SideExit(Label slow, int k, bool write)
        {
            var il = _il;
            var done = il.DefineLabel();
            il.Emit(OpCodes.Br, done);
            il.MarkLabel(slow);
            var (op, size, pk) = (_knownOp, _knownSize, _pk);
            (_knownOp, _knownSize, _pk) = (_beforeOp, _beforeSize, _beforePk);
            il.Emit(OpCodes.Ldarg_0);
            il.Emit(OpCodes.Ldloc, _tva);
            il.Emit(OpCodes.Stfld, FMissVa);
            EmitExit(TranslatedBlock.ExitSlow, k, _offs[k]);
            (_knownOp, _knownSize, _pk) = (op, size, pk);
            il.MarkLabel(done);
        }
        private byte _endOp;
        private int _endSize, _endK;

        private void EmitPass(bool secondCopy)
        {
            if (secondCopy)
            {
                _il.MarkLabel(_secondHead);
                _knownOp = _endOp;
                _knownSize = _endSize;
                _pk = _endK;
            }
            else if (Loops) _secondHead = _il.DefineLabel();
            for (int k = 0; k < _ins.Count; k++)
            {
                _k = k;
                var d = _ins[k];
                EmitInstruction(in d, k);
            }
            if (_ins[^1].Op is not (Op.Jcc or Op.JmpRel))
                EmitExit(TranslatedBlock.ExitNext, _ins.Count, _offs[^1] + _ins[^1].Length);
        }

        private void FastCount(int perPass, LocalBuilder before)
        {
            var il = _il;
            il.Emit(OpCodes.Ldloc, _passes);
            il.Emit(OpCodes.Ldc_I8, (long)perPass);
            il.Emit(OpCodes.Mul);
            il.Emit(OpCodes.Ldloc, before);
            il.Emit(OpCodes.Add);
        }

        /// <summary>(TLB lookups, reads, writes) the instruction makes as the interpreter counts them.</summary>
        private static (int, int, int) Accesses(in DecodedInstruction d) => d.Op switch
        {
            Op.MovRM or Op.ExtRM or Op.AluRM => (1, 1, 0),
            Op.MovMR or Op.MovMI or Op.PushR or Op.PushI => (1, 0, 1),
            Op.PopR => (1, 1, 0),
            Op.AluMR or Op.AluMI => (1, 1, d.Sub < (byte)AluKind.Cmp ? 1 : 0),
            _ => (0, 0, 0),
        };

        private void ResetHostEntry()
        {
            _il.Emit(OpCodes.Ldc_I8, -1L);
            _il.Emit(OpCodes.Dup);
            _il.Emit(OpCodes.Stloc, _cVpnR);
            _il.Emit(OpCodes.Stloc, _cVpnW);
        }

        // ---- what the block touches ----------------------------------------------------------

        private void Scan(in DecodedInstruction d)
        {
            switch (d.Op)
            {
                case Op.MovRR: UseReg(d.R0); UseReg(d.R1); break;
                case Op.MovRI: UseReg(d.R0); break;
                case Op.Lea: UseReg(d.R0); UseAddress(in d); break;
                case Op.ExtRR: UseReg(d.R0); UseReg(d.R1); break;
                case Op.ExtRM:
                case Op.MovRM: UseReg(d.R0); UseAddress(in d); _usesMemory = true; break;
                case Op.MovMR: UseReg(d.R1); UseAddress(in d); _usesMemory = true; break;
                case Op.MovMI: UseAddress(in d); _usesMemory = true; break;
                case Op.AluRR: UseReg(d.R0); UseReg(d.R1); _usesFlags = true; break;
                case Op.AluRI: UseReg(d.R0); _usesFlags = true; break;
                case Op.AluRM: UseReg(d.R0); UseAddress(in d); _usesFlags = _usesMemory = true; break;
                case Op.AluMR: UseReg(d.R1); UseAddress(in d); _usesFlags = _usesMemory = true; break;
                case Op.AluMI: UseAddress(in d); _usesFlags = _usesMemory = true; break;
                case Op.UnaryR: UseReg(d.R0); if (d.Sub != (byte)UnaryKind.Not) _usesFlags = true; break;
                case Op.PushR:
                case Op.PopR: UseReg(d.R0); UseReg(RspIndex); _usesMemory = true; break;
                case Op.PushI: UseReg(RspIndex); _usesMemory = true; break;
                case Op.ShiftR: UseReg(d.R0); if ((d.Flags & DecodedFlags.CountCl) != 0) UseReg(1); _usesFlags = true; break;
                case Op.SetccR: UseReg(d.R0); _usesFlags = true; break;
                case Op.CmovR: UseReg(d.R0); UseReg(d.R1); _usesFlags = true; break;
                case Op.Jcc: _usesFlags = true; break;
            }
        }

        private void UseReg(int r)
        {
            if (r >= DecodedInstruction.HighByteBase) r -= DecodedInstruction.HighByteBase;
            _reg[r] ??= _il.DeclareLocal(typeof(ulong));
        }

        private void UseAddress(in DecodedInstruction d)
        {
            if ((d.Flags & DecodedFlags.RipRelative) == 0 && d.Base != DecodedInstruction.NoReg) UseReg(d.Base);
            if (d.Index != DecodedInstruction.NoReg) UseReg(d.Index);
        }

        // ---- instructions ---------------------------------------------------------------------

        private void EmitInstruction(in DecodedInstruction d, int k)
        {
            var il = _il;
            _beforeOp = _knownOp;
            _beforeSize = _knownSize;
            _beforePk = _pk;
            int size = d.Size;
            int next = _offs[k] + d.Length;
            switch (d.Op)
            {
                case Op.Nop:
                    break;
                case Op.MovRR:
                    GetReg(d.R1, size);
                    SetReg(d.R0, size);
                    break;
                case Op.MovRI:
                    il.Emit(OpCodes.Ldc_I8, d.Imm);
                    SetReg(d.R0, size);
                    break;
                case Op.Lea:
                    EffectiveAddress(in d, next);
                    SetReg(d.R0, size);
                    break;
                case Op.ExtRR:
                    GetReg(d.R1, d.Size2);
                    if (d.Sub != 0) SignExtend(d.Size2);
                    SetReg(d.R0, size);
                    break;
                case Op.ExtRM:
                case Op.MovRM:
                {
                    int width = d.Op == Op.ExtRM ? d.Size2 : size;
                    EffectiveAddress(in d, next);
                    il.Emit(OpCodes.Stloc, _tva);
                    Label slow = FastEntry(width, write: false);
                    LoadFast(width);
                    if (d.Op == Op.ExtRM && d.Sub != 0) SignExtend(width);
                    SetReg(d.R0, size);
                    SideExit(slow, k, write: false);
                    break;
                }
                case Op.MovMR:
                case Op.MovMI:
                {
                    EffectiveAddress(in d, next);
                    il.Emit(OpCodes.Stloc, _tva);
                    Label slow = FastEntry(size, write: true);
                    PointerFast();
                    il.Emit(OpCodes.Ldloc, _ptr);
                    if (d.Op == Op.MovMR) GetReg(d.R1, size);
                    else il.Emit(OpCodes.Ldc_I8, d.Imm);
                    StoreIndirect(size);
                    SideExit(slow, k, write: true);
                    break;
                }
                case Op.AluRR:
                case Op.AluRI:
                    GetReg(d.R0, size);
                    il.Emit(OpCodes.Stloc, _ta);
                    if (d.Op == Op.AluRR) GetReg(d.R1, size);
                    else il.Emit(OpCodes.Ldc_I8, d.Imm);
                    il.Emit(OpCodes.Stloc, _tb);
                    Alu((AluKind)d.Sub, size, d.Op is Op.AluRI or Op.AluMI ? d.Imm : null);
                    if (d.Sub < (byte)AluKind.Cmp)
                    {
                        il.Emit(OpCodes.Ldloc, _tr);
                        SetReg(d.R0, size);
                    }
                    break;
                case Op.AluRM:
                {
                    EffectiveAddress(in d, next);
                    il.Emit(OpCodes.Stloc, _tva);
                    Label slow = FastEntry(size, write: false);
                    LoadFast(size);
                    il.Emit(OpCodes.Stloc, _tb);
                    GetReg(d.R0, size);
                    il.Emit(OpCodes.Stloc, _ta);
                    Alu((AluKind)d.Sub, size);
                    if (d.Sub < (byte)AluKind.Cmp)
                    {
                        il.Emit(OpCodes.Ldloc, _tr);
                        SetReg(d.R0, size);
                    }
                    SideExit(slow, k, write: false);
                    break;
                }
                case Op.AluMR:
                case Op.AluMI:
                {
                    // One entry, read and (for all but cmp/test) written through the backing.
                    bool writes = d.Sub < (byte)AluKind.Cmp;
                    EffectiveAddress(in d, next);
                    il.Emit(OpCodes.Stloc, _tva);
                    Label slow = FastEntry(size, write: writes);
                    PointerFast();
                    il.Emit(OpCodes.Ldloc, _ptr);
                    LoadIndirect(size);
                    il.Emit(OpCodes.Stloc, _ta);
                    if (d.Op == Op.AluMR) GetReg(d.R1, size);
                    else il.Emit(OpCodes.Ldc_I8, d.Imm);
                    il.Emit(OpCodes.Stloc, _tb);
                    Alu((AluKind)d.Sub, size, d.Op == Op.AluMI ? d.Imm : null);
                    if (writes)
                    {
                        il.Emit(OpCodes.Ldloc, _ptr);
                        il.Emit(OpCodes.Ldloc, _tr);
                        StoreIndirect(size);
                    }
                    SideExit(slow, k, write: writes);
                    break;
                }
                case Op.PushR:
                case Op.PushI:
                {
                    // RSP moves only once the store has gone through the fast path.
                    GetReg(RspIndex, 8);
                    il.Emit(OpCodes.Ldc_I8, (long)size);
                    il.Emit(OpCodes.Sub);
                    il.Emit(OpCodes.Stloc, _tva);
                    Label slow = FastEntry(size, write: true);
                    PointerFast();
                    il.Emit(OpCodes.Ldloc, _ptr);
                    if (d.Op == Op.PushR) GetReg(d.R0, size);
                    else il.Emit(OpCodes.Ldc_I8, d.Imm);
                    StoreIndirect(size);
                    il.Emit(OpCodes.Ldloc, _tva);
                    SetReg(RspIndex, 8);
                    SideExit(slow, k, write: true);
                    break;
                }
                case Op.PopR:
                {
                    GetReg(RspIndex, 8);
                    il.Emit(OpCodes.Stloc, _tva);
                    Label slow = FastEntry(size, write: false);
                    LoadFast(size);
                    il.Emit(OpCodes.Stloc, _tv);
                    il.Emit(OpCodes.Ldloc, _tva);
                    il.Emit(OpCodes.Ldc_I8, (long)size);
                    il.Emit(OpCodes.Add);
                    SetReg(RspIndex, 8);
                    il.Emit(OpCodes.Ldloc, _tv);
                    SetReg(d.R0, size);                               // pop rsp: the loaded value wins
                    SideExit(slow, k, write: false);
                    break;
                }
                case Op.ShiftR:
                {
                    // Shifts set flags eagerly: hand the record to the interpreter's fields, let its
                    // Shift materialise and set RFLAGS, and read the (now empty) record back.
                    Commit();
                    SpillRecord();
                    il.Emit(OpCodes.Ldarg_0);
                    il.Emit(OpCodes.Ldc_I4, (int)d.Sub);
                    GetReg(d.R0, size);
                    if ((d.Flags & DecodedFlags.CountCl) != 0)
                    {
                        il.Emit(OpCodes.Ldloc, _reg[1]!);
                        il.Emit(OpCodes.Conv_I4);
                        il.Emit(OpCodes.Ldc_I4, 0xFF);
                        il.Emit(OpCodes.And);
                    }
                    else il.Emit(OpCodes.Ldc_I4, (int)d.Imm);
                    il.Emit(OpCodes.Ldc_I4, size == 8 ? 63 : 31);
                    il.Emit(OpCodes.And);
                    il.Emit(OpCodes.Ldc_I4, size);
                    il.Emit(OpCodes.Call, MShift);
                    SetReg(d.R0, size);
                    ReloadRecord();
                    break;
                }
                case Op.UnaryR:
                    GetReg(d.R0, size);
                    il.Emit(OpCodes.Stloc, _ta);
                    Unary((UnaryKind)d.Sub, size);
                    il.Emit(OpCodes.Ldloc, _tr);
                    SetReg(d.R0, size);
                    break;
                case Op.SetccR:
                    Condition(d.Sub);
                    il.Emit(OpCodes.Conv_U8);
                    SetReg(d.R0, 1);
                    break;
                case Op.CmovR:
                {
                    var notTaken = il.DefineLabel();
                    var done = il.DefineLabel();
                    Condition(d.Sub);
                    il.Emit(OpCodes.Brfalse, notTaken);
                    GetReg(d.R1, size);
                    SetReg(d.R0, size);
                    il.Emit(OpCodes.Br, done);
                    il.MarkLabel(notTaken);
                    if (size == 4)
                    {
                        GetReg(d.R0, 4);                              // a 32-bit cmov zero-extends even when not taken
                        SetReg(d.R0, 4);
                    }
                    il.MarkLabel(done);
                    break;
                }
                case Op.Jcc:
                {
                    var notTaken = il.DefineLabel();
                    Condition(d.Sub);
                    il.Emit(OpCodes.Brfalse, notTaken);
                    Taken(in d, k, next);
                    il.MarkLabel(notTaken);
                    EmitExit(TranslatedBlock.ExitNext, k + 1, next);
                    break;
                }
                case Op.JmpRel:
                    Taken(in d, k, next);
                    break;
                default:
                    throw new InvalidOperationException($"block translator: {d.Op} is not translatable");
            }
        }

        /// <summary>The branch is taken: loop, or leave for the target (checking it is canonical when it leaves the page).</summary>
        private void Taken(in DecodedInstruction d, int k, int next)
        {
            var il = _il;
            long target = next + d.Disp;
            if (Loops && k == _ins.Count - 1)
            {
                // One more pass only if the budget holds all of it.
                _endOp = _knownOp;
                _endSize = _knownSize;
                _endK = _pk;
                il.Emit(OpCodes.Ldloc, _passesLeft);
                il.Emit(OpCodes.Ldc_I8, 1L);
                il.Emit(OpCodes.Sub);
                il.Emit(OpCodes.Dup);
                il.Emit(OpCodes.Stloc, _passesLeft);
                il.Emit(OpCodes.Ldc_I8, 0L);
                il.Emit(OpCodes.Bgt, _secondHead);
                EmitExit(TranslatedBlock.ExitTaken, 0, _start);
                return;
            }
            if (target < 0 || target >= Page.Size)
            {
                var ok = il.DefineLabel();
                Rip(target);
                il.Emit(OpCodes.Stloc, _tc);
                il.Emit(OpCodes.Ldloc, _tc);
                il.Emit(OpCodes.Ldc_I4, 16);
                il.Emit(OpCodes.Shl);
                il.Emit(OpCodes.Ldc_I4, 16);
                il.Emit(OpCodes.Shr);
                il.Emit(OpCodes.Ldloc, _tc);
                il.Emit(OpCodes.Beq, ok);
                il.Emit(OpCodes.Ldarg_0);
                il.Emit(OpCodes.Ldloc, _tc);
                il.Emit(OpCodes.Call, MGp);
                EmitExit(TranslatedBlock.ExitFault, k, _offs[k]);
                il.MarkLabel(ok);
            }
            EmitExit(TranslatedBlock.ExitTaken, k + 1, target);
        }

        /// <summary>Leaves the block: <paramref name="retired"/> instructions of this pass done, RIP at page offset <paramref name="ripOff"/>.</summary>
        private void EmitExit(int code, int retired, long ripOff)
        {
            var il = _il;
            Commit();
            il.Emit(OpCodes.Ldc_I4, code);
            il.Emit(OpCodes.Stloc, _exitCode);
            il.Emit(OpCodes.Ldc_I8, (long)retired);
            il.Emit(OpCodes.Stloc, _exitJ);
            Rip(ripOff);
            il.Emit(OpCodes.Stloc, _exitRip);
            if (_usesMemory)
            {
                il.Emit(OpCodes.Ldc_I8, (long)_accBefore[retired]);
                il.Emit(OpCodes.Stloc, _exitA);
                il.Emit(OpCodes.Ldc_I8, (long)_readBefore[retired]);
                il.Emit(OpCodes.Stloc, _exitR);
                il.Emit(OpCodes.Ldc_I8, (long)_writeBefore[retired]);
                il.Emit(OpCodes.Stloc, _exitW);
            }
            il.Emit(OpCodes.Br, _exit);
        }

        /// <summary>Writes the pending lazy-flags record into the _lz locals (nothing if the record is already there).</summary>
        private void Commit()
        {
            if (_pk < 0) return;
            var il = _il;
            il.Emit(OpCodes.Ldc_I4, (int)_knownOp);
            il.Emit(OpCodes.Stloc, _lzOp);
            il.Emit(OpCodes.Ldc_I4, _knownSize);
            il.Emit(OpCodes.Stloc, _lzSize);
            Push(A);
            il.Emit(OpCodes.Stloc, _lzA);
            Push(B);
            il.Emit(OpCodes.Stloc, _lzB);
            Push(R);
            il.Emit(OpCodes.Stloc, _lzR);
            if (_pc[_pk] is { } c)
            {
                il.Emit(OpCodes.Ldloc, c);
                il.Emit(OpCodes.Stloc, _lzC);
            }
        }

        /// <summary>Pushes the guest virtual address of page offset <paramref name="off"/> (which may lie outside the page).</summary>
        private void Rip(long off)
        {
            _il.Emit(OpCodes.Ldloc, _base);
            _il.Emit(OpCodes.Ldc_I8, off - _start);
            _il.Emit(OpCodes.Add);
        }

        // ---- registers ------------------------------------------------------------------------

        private void GetReg(int r, int size)
        {
            var il = _il;
            if (r >= DecodedInstruction.HighByteBase)
            {
                il.Emit(OpCodes.Ldloc, _reg[r - DecodedInstruction.HighByteBase]!);
                il.Emit(OpCodes.Ldc_I4_8);
                il.Emit(OpCodes.Shr_Un);
                il.Emit(OpCodes.Ldc_I8, 0xFFL);
                il.Emit(OpCodes.And);
                return;
            }
            il.Emit(OpCodes.Ldloc, _reg[r]!);
            switch (size)
            {
                case 8: break;
                case 4: il.Emit(OpCodes.Conv_U4); il.Emit(OpCodes.Conv_U8); break;
                case 2: il.Emit(OpCodes.Ldc_I8, 0xFFFFL); il.Emit(OpCodes.And); break;
                default: il.Emit(OpCodes.Ldc_I8, 0xFFL); il.Emit(OpCodes.And); break;
            }
        }

        /// <summary>Writes the value on the stack to register <paramref name="r"/> with x86-64's merge/zero-extend rules.</summary>
        private void SetReg(int r, int size)
        {
            var il = _il;
            int full = r >= DecodedInstruction.HighByteBase ? r - DecodedInstruction.HighByteBase : r;
            var loc = _reg[full]!;
            _written[full] = true;
            switch (size)
            {
                case 8:
                    il.Emit(OpCodes.Stloc, loc);
                    return;
                case 4:
                    il.Emit(OpCodes.Conv_U4);
                    il.Emit(OpCodes.Conv_U8);
                    il.Emit(OpCodes.Stloc, loc);
                    return;
            }
            ulong keep, take;
            int shift = 0;
            if (size == 2) { keep = ~0xFFFFUL; take = 0xFFFF; }
            else if (r >= DecodedInstruction.HighByteBase) { keep = ~0xFF00UL; take = 0xFF; shift = 8; }
            else { keep = ~0xFFUL; take = 0xFF; }
            il.Emit(OpCodes.Ldc_I8, (long)take);
            il.Emit(OpCodes.And);
            if (shift != 0) { il.Emit(OpCodes.Ldc_I4, shift); il.Emit(OpCodes.Shl); }
            il.Emit(OpCodes.Ldloc, loc);
            il.Emit(OpCodes.Ldc_I8, unchecked((long)keep));
            il.Emit(OpCodes.And);
            il.Emit(OpCodes.Or);
            il.Emit(OpCodes.Stloc, loc);
        }

        private void SignExtend(int size)
        {
            int s = 64 - (size << 3);
            if (s == 0) return;
            _il.Emit(OpCodes.Ldc_I4, s);
            _il.Emit(OpCodes.Shl);
            _il.Emit(OpCodes.Ldc_I4, s);
            _il.Emit(OpCodes.Shr);
        }

        /// <summary>Pushes the memory operand's effective address, as X86Cpu.EffectiveAddress computes it.</summary>
        private void EffectiveAddress(in DecodedInstruction d, int next)
        {
            var il = _il;
            il.Emit(OpCodes.Ldc_I8, d.Disp);
            if ((d.Flags & DecodedFlags.RipRelative) != 0)
            {
                Rip(next);
                il.Emit(OpCodes.Add);
            }
            else if (d.Base != DecodedInstruction.NoReg)
            {
                il.Emit(OpCodes.Ldloc, _reg[d.Base]!);
                il.Emit(OpCodes.Add);
            }
            if (d.Index != DecodedInstruction.NoReg)
            {
                il.Emit(OpCodes.Ldloc, _reg[d.Index]!);
                if (d.Scale != 0) { il.Emit(OpCodes.Ldc_I4, (int)d.Scale); il.Emit(OpCodes.Shl); }
                il.Emit(OpCodes.Add);
            }
            if ((d.Flags & DecodedFlags.Addr32) != 0) { il.Emit(OpCodes.Conv_U4); il.Emit(OpCodes.Conv_U8); }
        }

        // ---- memory ---------------------------------------------------------------------------

        /// <summary>
        /// The inlined TLB lookup for the address in _tva: falls through when the entry matches,
        /// grants the access and the operand stays in the page (leaving _entry and _toff set);
        /// otherwise branches to the returned label, which the caller marks for its slow path.
        /// </summary>
        private Label FastEntry(int size, bool write)
        {
            var il = _il;
            var slow = il.DefineLabel();
            var lookup = il.DefineLabel();
            var have = il.DefineLabel();
            int need = write ? Tlb.FastWrite : Tlb.FastRead;
            var vpn = write ? _cVpnW : _cVpnR;
            _curBack = write ? _cBackW : _cBackR;
            il.Emit(OpCodes.Ldloc, _tva);
            il.Emit(OpCodes.Ldc_I4, Page.Shift);
            il.Emit(OpCodes.Shr_Un);
            il.Emit(OpCodes.Stloc, _tvpn);
            // The host entry used last for this kind of access?
            il.Emit(OpCodes.Ldloc, _tvpn);
            il.Emit(OpCodes.Ldloc, vpn);
            il.Emit(OpCodes.Beq, have);
            // The TLB entry, as Vcpu.Translate finds it.
            il.MarkLabel(lookup);
            il.Emit(OpCodes.Ldloc, _tlb);
            il.Emit(OpCodes.Ldloc, _tvpn);
            il.Emit(OpCodes.Conv_I4);
            il.Emit(OpCodes.Ldloc, _mask);
            il.Emit(OpCodes.And);
            il.Emit(OpCodes.Ldelema, typeof(TlbEntry));
            il.Emit(OpCodes.Stloc, _entry);
            il.Emit(OpCodes.Ldloc, _entry);
            il.Emit(OpCodes.Ldfld, FTag);
            il.Emit(OpCodes.Ldloc, _tvpn);
            il.Emit(OpCodes.Ldc_I8, 1L);
            il.Emit(OpCodes.Add);
            il.Emit(OpCodes.Bne_Un, slow);
            il.Emit(OpCodes.Ldloc, _entry);
            il.Emit(OpCodes.Ldfld, FFast);
            il.Emit(OpCodes.Ldc_I4, need);
            il.Emit(OpCodes.And);
            il.Emit(OpCodes.Brfalse, slow);
            il.Emit(OpCodes.Ldloc, _entry);
            il.Emit(OpCodes.Ldfld, FBacking);
            il.Emit(OpCodes.Stloc, _curBack);
            il.Emit(OpCodes.Ldloc, _tvpn);
            il.Emit(OpCodes.Stloc, vpn);
            if (write)
            {
                // Writable implies readable: the read entry follows.
                il.Emit(OpCodes.Ldloc, _tvpn);
                il.Emit(OpCodes.Stloc, _cVpnR);
                il.Emit(OpCodes.Ldloc, _cBackW);
                il.Emit(OpCodes.Stloc, _cBackR);
            }
            il.MarkLabel(have);
            il.Emit(OpCodes.Ldloc, _tva);
            il.Emit(OpCodes.Conv_I4);
            il.Emit(OpCodes.Ldc_I4, Page.Size - 1);
            il.Emit(OpCodes.And);
            il.Emit(OpCodes.Stloc, _toff);
            if (size > 1)
            {
                il.Emit(OpCodes.Ldloc, _toff);
                il.Emit(OpCodes.Ldc_I4, Page.Size - size);
                il.Emit(OpCodes.Bgt, slow);
            }
            return slow;
        }

        /// <summary>_ptr = ref backing[_toff].</summary>
        /// <summary>
        /// No bounds check: the backing is a whole 4 KiB frame and FastEntry has checked that
        /// the operand ends inside it.
        /// </summary>
        private void PointerFast()
        {
            _il.Emit(OpCodes.Ldloc, _curBack);
            _il.Emit(OpCodes.Call, MDataRef);
            _il.Emit(OpCodes.Ldloc, _toff);
            _il.Emit(OpCodes.Conv_I);
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Stloc, _ptr);
        }

        private void LoadFast(int size)
        {
            PointerFast();
            _il.Emit(OpCodes.Ldloc, _ptr);
            LoadIndirect(size);
        }

        private void LoadIndirect(int size)
        {
            var il = _il;
            if (size > 1) il.Emit(OpCodes.Unaligned, (byte)1);
            switch (size)
            {
                case 1: il.Emit(OpCodes.Ldind_U1); il.Emit(OpCodes.Conv_U8); break;
                case 2: il.Emit(OpCodes.Ldind_U2); il.Emit(OpCodes.Conv_U8); break;
                case 4: il.Emit(OpCodes.Ldind_U4); il.Emit(OpCodes.Conv_U8); break;
                default: il.Emit(OpCodes.Ldind_I8); break;
            }
        }

        private void StoreIndirect(int size)
        {
            var il = _il;
            switch (size)
            {
                case 1: il.Emit(OpCodes.Conv_U1); il.Emit(OpCodes.Stind_I1); break;
                case 2: il.Emit(OpCodes.Conv_U2); il.Emit(OpCodes.Unaligned, (byte)1); il.Emit(OpCodes.Stind_I2); break;
                case 4: il.Emit(OpCodes.Conv_U4); il.Emit(OpCodes.Unaligned, (byte)1); il.Emit(OpCodes.Stind_I4); break;
                default: il.Emit(OpCodes.Unaligned, (byte)1); il.Emit(OpCodes.Stind_I8); break;
            }
        }

        // ---- lazy flags -----------------------------------------------------------------------

        /// <summary>_tr = _ta op _tb, recording the lazy-flags record as X86Cpu.Alu does.</summary>
        private void Alu(AluKind kind, int size, long? bConst = null)
        {
            var il = _il;
            byte op;
            switch (kind)
            {
                case AluKind.Add: Binary(OpCodes.Add); op = LzAdd; break;
                case AluKind.Or: Binary(OpCodes.Or); op = LzLogic; break;
                case AluKind.And:
                case AluKind.Test: Binary(OpCodes.And); op = LzLogic; break;
                case AluKind.Xor: Binary(OpCodes.Xor); op = LzLogic; break;
                case AluKind.Sub:
                case AluKind.Cmp: Binary(OpCodes.Sub); op = LzSub; break;
                default:
                    Carry();
                    il.Emit(OpCodes.Stloc, _tc);
                    il.Emit(OpCodes.Ldloc, _ta);
                    il.Emit(OpCodes.Ldloc, _tb);
                    il.Emit(kind == AluKind.Adc ? OpCodes.Add : OpCodes.Sub);
                    il.Emit(OpCodes.Ldloc, _tc);
                    il.Emit(kind == AluKind.Adc ? OpCodes.Add : OpCodes.Sub);
                    il.Emit(OpCodes.Stloc, _tr);
                    op = kind == AluKind.Adc ? LzAdc : LzSbb;
                    break;
            }
            Record(op, size, carry: op is LzAdc or LzSbb, bConst: bConst);
        }

        private void Binary(OpCode op)
        {
            _il.Emit(OpCodes.Ldloc, _ta);
            _il.Emit(OpCodes.Ldloc, _tb);
            _il.Emit(op);
            _il.Emit(OpCodes.Stloc, _tr);
        }

        /// <summary>_tr = unary(_ta), as X86Cpu.Unary does.</summary>
        private void Unary(UnaryKind kind, int size)
        {
            var il = _il;
            switch (kind)
            {
                case UnaryKind.Inc:
                case UnaryKind.Dec:
                    Carry();
                    il.Emit(OpCodes.Stloc, _tc);
                    il.Emit(OpCodes.Ldloc, _ta);
                    il.Emit(OpCodes.Ldc_I8, 1L);
                    il.Emit(kind == UnaryKind.Inc ? OpCodes.Add : OpCodes.Sub);
                    il.Emit(OpCodes.Stloc, _tr);
                    il.Emit(OpCodes.Ldc_I8, 1L);
                    il.Emit(OpCodes.Stloc, _tb);
                    Record(kind == UnaryKind.Inc ? LzInc : LzDec, size, carry: true, bConst: 1);
                    break;
                case UnaryKind.Neg:
                    il.Emit(OpCodes.Ldc_I8, 0L);
                    il.Emit(OpCodes.Ldloc, _ta);
                    il.Emit(OpCodes.Sub);
                    il.Emit(OpCodes.Stloc, _tr);
                    il.Emit(OpCodes.Ldloc, _ta);
                    il.Emit(OpCodes.Stloc, _tb);
                    il.Emit(OpCodes.Ldc_I8, 0L);
                    il.Emit(OpCodes.Stloc, _ta);
                    Record(LzSub, size, carry: false, aConst: 0);
                    break;
                default:
                    il.Emit(OpCodes.Ldloc, _ta);
                    il.Emit(OpCodes.Not);
                    il.Emit(OpCodes.Stloc, _tr);
                    break;
            }
        }

        /// <summary>
        /// The instruction's lazy-flags record (_ta, _tb, _tr and, for adc/sbb/inc/dec, _tc)
        /// becomes the pending one. An operand that is a constant (an immediate, inc/dec's 1,
        /// neg's 0) stays a constant: nothing to keep alive across a loop.
        /// </summary>
        private void Record(byte op, int size, bool carry, long? aConst = null, long? bConst = null)
        {
            var il = _il;
            int k = _k;
            _paConst[k] = aConst;
            _pbConst[k] = bConst;
            // With a constant b, a is r minus (add, inc) or plus (sub, cmp, dec) it, in 64-bit
            // arithmetic as the record holds them: no local for a to keep alive across a loop.
            _paDelta[k] = bConst is { } bc && aConst is null
                ? op switch { LzAdd or LzInc => -bc, LzSub or LzDec => bc, _ => null }
                : null;
            if (aConst is null && _paDelta[k] is null)
            {
                _pa[k] ??= il.DeclareLocal(typeof(ulong));
                il.Emit(OpCodes.Ldloc, _ta);
                il.Emit(OpCodes.Stloc, _pa[k]!);
            }
            if (bConst is null)
            {
                _pb[k] ??= il.DeclareLocal(typeof(ulong));
                il.Emit(OpCodes.Ldloc, _tb);
                il.Emit(OpCodes.Stloc, _pb[k]!);
            }
            _pr[k] ??= il.DeclareLocal(typeof(ulong));
            il.Emit(OpCodes.Ldloc, _tr);
            il.Emit(OpCodes.Stloc, _pr[k]!);
            if (carry)
            {
                _pc[k] ??= il.DeclareLocal(typeof(ulong));
                il.Emit(OpCodes.Ldloc, _tc);
                il.Emit(OpCodes.Stloc, _pc[k]!);
            }
            _knownOp = op;
            _knownSize = size;
            _pk = k;
        }

        private const int A = 0, B = 1, R = 2;

        /// <summary>Pushes the pending record's a, b or r.</summary>
        private void Push(int which)
        {
            long? c = which == A ? _paConst[_pk] : which == B ? _pbConst[_pk] : null;
            if (c is { } v) _il.Emit(OpCodes.Ldc_I8, v);
            else if (which == A && _paDelta[_pk] is { } delta)
            {
                _il.Emit(OpCodes.Ldloc, _pr[_pk]!);
                _il.Emit(OpCodes.Ldc_I8, delta);
                _il.Emit(OpCodes.Add);
            }
            else _il.Emit(OpCodes.Ldloc, (which == A ? _pa : which == B ? _pb : _pr)[_pk]!);
        }

        private static ulong MaskOf(int size) => ulong.MaxValue >> (64 - (size << 3));

        private void Masked(int which)
        {
            Push(which);
            if (_knownSize != 8) { _il.Emit(OpCodes.Ldc_I8, (long)MaskOf(_knownSize)); _il.Emit(OpCodes.And); }
        }

        private void SignedOf(int which)
        {
            Push(which);
            SignExtend(_knownSize);
        }

        /// <summary>Pushes CF (0 or 1, as ulong), as X86Cpu.CarryFlag computes it.</summary>
        private void Carry()
        {
            var il = _il;
            switch (_knownOp)
            {
                case LzLogic:
                    il.Emit(OpCodes.Ldc_I8, 0L);
                    return;
                case LzInc:
                case LzDec:
                    il.Emit(OpCodes.Ldloc, _pc[_pk]!);
                    return;
                case LzAdd:
                    Masked(R); Masked(A);
                    il.Emit(OpCodes.Clt_Un);
                    il.Emit(OpCodes.Conv_U8);
                    return;
                case LzSub:
                    Masked(A); Masked(B);
                    il.Emit(OpCodes.Clt_Un);
                    il.Emit(OpCodes.Conv_U8);
                    return;
            }
            PushRecord();
            il.Emit(OpCodes.Call, MCarry);
        }

        /// <summary>Pushes the record (op, size, a, b, r, carry, rflags) for ConditionFrom/CarryFrom: the pending one, or the _lz locals.</summary>
        private void PushRecord()
        {
            var il = _il;
            if (_pk >= 0)
            {
                il.Emit(OpCodes.Ldc_I4, (int)_knownOp);
                il.Emit(OpCodes.Ldc_I4, _knownSize);
                Push(A);
                Push(B);
                Push(R);
                if (_pc[_pk] is { } c) il.Emit(OpCodes.Ldloc, c);
                else il.Emit(OpCodes.Ldc_I8, 0L);
                il.Emit(OpCodes.Ldarg_0);
                il.Emit(OpCodes.Ldfld, FRflags);
                return;
            }
            il.Emit(OpCodes.Ldloc, _lzOp);
            il.Emit(OpCodes.Ldloc, _lzSize);
            il.Emit(OpCodes.Ldloc, _lzA);
            il.Emit(OpCodes.Ldloc, _lzB);
            il.Emit(OpCodes.Ldloc, _lzR);
            il.Emit(OpCodes.Ldloc, _lzC);
            il.Emit(OpCodes.Ldarg_0);
            il.Emit(OpCodes.Ldfld, FRflags);
        }

        /// <summary>Pushes condition <paramref name="cc"/> as an int 0/1.</summary>
        private void Condition(int cc)
        {
            var il = _il;
            int group = cc >> 1;
            bool done = true;
            if (_knownOp == LzNone) done = false;
            else if (group == 2)
            {
                Masked(R);
                il.Emit(OpCodes.Ldc_I8, 0L);
                il.Emit(OpCodes.Ceq);
            }
            else if (group == 4) SignBit();
            else if (_knownOp == LzSub && group is 1 or 3 or 6 or 7)
            {
                if (group is 1 or 3) { Masked(A); Masked(B); }
                else { SignedOf(A); SignedOf(B); }
                switch (group)
                {
                    case 1: il.Emit(OpCodes.Clt_Un); break;
                    case 3: il.Emit(OpCodes.Cgt_Un); Not(); break;
                    case 6: il.Emit(OpCodes.Clt); break;
                    default: il.Emit(OpCodes.Cgt); Not(); break;
                }
            }
            else if (_knownOp == LzLogic && group is 0 or 1 or 3 or 6 or 7)
            {
                switch (group)
                {
                    case 0:
                    case 1: il.Emit(OpCodes.Ldc_I4_0); break;
                    case 3: Masked(R); il.Emit(OpCodes.Ldc_I8, 0L); il.Emit(OpCodes.Ceq); break;
                    case 6: SignBit(); break;
                    default:
                        Masked(R); il.Emit(OpCodes.Ldc_I8, 0L); il.Emit(OpCodes.Ceq);
                        SignBit();
                        il.Emit(OpCodes.Or);
                        break;
                }
            }
            else if (_knownOp == LzAdd && group == 1)
            {
                Masked(R); Masked(A);
                il.Emit(OpCodes.Clt_Un);
            }
            else done = false;
            if (!done)
            {
                PushRecord();
                il.Emit(OpCodes.Ldc_I4, cc);
                il.Emit(OpCodes.Call, MCondition);
                return;
            }
            if ((cc & 1) != 0) Not();
        }

        private void SignBit()
        {
            Push(R);
            _il.Emit(OpCodes.Ldc_I4, (_knownSize << 3) - 1);
            _il.Emit(OpCodes.Shr_Un);
            _il.Emit(OpCodes.Conv_I4);
            _il.Emit(OpCodes.Ldc_I4_1);
            _il.Emit(OpCodes.And);
        }

        private void Not()
        {
            _il.Emit(OpCodes.Ldc_I4_0);
            _il.Emit(OpCodes.Ceq);
        }

        /// <summary>The _lz locals to the vCPU's fields, for an interpreter helper that reads or folds them.</summary>
        private void SpillRecord()
        {
            StoreField(FLzOp, _lzOp, OpCodes.Conv_U1);
            StoreField(FLzSize, _lzSize, OpCodes.Conv_U1);
            StoreField(FLzA, _lzA, null);
            StoreField(FLzB, _lzB, null);
            StoreField(FLzR, _lzR, null);
            StoreField(FLzCarry, _lzC, null);
        }

        /// <summary>The vCPU's fields back into the _lz locals; nothing is known about the record now.</summary>
        private void ReloadRecord()
        {
            LoadField(FLzOp, _lzOp);
            LoadField(FLzSize, _lzSize);
            LoadField(FLzA, _lzA);
            LoadField(FLzB, _lzB);
            LoadField(FLzR, _lzR);
            LoadField(FLzCarry, _lzC);
            _knownOp = LzNone;
            _knownSize = 0;
            _pk = -1;
        }

        private void LoadField(FieldInfo f, LocalBuilder into)
        {
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldfld, f);
            _il.Emit(OpCodes.Stloc, into);
        }

        private void StoreField(FieldInfo f, LocalBuilder from, OpCode? conv)
        {
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldloc, from);
            if (conv is { } c) _il.Emit(c);
            _il.Emit(OpCodes.Stfld, f);
        }
    }
}
