using System;
using System.Collections.Generic;
using XenLab.Config;
using XenLab.Cpu;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Lab;
using XenLab.P2m;
using XenLab.Paging;
using XenLab.Paging.Modes;
using XenLab.Views;

namespace XenLab.Tests;

/// <summary>
/// Issue 9 section 2: a removed domain is dead. Every operation on it, through the domain or an
/// object it handed out, fails with DomainRemoved; none of them touches memory that is now
/// another domain's, and none allocates a frame nobody will free.
/// </summary>
public class DomainLifetimeTests
{
    private static readonly FramebufferConfig Mon = new("mon0", 0xF0000000, 64, 64, 32);

    /// <summary>A host with domain a removed and domain b created after it (b reuses a's frames: highest first).</summary>
    private static (XenHost Host, Domain A, Domain B) RemovedAndReused(PagingModeKind mode = PagingModeKind.Hap)
    {
        var host = new XenHost(1UL << 30);
        var ca = TestDomains.Config("a", 64);
        ca.Paging = mode;
        var a = host.CreateDomain(ca);
        host.DestroyDomain(a);
        var b = host.CreateDomain(TestDomains.Config("b", 64));
        return (host, a, b);
    }

    private static void AssertRemoved(Action operation, string what)
    {
        var e = Record.Exception(operation);
        Assert.True(e is XenLabException, $"{what}: expected XenLabException DomainRemoved, got {e?.GetType().Name ?? "no exception"}: {e?.Message}");
        Assert.Equal("DomainRemoved", ((XenLabException)e!).ErrorId);
        Assert.Contains("'a'", e.Message);                   // names the domain
    }

    [Fact]
    public void WritingThroughARemovedDomainFailsAndLeavesTheNextDomainsMemoryAlone()
    {
        var (_, a, b) = RemovedAndReused();
        // b's gfn 0 got the frame a's gfn 0 had (the allocator hands out the highest free frame first).
        var before = new byte[8];
        b.ReadPhysical(0, before);
        AssertRemoved(() => a.WriteGuestPhysical(0, new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }), "WriteGuestPhysical");
        AssertRemoved(() => a.TryWritePhysU64(0, 0x4141414141414141), "TryWritePhysU64");
        AssertRemoved(() => a.WriteGuestPhysU64(8, 0x4242424242424242), "WriteGuestPhysU64");
        var after = new byte[16];
        b.ReadPhysical(0, after);
        Assert.Equal(new byte[16], after);                   // b's fresh memory still reads zeros
    }

    [Fact]
    public void ReadingThroughARemovedDomainFails()
    {
        var (_, a, b) = RemovedAndReused();
        b.WriteGuestPhysical(0, new byte[] { 9, 9, 9, 9, 9, 9, 9, 9 });
        AssertRemoved(() => a.ReadPhysical(0, new byte[8]), "ReadPhysical");
        AssertRemoved(() => a.TryReadPhysU64(0, out _), "TryReadPhysU64");
        AssertRemoved(() => a.Vcpus[0].ReadVirtual(GuestPrograms.CodeVa, new byte[8]), "Vcpu.ReadVirtual");
        AssertRemoved(() => a.Kernel.Mappings(), "Kernel.Mappings");
        AssertRemoved(() => a.Kernel.Leaves(), "Kernel.Leaves");
    }

    [Theory]
    [InlineData(PagingModeKind.Hap)]
    [InlineData(PagingModeKind.Shadow)]
    [InlineData(PagingModeKind.Arm)]
    public void DirtyTrackingOnARemovedDomainIsDomainRemovedNotANullReference(PagingModeKind mode)
    {
        var (_, a, _) = RemovedAndReused(mode);
        AssertRemoved(() => a.Vram.Track(0x100, 16), "Vram.Track");
        AssertRemoved(() => a.LogDirty.Enable(), "LogDirty.Enable");
        AssertRemoved(() => a.LogDirty.Read(clean: true), "LogDirty.Read");
        AssertRemoved(() => a.LogDirty.Disable(), "LogDirty.Disable");
    }

    [Fact]
    public void OperationsThatWouldAllocateOnARemovedDomainFailAndAllocateNothing()
    {
        var (host, a, _) = RemovedAndReused();
        ulong free = host.Machine.FreeFrames;
        AssertRemoved(() => a.SetPagingMode(PagingModeKind.Shadow), "SetPagingMode");
        AssertRemoved(() => a.AddFramebuffer(Mon), "AddFramebuffer");
        AssertRemoved(() => a.Kernel.Map(0x50000000, 0x2000, 4, MapFlags.Writable), "Kernel.Map");
        AssertRemoved(() => a.Balloon(a.MaxPages), "Balloon");
        AssertRemoved(() => GuestPrograms.LoadAssembly(a, "hlt"), "GuestPrograms.LoadAssembly");
        Assert.Equal(free, host.Machine.FreeFrames);          // nothing taken, nothing leaked
    }

    [Fact]
    public void EveryOtherPublicOperationOnARemovedDomainIsDomainRemoved()
    {
        var host = new XenHost(1UL << 30);
        var c = TestDomains.Config("a", 64, vcpus: 2);
        c.Framebuffers.Add(Mon);
        var a = host.CreateDomain(c);
        var v = a.Vcpus[0];
        var cpu = v.Cpu;
        var kernel = a.Kernel;
        var fb = a.Framebuffers[0];
        host.DestroyDomain(a);
        var ops = new List<(string, Action)>
        {
            ("SetIdentityRange", () => a.SetIdentityRange(0xA0, 0xB0, IdentityStrategy.EdgesFirst)),
            ("SetP2mType", () => a.SetP2mType(0x100, P2mType.RamRo)),
            ("ChangeP2mTypes", () => a.ChangeP2mTypes(0, 0x100, P2mType.RamRw, P2mType.RamLogDirty, true)),
            ("RemoveFramebuffer", () => a.RemoveFramebuffer("mon0")),
            ("MountFramebuffer", () => a.MountFramebuffer("mon0", 0x40000000)),
            ("Framebuffer.Mounts", () => _ = fb.Mounts),
            ("FlushAllTlbs", () => a.FlushAllTlbs()),
            ("Kernel.Unmap", () => kernel.Unmap(0x40000000, 1)),
            ("Kernel.Protect", () => kernel.Protect(0x40000000, 1, false)),
            ("Kernel.ClearAccessedDirty", () => kernel.ClearAccessedDirty(0x40000000, 1)),
            ("Vram.StopAll", () => a.Vram.StopAll()),
            ("Vcpu.Translate", () => v.Translate(0x40000000, AccessKind.Read)),
            ("Vcpu.Explain", () => v.Explain(0x40000000, AccessKind.Read, new TranslationTrace())),
            ("Vcpu.WriteVirtual", () => v.WriteVirtual(0x40000000, new byte[1])),
            ("Vcpu.LoadCr3", () => v.LoadCr3(0x1000)),
            ("Vcpu.InvalidatePage", () => v.InvalidatePage(0x40000000)),
            ("X86Cpu.Run", () => cpu.Run(10)),
            ("X86Cpu.Step", () => cpu.Step()),
            ("GuestPrograms.RunFrame", () => GuestPrograms.RunFrame(a, 0, 10)),
            ("MemoryWorkloads.Run", () => MemoryWorkloads.Run(a, "pte-update", 1)),
            ("LiveMigration.PreCopy", () => LiveMigration.PreCopy(a, maxRounds: 1)),
            ("PagingAuditView.Of", () => PagingAuditView.Of(a)),
            ("TranslationView.Of", () => TranslationView.Of(a, 0, 0x40000000, AccessKind.Read)),
            ("DirtyViews.Query", () => DirtyViews.Query(a, "mon0", peek: true)),
            ("DestroyDomain again", () => host.DestroyDomain(a)),
        };
        foreach (var (name, op) in ops) AssertRemoved(op, name);
        Assert.Equal(0UL, host.Machine.AllocatedFrames);
    }

    [Fact]
    public void RemovalLeavesNoP2mEntryNamingAFreedFrame()
    {
        var (host, a, b) = RemovedAndReused();
        // No frame owned twice: whatever a's tree still says, it names no frame at all.
        foreach (var (pfn, mfn) in a.P2m.EnumerateRam())
            Assert.Fail($"removed domain a still maps gfn 0x{pfn:x} to {mfn}, which b may own now");
        Assert.Equal(b.PopulatedPages + b.PagingFrames, host.Machine.AllocatedFrames);
    }

    [Theory]
    [InlineData(PagingModeKind.Hap)]
    [InlineData(PagingModeKind.Shadow)]
    public void AHypercallHandlerThatRemovesItsOwnDomainStopsTheRunCleanly(PagingModeKind mode)
    {
        var host = new XenHost(1UL << 30);
        var c = TestDomains.Config("a", 64);
        c.Paging = mode;
        var a = host.CreateDomain(c);
        var cpu = a.Vcpus[0].Cpu;
        cpu.Hypercalls.Register(7, (_, _) => { host.DestroyDomain(a); return HypercallOutcome.Continue; });
        GuestPrograms.LoadAssembly(a, "mov rax, 7\nvmcall\nmov rbx, [0x70100000]\nmov qword [0x70100000], 1\nhlt");
        var r = cpu.Run(100);                                // the guest asked to go: no exception, a stop
        Assert.Equal(StopReason.DomainRemoved, r.Reason);
        Assert.Equal(2, r.Instructions);                     // mov and vmcall retired, nothing after
        Assert.True(a.IsDestroyed);
        Assert.Null(host.Find("a"));
        Assert.Equal(0UL, host.Machine.AllocatedFrames);     // every frame back, none touched after
        Assert.Equal("DomainRemoved", Assert.IsAssignableFrom<XenLabException>(Record.Exception(() => cpu.Run(10))).ErrorId);
    }

    [Fact]
    public void AFrameRunThatRemovesItsDomainReportsNoFramebuffers()
    {
        var host = new XenHost(1UL << 30);
        var c = TestDomains.Config("a", 64);
        c.Framebuffers.Add(Mon);
        var a = host.CreateDomain(c);
        a.Vcpus[0].Cpu.Hypercalls.Register(7, (_, _) => { host.DestroyDomain(a); return HypercallOutcome.Continue; });
        GuestPrograms.LoadAssembly(a, "mov rax, 7\nvmcall\nhlt");
        var report = GuestPrograms.RunFrame(a, 0, 100);
        Assert.Equal(StopReason.DomainRemoved, report.Stop.Reason);
        Assert.Empty(report.Framebuffers);
        Assert.Equal(0UL, host.Machine.AllocatedFrames);
    }
}
