// Dirty tracking by p2m type, as HAP does it (and shadow, whose entries follow the types):
// armed pages are ram_logdirty (read-only); the first write takes a violation that turns the
// page back to ram_rw; collecting reads which armed pages are ram_rw and, to clear, turns
// them back to ram_logdirty and flushes (mainline's hap_track_dirty_vram, SPEC 2).
using System;
using System.Collections.Generic;
using XenLab.Domains;
using XenLab.P2m;

namespace XenLab.Dirty;

public sealed class TypeDirtyTracker : IDirtyTracker
{
    private readonly Domain _domain;

    public TypeDirtyTracker(Domain domain) => _domain = domain;

    public void Start(ulong startGfn, ulong endGfn) =>
        _domain.ChangeP2mTypes(startGfn, endGfn, P2mType.RamRw, P2mType.RamLogDirty, flush: true);

    public void Stop(ulong startGfn, ulong endGfn) =>
        _domain.ChangeP2mTypes(startGfn, endGfn, P2mType.RamLogDirty, P2mType.RamRw, flush: true);

    public void Collect(ulong startGfn, ulong endGfn, Span<byte> bitmap, bool clear, bool flush)
    {
        var written = new List<ulong>();
        for (ulong g = startGfn; g < endGfn; g++)
        {
            // Armed pages are ram_logdirty; one that is ram_rw again was written.
            if (_domain.GetP2mType(g) != P2mType.RamRw) continue;
            ulong i = g - startGfn;
            bitmap[(int)(i >> 3)] |= (byte)(1 << (int)(i & 7));
            written.Add(g);
        }
        if (clear && written.Count > 0) _domain.ChangeP2mTypes(written, P2mType.RamRw, P2mType.RamLogDirty, flush: false);
        // Always flush after a clean, written pages or not (hap_clean_vram_tracking_range's flush_tlb_mask):
        // a flush skipped earlier may have left writable entries behind.
        if (clear && flush) _domain.Mode!.FlushTlbs();
    }
}
