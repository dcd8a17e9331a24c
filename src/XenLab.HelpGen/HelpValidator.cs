// What the help source must satisfy against the built module: every cmdlet and parameter
// described, at least one example each, and examples that use only cmdlets and parameters
// that exist. Returns problems as sentences; empty means the help is complete.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.RegularExpressions;

namespace XenLab.HelpGen;

public static class HelpValidator
{
    /// <summary>Common parameters every cmdlet takes (and the ShouldProcess pair).</summary>
    public static readonly string[] CommonParameters =
    {
        "Verbose", "Debug", "ErrorAction", "WarningAction", "InformationAction", "ProgressAction", "ErrorVariable",
        "WarningVariable", "InformationVariable", "OutVariable", "OutBuffer", "PipelineVariable",
    };
    public static readonly string[] ShouldProcessParameters = { "WhatIf", "Confirm" };
    private static readonly Dictionary<string, string> CommonAliases = new(StringComparer.OrdinalIgnoreCase)
    {
        ["vb"] = "Verbose", ["db"] = "Debug", ["ea"] = "ErrorAction", ["wa"] = "WarningAction", ["ev"] = "ErrorVariable",
        ["wv"] = "WarningVariable", ["ov"] = "OutVariable", ["ob"] = "OutBuffer", ["wi"] = "WhatIf", ["cf"] = "Confirm",
        ["infa"] = "InformationAction", ["iv"] = "InformationVariable", ["pv"] = "PipelineVariable", ["proga"] = "ProgressAction",
    };

    public static List<string> Problems(HelpSource help, IReadOnlyList<CommandModel> commands)
    {
        var problems = new List<string>();
        var byName = commands.ToDictionary(c => c.Name, StringComparer.OrdinalIgnoreCase);
        foreach (var name in help.Commands.Keys)
            if (!byName.ContainsKey(name)) problems.Add($"The help source describes '{name}', which the module does not have.");
        foreach (var c in commands)
        {
            if (!help.Commands.TryGetValue(c.Name, out var h))
            {
                problems.Add($"{c.Name} has no entry in the help source.");
                continue;
            }
            if (string.IsNullOrWhiteSpace(h.Synopsis)) problems.Add($"{c.Name} has no synopsis.");
            if (string.IsNullOrWhiteSpace(h.Description)) problems.Add($"{c.Name} has no description.");
            foreach (var p in c.Parameters)
                if (!h.Parameters.TryGetValue(p.Name, out var text) || string.IsNullOrWhiteSpace(text))
                    problems.Add($"{c.Name} -{p.Name} has no description.");
            foreach (var p in h.Parameters.Keys)
                if (!c.Parameters.Any(x => x.Name == p))
                    problems.Add($"The help for {c.Name} describes -{p}, which the cmdlet does not have.");
            foreach (var o in h.Outputs.Keys)
                if (!c.OutputTypes.Contains(o))
                    problems.Add($"The help for {c.Name} describes output type {o}, which the cmdlet does not declare.");
            if (h.Examples.Count == 0) problems.Add($"{c.Name} has no example.");
            for (int i = 0; i < h.Examples.Count; i++)
            {
                var e = h.Examples[i];
                if (string.IsNullOrWhiteSpace(e.Code)) problems.Add($"{c.Name} example {i + 1} has no code.");
                if (string.IsNullOrWhiteSpace(e.Remarks)) problems.Add($"{c.Name} example {i + 1} has no remarks.");
                if (!Regex.IsMatch(e.Code, $@"(?<![\w-]){Regex.Escape(c.Name)}(?![\w-])", RegexOptions.IgnoreCase))
                    problems.Add($"{c.Name} example {i + 1} does not use {c.Name}.");
                foreach (var p in ExampleProblems(e.Code, byName))
                    problems.Add($"{c.Name} example {i + 1}: {p}");
            }
        }
        return problems;
    }

    /// <summary>Cmdlets named Verb-Xen* that do not exist, and -Parameters of ours (Get-DirtyVram included) that do not exist.</summary>
    public static IEnumerable<string> ExampleProblems(string code, IReadOnlyDictionary<string, CommandModel> commands)
    {
        foreach (string rawLine in code.Split('\n'))
        {
            string line = StripStrings(StripComment(rawLine));
            foreach (string segment in SplitCommands(line))
            {
                // The first Verb-Noun that is one of ours (Get-DirtyVram has no Xen prefix) or looks like one.
                Match? m = null;
                foreach (Match candidate in Regex.Matches(segment, @"(?<![\w$-])([A-Za-z]+-[A-Za-z]\w*)(?![\w-])"))
                {
                    if (!commands.ContainsKey(candidate.Groups[1].Value) && !candidate.Groups[1].Value.Contains("-Xen", StringComparison.OrdinalIgnoreCase)) continue;
                    m = candidate;
                    break;
                }
                if (m is null) continue;
                if (!commands.TryGetValue(m.Groups[1].Value, out var cmd))
                {
                    yield return $"'{m.Groups[1].Value}' is not a cmdlet of the module.";
                    continue;
                }
                string args = segment[(m.Index + m.Length)..];
                foreach (Match pm in Regex.Matches(args, @"(?<=^|\s)-([A-Za-z]\w*)(?=[\s:]|$)"))
                {
                    string given = pm.Groups[1].Value;
                    if (!Resolves(cmd, given)) yield return $"{cmd.Name} has no parameter -{given}.";
                }
            }
        }
    }

    private static bool Resolves(CommandModel cmd, string given)
    {
        if (CommonAliases.ContainsKey(given)) return true;
        var names = cmd.Parameters.Select(p => p.Name).Concat(cmd.Parameters.SelectMany(p => p.Aliases)).Concat(CommonParameters);
        if (cmd.SupportsShouldProcess) names = names.Concat(ShouldProcessParameters);
        var list = names.ToList();
        if (list.Any(n => n.Equals(given, StringComparison.OrdinalIgnoreCase))) return true;
        // An unambiguous prefix binds too; an ambiguous one is an error in PowerShell.
        return list.Count(n => n.StartsWith(given, StringComparison.OrdinalIgnoreCase)) == 1;
    }

    private static string StripComment(string line)
    {
        int i = line.IndexOf('#');
        return i < 0 ? line : line[..i];
    }

    private static string StripStrings(string line) => Regex.Replace(line, @"'[^']*'|""[^""]*""", "''");

    /// <summary>Splits at pipes, semicolons and the braces/parentheses that open a nested command.</summary>
    private static IEnumerable<string> SplitCommands(string line) => Regex.Split(line, @"[|;{}()]");
}
