using System;
using System.Linq;
using XenLab.Config;
using XenLab.Cpu;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Paging.Modes;

namespace XenLab.Tests.Cpu;

/// <summary>
/// The earlier mode differential, driven by guest code: one program writes patterns through
/// virtual memory (stores, read-modify-writes, rep stos and movs across pages, a write to its
/// own page table through an alias, a CR3 reload) under HAP and under shadow paging with each
/// OOS setting. Guest memory and every guest leaf's accessed/dirty state must be identical.
/// ARM is not a variant: guest code is x86-64 only (SPEC section 1), and an ARM domain refuses to run.
/// </summary>
public class GuestCodePagingModeTests
{
    private const ulong DataVa = 0x600000, DataGfn = 0x2000;
    private const ulong AliasVa = 0x40000000;     // the guest kernel's page-table pool, mapped writable

    private static readonly (string Name, PagingModeKind Mode, PagingOptions Options)[] Variants =
    {
        ("hap", PagingModeKind.Hap, PagingOptions.Default),
        ("shadow-snapshot", PagingModeKind.Shadow, PagingOptions.Default),
        ("shadow-nosnapshot", PagingModeKind.Shadow, PagingOptions.Default with { Oos = OosMode.NoSnapshot }),
        ("shadow-off", PagingModeKind.Shadow, PagingOptions.Default with { Oos = OosMode.Off }),
    };

    private const string Program = """
        ; rsi = base of the data mapping, r8 = VA of the leaf PTE of data page 5 (through the alias)
            mov rdi, rsi
            mov ecx, 1536          ; 1.5 pages of dwords
            mov eax, 0x11223344
            rep stosd
            lea rdi, [rsi + 0x3000]
            mov ecx, 700
            std
            add rdi, 4088
            mov rax, 0x5566778899AABBCC
            rep stosq             ; backwards across the boundary of pages 3 and 4
            cld
            xor ecx, ecx
        again:
            mov rdx, rcx
            imul rdx, rdx, 0x1010
            add [rsi + rcx*8 + 0x8000], rdx
            xor [rsi + rcx*8 + 0x9000], ecx
            inc ecx
            cmp ecx, 300
            jb again
            lea rdi, [rsi + 0xA000]
            lea rax, [rsi + 0x10]
            xchg rsi, rax
            mov ecx, 5000
            rep movsb              ; copy 5000 bytes from page 0 to pages 10-11
            mov rsi, rax
            and qword [r8], -3     ; clear W in data page 5's leaf, through the page-table alias
            mov rax, cr3
            mov cr3, rax
            mov dword [rsi + 0x5000], 1   ; now faults (write to a read-only page)
            hlt
        """;

    /// <summary>Interpreted and translated (every block translated before its first run), every mode gives one answer.</summary>
    [Fact]
    public void GuestCodeGivesTheSameMemoryAndLeavesInEveryX86Mode()
    {
        string? refMem = null, refLeaves = null, refResult = null;
        foreach (var translate in new[] { false, true })
        foreach (var v in Variants)
        {
            var host = new XenHost(1UL << 30);
            var c = TestDomains.Config("gc", 64);
            c.Paging = v.Mode;
            c.PagingOptions = v.Options;
            c.KernelPtPages = 64;
            var d = host.CreateDomain(c);
            d.Kernel.Map(0x400000, 0x1000, 1, MapFlags.Writable);
            d.Kernel.Map(DataVa, DataGfn, 16, MapFlags.Writable);
            d.Kernel.Map(0x800000 - 0x4000, 0x3000, 4, MapFlags.Writable);
            d.Kernel.Map(AliasVa, d.Kernel.PoolBaseGfn, (ulong)d.Kernel.PoolPages, MapFlags.Writable);
            var leaf = d.Kernel.Leaves().Single(l => l.VirtualAddress == DataVa + 0x5000);
            ulong leafAlias = AliasVa + (leaf.EntryAddress - (d.Kernel.PoolBaseGfn << 12));

            var cpu = d.Vcpus[0].Cpu;
            cpu.TranslationEnabled = translate;
            cpu.TranslationThreshold = 0;
            var code = GuestAssembler.Assemble(Program, 0x400000);
            d.WriteGuestPhysical(0x1000UL << 12, code);
            cpu.Rip = 0x400000;
            cpu[Reg.Rsp] = 0x800000;
            cpu[Reg.Rsi] = DataVa;
            cpu[Reg.R8] = leafAlias;
            var r = cpu.Run(100_000);

            string result = $"{r.Reason} {r.FaultAddress:x} {r.ErrorCode:x} {r.Instructions} {r.Instruction}";
            var mem = new byte[16 * 4096];
            d.ReadPhysical(DataGfn << 12, mem);
            string memHash = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(mem));
            string leaves = string.Join("\n", d.Kernel.Leaves().Select(l => $"{l.VirtualAddress:x} {l.State}"));
            var problems = new System.Collections.Generic.List<string>();
            d.Mode!.Audit(problems);
            Assert.True(problems.Count == 0, $"{v.Name}: audit: {string.Join("; ", problems.Take(5))}");

            Assert.Equal(StopReason.PageFault, r.Reason);             // the final store hits the page made read-only
            Assert.Equal(0x3u, r.ErrorCode);                           // present | write
            Assert.Equal(DataVa + 0x5000, r.FaultAddress);
            if (v.Mode == PagingModeKind.Shadow)
                Assert.True(d.Counters[PerfCounter.ShadowEmulateWrite] + d.Counters[PerfCounter.OosUnsync] > 0,
                    $"{v.Name}: the PTE write through the alias was neither emulated nor taken out of sync");
            refResult ??= result;
            refMem ??= memHash;
            refLeaves ??= leaves;
            Assert.Equal(translate, d.Counters[PerfCounter.CpuBlockExecuted] > 0);
            Assert.True(refResult == result, $"{v.Name}: {result} vs {refResult}");
            Assert.True(refMem == memHash, $"{v.Name}: guest memory differs from {Variants[0].Name}");
            Assert.True(refLeaves == leaves, $"{v.Name}: guest leaves differ:\n{leaves}\nvs\n{refLeaves}");
        }
    }

    [Fact]
    public void AfterSwitchingToArmTheVcpuRefuses()
    {
        var rig = new CpuRig(PagingModeKind.Hap);
        rig.Load("nop\nhlt");
        Assert.Equal(StopReason.Halted, rig.Cpu.Run(10).Reason);        // runs under HAP
        rig.Domain.SetPagingMode(PagingModeKind.Arm);
        Assert.Throws<GuestArchitectureException>(() => rig.Cpu.Run(10)); // refused under ARM
        rig.Domain.SetPagingMode(PagingModeKind.Shadow);
        rig.Cpu.Rip = CpuRig.CodeVa;
        Assert.Equal(StopReason.Halted, rig.Cpu.Run(10).Reason);        // and runs again under shadow
    }
}

public class GuestCodeDirtyVramTests
{
    [Theory]
    [InlineData(PagingModeKind.Hap)]
    [InlineData(PagingModeKind.Shadow)]
    public void AGuestRedrawMarksEveryFramebufferPageDirtyEachFrame(PagingModeKind mode)
    {
        var rig = new CpuRig(mode);
        var fb = rig.Domain.AddFramebuffer(new FramebufferConfig("fb", 0xF0000000, 1920, 1080, 32));
        rig.Domain.MountFramebuffer("fb", 0x10000000);
        rig.Domain.Vram.Track(fb.FirstGfn, fb.Pages);                       // first call: arms tracking
        rig.Load("mov rdi, 0x10000000\nmov ecx, 1920*1080\nmov eax, 0x336699\nrep stosd\nhlt".Replace("1920*1080", (1920 * 1080).ToString()));
        for (int frame = 0; frame < 2; frame++)
        {
            rig.Cpu.Rip = CpuRig.CodeVa;
            Assert.Equal(StopReason.Halted, rig.Cpu.Run(10).Reason);
            var q = rig.Domain.Vram.Track(fb.FirstGfn, fb.Pages);
            Assert.Equal(2025, q.DirtyPages);                                // 1920*1080*4 bytes = 2025 pages, all written
        }
        rig.Load("mov ecx, 1\nrep stosd\nhlt", CpuRig.CodeVa + 0x100);
        rig.Cpu[Reg.Rdi] = 0x10000000 + 4096 * 7;                            // one dword inside page 7
        Assert.Equal(StopReason.Halted, rig.Cpu.Run(10).Reason);
        Assert.Equal(1, rig.Domain.Vram.Track(fb.FirstGfn, fb.Pages).DirtyPages);   // only page 7 is dirty
    }
}
