// Errors a lab can meet. Each says what was wrong and where; none is used for control flow
// on a hot path (faults are results, not exceptions).
using System;

namespace XenLab;

/// <summary>Base of every error the emulator reports for bad input or an impossible request.</summary>
public class XenLabException : Exception
{
    public XenLabException(string message) : base(message) { }
    public XenLabException(string message, Exception inner) : base(message, inner) { }

    /// <summary>A stable identifier a script can match (PowerShell's ErrorId).</summary>
    public virtual string ErrorId => "XenLab";

    /// <summary>
    /// The configuration key the error is about, as a path ("memory", "framebuffers[1]",
    /// "identity[0]"), when a check knows it; a domain built from a file turns it into a position.
    /// </summary>
    public string? ConfigKey { get; set; }

    /// <summary>Where in a lab file the error points, when it came from one.</summary>
    public ConfigLocation? Location { get; private set; }

    public override string Message => Location is { } at ? $"{at}: {base.Message}" : base.Message;

    /// <summary>Points the error at a place in a file (once: the first, most precise position wins).</summary>
    public void Locate(ConfigLocation location) => Location ??= location;
}

/// <summary>A position in a lab file: file name, 1-based line and column.</summary>
public sealed record ConfigLocation(string File, long Line, long Column)
{
    public override string ToString() => $"{File}({Line},{Column})";
}

/// <summary>Host machine memory cannot satisfy a request; nothing was allocated.</summary>
public sealed class MachineMemoryExhaustedException : XenLabException
{
    public MachineMemoryExhaustedException(ulong requested, ulong free)
        : base($"Host machine memory exhausted: {requested} frame(s) requested, {free} free ({free * 4} KiB). Nothing was allocated.")
    {
        Requested = requested;
        Free = free;
    }
    public ulong Requested { get; }
    public ulong Free { get; }
    public override string ErrorId => "MachineMemoryExhausted";
}

/// <summary>A parameter or configuration value is out of range or inconsistent.</summary>
public sealed class InvalidConfigurationException : XenLabException
{
    public InvalidConfigurationException(string message) : base(message) { }
    public override string ErrorId => "InvalidConfiguration";
}

/// <summary>A YAML document is malformed; names file, line and column (1-based).</summary>
public sealed class ConfigFileException : XenLabException
{
    public ConfigFileException(string file, long line, long column, string message)
        : base(message)
    {
        Locate(new ConfigLocation(file, line, column));
        Reason = message;
    }
    /// <summary>The message without the position.</summary>
    public string Reason { get; }
    public string File => Location!.File;
    public long Line => Location!.Line;
    public long Column => Location!.Column;
    public override string ErrorId => "ConfigFile";
}

/// <summary>A named domain does not exist, or a name is already taken.</summary>
public sealed class DomainNotFoundException : XenLabException
{
    public DomainNotFoundException(string name) : base($"No domain named '{name}'.") { Name = name; }
    public string Name { get; }
    public override string ErrorId => "DomainNotFound";
}

/// <summary>An operation reached a domain that was removed (XenHost.DestroyDomain); its frames belong to the host again.</summary>
public sealed class DomainRemovedException : XenLabException
{
    public DomainRemovedException(string name, int id)
        : base($"Domain '{name}' (domid {id}) has been removed; its memory went back to the host. Get a current domain with Get-XenDomain or XenHost.Find.")
    {
        Name = name;
        Id = id;
    }
    public string Name { get; }
    public int Id { get; }
    public override string ErrorId => "DomainRemoved";
}

/// <summary>A built-in workload's guest access failed (a fault the workload did not expect).</summary>
public sealed class WorkloadFaultException : XenLabException
{
    public WorkloadFaultException(string message) : base(message) { }
    public override string ErrorId => "WorkloadFault";
}

/// <summary>A step of a domain's clock (Domain.AdvanceClock) that is negative or would overflow it; the clock is unchanged.</summary>
public sealed class DomainClockException : XenLabException
{
    public DomainClockException(string domainName, string reason) : base($"Domain '{domainName}': {reason}") => DomainName = domainName;
    public string DomainName { get; }
    public override string ErrorId => "DomainClockOutOfRange";
}
