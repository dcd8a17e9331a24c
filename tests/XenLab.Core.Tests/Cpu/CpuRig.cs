using System;
using XenLab.Config;
using XenLab.Cpu;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Paging.Modes;

namespace XenLab.Tests.Cpu;

/// <summary>A domain with code at <see cref="CodeVa"/>, data at <see cref="DataVa"/> and a stack below <see cref="StackTop"/>.</summary>
internal sealed class CpuRig
{
    public const ulong CodeVa = 0x400000;
    public const ulong CodeGfn = 0x1000;
    public const ulong DataVa = 0x600000;
    public const ulong DataGfn = 0x2000;
    public const ulong StackTop = 0x800000;
    public const ulong StackGfn = 0x3000;
    public const int DataPages = 16;
    public const int StackPages = 4;

    public CpuRig(PagingModeKind mode = PagingModeKind.Hap, PagingOptions? options = null)
    {
        var host = new XenHost(1UL << 30);
        var c = TestDomains.Config("cpu", 64);
        c.Paging = mode;
        if (options is not null) c.PagingOptions = options;
        c.KernelPtPages = 64;
        Domain = host.CreateDomain(c);
        Domain.Kernel.Map(CodeVa, CodeGfn, 4, MapFlags.Writable);
        Domain.Kernel.Map(DataVa, DataGfn, DataPages, MapFlags.Writable);
        Domain.Kernel.Map(StackTop - (StackPages << 12), StackGfn, StackPages, MapFlags.Writable);
        Cpu = Domain.Vcpus[0].Cpu;
        Cpu[Reg.Rsp] = StackTop;
        Cpu.Rip = CodeVa;
    }

    public Domain Domain { get; }
    public X86Cpu Cpu { get; }

    /// <summary>Assembles at <see cref="CodeVa"/> and writes it through the guest-physical path.</summary>
    public byte[] Load(string asm, ulong origin = CodeVa)
    {
        var code = GuestAssembler.Assemble(asm, origin);
        Domain.WriteGuestPhysical(CodeGfn * 4096 + (origin - CodeVa), code);
        Cpu.Rip = origin;
        return code;
    }

    public ulong ReadU64(ulong va)
    {
        var b = new byte[8];
        var r = Domain.Vcpus[0].ReadVirtual(va, b);
        if (!r.IsOk) throw new InvalidOperationException(r.ToString());
        return BitConverter.ToUInt64(b);
    }
}
