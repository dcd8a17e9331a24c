using System;
using System.Runtime.InteropServices;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace XenLab.Tests.Cpu;

/// <summary>
/// Runs instruction snippets on the host CPU: a harness (emitted once with Iced) saves the
/// callee-saved registers, loads RFLAGS and all 16 GPRs from a state block, jumps to the
/// snippet, and on its way back stores the 16 GPRs and pushfq'd flags and restores the host.
/// The snippet's memory operands point into <see cref="Data"/>, an mmap'd block the vCPU test
/// maps at the same virtual addresses in the guest.
/// </summary>
internal sealed unsafe class NativeX64 : IDisposable
{
    public const int DataSize = 4 * 4096;
    private const int Prot_RWX = 7, Prot_RW = 3, Map_Private_Anon = 0x22;
    // State block layout (page 2 of the code region).
    private const int InRegs = 0, InFlags = 128, OutRegs = 136, OutFlags = 264, HostRsp = 272;

    [DllImport("libc", SetLastError = true)]
    private static extern nint mmap(nint addr, nuint length, int prot, int flags, int fd, nint offset);
    [DllImport("libc", SetLastError = true)]
    private static extern int munmap(nint addr, nuint length);

    private readonly nint _code;         // page 0 harness, page 1 snippet, page 2 state
    private readonly nint _data;
    private readonly ulong _returnRip;

    public static bool Supported => OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64;

    public NativeX64()
    {
        _code = mmap(0, 3 * 4096, Prot_RWX, Map_Private_Anon, -1, 0);
        _data = mmap(0, DataSize, Prot_RW, Map_Private_Anon, -1, 0);
        if (_code == -1 || _data == -1) throw new InvalidOperationException($"mmap failed: errno {Marshal.GetLastPInvokeError()}");
        ulong state = (ulong)_code + 2 * 4096;
        var a = new Assembler(64);
        var snippetPtr = a.CreateLabel();
        var scratch = a.CreateLabel();
        var back = a.CreateLabel();
        a.push(rbx); a.push(rbp); a.push(r12); a.push(r13); a.push(r14); a.push(r15);
        a.mov(rax, state);
        a.mov(__qword_ptr[rax + HostRsp], rsp);
        a.lea(rsp, __qword_ptr[rax + InFlags]);
        a.popfq();
        AssemblerRegister64[] regs = { rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15 };
        for (int i = 15; i >= 1; i--) a.mov(regs[i], __qword_ptr[rax + InRegs + i * 8]);
        a.mov(rax, __qword_ptr[rax + InRegs]);
        a.jmp(__qword_ptr[snippetPtr]);
        a.Label(ref back);
        a.mov(__qword_ptr[scratch], rax);
        a.mov(rax, state);
        for (int i = 1; i < 16; i++) a.mov(__qword_ptr[rax + OutRegs + i * 8], regs[i]);
        a.lea(rsp, __qword_ptr[rax + OutFlags + 8]);
        a.pushfq();
        a.mov(rcx, __qword_ptr[scratch]);
        a.mov(__qword_ptr[rax + OutRegs], rcx);
        a.cld();
        a.mov(rsp, __qword_ptr[rax + HostRsp]);
        a.pop(r15); a.pop(r14); a.pop(r13); a.pop(r12); a.pop(rbp); a.pop(rbx);
        a.ret();
        a.Label(ref snippetPtr);
        a.db(BitConverter.GetBytes((ulong)_code + 4096));
        a.Label(ref scratch);
        a.db(new byte[8]);
        var writer = new PointerWriter(_code);
        var result = a.Assemble(writer, (ulong)_code, BlockEncoderOptions.ReturnNewInstructionOffsets);
        if (writer.Written > 4096) throw new InvalidOperationException("harness too large");
        _returnRip = result.GetLabelRIP(back);
    }

    public ulong DataAddress => (ulong)_data;
    /// <summary>Where snippets run on the host; the guest maps its code at the same address so return addresses agree.</summary>
    public ulong SnippetAddress => (ulong)_code + 4096;
    public Span<byte> Data => new((void*)_data, DataSize);

    /// <summary>Runs <paramref name="snippet"/> with the given registers and flags; returns them after.</summary>
    public (ulong[] Regs, ulong Flags) Run(ReadOnlySpan<byte> snippet, ReadOnlySpan<ulong> regs, ulong flags)
    {
        if (snippet.Length > 4096 - 16) throw new ArgumentException("snippet too long");
        var page = new Span<byte>((void*)(_code + 4096), 4096);
        snippet.CopyTo(page);
        // jmp [rip+0]; dq back
        page[snippet.Length] = 0xFF;
        page[snippet.Length + 1] = 0x25;
        BitConverter.TryWriteBytes(page.Slice(snippet.Length + 2, 4), 0);
        BitConverter.TryWriteBytes(page.Slice(snippet.Length + 6, 8), _returnRip);
        ulong* st = (ulong*)(_code + 2 * 4096);
        for (int i = 0; i < 16; i++) st[InRegs / 8 + i] = regs[i];
        st[InFlags / 8] = flags;
        var fn = (delegate* unmanaged<nint, void>)_code;
        fn(0);
        var outRegs = new ulong[16];
        for (int i = 0; i < 16; i++) outRegs[i] = st[OutRegs / 8 + i];
        return (outRegs, st[OutFlags / 8]);
    }

    public void Dispose()
    {
        munmap(_code, 3 * 4096);
        munmap(_data, DataSize);
    }

    private sealed class PointerWriter : CodeWriter
    {
        private readonly byte* _p;
        public int Written;
        public PointerWriter(nint p) => _p = (byte*)p;
        public override void WriteByte(byte value) => _p[Written++] = value;
    }
}

/// <summary>
/// A fact that needs <see cref="NativeX64"/>: reported Skipped (with the reason) on hosts that
/// cannot run snippets natively, never Passed without running. xunit 2.9 has no Assert.Skip,
/// so the skip is decided when tests are discovered, which is when the host is known anyway.
/// </summary>
public sealed class NativeX64FactAttribute : FactAttribute
{
    public NativeX64FactAttribute()
    {
        if (!NativeX64.Supported) Skip = "needs an x86-64 Linux host to run snippets natively";
    }
}
