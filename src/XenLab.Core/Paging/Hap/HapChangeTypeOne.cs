// p2m_change_type_one on the EPT, for the loops that change one page at a time over many pages:
// the PML flush (vmx_vcpu_flush_pml_buffer: each logged gfn ram_logdirty -> ram_rw) and the
// dirty-VRAM query's re-arm (ram_rw -> ram_logdirty for each page found dirty). One walk finds
// the leaf table, and the next gfn under the same table reuses it (pages come in ascending or
// write order, so most of a frame's dirty pages share a few tables). Whatever is not a plain
// leaf under plain tables (a superpage, a hole, an entry marked for recalculation on the way or
// on the leaf) answers Slow, and the caller takes the general path, which resolves the marks
// first as ept_set_entry does.
using System;
using System.Buffers.Binary;
using XenLab.P2m;

namespace XenLab.Paging.Hap;

public sealed partial class HapMode
{
    /// <summary>The leaf table a run of single-page changes found last (default: none).</summary>
    internal struct LeafCursor
    {
        /// <summary>gfn &gt;&gt; 9 of the table's region, plus one (0: none).</summary>
        internal ulong Region;
        internal byte[]? Table;
    }

    internal enum ChangeOneResult
    {
        /// <summary>The type was <c>from</c> and is now <c>to</c>.</summary>
        Changed,
        /// <summary>The type was not <c>from</c> (p2m_change_type_one's -EBUSY): nothing written.</summary>
        NotFrom,
        /// <summary>Not a plain leaf under plain tables: nothing done, use the general path.</summary>
        Slow,
    }

    /// <summary>
    /// Changes gfn's type from <paramref name="from"/> to <paramref name="to"/> (changeable RAM
    /// types) if it is <paramref name="from"/>, writing the leaf ept_p2m_type_to_flags gives the
    /// new type. <paramref name="needFlush"/> is set when the change removed a right (a cached
    /// translation may be stale); an added right only drops the gfn from the nested-walk caches.
    /// </summary>
    internal ChangeOneResult ChangeTypeOne(ulong gfn, P2mType from, P2mType to, ref LeafCursor cursor, ref bool needFlush)
    {
        ulong region = (gfn >> 9) + 1;
        var table = cursor.Table;
        if (cursor.Region != region || table is null)
        {
            table = _ept!.PlainLeafTable(gfn);
            cursor = new LeafCursor { Region = table is null ? 0 : region, Table = table };
            if (table is null) return ChangeOneResult.Slow;
        }
        var slot = table.AsSpan((int)(gfn & 511) * 8, 8);
        ulong have = BinaryPrimitives.ReadUInt64LittleEndian(slot);
        if (!EptEntry.IsPresent(have) || (have & EptEntry.Recalc) != 0 || EptEntry.IsMisconfigured(have)) return ChangeOneResult.Slow;
        if (EptEntry.TypeOf(have) != from) return ChangeOneResult.NotFrom;
        ulong want = _ept!.LeafFor(EptEntry.FrameOf(have), to);
        BinaryPrimitives.WriteUInt64LittleEndian(slot, want);
        if (RemovesRight(have, want)) needFlush = true;
        else InvalidateCached(gfn);
        return ChangeOneResult.Changed;
    }

    /// <summary>
    /// Whether rewriting a leaf from <paramref name="have"/> to <paramref name="want"/> can leave a
    /// stale cached translation: a right removed, or (with PML) a D bit cleared, since a TLB entry
    /// that saw it set would let writes by unlogged.
    /// </summary>
    private bool RemovesRight(ulong have, ulong want) =>
        !EptEntry.IsPresent(have) || ((have & EptEntry.Rwx) & ~(want & EptEntry.Rwx)) != 0
        || (_pml && (have & EptEntry.Dirty) != 0 && (want & EptEntry.Dirty) == 0);
}
