// Where each key of a loaded configuration was written: the loader records one mark per key
// path ("memory", "framebuffers[1]", "framebuffers[1].height"), so that a problem found later
// (a cross-key check, or the build itself) can still name the file, line and column of the
// key that caused it rather than the top of the file.
using System.Collections.Generic;

namespace XenLab.Config;

/// <summary>A configuration problem and the key path it is about ("" for the document as a whole).</summary>
public readonly record struct ConfigProblem(string Key, string Message);

public sealed class ConfigSource
{
    private readonly Dictionary<string, ConfigLocation> _marks = new(System.StringComparer.Ordinal);

    public ConfigSource(string file, long rootLine, long rootColumn)
    {
        File = file;
        Root = new ConfigLocation(file, rootLine, rootColumn);
    }

    public string File { get; }
    public ConfigLocation Root { get; }

    internal void Mark(string keyPath, long line, long column) => _marks[keyPath] = new ConfigLocation(File, line, column);

    /// <summary>
    /// The position of <paramref name="keyPath"/>, or of its nearest enclosing key that was
    /// written ("framebuffers[3].width" falls back to "framebuffers[3]", then "framebuffers"),
    /// or the document's root.
    /// </summary>
    public ConfigLocation Locate(string? keyPath)
    {
        string? k = keyPath;
        while (!string.IsNullOrEmpty(k))
        {
            if (_marks.TryGetValue(k, out var at)) return at;
            int cut = System.Math.Max(k.LastIndexOf('.'), k.LastIndexOf('['));
            k = cut > 0 ? k[..cut] : null;
        }
        return Root;
    }
}
