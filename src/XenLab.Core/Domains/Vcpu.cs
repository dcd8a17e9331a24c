// A virtual CPU: control registers that matter to paging, its own TLB, and guest-virtual
// access through the TLB and the domain's paging mode. Faults are results, never exceptions.
using System;
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
        TranslateStatus.P2mReadOnly => $"write to 0x{FaultAddress:x} discarded: gfn 0x{BadGfn:x} is read-only in the p2m",
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
    private Cpu.X86Cpu? _cpu;
    /// <summary>The x86-64 interpreter's state for this vCPU (registers, flags, decode cache), made on first use.</summary>
    public Cpu.X86Cpu Cpu => _cpu ?? System.Threading.Interlocked.CompareExchange(ref _cpu, new Cpu.X86Cpu(this), null) ?? _cpu;
    public Tlb Tlb => _tlb;
    public ulong Cr3 { get; private set; }
    /// <summary>CR2: the linear address of the last page fault.</summary>
    public ulong Cr2 { get; private set; }
    /// <summary>CR0.WP: supervisor writes honour read-only pages (Linux sets it).</summary>
    public bool WriteProtect { get; set; } = true;
    /// <summary>EFER.NXE: the NX bit is honoured (otherwise it is reserved).</summary>
    public bool NoExecuteEnable { get; set; } = true;

    /// <summary>mov cr3: loads a new top-level table, flushes the TLB (no PCID) and tells the mode.</summary>
    public void LoadCr3(ulong cr3)
    {
        using var op = _domain.EnterOperation();
        LoadCr3InOperation(cr3);
    }

    // The *InOperation forms are what a guest run calls per instruction: the run already holds
    // the domain's operation (Domain.EnterOperation), so they take nothing.
    internal void LoadCr3InOperation(ulong cr3)
    {
        Cr3 = cr3;
        FlushTlbInOperation();
        _domain.Counters.Inc(PerfCounter.Cr3Load);
        _domain.Mode?.OnCr3Load(this);
    }

    /// <summary>Sets CR3 without side effects; for a mode switch that rebuilds everything anyway.</summary>
    internal void SetCr3Raw(ulong cr3) => Cr3 = cr3;

    public void FlushTlb()
    {
        using var op = _domain.EnterOperation();
        FlushTlbInOperation();
    }

    internal void FlushTlbInOperation()
    {
        _tlb.FlushAll();
        _domain.Counters.Inc(PerfCounter.TlbFlushAll);
    }

    /// <summary>invlpg: drops the TLB entry and tells the mode (shadow zaps its entry for the address).</summary>
    public void InvalidatePage(ulong va)
    {
        using var op = _domain.EnterOperation();
        InvalidatePageInOperation(va);
    }

    internal void InvalidatePageInOperation(ulong va)
    {
        _tlb.Invalidate(va);
        _domain.Counters.Inc(PerfCounter.TlbFlushPage);
        _domain.Mode?.OnInvlpg(this, va);
    }

    /// <summary>
    /// Translates one address as the CPU would: a TLB hit with sufficient rights costs no walk;
    /// a write through an entry whose dirty bit is clear walks again to set it; a miss or a
    /// rights failure goes to the paging mode (so a fault is never raised from a stale entry alone).
    /// </summary>
    public Translation Translate(ulong va, AccessKind access)
    {
        using var op = _domain.EnterOperation();
        return TranslateInOperation(va, access);
    }

    /// <summary>The same, for a caller already inside an operation (the interpreter, on every access).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal Translation TranslateInOperation(ulong va, AccessKind access)
    {
        ref var e = ref _tlb.Slot(va);
        if (Tlb.Matches(e, va))
        {
            if (RightsAllow(e.Flags, access))
            {
                _domain.Counters.Inc(PerfCounter.TlbHit);
                return new Translation(TranslateStatus.Ok, va, e.Gfn, e.Mfn, e.Flags, e.PageShift, PageFaultErrorCode.None, 0);
            }
            _domain.Counters.Inc((access & AccessKind.Write) != 0 && (e.Flags & TlbRights.Dirty) == 0
                ? PerfCounter.TlbDirtyRewalk : PerfCounter.TlbMiss);
        }
        else
        {
            _domain.Counters.Inc(PerfCounter.TlbMiss);
        }
        return TranslateSlow(va, access);
    }

    private Translation TranslateSlow(ulong va, AccessKind access)
    {
        var t = _domain.Mode!.Translate(this, va, access);
        if (t.IsOk) _tlb.Fill(va, t.Gfn, t.Mfn, t.Rights, t.PageShift);
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
            if ((rights & (TlbRights.Dirty | TlbRights.HostWritable)) != (TlbRights.Dirty | TlbRights.HostWritable)) return false;
            if ((rights & TlbRights.Writable) == 0 && (user || WriteProtect)) return false;
        }
        if (user && (rights & TlbRights.User) == 0) return false;
        if ((access & AccessKind.Fetch) != 0 && NoExecuteEnable && (rights & TlbRights.NoExecute) != 0) return false;
        return true;
    }

    /// <summary>A translation with every entry it reads, for display; does not use or fill the TLB.</summary>
    public Translation Explain(ulong va, AccessKind access, TranslationTrace trace)
    {
        using var op = _domain.EnterOperation();
        ArgumentNullException.ThrowIfNull(trace);
        if (!X86Pte.IsCanonical(va))
        {
            trace.Note($"0x{va:x} is not canonical: #GP before any walk");
            return Translation.Fault(TranslateStatus.NonCanonical, va, 0, PageFaultErrorCode.None, 0);
        }
        return _domain.Mode!.Explain(this, va, access, trace);
    }

    /// <summary>Reads guest-virtual memory; all pages are translated before any byte moves.</summary>
    public VirtualAccessResult ReadVirtual(ulong va, Span<byte> destination, AccessKind privilege = AccessKind.Read)
    {
        using var op = _domain.EnterOperation();
        int pages = PagesSpanned(va, destination.Length);
        Span<Translation> ts = pages <= 16 ? stackalloc Translation[pages] : new Translation[pages];
        var check = TranslateAll(va, destination.Length, privilege & AccessKind.User, ts);
        if (!check.IsOk) return check;
        var machine = _domain.Machine;
        int done = 0;
        for (int p = 0; done < destination.Length; p++)
        {
            int off = (int)((va + (ulong)done) & Page.OffsetMask);
            int n = Math.Min(Page.Size - off, destination.Length - done);
            var dst = destination.Slice(done, n);
            if ((ts[p].Rights & TlbRights.Mmio) != 0) { dst.Fill(0xFF); _domain.NoteDeviceAccess(); }
            else machine.Read(new Mfn(ts[p].Mfn)).Slice(off, n).CopyTo(dst);
            _domain.Counters.Inc(PerfCounter.GuestVirtRead);
            done += n;
        }
        return check;
    }

    /// <summary>Writes guest-virtual memory; all pages are translated (and so checked) before any byte moves.</summary>
    public VirtualAccessResult WriteVirtual(ulong va, ReadOnlySpan<byte> source, AccessKind privilege = AccessKind.Read)
    {
        using var op = _domain.EnterOperation();
        var access = AccessKind.Write | (privilege & AccessKind.User);
        int pages = PagesSpanned(va, source.Length);
        Span<Translation> ts = pages <= 16 ? stackalloc Translation[pages] : new Translation[pages];
        var check = TranslateAll(va, source.Length, access, ts);
        if (!check.IsOk) return check;
        var machine = _domain.Machine;
        int done = 0;
        for (int p = 0; done < source.Length; p++)
        {
            int off = (int)((va + (ulong)done) & Page.OffsetMask);
            int n = Math.Min(Page.Size - off, source.Length - done);
            ulong rights = ts[p].Rights;
            if ((rights & TlbRights.EmulateWrites) != 0)
                _domain.WriteGuestPhysicalInOperation((ts[p].Gfn << Page.Shift) | (uint)off, source.Slice(done, n), this);
            else if ((rights & TlbRights.Mmio) == 0)
                source.Slice(done, n).CopyTo(machine.Write(new Mfn(ts[p].Mfn)).Slice(off, n));
            else _domain.NoteDeviceAccess();
            _domain.Counters.Inc(PerfCounter.GuestVirtWrite);
            done += n;
        }
        return check;
    }

    private static int PagesSpanned(ulong va, int length) =>
        length == 0 ? 0 : (int)(((va + (ulong)length - 1) >> Page.Shift) - (va >> Page.Shift) + 1);

    private VirtualAccessResult TranslateAll(ulong va, int length, AccessKind access, Span<Translation> ts)
    {
        if (length != 0 && va + (ulong)length - 1 < va)
            return new VirtualAccessResult(TranslateStatus.NonCanonical, va, 0, 0);
        for (int p = 0; p < ts.Length; p++)
        {
            ulong addr = p == 0 ? va : ((va & ~Page.OffsetMask) + ((ulong)p << Page.Shift));
            if (!X86Pte.IsCanonical(addr))
                return new VirtualAccessResult(TranslateStatus.NonCanonical, addr, 0, 0);
            var t = TranslateInOperation(addr, access);
            if (!t.IsOk) return new VirtualAccessResult(t.Status, addr, t.ErrorCode, t.Gfn);
            ts[p] = t;
        }
        return default;
    }

    public override string ToString() => $"{_domain.Name} vcpu{Id}";
}
