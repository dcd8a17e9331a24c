// What a piped Domain object offers -DomainName (types.ps1xml binds it by property name). While
// the domain lives that is its name; once removed it is a marker no domain name can match (names
// are [A-Za-z0-9_.-]), which ResolveDomain reports as DomainRemoved. So a stale object neither
// fails as "not found" nor reaches a newer domain that took the same name.
using System;
using System.Globalization;
using XenLab.Domains;

namespace XenLab.PowerShell;

public static class DomainBinding
{
    private const string RemovedMarker = "<removed domid ";

    /// <summary>The DomainName property of XenLab.Domains.Domain (a script property calling this).</summary>
    public static string DomainName(Domain d) => d.IsDestroyed ? $"{RemovedMarker}{d.Id.ToString(CultureInfo.InvariantCulture)}> {d.Name}" : d.Name;

    /// <summary>Whether <paramref name="name"/> is a removed domain's marker; gives back its domid and name.</summary>
    internal static bool IsRemovedMarker(string name, out int id, out string domainName)
    {
        id = 0;
        domainName = "";
        if (!name.StartsWith(RemovedMarker, StringComparison.Ordinal)) return false;
        int close = name.IndexOf("> ", RemovedMarker.Length, StringComparison.Ordinal);
        if (close < 0 || !int.TryParse(name.AsSpan(RemovedMarker.Length, close - RemovedMarker.Length), NumberStyles.None, CultureInfo.InvariantCulture, out id))
            return false;
        domainName = name[(close + 2)..];
        return true;
    }
}
