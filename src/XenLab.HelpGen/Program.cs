// dotnet run --project src/XenLab.HelpGen [-- --check] [--repo <root>]
// Writes module/en-US/XenLab.PowerShell.dll-Help.xml; with --check only compares and reports.
using System;
using System.IO;

namespace XenLab.HelpGen;

public static class Program
{
    public static int Main(string[] args)
    {
        bool check = Array.IndexOf(args, "--check") >= 0;
        int r = Array.IndexOf(args, "--repo");
        string root = r >= 0 && r + 1 < args.Length ? Path.GetFullPath(args[r + 1]) : HelpPaths.FindRepoRoot(Environment.CurrentDirectory);
        var paths = new HelpPaths(root);
        var (maml, problems) = HelpPaths.Build(paths);
        if (problems.Count > 0)
        {
            Console.Error.WriteLine($"The help source {paths.HelpSource} is incomplete:");
            foreach (var p in problems) Console.Error.WriteLine("  " + p);
            return 1;
        }
        string existing = File.Exists(paths.Maml) ? File.ReadAllText(paths.Maml).Replace("\r\n", "\n", StringComparison.Ordinal) : "";
        if (check)
        {
            if (existing == maml) { Console.WriteLine($"{paths.Maml} is up to date."); return 0; }
            Console.Error.WriteLine($"{paths.Maml} is out of date. Regenerate: {HelpPaths.RegenerateCommand}");
            return 1;
        }
        Directory.CreateDirectory(Path.GetDirectoryName(paths.Maml)!);
        File.WriteAllText(paths.Maml, maml);
        // The module build copied the old file beside the assembly; refresh that copy so the
        // module in module/bin shows the new help without another build.
        string binCopy = Path.Combine(Path.GetDirectoryName(paths.ModuleAssembly)!, "en-US", Path.GetFileName(paths.Maml));
        Directory.CreateDirectory(Path.GetDirectoryName(binCopy)!);
        File.WriteAllText(binCopy, maml);
        Console.WriteLine(existing == maml ? $"{paths.Maml} unchanged." : $"Wrote {paths.Maml}.");
        return 0;
    }
}

/// <summary>Where the help source, the built module and the MAML live in the repository.</summary>
public sealed class HelpPaths
{
    public const string RegenerateCommand = "dotnet run --project src/XenLab.HelpGen";

    public HelpPaths(string repoRoot)
    {
        Root = repoRoot;
        HelpSource = Path.Combine(repoRoot, "src", "XenLab.PowerShell", "Help", "XenLab.help.yaml");
        ModuleAssembly = Path.Combine(repoRoot, "module", "bin", "XenLab.PowerShell.dll");
        Maml = Path.Combine(repoRoot, "module", "en-US", "XenLab.PowerShell.dll-Help.xml");
    }

    public string Root { get; }
    public string HelpSource { get; }
    public string ModuleAssembly { get; }
    public string Maml { get; }

    public static string FindRepoRoot(string start)
    {
        for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "XenLab.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException($"No XenLab.sln in {start} or any folder above it.");
    }

    /// <summary>The MAML text and the help source's problems, from the built module.</summary>
    public static (string Maml, System.Collections.Generic.List<string> Problems) Build(HelpPaths paths)
    {
        if (!File.Exists(paths.ModuleAssembly))
            throw new FileNotFoundException($"The module is not built: {paths.ModuleAssembly} is missing; run 'dotnet build XenLab.sln'.");
        var commands = CommandMetadata.Read(paths.ModuleAssembly, CommandMetadata.PowerShellStandardPath());
        var help = XenLab.HelpGen.HelpSource.Load(paths.HelpSource);
        return (MamlWriter.Generate(help, commands), HelpValidator.Problems(help, commands));
    }
}
