// Numbers in lab files: decimal or 0x hex, with optional size suffixes (4K, 256M, 4G, 1T;
// KiB/MiB/GiB/TiB and KB/MB/GB/TB mean the same binary units). Underscores group digits.
using System;
using System.Globalization;

namespace XenLab.Config;

public static class SizeParser
{
    /// <summary>Parses <paramref name="text"/>; a bare number is multiplied by <paramref name="bareUnit"/>.</summary>
    public static bool TryParse(string text, ulong bareUnit, out ulong value, out string error)
    {
        value = 0;
        error = "";
        string s = text.Trim().Replace("_", "", StringComparison.Ordinal);
        if (s.Length == 0) { error = "expected a number"; return false; }
        ulong unit = bareUnit;
        string[] suffixes = { "KIB", "MIB", "GIB", "TIB", "KB", "MB", "GB", "TB", "K", "M", "G", "T" };
        bool hex = s.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
        if (!hex)
        {
            foreach (var suf in suffixes)
            {
                if (s.Length > suf.Length && s.EndsWith(suf, StringComparison.OrdinalIgnoreCase))
                {
                    unit = suf[0] switch { 'K' => 1UL << 10, 'M' => 1UL << 20, 'G' => 1UL << 30, _ => 1UL << 40 };
                    s = s[..^suf.Length].TrimEnd();
                    break;
                }
            }
        }
        ulong number;
        bool ok = hex
            ? ulong.TryParse(s.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out number)
            : ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out number);
        if (!ok)
        {
            error = $"'{DomainConfig.Shorten(text)}' is not a number (use decimal, 0x hex, or a size such as 4K, 256M, 4G)";
            return false;
        }
        if (number != 0 && unit > ulong.MaxValue / number)
        {
            error = $"'{DomainConfig.Shorten(text)}' is too large";
            return false;
        }
        value = number * unit;
        return true;
    }

    public static ulong Parse(string text, ulong bareUnit = 1) =>
        TryParse(text, bareUnit, out ulong v, out string e) ? v : throw new FormatException(e);

    /// <summary>Formats bytes as the largest exact binary unit: 0x9f000 -> "636K", 2^32 -> "4G".</summary>
    public static string FormatSize(ulong bytes)
    {
        if (bytes == 0) return "0";
        if (bytes % (1UL << 40) == 0) return (bytes >> 40).ToString(CultureInfo.InvariantCulture) + "T";
        if (bytes % (1UL << 30) == 0) return (bytes >> 30).ToString(CultureInfo.InvariantCulture) + "G";
        if (bytes % (1UL << 20) == 0) return (bytes >> 20).ToString(CultureInfo.InvariantCulture) + "M";
        if (bytes % (1UL << 10) == 0) return (bytes >> 10).ToString(CultureInfo.InvariantCulture) + "K";
        return bytes.ToString(CultureInfo.InvariantCulture);
    }
}
