// The cmdlets of a built module, read with MetadataLoadContext (the assembly is inspected,
// never loaded or run): names, parameters with their sets, pipeline input and output types.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Reflection;

namespace XenLab.HelpGen;

public sealed record ParameterSetModel(string SetName, bool Mandatory, int? Position, bool ByValue, bool ByPropertyName);

public sealed record ParameterModel(
    string Name, string TypeFullName, string TypeShortName, bool IsSwitch, IReadOnlyList<string> Aliases,
    bool SupportsWildcards, IReadOnlyList<ParameterSetModel> Sets, int DeclarationOrder)
{
    public bool ByValue => Sets.Any(s => s.ByValue);
    public bool ByPropertyName => Sets.Any(s => s.ByPropertyName);
}

public sealed record CommandModel(
    string Name, string Verb, string Noun, string TypeFullName, string? DefaultParameterSet,
    bool SupportsShouldProcess, string ConfirmImpact, IReadOnlyList<string> OutputTypes,
    IReadOnlyList<ParameterModel> Parameters)
{
    /// <summary>Parameter-set names; "__AllParameterSets" when the cmdlet declares none.</summary>
    public IReadOnlyList<string> ParameterSets
    {
        get
        {
            var named = Parameters.SelectMany(p => p.Sets).Select(s => s.SetName)
                .Where(n => n != CommandMetadata.AllSets).Distinct().ToList();
            if (DefaultParameterSet is not null && named.Remove(DefaultParameterSet)) named.Insert(0, DefaultParameterSet);
            return named.Count == 0 ? new[] { CommandMetadata.AllSets } : named;
        }
    }

    /// <summary>The parameters usable in <paramref name="set"/>, each with its settings there.</summary>
    public IEnumerable<(ParameterModel Parameter, ParameterSetModel Set)> InSet(string set)
    {
        foreach (var p in Parameters)
        {
            var s = p.Sets.FirstOrDefault(x => x.SetName == set) ?? p.Sets.FirstOrDefault(x => x.SetName == CommandMetadata.AllSets);
            if (s is not null) yield return (p, s);
        }
    }
}

public static class CommandMetadata
{
    public const string AllSets = "__AllParameterSets";
    private const string Sma = "System.Management.Automation.";

    /// <summary>The PowerShellStandard reference assembly this tool was built against.</summary>
    public static string PowerShellStandardPath()
    {
        string? env = Environment.GetEnvironmentVariable("XENLAB_SMA_PATH");
        if (!string.IsNullOrEmpty(env)) return env;
        foreach (var a in typeof(CommandMetadata).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>())
            if (a.Key == "PowerShellStandardPath" && a.Value is not null && File.Exists(a.Value)) return a.Value;
        string home = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages",
            "powershellstandard.library", "5.1.0-preview-06", "lib", "netstandard2.0", "System.Management.Automation.dll");
        if (File.Exists(home)) return home;
        throw new FileNotFoundException("Cannot find PowerShellStandard.Library's System.Management.Automation.dll; run 'dotnet restore' or set XENLAB_SMA_PATH.");
    }

    /// <summary>A context that resolves against the module's folder, PowerShellStandard and the running runtime.</summary>
    public static MetadataLoadContext CreateContext(string moduleAssemblyPath, string smaPath)
    {
        var paths = new List<string>(Directory.GetFiles(Path.GetDirectoryName(Path.GetFullPath(moduleAssemblyPath))!, "*.dll"));
        paths.RemoveAll(p => Path.GetFileName(p).Equals("System.Management.Automation.dll", StringComparison.OrdinalIgnoreCase));
        paths.Add(smaPath);
        paths.AddRange(Directory.GetFiles(Path.GetDirectoryName(typeof(object).Assembly.Location)!, "*.dll"));
        return new MetadataLoadContext(new PathAssemblyResolver(paths));
    }

    /// <summary>Every public cmdlet class of the assembly, ordered by name.</summary>
    public static List<CommandModel> Read(string moduleAssemblyPath, string smaPath)
    {
        using var mlc = CreateContext(moduleAssemblyPath, smaPath);
        var asm = mlc.LoadFromAssemblyPath(Path.GetFullPath(moduleAssemblyPath));
        var list = new List<CommandModel>();
        foreach (var t in asm.GetExportedTypes())
        {
            if (t.IsAbstract) continue;
            var cmdlet = Attr(t, "CmdletAttribute");
            if (cmdlet is null) continue;
            string verb = (string)cmdlet.ConstructorArguments[0].Value!;
            string noun = (string)cmdlet.ConstructorArguments[1].Value!;
            var named = Named(cmdlet);
            string impact = named.TryGetValue("ConfirmImpact", out var ci) ? ConfirmImpactName(ci) : "Medium";
            list.Add(new CommandModel(
                $"{verb}-{noun}", verb, noun, t.FullName!,
                named.TryGetValue("DefaultParameterSetName", out var dps) ? (string?)dps : null,
                named.TryGetValue("SupportsShouldProcess", out var ssp) && (bool)ssp!,
                impact, OutputTypes(t), Parameters(t)));
        }
        list.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        return list;
    }

    private static string ConfirmImpactName(object? value) => value switch
    {
        0 => "None", 1 => "Low", 2 => "Medium", 3 => "High",
        _ => value?.ToString() ?? "Medium",
    };

    private static List<string> OutputTypes(Type t)
    {
        var result = new List<string>();
        foreach (var a in Attrs(t, "OutputTypeAttribute"))
        {
            foreach (var arg in a.ConstructorArguments)
            {
                if (arg.Value is IReadOnlyCollection<CustomAttributeTypedArgument> items)
                    foreach (var item in items) result.Add(item.Value is Type ty ? ty.FullName! : (string)item.Value!);
                else if (arg.Value is Type single) result.Add(single.FullName!);
                else if (arg.Value is string s) result.Add(s);
            }
        }
        return result.Distinct().ToList();
    }

    private static List<ParameterModel> Parameters(Type t)
    {
        var result = new List<ParameterModel>();
        // Base class properties first, each class's in declaration order, as PowerShell shows them.
        var chain = new List<Type>();
        for (var c = t; c is not null && c.FullName != Sma + "PSCmdlet" && c.FullName != Sma + "Cmdlet"; c = c.BaseType) chain.Insert(0, c);
        int order = 0;
        foreach (var c in chain)
        {
            foreach (var prop in c.GetProperties(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly))
            {
                var sets = new List<ParameterSetModel>();
                foreach (var pa in Attrs(prop, "ParameterAttribute"))
                {
                    var n = Named(pa);
                    sets.Add(new ParameterSetModel(
                        n.TryGetValue("ParameterSetName", out var sn) ? (string)sn! : AllSets,
                        n.TryGetValue("Mandatory", out var m) && (bool)m!,
                        n.TryGetValue("Position", out var pos) && (int)pos! >= 0 ? (int)pos! : null,
                        n.TryGetValue("ValueFromPipeline", out var v) && (bool)v!,
                        n.TryGetValue("ValueFromPipelineByPropertyName", out var vp) && (bool)vp!));
                }
                if (sets.Count == 0) continue;
                var aliases = new List<string>();
                foreach (var al in Attrs(prop, "AliasAttribute"))
                    foreach (var arg in al.ConstructorArguments)
                        if (arg.Value is IReadOnlyCollection<CustomAttributeTypedArgument> items)
                            foreach (var item in items) aliases.Add((string)item.Value!);
                var type = prop.PropertyType;
                result.Add(new ParameterModel(prop.Name, type.FullName!, ShortName(type), type.FullName == Sma + "SwitchParameter",
                    aliases, Attr(prop, "SupportsWildcardsAttribute") is not null, sets, order++));
            }
        }
        return result;
    }

    public static string ShortName(Type type)
    {
        if (type.IsArray) return ShortName(type.GetElementType()!) + "[]";
        if (type.IsGenericType && type.GetGenericTypeDefinition().FullName == "System.Nullable`1") return ShortName(type.GetGenericArguments()[0]);
        return type.Name;
    }

    private static CustomAttributeData? Attr(MemberInfo m, string name) => Attrs(m, name).FirstOrDefault();

    private static IEnumerable<CustomAttributeData> Attrs(MemberInfo m, string name) =>
        m.GetCustomAttributesData().Where(a => a.AttributeType.FullName == Sma + name);

    private static Dictionary<string, object?> Named(CustomAttributeData a)
    {
        var d = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var n in a.NamedArguments) d[n.MemberName] = n.TypedValue.Value;
        return d;
    }
}
