using System.IO;

namespace XenLab.Lab;

/// <summary>The embedded default lab domain.</summary>
public static class DefaultLab
{
    public const string FileName = "default-lab.yaml";

    public static string Yaml()
    {
        using var s = typeof(DefaultLab).Assembly.GetManifestResourceStream("XenLab.DefaultLab.yaml")
            ?? throw new FileNotFoundException("The embedded default lab is missing from the assembly.");
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }
}
