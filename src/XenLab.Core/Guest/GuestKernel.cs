// The built-in "guest kernel": it owns the guest's 4-level page tables, written as real
// entries into guest RAM in the format of the domain's architecture (x86-64, or AArch64 for
// ARM domains), so a lab maps and unmaps virtual ranges without assembling tables by hand.
// Its page-table pages come from a fixed pool of pfns starting at 1 MiB (kernel_pt_pages of
// them), so a student can find them. Its writes go through the guest-physical write path, so
// a shadowing hypervisor sees them as a real kernel's writes. After every change it shoots
// down the TLBs of all vCPUs: invlpg per page up to Linux's ceiling of 33 pages, a full flush beyond.
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

/// <summary>One leaf entry of the guest's tables, decoded: what a differential test compares across modes.</summary>
public readonly record struct GuestLeaf(ulong VirtualAddress, int Level, ulong EntryAddress, GuestEntryState State);

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

    private readonly Domain _domain;
    private readonly ulong _poolBase;
    private readonly int _poolPages;
    private int _poolUsed;

    internal GuestKernel(Domain domain, ulong poolBasePfn, int poolPages)
    {
        _domain = domain;
        _poolBase = poolBasePfn;
        _poolPages = poolPages;
        Format = X86GuestFormat.Instance;
    }

    /// <summary>gfn of the top-level table every vCPU's CR3 (TTBR0 on ARM) points at.</summary>
    public ulong Pml4Gfn { get; private set; }
    public ulong PoolBaseGfn => _poolBase;
    public int PoolPages => _poolPages;
    public int PoolPagesUsed => _poolUsed;
    public IGuestPageTableFormat Format { get; private set; }

    public bool OwnsPfn(ulong pfn) => pfn >= _poolBase && pfn < _poolBase + (ulong)_poolPages;

    internal void Initialise(IGuestPageTableFormat format)
    {
        Format = format;
        for (ulong p = _poolBase; p < _poolBase + (ulong)_poolPages; p++)
            if (_domain.Classify(p) != PhysAccessStatus.Ok)
                throw new InvalidConfigurationException($"The guest kernel's page-table pool needs RAM at gfn 0x{p:x}, which is not populated; raise memory or lower kernel_pt_pages.");
        Pml4Gfn = AllocateTablePage();
        foreach (var v in _domain.Vcpus) v.SetCr3Raw(Pml4Gfn << Page.Shift);
    }

    /// <summary>Maps <paramref name="count"/> pages at <paramref name="va"/> to gfns from <paramref name="gfn"/> up.</summary>
    public void Map(ulong va, ulong gfn, ulong count, MapFlags flags)
    {
        using var op = _domain.EnterOperation();
        CheckRange(va, count);
        if (gfn + count < gfn || gfn + count > (1UL << (X86Pte.MaxPhysAddrBits - Page.Shift)))
            throw new InvalidConfigurationException($"gfn range 0x{gfn:x} + {count} pages is beyond the {X86Pte.MaxPhysAddrBits}-bit physical address space.");
        // Every 512 pages need a leaf table of their own, and every table comes from the pool:
        // a count beyond that is refused before any planning work (which is per 2 MiB chunk).
        if (count > (ulong)_poolPages * 512)
            throw new InvalidConfigurationException(
                $"Mapping {count} page(s) needs at least {(count + 511) / 512} leaf page-table page(s); the guest kernel has {_poolPages} in all (kernel_pt_pages). Nothing was mapped.");
        int needed = TablesNeeded(va, count);
        if (needed > _poolPages - _poolUsed)
            throw new InvalidConfigurationException(
                $"Mapping {count} page(s) at 0x{va:x} needs {needed} new page-table page(s); the guest kernel has {_poolPages - _poolUsed} of {_poolPages} left (kernel_pt_pages). Nothing was mapped.");
        for (ulong i = 0; i < count; i++)
        {
            ulong pteAddr = LeafEntryAddress(va + (i << Page.Shift), create: true);
            WritePte(pteAddr, Format.LeafEntry(gfn + i, flags));
        }
        Shootdown(va, count);
    }

    /// <summary>Clears the leaf entries of the range; returns how many were present.</summary>
    public ulong Unmap(ulong va, ulong count) =>
        RewriteLeaves(va, count, static (s, _) => s with { Present = false });

    /// <summary>Sets or clears write permission of present leaf entries; returns how many changed.</summary>
    public ulong Protect(ulong va, ulong count, bool writable) =>
        RewriteLeaves(va, count, writable, static (s, w) => s.Writable == w ? null : s with { Writable = w, Dirty = w && s.Dirty });

    /// <summary>Clears accessed and dirty in present leaf entries (what a working-set scan or a
    /// dirty-page harvest does); returns how many changed. Shoots down like any change.</summary>
    public ulong ClearAccessedDirty(ulong va, ulong count) =>
        RewriteLeaves(va, count, static (s, _) => !s.Accessed && !s.Dirty ? null : s with { Accessed = false, Dirty = false });

    private ulong RewriteLeaves(ulong va, ulong count, Func<GuestEntryState, bool, GuestEntryState?> change) =>
        RewriteLeaves(va, count, false, change);

    /// <summary>
    /// Applies <paramref name="change"/> to each present 4 KiB leaf of the range (null: leave it),
    /// writes the changed entries as the guest would, then shoots down. Returns how many changed.
    /// </summary>
    private ulong RewriteLeaves(ulong va, ulong count, bool arg, Func<GuestEntryState, bool, GuestEntryState?> change)
    {
        using var op = _domain.EnterOperation();
        CheckRange(va, count);
        ulong changed = 0;
        for (ulong i = 0; i < count;)
        {
            ulong at = va + (i << Page.Shift);
            ulong pteAddr = LeafEntryAddress(at, create: false, out int missingLevel);
            if (pteAddr == 0)
            {
                // Nothing below an absent entry (or a large page, which this kernel never maps):
                // skip the whole span it covers, so the cost follows the tables, not the count.
                ulong span = 1UL << (Page.Shift + 9 * (missingLevel - 1));
                ulong skip = (span - (at & (span - 1))) >> Page.Shift;
                if (skip >= count - i) break;
                i += skip;
                continue;
            }
            i++;
            if (!_domain.TryReadPhysU64(pteAddr, out ulong pte)) continue;
            var s = Format.Decode(pte, 1);
            if (!s.Present || change(s, arg) is not { } next) continue;
            WritePte(pteAddr, next.Present ? Format.Encode(next, 1) : 0);
            changed++;
        }
        Shootdown(va, count);
        return changed;
    }

    /// <summary>The mappings the guest's tables hold now (read from the tables themselves, raw writes included).</summary>
    public List<GuestMapping> Mappings()
    {
        using var op = _domain.EnterOperation();
        var result = new List<GuestMapping>();
        foreach (var leaf in Leaves())
        {
            var s = leaf.State;
            ulong pages = 1UL << (9 * (leaf.Level - 1));
            ulong gfn = leaf.Level > 1 ? s.Frame & ~(pages - 1) : s.Frame;
            Append(result, new GuestMapping(_domain.Name, leaf.VirtualAddress, gfn, pages, s.Writable, s.User, s.NoExecute));
        }
        return result;
    }

    /// <summary>Every present leaf with effective rights (ANDed/ORed down the levels), in VA order.</summary>
    public List<GuestLeaf> Leaves()
    {
        using var op = _domain.EnterOperation();
        var result = new List<GuestLeaf>();
        Collect(Pml4Gfn << Page.Shift, 4, 0, true, true, false, result);
        return result;
    }

    private void Collect(ulong table, int level, ulong vaBase, bool w, bool u, bool nx, List<GuestLeaf> into)
    {
        for (int i = 0; i < 512; i++)
        {
            ulong addr = table + (ulong)i * 8;
            if (!_domain.TryReadPhysU64(addr, out ulong e)) continue;
            var s = Format.Decode(e, level);
            if (!s.Present) continue;
            ulong va = vaBase | ((ulong)i << (12 + 9 * (level - 1)));
            if (level == 4 && (va & (1UL << 47)) != 0) va |= 0xFFFF000000000000UL;   // sign-extend
            bool ew = w && s.Writable, eu = u && s.User, enx = nx || s.NoExecute;
            if (s.Leaf)
            {
                into.Add(new GuestLeaf(va, level, addr, s with { Writable = ew, User = eu, NoExecute = enx }));
                continue;
            }
            Collect(s.Frame << Page.Shift, level - 1, va, ew, eu, enx, into);
        }
    }

    /// <summary>
    /// Rewrites every table entry in place from the current format to <paramref name="format"/>,
    /// keeping frames, rights and accessed/dirty state. Called by a mode switch with no mode attached.
    /// </summary>
    internal void ConvertTables(IGuestPageTableFormat format)
    {
        var old = Format;
        Convert(Pml4Gfn << Page.Shift, 4, old, format);
        Format = format;
    }

    private void Convert(ulong table, int level, IGuestPageTableFormat from, IGuestPageTableFormat to)
    {
        for (int i = 0; i < 512; i++)
        {
            ulong addr = table + (ulong)i * 8;
            if (!_domain.TryReadPhysU64(addr, out ulong e) || e == 0) continue;
            var s = from.Decode(e, level);
            if (!s.Present) { _domain.TryWritePhysU64(addr, 0); continue; }
            _domain.TryWritePhysU64(addr, to.Encode(s, level));
            if (!s.Leaf) Convert(s.Frame << Page.Shift, level - 1, from, to);
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
                    var s = Format.Decode(e, level);
                    if (s.Present)
                    {
                        if (s.Leaf)
                            throw new InvalidConfigurationException(
                                $"0x{chunk:x} lies in a {(level == 3 ? "1 GiB" : "2 MiB")} page of the guest's tables; the built-in kernel maps 4 KiB pages only. Nothing was mapped.");
                        table = s.Frame << Page.Shift;
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
    private ulong LeafEntryAddress(ulong va, bool create) => LeafEntryAddress(va, create, out _);

    /// <summary>The same; when it answers 0, <paramref name="missingLevel"/> is the level whose entry was absent or a large leaf.</summary>
    private ulong LeafEntryAddress(ulong va, bool create, out int missingLevel)
    {
        missingLevel = 0;
        ulong table = Pml4Gfn << Page.Shift;
        for (int level = 4; level >= 2; level--)
        {
            ulong entryAddr = table + (ulong)X86Pte.IndexAt(va, level) * 8;
            _domain.TryReadPhysU64(entryAddr, out ulong e);
            var s = Format.Decode(e, level);
            if (!s.Present)
            {
                missingLevel = level;
                if (!create) return 0;
                ulong gfn = AllocateTablePage();
                WritePte(entryAddr, Format.TableEntry(gfn));
                table = gfn << Page.Shift;
                continue;
            }
            if (s.Leaf) { missingLevel = level; return 0; }
            table = s.Frame << Page.Shift;
        }
        return table + (ulong)X86Pte.IndexAt(va, 1) * 8;
    }

    private ulong AllocateTablePage()
    {
        if (_poolUsed == _poolPages)
            throw new InvalidConfigurationException($"The guest kernel is out of page-table pages ({_poolPages}, kernel_pt_pages).");
        ulong gfn = _poolBase + (ulong)_poolUsed++;
        _domain.WriteGuestPhysical(gfn << Page.Shift, ZeroPage, _domain.Vcpus[0]);
        _domain.Counters.Inc(PerfCounter.KernelPtePages);
        return gfn;
    }

    private static readonly byte[] ZeroPage = new byte[Page.Size];

    private void WritePte(ulong gpa, ulong value)
    {
        _domain.WriteGuestPhysU64(gpa, value, _domain.Vcpus[0]);     // the kernel runs its page-table code on vcpu0
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
