// An independent transcription of what Linux 2.6.39 does to a 64-bit PV guest's p2m at boot
// and when it balloons, written from the kernel's code (not from XenLab's): 
//   arch/x86/xen/p2m.c   xen_build_dynamic_phys_to_machine, get_phys_to_machine,
//                        __set_phys_to_machine, set_phys_to_machine + alloc_p2m,
//                        __early_alloc_p2m, set_phys_range_identity
//   arch/x86/xen/setup.c xen_memory_setup, xen_add_extra_mem, xen_return_unused_memory,
//                        xen_release_chunk, xen_set_identity
//   drivers/xen/balloon.c balloon_init, __balloon_append, balloon_retrieve,
//                        increase_reservation (x86-64: no highmem)
// The tree is kept with the kernel's own sentinels (p2m_missing, p2m_identity,
// p2m_mid_missing compared by reference) so lookups and page counts come out of the same
// pointer tests the kernel makes. Used by the differential tests only.
using System;
using System.Collections.Generic;

namespace XenLab.Tests;

internal sealed class Linux2639P2m
{
    public const int P2mPerPage = 512;                 // PAGE_SIZE / sizeof(unsigned long)
    public const ulong MaxP2mPfn = 512UL * 512 * 512;  // P2M_TOP_PER_PAGE * P2M_MID_PER_PAGE * P2M_PER_PAGE
    public const ulong InvalidP2mEntry = ~0UL;
    public const ulong IdentityFrameBit = 1UL << 62;
    private const ulong PageSize = 4096;
    private const ulong IsaEndAddress = 0x100000;
    private const ulong ExtraMemRatio = 10;

    public enum E820 { Ram = 1, Reserved = 2, Acpi = 3, Nvs = 4, Unusable = 5 }
    public readonly record struct Entry(ulong Addr, ulong Size, E820 Type);

    private readonly ulong[] _p2mMissing = Filled(InvalidP2mEntry);
    private readonly ulong[] _p2mIdentity = Filled(InvalidP2mEntry);
    private readonly ulong[][] _p2mMidMissing;
    private readonly ulong[][][] _p2mTop = new ulong[512][][];

    /// <summary>The balloon driver's ballooned_pages list, its head at the end (list_add = Add).</summary>
    public List<ulong> Ballooned { get; } = new();
    public ulong ExtraMemStart { get; private set; }
    public ulong ExtraMemSize { get; private set; }
    public ulong Released { get; private set; }

    public Linux2639P2m()
    {
        _p2mMidMissing = new ulong[512][];
        for (int i = 0; i < 512; i++) _p2mMidMissing[i] = _p2mMissing;      // p2m_mid_init
        for (int i = 0; i < 512; i++) _p2mTop[i] = _p2mMidMissing;          // p2m_top_init
    }

    private static ulong[] Filled(ulong v) { var a = new ulong[P2mPerPage]; Array.Fill(a, v); return a; }
    private static ulong IdentityFrame(ulong pfn) => pfn | IdentityFrameBit;
    private static int TopIndex(ulong pfn) => (int)(pfn / (512UL * 512));
    private static int MidIndex(ulong pfn) => (int)(pfn / 512 % 512);
    private static int Index(ulong pfn) => (int)(pfn % 512);
    private static ulong PfnUp(ulong a) => (a + PageSize - 1) / PageSize;
    private static ulong PfnDown(ulong a) => a / PageSize;

    private ulong[][] NewMid() { var m = new ulong[512][]; for (int i = 0; i < 512; i++) m[i] = _p2mMissing; return m; }

    /// <summary>xen_build_dynamic_phys_to_machine: graft the builder's mfn_list into the tree.</summary>
    public void BuildDynamicPhysToMachine(ulong[] mfnList)
    {
        ulong maxPfn = (ulong)mfnList.Length;
        for (ulong pfn = 0; pfn < maxPfn; pfn += P2mPerPage)
        {
            int t = TopIndex(pfn), m = MidIndex(pfn);
            if (_p2mTop[t] == _p2mMidMissing) _p2mTop[t] = NewMid();
            var leaf = new ulong[P2mPerPage];                                   // &mfn_list[pfn]
            for (int i = 0; i < P2mPerPage; i++)
                leaf[i] = pfn + (ulong)i < maxPfn ? mfnList[pfn + (ulong)i] : InvalidP2mEntry;
            _p2mTop[t][m] = leaf;
        }
    }

    public ulong GetPhysToMachine(ulong pfn)
    {
        if (pfn >= MaxP2mPfn) return InvalidP2mEntry;
        var leaf = _p2mTop[TopIndex(pfn)][MidIndex(pfn)];
        if (leaf == _p2mIdentity) return IdentityFrame(pfn);
        return leaf[Index(pfn)];
    }

    /// <summary>Whether a pfn's leaf is the shared p2m_missing (0), the shared p2m_identity (1) or a page of its own (2).</summary>
    public int LeafKind(ulong pfn)
    {
        if (pfn >= MaxP2mPfn) return 0;
        var leaf = _p2mTop[TopIndex(pfn)][MidIndex(pfn)];
        return leaf == _p2mMissing ? 0 : leaf == _p2mIdentity ? 1 : 2;
    }

    public bool SetPhysToMachineNoAlloc(ulong pfn, ulong mfn)                  // __set_phys_to_machine
    {
        if (pfn >= MaxP2mPfn) return true;                                    // BUG_ON(mfn != INVALID)
        int t = TopIndex(pfn), m = MidIndex(pfn), idx = Index(pfn);
        if (mfn != InvalidP2mEntry && (mfn & IdentityFrameBit) != 0)
        {
            if (_p2mTop[t][m] == _p2mIdentity) return true;
            if (_p2mTop[t][m] == _p2mMissing) { _p2mTop[t][m] = _p2mIdentity; return true; }
        }
        if (_p2mTop[t][m] == _p2mMissing) return mfn == InvalidP2mEntry;
        if (_p2mTop[t][m] == _p2mIdentity)
            throw new InvalidOperationException($"2.6.39 would store 0x{mfn:x} into the shared p2m_identity page (pfn 0x{pfn:x})");
        _p2mTop[t][m][idx] = mfn;
        return true;
    }

    public bool SetPhysToMachine(ulong pfn, ulong mfn)
    {
        if (!SetPhysToMachineNoAlloc(pfn, mfn))
        {
            AllocP2m(pfn);
            if (!SetPhysToMachineNoAlloc(pfn, mfn)) return false;
        }
        return true;
    }

    private void AllocP2m(ulong pfn)
    {
        int t = TopIndex(pfn), m = MidIndex(pfn);
        if (_p2mTop[t] == _p2mMidMissing) _p2mTop[t] = NewMid();
        if (_p2mTop[t][m] == _p2mIdentity || _p2mTop[t][m] == _p2mMissing) _p2mTop[t][m] = Filled(InvalidP2mEntry);
    }

    private bool EarlyAllocP2m(ulong pfn)
    {
        int t = TopIndex(pfn), m = MidIndex(pfn), idx = Index(pfn);
        if (idx == 0) return false;
        if (_p2mTop[t][m] != _p2mMissing) return false;
        _p2mTop[t][m] = Filled(InvalidP2mEntry);
        return true;
    }

    public ulong SetPhysRangeIdentity(ulong pfnS, ulong pfnE)
    {
        if (pfnS >= MaxP2mPfn || pfnE >= MaxP2mPfn) return 0;
        if (pfnS > pfnE) return 0;
        const ulong gib = 512UL * 512;
        for (ulong pfn = pfnS & ~(gib - 1); pfn < (pfnE + gib - 1) / gib * gib; pfn += gib)
        {
            int t = TopIndex(pfn);
            if (_p2mTop[t] == _p2mMidMissing) _p2mTop[t] = NewMid();
        }
        EarlyAllocP2m(pfnS);
        EarlyAllocP2m(pfnE);
        ulong p;
        for (p = pfnS; p < pfnE; p++)
            if (!SetPhysToMachineNoAlloc(p, IdentityFrame(p))) break;
        return p - pfnS;
    }

    /// <summary>xen_set_identity over the map as the hypervisor gave it (map_raw).</summary>
    public void SetIdentity(IReadOnlyList<Entry> list, bool initialDomain)
    {
        ulong last = initialDomain ? 0 : IsaEndAddress;
        ulong startPci = last;
        foreach (var entry in list)
        {
            ulong start = entry.Addr, end = start + entry.Size;
            if (start < last) start = last;
            if (end <= start) continue;
            if (last > end) continue;
            if (entry.Type == E820.Ram || entry.Type == E820.Unusable)
            {
                if (start > startPci) SetPhysRangeIdentity(PfnUp(startPci), PfnDown(start));
                last = end;
                startPci = end;
                continue;
            }
            startPci = Math.Min(start, startPci);
            last = end;
        }
        if (last > startPci) SetPhysRangeIdentity(PfnUp(startPci), PfnDown(last));
    }

    /// <summary>xen_memory_setup on x86-64 for a guest of nr_pages with the builder's mfn_list.</summary>
    public void MemorySetup(IReadOnlyList<Entry> mapRaw, ulong[] mfnList, bool initialDomain)
    {
        BuildDynamicPhysToMachine(mfnList);
        ulong maxPfn = (ulong)mfnList.Length;
        ulong memEnd = maxPfn * PageSize;
        var kernelE820 = new List<Entry>();
        ulong extraPages = 0;
        ExtraMemStart = Math.Max(1UL << 32, memEnd);
        foreach (var raw in mapRaw)
        {
            var e = raw;
            ulong size = e.Size;
            if (e.Type == E820.Ram) size -= (size + e.Addr) % PageSize;
            ulong end = e.Addr + size;
            if (e.Type == E820.Ram && end > memEnd)
            {
                ulong delta = Math.Min(size, end - memEnd);
                size -= delta;
                end -= delta;
                extraPages += PfnDown(delta);
                if (delta != 0 && initialDomain && end < 0x100000000UL) kernelE820.Add(new Entry(end, delta, E820.Unusable));
            }
            if (size > 0 && end > ExtraMemStart) ExtraMemStart = end;
            if (size > 0) kernelE820.Add(new Entry(e.Addr, size, e.Type));
        }
        if (initialDomain && ExtraMemStart < (1UL << 32)) ExtraMemStart = 1UL << 32;
        kernelE820.Add(new Entry(0xA0000, IsaEndAddress - 0xA0000, E820.Reserved));
        kernelE820.Sort((a, b) => a.Addr.CompareTo(b.Addr));                // sanitize_e820_map (ordering)

        extraPages += ReturnUnusedMemory(maxPfn, kernelE820);

        ulong extraLimit = Math.Min(ExtraMemRatio * maxPfn, maxPfn + extraPages);
        extraPages = extraLimit >= maxPfn ? extraLimit - maxPfn : 0;
        AddExtraMem(extraPages);
        SetIdentity(mapRaw, initialDomain);
        BalloonInit(maxPfn);
    }

    private ulong ReturnUnusedMemory(ulong maxPfn, List<Entry> e820)
    {
        ulong maxAddr = maxPfn * PageSize, lastEnd = IsaEndAddress, released = 0;
        for (int i = 0; i < e820.Count && lastEnd < maxAddr; i++)
        {
            ulong end = Math.Min(maxAddr, e820[i].Addr);
            if (lastEnd < end) released += ReleaseChunk(lastEnd, end);
            lastEnd = Math.Max(lastEnd, e820[i].Addr + e820[i].Size);
        }
        if (lastEnd < maxAddr) released += ReleaseChunk(lastEnd, maxAddr);
        Released = released;
        return released;
    }

    private ulong ReleaseChunk(ulong startAddr, ulong endAddr)
    {
        ulong start = PfnUp(startAddr), end = PfnDown(endAddr), len = 0;
        if (end <= start) return 0;
        for (ulong pfn = start; pfn < end; pfn++)
        {
            ulong mfn = GetPhysToMachine(pfn);
            if (mfn == InvalidP2mEntry || (mfn & IdentityFrameBit) != 0) continue;   // pfn does not exist
            SetPhysToMachineNoAlloc(pfn, InvalidP2mEntry);                           // XENMEM_decrease_reservation ok
            len++;
        }
        return len;
    }

    private void AddExtraMem(ulong pages)
    {
        if (pages == 0) return;
        ulong size = pages * PageSize;
        ulong extraStart = ExtraMemStart + ExtraMemSize;
        ExtraMemSize += size;
        ulong maxP2mPfn = PfnDown(extraStart + size);
        for (ulong pfn = PfnDown(extraStart); pfn <= maxP2mPfn; pfn++) SetPhysToMachineNoAlloc(pfn, InvalidP2mEntry);
    }

    private void BalloonInit(ulong nrPages)
    {
        // The kernel's max_pfn is the end of its RAM: the extra region when there is one.
        ulong endOfRam = ExtraMemSize > 0 ? PfnDown(ExtraMemStart + ExtraMemSize) : nrPages;
        ulong extraPfnEnd = Math.Min(endOfRam, PfnDown(ExtraMemStart + ExtraMemSize));
        for (ulong pfn = PfnUp(ExtraMemStart); pfn < extraPfnEnd; pfn++) Ballooned.Add(pfn);   // list_add: to the head
    }

    /// <summary>increase_reservation: false (nothing changed) where BUG_ON(phys_to_machine_mapping_valid) would fire.</summary>
    public bool IncreaseReservation(ulong[] mfns, out List<ulong> pfns)
    {
        pfns = new List<ulong>();
        for (int i = 0; i < mfns.Length; i++) pfns.Add(Ballooned[Ballooned.Count - 1 - i]);   // balloon_first_page, _next_page
        foreach (ulong pfn in pfns) if (GetPhysToMachine(pfn) != InvalidP2mEntry) return false;
        for (int i = 0; i < mfns.Length; i++)
        {
            ulong pfn = Ballooned[^1];
            Ballooned.RemoveAt(Ballooned.Count - 1);                          // balloon_retrieve: the head
            SetPhysToMachine(pfn, mfns[i]);
        }
        return true;
    }

    /// <summary>decrease_reservation for the pages the allocator handed out, in that order.</summary>
    public void DecreaseReservation(IEnumerable<ulong> pfns)
    {
        foreach (ulong pfn in pfns)
        {
            Ballooned.Add(pfn);                                               // balloon_append: list_add
            SetPhysToMachine(pfn, InvalidP2mEntry);
        }
    }

    public (int Mid, int Leaf) AllocatedPages()
    {
        int mid = 0, leaf = 0;
        foreach (var m in _p2mTop)
        {
            if (m == _p2mMidMissing) continue;
            mid++;
            foreach (var l in m) if (l != _p2mMissing && l != _p2mIdentity) leaf++;
        }
        return (mid, leaf);
    }
}
