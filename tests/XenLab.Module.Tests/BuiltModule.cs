// The built module as the tests see it: module/bin read through MetadataLoadContext (never
// loaded), the manifest, the format and types files, and the committed MAML.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Text.RegularExpressions;
using XenLab.HelpGen;

namespace XenLab.Module.Tests;

public static class BuiltModule
{
    public static HelpPaths Paths { get; } = new(HelpPaths.FindRepoRoot(AppContext.BaseDirectory));

    private static readonly Lazy<List<CommandModel>> s_commands = new(() => CommandMetadata.Read(Paths.ModuleAssembly, SmaPath));
    public static string Root => Paths.Root;
    public static string ModuleBin => Path.GetDirectoryName(Paths.ModuleAssembly)!;
    public static string SmaPath => CommandMetadata.PowerShellStandardPath();
    public static string ManifestPath => Path.Combine(Root, "XenLab.psd1");
    public static string FormatPath => Path.Combine(Root, "module", "XenLab.format.ps1xml");
    public static string TypesPath => Path.Combine(Root, "module", "XenLab.types.ps1xml");

    /// <summary>Every cmdlet the built assembly declares, by name.</summary>
    public static List<CommandModel> Commands => s_commands.Value;

    /// <summary>Runs <paramref name="inspect"/> with the module assembly open in a MetadataLoadContext.</summary>
    public static T Inspect<T>(Func<Assembly, MetadataLoadContext, T> inspect)
    {
        using var mlc = CommandMetadata.CreateContext(Paths.ModuleAssembly, SmaPath);
        var asm = mlc.LoadFromAssemblyPath(Paths.ModuleAssembly);
        return inspect(asm, mlc);
    }

    /// <summary>The names in the manifest's CmdletsToExport, in order.</summary>
    public static List<string> ManifestList(string key)
    {
        string text = File.ReadAllText(ManifestPath);
        var m = Regex.Match(text, key + @"\s*=\s*@\(([^)]*)\)", RegexOptions.Singleline);
        if (!m.Success) throw new InvalidDataException($"{ManifestPath} has no '{key} = @(...)'.");
        return Regex.Matches(m.Groups[1].Value, @"'([^']*)'").Select(x => x.Groups[1].Value).ToList();
    }

    public static string? ManifestValue(string key)
    {
        var m = Regex.Match(File.ReadAllText(ManifestPath), @"(?m)^\s*" + key + @"\s*=\s*'([^']*)'");
        return m.Success ? m.Groups[1].Value : null;
    }
}
