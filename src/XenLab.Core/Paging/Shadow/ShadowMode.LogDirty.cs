// Log-dirty under shadow paging as Xen does it (shadow/common.c, multi.c): no p2m types (only HAP
// uses p2m_ram_logdirty). Enabling log-dirty and every clean blow all shadow tables
// (sh_enable_log_dirty, sh_clean_dirty_bitmap) so no writable shadow entry survives; from then on
// _sh_propagate makes a shadow L1 entry for RAM writable only if the page is already dirty in the
// bitmap, or on the demand write that marks it dirty at fault time (paging_mark_dirty). Every
// later write to that page runs free until the next clean, which pays the table rebuild.
using System;
using XenLab.Diagnostics;
using XenLab.Dirty;

namespace XenLab.Paging.Shadow;

public sealed partial class ShadowMode
{
    /// <summary>
    /// One bit per gfn: tracked and clean since the last clean (what HAP calls ram_logdirty). A RAM
    /// page without it in a tracked range is dirty: written, or populated since (as ram_rw would be).
    /// </summary>
    private ulong[] _ldClean = Array.Empty<ulong>();

    public IDirtyTracker DirtyTracker => _tracker ??= new ShadowDirtyTracker(this);
    private ShadowDirtyTracker? _tracker;

    /// <summary>Tracked and not yet dirty: no writable shadow entry may map it.</summary>
    private bool LogDirtyClean(ulong gfn)
    {
        ulong w = gfn >> 6;
        return w < (ulong)_ldClean.Length && (_ldClean[w] & (1UL << (int)(gfn & 63))) != 0;
    }

    /// <summary>paging_mark_dirty: the first write to a tracked clean page since the last clean.</summary>
    private bool MarkDirty(ulong gfn)
    {
        if (!LogDirtyClean(gfn)) return false;
        _ldClean[gfn >> 6] &= ~(1UL << (int)(gfn & 63));
        _counters.Inc(PerfCounter.LogDirtyFault);
        return true;
    }

    /// <summary>The hypervisor wrote guest memory on the guest's behalf (A/D bits of a guest walk).</summary>
    internal void OnHypervisorWrite(ulong gfn) => MarkDirty(gfn);

    private void GrowLogDirty(ulong endGfn)
    {
        int words = (int)((endGfn + 63) >> 6);
        if (words > _ldClean.Length) Array.Resize(ref _ldClean, words);
    }

    /// <summary>shadow_blow_tables for log-dirty: every writable mapping goes, rebuilt on demand.</summary>
    private void BlowForLogDirty(string why)
    {
        if (_shadows.Count == 0) return;               // nothing shadowed, nothing writable
        _counters.Inc(PerfCounter.ShadowLogDirtyBlow);
        BlowTables(why);
    }

    private sealed class ShadowDirtyTracker : IDirtyTracker
    {
        private readonly ShadowMode _m;
        public ShadowDirtyTracker(ShadowMode m) => _m = m;

        public void Start(ulong startGfn, ulong endGfn)
        {
            _m.GrowLogDirty(endGfn);
            for (ulong g = startGfn; g < endGfn; g++)
                if (_m._domain.TryGetRam(g, out _)) _m._ldClean[g >> 6] |= 1UL << (int)(g & 63);
            _m.BlowForLogDirty("log-dirty enabled");      // sh_enable_log_dirty
        }

        public void Stop(ulong startGfn, ulong endGfn)
        {
            // sh_disable_log_dirty blows nothing: read-only entries become writable on their next fault.
            _m.GrowLogDirty(endGfn);
            for (ulong g = startGfn; g < endGfn; g++) _m._ldClean[g >> 6] &= ~(1UL << (int)(g & 63));
        }

        public void Collect(ulong startGfn, ulong endGfn, Span<byte> bitmap, bool clear, bool flush)
        {
            _m.GrowLogDirty(endGfn);
            for (ulong g = startGfn; g < endGfn; g++)
            {
                ulong bit = 1UL << (int)(g & 63);
                if ((_m._ldClean[g >> 6] & bit) != 0 || !_m._domain.TryGetRam(g, out _)) continue;
                ulong i = g - startGfn;
                bitmap[(int)(i >> 3)] |= (byte)(1 << (int)(i & 7));
                if (clear) _m._ldClean[g >> 6] |= bit;
            }
            // sh_clean_dirty_bitmap: write access is revoked by blowing every shadow (which flushes).
            if (clear) _m.BlowForLogDirty("log-dirty clean");
        }
    }
}
