// A set of gfns kept as sorted, disjoint, merged [start, end) ranges: which gfns the ARM mode
// is dirty-tracing. Few ranges (a domain, a few framebuffers), so lookups are a short scan.
using System.Collections.Generic;

namespace XenLab.Paging.Arm;

public sealed class GfnRanges
{
    private readonly List<(ulong Start, ulong End)> _ranges = new();

    public IReadOnlyList<(ulong Start, ulong End)> Ranges => _ranges;
    public bool IsEmpty => _ranges.Count == 0;

    public bool Contains(ulong gfn)
    {
        foreach (var (s, e) in _ranges)
        {
            if (gfn < s) return false;
            if (gfn < e) return true;
        }
        return false;
    }

    public void Add(ulong start, ulong end)
    {
        if (start >= end) return;
        var merged = new List<(ulong, ulong)>(_ranges.Count + 1);
        bool placed = false;
        foreach (var (s, e) in _ranges)
        {
            if (e < start) { merged.Add((s, e)); continue; }
            if (s > end)
            {
                if (!placed) { merged.Add((start, end)); placed = true; }
                merged.Add((s, e));
                continue;
            }
            start = System.Math.Min(start, s);       // overlapping or touching: absorb
            end = System.Math.Max(end, e);
        }
        if (!placed) merged.Add((start, end));
        _ranges.Clear();
        _ranges.AddRange(merged);
    }

    public void Remove(ulong start, ulong end)
    {
        if (start >= end) return;
        var kept = new List<(ulong, ulong)>(_ranges.Count + 1);
        foreach (var (s, e) in _ranges)
        {
            if (e <= start || s >= end) { kept.Add((s, e)); continue; }
            if (s < start) kept.Add((s, start));
            if (e > end) kept.Add((end, e));
        }
        _ranges.Clear();
        _ranges.AddRange(kept);
    }

    public void Clear() => _ranges.Clear();
}
