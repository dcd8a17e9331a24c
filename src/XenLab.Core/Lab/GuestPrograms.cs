// Getting guest code into a domain and running it frame by frame. Code, a data page and a
// stack live in a fixed, documented region of guest RAM (from 48 MiB), mapped by the guest
// kernel; framebuffers not yet mapped are mounted at 0x40000000 + i * 256 MiB. A frame is one
// run of the vCPU until the guest yields (vmcall with RAX = 0); after it the host pulls the
// dirty pages and merged rectangles of every framebuffer, as a display server would. A stop
// comes between frames: the frames that ran have been reported (and their PNGs written), the
// vCPU sits after the last frame's yield, ready for Invoke-XenGuestCode -Resume.
using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using XenLab.Cpu;
using XenLab.Cpu.Workloads;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Memory;
using XenLab.Progress;
using XenLab.Views;

namespace XenLab.Lab;

/// <summary>A domain's built-in guest workload (YAML's <c>workload:</c>).</summary>
public sealed record WorkloadConfig(int Frames, long BudgetPerFrame, IReadOnlyList<WorkloadStep> Steps)
{
    public const long DefaultBudget = 200_000_000;
}

/// <summary>What one frame did: instructions, why the run stopped, each framebuffer's dirty state.</summary>
public sealed record FrameReport(string DomainName, int Frame, long Instructions, RunResult Stop, IReadOnlyList<DirtyVramView> Framebuffers)
{
    public bool Completed => Stop.Reason == StopReason.Hypercall;
    /// <summary>The domain's clock (ns) when the frame's dirty state was pulled: the frame's end.</summary>
    public long ClockNs { get; init; }
    public override string ToString() => $"frame {Frame}: {Instructions} instruction(s), {Stop.Reason}";
}

/// <summary>Where a loaded program lives.</summary>
public sealed record GuestProgramView(string DomainName, int Vcpu, ulong CodeAddress, int CodeBytes, ulong DataAddress, ulong StackTop)
{
    public override string ToString() => $"{CodeBytes} byte(s) of code at 0x{CodeAddress:x}, stack top 0x{StackTop:x}";
}

public static class GuestPrograms
{
    public const ulong CodeVa = 0x70000000;
    public const ulong DataVa = 0x70100000;
    public const ulong StackVa = 0x70200000;
    public const ulong ChurnVa = 0x71000000;
    public const ulong TableAliasVa = 0x72000000;
    public const ulong CodeGfn = 0x3000;           // 48 MiB: 16 pages of code
    public const int CodePages = 16;
    public const ulong DataGfn = 0x3010;
    public const ulong StackGfn = 0x3020;           // 16 pages of stack
    public const int StackPages = 16;
    public const ulong ChurnGfnA = 0x3100, ChurnGfnB = 0x3200;
    public const int MaxChurnPages = 256;
    /// <summary>Frames one run may take (YAML's workload frames has the same bound).</summary>
    public const int MaxFrames = 100_000;

    /// <summary>
    /// Maps the program region, writes <paramref name="code"/> at <see cref="CodeVa"/> and resets
    /// the vCPU to start it: CR3 = the guest kernel's top-level table (where the region is
    /// mapped; a program may have loaded another), RIP = <see cref="CodeVa"/>, RSP = the stack
    /// top, every other general register 0, RFLAGS = 0x2, no #PF handler. Kept: the hypercall
    /// table, guest memory outside the code region, and the other vCPUs.
    /// </summary>
    public static GuestProgramView Load(Domain d, ReadOnlySpan<byte> code, int vcpu = 0)
    {
        using var op = d.EnterOperation();
        CheckVcpu(d, vcpu);
        if (code.Length == 0) throw new InvalidConfigurationException("There is no code to load.");
        if (code.Length > CodePages * Page.Size) throw new InvalidConfigurationException($"{code.Length} bytes of code exceed the {CodePages * Page.Size}-byte code region.");
        RequireRam(d, CodeGfn, (ulong)(StackGfn + StackPages - CodeGfn));
        EnsureMapped(d, CodeVa, CodeGfn, CodePages);
        EnsureMapped(d, DataVa, DataGfn, 1);
        EnsureMapped(d, StackVa, StackGfn, StackPages);
        // The whole region is rewritten: nothing of a previous program may survive past the new one's end.
        var region = new byte[CodePages * Page.Size];
        code.CopyTo(region);
        var r = d.WriteGuestPhysical(CodeGfn << Page.Shift, region);
        if (r.Status == PhysAccessStatus.Missing) throw new InvalidConfigurationException($"gfn 0x{r.FirstBadGfn:x} of the code region is not RAM.");
        var v = d.Vcpus[vcpu];
        if (v.Cr3 != d.Kernel.Pml4Gfn << Page.Shift) v.LoadCr3(d.Kernel.Pml4Gfn << Page.Shift);
        var cpu = v.Cpu;
        for (int i = 0; i < 16; i++) cpu[(Reg)i] = 0;
        cpu.Rflags = 0;                                  // bit 1 stays set: 0x2
        cpu.PageFaultHandler = 0;
        cpu.Rip = CodeVa;
        cpu[Reg.Rsp] = StackVa + (ulong)StackPages * Page.Size;
        return new GuestProgramView(d.Name, vcpu, CodeVa, code.Length, DataVa, cpu[Reg.Rsp]);
    }

    /// <summary>Assembles NASM-style text at <see cref="CodeVa"/> and loads it.</summary>
    public static GuestProgramView LoadAssembly(Domain d, string text, int vcpu = 0)
    {
        ArgumentNullException.ThrowIfNull(text);
        CheckVcpu(d, vcpu);
        return Load(d, GuestAssembler.Assemble(text, CodeVa), vcpu);
    }

    /// <summary>Builds the frame loop of a workload for this domain and loads it.</summary>
    public static GuestProgramView LoadWorkload(Domain d, WorkloadConfig w, int vcpu = 0)
    {
        using var op = d.EnterOperation();
        CheckVcpu(d, vcpu);                              // before mounting anything
        ArgumentNullException.ThrowIfNull(w);
        var fbs = new Dictionary<string, GuestFramebuffer>(StringComparer.OrdinalIgnoreCase);
        for (int i = 0; i < d.Framebuffers.Count; i++)
        {
            var fb = d.Framebuffers[i];
            var mounts = fb.WritableMounts;
            ulong va = mounts.Count > 0 ? mounts[0] : 0x40000000UL + ((ulong)i << 28);
            if (mounts.Count == 0) d.MountFramebuffer(fb.Name, va);
            fbs[fb.Name] = new GuestFramebuffer(fb.Name, va, fb.Config.Width, fb.Config.Height, fb.Config.EffectiveStride);
        }
        foreach (var s in w.Steps)
            if (s.Kind != WorkloadStepKind.PageTableChurn && (s.Framebuffer.Length > 0 || s.Kind != WorkloadStepKind.Blit) && !fbs.ContainsKey(s.Framebuffer))
                throw new InvalidConfigurationException($"Workload step {s.Kind} names framebuffer '{s.Framebuffer}', which domain '{d.Name}' does not have.");
        var churn = new List<ChurnEntry>();
        int churnPages = 0;
        foreach (var s in w.Steps) if (s.Kind == WorkloadStepKind.PageTableChurn) churnPages = Math.Max(churnPages, s.Pages);
        if (churnPages > 0) churn = PrepareChurn(d, Math.Min(churnPages, MaxChurnPages));
        var code = GuestWorkloads.FrameLoop(w.Steps, fbs, churn, CodeVa, DataVa);
        return Load(d, code, vcpu);
    }

    /// <summary>
    /// Runs one frame: until the guest yields (or something stops it), then pulls every
    /// framebuffer's dirty state. With <paramref name="frameIntervalNs"/> &gt; 0 the frame lasts
    /// that long in domain time, as a display paced by vsync: the guest's instructions (1 ns each)
    /// count toward it and the rest passes idle before the pull. 0 (the default): only the
    /// instructions' time passes.
    /// </summary>
    public static FrameReport RunFrame(Domain d, int frame, long budget, int vcpu = 0, string? pngDirectory = null, long frameIntervalNs = 0)
    {
        using var op = d.EnterOperation();
        CheckVcpu(d, vcpu);
        if (budget < 0) throw new InvalidConfigurationException($"A frame's budget of {budget} instructions is negative.");
        CheckFrameInterval(frameIntervalNs);
        if (pngDirectory is not null && !Directory.Exists(pngDirectory))
            throw new InvalidConfigurationException($"The PNG folder '{pngDirectory}' does not exist.");
        var cpu = d.Vcpus[vcpu].Cpu;
        long start = d.ClockNs;
        var stop = cpu.Run(budget);
        var views = new List<DirtyVramView>();
        if (stop.Reason == StopReason.DomainRemoved) return new FrameReport(d.Name, frame, stop.Instructions, stop, views);
        long ran = d.ClockNs - start;
        if (frameIntervalNs > ran) d.AdvanceClock(frameIntervalNs - ran);        // the idle rest of the frame
        foreach (var fb in d.Framebuffers)
        {
            if (pngDirectory is not null)
                DirtyViews.ExportPng(d, fb.Name, Path.Combine(pngDirectory, $"{d.Name}-{fb.Name}-{frame:D4}.png"), highlightDirty: true);
            views.Add(DirtyViews.Query(d, fb.Name, peek: false));
        }
        return new FrameReport(d.Name, frame, stop.Instructions, stop, views) { ClockNs = d.ClockNs };
    }

    /// <summary>Loads a workload and runs its frames; stops early at the first frame that did not end in a yield.</summary>
    public static List<FrameReport> RunWorkload(Domain d, WorkloadConfig w, int? frames = null, string? pngDirectory = null,
        IProgress<LabProgress>? progress = null, CancellationToken cancel = default)
    {
        using var op = d.EnterOperation();
        ArgumentNullException.ThrowIfNull(w);
        int count = frames ?? w.Frames;
        if (count < 0 || count > MaxFrames) throw new InvalidConfigurationException($"A workload runs 0 to {MaxFrames} frames (0 loads it only), not {count}.");
        LoadWorkload(d, w);
        var list = new List<FrameReport>();
        RunFrames(d, count, w.BudgetPerFrame, 0, pngDirectory, list.Add, progress, cancel);
        return list;
    }

    /// <summary>
    /// Runs <paramref name="frames"/> frames of the loaded frame loop, handing each report to
    /// <paramref name="onFrame"/> as it finishes; stops early at the first frame that did not end in
    /// a yield. Dirty tracking of every framebuffer starts (and is cleared) first, so frame 0
    /// reports what frame 0 wrote. Returns the frames run. A stop comes between two frames.
    /// </summary>
    public static int RunFrames(Domain d, int frames, long budget, int vcpu, string? pngDirectory, Action<FrameReport> onFrame,
        IProgress<LabProgress>? progress = null, CancellationToken cancel = default, long frameIntervalNs = 0)
    {
        // Everything is checked before tracking starts, so a refused call changes nothing.
        CheckVcpu(d, vcpu);
        CheckFrameInterval(frameIntervalNs);
        ArgumentNullException.ThrowIfNull(onFrame);
        if (frames < 0 || frames > MaxFrames) throw new InvalidConfigurationException($"A workload runs 0 to {MaxFrames} frames (0 loads it only), not {frames}.");
        if (budget < 0) throw new InvalidConfigurationException($"A frame's budget of {budget} instructions is negative.");
        if (pngDirectory is not null && !Directory.Exists(pngDirectory))
            throw new InvalidConfigurationException($"The PNG folder '{pngDirectory}' does not exist.");
        var reporter = new ProgressReporter(progress, cancel);
        reporter.Begin($"Guest workload on domain '{d.Name}' vcpu {vcpu}", frames, "frame");
        foreach (var fb in d.Framebuffers) DirtyViews.Query(d, fb.Name, peek: false);
        int f = 0;
        while (f < frames)
        {
            var r = RunFrame(d, f, budget, vcpu, pngDirectory, frameIntervalNs);
            f++;
            onFrame(r);
            if (!r.Completed) break;
            if (f < frames) reporter.Step(f);                          // safe point: the frame yielded and was reported
        }
        reporter.Complete(f);
        return f;
    }

    private static List<ChurnEntry> PrepareChurn(Domain d, int pages)
    {
        RequireRam(d, ChurnGfnA, (ulong)pages);
        RequireRam(d, ChurnGfnB, (ulong)pages);
        var k = d.Kernel;
        EnsureMapped(d, TableAliasVa, k.PoolBaseGfn, (ulong)k.PoolPages);
        EnsureMapped(d, ChurnVa, ChurnGfnA, (ulong)pages);
        var list = new List<ChurnEntry>();
        foreach (var leaf in k.Leaves())
        {
            if (leaf.VirtualAddress < ChurnVa || leaf.VirtualAddress >= ChurnVa + ((ulong)pages << Page.Shift)) continue;
            d.TryReadPhysU64(leaf.EntryAddress, out ulong a);
            var s = k.Format.Decode(a, 1);
            ulong other = s.Frame >= ChurnGfnB ? s.Frame - (ChurnGfnB - ChurnGfnA) : s.Frame + (ChurnGfnB - ChurnGfnA);
            ulong b = k.Format.Encode(s with { Frame = other }, 1);
            list.Add(new ChurnEntry(TableAliasVa + (leaf.EntryAddress - (k.PoolBaseGfn << Page.Shift)), leaf.VirtualAddress, a, b));
        }
        return list;
    }

    /// <summary>The longest frame interval: one hour of domain time, far beyond any display's refresh.</summary>
    public const long MaxFrameIntervalNs = 3_600_000_000_000;

    private static void CheckFrameInterval(long ns)
    {
        if (ns < 0 || ns > MaxFrameIntervalNs)
            throw new InvalidConfigurationException($"A frame interval of {ns} ns is outside 0 to {MaxFrameIntervalNs} ns (one hour).");
    }

    private static void CheckVcpu(Domain d, int vcpu)
    {
        if (vcpu < 0 || vcpu >= d.Vcpus.Count) throw new InvalidConfigurationException($"Domain '{d.Name}' has no vcpu {vcpu} (it has {d.Vcpus.Count}).");
    }

    private static void EnsureMapped(Domain d, ulong va, ulong gfn, ulong pages)
    {
        foreach (var m in d.Kernel.Mappings())
            if (m.VirtualAddress <= va && m.EndAddress >= va + (pages << Page.Shift) && m.Gfn + ((va - m.VirtualAddress) >> Page.Shift) == gfn && m.Writable)
                return;
        d.Kernel.Map(va, gfn, pages, MapFlags.Writable);
    }

    private static void RequireRam(Domain d, ulong gfn, ulong pages)
    {
        for (ulong g = gfn; g < gfn + pages; g++)
            if (d.Classify(g) != PhysAccessStatus.Ok)
                throw new InvalidConfigurationException(
                    $"Guest programs use RAM at gfn 0x{gfn:x}-0x{gfn + pages - 1:x} (from {gfn >> 8} MiB); gfn 0x{g:x} is not populated in domain '{d.Name}' (give it at least {((gfn + pages) >> 8) + 1} MiB).");
    }
}
