// The built-in "guest kernel": it owns the guest's x86-64 4-level page tables, written as
// real entries into guest RAM, so a lab maps and unmaps virtual ranges without assembling
// tables by hand. Its page-table pages come from a fixed pool of pfns starting at 1 MiB
// (kernel_pt_pages of them), so a student can find them. After every change it shoots down
// the TLBs of all vCPUs: invlpg per page up to Linux's ceiling of 33 pages, a full flush beyond.
using System;
using System.Collections.Generic;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Memory;
using XenLab.Paging;

namespace XenLab.Guest;

/// <summary>A run of virtual pages mapped to consecutive gfns with the same rights.</summary>
public sealed record GuestMapping(string DomainName, ulong VirtualAddress, ulong Gfn, ulong Count, bool Writable, bool User, bool NoExecute)
{
    public ulong EndAddress => VirtualAddress + (Count << Page.Shift);
    public override string ToString() =>
        $"0x{VirtualAddress:x}-0x{EndAddress:x} -> gfn 0x{Gfn:x} ({Count} page(s), {(Writable ? "rw" : "ro")}{(User ? ", user" : "")}{(NoExecute ? ", nx" : "")})";
}

[Flags]
public enum MapFlags
{
    None = 0,
    Writable = 1,
    User = 2,
    NoExecute = 4,
}

public sealed class GuestKernel
{
    /// <summary>Linux's tlb_single_page_flush_ceiling: beyond this many pages, flush everything.</summary>
    public const int SinglePageFlushCeiling = 33;
    private const ulong TableFlags = X86Pte.Present | X86Pte.Writable | X86Pte.User;

    private readonly Domain _domain;
    private readonly ulong _poolBase;
    private readonly int _poolPages;
    private int _poolUsed;

    internal GuestKernel(Domain domain, ulong poolBasePfn, int poolPages)
    {
        _domain = domain;
        _poolBase = poolBasePfn;
        _poolPages = poolPages;
    }

    /// <summary>gfn of the top-level table (PML4) every vCPU's CR3 points at.</summary>
    public ulong Pml4Gfn { get; private set; }
    public ulong PoolBaseGfn => _poolBase;
    public int PoolPages => _poolPages;
    public int PoolPagesUsed => _poolUsed;

    public bool OwnsPfn(ulong pfn) => pfn >= _poolBase && pfn < _poolBase + (ulong)_poolPages;

    internal void Initialise()
    {
        for (ulong p = _poolBase; p < _poolBase + (ulong)_poolPages; p++)
            if (_domain.Classify(p) != PhysAccessStatus.Ok)
                throw new InvalidConfigurationException($"The guest kernel's page-table pool needs RAM at gfn 0x{p:x}, which is not populated; raise memory or lower kernel_pt_pages.");
        Pml4Gfn = AllocateTablePage();
        foreach (var v in _domain.Vcpus) v.LoadCr3(Pml4Gfn << Page.Shift);
    }

    /// <summary>Maps <paramref name="count"/> pages at <paramref name="va"/> to gfns from <paramref name="gfn"/> up.</summary>
    public void Map(ulong va, ulong gfn, ulong count, MapFlags flags)
    {
        CheckRange(va, count);
        if (gfn + count < gfn || gfn + count > (1UL << (X86Pte.MaxPhysAddrBits - Page.Shift)))
            throw new InvalidConfigurationException($"gfn range 0x{gfn:x} + {count} pages is beyond the {X86Pte.MaxPhysAddrBits}-bit physical address space.");
        int needed = TablesNeeded(va, count);
        if (needed > _poolPages - _poolUsed)
            throw new InvalidConfigurationException(
                $"Mapping {count} page(s) at 0x{va:x} needs {needed} new page-table page(s); the guest kernel has {_poolPages - _poolUsed} of {_poolPages} left (kernel_pt_pages). Nothing was mapped.");
        ulong leafBits = X86Pte.Present
            | ((flags & MapFlags.Writable) != 0 ? X86Pte.Writable : 0)
            | ((flags & MapFlags.User) != 0 ? X86Pte.User : 0)
            | ((flags & MapFlags.NoExecute) != 0 ? X86Pte.NoExecute : 0);
        for (ulong i = 0; i < count; i++)
        {
            ulong pteAddr = LeafEntryAddress(va + (i << Page.Shift), create: true);
            WritePte(pteAddr, ((gfn + i) << Page.Shift) | leafBits);
        }
        Shootdown(va, count);
    }

    /// <summary>Clears the leaf entries of the range; returns how many were present.</summary>
    public ulong Unmap(ulong va, ulong count)
    {
        CheckRange(va, count);
        ulong cleared = 0;
        for (ulong i = 0; i < count; i++)
        {
            ulong pteAddr = LeafEntryAddress(va + (i << Page.Shift), create: false);
            if (pteAddr == 0 || !_domain.TryReadPhysU64(pteAddr, out ulong pte) || (pte & X86Pte.Present) == 0) continue;
            WritePte(pteAddr, 0);
            cleared++;
        }
        Shootdown(va, count);
        return cleared;
    }

    /// <summary>Sets or clears the writable bit of present leaf entries; returns how many changed.</summary>
    public ulong Protect(ulong va, ulong count, bool writable)
    {
        CheckRange(va, count);
        ulong changed = 0;
        for (ulong i = 0; i < count; i++)
        {
            ulong pteAddr = LeafEntryAddress(va + (i << Page.Shift), create: false);
            if (pteAddr == 0 || !_domain.TryReadPhysU64(pteAddr, out ulong pte) || (pte & X86Pte.Present) == 0) continue;
            ulong want = writable ? pte | X86Pte.Writable : pte & ~X86Pte.Writable;
            if (want == pte) continue;
            WritePte(pteAddr, want);
            changed++;
        }
        Shootdown(va, count);
        return changed;
    }

    /// <summary>The mappings the guest's tables hold now (read from the tables themselves, raw writes included).</summary>
    public List<GuestMapping> Mappings(ulong? cr3 = null)
    {
        var result = new List<GuestMapping>();
        ulong root = (cr3 ?? (Pml4Gfn << Page.Shift)) & X86Pte.FrameMask;
        Collect(root, 4, 0, X86Pte.Writable | X86Pte.User, 0, result);
        return result;
    }

    private void Collect(ulong table, int level, ulong vaBase, ulong rights, ulong nx, List<GuestMapping> into)
    {
        for (int i = 0; i < 512; i++)
        {
            if (!_domain.TryReadPhysU64(table + (ulong)i * 8, out ulong e) || (e & X86Pte.Present) == 0) continue;
            ulong va = vaBase | ((ulong)i << (12 + 9 * (level - 1)));
            if (level == 4 && (va & (1UL << 47)) != 0) va |= 0xFFFF000000000000UL;   // sign-extend
            ulong r = rights & e;
            ulong x = nx | (e & X86Pte.NoExecute);
            if (level == 1 || (e & X86Pte.PageSize) != 0)
            {
                ulong pages = 1UL << (9 * (level - 1));
                ulong gfn = (e & X86Pte.FrameMask) >> Page.Shift;
                if (level > 1) gfn &= ~(pages - 1);
                Append(into, new GuestMapping(_domain.Name, va, gfn, pages, (r & X86Pte.Writable) != 0, (r & X86Pte.User) != 0, x != 0));
                continue;
            }
            Collect(e & X86Pte.FrameMask, level - 1, va, r, x, into);
        }
    }

    private static void Append(List<GuestMapping> into, GuestMapping m)
    {
        if (into.Count > 0)
        {
            var last = into[^1];
            if (last.EndAddress == m.VirtualAddress && last.Gfn + last.Count == m.Gfn
                && last.Writable == m.Writable && last.User == m.User && last.NoExecute == m.NoExecute)
            {
                into[^1] = last with { Count = last.Count + m.Count };
                return;
            }
        }
        into.Add(m);
    }

    private static void CheckRange(ulong va, ulong count)
    {
        if (!Page.IsAligned(va)) throw new InvalidConfigurationException($"Virtual address 0x{va:x} is not 4 KiB aligned.");
        if (count == 0) throw new InvalidConfigurationException("A mapping needs at least one page.");
        ulong last = va + ((count - 1) << Page.Shift);
        if (count > (1UL << 36) || last < va || !X86Pte.IsCanonical(va) || !X86Pte.IsCanonical(last)
            || ((va ^ last) & (1UL << 63)) != 0)
            throw new InvalidConfigurationException(
                $"Virtual range 0x{va:x} + {count} page(s) is not canonical (it must lie below 0x0000800000000000 or at or above 0xffff800000000000).");
    }

    /// <summary>Counts the page-table pages Map would have to create, without creating any.</summary>
    private int TablesNeeded(ulong va, ulong count)
    {
        var planned = new HashSet<(int, ulong)>();
        int needed = 0;
        ulong last = va + ((count - 1) << Page.Shift);
        ulong chunks = (last >> 21) - (va >> 21) + 1;
        for (ulong c = 0; c < chunks; c++)
        {
            ulong chunk = (va & ~((1UL << 21) - 1)) + (c << 21);
            ulong table = Pml4Gfn << Page.Shift;
            bool exists = true;
            for (int level = 4; level >= 2; level--)
            {
                ulong key = chunk >> (12 + 9 * (level - 1));
                if (exists)
                {
                    _domain.TryReadPhysU64(table + (ulong)X86Pte.IndexAt(chunk, level) * 8, out ulong e);
                    if ((e & X86Pte.Present) != 0)
                    {
                        if ((e & X86Pte.PageSize) != 0)
                            throw new InvalidConfigurationException(
                                $"0x{chunk:x} lies in a {(level == 3 ? "1 GiB" : "2 MiB")} page of the guest's tables; the built-in kernel maps 4 KiB pages only. Nothing was mapped.");
                        table = e & X86Pte.FrameMask;
                        continue;
                    }
                    exists = false;
                }
                if (planned.Add((level, key))) needed++;
            }
        }
        return needed;
    }

    /// <summary>Guest-physical address of the leaf entry for <paramref name="va"/>; 0 when absent and not created.</summary>
    private ulong LeafEntryAddress(ulong va, bool create)
    {
        ulong table = Pml4Gfn << Page.Shift;
        for (int level = 4; level >= 2; level--)
        {
            ulong entryAddr = table + (ulong)X86Pte.IndexAt(va, level) * 8;
            _domain.TryReadPhysU64(entryAddr, out ulong e);
            if ((e & X86Pte.Present) == 0)
            {
                if (!create) return 0;
                ulong gfn = AllocateTablePage();
                e = (gfn << Page.Shift) | TableFlags;
                WritePte(entryAddr, e);
            }
            else if ((e & X86Pte.PageSize) != 0)
            {
                return 0;
            }
            table = e & X86Pte.FrameMask;
        }
        return table + (ulong)X86Pte.IndexAt(va, 1) * 8;
    }

    private ulong AllocateTablePage()
    {
        if (_poolUsed == _poolPages)
            throw new InvalidConfigurationException($"The guest kernel is out of page-table pages ({_poolPages}, kernel_pt_pages).");
        ulong gfn = _poolBase + (ulong)_poolUsed++;
        _domain.TryGetRam(gfn, out var mfn);
        _domain.Machine.Write(mfn).Clear();
        _domain.Counters.Inc(PerfCounter.KernelPtePages);
        return gfn;
    }

    private void WritePte(ulong gpa, ulong value)
    {
        _domain.TryWritePhysU64(gpa, value);
        _domain.Counters.Inc(PerfCounter.KernelPteWrite);
    }

    private void Shootdown(ulong va, ulong count)
    {
        foreach (var v in _domain.Vcpus)
        {
            if (count > SinglePageFlushCeiling) { v.FlushTlb(); continue; }
            for (ulong i = 0; i < count; i++) v.InvalidatePage(va + (i << Page.Shift));
        }
    }
}
