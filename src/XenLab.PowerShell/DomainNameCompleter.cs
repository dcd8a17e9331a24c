// Tab completion of domain names for every -Name/-DomainName parameter.
using System.Collections;
using System.Collections.Generic;
using System.Management.Automation;
using System.Management.Automation.Language;

namespace XenLab.PowerShell;

public sealed class DomainNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(
        string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        string word = (wordToComplete ?? "").Trim('\'', '"');
        var pattern = new WildcardPattern(word + "*", WildcardOptions.IgnoreCase);
        var results = new List<CompletionResult>();
        lock (XenLabSession.Gate)
        {
            foreach (var d in XenLabSession.Host.Domains)
            {
                if (!pattern.IsMatch(d.Name)) continue;
                string tip = $"{d.Name}: domid {d.Id}, {d.MemoryMiB} of {d.MaxMemMiB} MiB, {d.VcpuCount} vCPU(s), {d.PagingMode}";
                results.Add(new CompletionResult(d.Name, d.Name, CompletionResultType.ParameterValue, tip));
            }
        }
        return results;
    }
}
