using System.IO;
using XenLab.Cli;

namespace XenLab.Tests;

public class LabRunnerTests
{
    [Fact]
    public void TheDefaultLabPrintsTheThreadsLayout()
    {
        var w = new StringWriter();
        Assert.Equal(0, LabRunner.Run(LabOptions.Parse(new string[0]), w));
        string s = w.ToString();
        Assert.Contains("domain 'lab' (domid 1) from the embedded default lab", s);
        Assert.Contains("0x000000100000  0x000093c00000  Ram       2363 MiB", s);        // 1 MiB .. 2364 MiB
        Assert.Contains("0xc0000      gap         0x40000000000c0000  identity -> 0xc0000", s);
        Assert.Contains("p2m_mid_identity", s);
        Assert.Contains("none: ballooning up to maxmem is safe", s);
    }

    [Fact]
    public void BallooningACoarseLabShowsTheNastyCondition()
    {
        string path = Path.Combine(Path.GetTempPath(), $"xenlab-coarse-{System.Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, "name: coarse\nmemory: 1024\nmaxmem: 2364\nidentity_strategy: coarse\n");
        try
        {
            var w = new StringWriter();
            LabRunner.Run(LabOptions.Parse(new[] { path, "--balloon", "max" }), w);
            string s = w.ToString();
            Assert.Contains("first 0x80000: a balloon up into them hits BUG_ON", s);
            Assert.Contains("BUG_ON(phys_to_machine_mapping_valid(0x80000))", s);
            Assert.Contains("answers it from p2m_mid_identity (tree [2][0][0])", s);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void AWorkloadRunsFrameByFrameWithDirtyRectanglesAndCounters()
    {
        var w = new StringWriter();
        LabRunner.Run(LabOptions.Parse(new[] { Path.Combine(RepoRoot(), "labs/05-guest-code/lab.yaml"), "--frames", "2" }), w);
        string s = w.ToString();
        Assert.Contains("Guest workload: 5 step(s), 2 frame(s), paging shadow", s);
        // Frame 0: the 32-line fill (32 pages at one page per line) and the 16x16 cursor at line 100.
        Assert.Contains("left           48/768 pages dirty; 2 rectangle(s) 1024x32+0+0 1024x16+0+100", s);
        Assert.Contains("right         469/469 pages dirty", s);                   // the scroll repaints it all
        Assert.Contains("cpu_instructions_retired", s);
    }

    private static string RepoRoot()
    {
        var dir = new DirectoryInfo(System.AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "XenLab.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new DirectoryNotFoundException("XenLab.sln not found above the test assembly.");
    }

    [Fact]
    public void UnknownOptionsAreNamed()
    {
        var ex = Assert.Throws<XenLabException>(() => LabOptions.Parse(new[] { "--frobnicate" }));
        Assert.StartsWith("Unknown option '--frobnicate'", ex.Message);
    }
}
