// Behaviour declared in metadata: output types, ShouldProcess on state changes, the
// -Domain/-DomainName binding pattern, argument completers, and what lands in module/bin.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Xml.Linq;
using XenLab.HelpGen;
using Xunit;

namespace XenLab.Module.Tests;

public class ContractTests
{
    private static readonly string[] StateChangingVerbs = { "New", "Set", "Remove", "Enable", "Disable", "Add", "Mount", "Dismount", "Write", "Export" };

    /// <summary>
    /// Cmdlets whose verb is not a state-changing one but which change guest state (they load code
    /// and run the vCPU, which writes registers and memory, or move the domain's clock), so they support -WhatIf too.
    /// </summary>
    private static readonly string[] ChangeGuestState = { "Invoke-XenGuestCode", "Step-XenVcpu", "Invoke-XenWorkload", "Step-XenDomainClock" };

    /// <summary>Cmdlets that write nothing and have no -PassThru: the only ones allowed no [OutputType].</summary>
    private static readonly string[] WritesNothing = { "Remove-XenDomain", "Remove-XenGuestMapping", "Remove-XenFramebuffer" };

    public static IEnumerable<object[]> CommandNames() => NamingTests.ExpectedCmdlets.Select(n => new object[] { n });

    private static CommandModel Command(string name) =>
        BuiltModule.Commands.SingleOrDefault(c => c.Name == name) ?? throw new Xunit.Sdk.XunitException($"{name} is not in the built module");

    [Theory]
    [MemberData(nameof(CommandNames))]
    public void EveryCmdletDeclaresItsOutputType(string name)
    {
        var c = Command(name);
        if (WritesNothing.Contains(name))
        {
            Assert.Empty(c.OutputTypes);                                   // it writes nothing, so it claims nothing
            Assert.DoesNotContain(c.Parameters, p => p.Name == "PassThru");
        }
        else
        {
            Assert.NotEmpty(c.OutputTypes);
        }
    }

    [Theory]
    [MemberData(nameof(CommandNames))]
    public void StateChangingVerbsSupportShouldProcess(string name)
    {
        var c = Command(name);
        Assert.Equal(StateChangingVerbs.Contains(c.Verb) || ChangeGuestState.Contains(name), c.SupportsShouldProcess);
    }

    [Theory]
    [MemberData(nameof(CommandNames))]
    public void RemoveCmdletsHaveHighConfirmImpact(string name)
    {
        var c = Command(name);
        if (c.Verb == "Remove") Assert.Equal("High", c.ConfirmImpact);
        else Assert.NotEqual("High", c.ConfirmImpact);
    }

    [Fact]
    public void DomainObjectsBindByValueAndNamesByPropertyName()
    {
        var problems = new List<string>();
        foreach (var c in BuiltModule.Commands)
        {
            var domain = c.Parameters.SingleOrDefault(p => p.Name == "Domain");
            var name = c.Parameters.SingleOrDefault(p => p.Name == "DomainName" || p.Aliases.Contains("DomainName"));
            if (domain is null && name is null) continue;
            if (domain is null || name is null) { problems.Add($"{c.Name} has only one of -Domain/-DomainName"); continue; }
            if (domain.TypeFullName != "XenLab.Domains.Domain") problems.Add($"{c.Name} -Domain is {domain.TypeFullName}");
            if (!domain.Sets.All(s => s.ByValue && s.Mandatory)) problems.Add($"{c.Name} -Domain is not mandatory and by value in every set");
            if (!name.Sets.All(s => s.ByPropertyName && s.Mandatory && !s.ByValue)) problems.Add($"{c.Name} -{name.Name} is not mandatory and by property name in every set");
            if (domain.Sets.Select(s => s.SetName).Intersect(name.Sets.Select(s => s.SetName)).Any()) problems.Add($"{c.Name} has -Domain and -DomainName in one set");
        }
        Assert.True(problems.Count == 0, string.Join("; ", problems));
        // Most cmdlets take a domain one way or the other; this guards the loop above.
        Assert.True(BuiltModule.Commands.Count(c => c.Parameters.Any(p => p.Name == "DomainName")) >= 10);
    }

    /// <summary>-Name parameters that name something new or not a domain, and what completes them.</summary>
    private static readonly Dictionary<(string Command, string Parameter), string?> NameCompleters = new()
    {
        [("Get-XenPerfCounter", "Name")] = null,                               // counter names
        [("New-XenDomain", "Name")] = null,                                    // a new name cannot complete
        [("Add-XenFramebuffer", "Name")] = null,                               // a new framebuffer's name
        [("Invoke-XenWorkload", "Name")] = null,                               // ValidateSet completes the workloads
        [("Get-XenFramebuffer", "Name")] = "FramebufferNameCompleter",
    };

    [Fact]
    public void DomainAndFramebufferNamesComplete()
    {
        int framebufferParameters = 0;
        var missing = BuiltModule.Inspect((asm, _) =>
        {
            var result = new List<string>();
            foreach (var c in BuiltModule.Commands)
            {
                var type = asm.GetType(c.TypeFullName, throwOnError: true)!;
                foreach (var pname in new[] { "Name", "DomainName", "Framebuffer" })
                {
                    var prop = type.GetProperty(pname);
                    if (prop is null) continue;
                    string? expected = pname switch
                    {
                        "Framebuffer" => "FramebufferNameCompleter",
                        "Name" when NameCompleters.TryGetValue((c.Name, pname), out var e) => e,
                        _ => "DomainNameCompleter",
                    };
                    if (expected == "FramebufferNameCompleter") framebufferParameters++;
                    var completer = prop.GetCustomAttributesData().FirstOrDefault(a => a.AttributeType.Name == "ArgumentCompleterAttribute");
                    string? actual = completer?.ConstructorArguments[0].Value is Type t ? t.Name : null;
                    if (actual != expected) result.Add($"{c.Name} -{pname}: {actual ?? "no completer"}, expected {expected ?? "none"}");
                }
            }
            return result;
        });
        Assert.True(missing.Count == 0, string.Join("; ", missing));
        Assert.True(framebufferParameters >= 5, $"only {framebufferParameters} framebuffer parameters found");
    }

    [Fact]
    public void FramebufferParametersBindByPropertyNameFromTheViews()
    {
        // Get-XenFramebuffer | Mount-/Export-/Remove-XenFramebuffer, Get-DirtyVram: the views carry DomainName and Framebuffer.
        var problems = new List<string>();
        foreach (var c in BuiltModule.Commands)
        {
            var fb = c.Parameters.SingleOrDefault(p => p.Name == "Framebuffer");
            if (fb is null) continue;
            if (!fb.Sets.All(s => s.ByPropertyName && !s.ByValue)) problems.Add($"{c.Name} -Framebuffer does not bind by property name in every set");
        }
        Assert.True(problems.Count == 0, string.Join("; ", problems));
        var lacking = BuiltModule.Inspect((_, mlc) =>
        {
            var core = mlc.LoadFromAssemblyPath(Path.Combine(BuiltModule.ModuleBin, "XenLab.Core.dll"));
            return new[] { "XenLab.Views.FramebufferView", "XenLab.Views.DirtyVramView", "XenLab.Views.DirtyPageView", "XenLab.Views.DirtyRectView" }
                .Where(t => core.GetType(t, throwOnError: true)!.GetProperty("Framebuffer") is null).ToList();
        });
        Assert.Empty(lacking);
    }

    [Fact]
    public void NothingButDomainNameBindsAPipedDomainsProperties()
    {
        // A Domain piped to a cmdlet binds -Domain by value, and by property name every parameter
        // named like one of its properties: a -Name would silently take the domain's name.
        var domainMembers = BuiltModule.Inspect((_, mlc) =>
        {
            var core = mlc.LoadFromAssemblyPath(Path.Combine(BuiltModule.ModuleBin, "XenLab.Core.dll"));
            var names = core.GetType("XenLab.Domains.Domain", throwOnError: true)!.GetProperties().Select(p => p.Name).ToList();
            names.AddRange(XDocument.Load(BuiltModule.TypesPath).Descendants("Type")
                .Where(t => (string?)t.Element("Name") == "XenLab.Domains.Domain")
                .SelectMany(t => t.Element("Members")!.Elements()).Select(m => (string?)m.Element("Name") ?? ""));
            return names.ToHashSet(StringComparer.OrdinalIgnoreCase);
        });
        Assert.Contains("Name", domainMembers);
        var problems = new List<string>();
        foreach (var c in BuiltModule.Commands)
        {
            var domain = c.Parameters.SingleOrDefault(p => p.Name == "Domain");
            if (domain is null) continue;
            var domainSets = domain.Sets.Select(s => s.SetName).ToHashSet();
            foreach (var p in c.Parameters)
            {
                if (p.Name == "Domain") continue;
                bool byName = p.Sets.Any(s => s.ByPropertyName && (domainSets.Contains(s.SetName) || s.SetName == CommandMetadata.AllSets));
                if (byName && p.Aliases.Prepend(p.Name).Any(domainMembers.Contains)) problems.Add($"{c.Name} -{p.Name}");
            }
        }
        Assert.True(problems.Count == 0, "bind a piped Domain's property: " + string.Join(", ", problems));
    }

    [Fact]
    public void ViewObjectsCarryADomainNameAndDomainGetsItFromTheTypesFile()
    {
        // XenLab's own types; a System.Boolean (Test-XenPaging) has no domain to name.
        var outputTypes = BuiltModule.Commands.SelectMany(c => c.OutputTypes).Distinct().Where(t => t.StartsWith("XenLab.")).ToList();
        var lacking = BuiltModule.Inspect((asm, mlc) =>
        {
            var core = mlc.LoadFromAssemblyPath(Path.Combine(BuiltModule.ModuleBin, "XenLab.Core.dll"));
            return outputTypes.Where(t => t != "XenLab.Domains.Domain" && core.GetType(t, throwOnError: true)!.GetProperty("DomainName") is null).ToList();
        });
        Assert.True(lacking.Count == 0, "output types without DomainName: " + string.Join(", ", lacking));
        // The name while the domain lives, a DomainRemoved marker once removed (DomainBinding).
        var property = XDocument.Load(BuiltModule.TypesPath).Descendants("Type")
            .Where(t => (string?)t.Element("Name") == "XenLab.Domains.Domain")
            .SelectMany(t => t.Descendants("ScriptProperty"))
            .SingleOrDefault(a => (string?)a.Element("Name") == "DomainName");
        Assert.NotNull(property);
        Assert.Equal("[XenLab.PowerShell.DomainBinding]::DomainName($this)", ((string?)property!.Element("GetScriptBlock"))?.Trim());
    }

    [Theory]
    [MemberData(nameof(CommandNames))]
    public void PassThruCmdletsDeclareWhatTheyPassThrough(string name)
    {
        var c = Command(name);
        if (c.Parameters.Any(p => p.Name == "PassThru")) Assert.NotEmpty(c.OutputTypes);
    }

    [Fact]
    public void ModuleBinHoldsTheModuleAndItsDependenciesButNotPowerShell()
    {
        var files = Directory.GetFiles(BuiltModule.ModuleBin).Select(Path.GetFileName).ToList();
        foreach (var needed in new[] { "XenLab.PowerShell.dll", "XenLab.Core.dll", "YamlDotNet.dll", "Iced.dll" })
            Assert.Contains(needed, files);
        Assert.DoesNotContain("System.Management.Automation.dll", files);
        Assert.True(File.Exists(Path.Combine(BuiltModule.ModuleBin, "en-US", "XenLab.PowerShell.dll-Help.xml")),
            "module/bin/en-US has no copy of the MAML help");
    }

    [Fact]
    public void ModuleBinCarriesThePicturesNativeLibrariesPerPlatformAndNoneLoose()
    {
        // ModuleInitializer resolves runtimes/<rid>/native/; a loose libSkiaSharp.dll (Windows's) beside
        // the assemblies would be a sign the native assets were copied flat, the wrong way.
        var files = Directory.GetFiles(BuiltModule.ModuleBin).Select(Path.GetFileName).ToList();
        foreach (var managed in new[] { "SkiaSharp.dll", "ScottPlot.dll", "HarfBuzzSharp.dll" }) Assert.Contains(managed, files);
        Assert.DoesNotContain("libSkiaSharp.dll", files);
        foreach (var (rid, ext) in new[] { ("linux-x64", ".so"), ("linux-arm64", ".so"), ("osx", ".dylib"), ("win-x64", ".dll") })
            foreach (var lib in new[] { "libSkiaSharp", "libHarfBuzzSharp" })
                Assert.True(File.Exists(Path.Combine(BuiltModule.ModuleBin, "runtimes", rid, "native", lib + ext)), $"module/bin lacks runtimes/{rid}/native/{lib}{ext}");
    }
}
