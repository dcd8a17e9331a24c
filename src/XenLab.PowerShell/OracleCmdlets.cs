// Test-XenDirtyTracking: the dirty-tracking oracle (XenLab.Core Lab/DirtyTrackingOracle) for
// users. It runs on a copy of a domain's configuration in a host of its own, so the domain
// named is never touched; one result per mode/strategy variant, progress while it runs, and
// Ctrl+C stops it between two operations.
using System;
using System.Collections.Generic;
using System.Management.Automation;
using XenLab.Config;
using XenLab.Dirty;
using XenLab.Domains;
using XenLab.Lab;

namespace XenLab.PowerShell;

[Cmdlet(VerbsDiagnostic.Test, "XenDirtyTracking", DefaultParameterSetName = DefaultSet)]
[OutputType(typeof(DirtyTrackingOracleResult))]
public sealed class TestXenDirtyTrackingCommand : XenCmdlet
{
    private const string DefaultSet = "Default";
    private volatile bool _stopping;

    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ParameterSets.Domain)]
    [ValidateNotNull]
    public Domain Domain { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainName)]
    [ArgumentCompleter(typeof(DomainNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string DomainName { get; set; } = null!;

    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.Path)]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = null!;

    [Parameter]
    [ValidateRange(0L, 1_000_000_000L)]
    public long Steps { get; set; } = 2000;

    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int Seed { get; set; } = 1;

    [Parameter]
    public PagingModeKind[]? Mode { get; set; }

    [Parameter]
    public VramStrategy[]? Strategy { get; set; }

    [Parameter]
    public SwitchParameter NoModeSwitch { get; set; }

    [Parameter]
    [ValidateRange(1, int.MaxValue)]
    public int AuditInterval { get; set; } = 16;

    protected override void StopProcessing() => _stopping = true;

    protected override void Process()
    {
        DomainConfig? config = ParameterSetName switch
        {
            ParameterSets.Domain or ParameterSets.DomainName => ResolveDomain(ParameterSetName == ParameterSets.Domain ? Domain : null, DomainName)?.Config.Clone(),
            ParameterSets.Path => LoadFile(),
            _ => DirtyTrackingOracle.DefaultConfig(),
        };
        if (config is null) return;
        var variants = Select(userDomain: ParameterSetName != DefaultSet);
        if (variants.Count == 0)
        {
            WriteFailure("NoOracleVariant", ErrorCategory.InvalidArgument, config.Name,
                $"No oracle variant has mode {Join(Mode)} and strategy {Join(Strategy)}; the variants are: {string.Join(", ", AllNames())}.");
            return;
        }
        var options = new DirtyTrackingOracleOptions
        {
            Steps = Steps,
            Seed = Seed,
            ModeSwitches = !NoModeSwitch,
            AuditInterval = AuditInterval,
            ProgressInterval = Math.Max(1, Math.Min(1000, Steps / 100)),
        };
        var progress = new ProgressRecord(1, "Test-XenDirtyTracking", "starting");
        for (int i = 0; i < variants.Count && !_stopping; i++)
        {
            var v = variants[i];
            void Report(long done, long total)
            {
                progress.StatusDescription = $"{v.Name} ({i + 1} of {variants.Count}): step {done} of {total}";
                progress.PercentComplete = (int)Math.Min(100, (i * 100L + (total == 0 ? 100 : done * 100 / total)) / variants.Count);
                WriteProgress(progress);
            }
            Report(0, Steps);
            var result = DirtyTrackingOracle.Run(config, v, options, () => _stopping, Report);
            if (!result.Passed)
                WriteWarning($"{v.Name}, seed {Seed}: {(result.Problems.Count > 0 ? result.Problems[0] : "failed")} (the result's Reproducer lists the steps)");
            WriteObject(result);
        }
        progress.RecordType = ProgressRecordType.Completed;
        WriteProgress(progress);
    }

    private DomainConfig? LoadFile()
    {
        ErrorTarget = Path;
        string file;
        try
        {
            file = SessionState.Path.GetUnresolvedProviderPathFromPSPath(Path);
        }
        catch (Exception e) when (e is ItemNotFoundException or DriveNotFoundException or ProviderNotFoundException or NotSupportedException)
        {
            WriteFailure("ConfigFileNotFound", ErrorCategory.ObjectNotFound, Path, $"Cannot find the domain file '{Path}': {e.Message}");
            return null;
        }
        if (!System.IO.File.Exists(file))
        {
            WriteFailure("ConfigFileNotFound", ErrorCategory.ObjectNotFound, Path, $"Cannot find the domain file '{file}'.");
            return null;
        }
        return DomainConfigLoader.LoadFile(file);
    }

    /// <summary>The variants -Mode and -Strategy select (Auto: the mode's natural strategy); on a user's domain, not those that size their own.</summary>
    private List<OracleVariant> Select(bool userDomain)
    {
        var list = new List<OracleVariant>();
        foreach (var v in DirtyTrackingOracle.Variants)
        {
            if (userDomain && v.DefaultDomainOnly) continue;
            if (Mode is { Length: > 0 } && Array.IndexOf(Mode, v.Mode) < 0) continue;
            if (Strategy is { Length: > 0 })
            {
                var natural = v.Mode == PagingModeKind.Shadow ? VramStrategy.BackLinks : VramStrategy.Tracker;
                bool wanted = Array.IndexOf(Strategy, v.Strategy) >= 0 || (Array.IndexOf(Strategy, VramStrategy.Auto) >= 0 && v.Strategy == natural);
                if (!wanted) continue;
            }
            list.Add(v);
        }
        return list;
    }

    private static string Join<T>(T[]? values) => values is { Length: > 0 } ? string.Join("/", values) : "(any)";

    private static IEnumerable<string> AllNames()
    {
        foreach (var v in DirtyTrackingOracle.Variants) yield return v.Name;
    }
}
