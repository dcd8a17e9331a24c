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

/// <summary>
/// A tracker whose mode marks log-dirty's bitmap tree at fault time (paging_mark_dirty) and arms,
/// cleans and disarms the whole domain with one global type change (HAP, hap.c's log_dirty ops):
/// log-dirty then never walks the domain's pages.
/// </summary>
public interface IGlobalDirtyTracker : IDirtyTracker
{
    void StartGlobal();
    void StopGlobal();
    /// <summary>p2m_flush_hardware_cached_dirty: what the CPU logged (PML) goes into the bitmap first.</summary>
    void FlushHardwareCachedDirty();
    /// <summary>Re-arms every page written since the last clean.</summary>
    void CleanGlobal(bool flush);
}
