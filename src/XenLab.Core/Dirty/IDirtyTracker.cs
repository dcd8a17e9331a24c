// How a paging mode notices the first write to a page: HAP and shadow by p2m type
// (ram_logdirty, read-only until written, then ram_rw), ARM by write-protected stage-2 leaves
// whose fault handler sets a software bit in the entry itself (seed 002). Log-dirty and the
// type-based VRAM strategy are written against this interface only.
using System;

namespace XenLab.Dirty;

public interface IDirtyTracker
{
    /// <summary>Arms [start, end): the next write to each RAM page there is noticed.</summary>
    void Start(ulong startGfn, ulong endGfn);
    /// <summary>Disarms [start, end): writes run free again.</summary>
    void Stop(ulong startGfn, ulong endGfn);
    /// <summary>
    /// Sets bit i of <paramref name="bitmap"/> for each page start+i written since it was armed;
    /// with <paramref name="clear"/> re-arms those pages, flushing TLBs unless <paramref name="flush"/> is false.
    /// </summary>
    void Collect(ulong startGfn, ulong endGfn, Span<byte> bitmap, bool clear, bool flush);
}
