// What every XenLab cmdlet shares: the session lock, the domain binding of -Domain/-DomainName,
// turning emulator errors into non-terminating ErrorRecords that say what and where, and long
// work's progress (Write-Progress) and stopping (Ctrl+C: StopProcessing cancels the token the
// emulator checks between whole steps, so a stopped cmdlet leaves its domain consistent).
using System;
using System.Management.Automation;
using System.Threading;
using XenLab.Domains;
using XenLab.Progress;

namespace XenLab.PowerShell;

/// <summary>Parameter-set names shared by the cmdlets.</summary>
public static class ParameterSets
{
    public const string Domain = "Domain";
    public const string DomainName = "DomainName";
    public const string Path = "Path";
    public const string Settings = "Settings";
    public const string Name = "Name";
    public const string DomainGfn = "DomainGfn";
    public const string DomainNameGfn = "DomainNameGfn";
    public const string DomainTree = "DomainTree";
    public const string DomainNameTree = "DomainNameTree";
    public const string DomainPhysical = "DomainPhysical";
    public const string DomainNamePhysical = "DomainNamePhysical";
    public const string DomainVirtual = "DomainVirtual";
    public const string DomainNameVirtual = "DomainNameVirtual";
    public const string DomainAddress = "DomainAddress";
    public const string DomainNameAddress = "DomainNameAddress";
    public const string DomainFramebuffer = "DomainFramebuffer";
    public const string DomainNameFramebuffer = "DomainNameFramebuffer";
    public const string DomainCode = "DomainCode";
    public const string DomainNameCode = "DomainNameCode";
    public const string DomainAssembly = "DomainAssembly";
    public const string DomainNameAssembly = "DomainNameAssembly";
    public const string DomainPath = "DomainPath";
    public const string DomainNamePath = "DomainNamePath";
    public const string DomainResume = "DomainResume";
    public const string DomainNameResume = "DomainNameResume";
    public const string DomainWorkload = "DomainWorkload";
    public const string DomainNameWorkload = "DomainNameWorkload";
}

/// <summary>Base of every XenLab cmdlet: one record processed under the session lock.</summary>
public abstract class XenCmdlet : PSCmdlet
{
    protected static XenHost XenHost => XenLabSession.Host;

    /// <summary>What an error without a better target is about (set once a domain is resolved).</summary>
    protected object? ErrorTarget { get; set; }

    private readonly CancellationTokenSource _stop = new();
    private IProgress<LabProgress>? _progress;

    protected sealed override void ProcessRecord()
    {
        lock (XenLabSession.Gate)
        {
            try
            {
                Process();
            }
            catch (XenLabException e)
            {
                WriteXenError(e, ErrorTarget);
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                // The emulator stopped between two whole steps because the pipeline is stopping.
                throw new PipelineStoppedException();
            }
        }
    }

    /// <summary>Ctrl+C (or PowerShell.Stop()): ask the emulator to stop at its next safe point.</summary>
    protected override void StopProcessing() => _stop.Cancel();

    /// <summary>Cancelled once the pipeline is stopping: hand it to long emulator operations.</summary>
    protected CancellationToken StopToken => _stop.Token;

    /// <summary>Turns the emulator's progress reports into Write-Progress records (activity 1 of this cmdlet).</summary>
    protected IProgress<LabProgress> Progress => _progress ??= new SynchronousProgress(WriteLabProgress);

    private void WriteLabProgress(LabProgress p)
    {
        var record = new ProgressRecord(1, p.Activity.Length > 0 ? p.Activity : MyInvocation.MyCommand.Name, p.Status.Length > 0 ? p.Status : "working")
        {
            PercentComplete = p.PercentComplete,
            RecordType = p.Completed ? ProgressRecordType.Completed : ProgressRecordType.Processing,
        };
        WriteProgress(record);
    }

    /// <summary>The cmdlet's work for one pipeline record.</summary>
    protected abstract void Process();

    /// <summary>The domain given by object or by name; null (with the error written) when there is none.</summary>
    protected Domain? ResolveDomain(Domain? domain, string? name)
    {
        if (domain is not null)
        {
            ErrorTarget = domain;
            if (domain.IsDestroyed || !ReferenceEquals(XenHost.Find(domain.Name), domain))
            {
                // The same error the emulator gives for any operation on a removed domain.
                WriteXenError(new DomainRemovedException(domain.Name, domain.Id), domain);
                return null;
            }
            return domain;
        }
        if (DomainBinding.IsRemovedMarker(name ?? "", out int removedId, out string removedName))
        {
            // A removed domain object bound by its DomainName property.
            ErrorTarget = removedName;
            WriteXenError(new DomainRemovedException(removedName, removedId), removedName);
            return null;
        }
        var found = XenHost.Find(name ?? "");
        if (found is null)
        {
            ErrorTarget = name;
            WriteXenError(new DomainNotFoundException(name ?? ""), name);
            return null;
        }
        ErrorTarget = found;
        return found;
    }

    protected void WriteXenError(XenLabException e, object? target) =>
        WriteError(new ErrorRecord(e, e.ErrorId, CategoryOf(e), target));

    /// <summary>A non-terminating error for a condition the emulator reports as a result, not an exception.</summary>
    protected void WriteFailure(string errorId, ErrorCategory category, object? target, string message)
    {
        Exception e = category switch
        {
            ErrorCategory.InvalidArgument => new ArgumentException(message),
            ErrorCategory.ObjectNotFound => new ItemNotFoundException(message),
            _ => new InvalidOperationException(message),
        };
        WriteError(new ErrorRecord(e, errorId, category, target));
    }

    public static ErrorCategory CategoryOf(XenLabException e) => e switch
    {
        ConfigFileException => ErrorCategory.ParserError,
        XenLab.Cpu.GuestAssemblyException => ErrorCategory.ParserError,
        XenLab.Cpu.GuestArchitectureException => ErrorCategory.InvalidOperation,
        InvalidConfigurationException => ErrorCategory.InvalidArgument,
        MachineMemoryExhaustedException => ErrorCategory.LimitsExceeded,
        XenLab.Paging.Arm.VlptWindowFullException => ErrorCategory.LimitsExceeded,
        DomainNotFoundException => ErrorCategory.ObjectNotFound,
        DomainRemovedException => ErrorCategory.ObjectNotFound,
        DomainClockException => ErrorCategory.InvalidArgument,
        XenLab.Dirty.VramException { Errno: XenLab.Dirty.VramErrno.ENODATA } => ErrorCategory.ResourceUnavailable,
        XenLab.Dirty.VramException => ErrorCategory.InvalidArgument,
        _ => ErrorCategory.NotSpecified,
    };

    /// <summary>
    /// Resolves an output -Path against PowerShell's current location (Set-Location), not the
    /// process's working folder; an existing folder gets <paramref name="nameInFolder"/> in it.
    /// False (with ExportPathNotFound written) when the path or its folder does not exist.
    /// </summary>
    protected bool TryResolveOutputFile(string path, string nameInFolder, string what, out string file)
    {
        try
        {
            file = SessionState.Path.GetUnresolvedProviderPathFromPSPath(path);
        }
        catch (Exception e) when (e is ItemNotFoundException or DriveNotFoundException or ProviderNotFoundException or NotSupportedException)
        {
            WriteFailure("ExportPathNotFound", ErrorCategory.ObjectNotFound, path, $"Cannot export to '{path}': {e.Message}");
            file = "";
            return false;
        }
        if (System.IO.Directory.Exists(file)) file = System.IO.Path.Combine(file, nameInFolder);
        string? folder = System.IO.Path.GetDirectoryName(file);
        if (folder is not null && folder.Length > 0 && !System.IO.Directory.Exists(folder))
        {
            WriteFailure("ExportPathNotFound", ErrorCategory.ObjectNotFound, path, $"Cannot export {what} to '{file}': the folder '{folder}' does not exist.");
            return false;
        }
        return true;
    }

    /// <summary>A domain's framebuffer by name; null (with FramebufferNotFound written) when it has none of that name.</summary>
    protected XenLab.Domains.Framebuffer? FindFramebuffer(Domain d, string name)
    {
        var fb = d.FindFramebuffer(name);
        if (fb is null) WriteFramebufferNotFound(d, name);
        return fb;
    }

    /// <summary>
    /// The domain's framebuffers whose names match <paramref name="names"/> (wildcards allowed), in
    /// plug-in order; all of them without names. A plain name that matches none is FramebufferNotFound.
    /// </summary>
    protected System.Collections.Generic.List<XenLab.Domains.Framebuffer> SelectFramebuffers(Domain d, string[]? names)
    {
        var result = new System.Collections.Generic.List<XenLab.Domains.Framebuffer>();
        if (names is null || names.Length == 0)
        {
            result.AddRange(d.Framebuffers);
            return result;
        }
        foreach (string name in names)
        {
            var pattern = new WildcardPattern(name, WildcardOptions.IgnoreCase);
            bool any = false;
            foreach (var fb in d.Framebuffers)
            {
                if (!pattern.IsMatch(fb.Name)) continue;
                any = true;
                if (!result.Contains(fb)) result.Add(fb);
            }
            if (!any && !WildcardPattern.ContainsWildcardCharacters(name)) WriteFramebufferNotFound(d, name);
        }
        return result;
    }

    private void WriteFramebufferNotFound(Domain d, string name)
    {
        string have = d.Framebuffers.Count == 0 ? "it has none (Add-XenFramebuffer plugs one in)"
            : "it has " + string.Join(", ", System.Linq.Enumerable.Select(d.Framebuffers, f => $"'{f.Name}'"));
        WriteFailure("FramebufferNotFound", ErrorCategory.ObjectNotFound, name,
            $"Domain '{d.Name}' has no framebuffer '{name}'; {have}.");
    }

    /// <summary>
    /// Whether guest code can run on vCPU <paramref name="vcpu"/> of <paramref name="d"/>: the vCPU
    /// exists (else VcpuOutOfRange) and the domain is x86 (an ARM domain is GuestCodeIsX86Only).
    /// Checked before anything is loaded, so a refused run leaves guest memory as it was.
    /// </summary>
    protected bool CanRunGuestCode(Domain d, int vcpu)
    {
        if (!HasVcpu(d, vcpu)) return false;
        if (d.PagingMode != XenLab.Config.PagingModeKind.Arm) return true;
        WriteXenError(new XenLab.Cpu.GuestArchitectureException(
            $"Domain '{d.Name}' uses ARM paging: guest code runs on x86-64 vCPUs only; switch it to Hap or Shadow with Set-XenPagingMode, or drive it with the memory cmdlets and Invoke-XenWorkload."), d);
        return false;
    }

    /// <summary>Whether <paramref name="d"/> has vCPU <paramref name="vcpu"/>; VcpuOutOfRange written when not.</summary>
    protected bool HasVcpu(Domain d, int vcpu)
    {
        if (vcpu >= 0 && vcpu < d.VcpuCount) return true;
        WriteFailure("VcpuOutOfRange", ErrorCategory.InvalidArgument, d,
            $"Domain '{d.Name}' has {d.VcpuCount} vCPU(s) (0 to {d.VcpuCount - 1}); there is no vCPU {vcpu}.");
        return false;
    }

    protected static string Hex(ulong value) => "0x" + value.ToString("x", System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>A cmdlet that works on one domain, given as -Domain (by value) or -DomainName (by property name).</summary>
public abstract class DomainCmdlet : XenCmdlet
{
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ParameterSets.Domain)]
    [ValidateNotNull]
    public Domain Domain { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainName)]
    [ArgumentCompleter(typeof(DomainNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string DomainName { get; set; } = null!;

    protected sealed override void Process()
    {
        var d = ResolveDomain(ParameterSetName == ParameterSets.Domain ? Domain : null, DomainName);
        if (d is not null) Process(d);
    }

    protected abstract void Process(Domain domain);
}
