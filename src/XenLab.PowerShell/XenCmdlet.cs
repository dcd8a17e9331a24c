// What every XenLab cmdlet shares: the session lock, the domain binding of -Domain/-DomainName,
// and turning emulator errors into non-terminating ErrorRecords that say what and where.
using System;
using System.Management.Automation;
using XenLab.Domains;

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
}

/// <summary>Base of every XenLab cmdlet: one record processed under the session lock.</summary>
public abstract class XenCmdlet : PSCmdlet
{
    protected static XenHost XenHost => XenLabSession.Host;

    /// <summary>What an error without a better target is about (set once a domain is resolved).</summary>
    protected object? ErrorTarget { get; set; }

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
        }
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
                WriteFailure("DomainDestroyed", ErrorCategory.ObjectNotFound, domain,
                    $"Domain '{domain.Name}' (domid {domain.Id}) has been removed; get a current one with Get-XenDomain.");
                return null;
            }
            return domain;
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
        InvalidConfigurationException => ErrorCategory.InvalidArgument,
        MachineMemoryExhaustedException => ErrorCategory.LimitsExceeded,
        DomainNotFoundException => ErrorCategory.ObjectNotFound,
        _ => ErrorCategory.NotSpecified,
    };

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
