// XenLab.psd1 at the repository root: what it loads and exactly what it exports.
using System.IO;
using System.Linq;
using Xunit;

namespace XenLab.Module.Tests;

public class ManifestTests
{
    [Fact]
    public void CmdletsToExportIsExactlyTheCmdletsOfTheAssembly()
    {
        var exported = BuiltModule.ManifestList("CmdletsToExport");
        Assert.Equal(exported.Count, exported.Distinct().Count());                 // no name listed twice
        Assert.Equal(BuiltModule.Commands.Select(c => c.Name).OrderBy(x => x), exported.OrderBy(x => x));
    }

    [Theory]
    [InlineData("FunctionsToExport")]
    [InlineData("AliasesToExport")]
    [InlineData("VariablesToExport")]
    public void NothingButCmdletsIsExported(string key)
    {
        Assert.Empty(BuiltModule.ManifestList(key));
    }

    [Fact]
    public void TheBuiltAssemblyAndTheHelpManifestAreTheNestedModules()
    {
        // Nested, not RootModule: only then does Get-Help look for the MAML beside the assembly (module/bin/en-US).
        Assert.Null(BuiltModule.ManifestValue("RootModule"));
        var nested = BuiltModule.ManifestList("NestedModules");
        Assert.Equal(new[] { "module/bin/XenLab.PowerShell.dll", "module/XenLab.Help.psd1" }, nested);
        foreach (var n in nested)
            Assert.True(File.Exists(Path.Combine(BuiltModule.Root, n)), $"{n} does not exist: build the solution first");
    }

    [Fact]
    public void TheHelpManifestMakesModuleAModuleBaseWithTheAboutTopic()
    {
        // Get-Help finds about_ topics only in <base>/<culture> of loaded modules; the nested
        // manifest's base is module/, so module/en-US/about_XenLab.help.txt is found. It exports nothing.
        string help = File.ReadAllText(Path.Combine(BuiltModule.Root, "module", "XenLab.Help.psd1"));
        foreach (var key in new[] { "CmdletsToExport", "FunctionsToExport", "AliasesToExport", "VariablesToExport" })
            Assert.Matches(key + @"\s*=\s*@\(\s*\)", help);
        Assert.True(File.Exists(Path.Combine(BuiltModule.Root, "module", "en-US", "about_XenLab.help.txt")));
    }

    [Fact]
    public void VersionEditionAndPowerShellVersionAreSet()
    {
        Assert.Equal("0.1.0", BuiltModule.ManifestValue("ModuleVersion"));
        Assert.Equal("7.4", BuiltModule.ManifestValue("PowerShellVersion"));
        Assert.Equal(new[] { "Core" }, BuiltModule.ManifestList("CompatiblePSEditions"));
        Assert.Matches("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", BuiltModule.ManifestValue("GUID"));
    }

    [Theory]
    [InlineData("FormatsToProcess", "module/XenLab.format.ps1xml")]
    [InlineData("TypesToProcess", "module/XenLab.types.ps1xml")]
    public void FormatAndTypesFilesAreListedAndExist(string key, string file)
    {
        Assert.Equal(new[] { file }, BuiltModule.ManifestList(key));
        Assert.True(File.Exists(Path.Combine(BuiltModule.Root, file)));
    }
}
