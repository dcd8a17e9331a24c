using System;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using XenLab.Cli;
using XenLab.Progress;

namespace XenLab.Tests;

/// <summary>xenlab's command line: help, parse errors and exit codes, completion, Ctrl+C, terminal progress.</summary>
public class XenLabCommandLineTests
{
    private static (int Code, string Output, string Error) Invoke(params string[] args) => Invoke(CancellationToken.None, args);

    private static (int Code, string Output, string Error) Invoke(CancellationToken cancel, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = new XenLabCommandLine().InvokeAsync(args, output, error, showProgress: false, cancel).GetAwaiter().GetResult();
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public void HelpListsTheLabFileAndEveryOptionTheReadmeNames()
    {
        var (code, output, error) = Invoke("--help");
        Assert.Equal(0, code);
        Assert.Equal("", error);
        Assert.Contains(" [<lab.yaml>] [options]", output);                  // after the executable's name
        foreach (string option in new[] { "--host-memory <SIZE>", "--gfn <GFN>", "--balloon <MIB|max>", "--write-config", "--workload <NAME>",
                     "--rounds <N>", "--compare-modes", "--migrate <RATIO>", "--frames <N>", "--png <DIR>", "--pictures <DIR>", "--oracle", "--steps <N>",
                     "--seeds <K>", "--variant <NAME>", "--audit-every <N>", "--no-switch", "-?, -h, --help" })
            Assert.Contains(option, output);
        Assert.Contains("130 stopped", output);                              // the exit codes are documented
        Assert.Equal(output, new XenLabCommandLine().HelpText());           // what LabRunner prints for ShowHelp
    }

    [Theory]
    [InlineData("--rounds abc", "--rounds: 'abc' is not a whole number from 1 to 1000000.")]
    [InlineData("--rounds 0", "--rounds: '0' is not a whole number from 1 to 1000000.")]
    [InlineData("--frames 100001", "--frames: '100001' is not a whole number from 1 to 100000.")]
    [InlineData("--migrate -1", "--migrate: '-1' is not a number from 0 to 100.")]
    [InlineData("--migrate lots", "--migrate: 'lots' is not a number from 0 to 100.")]
    [InlineData("--host-memory 12Q", "--host-memory: ")]
    [InlineData("--gfn 0xZZ", "--gfn: ")]
    [InlineData("--balloon none", "--balloon: ")]
    [InlineData("--workload pt-chrun", "Argument 'pt-chrun' not recognized. Must be one of:")]
    [InlineData("--frams 3", "Unknown option '--frams'; did you mean '--frames'?")]
    [InlineData("--frobnicate", "Unknown option '--frobnicate'.")]
    [InlineData("a.yaml b.yaml", "Unrecognized command or argument 'b.yaml'.")]
    [InlineData("--png", "Required argument missing for option: '--png'.")]
    [InlineData("--oracle --seeds 0", "--seeds: '0' is not a whole number from 1 to 1024.")]
    public void ABadCommandLineIsAClearErrorWithExitCode1AndNoOutput(string args, string message)
    {
        var (code, output, error) = Invoke(args.Split(' '));
        Assert.Equal(XenLabCommandLine.ExitUsage, code);
        Assert.Equal("", output);                                            // nothing was built or printed
        Assert.Contains(message, error);
        Assert.EndsWith("Try 'xenlab --help' for the options." + Environment.NewLine, error);
        Assert.DoesNotContain("Options:", error);                            // a hint, not a page of help
    }

    [Fact]
    public void LabOptionsParseThrowsTheSameMessages()
    {
        var ex = Assert.Throws<XenLabException>(() => LabOptions.Parse(new[] { "--rounds", "-5" }));
        Assert.Contains("--rounds: '-5' is not a whole number", ex.Message);
    }

    [Fact]
    public void EveryOptionLandsInLabOptions()
    {
        var o = LabOptions.Parse(new[] { "lab.yaml", "--host-memory", "8G", "--gfn", "0x10", "--gfn", "32", "--balloon", "1G", "--write-config",
            "--workload", "pte-update", "--rounds", "7", "--compare-modes", "--migrate", "0.5", "--frames", "3", "--png", "out" });
        Assert.Equal("lab.yaml", o.File);
        Assert.Equal(8UL << 30, o.HostMemoryBytes);
        Assert.Equal(new ulong[] { 0x10, 32 }, o.Samples);                    // one GFN per --gfn, in order
        Assert.Equal(1024UL, o.BalloonMiB);                                  // 1G is 1024 MiB
        Assert.True(o.WriteConfig);
        Assert.Equal("pte-update", o.Workload);
        Assert.Equal(7, o.Rounds);
        Assert.True(o.CompareModes);
        Assert.Equal(0.5, o.MigrateRatio);
        Assert.Equal(3, o.Frames);
        Assert.Equal("out", o.PngDirectory);
        Assert.False(o.ShowHelp);

        var defaults = LabOptions.Parse(Array.Empty<string>());
        Assert.Null(defaults.File);                                          // the embedded default lab
        Assert.Equal(200, defaults.Rounds);
        Assert.Null(defaults.BalloonMiB);
        Assert.Null(defaults.Frames);
        Assert.Equal(ulong.MaxValue, LabOptions.Parse(new[] { "--balloon", "max" }).BalloonMiB);
        Assert.Equal(64UL, LabOptions.Parse(new[] { "--balloon", "64" }).BalloonMiB);   // a bare number is MiB
        Assert.True(LabOptions.Parse(new[] { "-h" }).ShowHelp);
    }

    [Fact]
    public void TheSuggestDirectiveCompletesOptionsAndTheirValues()
    {
        Assert.Equal(new[] { "pt-churn", "pte-update" }, Lines(Invoke("[suggest:11]", "--workload ").Output));
        Assert.Equal(new[] { "max" }, Lines(Invoke("[suggest:10]", "--balloon ").Output));
        Assert.Contains("--compare-modes", Lines(Invoke("[suggest:4]", "--co").Output));
    }

    private static string[] Lines(string s) => s.Split(new[] { '\n', '\r' }, StringSplitOptions.RemoveEmptyEntries);

    [Fact]
    public void OracleRunsTheDirtyTrackingOracleWithItsOwnOptions()
    {
        var (code, output, error) = Invoke("--oracle", "--steps", "100", "--variant", "hap/types", "--no-switch");
        Assert.Equal(0, code);
        Assert.Equal("", error);
        Assert.Contains("1 variant(s) x 1 seed(s) x 100 step(s), mode switches off", output);
        Assert.Contains("total: 100 steps, 0 page(s) missed", output);
    }

    [Fact]
    public void OracleOnALabFileSkipsTheVariantThatSizesItsOwnDomain()
    {
        // 'hap' matches hap/types, hap/memcmp and the 2 GiB variant; on a file only the first two test the file's domain.
        string file = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"xenlab-oracle-{Guid.NewGuid():N}.yaml");
        System.IO.File.WriteAllText(file, "name: cli-oracle\nmemory: 64\nvcpus: 2\n");
        try
        {
            var (code, output, _) = Invoke("--oracle", file, "--steps", "50", "--variant", "hap", "--no-switch");
            Assert.Equal(0, code);
            Assert.Contains("on a copy of 'cli-oracle': 2 variant(s)", output);
            Assert.DoesNotContain("2 GiB", output);
            (code, output, _) = Invoke("--oracle", "--steps", "50", "--variant", "hap", "--no-switch");
            Assert.Equal(0, code);
            Assert.Contains("on a copy of 'oracle': 3 variant(s)", output);
        }
        finally { System.IO.File.Delete(file); }
    }

    [Fact]
    public void ALabErrorIsExitCode2NamingTheProblem()
    {
        var (code, _, error) = Invoke("no-such-lab.yaml");
        Assert.Equal(XenLabCommandLine.ExitLabError, code);
        Assert.StartsWith("xenlab: no-such-lab.yaml", error);
    }

    /// <summary>Output that says when a line containing <paramref name="marker"/> has been written.</summary>
    private sealed class WatchedWriter : StringWriter
    {
        private readonly string _marker;
        public readonly ManualResetEventSlim Seen = new();
        public WatchedWriter(string marker) => _marker = marker;
        public override void WriteLine(string? value)
        {
            lock (this) base.WriteLine(value);
            if (value is not null && value.Contains(_marker)) Seen.Set();
        }
        public override string ToString() { lock (this) return base.ToString(); }
    }

    [Fact]
    public async Task CtrlCStopsALongWorkloadBetweenRoundsWithExitCode130()
    {
        // Ctrl+C as System.CommandLine delivers it: the invocation's token is cancelled, here once the
        // summary is out and the million-round workload is under way.
        var output = new WatchedWriter("Counters (non-zero)");
        var error = new StringWriter();
        using var cts = new CancellationTokenSource();
        var run = new XenLabCommandLine().InvokeAsync(new[] { "--workload", "pt-churn", "--rounds", "1000000" }, output, error, showProgress: false, cts.Token);
        Assert.True(output.Seen.Wait(TimeSpan.FromSeconds(120)));
        Thread.Sleep(200);
        cts.Cancel();
        Assert.Equal(XenLabCommandLine.ExitStopped, await run.WaitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("E820", output.ToString());                          // what ran before the stop is printed
        Assert.DoesNotContain("Workload pt-churn, 1000000 rounds", output.ToString());   // the workload's result is not
        Assert.Equal("xenlab: stopped (Ctrl+C) between two whole steps; what ran is printed above." + Environment.NewLine, error.ToString());
    }

    [Fact]
    public void TerminalProgressDrawsOneLineInPlaceAndTakesItDownForOutput()
    {
        var terminal = new StringWriter();
        var progress = new TerminalProgress(terminal, width: 60);
        var output = new StringWriter();
        var writer = new ProgressAwareWriter(output, progress);
        progress.Report(new LabProgress("Workload pt-churn on domain 'lab'", "round 50 of 200", 50, 200));
        Assert.True(progress.Shown);
        Assert.Equal("\r\u001b[K 25% [#####...............] round 50 of 200 - Workload p...", terminal.ToString());   // 59 columns: never wraps
        writer.WriteLine("frame 0");
        Assert.False(progress.Shown);                                        // output first takes the line down
        Assert.EndsWith("\r\u001b[K", terminal.ToString());
        Assert.Equal("frame 0" + Environment.NewLine, output.ToString());
        progress.Report(new LabProgress("next", "open-ended", 3, 0));
        Assert.EndsWith("\r\u001b[Kopen-ended - next", terminal.ToString());   // no bar without a total
        progress.Report(new LabProgress("next", "", 3, 0, Completed: true));
        Assert.False(progress.Shown);
    }
}
