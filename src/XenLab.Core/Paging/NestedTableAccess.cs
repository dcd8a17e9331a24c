// The guest walker's view of a second translation stage (HAP's EPT, ARM's stage 2): each
// guest table's address is itself translated through the nested table before the entry is
// read, and the hardware's accessed/dirty update is a write through it, which a write-protected
// (log-dirty, traced) table page makes fault first. One accessor serves both modes.
using XenLab.Diagnostics;
using XenLab.Memory;

namespace XenLab.Paging;

/// <summary>A second translation stage as a mode implements it.</summary>
internal interface INestedStage
{
    /// <summary>Translates <paramref name="gfn"/>, handling the violations the hypervisor fixes; counts references.</summary>
    ulong Resolve(int vcpu, ulong gfn, AccessKind access, ref int refs, TranslationTrace? trace, PerfCounters counters, out TranslateStatus failure);
    /// <summary>The nested leaf for <paramref name="gfn"/> without counting (0 when absent).</summary>
    ulong Peek(ulong gfn);
    bool IsWritableLeaf(ulong leaf);
    /// <summary>The leaf maps device memory (mmio_direct): no page table can live there.</summary>
    bool IsDeviceLeaf(ulong leaf);
    ulong FrameOf(ulong leaf);
    MachineMemory Machine { get; }
}

/// <remarks>TStage is a struct wrapping the mode, so the JIT specialises the walk per mode and the stage calls are direct.</remarks>
internal struct NestedTableAccess<TStage> : IGuestTableAccess where TStage : struct, INestedStage
{
    public TStage Stage;
    public int Vcpu;
    public TranslationTrace? TraceSink;
    public PerfCounters CountersIn;

    public NestedTableAccess(TStage stage, int vcpu, TranslationTrace? trace, PerfCounters counters)
    {
        Stage = stage;
        Vcpu = vcpu;
        TraceSink = trace;
        CountersIn = counters;
    }

    public PerfCounters Counters => CountersIn;
    public TranslationTrace? Trace => TraceSink;

    public bool TryRead(ulong gpa, out ulong value, ref int refs, out TranslateStatus failure)
    {
        ulong leaf = Stage.Resolve(Vcpu, gpa >> 12, AccessKind.Read, ref refs, TraceSink, CountersIn, out failure);
        if (failure != TranslateStatus.Ok || Stage.IsDeviceLeaf(leaf))
        {
            value = 0;
            if (failure == TranslateStatus.Ok) failure = TranslateStatus.PhysicalMissing;   // page tables in MMIO
            return false;
        }
        value = Stage.Machine.ReadUInt64(new Mfn(Stage.FrameOf(leaf)), (int)(gpa & 0xFFF));
        refs++;
        return true;
    }

    public bool TryWriteAccessedDirty(ulong gpa, ulong value, ref int refs)
    {
        if (TraceSink is not null) return true;       // explaining: show, do not touch
        // The read just translated this gfn; only a write the nested stage refuses costs anything more.
        ulong leaf = Stage.Peek(gpa >> 12);
        if (!Stage.IsWritableLeaf(leaf))
        {
            int ignored = 0;
            leaf = Stage.Resolve(Vcpu, gpa >> 12, AccessKind.Write, ref ignored, null, CountersIn, out var failure);
            if (failure != TranslateStatus.Ok) return false;
        }
        Stage.Machine.WriteUInt64(new Mfn(Stage.FrameOf(leaf)), (int)(gpa & 0xFFF), value);
        return true;
    }
}
