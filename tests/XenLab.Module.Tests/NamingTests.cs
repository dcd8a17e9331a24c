// Names: approved verbs (taken from PowerShellStandard's Verbs* classes), singular Xen nouns,
// and exactly the cmdlets the product has.
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using Xunit;

namespace XenLab.Module.Tests;

public class NamingTests
{
    private static readonly string[] VerbClasses =
    {
        "VerbsCommon", "VerbsData", "VerbsLifecycle", "VerbsDiagnostic", "VerbsCommunications", "VerbsSecurity", "VerbsOther",
    };

    /// <summary>The cmdlets the module must have: adding or removing one is a decision, so it changes this list.</summary>
    public static readonly string[] ExpectedCmdlets =
    {
        "Add-XenGuestMapping", "Export-XenDomain", "Get-XenDomain", "Get-XenE820", "Get-XenGuestMapping", "Get-XenP2m", "Get-XenPerfCounter",
        "Get-XenTrace", "Get-XenTranslation", "New-XenDomain", "Read-XenGuestMemory", "Remove-XenDomain",
        "Remove-XenGuestMapping", "Set-XenDomain", "Set-XenIdentityHole", "Set-XenPagingMode", "Test-XenPaging",
        "Write-XenGuestMemory",
        // Framebuffers and dirty tracking (SPEC 2), and the workloads labs run.
        "Add-XenFramebuffer", "Get-XenFramebuffer", "Remove-XenFramebuffer", "Mount-XenFramebuffer", "Export-XenFramebuffer",
        "Enable-XenLogDirty", "Disable-XenLogDirty", "Get-XenDirtyLog", "Get-DirtyVram", "Set-XenVramTracking",
        "Invoke-XenWorkload", "Test-XenDirtyTracking",
        // Guest code on the x86-64 vCPU (issue 5).
        "Invoke-XenGuestCode", "Get-XenVcpu", "Step-XenVcpu",
        // Pictures (issue 8).
        "Export-XenPicture", "Export-XenChart",
        // Seed 002's walk-or-VLPT question, measured (issue 12).
        "Measure-XenVlpt",
        // The domain's own clock, which mainline VRAM tracking's 2 s are measured in (issue 10).
        "Step-XenDomainClock",
    };

    private static HashSet<string> ApprovedVerbs() => BuiltModule.Inspect((_, mlc) =>
    {
        var sma = mlc.LoadFromAssemblyPath(BuiltModule.SmaPath);
        var verbs = new HashSet<string>();
        foreach (var cls in VerbClasses)
        {
            var t = sma.GetType("System.Management.Automation." + cls, throwOnError: true)!;
            foreach (var f in t.GetFields(BindingFlags.Public | BindingFlags.Static))
                if (f.IsLiteral) verbs.Add((string)f.GetRawConstantValue()!);
        }
        return verbs;
    });

    [Fact]
    public void TheModuleHasAtLeastThirtySevenCmdlets()
    {
        // Guard: every other test iterates over this set and would pass vacuously if it were empty.
        Assert.True(BuiltModule.Commands.Count >= 37, $"found only {BuiltModule.Commands.Count} cmdlets in {BuiltModule.Paths.ModuleAssembly}");
    }

    [Fact]
    public void TheModuleHasExactlyTheExpectedCmdlets()
    {
        Assert.Equal(ExpectedCmdlets.OrderBy(x => x), BuiltModule.Commands.Select(c => c.Name).OrderBy(x => x));
    }

    [Fact]
    public void TheApprovedVerbListComesFromPowerShellStandard()
    {
        var verbs = ApprovedVerbs();
        // The real list has about a hundred verbs; these are a few that must be in it, and one that must not.
        Assert.True(verbs.Count > 90, $"only {verbs.Count} approved verbs read");
        Assert.Contains("Get", verbs);
        Assert.Contains("Read", verbs);
        Assert.Contains("Write", verbs);
        Assert.DoesNotContain("Create", verbs);
    }

    [Fact]
    public void EveryCmdletUsesAnApprovedVerb()
    {
        var verbs = ApprovedVerbs();
        var bad = BuiltModule.Commands.Where(c => !verbs.Contains(c.Verb)).Select(c => c.Name).ToList();
        Assert.True(bad.Count == 0, "not approved verbs: " + string.Join(", ", bad));
    }

    [Fact]
    public void EveryNounIsSingularWithTheXenPrefix()
    {
        var bad = new List<string>();
        foreach (var c in BuiltModule.Commands)
        {
            if (c.Noun == "DirtyVram") continue;                 // the one name the product brief fixes
            if (!c.Noun.StartsWith("Xen") || c.Noun.Length == 3 || !char.IsUpper(c.Noun[3])) bad.Add($"{c.Name}: noun must start with 'Xen' and a capital");
            if (c.Noun.EndsWith("s") && !c.Noun.EndsWith("ss")) bad.Add($"{c.Name}: noun looks plural");
        }
        Assert.True(bad.Count == 0, string.Join("; ", bad));
    }

    [Fact]
    public void CmdletClassesAreNamedVerbNounCommand()
    {
        var bad = BuiltModule.Commands.Where(c => !c.TypeFullName.EndsWith("." + c.Verb + c.Noun + "Command")).Select(c => c.TypeFullName).ToList();
        Assert.True(bad.Count == 0, "class names not <Verb><Noun>Command: " + string.Join(", ", bad));
    }
}
