// A domain's guest-physical side: E820, the p2m tree and its identity holes, guest memory
// access (physical or through a vCPU), and the performance counters.
using System;
using System.Collections.Generic;
using System.Management.Automation;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Memory;
using XenLab.P2m;
using XenLab.Paging;
using XenLab.Views;

namespace XenLab.PowerShell;

[Cmdlet(VerbsCommon.Get, "XenE820", DefaultParameterSetName = ParameterSets.DomainName)]
[OutputType(typeof(E820EntryView))]
public sealed class GetXenE820Command : DomainCmdlet
{
    protected override void Process(Domain domain) => WriteObject(DomainViews.E820(domain), enumerateCollection: true);
}

[Cmdlet(VerbsCommon.Set, "XenIdentityHole", DefaultParameterSetName = ParameterSets.DomainName, SupportsShouldProcess = true)]
[OutputType(typeof(IdentityHoleView))]
public sealed class SetXenIdentityHoleCommand : DomainCmdlet
{
    private IdentityStrategy? _strategy;

    [Parameter(Mandatory = true)]
    public ulong Gfn { get; set; }

    [Parameter(Mandatory = true)]
    [ValidateRange(1UL, P2mTree.MaxPfn)]
    public ulong Count { get; set; }

    [Parameter]
    public IdentityStrategy Strategy { get => _strategy.GetValueOrDefault(); set => _strategy = value; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Process(Domain domain)
    {
        if (Gfn >= P2mTree.MaxPfn || Count > P2mTree.MaxPfn - Gfn)
        {
            WriteFailure("GfnOutOfRange", ErrorCategory.InvalidArgument, domain,
                $"Identity range gfn {Hex(Gfn)} + {Count} page(s) goes beyond the p2m tree's reach (gfn {Hex(P2mTree.MaxPfn)}, 512 GiB).");
            return;
        }
        var strategy = _strategy ?? domain.IdentityStrategy;
        ulong end = Gfn + Count;
        if (!ShouldProcess($"Domain '{domain.Name}'", $"Make gfn [{Hex(Gfn)}, {Hex(end)}) identity ({strategy})")) return;
        ulong switched = domain.SetIdentityRange(Gfn, end, strategy);
        var view = new IdentityHoleView(domain.Name, Gfn, end, strategy, switched);
        WriteVerbose(view.ToString());
        if (PassThru) WriteObject(view);
    }
}

[Cmdlet(VerbsCommon.Get, "XenP2m", DefaultParameterSetName = ParameterSets.DomainNameGfn)]
[OutputType(typeof(P2mEntryView), ParameterSetName = new[] { ParameterSets.DomainGfn, ParameterSets.DomainNameGfn })]
[OutputType(typeof(P2mTreeView), ParameterSetName = new[] { ParameterSets.DomainTree, ParameterSets.DomainNameTree })]
public sealed class GetXenP2mCommand : XenCmdlet
{
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ParameterSets.DomainGfn)]
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ParameterSets.DomainTree)]
    [ValidateNotNull]
    public Domain Domain { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainNameGfn)]
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainNameTree)]
    [ArgumentCompleter(typeof(DomainNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string DomainName { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 1, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainGfn)]
    [Parameter(Mandatory = true, Position = 1, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainNameGfn)]
    public ulong[] Gfn { get; set; } = null!;

    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainTree)]
    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainNameTree)]
    public SwitchParameter Tree { get; set; }

    protected override void Process()
    {
        bool byObject = ParameterSetName is ParameterSets.DomainGfn or ParameterSets.DomainTree;
        var d = ResolveDomain(byObject ? Domain : null, DomainName);
        if (d is null) return;
        if (Tree)
        {
            WriteObject(P2mTreeView.Of(d));
            return;
        }
        foreach (ulong gfn in Gfn) WriteObject(P2mEntryView.Of(d, gfn));
    }
}

/// <summary>Shared parameters of Read-/Write-XenGuestMemory: the domain, and physical or virtual addressing.</summary>
public abstract class GuestMemoryCmdlet : XenCmdlet
{
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ParameterSets.DomainPhysical)]
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ParameterSets.DomainVirtual)]
    [ValidateNotNull]
    public Domain Domain { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainNamePhysical)]
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainNameVirtual)]
    [ArgumentCompleter(typeof(DomainNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string DomainName { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 1)]
    [AddressTransformation]
    public ulong Address { get; set; }

    [Parameter(ParameterSetName = ParameterSets.DomainPhysical)]
    [Parameter(ParameterSetName = ParameterSets.DomainNamePhysical)]
    public SwitchParameter Physical { get; set; }

    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainVirtual)]
    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainNameVirtual)]
    public SwitchParameter Virtual { get; set; }

    [Parameter(ParameterSetName = ParameterSets.DomainVirtual)]
    [Parameter(ParameterSetName = ParameterSets.DomainNameVirtual)]
    [ValidateRange(0, DomainConfigLimits.MaxVcpuIndex)]
    public int Vcpu { get; set; }

    [Parameter(ParameterSetName = ParameterSets.DomainVirtual)]
    [Parameter(ParameterSetName = ParameterSets.DomainNameVirtual)]
    public SwitchParameter User { get; set; }

    protected bool IsVirtual => Virtual.IsPresent;

    protected sealed override void Process()
    {
        bool byObject = ParameterSetName is ParameterSets.DomainPhysical or ParameterSets.DomainVirtual;
        var d = ResolveDomain(byObject ? Domain : null, DomainName);
        if (d is null) return;
        if (!IsVirtual)
        {
            Process(d, null);
            return;
        }
        if (!HasVcpu(d, Vcpu)) return;
        Process(d, d.Vcpus[Vcpu]);
    }

    /// <summary>One access: <paramref name="vcpu"/> is null for guest-physical addressing.</summary>
    protected abstract void Process(Domain domain, Vcpu? vcpu);

    protected AccessKind Privilege => User ? AccessKind.User : AccessKind.Read;

    protected string Where(Domain d, int length) =>
        $"{length} byte(s) at {(IsVirtual ? "va" : "gpa")} {Hex(Address)} of domain '{d.Name}'" + (IsVirtual ? $" (vcpu{Vcpu}{(User ? ", user mode" : "")})" : "");

    protected void WriteMissing(Domain d, PhysAccessResult r, int length) =>
        WriteFailure("GfnMissing", ErrorCategory.InvalidOperation, d,
            $"Cannot access {Where(d, length)}: gfn {Hex(r.FirstBadGfn)} has no p2m entry (INVALID_P2M_ENTRY).");

    /// <summary>Reports a failed virtual access; the message is the access result itself.</summary>
    protected void WriteVirtualFailure(Domain d, VirtualAccessResult r)
    {
        switch (r.Status)
        {
            case TranslateStatus.PageFault:
                WriteFailure("GuestPageFault", ErrorCategory.InvalidOperation, d, r.ToString());
                break;
            case TranslateStatus.NonCanonical:
                WriteFailure("NonCanonicalAddress", ErrorCategory.InvalidArgument, d, r.ToString());
                break;
            default:
                WriteFailure("GfnMissing", ErrorCategory.InvalidOperation, d, r.ToString());
                break;
        }
    }
}

/// <summary>Limits the cmdlets validate before reaching the emulator.</summary>
internal static class DomainConfigLimits
{
    public const int MaxVcpuIndex = XenLab.Config.DomainConfig.MaxVcpus - 1;
    public const int MaxAccessBytes = 1 << 20;
}

[Cmdlet(VerbsCommunications.Read, "XenGuestMemory", DefaultParameterSetName = ParameterSets.DomainNamePhysical)]
[OutputType(typeof(GuestMemoryView))]
public sealed class ReadXenGuestMemoryCommand : GuestMemoryCmdlet
{
    [Parameter(Mandatory = true, Position = 2)]
    [ValidateRange(1, DomainConfigLimits.MaxAccessBytes)]
    public int Length { get; set; }

    protected override void Process(Domain domain, Vcpu? vcpu)
    {
        var bytes = new byte[Length];
        string status;
        if (vcpu is null)
        {
            var r = domain.ReadPhysical(Address, bytes);
            if (r.Status == PhysAccessStatus.Missing) { WriteMissing(domain, r, Length); return; }
            if (r.Status == PhysAccessStatus.Mmio) WriteVerbose($"{Where(domain, Length)} touches identity (MMIO) frames: those bytes read as 0xFF.");
            status = r.Status.ToString();
        }
        else
        {
            var r = vcpu.ReadVirtual(Address, bytes, Privilege);
            if (!r.IsOk) { WriteVirtualFailure(domain, r); return; }
            status = r.Status.ToString();
        }
        WriteObject(new GuestMemoryView(domain.Name, Address, vcpu is not null, bytes, status));
    }
}

[Cmdlet(VerbsCommunications.Write, "XenGuestMemory", DefaultParameterSetName = ParameterSets.DomainNamePhysical, SupportsShouldProcess = true)]
[OutputType(typeof(GuestMemoryView))]
public sealed class WriteXenGuestMemoryCommand : GuestMemoryCmdlet
{
    [Parameter(Mandatory = true, Position = 2)]
    [ValidateNotNull]
    [ValidateCount(1, DomainConfigLimits.MaxAccessBytes)]
    public byte[] Value { get; set; } = null!;

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Process(Domain domain, Vcpu? vcpu)
    {
        if (!ShouldProcess($"Domain '{domain.Name}'", $"Write {Where(domain, Value.Length)}")) return;
        string status;
        if (vcpu is null)
        {
            var r = domain.WriteGuestPhysical(Address, Value);
            if (r.Status == PhysAccessStatus.Missing) { WriteMissing(domain, r, Value.Length); return; }
            if (r.Status == PhysAccessStatus.Mmio) WriteWarning($"{Where(domain, Value.Length)} touches identity (MMIO) frames: bytes written there were dropped.");
            status = r.Status.ToString();
        }
        else
        {
            var r = vcpu.WriteVirtual(Address, Value, Privilege);
            if (!r.IsOk) { WriteVirtualFailure(domain, r); return; }
            status = r.Status.ToString();
        }
        if (PassThru) WriteObject(new GuestMemoryView(domain.Name, Address, vcpu is not null, (byte[])Value.Clone(), status));
    }
}

[Cmdlet(VerbsCommon.Get, "XenPerfCounter", DefaultParameterSetName = ParameterSets.DomainName)]
[OutputType(typeof(PerfCounterView))]
public sealed class GetXenPerfCounterCommand : DomainCmdlet
{
    [Parameter(Position = 1)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[] Name { get; set; } = null!;

    [Parameter]
    public SwitchParameter NonZero { get; set; }

    protected override void Process(Domain domain)
    {
        var all = PerfCounterView.Of(domain);
        var patterns = new List<WildcardPattern>();
        foreach (string n in Name ?? Array.Empty<string>())
        {
            var p = new WildcardPattern(n, WildcardOptions.IgnoreCase);
            patterns.Add(p);
            if (!WildcardPattern.ContainsWildcardCharacters(n) && !all.Exists(c => p.IsMatch(c.Name)))
                WriteFailure("CounterNotFound", ErrorCategory.ObjectNotFound, n,
                    $"There is no counter named '{n}'. Counters: {string.Join(", ", all.ConvertAll(c => c.Name))}.");
        }
        foreach (var c in all)
        {
            if (NonZero && c.Value == 0) continue;
            if (patterns.Count > 0 && !patterns.Exists(p => p.IsMatch(c.Name))) continue;
            WriteObject(c);
        }
    }
}
