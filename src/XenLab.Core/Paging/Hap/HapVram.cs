// Dirty VRAM under HAP (hap_track_dirty_vram): arming turns the range's pages ram_logdirty with
// one lazy range change; the first write to each takes the EPT violation whose handler marks it
// dirty (paging_mark_dirty) in the range's bitmap as well as making it ram_rw; a query reads that
// bitmap a 64-bit word at a time (popcount/tzcnt), turns exactly the pages found dirty back to
// ram_logdirty (p2m_change_type_one: one walk per leaf table, then a write per page; see
// HapChangeTypeOne.cs) and flushes once; the type changes are counted once per query.
// Mainline's paging_log_dirty_range finds the same pages by trying p2m_change_type_one(ram_rw
// -> ram_logdirty) on every page of the range; reading the bits marked at fault time gives the
// same answer without visiting clean pages.
using System;
using System.Buffers.Binary;
using System.Numerics;
using XenLab.Dirty;
using XenLab.Domains;
using XenLab.P2m;

namespace XenLab.Paging.Hap;

/// <summary>One range's dirty bits, marked by the log-dirty fault handler.</summary>
internal sealed class HapVramBits : IVramFaultBitmap
{
    public HapVramBits(ulong pages) => Words = new ulong[(pages + 63) / 64];
    public ulong[] Words { get; }
    public void Mark(ulong index) => Words[index >> 6] |= 1UL << (int)(index & 63);
}

internal sealed class HapVramStrategy : IVramStrategy
{
    private readonly Domain _domain;
    private readonly HapMode _mode;

    public HapVramStrategy(Domain domain, HapMode mode)
    {
        _domain = domain;
        _mode = mode;
    }

    public void Arm(VramRange r)
    {
        // Gfns logged before this range existed go out first: flushed later, they would turn a
        // page of the new range ram_rw with no range yet to mark it, and its next writes unseen.
        _mode.FlushHardwareCachedDirty();
        r.State = new HapVramBits(r.Pages);
        _domain.ChangeP2mTypes(r.BeginPfn, r.EndPfn, P2mType.RamRw, P2mType.RamLogDirty, flush: true);
    }

    public void Disarm(VramRange r)
    {
        r.State = null;
        _domain.ChangeP2mTypes(r.BeginPfn, r.EndPfn, P2mType.RamLogDirty, P2mType.RamRw, flush: true);
    }

    public bool Collect(VramRange r, Span<byte> bitmap, bool clear)
    {
        if (r.State is not HapVramBits bits) return false;              // not armed by us: all dirty
        _mode.FlushHardwareCachedDirty();                                // PML's logged gfns mark the bits first
        var words = bits.Words;
        bool needFlush = false;
        long rearmed = 0;
        var cursor = default(HapMode.LeafCursor);
        for (int w = 0; w < words.Length; w++)
        {
            ulong word = words[w];
            if (word == 0) continue;
            // Little-endian: word w is bytes 8w..8w+7 of Xen's LSB-first byte bitmap.
            if (8 * w + 8 <= bitmap.Length)
            {
                var at = bitmap.Slice(8 * w, 8);
                BinaryPrimitives.WriteUInt64LittleEndian(at, BinaryPrimitives.ReadUInt64LittleEndian(at) | word);
            }
            else for (int b = 0; 8 * w + b < bitmap.Length; b++) bitmap[8 * w + b] |= (byte)(word >> (8 * b));
            if (!clear) continue;
            words[w] = 0;
            while (word != 0)
            {
                ulong gfn = r.BeginPfn + (ulong)(w * 64 + BitOperations.TrailingZeroCount(word));
                word &= word - 1;
                // p2m_change_type_one(ram_rw -> ram_logdirty): a page already ram_logdirty again
                // (log-dirty's clean re-armed it) is left alone.
                var result = _mode.ChangeTypeOne(gfn, P2mType.RamRw, P2mType.RamLogDirty, ref cursor, ref needFlush);
                if (result == HapMode.ChangeOneResult.Changed) rearmed++;
                else if (result == HapMode.ChangeOneResult.Slow)
                {
                    cursor = default;
                    if (_mode.TypeOf(gfn) != P2mType.RamRw) continue;
                    needFlush |= _mode.SetType(gfn, P2mType.RamLogDirty);
                    rearmed++;
                }
            }
        }
        _domain.Counters.Add(Diagnostics.PerfCounter.P2mTypeChange, rearmed);
        // Always flush after a clean, re-armed pages or not (guest_flush_tlb_mask in paging_log_dirty_range):
        // a flush skipped earlier may have left writable entries behind.
        if (clear && !_domain.Vram.SkipTlbFlush) _mode.FlushTlbs();
        else if (clear && needFlush) _domain.Counters.Inc(Diagnostics.PerfCounter.VramFlushSkipped);
        return true;
    }
}
