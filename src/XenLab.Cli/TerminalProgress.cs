// Progress for xenlab on a terminal: one line on standard error, redrawn in place ("\r" and
// erase-to-end-of-line) at most ten times a second and taken down when an activity completes
// or before anything else is printed. Program.cs uses it only when neither standard output nor
// standard error is redirected, so logs and pipes never see it.
using System;
using System.Diagnostics;
using System.IO;
using System.Text;
using XenLab.Progress;

namespace XenLab.Cli;

public sealed class TerminalProgress : IProgress<LabProgress>
{
    private const string EraseLine = "\r\u001b[K";
    private static readonly long RedrawTicks = Stopwatch.Frequency / 10;
    private readonly TextWriter _terminal;
    private readonly int _width;
    private long _lastDraw = long.MinValue;
    private string _lastActivity = "";

    /// <param name="terminal">Where the line is drawn (standard error).</param>
    /// <param name="width">Columns the line may use; 0: the console's width (80 when unknown).</param>
    public TerminalProgress(TextWriter terminal, int width = 0)
    {
        _terminal = terminal;
        _width = width > 0 ? width : ConsoleWidth();
    }

    /// <summary>Whether a progress line is on the screen now.</summary>
    public bool Shown { get; private set; }

    public void Report(LabProgress value)
    {
        if (value.Completed)
        {
            Clear();
            return;
        }
        long now = Stopwatch.GetTimestamp();
        // A new activity is drawn at once; within one, at most every 100 ms.
        if (value.Activity == _lastActivity && now - _lastDraw < RedrawTicks) return;
        _lastDraw = now;
        _lastActivity = value.Activity;
        _terminal.Write(EraseLine + Line(value, _width));
        _terminal.Flush();
        Shown = true;
    }

    /// <summary>Takes the progress line down (before other output, at the end, on a stop).</summary>
    public void Clear()
    {
        if (!Shown) return;
        _terminal.Write(EraseLine);
        _terminal.Flush();
        Shown = false;
    }

    /// <summary>" 42% [########............] status - activity", cut to <paramref name="width"/> columns (numbers first, so a cut loses words).</summary>
    public static string Line(LabProgress p, int width)
    {
        var s = new StringBuilder();
        int percent = p.PercentComplete;
        if (percent >= 0)
        {
            const int Bar = 20;
            int filled = percent * Bar / 100;
            s.Append(percent.ToString(System.Globalization.CultureInfo.InvariantCulture).PadLeft(3)).Append("% [").Append('#', filled).Append('.', Bar - filled).Append("] ");
        }
        s.Append(p.Status).Append(" - ").Append(p.Activity);
        // Never wrap: a wrapped line cannot be redrawn in place.
        int max = Math.Max(10, width - 1);
        return s.Length <= max ? s.ToString() : s.ToString(0, max - 3) + "...";
    }

    private static int ConsoleWidth()
    {
        try
        {
            int w = Console.WindowWidth;
            return w > 0 ? w : 80;
        }
        catch (IOException) { return 80; }
        catch (PlatformNotSupportedException) { return 80; }
    }
}

/// <summary>Standard output that takes the progress line down before it writes, so text and bar never mix.</summary>
public sealed class ProgressAwareWriter : TextWriter
{
    private readonly TextWriter _inner;
    private readonly TerminalProgress _progress;

    public ProgressAwareWriter(TextWriter inner, TerminalProgress progress)
    {
        _inner = inner;
        _progress = progress;
    }

    public override Encoding Encoding => _inner.Encoding;
    public override IFormatProvider FormatProvider => _inner.FormatProvider;

    public override void Write(char value)
    {
        _progress.Clear();
        _inner.Write(value);
    }

    public override void Write(string? value)
    {
        _progress.Clear();
        _inner.Write(value);
    }

    public override void Write(char[] buffer, int index, int count)
    {
        _progress.Clear();
        _inner.Write(buffer, index, count);
    }

    public override void WriteLine(string? value)
    {
        _progress.Clear();
        _inner.WriteLine(value);
    }

    public override void Flush() => _inner.Flush();
}
