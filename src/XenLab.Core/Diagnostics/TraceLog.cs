// Trace events: what the hypervisor did and why (faults, resyncs, evictions, type changes),
// kept in a bounded ring per domain. Events are small structs; text is made only on display.
using System;
using System.Collections.Generic;
using System.Globalization;

namespace XenLab.Diagnostics;

public enum TraceKind
{
    GuestPageFault,
    ShadowFault,
    ShadowEmulate,
    ShadowRecycle,
    ShadowBlowTables,
    OosUnsync,
    OosResync,
    OosEvict,
    EptViolation,
    P2mTypeChange,
    Stage2Abort,
    VlptRemap,
    ModeSwitch,
    Cr3Load,
    Balloon,
    IdentityHole,
    /// <summary>The vCPU stopped (halt, breakpoint, fault, unsupported); Detail is the instruction at RIP.</summary>
    CpuStop,
    /// <summary>A fault raised by a guest instruction, delivered or stopping; Detail is the instruction.</summary>
    CpuFault,
    /// <summary>The D-bit VRAM design learned, kept or forgot a framebuffer's address (VirtualAddress; Gfn: the range's first).</summary>
    VramDbit,
}

/// <summary>One event. Fields not meaningful for a kind are zero; Detail is a short fixed word.</summary>
public readonly record struct TraceEvent(long Sequence, TraceKind Kind, int Vcpu, ulong VirtualAddress, ulong Gfn, ulong Mfn, ulong Value, string Detail)
{
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"#{Sequence} {Kind} vcpu{Vcpu} va=0x{VirtualAddress:x} gfn=0x{Gfn:x} mfn=0x{Mfn:x} value=0x{Value:x} {Detail}");
}

public sealed class TraceLog
{
    public const int DefaultCapacity = 4096;
    private readonly TraceEvent[] _ring;
    private long _next;

    public TraceLog(int capacity = DefaultCapacity) => _ring = new TraceEvent[capacity];

    public bool Enabled { get; set; } = true;
    public long Total => _next;
    public int Capacity => _ring.Length;

    public void Add(TraceKind kind, int vcpu, ulong va, ulong gfn, ulong mfn, ulong value, string detail)
    {
        if (!Enabled) return;
        long seq = _next++;
        _ring[seq % _ring.Length] = new TraceEvent(seq, kind, vcpu, va, gfn, mfn, value, detail);
    }

    /// <summary>Events still held, oldest first, with sequence numbers from <paramref name="since"/> on.</summary>
    public List<TraceEvent> Snapshot(long since = 0)
    {
        long first = Math.Max(since, _next - _ring.Length);
        var list = new List<TraceEvent>((int)Math.Max(0, _next - first));
        for (long s = Math.Max(first, 0); s < _next; s++) list.Add(_ring[s % _ring.Length]);
        return list;
    }

    public void Clear() => _next = 0;
}
