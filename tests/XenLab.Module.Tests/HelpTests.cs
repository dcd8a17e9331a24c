// The MAML help: generated from src/XenLab.PowerShell/Help/XenLab.help.yaml and the built
// module, committed, complete, and with examples that use only what exists.
using System;
using System.IO;
using System.Linq;
using System.Xml.Linq;
using XenLab.HelpGen;
using Xunit;

namespace XenLab.Module.Tests;

public class HelpTests
{
    private static readonly XNamespace Command = "http://schemas.microsoft.com/maml/dev/command/2004/10";
    private static readonly XNamespace Maml = "http://schemas.microsoft.com/maml/2004/10";
    private static readonly XNamespace Dev = "http://schemas.microsoft.com/maml/dev/2004/10";

    [Fact]
    public void TheCommittedMamlIsWhatTheHelpSourceGenerates()
    {
        var (maml, _) = HelpPaths.Build(BuiltModule.Paths);
        string committed = File.Exists(BuiltModule.Paths.Maml) ? File.ReadAllText(BuiltModule.Paths.Maml).Replace("\r\n", "\n") : "";
        Assert.True(committed == maml,
            $"{BuiltModule.Paths.Maml} is out of date with {BuiltModule.Paths.HelpSource} or the cmdlets' parameters. " +
            $"Regenerate it from the repository root with: {HelpPaths.RegenerateCommand}");
    }

    [Fact]
    public void EveryCmdletAndParameterHasHelpAndEveryCmdletAnExample()
    {
        var (_, problems) = HelpPaths.Build(BuiltModule.Paths);
        Assert.True(problems.Count == 0,
            $"The help source {BuiltModule.Paths.HelpSource} is incomplete:\n  " + string.Join("\n  ", problems));
    }

    [Fact]
    public void TheMamlHasOneCompleteEntryPerCmdlet()
    {
        var doc = XDocument.Load(BuiltModule.Paths.Maml);
        var entries = doc.Root!.Elements(Command + "command").ToList();
        Assert.Equal(BuiltModule.Commands.Select(c => c.Name), entries.Select(e => e.Element(Command + "details")!.Element(Command + "name")!.Value));
        foreach (var e in entries)
        {
            string name = e.Element(Command + "details")!.Element(Command + "name")!.Value;
            var cmd = BuiltModule.Commands.Single(c => c.Name == name);
            Assert.False(string.IsNullOrWhiteSpace(e.Element(Command + "details")!.Element(Maml + "description")?.Value), $"{name}: no synopsis");
            Assert.False(string.IsNullOrWhiteSpace(e.Element(Maml + "description")?.Value), $"{name}: no description");
            Assert.Equal(cmd.ParameterSets.Count, e.Element(Command + "syntax")!.Elements(Command + "syntaxItem").Count());
            var documented = e.Element(Command + "parameters")!.Elements(Command + "parameter")
                .ToDictionary(p => p.Element(Maml + "name")!.Value, p => p.Element(Maml + "description")!.Value);
            foreach (var p in cmd.Parameters)
                Assert.False(!documented.TryGetValue(p.Name, out var text) || string.IsNullOrWhiteSpace(text), $"{name} -{p.Name}: no help");
            Assert.Contains(e.Element(Command + "examples")!.Elements(Command + "example"), x => x.Element(Dev + "code")!.Value.Contains(name));
        }
    }

    [Fact]
    public void TheValidatorRejectsMissingHelpAndExamplesThatUseUnknownNames()
    {
        // The checks above are only as good as the validator: feed it a broken source.
        var help = HelpSource.Load(BuiltModule.Paths.HelpSource);
        var get = help.Commands["Get-XenE820"];
        get.Parameters.Remove("DomainName");
        get.Examples.Add(new ExampleHelp { Code = "Get-XenE820 -DomianName lab | Get-XenNothing", Remarks = "typo" });
        help.Commands.Remove("Get-XenP2m");
        var problems = HelpValidator.Problems(help, BuiltModule.Commands);
        Assert.Contains("Get-XenE820 -DomainName has no description.", problems);
        Assert.Contains(problems, p => p.Contains("Get-XenE820 has no parameter -DomianName"));
        Assert.Contains(problems, p => p.Contains("'Get-XenNothing' is not a cmdlet of the module"));
        Assert.Contains("Get-XenP2m has no entry in the help source.", problems);
    }

    [Fact]
    public void ExampleCheckAcceptsPrefixesCommonParametersAndOtherCommands()
    {
        var byName = BuiltModule.Commands.ToDictionary(c => c.Name, StringComparer.OrdinalIgnoreCase);
        const string code = "Get-XenDomain lab | Set-XenDomain -Mem 512 -WhatIf -ErrorAction Stop | Where-Object Name -eq 'x -Bogus'";
        Assert.Empty(HelpValidator.ExampleProblems(code, byName));
        Assert.NotEmpty(HelpValidator.ExampleProblems("Get-XenDomain -Bogus", byName));
    }

    [Fact]
    public void ExampleCheckCoversGetDirtyVramThoughItHasNoXenPrefix()
    {
        var byName = BuiltModule.Commands.ToDictionary(c => c.Name, StringComparer.OrdinalIgnoreCase);
        Assert.Empty(HelpValidator.ExampleProblems("Get-XenDomain lab | Get-DirtyVram -Peek | Where-Object DirtyPages -gt 0", byName));
        Assert.Contains("Get-DirtyVram has no parameter -Frambuffer.", HelpValidator.ExampleProblems("Get-DirtyVram lab -Frambuffer mon0", byName));
        // A hyphenated argument is not a command: only the segment's command is checked.
        Assert.Empty(HelpValidator.ExampleProblems("Invoke-XenWorkload -DomainName lab -Name pt-churn -Rounds 5", byName));
    }
}
