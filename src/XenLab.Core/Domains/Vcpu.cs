// A virtual CPU: control registers that matter to paging, its own TLB, and guest-virtual
// access through the TLB and the guest walker. Faults are results, never exceptions.
using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using XenLab.Diagnostics;
using XenLab.Memory;
using XenLab.Paging;

namespace XenLab.Domains;

/// <summary>Outcome of a guest-virtual access spanning one or more pages.</summary>
public readonly record struct VirtualAccessResult(TranslateStatus Status, ulong FaultAddress, PageFaultErrorCode ErrorCode, ulong BadGfn)
{
    public bool IsOk => Status == TranslateStatus.Ok;
    public override string ToString() => Status switch
    {
        TranslateStatus.Ok => "ok",
        TranslateStatus.PageFault => $"#PF at 0x{FaultAddress:x} error code 0x{(uint)ErrorCode:x} ({ErrorCode})",
        TranslateStatus.NonCanonical => $"#GP: 0x{FaultAddress:x} is not a canonical address",
        _ => $"gfn 0x{BadGfn:x} has no p2m entry (translating 0x{FaultAddress:x})",
    };
}

public sealed class Vcpu
{
    private readonly Domain _domain;
    private readonly Tlb _tlb;

    internal Vcpu(Domain domain, int id, int tlbEntries)
    {
        _domain = domain;
        Id = id;
        _tlb = new Tlb(tlbEntries);
    }

    public int Id { get; }
    public Domain Domain => _domain;
    public Tlb Tlb => _tlb;
    public ulong Cr3 { get; private set; }
    /// <summary>CR2: the linear address of the last page fault.</summary>
    public ulong Cr2 { get; private set; }
    /// <summary>CR0.WP: supervisor writes honour read-only pages (Linux sets it).</summary>
    public bool WriteProtect { get; set; } = true;
    /// <summary>EFER.NXE: the NX bit is honoured (otherwise it is reserved).</summary>
    public bool NoExecuteEnable { get; set; } = true;

    /// <summary>mov cr3: loads a new top-level table and flushes the TLB (no PCID, no global pages kept).</summary>
    public void LoadCr3(ulong cr3)
    {
        Cr3 = cr3;
        FlushTlb();
    }

    public void FlushTlb()
    {
        _tlb.FlushAll();
        _domain.Counters.Inc(PerfCounter.TlbFlushAll);
    }

    public void InvalidatePage(ulong va)
    {
        _tlb.Invalidate(va);
        _domain.Counters.Inc(PerfCounter.TlbFlushPage);
    }

    /// <summary>
    /// Translates one address as the CPU would: a TLB hit with sufficient rights costs no
    /// walk; a write through an entry whose dirty bit is clear walks again to set it; a miss
    /// or a rights failure walks (so a fault is never raised from a stale entry alone).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Translation Translate(ulong va, AccessKind access)
    {
        ref var e = ref _tlb.Slot(va);
        if (Tlb.Matches(e, va) && RightsAllow(e.Flags, access))
        {
            _domain.Counters.Inc(PerfCounter.TlbHit);
            return new Translation(TranslateStatus.Ok, va, e.Gfn, PageFaultErrorCode.None, 0);
        }
        if (Tlb.Matches(e, va) && (access & AccessKind.Write) != 0 && (e.Flags & X86Pte.Dirty) == 0 && RightsAllow(e.Flags | X86Pte.Dirty, access))
            _domain.Counters.Inc(PerfCounter.TlbDirtyRewalk);
        else
            _domain.Counters.Inc(PerfCounter.TlbMiss);
        return TranslateSlow(va, access);
    }

    private Translation TranslateSlow(ulong va, AccessKind access)
    {
        var t = GuestWalker.Walk(_domain, Cr3, WriteProtect, NoExecuteEnable, va, access, out ulong rights, out int shift);
        if (t.IsOk) _tlb.Fill(va, t.Gfn, rights, shift);
        else
        {
            _tlb.Invalidate(va);       // a fault drops the entry for that address, as on hardware
            if (t.Status == TranslateStatus.PageFault) Cr2 = va;
        }
        return t;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool RightsAllow(ulong rights, AccessKind access)
    {
        bool user = (access & AccessKind.User) != 0;
        if ((access & AccessKind.Write) != 0)
        {
            if ((rights & X86Pte.Dirty) == 0) return false;                       // must walk to set D
            if ((rights & X86Pte.Writable) == 0 && (user || WriteProtect)) return false;
        }
        if (user && (rights & X86Pte.User) == 0) return false;
        if ((access & AccessKind.Fetch) != 0 && NoExecuteEnable && (rights & X86Pte.NoExecute) != 0) return false;
        return true;
    }

    /// <summary>A walk with every entry it reads, for display; does not use or fill the TLB.</summary>
    public Translation Explain(ulong va, AccessKind access, List<WalkStep> steps) =>
        GuestWalker.Walk(_domain, Cr3, WriteProtect, NoExecuteEnable, va, access, out _, out _, steps);

    /// <summary>Reads guest-virtual memory; all pages are translated before any byte moves.</summary>
    public VirtualAccessResult ReadVirtual(ulong va, Span<byte> destination, AccessKind privilege = AccessKind.Read)
    {
        int pages = PagesSpanned(va, destination.Length);
        Span<ulong> gfns = pages <= 64 ? stackalloc ulong[pages] : new ulong[pages];
        var check = TranslateAll(va, destination.Length, privilege & AccessKind.User, gfns);
        if (!check.IsOk) return check;
        int done = 0;
        for (int p = 0; done < destination.Length; p++)
        {
            ulong addr = va + (ulong)done;
            int off = (int)(addr & Page.OffsetMask);
            int n = Math.Min(Page.Size - off, destination.Length - done);
            _domain.ReadPhysical((gfns[p] << Page.Shift) | (uint)off, destination.Slice(done, n));
            _domain.Counters.Inc(PerfCounter.GuestVirtRead);
            done += n;
        }
        return check;
    }

    /// <summary>Writes guest-virtual memory; all pages are translated (and so checked) before any byte moves.</summary>
    public VirtualAccessResult WriteVirtual(ulong va, ReadOnlySpan<byte> source, AccessKind privilege = AccessKind.Read)
    {
        var access = AccessKind.Write | (privilege & AccessKind.User);
        int pages = PagesSpanned(va, source.Length);
        Span<ulong> gfns = pages <= 64 ? stackalloc ulong[pages] : new ulong[pages];
        var check = TranslateAll(va, source.Length, access, gfns);
        if (!check.IsOk) return check;
        int done = 0;
        for (int p = 0; done < source.Length; p++)
        {
            ulong addr = va + (ulong)done;
            int off = (int)(addr & Page.OffsetMask);
            int n = Math.Min(Page.Size - off, source.Length - done);
            _domain.WritePhysical((gfns[p] << Page.Shift) | (uint)off, source.Slice(done, n));
            _domain.Counters.Inc(PerfCounter.GuestVirtWrite);
            done += n;
        }
        return check;
    }

    private static int PagesSpanned(ulong va, int length) =>
        length == 0 ? 0 : (int)(((va + (ulong)length - 1) >> Page.Shift) - (va >> Page.Shift) + 1);

    private VirtualAccessResult TranslateAll(ulong va, int length, AccessKind access, Span<ulong> gfns)
    {
        if (va + (ulong)length < va && length != 0)
            return new VirtualAccessResult(TranslateStatus.NonCanonical, va, 0, 0);
        for (int p = 0; p < gfns.Length; p++)
        {
            ulong addr = p == 0 ? va : ((va & ~Page.OffsetMask) + ((ulong)p << Page.Shift));
            if (!X86Pte.IsCanonical(addr))
                return new VirtualAccessResult(TranslateStatus.NonCanonical, addr, 0, 0);
            var t = Translate(addr, access);
            if (!t.IsOk) return new VirtualAccessResult(t.Status, addr, t.ErrorCode, t.Gfn);
            if (_domain.Classify(t.Gfn) == PhysAccessStatus.Missing)
                return new VirtualAccessResult(TranslateStatus.PhysicalMissing, addr, 0, t.Gfn);
            gfns[p] = t.Gfn;
        }
        return default;
    }

    public override string ToString() => $"{_domain.Name} vcpu{Id}";
}
