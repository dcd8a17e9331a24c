// The shadow pool (shadow_memory): a fixed set of machine frames, taken from the host when
// shadow mode is enabled, from which shadow tables and OOS snapshots are allocated. When it
// runs dry the mode recycles (unpins least recently used top-level shadows) rather than
// growing: the bound is the point.
using System.Collections.Generic;
using XenLab.Memory;

namespace XenLab.Paging.Shadow;

/// <summary>What a shadow frame is used as. L1..L4 shadow a guest table of that level; FL1 splinters a guest 2 MiB page.</summary>
public enum ShadowType : byte
{
    FL1 = 0,
    L1 = 1,
    L2 = 2,
    L3 = 3,
    L4 = 4,
    OosSnapshot = 16,
}

/// <summary>One shadow frame and its bookkeeping (Xen's struct page_info for a shadow).</summary>
public sealed class ShadowPage
{
    public ShadowPage(Mfn smfn, ShadowType type, ulong gfn)
    {
        Smfn = smfn;
        Type = type;
        Gfn = gfn;
        if (type is ShadowType.L1 or ShadowType.FL1) MappedGfn = new ulong[512];
    }

    public Mfn Smfn { get; }
    /// <summary>The shadow frame's bytes (pool frames are materialised and never replaced while held): read without a lookup per entry.</summary>
    internal byte[] Frame { get; init; } = System.Array.Empty<byte>();
    public ShadowType Type { get; }
    /// <summary>Guest frame shadowed (for FL1: the first gfn of the 2 MiB guest page).</summary>
    public ulong Gfn { get; }
    /// <summary>Present entries of higher-level shadows that point here.</summary>
    public int RefCount { get; set; }
    /// <summary>A top-level shadow kept alive while any vCPU may load it (pinned).</summary>
    public bool Pinned { get; set; }
    /// <summary>The last higher-level shadow to link this one (Xen's sp->up), null once it unlinked.</summary>
    public ShadowPage? Up { get; set; }
    public long LastUse { get; set; }
    /// <summary>L1/FL1: the gfn each present entry maps (its reverse-map key).</summary>
    public ulong[]? MappedGfn { get; }
    public int Level => Type == ShadowType.FL1 ? 1 : (int)Type;
    public override string ToString() => $"{Type} shadow of gfn 0x{Gfn:x} at smfn 0x{Smfn.Value:x}";
}

public sealed class ShadowPool
{
    private readonly MachineMemory _machine;
    private readonly Stack<Mfn> _free = new();
    private readonly List<Mfn> _all = new();
    private readonly HashSet<ulong> _members = new();
    private readonly HashSet<ulong> _freeSet = new();

    public ShadowPool(MachineMemory machine, int frames)
    {
        _machine = machine;
        if ((ulong)frames > machine.FreeFrames) throw new MachineMemoryExhaustedException((ulong)frames, machine.FreeFrames);   // before the array
        var got = new Mfn[frames];
        machine.Allocate(got);                 // all or nothing
        for (int i = got.Length - 1; i >= 0; i--)
        {
            _free.Push(got[i]);
            _all.Add(got[i]);
            _members.Add(got[i].Value);
            _freeSet.Add(got[i].Value);
        }
    }

    public int Total => _all.Count;
    public int Free => _free.Count;
    public int Used => _all.Count - _free.Count;

    public bool TryAllocate(out Mfn mfn)
    {
        if (_free.Count == 0) { mfn = Mfn.Invalid; return false; }
        mfn = _free.Pop();
        _freeSet.Remove(mfn.Value);
        _machine.Write(mfn).Clear();
        return true;
    }

    /// <summary>Gives a frame back to the pool; a frame that is not one of the pool's is refused (it belongs to someone else).</summary>
    public void Release(Mfn mfn)
    {
        if (!_members.Contains(mfn.Value))
            throw new System.InvalidOperationException($"shadow pool: mfn 0x{mfn.Value:x} released into a pool it does not belong to.");
        if (!_freeSet.Add(mfn.Value))
            throw new System.InvalidOperationException($"shadow pool: mfn 0x{mfn.Value:x} released twice.");
        _free.Push(mfn);
    }

    /// <summary>Every free frame is the pool's, free once, and still held from the host.</summary>
    public void Audit(List<string> problems)
    {
        var seen = new HashSet<ulong>();
        foreach (var m in _free)
        {
            if (!_members.Contains(m.Value)) problems.Add($"shadow pool: free frame 0x{m.Value:x} is not the pool's");
            else if (!seen.Add(m.Value)) problems.Add($"shadow pool: frame 0x{m.Value:x} is free twice");
            else if (!_machine.IsAllocated(m)) problems.Add($"shadow pool: frame 0x{m.Value:x} was given back to the host");
        }
    }

    /// <summary>Returns every frame to the host.</summary>
    public void Dispose()
    {
        foreach (var m in _all) _machine.Free(m);
        _all.Clear();
        _free.Clear();
        _members.Clear();
        _freeSet.Clear();
    }
}
