// The one source of cmdlet help: src/XenLab.PowerShell/Help/XenLab.help.yaml.
using System.Collections.Generic;
using System.IO;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace XenLab.HelpGen;

public sealed class HelpSource
{
    public Dictionary<string, CommandHelp> Commands { get; set; } = new();

    public static HelpSource Load(string path)
    {
        var deserializer = new DeserializerBuilder().WithNamingConvention(CamelCaseNamingConvention.Instance).Build();
        using var reader = new StreamReader(path);
        return deserializer.Deserialize<HelpSource>(reader) ?? new HelpSource();
    }
}

public sealed class CommandHelp
{
    public string Synopsis { get; set; } = "";
    public string Description { get; set; } = "";
    public Dictionary<string, string> Parameters { get; set; } = new();
    public List<ExampleHelp> Examples { get; set; } = new();
    /// <summary>Optional: what each output type is, by full type name.</summary>
    public Dictionary<string, string> Outputs { get; set; } = new();
    public string Notes { get; set; } = "";
    public List<string> Links { get; set; } = new();
}

public sealed class ExampleHelp
{
    public string Title { get; set; } = "";
    public string Code { get; set; } = "";
    public string Remarks { get; set; } = "";
}
