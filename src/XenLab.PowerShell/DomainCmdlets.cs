// Domains: create, list, balloon, remove. Each body is one call into XenLab.Core.
using System.Collections.Generic;
using System.Management.Automation;
using XenLab.Config;
using XenLab.Domains;

namespace XenLab.PowerShell;

[Cmdlet(VerbsCommon.New, "XenDomain", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true)]
[OutputType(typeof(Domain))]
public sealed class NewXenDomainCommand : XenCmdlet
{
    private ulong? _maxMemoryMB;
    private int? _vcpus;
    private PagingModeKind? _paging;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.Path)]
    [Alias("FullName")]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 0, ParameterSetName = ParameterSets.Settings)]
    [ValidateNotNullOrEmpty]
    public string Name { get; set; } = null!;

    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.Settings)]
    [ValidateRange(4UL, 524288UL)]
    public ulong MemoryMB { get; set; }

    [Parameter(ParameterSetName = ParameterSets.Settings)]
    [ValidateRange(4UL, 524288UL)]
    public ulong MaxMemoryMB { get => _maxMemoryMB.GetValueOrDefault(); set => _maxMemoryMB = value; }

    [Parameter(ParameterSetName = ParameterSets.Settings)]
    [ValidateRange(1, DomainConfig.MaxVcpus)]
    public int Vcpus { get => _vcpus.GetValueOrDefault(1); set => _vcpus = value; }

    [Parameter(ParameterSetName = ParameterSets.Settings)]
    public PagingModeKind Paging { get => _paging.GetValueOrDefault(); set => _paging = value; }

    protected override void Process()
    {
        DomainConfig config;
        if (ParameterSetName == ParameterSets.Path)
        {
            ErrorTarget = Path;
            string file;
            try
            {
                file = SessionState.Path.GetUnresolvedProviderPathFromPSPath(Path);
            }
            catch (System.Exception e) when (e is ItemNotFoundException or DriveNotFoundException or ProviderNotFoundException or System.NotSupportedException)
            {
                WriteFailure("ConfigFileNotFound", ErrorCategory.ObjectNotFound, Path, $"Cannot find the domain file '{Path}': {e.Message}");
                return;
            }
            if (!System.IO.File.Exists(file))
            {
                WriteFailure("ConfigFileNotFound", ErrorCategory.ObjectNotFound, Path, $"Cannot find the domain file '{file}'.");
                return;
            }
            config = DomainConfigLoader.LoadFile(file);
        }
        else
        {
            ErrorTarget = Name;
            config = new DomainConfig { Name = Name, MemoryMiB = MemoryMB, MaxMemMiB = _maxMemoryMB };
            if (_vcpus is { } v) config.Vcpus = v;
            if (_paging is { } p) config.Paging = p;
        }
        string what = $"Create domain: {config.MemoryMiB} MiB, maxmem {config.EffectiveMaxMemMiB} MiB, {config.Vcpus} vCPU(s), {config.Paging} paging";
        if (!ShouldProcess($"Domain '{config.Name}'", what)) return;
        WriteObject(XenHost.CreateDomain(config, Progress, StopToken));   // a stopped build leaves no domain
    }
}

[Cmdlet(VerbsCommon.Get, "XenDomain")]
[OutputType(typeof(Domain))]
public sealed class GetXenDomainCommand : XenCmdlet
{
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(DomainNameCompleter))]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[] Name { get; set; } = null!;

    protected override void Process()
    {
        foreach (var d in DomainSelector.Select(this, Name)) WriteObject(d);
    }
}

[Cmdlet(VerbsCommon.Remove, "XenDomain", DefaultParameterSetName = ParameterSets.Name, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
public sealed class RemoveXenDomainCommand : XenCmdlet
{
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ParameterSets.Domain)]
    [ValidateNotNull]
    public Domain Domain { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.Name)]
    [Alias("DomainName")]
    [ArgumentCompleter(typeof(DomainNameCompleter))]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[] Name { get; set; } = null!;

    protected override void Process()
    {
        IEnumerable<Domain> targets;
        if (ParameterSetName == ParameterSets.Domain)
        {
            var d = ResolveDomain(Domain, null);
            if (d is null) return;
            targets = new[] { d };
        }
        else
        {
            targets = DomainSelector.Select(this, Name);
        }
        foreach (var d in targets)
        {
            ErrorTarget = d;
            if (ShouldProcess($"Domain '{d.Name}' (domid {d.Id})", $"Destroy the domain and free its {d.PopulatedPages} page(s)"))
                XenHost.DestroyDomain(d);
        }
    }
}

[Cmdlet(VerbsCommon.Set, "XenDomain", DefaultParameterSetName = ParameterSets.DomainName, SupportsShouldProcess = true)]
[OutputType(typeof(Domain))]
public sealed class SetXenDomainCommand : DomainCmdlet
{
    [Parameter(Mandatory = true)]
    [ValidateRange(1UL, 524288UL)]
    public ulong MemoryMB { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Process(Domain domain)
    {
        if (!ShouldProcess($"Domain '{domain.Name}'", $"Balloon from {domain.MemoryMiB} MiB to {MemoryMB} MiB")) return;
        // As at build: up to the maxmem asked for, a target the E820's RAM cannot hold (it lacks
        // the 384 KiB below 1 MiB that is not RAM) means all of that RAM. Beyond maxmem Core refuses.
        ulong pages = MemoryMB << 8;
        if (MemoryMB <= domain.Config.EffectiveMaxMemMiB) pages = System.Math.Min(pages, domain.MaxPages);
        var result = domain.Balloon(pages);
        if (result.Outcome == BalloonOutcome.RefusedMappingValid)
        {
            WriteFailure("BalloonRefused", ErrorCategory.InvalidOperation, domain, result.Describe());
            return;
        }
        WriteVerbose($"Domain '{domain.Name}': {result.Describe()}; now {domain.MemoryMiB} MiB.");
        if (PassThru) WriteObject(domain);
    }
}

/// <summary>Selects domains by name patterns; a plain name that matches nothing is an error.</summary>
internal static class DomainSelector
{
    public static List<Domain> Select(XenCmdlet cmdlet, string[]? names)
    {
        var result = new List<Domain>();
        var domains = XenLabSession.Host.Domains;
        if (names is null || names.Length == 0)
        {
            result.AddRange(domains);
            return result;
        }
        foreach (string name in names)
        {
            var pattern = new WildcardPattern(name, WildcardOptions.IgnoreCase);
            bool any = false;
            foreach (var d in domains)
            {
                if (!pattern.IsMatch(d.Name)) continue;
                any = true;
                if (!result.Contains(d)) result.Add(d);
            }
            if (!any && !WildcardPattern.ContainsWildcardCharacters(name))
            {
                var e = new DomainNotFoundException(name);
                cmdlet.WriteError(new ErrorRecord(e, e.ErrorId, ErrorCategory.ObjectNotFound, name));
            }
        }
        return result;
    }
}

[Cmdlet(VerbsData.Export, "XenDomain", DefaultParameterSetName = ParameterSets.DomainName, SupportsShouldProcess = true)]
[OutputType(typeof(System.IO.FileInfo))]
public sealed class ExportXenDomainCommand : DomainCmdlet
{
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = null!;

    protected override void Process(Domain domain)
    {
        if (!TryResolveOutputFile(Path, domain.Name + ".yaml", $"domain '{domain.Name}'", out string file)) return;
        if (!ShouldProcess(file, $"Write the configuration of domain '{domain.Name}' as YAML")) return;
        try
        {
            System.IO.File.WriteAllText(file, DomainConfigWriter.ToYaml(domain.Config));
        }
        catch (System.Exception e) when (e is System.IO.IOException or System.UnauthorizedAccessException)
        {
            WriteFailure("ExportFailed", ErrorCategory.WriteError, file, $"Cannot write '{file}': {e.Message}");
            return;
        }
        WriteObject(new System.IO.FileInfo(file));
    }
}
