// Out-of-sync L1 shadows with snapshots (seed 001, Xen's shadow/common.c oos_* functions).
// A guest L1 table that takes a write fault may be let go out of sync: its shadow entries are
// made writable and the guest writes it freely. Each vCPU has SHADOW_OOS_PAGES slots indexed
// by gmfn % N; an occupant that hashes to the slot is punted to the next one, and whatever
// must give way is resynced and evicted. At unsync a snapshot of the guest page is taken (a
// frame from the shadow pool, one per slot); a resync compares every guest entry with it and
// re-propagates only the changed ones. Without snapshots (OosMode.NoSnapshot) a resync
// revalidates every entry, which is what the 2008 patch saved.
using System;
using System.Collections.Generic;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Memory;
using XenLab.Paging.Modes;

namespace XenLab.Paging.Shadow;

/// <summary>One vCPU's out-of-sync slot, for display.</summary>
public readonly record struct OosSlot(int Vcpu, int Slot, ulong Gmfn, ulong Gfn, ulong VirtualAddress, ulong SnapshotMfn);

public sealed partial class ShadowMode
{
    private const ulong NoPage = ulong.MaxValue;
    private ulong[][] _oosGmfn = Array.Empty<ulong[]>();
    private ulong[][] _oosGfn = Array.Empty<ulong[]>();
    private ulong[][] _oosVa = Array.Empty<ulong[]>();
    private Mfn[][] _oosSnapshot = Array.Empty<Mfn[]>();
    private readonly HashSet<ulong> _oosPages = new();

    private int Slots => _options.OosSlots;
    private bool Snapshots => _options.Oos == OosMode.Snapshot;

    private void InitOos(int vcpus)
    {
        _oosGmfn = new ulong[vcpus][];
        _oosGfn = new ulong[vcpus][];
        _oosVa = new ulong[vcpus][];
        _oosSnapshot = new Mfn[vcpus][];
        for (int v = 0; v < vcpus; v++)
        {
            _oosGmfn[v] = new ulong[Slots];
            _oosGfn[v] = new ulong[Slots];
            _oosVa[v] = new ulong[Slots];
            _oosSnapshot[v] = new Mfn[Slots];
            Array.Fill(_oosGmfn[v], NoPage);
            for (int i = 0; i < Slots; i++)
            {
                // Snapshot frames come from the shadow pool, preallocated as Xen does.
                if (!Snapshots) { _oosSnapshot[v][i] = Mfn.Invalid; continue; }
                _pool.TryAllocate(out _oosSnapshot[v][i]);
            }
        }
        _oosPages.Clear();
        InitFixups(vcpus);
    }

    private void ClearOos()
    {
        _oosPages.Clear();
        foreach (var a in _oosFixup) Array.Clear(a);
        foreach (var a in _oosGmfn) Array.Fill(a, NoPage);
    }

    public bool IsOutOfSync(ulong gfn) => _oosPages.Count != 0 && _oosPages.Contains(gfn);

    /// <summary>Every occupied slot, for labs and tests.</summary>
    public List<OosSlot> OosSlots()
    {
        var list = new List<OosSlot>();
        for (int v = 0; v < _oosGmfn.Length; v++)
            for (int i = 0; i < Slots; i++)
                if (_oosGmfn[v][i] != NoPage)
                    list.Add(new OosSlot(v, i, _oosGmfn[v][i], _oosGfn[v][i], _oosVa[v][i], _oosSnapshot[v][i].Value));
        return list;
    }

    /// <summary>Only L1 tables go out of sync, and only ones shadowed as nothing else.</summary>
    private bool CanUnsync(ulong gfn) =>
        _options.Oos != OosMode.Off && _levelsOf.TryGetValue(gfn, out int l) && l == (1 << 1) && !IsOutOfSync(gfn);

    private void Unsync(Vcpu v, ulong gfn, ulong va)
    {
        _domain.TryGetRam(gfn, out var gmfn);
        HashAdd(v.Id, gmfn.Value, gfn, va);
        _oosPages.Add(gfn);
        _counters.Inc(PerfCounter.OosUnsync);
        _domain.Trace.Add(TraceKind.OosUnsync, v.Id, va, gfn, gmfn.Value, (ulong)FindSlot(gmfn.Value).Slot, "unsync");
    }

    /// <summary>oos_hash_add, as in the seed: punt, evict, swap snapshots, take the snapshot.</summary>
    private void HashAdd(int v, ulong gmfn, ulong gfn, ulong va)
    {
        ulong[] oos = _oosGmfn[v], oosGfn = _oosGfn[v], oosVa = _oosVa[v];
        Mfn[] snap = _oosSnapshot[v];
        int idx = (int)(gmfn % (ulong)Slots), oidx = idx;
        bool swap = false;
        Fixup fixup = default;                            // the new page's: none yet
        if (oos[idx] != NoPage && oos[idx] % (ulong)Slots == (ulong)idx)
        {
            // Punt the current occupant into the next slot.
            (oos[idx], gmfn) = (gmfn, oos[idx]);
            (oosGfn[idx], gfn) = (gfn, oosGfn[idx]);
            (oosVa[idx], va) = (va, oosVa[idx]);
            (_oosFixup[v][idx], fixup) = (fixup, _oosFixup[v][idx]);   // fix-ups travel with their page
            swap = true;
            idx = (idx + 1) % Slots;
        }
        if (oos[idx] != NoPage)
        {
            // Crush the current occupant.
            _counters.Inc(PerfCounter.OosEvict);
            _domain.Trace.Add(TraceKind.OosEvict, v, oosVa[idx], oosGfn[idx], oos[idx], (ulong)idx, "evict");
            SyncBack(v, idx);
        }
        oos[idx] = gmfn;
        oosGfn[idx] = gfn;
        oosVa[idx] = va;
        _oosFixup[v][idx] = fixup;
        if (swap) (snap[idx], snap[oidx]) = (snap[oidx], snap[idx]);
        if (Snapshots)
            _machine.Read(new Mfn(oos[oidx])).CopyTo(_machine.Write(snap[oidx]));
    }

    /// <summary>Where a gmfn sits: its hash slot or the one after (punted), on any vCPU.</summary>
    private (int Vcpu, int Slot) FindSlot(ulong gmfn)
    {
        for (int v = 0; v < _oosGmfn.Length; v++)
        {
            int idx = (int)(gmfn % (ulong)Slots);
            if (_oosGmfn[v][idx] != gmfn) idx = (idx + 1) % Slots;
            if (_oosGmfn[v][idx] == gmfn) return (v, idx);
        }
        return (-1, -1);
    }

    private (int Vcpu, int Slot) FindSlotByGfn(ulong gfn)
    {
        for (int v = 0; v < _oosGfn.Length; v++)
            for (int i = 0; i < Slots; i++)
                if (_oosGmfn[v][i] != NoPage && _oosGfn[v][i] == gfn) return (v, i);
        return (-1, -1);
    }

    /// <summary>_sh_resync: write-protect the page again, bring its shadow up to date, mark it in sync.</summary>
    private void SyncBack(int v, int idx)
    {
        ulong gfn = _oosGfn[v][idx];
        RemoveWriteAccess(gfn, v, v, idx);                // oos_remove_write_access: fix-ups first (on the slot's vCPU)
        ResyncEntries(gfn, _oosSnapshot[v][idx]);
        _oosPages.Remove(gfn);
        _oosGmfn[v][idx] = NoPage;
        _counters.Inc(PerfCounter.OosResync);
        _domain.Trace.Add(TraceKind.OosResync, v, _oosVa[v][idx], gfn, 0, (ulong)idx, "resync");
        // No flush of its own: RemoveWriteAccess flushed if it took anything away, and re-propagated
        // L1 entries follow the guest's, whose own invlpg or CR3 load covers them (as in _sh_resync).
    }

    /// <summary>_sh_resync_l1: with a snapshot, re-propagate only entries that changed; without, all of them.</summary>
    private void ResyncEntries(ulong gfn, Mfn snapshot)
    {
        if (!_shadows.TryGetValue((gfn, ShadowType.L1), out var sl1)) return;
        _domain.TryGetRam(gfn, out var gmfn);
        ReadOnlySpan<byte> guest = _machine.Read(gmfn);
        Span<ulong> entries = stackalloc ulong[512];
        for (int i = 0; i < 512; i++) entries[i] = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(guest.Slice(i * 8, 8));
        for (int i = 0; i < 512; i++)
        {
            ulong gl1e = entries[i];
            if (Snapshots && snapshot.IsValid)
            {
                _counters.Inc(PerfCounter.OosEntriesCompared);
                if (_machine.ReadUInt64(snapshot, i * 8) == gl1e) continue;
                _machine.WriteUInt64(snapshot, i * 8, gl1e);
            }
            SetL1(sl1, i, PropagateL1(gl1e, (gl1e & X86Pte.FrameMask) >> 12), gl1e);
            _counters.Inc(PerfCounter.OosEntriesRepropagated);
        }
    }

    /// <summary>Entries written by validate, fault propagation or prefetch on an out-of-sync page go into its snapshot too.</summary>
    private void UpdateSnapshot(ulong gfn, int index, ulong gl1e)
    {
        if (!Snapshots || !IsOutOfSync(gfn)) return;
        var (v, slot) = FindSlotByGfn(gfn);
        if (v < 0) return;
        _machine.WriteUInt64(_oosSnapshot[v][slot], index * 8, gl1e);
        _counters.Inc(PerfCounter.OosSnapshotUpdate);
    }

    /// <summary>sh_resync: another vCPU (or the hypervisor) needs this page in sync.</summary>
    public void ResyncPage(ulong gfn)
    {
        var (v, slot) = FindSlotByGfn(gfn);
        if (v >= 0) SyncBack(v, slot);
    }

    /// <summary>Every vCPU's out-of-sync pages back in sync (before installing a new L2/L3 shadow, blowing tables).</summary>
    public void ResyncAllFully()
    {
        if (_oosPages.Count == 0) return;
        for (int v = 0; v < _oosGmfn.Length; v++)
            for (int i = 0; i < Slots; i++)
                if (_oosGmfn[v][i] != NoPage) SyncBack(v, i);
    }

    /// <summary>shadow_resync_current_vcpu: this vCPU's out-of-sync pages back in sync (full resyncs).</summary>
    private void ResyncCurrentVcpu(Vcpu current)
    {
        if (_oosPages.Count == 0) return;
        for (int i = 0; i < Slots; i++)
            if (_oosGmfn[current.Id][i] != NoPage) SyncBack(current.Id, i);
    }

    /// <summary>
    /// shadow_sync_other_vcpus: other vCPUs' pages get their shadows updated and stay out of sync
    /// (a light resync), skipped where sh_safe_not_to_sync says the new tables cannot reach them.
    /// </summary>
    private void SyncOtherVcpus(Vcpu current)
    {
        if (_oosPages.Count == 0) return;
        for (int v = 0; v < _oosGmfn.Length; v++)
        {
            if (v == current.Id) continue;
            for (int i = 0; i < Slots; i++)
            {
                if (_oosGmfn[v][i] == NoPage) continue;
                if (SafeNotToSync(current, _oosGfn[v][i]))
                {
                    _counters.Inc(PerfCounter.OosLightResyncSkipped);
                    continue;
                }
                ResyncEntries(_oosGfn[v][i], _oosSnapshot[v][i]);
                _counters.Inc(PerfCounter.OosLightResync);
            }
        }
    }

    /// <summary>
    /// sh_safe_not_to_sync: the page's L1 shadow is linked exactly once, up a chain of single
    /// links to a top that is not the one <paramref name="current"/> runs on, so the new address
    /// space cannot reach it and its update can wait.
    /// </summary>
    private bool SafeNotToSync(Vcpu current, ulong gfn)
    {
        if (!_shadows.TryGetValue((gfn, ShadowType.L1), out var sp)) return false;
        for (int level = 1; level <= 3; level++)
        {
            if (sp.RefCount != 1 || sp.Up is null) return false;
            sp = sp.Up;
        }
        return !ReferenceEquals(_top[current.Id], sp);
    }

    /// <summary>The L1 shadow of an out-of-sync page was destroyed: nothing left to sync.</summary>
    private void DropOutOfSync(ulong gfn)
    {
        var (v, slot) = FindSlotByGfn(gfn);
        if (v >= 0)
        {
            _oosGmfn[v][slot] = NoPage;
            _oosFixup[v][slot] = default;
        }
        _oosPages.Remove(gfn);
    }
}
