using System;
using System.IO;
using XenLab.Config;
using XenLab.Domains;

namespace XenLab.Tests;

/// <summary>
/// Bad input gets a clear error: random mutations of valid lab files must either load (and then
/// build or be refused with a XenLab error) or fail with a ConfigFileException naming a
/// position inside the file, never with any other exception.
/// </summary>
public class ConfigFuzzTests
{
    private static string[] Sources() =>
    [
        File.ReadAllText(Path.Combine(RepoRoot(), "labs/05-guest-code/lab.yaml")),
        File.ReadAllText(Path.Combine(RepoRoot(), "labs/03-multi-monitor/lab.yaml")),
        XenLab.Lab.DefaultLab.Yaml(),
    ];

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void MutatedFilesFailOnlyWithPositionedErrors(int seed)
    {
        var rng = new Random(seed);
        const string alphabet = "abcxyz019:-{}[],#'\" \n\t0x";
        foreach (var source in Sources())
        {
            for (int i = 0; i < 150; i++)
            {
                var chars = source.ToCharArray();
                int edits = rng.Next(1, 4);
                for (int e = 0; e < edits; e++) chars[rng.Next(chars.Length)] = alphabet[rng.Next(alphabet.Length)];
                string text = new(chars);
                int lines = text.Split('\n').Length;
                try
                {
                    var c = DomainConfigLoader.Load(text, "fuzz.yaml");
                    try { new XenHost(2UL << 30).CreateDomain(c); }
                    catch (XenLabException) { }                      // refused with a reason: fine
                }
                catch (ConfigFileException ex)
                {
                    Assert.Equal("fuzz.yaml", ex.File);
                    Assert.InRange(ex.Line, 0, lines + 1);
                    Assert.False(string.IsNullOrWhiteSpace(ex.Reason));
                }
            }
        }
    }

    private static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "XenLab.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new DirectoryNotFoundException("XenLab.sln not found above the test assembly.");
    }
}
