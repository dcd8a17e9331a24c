// xenlab's command line, through System.CommandLine: help (--help), parse errors with typo
// suggestions, tab completion ([suggest] directive, dotnet-suggest), response files and Ctrl+C
// handed to the run as a CancellationToken. Every option is declared once, below, together with
// where its value lands in LabOptions: adding an option is one Add(...) call in the constructor.
using System;
using System.Collections.Generic;
using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using System.Globalization;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using XenLab.Config;
using XenLab.Domains;
using XenLab.Lab;

namespace XenLab.Cli;

public sealed class XenLabCommandLine
{
    /// <summary>Exit codes: 0 done, 1 the command line is wrong, 2 the lab failed, 130 stopped by Ctrl+C.</summary>
    public const int ExitOk = 0, ExitUsage = 1, ExitLabError = 2, ExitStopped = 130;

    private readonly List<Action<ParseResult, LabOptions>> _binders = new();

    public RootCommand Root { get; }

    /// <summary>The positional lab file; none: the embedded default lab.</summary>
    public Argument<string?> LabFile { get; } = new("lab.yaml")
    {
        HelpName = "lab.yaml",
        Description = "A domain file (see README, 'YAML reference'); none: the embedded default lab",
        Arity = ArgumentArity.ZeroOrOne,
    };

    public XenLabCommandLine()
    {
        Root = new RootCommand(
            "Builds a XenLab domain from a YAML file (or the embedded default lab) and prints its E820, p2m lookups, " +
            "p2m tree pages and counters, then runs what the options ask for. Long work shows progress on a terminal; " +
            "Ctrl+C stops it between whole steps. Exit codes: 0 done, 1 bad command line, 2 lab error, 130 stopped.");
        LabFile.CompletionSources.Add(_ => YamlFilesNearby());
        // System.CommandLine would take an unknown option for the file name: name it as what it is.
        LabFile.Validators.Add(r =>
        {
            if (r.Tokens.Count > 0 && r.Tokens[0].Value.StartsWith('-')) r.AddError(UnknownOption(r.Tokens[0].Value));
        });
        Root.Arguments.Add(LabFile);
        _binders.Add((r, o) => o.File = r.GetValue(LabFile));

        // The options, in the order --help lists them. One Add per option: its declaration, then where it lands.
        Add(new Option<ulong>("--host-memory")
        {
            HelpName = "SIZE",
            Description = "Host machine memory (default 64G; frames cost nothing until written)",
            CustomParser = Size("--host-memory", 1UL << 20),
        }, (o, v) => o.HostMemoryBytes = v);
        Add(new Option<ulong[]>("--gfn")
        {
            HelpName = "GFN",
            Description = "Look this gfn up in the p2m (repeatable; default: samples around every E820 boundary)",
            CustomParser = r => Array.ConvertAll(TokenValues(r), t => ParseSize(r, "--gfn", t, 1)),   // one GFN per --gfn: AllowMultipleArgumentsPerToken is off
        }, (o, v) => o.Samples.AddRange(v));
        Add(new Option<ulong>("--balloon")
        {
            HelpName = "MIB|max",
            Description = "After build, balloon the domain to MIB ('max': all E820 RAM) and report what the guest's driver meets",
            CustomParser = r => r.Tokens[0].Value == "max" ? ulong.MaxValue : ParseSize(r, "--balloon", r.Tokens[0].Value, 1UL << 20) >> 20,
        }.WithCompletions("max"), (o, v) => o.BalloonMiB = v);
        Add(new Option<bool>("--write-config")
        {
            Description = "Print the domain's configuration back as YAML",
        }, (o, v) => o.WriteConfig = v);
        Add(new Option<string>("--workload")
        {
            HelpName = "NAME",
            Description = "Run a built-in memory workload on the domain and print what it cost",
        }.AcceptOnly(MemoryWorkloads.Names), (o, v) => o.Workload = v);
        Add(new Option<int>("--rounds")
        {
            HelpName = "N",
            Description = "Rounds of the workload (default 200)",
            CustomParser = Count("--rounds", 1, 1_000_000),
        }, (o, v) => o.Rounds = v);
        Add(new Option<bool>("--compare-modes")
        {
            Description = "Run the workload on a fresh copy of the domain in every paging mode and setting",
        }, (o, v) => o.CompareModes = v);
        Add(new Option<double>("--migrate")
        {
            HelpName = "RATIO",
            Description = "Pre-copy live migration over log-dirty; the guest writes RATIO times per page sent (0 to 100)",
            CustomParser = Ratio("--migrate"),
        }, (o, v) => o.MigrateRatio = v);
        Add(new Option<int>("--frames")
        {
            HelpName = "N",
            Description = "Run N frames of the domain's guest workload (YAML 'workload:'; default its 'frames')",
            CustomParser = Count("--frames", 1, 100_000),
        }, (o, v) => o.Frames = v);
        Add(new Option<string>("--png")
        {
            HelpName = "DIR",
            Description = "Write every framebuffer as a PNG per frame into DIR, dirty regions outlined",
        }, (o, v) => o.PngDirectory = v);
        Add(new Option<string>("--pictures")
        {
            HelpName = "DIR",
            Description = "Write the run's pictures into DIR: p2m tree, a walk per mode, dirty map and charts",
        }, (o, v) => o.PicturesDirectory = v);

        // The dirty-tracking oracle (OracleCommand.cs): declared here for help, checking and completion;
        // with --oracle the run is OracleCommand's, which reads these from the arguments itself.
        Add(new Option<bool>("--oracle")
        {
            Description = "Run the dirty-tracking oracle on a copy of the domain instead (the options below)",
        }, (o, v) => o.Oracle = v);
        Add(new Option<long>("--steps") { HelpName = "N", Description = "Oracle: operations per run (default 10000)", CustomParser = Count("--steps", 0L, long.MaxValue) }, (_, _) => { });
        Add(new Option<long>("--seed") { HelpName = "S", Description = "Oracle: first seed (default 1)", CustomParser = Count("--seed", 0L, int.MaxValue) }, (_, _) => { });
        Add(new Option<long>("--seeds") { HelpName = "K", Description = "Oracle: run K seeds per variant, in parallel (default 1)", CustomParser = Count("--seeds", 1L, 1024) }, (_, _) => { });
        Add(new Option<string[]>("--variant") { HelpName = "NAME", Description = "Oracle: only variants whose name contains NAME (repeatable)" }, (_, _) => { });
        Add(new Option<long>("--audit-every") { HelpName = "N", Description = "Oracle: run the paging audit every N steps (default 16)", CustomParser = Count("--audit-every", 1L, int.MaxValue) }, (_, _) => { });
        Add(new Option<bool>("--no-switch") { Description = "Oracle: no paging-mode switches among the operations" }, (_, _) => { });
    }

    /// <summary>Declares an option and where its value lands in <see cref="LabOptions"/> (only when it was given).</summary>
    public void Add<T>(Option<T> option, Action<LabOptions, T> apply)
    {
        Root.Options.Add(option);
        _binders.Add((r, o) =>
        {
            if (r.GetResult(option) is { Implicit: false }) apply(o, r.GetValue(option)!);
        });
    }

    /// <summary>The options a parse without errors asks for.</summary>
    public LabOptions ToOptions(ParseResult result)
    {
        var o = new LabOptions();
        foreach (var bind in _binders) bind(result, o);
        o.ShowHelp = result.Action is HelpAction;
        return o;
    }

    /// <summary>What --help prints.</summary>
    public string HelpText()
    {
        var w = new StringWriter();
        Root.Parse("--help").Invoke(new InvocationConfiguration { Output = w });
        return w.ToString();
    }

    /// <summary>
    /// Parses <paramref name="args"/> and runs the lab (on a worker thread, so that Ctrl+C, which
    /// System.CommandLine turns into the token's cancellation, reaches it at its next safe point).
    /// Help, version, [suggest] and parse errors are System.CommandLine's own actions.
    /// </summary>
    /// <param name="showProgress">Draw progress on <paramref name="error"/> (a terminal); off when output is redirected.</param>
    public Task<int> InvokeAsync(IReadOnlyList<string> args, TextWriter output, TextWriter error, bool showProgress, CancellationToken cancel = default)
    {
        string[] raw = new List<string>(args).ToArray();
        Root.SetAction((parse, token) => Task.Run(() => Run(ToOptions(parse), raw, output, error, showProgress, token), CancellationToken.None));
        var config = new InvocationConfiguration
        {
            Output = output,
            Error = error,
            // Ctrl+C cancels the token; a run reaches a safe point well within this (a frame, a round, 64 Ki pages).
            ProcessTerminationTimeout = TimeSpan.FromSeconds(30),
        };
        var parse = Root.Parse(args);
        if (parse.Action is ParseErrorAction errors)
        {
            errors.ShowHelp = false;                       // the error and a hint, not a page of help
            errors.ShowTypoCorrections = false;            // UnknownOption suggests; a stray value gets no nonsense suggestion
        }
        return InvokeAsync(parse, config, error, cancel);
    }

    private static async Task<int> InvokeAsync(ParseResult parse, InvocationConfiguration config, TextWriter error, CancellationToken cancel)
    {
        int code = await parse.InvokeAsync(config, cancel).ConfigureAwait(false);
        if (parse.Errors.Count > 0) error.WriteLine("Try 'xenlab --help' for the options.");
        return code;
    }

    private static int Run(LabOptions o, string[] args, TextWriter output, TextWriter error, bool showProgress, CancellationToken cancel)
    {
        TerminalProgress? progress = showProgress ? new TerminalProgress(error) : null;
        TextWriter text = progress is null ? output : new ProgressAwareWriter(output, progress);
        try
        {
            if (o.Oracle) return OracleCommand.Run(args, text);
            return LabRunner.Run(o, text, progress, cancel);
        }
        catch (XenLabException e)
        {
            progress?.Clear();
            error.WriteLine("xenlab: " + e.Message);
            return ExitLabError;
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            progress?.Clear();
            text.Flush();
            error.WriteLine("xenlab: stopped (Ctrl+C) between two whole steps; what ran is printed above.");
            return ExitStopped;
        }
        finally
        {
            text.Flush();
        }
    }

    /// <summary>"Unknown option '--frams'; did you mean '--frames'?" (the nearest name within two edits).</summary>
    private string UnknownOption(string token)
    {
        string? best = null;
        int bestDistance = 3;
        foreach (var option in Root.Options)
        {
            int d = EditDistance(token, option.Name);
            if (d < bestDistance) { bestDistance = d; best = option.Name; }
        }
        return best is null ? $"Unknown option '{token}'." : $"Unknown option '{token}'; did you mean '{best}'?";
    }

    private static int EditDistance(string a, string b)
    {
        var row = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) row[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            int diagonal = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (a[i - 1] == b[j - 1] ? 0 : 1));
                diagonal = above;
            }
        }
        return row[b.Length];
    }

    private static ulong ParseSize(ArgumentResult r, string option, string text, ulong bareUnit)
    {
        if (SizeParser.TryParse(text, bareUnit, out ulong v, out string e)) return v;
        r.AddError($"{option}: {e}.");
        return 0;
    }

    private static Func<ArgumentResult, ulong> Size(string option, ulong bareUnit) =>
        r => ParseSize(r, option, r.Tokens[0].Value, bareUnit);

    private static Func<ArgumentResult, int> Count(string option, int min, int max)
    {
        var parse = Count(option, (long)min, max);
        return r => (int)parse(r);
    }

    private static Func<ArgumentResult, long> Count(string option, long min, long max) => r =>
    {
        string t = r.Tokens[0].Value;
        if (!SizeParser.TryParse(t, 1, out ulong v, out _) || v > (ulong)long.MaxValue || (long)v < min || (long)v > max)
        {
            r.AddError(string.Create(CultureInfo.InvariantCulture, $"{option}: '{t}' is not a whole number from {min} to {max}."));
            return 0;
        }
        return (long)v;
    };

    private static Func<ArgumentResult, double> Ratio(string option) => r =>
    {
        string t = r.Tokens[0].Value;
        if (!double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !(v >= 0 && v <= 100))
        {
            r.AddError($"{option}: '{t}' is not a number from 0 to 100.");
            return 0;
        }
        return v;
    };

    private static string[] TokenValues(ArgumentResult r)
    {
        var values = new string[r.Tokens.Count];
        for (int i = 0; i < values.Length; i++) values[i] = r.Tokens[i].Value;
        return values;
    }

    /// <summary>Completions for the lab file: YAML files here and in labs/*/.</summary>
    private static IEnumerable<string> YamlFilesNearby()
    {
        var found = new List<string>();
        try
        {
            foreach (string f in Directory.EnumerateFiles(".", "*.yaml")) found.Add(Path.GetRelativePath(".", f));
            if (Directory.Exists("labs"))
                foreach (string f in Directory.EnumerateFiles("labs", "*.yaml", SearchOption.AllDirectories)) found.Add(f);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        found.Sort(StringComparer.Ordinal);
        return found;
    }
}

internal static class OptionExtensions
{
    public static Option<T> WithCompletions<T>(this Option<T> option, params string[] values)
    {
        option.CompletionSources.Add(values);
        return option;
    }

    public static Option<string> AcceptOnly(this Option<string> option, string[] values)
    {
        option.AcceptOnlyFromAmong(values);
        return option;
    }
}
