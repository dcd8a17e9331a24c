// Dirty tracking (SPEC 2): whole-domain log-dirty (what a live migration reads) and
// track_dirty_vram for several framebuffers (what a VNC server repaints), with the VRAM
// strategy, the teaching switch and nr == 0. Each body is one call into XenLab.Core.
using System;
using System.Collections.Generic;
using System.Management.Automation;
using XenLab.Dirty;
using XenLab.Domains;
using XenLab.Views;

namespace XenLab.PowerShell;

[Cmdlet(VerbsLifecycle.Enable, "XenLogDirty", DefaultParameterSetName = ParameterSets.DomainName, SupportsShouldProcess = true)]
[OutputType(typeof(Domain))]
public sealed class EnableXenLogDirtyCommand : DomainCmdlet
{
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Process(Domain domain)
    {
        if (domain.LogDirty.Enabled)
        {
            WriteVerbose($"Domain '{domain.Name}': log-dirty is already enabled; nothing changes.");
        }
        else
        {
            string vram = domain.Vram.Ranges.Count > 0 ? $"; its {domain.Vram.Ranges.Count} VRAM range(s) answer VramENODATA until it is disabled" : "";
            if (!ShouldProcess($"Domain '{domain.Name}'", $"Enable whole-domain log-dirty: arm every RAM page ({domain.PagingMode}){vram}")) return;
            domain.LogDirty.Enable();
        }
        if (PassThru) WriteObject(domain);
    }
}

[Cmdlet(VerbsLifecycle.Disable, "XenLogDirty", DefaultParameterSetName = ParameterSets.DomainName, SupportsShouldProcess = true)]
[OutputType(typeof(Domain))]
public sealed class DisableXenLogDirtyCommand : DomainCmdlet
{
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Process(Domain domain)
    {
        if (!domain.LogDirty.Enabled)
        {
            WriteVerbose($"Domain '{domain.Name}': log-dirty is not enabled; nothing changes.");
        }
        else
        {
            if (!ShouldProcess($"Domain '{domain.Name}'", "Disable whole-domain log-dirty: disarm every RAM page and drop the unread log")) return;
            int trackerRanges = 0;
            foreach (var r in domain.Vram.Ranges) if (r.Strategy == VramStrategy.Tracker) trackerRanges++;
            domain.LogDirty.Disable();
            if (trackerRanges > 0)
                WriteWarning($"Domain '{domain.Name}': {trackerRanges} VRAM range(s) used the dirty tracker that log-dirty just disarmed; " +
                             "Get-DirtyVram answers VramEINVAL (inconsistent state) until Set-XenVramTracking -Stop resets VRAM tracking.");
        }
        if (PassThru) WriteObject(domain);
    }
}

[Cmdlet(VerbsCommon.Get, "XenDirtyLog", DefaultParameterSetName = ParameterSets.DomainName)]
[OutputType(typeof(DirtyLogView), typeof(ulong))]
public sealed class GetXenDirtyLogCommand : DomainCmdlet
{
    [Parameter]
    public SwitchParameter Peek { get; set; }

    [Parameter]
    public SwitchParameter AsGfn { get; set; }

    protected override void Process(Domain domain)
    {
        if (!domain.LogDirty.Enabled)
        {
            WriteFailure("LogDirtyNotEnabled", ErrorCategory.InvalidOperation, domain,
                $"Log-dirty is not enabled for domain '{domain.Name}'; Enable-XenLogDirty starts it.");
            return;
        }
        var log = domain.LogDirty.Read(clean: !Peek);
        WriteVerbose(log.ToString());
        if (!AsGfn)
        {
            WriteObject(log);
            return;
        }
        foreach (ulong gfn in log.DirtyGfns()) WriteObject(gfn);
    }
}

[Cmdlet(VerbsCommon.Get, "DirtyVram", DefaultParameterSetName = ParameterSets.DomainNameFramebuffer)]
[OutputType(typeof(DirtyVramView), typeof(DirtyPageView), typeof(DirtyRectView))]
public sealed class GetDirtyVramCommand : XenCmdlet
{
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ParameterSets.DomainFramebuffer)]
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ParameterSets.DomainGfn)]
    [ValidateNotNull]
    public Domain Domain { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainNameFramebuffer)]
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainNameGfn)]
    [ArgumentCompleter(typeof(DomainNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string DomainName { get; set; } = null!;

    [Parameter(Position = 1, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainFramebuffer)]
    [Parameter(Position = 1, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainNameFramebuffer)]
    [ArgumentCompleter(typeof(FramebufferNameCompleter))]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[] Framebuffer { get; set; } = null!;

    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainGfn)]
    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainNameGfn)]
    [AddressTransformation]
    public ulong Gfn { get; set; }

    // Zero is refused here: nr == 0 stops all VRAM tracking, which a Get- must not do (Set-XenVramTracking -Stop).
    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainGfn)]
    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainNameGfn)]
    [ValidateRange(1UL, ulong.MaxValue)]
    public ulong Count { get; set; }

    [Parameter]
    public SwitchParameter Peek { get; set; }

    [Parameter]
    public SwitchParameter AsPage { get; set; }

    [Parameter]
    public SwitchParameter AsRectangle { get; set; }

    protected override void BeginProcessing()
    {
        if (AsPage && AsRectangle)
            ThrowTerminatingError(new ErrorRecord(new ArgumentException("-AsPage and -AsRectangle cannot be used together: choose one object per dirty page or one per merged rectangle."),
                "AsPageAndAsRectangle", ErrorCategory.InvalidArgument, null));
    }

    protected override void Process()
    {
        bool byObject = ParameterSetName is ParameterSets.DomainFramebuffer or ParameterSets.DomainGfn;
        var d = ResolveDomain(byObject ? Domain : null, DomainName);
        if (d is null) return;
        if (ParameterSetName is ParameterSets.DomainFramebuffer or ParameterSets.DomainNameFramebuffer)
        {
            var selected = SelectFramebuffers(d, Framebuffer);
            if (selected.Count == 0 && (Framebuffer is null || Framebuffer.Length == 0))
                WriteVerbose($"Domain '{d.Name}' has no framebuffer; nothing to query (Add-XenFramebuffer plugs one in).");
            foreach (var fb in selected)
                Query(d, $"framebuffer '{fb.Name}' (gfn {Hex(fb.FirstGfn)} + {fb.Pages} page(s))", () => DirtyViews.Query(d, fb.Name, Peek));
            return;
        }
        if (AsRectangle && !MatchesFramebuffer(d))
        {
            // Checked before the query, which would otherwise clear what it then could not show.
            WriteFailure("NoFramebufferGeometry", ErrorCategory.InvalidArgument, d,
                $"gfn {Hex(Gfn)} + {Count} page(s) of domain '{d.Name}' is not exactly one framebuffer's range, so it has no geometry for -AsRectangle; use -AsPage, or -Framebuffer.");
            return;
        }
        Query(d, $"gfn {Hex(Gfn)} + {Count} page(s)", () => DirtyViews.Query(d, Gfn, Count, Peek));
    }

    private bool MatchesFramebuffer(Domain d)
    {
        foreach (var fb in d.Framebuffers) if (fb.FirstGfn == Gfn && fb.Pages == Count) return true;
        return false;
    }

    /// <summary>One track_dirty_vram call; its error is written with the domain and range it was for, and the next range still runs.</summary>
    private void Query(Domain d, string what, Func<DirtyVramView> query)
    {
        DirtyVramView view;
        try
        {
            view = query();
        }
        catch (VramException e)
        {
            var record = new ErrorRecord(e, e.ErrorId, CategoryOf(e), d)
            {
                ErrorDetails = new ErrorDetails($"Domain '{d.Name}', {what}: {e.Message} (errno {(int)e.Errno})"),
            };
            WriteError(record);
            return;
        }
        catch (XenLabException e)
        {
            WriteXenError(e, d);
            return;
        }
        if (view.AllDirty) WriteVerbose($"Domain '{d.Name}', {what}: all {view.Pages} page(s) reported dirty: {view.Reason}.");
        if (AsPage) WriteObject(view.PagesDirty(), enumerateCollection: true);
        else if (AsRectangle) WriteObject(view.Rectangles(), enumerateCollection: true);
        else WriteObject(view);
    }
}

[Cmdlet(VerbsCommon.Set, "XenVramTracking", DefaultParameterSetName = ParameterSets.DomainName, SupportsShouldProcess = true)]
[OutputType(typeof(Domain))]
public sealed class SetXenVramTrackingCommand : DomainCmdlet
{
    private VramStrategy? _strategy;
    private bool? _skipTlbFlush;

    [Parameter]
    public VramStrategy Strategy { get => _strategy.GetValueOrDefault(); set => _strategy = value; }

    [Parameter]
    public bool SkipTlbFlush { get => _skipTlbFlush.GetValueOrDefault(); set => _skipTlbFlush = value; }

    [Parameter]
    public SwitchParameter Stop { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Process(Domain domain)
    {
        if (_strategy is VramStrategy.BackLinks or VramStrategy.DirtyBit or VramStrategy.Mainline && domain.Mode?.CreateVramStrategy(_strategy.Value) is null)
        {
            WriteFailure("VramStrategyUnavailable", ErrorCategory.InvalidArgument, domain,
                $"VRAM strategy {_strategy} works on shadow page tables; domain '{domain.Name}' runs {domain.PagingMode} paging (Auto, Tracker and Memcmp work in every mode).");
            return;
        }
        var changes = new List<string>();
        if (Stop) changes.Add($"stop all VRAM tracking, track_dirty_vram(0, 0) ({domain.Vram.Ranges.Count} range(s); each starts again all dirty)");
        if (_strategy is { } s) changes.Add($"strategy for new ranges {domain.Vram.Strategy} -> {s}");
        if (_skipTlbFlush is { } skip)
            changes.Add(skip ? "skip the TLB flush after clearing dirty state (teaching switch: writes through stale TLB entries are lost)"
                             : "flush TLBs after clearing dirty state");
        if (changes.Count > 0 && ShouldProcess($"Domain '{domain.Name}'", string.Join("; ", changes)))
        {
            if (Stop) domain.Vram.Track(0, 0);
            if (_strategy is { } st) domain.Vram.Strategy = st;
            if (_skipTlbFlush is { } sk) domain.Vram.SkipTlbFlush = sk;
            WriteVerbose($"Domain '{domain.Name}': VRAM strategy {domain.Vram.Strategy}, TLB flush {(domain.Vram.SkipTlbFlush ? "skipped" : "on")}, {domain.Vram.Ranges.Count} range(s) tracked.");
        }
        else if (changes.Count == 0)
        {
            WriteVerbose($"Domain '{domain.Name}': nothing to set (give -Strategy, -SkipTlbFlush or -Stop).");
        }
        if (PassThru) WriteObject(domain);
    }
}
