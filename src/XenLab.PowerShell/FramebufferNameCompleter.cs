// Tab completion of framebuffer (monitor) names for -Framebuffer, and for Get-XenFramebuffer's
// -Name: the framebuffers of the domain already given (-DomainName or -Domain), else of every domain.
using System.Collections;
using System.Collections.Generic;
using System.Management.Automation;
using System.Management.Automation.Language;
using XenLab.Domains;

namespace XenLab.PowerShell;

public sealed class FramebufferNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(
        string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        string word = (wordToComplete ?? "").Trim('\'', '"');
        var pattern = new WildcardPattern(word + "*", WildcardOptions.IgnoreCase);
        var results = new List<CompletionResult>();
        var seen = new HashSet<string>(System.StringComparer.OrdinalIgnoreCase);
        lock (XenLabSession.Gate)
        {
            foreach (var d in DomainsOf(fakeBoundParameters))
            {
                foreach (var fb in d.Framebuffers)
                {
                    if (!pattern.IsMatch(fb.Name) || !seen.Add(fb.Name)) continue;
                    var c = fb.Config;
                    string tip = $"{fb.Name} of {d.Name}: {c.Width}x{c.Height}x{c.Bpp} at 0x{c.Address:x} ({fb.Pages} pages)";
                    results.Add(new CompletionResult(fb.Name, fb.Name, CompletionResultType.ParameterValue, tip));
                }
            }
        }
        return results;
    }

    private static IEnumerable<Domain> DomainsOf(IDictionary? bound)
    {
        object? given = bound is null ? null : bound.Contains("Domain") ? bound["Domain"] : bound.Contains("DomainName") ? bound["DomainName"] : null;
        if (given is PSObject p) given = p.BaseObject;
        if (given is Domain d) return new[] { d };
        if (given is string name && XenLabSession.Host.Find(name) is { } named) return new[] { named };
        return XenLabSession.Host.Domains;
    }
}
