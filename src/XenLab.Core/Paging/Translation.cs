// What a translation produces, in every paging mode: the guest frame, the machine frame,
// the rights a TLB may cache, and how many memory references the walk cost.
using System.Collections.Generic;

namespace XenLab.Paging;

public enum TranslateStatus
{
    Ok,
    /// <summary>A guest page fault: the guest's own tables refuse the access.</summary>
    PageFault,
    /// <summary>Not a canonical address: #GP on hardware, before any walk.</summary>
    NonCanonical,
    /// <summary>A page table, or the page itself, is at a gfn the p2m has no entry for.</summary>
    PhysicalMissing,
    /// <summary>A write to a gfn whose p2m type is read-only (ram_ro): the hypervisor discards it.</summary>
    P2mReadOnly,
}

/// <summary>Rights a TLB entry carries: x86 PTE bit positions, plus the lab's own in free bits.</summary>
public static class TlbRights
{
    public const ulong Writable = X86Pte.Writable;
    public const ulong User = X86Pte.User;
    public const ulong Dirty = X86Pte.Dirty;
    public const ulong NoExecute = X86Pte.NoExecute;
    /// <summary>The frame is device memory (identity/mmio_direct): reads see all ones, writes are dropped.</summary>
    public const ulong Mmio = 1UL << 9;
    /// <summary>Writes must go through the hypervisor (a write-protected page table): never cached writable.</summary>
    public const ulong EmulateWrites = 1UL << 10;
    /// <summary>The host side (EPT, shadow entry, stage 2) lets writes through without a hypervisor exit.</summary>
    public const ulong HostWritable = 1UL << 11;
}

/// <summary>The result of translating one virtual address.</summary>
public readonly record struct Translation(
    TranslateStatus Status, ulong VirtualAddress, ulong Gfn, ulong Mfn, ulong Rights, int PageShift,
    PageFaultErrorCode ErrorCode, int MemoryReferences)
{
    public bool IsOk => Status == TranslateStatus.Ok;
    public ulong GuestPhysicalAddress => (Gfn << 12) | (VirtualAddress & 0xFFF);
    public ulong MachineAddress => (Mfn << 12) | (VirtualAddress & 0xFFF);

    public static Translation Fault(TranslateStatus status, ulong va, ulong gfn, PageFaultErrorCode code, int refs) =>
        new(status, va, gfn, ulong.MaxValue, 0, 12, code, refs);
}

/// <summary>One entry read during a translation, raw and decoded, and which table it belongs to.</summary>
public sealed record WalkStep(string Table, int Level, string Name, ulong TableFrame, int Index, ulong EntryAddress, ulong RawEntry, string Decoded)
{
    public override string ToString() => $"{Table,-7} {Name}[{Index}] @0x{EntryAddress:x} = 0x{RawEntry:x16} {Decoded}";
}

/// <summary>A translation explained: every step, the outcome and the references counted.</summary>
public sealed class TranslationTrace
{
    public List<WalkStep> Steps { get; } = new();
    public List<string> Notes { get; } = new();
    public void Add(WalkStep s) => Steps.Add(s);
    public void Note(string s) => Notes.Add(s);
}
