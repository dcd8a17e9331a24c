// The shadow audit (Xen's sh_audit_*): every shadow entry checked against the guest entry and
// the p2m it was derived from, reference counts recounted, write protection and the OOS hash
// checked. Returns one line per problem; tests run it after every step.
using System.Collections.Generic;
using XenLab.Memory;
using XenLab.P2m;

namespace XenLab.Paging.Shadow;

public sealed partial class ShadowMode
{
    public void Audit(List<string> problems)
    {
        var refs = new Dictionary<ShadowPage, int>();
        foreach (var sp in _shadows.Values)
        {
            if (sp.Type is ShadowType.L1 or ShadowType.FL1) AuditL1(sp, problems);
            else AuditUpper(sp, refs, problems);
        }
        foreach (var sp in _shadows.Values)
        {
            if (sp.Type == ShadowType.L4) continue;
            int counted = refs.TryGetValue(sp, out int n) ? n : 0;
            if (counted != sp.RefCount) problems.Add($"shadow: {sp}: reference count {sp.RefCount}, {counted} entries point at it");
        }
        // Write protection: no writable shadow mapping of an in-sync guest page table.
        foreach (var (gfn, levels) in _levelsOf)
        {
            if (IsOutOfSync(gfn) || !_rmap.TryGetValue(gfn, out var maps)) continue;
            foreach (var (page, index) in maps)
                if ((_machine.ReadUInt64(page.Smfn, index * 8) & X86Pte.Writable) != 0)
                    problems.Add($"shadow: gfn 0x{gfn:x} is a guest page table (levels 0x{levels:x}) but {page} entry {index} maps it writable");
        }
        // Out-of-sync pages: each in exactly one slot, at its hash or the slot after.
        var seen = new HashSet<ulong>();
        for (int v = 0; v < _oosGmfn.Length; v++)
            for (int i = 0; i < Slots; i++)
            {
                ulong gmfn = _oosGmfn[v][i];
                if (gmfn == NoPage) continue;
                ulong gfn = _oosGfn[v][i];
                int h = (int)(gmfn % (ulong)Slots);
                if (i != h && i != (h + 1) % Slots) problems.Add($"oos: gmfn 0x{gmfn:x} in vcpu{v} slot {i}, but it hashes to {h}");
                if (!seen.Add(gfn)) problems.Add($"oos: gfn 0x{gfn:x} is in more than one slot");
                if (!_oosPages.Contains(gfn)) problems.Add($"oos: gfn 0x{gfn:x} is in a slot but not marked out of sync");
                if (!_domain.TryGetRam(gfn, out var m) || m.Value != gmfn) problems.Add($"oos: slot says gfn 0x{gfn:x} is gmfn 0x{gmfn:x}, the p2m disagrees");
            }
        foreach (var gfn in _oosPages)
            if (!seen.Contains(gfn)) problems.Add($"oos: gfn 0x{gfn:x} is marked out of sync but is in no slot");
        for (int v = 0; v < _top.Length; v++)
        {
            var top = _top[v];
            if (top is null) continue;
            if (top.Gfn != _domain.Vcpus[v].Cr3 >> 12) problems.Add($"shadow: vcpu{v} runs on {top} but its CR3 is gfn 0x{_domain.Vcpus[v].Cr3 >> 12:x}");
            if (!_shadows.ContainsKey((top.Gfn, ShadowType.L4))) problems.Add($"shadow: vcpu{v} runs on a freed top {top}");
        }
        int used = _shadows.Count + (Snapshots ? _oosSnapshot.Length * Slots : 0) + _linkPages;
        if (used != _pool.Used) problems.Add($"shadow: pool has {_pool.Used} frames in use, {used} accounted for");
        if (_linkPages < 0) problems.Add($"shadow: {_linkPages} back-link pages held");
        AuditDbit(problems);
        AuditBackLinks(problems);
        _pool.Audit(problems);
    }

    private void AuditUpper(ShadowPage sp, Dictionary<ShadowPage, int> refs, List<string> problems)
    {
        for (int i = 0; i < 512; i++)
        {
            ulong se = _machine.ReadUInt64(sp.Smfn, i * 8);
            if ((se & X86Pte.Present) == 0) continue;
            if (!_bySmfn.TryGetValue((se & X86Pte.FrameMask) >> 12, out var child))
            {
                problems.Add($"shadow: {sp} entry {i} points at smfn 0x{(se & X86Pte.FrameMask) >> 12:x}, which is no shadow");
                continue;
            }
            refs[child] = (refs.TryGetValue(child, out int n) ? n : 0) + 1;
            _domain.TryReadPhysU64((sp.Gfn << 12) + (ulong)i * 8, out ulong ge);
            bool super = sp.Type == ShadowType.L2 && (ge & X86Pte.PageSize) != 0;
            ulong wantGfn = super ? ((ge & X86Pte.FrameMask) >> 12) & ~511UL : (ge & X86Pte.FrameMask) >> 12;
            var wantType = super ? ShadowType.FL1 : (ShadowType)((int)sp.Type - 1);
            if ((ge & (X86Pte.Present | X86Pte.Accessed)) != (X86Pte.Present | X86Pte.Accessed))
                problems.Add($"shadow: {sp} entry {i} is present but the guest entry 0x{ge:x} is not present and accessed");
            else if (child.Gfn != wantGfn || child.Type != wantType)
                problems.Add($"shadow: {sp} entry {i} points at {child}, the guest entry 0x{ge:x} wants {wantType} of gfn 0x{wantGfn:x}");
            else if ((se & UpperRights) != (ge & UpperRights))
                problems.Add($"shadow: {sp} entry {i} rights 0x{se & UpperRights:x} differ from the guest's 0x{ge & UpperRights:x}");
        }
    }

    private void AuditL1(ShadowPage sp, List<string> problems)
    {
        bool oos = sp.Type == ShadowType.L1 && IsOutOfSync(sp.Gfn);
        Mfn snapshot = Mfn.Invalid;
        if (oos)
        {
            if (!Snapshots) return;                         // without a snapshot there is nothing to compare with
            var (v, slot) = FindSlotByGfn(sp.Gfn);
            if (v < 0) return;
            snapshot = _oosSnapshot[v][slot];
        }
        for (int i = 0; i < 512; i++)
        {
            ulong se = _machine.ReadUInt64(sp.Smfn, i * 8);
            if ((se & X86Pte.Present) == 0) continue;
            ulong ge;
            if (sp.Type == ShadowType.FL1) ge = 0;
            else if (oos) ge = _machine.ReadUInt64(snapshot, i * 8);
            else _domain.TryReadPhysU64((sp.Gfn << 12) + (ulong)i * 8, out ge);
            ulong gfn = sp.Type == ShadowType.FL1 ? sp.Gfn + (ulong)i : (ge & X86Pte.FrameMask) >> 12;
            if (sp.MappedGfn![i] != gfn)
                problems.Add($"shadow: {sp} entry {i} is recorded as mapping gfn 0x{sp.MappedGfn[i]:x}, its source maps 0x{gfn:x}");
            bool inRmap = false;
            if (_rmap.TryGetValue(sp.MappedGfn[i], out var list))
                foreach (var (p, idx) in list) if (ReferenceEquals(p, sp) && idx == i) { inRmap = true; break; }
            if (!inRmap) problems.Add($"shadow: {sp} entry {i} is missing from the reverse map");
            ulong wantFrame = P2mTree.Classify(_domain.P2m.Get(gfn)) switch
            {
                P2mEntryKind.Ram => _domain.P2m.Get(gfn),
                P2mEntryKind.Identity => gfn,
                _ => ulong.MaxValue,
            };
            if (((se & X86Pte.FrameMask) >> 12) != wantFrame)
            {
                problems.Add($"shadow: {sp} entry {i} maps frame 0x{(se & X86Pte.FrameMask) >> 12:x}, gfn 0x{gfn:x} is 0x{wantFrame:x} in the p2m");
                continue;
            }
            if (sp.Type == ShadowType.FL1) continue;
            ulong expect = PropagateL1(ge, gfn, demandWrite: true);       // the most a fault could have made
            const ulong rights = X86Pte.User | X86Pte.NoExecute | ShadowMmio;
            if ((expect & X86Pte.Present) == 0)
                problems.Add($"shadow: {sp} entry {i} is present but guest entry 0x{ge:x} would not be");
            else if ((se & rights) != (expect & rights))
                problems.Add($"shadow: {sp} entry {i} = 0x{se:x}: user/nx/mmio differ from 0x{expect:x}");
            else if ((se & X86Pte.Writable) != 0 && (expect & X86Pte.Writable) == 0)
                problems.Add($"shadow: {sp} entry {i} = 0x{se:x} is writable; the guest entry 0x{ge:x} does not allow it now");
        }
    }
}
