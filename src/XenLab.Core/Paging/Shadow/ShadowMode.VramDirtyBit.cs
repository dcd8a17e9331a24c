// Dirty VRAM under shadow, the D-bit design (seed 003, Tim Deegan's review): find the guest's one
// writable mapping of the framebuffer by virtual address, walk its shadow L1 entries reading and
// clearing D; an entry that points elsewhere, or a mapping that is gone, backs off to "all dirty";
// a page mapped writable more than once is assumed dirty; entries made or cleared set the page's bit.
using System;
using XenLab.Diagnostics;
using XenLab.Dirty;
using XenLab.Memory;

namespace XenLab.Paging.Shadow;

public sealed partial class ShadowMode
{
    private sealed class DirtyBitStrategy : IVramStrategy
    {
        private readonly ShadowMode _m;
        public DirtyBitStrategy(ShadowMode m) => _m = m;

        public void Arm(VramRange r)
        {
            for (ulong i = 0; i < r.Pages; i++) _m._vramPages[r.BeginPfn + i] = (r, null);
        }

        public void Disarm(VramRange r)
        {
            for (ulong i = 0; i < r.Pages; i++) _m._vramPages.Remove(r.BeginPfn + i);
        }

        public bool Collect(VramRange r, Span<byte> bitmap, bool clear)
        {
            ulong? va0 = null;
            // Figure out the VA of the writable mapping of the LFB (seed 003), from the guest's tables.
            foreach (var fb in _m._domain.Framebuffers)
            {
                if (fb.FirstGfn != r.BeginPfn) continue;
                var mounts = fb.WritableMounts;
                if (mounts.Count > 0) va0 = mounts[0];
                break;
            }
            var top = _m._top[0];
            if (va0 is null || top is null) return BackOff(r, clear);
            var machine = _m._machine;
            Span<(Mfn Table, int Index, ulong Entry)> found = r.Pages <= 8192 ? new (Mfn, int, ulong)[r.Pages] : new (Mfn, int, ulong)[r.Pages];
            for (ulong i = 0; i < r.Pages; i++)
            {
                ulong va = va0.Value + (i << Page.Shift);
                ulong table = top.Smfn.Value;
                for (int level = 4; level >= 2 && table != 0; level--)
                {
                    ulong e = machine.ReadUInt64(new Mfn(table), X86Pte.IndexAt(va, level) * 8);
                    table = (e & X86Pte.Present) != 0 ? (e & X86Pte.FrameMask) >> 12 : 0;
                }
                if (table == 0) return BackOff(r, clear);                       // the mapping is gone: try the slow way
                int idx = X86Pte.IndexAt(va, 1);
                ulong sl1e = machine.ReadUInt64(new Mfn(table), idx * 8);
                if ((sl1e & X86Pte.Present) == 0) return BackOff(r, clear);
                if (!_m._domain.TryGetRam(r.BeginPfn + i, out var mfn) || (sl1e & X86Pte.FrameMask) >> 12 != mfn.Value)
                    return BackOff(r, clear);                                   // an entry pointing at the wrong place
                found[(int)i] = (new Mfn(table), idx, sl1e);
            }
            for (ulong i = 0; i < r.Pages; i++)
            {
                var (table, idx, sl1e) = found[(int)i];
                bool dirty = r.RemovedDirty[i] || (sl1e & X86Pte.Dirty) != 0;
                if (WritableMappings(r.BeginPfn + i) > 1)
                {
                    dirty = true;                                               // mapped writable more than once: assume dirty
                    _m._counters.Inc(PerfCounter.VramMultiMapDirty);
                }
                if (clear)
                {
                    if ((sl1e & X86Pte.Dirty) != 0) machine.WriteUInt64(table, idx * 8, sl1e & ~X86Pte.Dirty);
                    r.RemovedDirty[i] = false;
                }
                if (dirty) bitmap[(int)(i >> 3)] |= (byte)(1 << (int)(i & 7));
            }
            return true;
        }

        private bool BackOff(VramRange r, bool clear)
        {
            _m._counters.Inc(PerfCounter.VramDbitBackoff);
            if (clear) Array.Clear(r.RemovedDirty);
            return false;
        }

        private int WritableMappings(ulong gfn)
        {
            if (!_m._rmap.TryGetValue(gfn, out var maps)) return 0;
            int n = 0;
            foreach (var (p, x) in maps)
                if ((_m._machine.ReadUInt64(p.Smfn, x * 8) & X86Pte.Writable) != 0) n++;
            return n;
        }
    }
}
