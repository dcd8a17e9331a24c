// Guest code on the x86-64 vCPU: load and run it (bytes, assembly text, a .asm file, a built-in
// frame-loop workload), resume it, step it, and read its registers. A guest fault is the run's
// result, not an error; assembly errors and ARM domains are. Each body is one call into XenLab.Core.
using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Management.Automation;
using XenLab.Cpu;
using XenLab.Cpu.Workloads;
using XenLab.Domains;
using XenLab.Lab;
using XenLab.Views;

namespace XenLab.PowerShell;

[Cmdlet(VerbsLifecycle.Invoke, "XenGuestCode", DefaultParameterSetName = ParameterSets.DomainNameAssembly, SupportsShouldProcess = true)]
[OutputType(typeof(RunResultView), ParameterSetName = new[] {
    ParameterSets.DomainCode, ParameterSets.DomainNameCode, ParameterSets.DomainAssembly, ParameterSets.DomainNameAssembly,
    ParameterSets.DomainPath, ParameterSets.DomainNamePath, ParameterSets.DomainResume, ParameterSets.DomainNameResume })]
[OutputType(typeof(FrameReport), ParameterSetName = new[] { ParameterSets.DomainWorkload, ParameterSets.DomainNameWorkload })]
public sealed class InvokeXenGuestCodeCommand : XenCmdlet
{
    public const long DefaultBudget = 100_000_000;
    private long? _budget;
    private int? _frames;

    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ParameterSets.DomainCode)]
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ParameterSets.DomainAssembly)]
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ParameterSets.DomainPath)]
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ParameterSets.DomainResume)]
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ParameterSets.DomainWorkload)]
    [ValidateNotNull]
    public Domain Domain { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainNameCode)]
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainNameAssembly)]
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainNamePath)]
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainNameResume)]
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainNameWorkload)]
    [ArgumentCompleter(typeof(DomainNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string DomainName { get; set; } = null!;

    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainCode)]
    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainNameCode)]
    [ValidateNotNull]
    [ValidateCount(1, GuestPrograms.CodePages * 4096)]
    public byte[] Code { get; set; } = null!;

    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainAssembly)]
    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainNameAssembly)]
    [ValidateNotNullOrEmpty]
    public string Assembly { get; set; } = null!;

    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainPath)]
    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainNamePath)]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = null!;

    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainResume)]
    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainNameResume)]
    public SwitchParameter Resume { get; set; }

    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainWorkload)]
    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainNameWorkload)]
    public SwitchParameter Workload { get; set; }

    [Parameter(ParameterSetName = ParameterSets.DomainWorkload)]
    [Parameter(ParameterSetName = ParameterSets.DomainNameWorkload)]
    [ValidateNotNullOrEmpty]
    public Hashtable[] Step { get; set; } = null!;

    [Parameter(ParameterSetName = ParameterSets.DomainWorkload)]
    [Parameter(ParameterSetName = ParameterSets.DomainNameWorkload)]
    [ValidateRange(1, 100_000)]
    public int Frames { get => _frames.GetValueOrDefault(); set => _frames = value; }

    [Parameter(ParameterSetName = ParameterSets.DomainWorkload)]
    [Parameter(ParameterSetName = ParameterSets.DomainNameWorkload)]
    [ValidateNotNullOrEmpty]
    public string PngDirectory { get; set; } = null!;

    /// <summary>How long each frame lasts in domain time (16.7 at 60 Hz); 0, the default, is only the instructions' time.</summary>
    [Parameter(ParameterSetName = ParameterSets.DomainWorkload)]
    [Parameter(ParameterSetName = ParameterSets.DomainNameWorkload)]
    public decimal FrameMilliseconds { get; set; }

    [Parameter]
    [ValidateRange(0L, (long)XenLab.Config.DomainConfigLoader.MaxBudget)]
    public long Budget { get => _budget ?? DefaultBudget; set => _budget = value; }

    // Not with -Workload: its frame loop is generated, so there is no address to break at.
    [Parameter(ParameterSetName = ParameterSets.DomainCode)]
    [Parameter(ParameterSetName = ParameterSets.DomainNameCode)]
    [Parameter(ParameterSetName = ParameterSets.DomainAssembly)]
    [Parameter(ParameterSetName = ParameterSets.DomainNameAssembly)]
    [Parameter(ParameterSetName = ParameterSets.DomainPath)]
    [Parameter(ParameterSetName = ParameterSets.DomainNamePath)]
    [Parameter(ParameterSetName = ParameterSets.DomainResume)]
    [Parameter(ParameterSetName = ParameterSets.DomainNameResume)]
    [AddressTransformation]
    [ValidateNotNull]
    public ulong[] Breakpoint { get; set; } = Array.Empty<ulong>();

    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateRange(0, DomainConfigLimits.MaxVcpuIndex)]
    public int Vcpu { get; set; }

    /// <summary>Turns block translation on or off for the domain (every vCPU) before running; kept afterwards, like the YAML's `translate`.</summary>
    [Parameter]
    public SwitchParameter Translate { get; set; }

    private bool ByObject => ParameterSetName is ParameterSets.DomainCode or ParameterSets.DomainAssembly or ParameterSets.DomainPath
        or ParameterSets.DomainResume or ParameterSets.DomainWorkload;

    protected override void Process()
    {
        var d = ResolveDomain(ByObject ? Domain : null, DomainName);
        if (d is null || !CanRunGuestCode(d, Vcpu)) return;
        string target = $"Domain '{d.Name}' vcpu {Vcpu}";
        if (MyInvocation.BoundParameters.ContainsKey(nameof(Translate)) && ShouldProcess($"Domain '{d.Name}'", $"Turn block translation {(Translate.IsPresent ? "on" : "off")}"))
        {
            d.Config.Translate = Translate.IsPresent;
            foreach (var v in d.Vcpus) v.Cpu.TranslationEnabled = Translate.IsPresent;
        }
        switch (ParameterSetName)
        {
            case ParameterSets.DomainResume or ParameterSets.DomainNameResume:
                var cpu = d.Vcpus[Vcpu].Cpu;
                if (!ShouldProcess(target, $"Run from rip {Hex(cpu.Rip)} '{cpu.Disassemble(cpu.Rip)}' for up to {Budget} instruction(s)")) return;
                Run(d);
                return;
            case ParameterSets.DomainWorkload or ParameterSets.DomainNameWorkload:
                RunWorkload(d, target);
                return;
        }
        byte[]? code = ParameterSetName switch
        {
            ParameterSets.DomainCode or ParameterSets.DomainNameCode => Code,
            ParameterSets.DomainAssembly or ParameterSets.DomainNameAssembly => Assemble(d, Assembly, file: null),
            _ => AssembleFile(d),
        };
        if (code is null) return;
        if (!ShouldProcess(target, $"Load {code.Length} byte(s) of code at {Hex(GuestPrograms.CodeVa)} (stack below {Hex(GuestPrograms.StackVa + GuestPrograms.StackPages * 4096UL)}) and run up to {Budget} instruction(s)")) return;
        var program = GuestPrograms.Load(d, code, Vcpu);
        WriteVerbose($"Domain '{d.Name}' vcpu {Vcpu}: {program}.");
        Run(d);
    }

    private void Run(Domain d)
    {
        var result = d.Vcpus[Vcpu].Cpu.Run(Budget, Breakpoint);
        WriteVerbose($"Domain '{d.Name}' vcpu {Vcpu}: {result}.");
        WriteObject(RunResultView.Of(d, Vcpu, result));
    }

    /// <summary>The bytes of <paramref name="text"/> at the code address; null with GuestAssembly written (line and column, and the file).</summary>
    private byte[]? Assemble(Domain d, string text, string? file)
    {
        try
        {
            return GuestAssembler.Assemble(text, GuestPrograms.CodeVa);
        }
        catch (GuestAssemblyException e)
        {
            var record = new ErrorRecord(e, e.ErrorId, ErrorCategory.ParserError, file ?? (object)d);
            if (file is not null) record.ErrorDetails = new ErrorDetails($"{file}: {e.Message}");
            WriteError(record);
            return null;
        }
    }

    private byte[]? AssembleFile(Domain d)
    {
        string file;
        try
        {
            file = SessionState.Path.GetUnresolvedProviderPathFromPSPath(Path);
        }
        catch (Exception e) when (e is ItemNotFoundException or System.Management.Automation.DriveNotFoundException or ProviderNotFoundException or NotSupportedException)
        {
            WriteFailure("AssemblyFileNotFound", ErrorCategory.ObjectNotFound, Path, $"Cannot find the assembly file '{Path}': {e.Message}");
            return null;
        }
        if (!File.Exists(file))
        {
            WriteFailure("AssemblyFileNotFound", ErrorCategory.ObjectNotFound, Path, $"Cannot find the assembly file '{file}'.");
            return null;
        }
        return Assemble(d, File.ReadAllText(file), file);
    }

    private void RunWorkload(Domain d, string target)
    {
        var workload = d.Config.Workload;
        if (Step is { Length: > 0 })
        {
            var steps = new List<WorkloadStep>();
            for (int i = 0; i < Step.Length; i++)
            {
                try
                {
                    steps.Add(WorkloadStepConverter.Convert(Step[i], i + 1));
                }
                catch (ArgumentException e)
                {
                    WriteError(new ErrorRecord(e, "InvalidWorkloadStep", ErrorCategory.InvalidArgument, Step[i]));
                    return;
                }
            }
            workload = new WorkloadConfig(workload?.Frames ?? 10, workload?.BudgetPerFrame ?? WorkloadConfig.DefaultBudget, steps);
        }
        else if (workload is null)
        {
            WriteFailure("NoWorkload", ErrorCategory.ObjectNotFound, d,
                $"Domain '{d.Name}' has no workload: its YAML file has no 'workload:' section. Give the steps with -Step.");
            return;
        }
        int frames = _frames ?? workload.Frames;
        long budget = _budget ?? workload.BudgetPerFrame;
        long intervalNs = d.ClockStepFromMilliseconds(FrameMilliseconds);       // negative or too large: DomainClockOutOfRange
        if (intervalNs > GuestPrograms.MaxFrameIntervalNs)
        {
            WriteFailure("FrameIntervalOutOfRange", System.Management.Automation.ErrorCategory.InvalidArgument, d,
                $"Domain '{d.Name}': a frame of {FrameMilliseconds} ms is longer than the {GuestPrograms.MaxFrameIntervalNs / 1_000_000} ms (one hour) a frame may last.");
            return;
        }
        string paced = intervalNs > 0 ? $", each lasting {intervalNs} ns of domain time" : "";
        string kinds = string.Join(", ", workload.Steps.Select(s => s.Kind.ToString()));
        if (!ShouldProcess(target, $"Load a frame loop of {workload.Steps.Count} step(s) ({kinds}) at {Hex(GuestPrograms.CodeVa)}, mount unmapped framebuffers, and run {frames} frame(s) of up to {budget} instruction(s){paced}")) return;
        string? png = null;
        if (PngDirectory is not null)
        {
            png = SessionState.Path.GetUnresolvedProviderPathFromPSPath(PngDirectory);
            Directory.CreateDirectory(png);
        }
        var program = GuestPrograms.LoadWorkload(d, workload, Vcpu);
        WriteVerbose($"Domain '{d.Name}' vcpu {Vcpu}: workload frame loop, {program}.");
        // Frame by frame with progress; Ctrl+C stops between frames (the vCPU then sits after a yield).
        GuestPrograms.RunFrames(d, frames, budget, Vcpu, png, report =>
        {
            WriteObject(report);
            if (!report.Completed)
                WriteWarning($"Domain '{d.Name}': frame {report.Frame} did not end in a yield, so the workload stopped after {report.Frame + 1} of {frames} frame(s): {report.Stop}.");
        }, Progress, StopToken, intervalNs);
    }
}

[Cmdlet(VerbsCommon.Get, "XenVcpu", DefaultParameterSetName = ParameterSets.DomainName)]
[OutputType(typeof(VcpuView))]
public sealed class GetXenVcpuCommand : DomainCmdlet
{
    [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
    [ValidateRange(0, DomainConfigLimits.MaxVcpuIndex)]
    [ValidateNotNullOrEmpty]
    public int[] Vcpu { get; set; } = null!;

    protected override void Process(Domain domain)
    {
        IEnumerable<int> which = Vcpu is { Length: > 0 } ? Vcpu : Enumerable.Range(0, domain.VcpuCount);
        foreach (int v in which)
            if (HasVcpu(domain, v)) WriteObject(VcpuView.Of(domain, v));
    }
}

[Cmdlet(VerbsCommon.Step, "XenVcpu", DefaultParameterSetName = ParameterSets.DomainName, SupportsShouldProcess = true)]
[OutputType(typeof(RunResultView))]
public sealed class StepXenVcpuCommand : DomainCmdlet
{
    /// <summary>The type name a step's result carries first, for its own table view.</summary>
    public const string StepTypeName = "XenLab.Views.RunResultView#Step";

    [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
    [ValidateRange(0, DomainConfigLimits.MaxVcpuIndex)]
    public int Vcpu { get; set; }

    [Parameter]
    [ValidateRange(1, 1_000_000)]
    public int Count { get; set; } = 1;

    protected override void Process(Domain domain)
    {
        if (!CanRunGuestCode(domain, Vcpu)) return;
        var cpu = domain.Vcpus[Vcpu].Cpu;
        if (!ShouldProcess($"Domain '{domain.Name}' vcpu {Vcpu}", $"Execute {Count} instruction(s) from rip {Hex(cpu.Rip)} '{cpu.Disassemble(cpu.Rip)}'")) return;
        for (int i = 1; i <= Count; i++)
        {
            ulong rip = cpu.Rip;
            string stepped = cpu.Disassemble(rip);
            var result = cpu.Step();
            var o = PSObject.AsPSObject(RunResultView.Of(domain, Vcpu, result));
            o.TypeNames.Insert(0, StepTypeName);
            o.Properties.Add(new PSNoteProperty("Step", i));
            o.Properties.Add(new PSNoteProperty("StepAddress", rip));
            o.Properties.Add(new PSNoteProperty("StepInstruction", stepped));
            WriteObject(o);
            if (result.Reason == StopReason.BudgetExhausted) continue;
            // Halted, yielded, faulted or unsupported: stepping on would repeat the fault or run past the stop.
            if (i < Count) WriteVerbose($"Domain '{domain.Name}' vcpu {Vcpu}: stopped after {i} of {Count} step(s): {result}.");
            break;
        }
    }
}
