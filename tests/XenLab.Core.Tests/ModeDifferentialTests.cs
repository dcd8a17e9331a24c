using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using XenLab.Config;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Paging;
using XenLab.Paging.Arm;
using XenLab.Paging.Modes;

namespace XenLab.Tests;

/// <summary>
/// The same randomized sequence of guest-kernel mapping changes, guest page-table writes through
/// a virtual alias, CR3 reloads and guest reads/writes, replayed on domains in every paging
/// mode (and one that keeps switching), must give identical guest-visible results: data,
/// faults with their error codes, and the accessed/dirty state of every guest leaf. Every
/// domain's audit must be clean after every step.
/// </summary>
public class ModeDifferentialTests
{
    private const ulong DataVa = 0x400000;          // data mappings live in [4 MiB, 4 MiB + 256 pages)
    private const ulong DataGfn = 0x2000;           // data frames [0x2000, 0x2100)
    private const ulong AliasVa = 0x40000000;       // the kernel's page-table pool, mapped writable
    private const ulong MissingGfn = 0x7000;        // RAM in the E820, never populated
    private const ulong MmioGfn = 0xC0000;          // identity

    private sealed record Variant(string Name, PagingModeKind Mode, PagingOptions Options, bool Switches = false, bool Traced = false);

    private static readonly PagingOptions Defaults = PagingOptions.Default;

    private static IEnumerable<Variant> Variants() => new[]
    {
        new Variant("hap", PagingModeKind.Hap, Defaults),
        new Variant("hap-nocache", PagingModeKind.Hap, Defaults with { HapGpaCacheEntries = 0 }),
        new Variant("shadow-snapshot", PagingModeKind.Shadow, Defaults),
        new Variant("shadow-nosnapshot", PagingModeKind.Shadow, Defaults with { Oos = OosMode.NoSnapshot }),
        new Variant("shadow-off-noprefetch", PagingModeKind.Shadow, Defaults with { Oos = OosMode.Off, ShadowPrefetch = false }),
        new Variant("shadow-2slot-tinypool", PagingModeKind.Shadow, Defaults with { OosSlots = 2 }),
        new Variant("arm-walk", PagingModeKind.Arm, Defaults with { ArmLeafLookup = ArmLeafLookup.Walk }),
        new Variant("arm-vlpt-traced", PagingModeKind.Arm, Defaults with { ArmLeafLookup = ArmLeafLookup.Vlpt }, Traced: true),
        new Variant("arm-walk-traced", PagingModeKind.Arm, Defaults with { ArmLeafLookup = ArmLeafLookup.Walk }, Traced: true),
        new Variant("switching", PagingModeKind.Hap, Defaults, Switches: true),
    };

    private static Domain Build(Variant v)
    {
        var host = new XenHost(2UL << 30);
        var c = TestDomains.Config("diff", 64, 128, vcpus: 2);
        c.Paging = v.Mode;
        c.PagingOptions = v.Options;
        c.KernelPtPages = 64;
        c.ShadowMemoryMiB = v.Name.Contains("tinypool") ? 1UL : 4UL;
        var d = host.CreateDomain(c);
        d.Kernel.Map(AliasVa, d.Kernel.PoolBaseGfn, (ulong)d.Kernel.PoolPages, MapFlags.Writable);
        // ARM dirty tracing over all of RAM (page tables included) must be invisible to the guest.
        if (v.Traced) ((ArmMode)d.Mode!).WriteProtectForTracing(0, d.E820.Top >> 12);
        return d;
    }

    private static readonly (PagingModeKind, PagingOptions)[] SwitchTargets =
    {
        (PagingModeKind.Hap, Defaults),
        (PagingModeKind.Shadow, Defaults),
        (PagingModeKind.Shadow, Defaults with { Oos = OosMode.Off }),
        (PagingModeKind.Shadow, Defaults with { Oos = OosMode.NoSnapshot }),
        (PagingModeKind.Hap, Defaults with { HapGpaCacheEntries = 0 }),
        (PagingModeKind.Arm, Defaults with { ArmLeafLookup = ArmLeafLookup.Walk }),
        (PagingModeKind.Arm, Defaults with { ArmLeafLookup = ArmLeafLookup.Vlpt }),
    };

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    public void EveryModeGivesTheGuestTheSameResults(int seed) => Replay(seed, guestCode: false);

    /// <summary>
    /// The same replay with the writes done by real guest code (rep movsb on the vCPU) instead of
    /// the host's virtual-write helper: faults, partial progress and A/D state must still agree.
    /// ARM is left out: guest code is x86 only.
    /// </summary>
    [Theory]
    [InlineData(11)]
    [InlineData(12)]
    [InlineData(13)]
    public void GuestCodeDrivingTheWritesGivesTheSameResults(int seed) => Replay(seed, guestCode: true);

    private static void Replay(int seed, bool guestCode)
    {
        var variants = Variants().Where(v => !guestCode || v.Mode != PagingModeKind.Arm).ToArray();
        var switchTargets = SwitchTargets.Where(t => !guestCode || t.Item1 != PagingModeKind.Arm).ToArray();
        var domains = variants.Select(Build).ToArray();
        if (guestCode)
            foreach (var d in domains) XenLab.Lab.GuestPrograms.Load(d, XenLab.Cpu.GuestAssembler.Assemble("rep movsb\nhlt", XenLab.Lab.GuestPrograms.CodeVa));
        var rng = new Random(seed);
        for (int step = 0; step < 250; step++)
        {
            var op = NextOp(rng, domains[0]);
            string? reference = null;
            for (int i = 0; i < domains.Length; i++)
            {
                if (variants[i].Switches && op.Kind == OpKind.Switch)
                {
                    var (mode, options) = switchTargets[op.A % (ulong)switchTargets.Length];
                    domains[i].SetPagingMode(mode, options);
                }
                string result = guestCode && op.Kind == OpKind.Write && op.Flags == 0 ? GuestCodeWrite(domains[i], op) : Apply(domains[i], op);
                if (variants[i].Traced && step % 7 == 6)     // harvest: read, clear and write-protect again
                    ((ArmMode)domains[i].Mode!).TestAndClearDirty(DataGfn, DataGfn + 256);
                reference ??= result;
                Assert.True(reference == result,
                    $"seed {seed} step {step} {op}: {variants[i].Name} gave\n  {result}\nbut {variants[0].Name} gave\n  {reference}");
                var problems = new List<string>();
                domains[i].Mode!.Audit(problems);
                Assert.True(problems.Count == 0, $"seed {seed} step {step} {op}: {variants[i].Name} audit:\n" + string.Join("\n", problems.Take(10)));
            }
            if (step % 10 == 9 || step == 249)
            {
                string state0 = GuestState(domains[0]);
                for (int i = 1; i < domains.Length; i++)
                    Assert.True(state0 == GuestState(domains[i]), $"seed {seed} step {step}: guest state of {variants[i].Name} differs from {variants[0].Name}");
            }
        }
    }

    private enum OpKind { Map, Unmap, Protect, ClearAd, Read, Write, WritePhys, PteAlias, Cr3, Switch }

    private readonly record struct Op(OpKind Kind, int Vcpu, ulong Va, ulong A, ulong Count, int Flags, byte[] Data)
    {
        public override string ToString() => $"{Kind} vcpu{Vcpu} va=0x{Va:x} a=0x{A:x} n={Count} f={Flags} [{Data.Length}]";
    }

    private static Op NextOp(Random rng, Domain d)
    {
        int vcpu = rng.Next(2);
        ulong page = (ulong)rng.Next(256);
        ulong va = DataVa + (page << 12);
        ulong count = (ulong)Math.Min(256 - (int)page, rng.Next(1, 40));
        int roll = rng.Next(100);
        byte[] data = new byte[rng.Next(1, 9000)];
        rng.NextBytes(data);
        if (roll < 12)
        {
            ulong gfn = rng.Next(20) switch { 0 => MissingGfn, 1 => MmioGfn, _ => DataGfn + (ulong)rng.Next(256) };
            if (gfn is MissingGfn or MmioGfn) count = 1;
            return new Op(OpKind.Map, vcpu, va, gfn, count, rng.Next(8), data);
        }
        if (roll < 18) return new Op(OpKind.Unmap, vcpu, va, 0, count, 0, data);
        if (roll < 24) return new Op(OpKind.Protect, vcpu, va, 0, count, rng.Next(2), data);
        if (roll < 30) return new Op(OpKind.ClearAd, vcpu, va, 0, count, 0, data);
        if (roll < 52) return new Op(OpKind.Read, vcpu, va + (ulong)rng.Next(4096), 0, 0, rng.Next(4) == 0 ? 1 : 0, data);
        if (roll < 74) return new Op(OpKind.Write, vcpu, va + (ulong)rng.Next(4096), 0, 0, rng.Next(4) == 0 ? 1 : 0, data);
        if (roll < 80) return new Op(OpKind.WritePhys, vcpu, 0, ((DataGfn + (ulong)rng.Next(256)) << 12) + (ulong)rng.Next(4096), 0, 0, data);
        if (roll < 92) return new Op(OpKind.PteAlias, vcpu, 0, (ulong)rng.Next(1 << 30), (ulong)rng.Next(1 << 30), rng.Next(8), data);
        if (roll < 97) return new Op(OpKind.Cr3, vcpu, 0, 0, 0, 0, data);
        return new Op(OpKind.Switch, vcpu, 0, (ulong)rng.Next(1000), 0, 0, data);
    }

    private static string Apply(Domain d, Op op)
    {
        var v = d.Vcpus[op.Vcpu];
        var kernel = d.Kernel;
        try
        {
            switch (op.Kind)
            {
                case OpKind.Map:
                    kernel.Map(op.Va, op.A, op.Count, (MapFlags)op.Flags);
                    return "mapped";
                case OpKind.Unmap:
                    return "unmapped " + kernel.Unmap(op.Va, op.Count);
                case OpKind.Protect:
                    return "protected " + kernel.Protect(op.Va, op.Count, op.Flags == 1);
                case OpKind.ClearAd:
                    return "cleared " + kernel.ClearAccessedDirty(op.Va, op.Count);
                case OpKind.Read:
                {
                    var buf = new byte[Math.Min(op.Data.Length, 600)];
                    var r = v.ReadVirtual(op.Va, buf, op.Flags == 1 ? AccessKind.User : AccessKind.Read);
                    return r.IsOk ? "read " + Convert.ToHexString(buf) : "read " + r;
                }
                case OpKind.Write:
                    return "write " + v.WriteVirtual(op.Va, op.Data, op.Flags == 1 ? AccessKind.User : AccessKind.Read);
                case OpKind.WritePhys:
                {
                    int len = (int)Math.Min((ulong)op.Data.Length, ((DataGfn + 256) << 12) - op.A);
                    return "wphys " + d.WriteGuestPhysical(op.A, op.Data.AsSpan(0, len)).Status;
                }
                case OpKind.PteAlias:
                    return RewriteLeafThroughAlias(d, v, op);
                case OpKind.Cr3:
                    v.LoadCr3(v.Cr3);
                    return "cr3";
                case OpKind.Switch:
                    return "switch";
            }
        }
        catch (InvalidConfigurationException e)
        {
            return "refused: " + e.Message;
        }
        throw new InvalidOperationException(op.Kind.ToString());
    }

    /// <summary>rep movsb from a source buffer in the program's stack region to the op's address, on the op's vCPU.</summary>
    private static string GuestCodeWrite(Domain d, Op op)
    {
        int len = Math.Min(op.Data.Length, 8 * 4096);
        d.WriteGuestPhysical(XenLab.Lab.GuestPrograms.StackGfn << 12, op.Data.AsSpan(0, len));
        var cpu = d.Vcpus[op.Vcpu].Cpu;
        cpu.Rip = XenLab.Lab.GuestPrograms.CodeVa;
        cpu[XenLab.Cpu.Reg.Rsi] = XenLab.Lab.GuestPrograms.StackVa;
        cpu[XenLab.Cpu.Reg.Rdi] = op.Va;
        cpu[XenLab.Cpu.Reg.Rcx] = (ulong)len;
        cpu.Rflags = 0;
        var r = cpu.Run(10);
        return r.Reason == XenLab.Cpu.StopReason.PageFault
            ? $"guest write #PF 0x{r.FaultAddress:x} 0x{r.ErrorCode:x} rcx={cpu[XenLab.Cpu.Reg.Rcx]}"
            : $"guest write {r.Reason} rcx={cpu[XenLab.Cpu.Reg.Rcx]}";
    }

    /// <summary>
    /// A guest kernel editing one of its own leaf entries through its virtual alias of the table
    /// (the write that traps, is emulated, or goes out of sync under shadow paging), then
    /// invalidating the address on every vCPU as a kernel must.
    /// </summary>
    private static string RewriteLeafThroughAlias(Domain d, Vcpu v, Op op)
    {
        var leaves = d.Kernel.Leaves().Where(l => l.VirtualAddress >= DataVa && l.VirtualAddress < DataVa + (256UL << 12)).ToList();
        if (leaves.Count == 0) return "no leaf";
        var leaf = leaves[(int)(op.A % (ulong)leaves.Count)];
        var fmt = d.Kernel.Format;
        var s = leaf.State;
        var changed = (op.Flags % 4) switch
        {
            0 => s with { Frame = DataGfn + op.Count % 256, Accessed = false, Dirty = false },
            1 => s with { Writable = !s.Writable, Dirty = false },
            2 => s with { Accessed = false, Dirty = false },
            _ => s with { Present = false },
        };
        ulong aliasVa = AliasVa + (leaf.EntryAddress - (d.Kernel.PoolBaseGfn << 12));
        var bytes = BitConverter.GetBytes(fmt.Encode(changed, 1));
        var r = v.WriteVirtual(aliasVa, bytes);
        foreach (var cpu in d.Vcpus) cpu.InvalidatePage(leaf.VirtualAddress);
        return $"pte 0x{leaf.VirtualAddress:x} {r}";
    }

    /// <summary>Guest-visible state: every data leaf decoded (frame, rights, A, D) and the data frames' bytes.</summary>
    private static string GuestState(Domain d)
    {
        var sb = new StringBuilder();
        foreach (var l in d.Kernel.Leaves())
            sb.Append($"{l.VirtualAddress:x}:{l.State.Frame:x}:{l.State.Writable}{l.State.User}{l.State.NoExecute}{l.State.Accessed}{l.State.Dirty};");
        var buf = new byte[256 * 4096];
        d.ReadPhysical(DataGfn << 12, buf);
        sb.Append(Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(buf)));
        return sb.ToString();
    }
}
