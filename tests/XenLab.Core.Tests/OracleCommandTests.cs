using System.IO;
using XenLab.Cli;

namespace XenLab.Tests;

/// <summary>xenlab --oracle: its own options, one line per variant, the exit code says whether anything was missed.</summary>
public class OracleCommandTests
{
    [Fact]
    public void AShortRunPrintsOneLinePerVariantAndSucceeds()
    {
        var w = new StringWriter();
        int rc = OracleCommand.Run(new[] { "--oracle", "--steps", "200", "--seed", "5", "--variant", "arm", "--seeds", "2" }, w);
        string s = w.ToString();
        Assert.Equal(0, rc);
        Assert.Contains("3 variant(s) x 2 seed(s) x 200 step(s)", s);
        Assert.Matches(@"arm walk/avail\s+400 steps", s);
        Assert.Contains("arm vlpt/avail", s);
        Assert.Contains("total: 1200 steps, 0 page(s) missed", s);
    }

    [Fact]
    public void AMissFailsTheRunAndPrintsItsReproducer()
    {
        string path = Path.Combine(Path.GetTempPath(), $"xenlab-oracle-{System.Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, "name: noflush\nmemory: 64\nvcpus: 2\nvram_tlb_flush: off\n");
        try
        {
            var w = new StringWriter();
            int rc = OracleCommand.Run(new[] { path, "--oracle", "--steps", "1500", "--variant", "oos=snapshot/backlinks" }, w);
            Assert.Equal(1, rc);
            Assert.Contains("written but not reported", w.ToString());
            Assert.Contains("-- MISSED", w.ToString());
            Assert.Contains("FAILED", w.ToString());
        }
        finally { File.Delete(path); }
    }

    [Theory]
    [InlineData("--steps")]
    [InlineData("--bogus")]
    public void BadOptionsAreXenLabErrors(string option)
    {
        var e = Assert.Throws<XenLabException>(() => OracleCommand.Run(new[] { "--oracle", option }, new StringWriter()));
        Assert.Contains(option, e.Message);
    }

    [Fact]
    public void AVariantNobodyHasIsAnError() =>
        Assert.Throws<XenLabException>(() => OracleCommand.Run(new[] { "--oracle", "--variant", "sparc" }, new StringWriter()));

    [Fact]
    public void OnlyTheOracleFlagRoutesHere()
    {
        Assert.True(OracleCommand.Handles(new[] { "lab.yaml", "--oracle" }));
        Assert.False(OracleCommand.Handles(new[] { "lab.yaml", "--frames", "3" }));
    }
}
