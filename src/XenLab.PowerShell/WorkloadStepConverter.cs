// Invoke-XenGuestCode -Step: workload steps given as hashtables, with the keys and ranges of a
// domain YAML's `workload: steps:` (PascalCase or the YAML's snake_case), so a step can move
// between a file and a command line unchanged.
using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Management.Automation;
using XenLab.Cpu.Workloads;
using XenLab.Lab;

namespace XenLab.PowerShell;

public static class WorkloadStepConverter
{
    /// <summary>The keys a step takes, as written in help and messages.</summary>
    public const string Keys = "Kind, Framebuffer, Source, X, Y, Width, Height, SourceX, SourceY, Color, ColorStep, Dx, Dy, Lines, Size, Pages";

    /// <summary>
    /// The step a hashtable describes; <see cref="ArgumentException"/> naming the step (1-based
    /// <paramref name="number"/>) and the key when a key is unknown, a value out of range or a
    /// required key missing.
    /// </summary>
    public static WorkloadStep Convert(IDictionary table, int number)
    {
        string what = $"Step {number}";
        var s = new WorkloadStep(WorkloadStepKind.Fill);
        bool sawKind = false;
        foreach (DictionaryEntry e in table)
        {
            string key = (e.Key?.ToString() ?? "").Replace("_", "", StringComparison.Ordinal).ToLowerInvariant();
            object? value = e.Value is PSObject p ? p.BaseObject : e.Value;
            switch (key)
            {
                case "kind": s = s with { Kind = Kind(value, what) }; sawKind = true; break;
                case "framebuffer": s = s with { Framebuffer = Text(value, what, "Framebuffer") }; break;
                case "source": s = s with { Source = Text(value, what, "Source") }; break;
                case "x": s = s with { X = Int(value, what, "X", 0, 16383) }; break;
                case "y": s = s with { Y = Int(value, what, "Y", 0, 16383) }; break;
                case "width": s = s with { Width = Int(value, what, "Width", 1, 16384) }; break;
                case "height": s = s with { Height = Int(value, what, "Height", 1, 16384) }; break;
                case "sourcex": s = s with { SourceX = Int(value, what, "SourceX", 0, 16383) }; break;
                case "sourcey": s = s with { SourceY = Int(value, what, "SourceY", 0, 16383) }; break;
                case "color": s = s with { Color = Color(value, what, "Color") }; break;
                case "colorstep": s = s with { ColorStep = Color(value, what, "ColorStep") }; break;
                case "dx": s = s with { Dx = Int(value, what, "Dx", 0, 16384) }; break;
                case "dy": s = s with { Dy = Int(value, what, "Dy", 0, 16384) }; break;
                case "lines": s = s with { Lines = Int(value, what, "Lines", 1, 16383) }; break;
                case "size": s = s with { Size = Int(value, what, "Size", 1, 1024) }; break;
                case "pages": s = s with { Pages = Int(value, what, "Pages", 1, GuestPrograms.MaxChurnPages) }; break;
                default: throw new ArgumentException($"{what} has the key '{e.Key}', which is not one of {Keys}.");
            }
        }
        if (!sawKind) throw new ArgumentException($"{what} has no Kind (Fill, Blit, Scroll, Cursor or PageTableChurn).");
        if (s.Kind != WorkloadStepKind.PageTableChurn && s.Framebuffer.Length == 0)
            throw new ArgumentException($"{what} ({s.Kind}) needs a Framebuffer.");
        if (s.Kind == WorkloadStepKind.Blit && (s.Width == 0 || s.Height == 0))
            throw new ArgumentException($"{what} (Blit) needs Width and Height.");
        return s;
    }

    private static WorkloadStepKind Kind(object? value, string what)
    {
        if (value is WorkloadStepKind k) return k;
        string text = value?.ToString() ?? "";
        if (text.Equals("pt-churn", StringComparison.OrdinalIgnoreCase)) return WorkloadStepKind.PageTableChurn;
        if (Enum.TryParse<WorkloadStepKind>(text, ignoreCase: true, out var kind) && Enum.IsDefined(kind) && !int.TryParse(text, out _)) return kind;
        throw new ArgumentException($"{what} has Kind '{text}'; it must be Fill, Blit, Scroll, Cursor or PageTableChurn (or pt-churn).");
    }

    private static string Text(object? value, string what, string key)
    {
        string text = value?.ToString() ?? "";
        if (text.Length == 0) throw new ArgumentException($"{what} has an empty {key}.");
        return text;
    }

    private static int Int(object? value, string what, string key, int min, int max)
    {
        long v = Number(value, what, key);
        if (v < min || v > max) throw new ArgumentException($"{what} has {key} {v}, outside the range {min} to {max}.");
        return (int)v;
    }

    /// <summary>A 32-bit colour; PowerShell reads 0xffffffff as the Int32 -1, which is taken as the colour it spells.</summary>
    private static uint Color(object? value, string what, string key)
    {
        if (value is int i) return unchecked((uint)i);
        long v = Number(value, what, key);
        if (v < int.MinValue || v > uint.MaxValue) throw new ArgumentException($"{what} has {key} {v}, more than 32 bits.");
        return unchecked((uint)v);
    }

    private static long Number(object? value, string what, string key)
    {
        try
        {
            return value switch
            {
                string t when t.StartsWith("0x", StringComparison.OrdinalIgnoreCase) => long.Parse(t.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture),
                _ => LanguagePrimitives.ConvertTo<long>(value),
            };
        }
        catch (Exception e) when (e is PSInvalidCastException or FormatException or OverflowException)
        {
            throw new ArgumentException($"{what} has {key} '{value}', which is not a number.");
        }
    }
}
