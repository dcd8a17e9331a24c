// Paging modes: switch a running domain's mode, explain a translation step by step, read the
// trace of what the hypervisor did, and run the mode's audit. Each body is one call into XenLab.Core.
using System;
using System.Collections.Generic;
using System.Management.Automation;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Paging;
using XenLab.Paging.Modes;
using XenLab.Views;

namespace XenLab.PowerShell;

/// <summary>The kind of access Get-XenTranslation explains (-User adds user mode to any of them).</summary>
public enum GuestAccess
{
    Read,
    Write,
    Fetch,
}

[Cmdlet(VerbsCommon.Set, "XenPagingMode", DefaultParameterSetName = ParameterSets.DomainName, SupportsShouldProcess = true)]
[OutputType(typeof(Domain))]
public sealed class SetXenPagingModeCommand : DomainCmdlet
{
    // Null until given: an option not given keeps the domain's current value.
    private OosMode? _oos;
    private int? _oosSlots;
    private bool? _shadowPrefetch;
    private int? _hapGpaCache;
    private ArmLeafLookup? _armLeafLookup;
    private ShadowWriteRemoval? _shadowWriteRemoval;
    private HapLogDirty? _hapLogDirty;
    private string? _hapSuperpages;

    [Parameter(Mandatory = true, Position = 1)]
    public PagingModeKind Mode { get; set; }

    [Parameter]
    public OosMode Oos { get => _oos.GetValueOrDefault(); set => _oos = value; }

    [Parameter]
    [ValidateRange(2, 64)]
    public int OosSlots { get => _oosSlots.GetValueOrDefault(); set => _oosSlots = value; }

    [Parameter]
    public bool ShadowPrefetch { get => _shadowPrefetch.GetValueOrDefault(); set => _shadowPrefetch = value; }

    [Parameter]
    [ValidateRange(0, 4096)]
    public int HapGpaCache { get => _hapGpaCache.GetValueOrDefault(); set => _hapGpaCache = value; }

    [Parameter]
    public ArmLeafLookup ArmLeafLookup { get => _armLeafLookup.GetValueOrDefault(); set => _armLeafLookup = value; }

    [Parameter]
    public ShadowWriteRemoval ShadowWriteRemoval { get => _shadowWriteRemoval.GetValueOrDefault(); set => _shadowWriteRemoval = value; }

    [Parameter]
    public HapLogDirty HapLogDirty { get => _hapLogDirty.GetValueOrDefault(); set => _hapLogDirty = value; }

    // The YAML key's own words (hap_superpages: on | 2m | off).
    [Parameter]
    [ValidateSet("On", "2M", "Off")]
    public string HapSuperpages { get => _hapSuperpages ?? "On"; set => _hapSuperpages = value; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    private bool AnyOption => _oos is not null || _oosSlots is not null || _shadowPrefetch is not null || _hapGpaCache is not null
        || _armLeafLookup is not null || _shadowWriteRemoval is not null || _hapLogDirty is not null || _hapSuperpages is not null;

    protected override void Process(Domain domain)
    {
        var current = domain.Config.PagingOptions;
        var options = current with
        {
            Oos = _oos ?? current.Oos,
            OosSlots = _oosSlots ?? current.OosSlots,
            ShadowPrefetch = _shadowPrefetch ?? current.ShadowPrefetch,
            HapGpaCacheEntries = _hapGpaCache ?? current.HapGpaCacheEntries,
            ArmLeafLookup = _armLeafLookup ?? current.ArmLeafLookup,
            ShadowWriteRemoval = _shadowWriteRemoval ?? current.ShadowWriteRemoval,
            HapLogDirty = _hapLogDirty ?? current.HapLogDirty,
            HapSuperpages = _hapSuperpages is null ? current.HapSuperpages : !_hapSuperpages.Equals("Off", StringComparison.OrdinalIgnoreCase),
            HapSuperpages1G = _hapSuperpages is null ? current.HapSuperpages1G : _hapSuperpages.Equals("On", StringComparison.OrdinalIgnoreCase),
        };
        // Each mode checks only its own options; this one is checked whatever the mode, so a
        // later switch to HAP cannot meet a bad value stored now.
        if (_hapGpaCache is { } gc && (gc & (gc - 1)) != 0)
        {
            WriteFailure("InvalidConfiguration", ErrorCategory.InvalidArgument, domain,
                $"hap_gpa_cache {gc} must be 0 or a power of two up to 4096; domain '{domain.Name}' keeps {domain.PagingMode} paging.");
            return;
        }
        string from = $"{domain.PagingMode} ({domain.PagingOptionsText})";
        string to = $"{Mode} ({options.Describe(Mode)})";
        string how = (Mode == PagingModeKind.Arm) != (domain.PagingMode == PagingModeKind.Arm)
            ? "; the guest's page tables are converted in place between x86-64 and AArch64 formats" : "";
        if (!ShouldProcess($"Domain '{domain.Name}'", $"Switch paging from {from} to {to}{how}")) return;
        domain.SetPagingMode(Mode, AnyOption ? options : null);
        WriteVerbose($"Domain '{domain.Name}': {domain.PagingMode} paging ({domain.PagingOptionsText}), {domain.PagingFrames} frame(s) held by the mode.");
        if (PassThru) WriteObject(domain);
    }
}

[Cmdlet(VerbsCommon.Get, "XenTranslation", DefaultParameterSetName = ParameterSets.DomainName)]
[OutputType(typeof(TranslationView), typeof(WalkStepView))]
public sealed class GetXenTranslationCommand : XenCmdlet
{
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ParameterSets.Domain)]
    [ValidateNotNull]
    public Domain Domain { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainName)]
    [ArgumentCompleter(typeof(DomainNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string DomainName { get; set; } = null!;

    // By value only where the domain comes by name: in the Domain set the pipeline carries domains.
    [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.Domain)]
    [Parameter(Mandatory = true, Position = 1, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainName)]
    [ValidateNotNullOrEmpty]
    [AddressTransformation]
    public ulong[] VirtualAddress { get; set; } = null!;

    [Parameter]
    [ValidateRange(0, DomainConfigLimits.MaxVcpuIndex)]
    public int Vcpu { get; set; }

    [Parameter]
    public GuestAccess Access { get; set; }

    [Parameter]
    public SwitchParameter User { get; set; }

    [Parameter]
    public SwitchParameter Step { get; set; }

    protected override void Process()
    {
        var d = ResolveDomain(ParameterSetName == ParameterSets.Domain ? Domain : null, DomainName);
        if (d is null) return;
        if (Vcpu >= d.VcpuCount)
        {
            WriteFailure("VcpuOutOfRange", ErrorCategory.InvalidArgument, d,
                $"Domain '{d.Name}' has {d.VcpuCount} vCPU(s) (0 to {d.VcpuCount - 1}); there is no vCPU {Vcpu}.");
            return;
        }
        var access = Access switch
        {
            GuestAccess.Write => AccessKind.Write,
            GuestAccess.Fetch => AccessKind.Fetch,
            _ => AccessKind.Read,
        } | (User ? AccessKind.User : 0);
        foreach (ulong va in VirtualAddress)
        {
            var view = IsCanonical(va) ? TranslationView.Of(d, Vcpu, va, access) : NonCanonical(d, va);
            foreach (string note in view.Notes) WriteVerbose($"0x{va:x}: {note}");
            if (Step) WriteObject(view.Steps, enumerateCollection: true);
            else WriteObject(view);
        }
    }

    /// <summary>Bits 63 to 47 all equal: otherwise the CPU raises #GP before any walk.</summary>
    private static bool IsCanonical(ulong va) => (long)va << 16 >> 16 == (long)va;

    /// <summary>What the CPU does with a non-canonical address: nothing is read, as Vcpu accesses report it.</summary>
    private TranslationView NonCanonical(Domain d, ulong va) =>
        new(d.Name, Vcpu, va, Access.ToString().ToLowerInvariant() + (User ? ",user" : ""), d.PagingMode.ToString(),
            TranslateStatus.NonCanonical, null, null, 0, 0, Array.Empty<WalkStepView>(),
            new[] { $"#GP: 0x{va:x} is not a canonical address; nothing is walked" });
}

[Cmdlet(VerbsCommon.Get, "XenTrace", DefaultParameterSetName = ParameterSets.DomainName)]
[OutputType(typeof(TraceEventView))]
public sealed class GetXenTraceCommand : DomainCmdlet
{
    [Parameter(Position = 1)]
    [ValidateNotNullOrEmpty]
    public TraceKind[] Kind { get; set; } = null!;

    [Parameter]
    [ValidateRange(0L, long.MaxValue)]
    public long Since { get; set; }

    [Parameter]
    [ValidateRange(1, int.MaxValue)]
    public int Last { get; set; }

    protected override void Process(Domain domain)
    {
        var events = TraceEventView.Of(domain, Since);
        if (Kind is { Length: > 0 })
        {
            var kinds = new HashSet<TraceKind>(Kind);
            events.RemoveAll(e => !kinds.Contains(e.Kind));
        }
        int first = Last > 0 ? Math.Max(0, events.Count - Last) : 0;
        for (int i = first; i < events.Count; i++) WriteObject(events[i]);
    }
}

[Cmdlet(VerbsDiagnostic.Test, "XenPaging", DefaultParameterSetName = ParameterSets.DomainName)]
[OutputType(typeof(bool), typeof(PagingAuditView))]
public sealed class TestXenPagingCommand : DomainCmdlet
{
    [Parameter]
    public SwitchParameter Detailed { get; set; }

    protected override void Process(Domain domain)
    {
        var audit = PagingAuditView.Of(domain);
        foreach (string problem in audit.Problems) WriteVerbose($"Domain '{domain.Name}' ({audit.Mode}): {problem}");
        if (Detailed) WriteObject(audit);
        else WriteObject(audit.IsClean);
    }
}
