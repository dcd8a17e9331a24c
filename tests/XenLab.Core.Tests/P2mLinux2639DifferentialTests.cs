using System;
using System.Collections.Generic;
using XenLab.Config;
using XenLab.Domains;
using XenLab.E820;
using XenLab.Memory;
using XenLab.P2m;

namespace XenLab.Tests;

/// <summary>
/// `identity_strategy: edges-first` with `builder: pv` against <see cref="Linux2639P2m"/>, a
/// transcription of Linux 2.6.39's setup and p2m code, over random E820 maps: every lookup and
/// the tree's page counts must agree, at build and after ballooning.
/// </summary>
public class P2mLinux2639DifferentialTests
{
    public const int Maps = 300;
    private const ulong HostBytes = 8UL << 30;
    private const ulong MiB = 1UL << 20, GiB = 1UL << 30;

    public static IEnumerable<object[]> Seeds()
    {
        for (int s = 0; s < Maps; s += 25) yield return new object[] { s };
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void EdgesFirstPvBuildAgreesWithLinux2639OnEveryLookupAndTreePage(int firstSeed)
    {
        for (int seed = firstSeed; seed < firstSeed + 25; seed++) CheckOneMap(seed);
    }

    private static void CheckOneMap(int seed)
    {
        var rng = new Random(seed);
        var entries = RandomE820(rng);
        ulong memoryMiB = (ulong)rng.Next(8, 1025);
        var config = new DomainConfig
        {
            Name = "d" + seed, MemoryMiB = memoryMiB, Builder = DomainBuilder.Pv,
            IdentityStrategy = IdentityStrategy.EdgesFirst, Paging = PagingModeKind.Shadow,
            E820 = entries,
        };
        var host = new XenHost(HostBytes);
        var d = host.CreateDomain(config);

        // Xen's builder hands a fresh host's frames out highest first: mfn_list[i] = top - 1 - i.
        ulong nr = memoryMiB << 8;
        ulong hostFrames = HostBytes >> Page.Shift;
        var mfnList = new ulong[nr];
        for (ulong i = 0; i < nr; i++) mfnList[i] = hostFrames - 1 - i;
        var linux = new Linux2639P2m();
        var raw = new List<Linux2639P2m.Entry>();
        foreach (var e in entries) raw.Add(new Linux2639P2m.Entry(e.Start, e.Size, (Linux2639P2m.E820)(int)e.Type));
        linux.MemorySetup(raw, mfnList, initialDomain: true);

        string what = $"seed {seed}: memory {memoryMiB} MiB, E820 {Describe(entries)}";
        ulong top = Math.Max(E820Map.Create(entries).Top >> Page.Shift, nr);
        ulong extraEnd = (linux.ExtraMemStart + linux.ExtraMemSize) >> Page.Shift;
        ulong sweepEnd = Math.Max(top, extraEnd) + 2 * P2mTree.PfnsPerMid;
        Sweep(d, linux, 0, sweepEnd, what + " (after build)");
        AssertSameShape(d, linux, what + " (after build)");
        Assert.True(d.P2m.SharedPagesIntact(), what);
        Assert.Equal((ulong)linux.Ballooned.Count + (d.PopulatedPages), d.MaxPages);

        // Balloon up from the list's head: the extra region, highest pfn first.
        ulong up = Math.Min((ulong)linux.Ballooned.Count, (ulong)rng.Next(0, 4096));
        if (up > 0)
        {
            var before = d.PopulatedPages;
            var r = d.Balloon(before + up);
            Assert.Equal(BalloonOutcome.Done, r.Outcome);
            var mfns = new ulong[up];
            Assert.True(linux.IncreaseReservation(mfns, out var pfns), what);
            foreach (ulong pfn in pfns)
                Assert.True(P2mTree.Classify(d.P2m.Get(pfn)) == P2mEntryKind.Ram, $"{what}: balloon up did not populate 0x{pfn:x}");
            Assert.Equal(before + up, d.PopulatedPages);
            AssertSameShape(d, linux, what + $" (after ballooning up {up})");

            // Down and up again: the pages given back come back first (balloon_append to the head).
            ulong down = Math.Min(up, 64);
            var ramBefore = new HashSet<ulong>();
            foreach (var (pfn, _) in d.P2m.EnumerateRam()) ramBefore.Add(pfn);
            d.Balloon(d.PopulatedPages - down);
            var released = new List<ulong>();
            foreach (var (pfn, _) in d.P2m.EnumerateRamDescending()) ramBefore.Remove(pfn);
            released.AddRange(ramBefore);
            released.Sort((a, b) => b.CompareTo(a));       // XenLab gives back the highest first
            linux.DecreaseReservation(released);
            d.Balloon(d.PopulatedPages + down);
            Assert.True(linux.IncreaseReservation(new ulong[down], out var again), what);
            again.Sort();
            released.Sort();
            Assert.Equal(released, again);
            foreach (ulong pfn in again) Assert.Equal(P2mEntryKind.Ram, P2mTree.Classify(d.P2m.Get(pfn)));
            Sweep(d, linux, 0, sweepEnd, what + " (after ballooning)", ramValuesFromLinux: false);
        }
        host.DestroyDomain(d);
    }

    [Fact]
    public void TheExampleInTheP2mCommentOf2639ComesOutAsDrawn()
    {
        // arch/x86/xen/p2m.c's own example: RAM to 1029 MiB, ACPI, a reserved block, RAM again
        // from 2001 MiB, dom0_mem=max:3GB,1GB. "we reserve_brk two pages ... p2m[1][2] and
        // p2m[1][488]"; identity from pfn 263424 (0x40500) to 512256 (0x7D100).
        var entries = new List<E820Entry>
        {
            new(0, 0x9F000, E820Type.Ram), new(0x9F000, 0x61000, E820Type.Reserved),
            new(MiB, 1028 * MiB, E820Type.Ram), new(1029 * MiB, MiB, E820Type.Acpi),
            new(1500 * MiB, 100 * MiB, E820Type.Reserved), new(2001 * MiB, 1071 * MiB, E820Type.Ram),
        };
        var d = new XenHost(HostBytes).CreateDomain(new DomainConfig
        {
            Name = "comment", MemoryMiB = 1024, Builder = DomainBuilder.Pv, Paging = PagingModeKind.Shadow, E820 = entries,
        });
        foreach (var pfn in new ulong[] { 0x40500, 0x405FF, 0x7D0FF })
        {
            Assert.Equal(P2mTree.IdentityFrame(pfn), d.P2m.Get(pfn));
            Assert.Equal(P2mPageKind.Allocated, d.P2m.Lookup(pfn).MidPage);
        }
        Assert.Equal(P2mPageKind.Allocated, d.P2m.Lookup(0x40500).LeafPage);      // p2m[1][2]
        Assert.Equal(P2mPageKind.Allocated, d.P2m.Lookup(0x7D0FF).LeafPage);      // p2m[1][488]
        Assert.Equal(P2mPageKind.SharedIdentity, d.P2m.Lookup(0x40600).LeafPage); // p2m[1][3] .. [1][487]
        Assert.Equal(P2mPageKind.SharedIdentity, d.P2m.Lookup(0x7D0FF - 0x200).LeafPage);
        Assert.Equal(P2mTree.InvalidEntry, d.P2m.Get(0x404FF));                   // p2m[1][2][0..255] missing
        Assert.Equal(P2mTree.InvalidEntry, d.P2m.Get(0x7D100));                   // p2m[1][488][256..] missing
        // Top 1, mid [0] and [1], leaves: 512 for the populated 1 GiB plus the two edges.
        var s = d.P2m.Stats();
        Assert.Equal((2, 514), (s.MidPagesAllocated, s.LeafPagesAllocated));
    }

    [Theory]
    [InlineData(1000)]
    [InlineData(1050)]
    public void EdgesFirstHvmBuildAgreesWithLinux2639IdentityOverThePopulatedRam(int firstSeed)
    {
        // The HVM-style builder populates E820 RAM lowest first; the identity it installs over
        // that must still be exactly 2.6.39's (set_phys_to_machine for each RAM pfn, then
        // xen_set_identity).
        for (int seed = firstSeed; seed < firstSeed + 50; seed++)
        {
            var rng = new Random(seed);
            var entries = RandomE820(rng);
            ulong memoryMiB = (ulong)rng.Next(8, 1025);
            var d = new XenHost(HostBytes).CreateDomain(new DomainConfig
            {
                Name = "h" + seed, MemoryMiB = memoryMiB, Paging = PagingModeKind.Shadow, E820 = entries,
            });
            var linux = new Linux2639P2m();
            ulong want = memoryMiB << 8, hostTop = (HostBytes >> Page.Shift) - 1, n = 0;
            foreach (var e in entries)
            {
                if (e.Type != E820Type.Ram) continue;
                for (ulong pfn = e.Start >> Page.Shift; pfn < e.End >> Page.Shift && n < want; pfn++, n++)
                    linux.SetPhysToMachine(pfn, hostTop - n);
            }
            var raw = new List<Linux2639P2m.Entry>();
            foreach (var e in entries) raw.Add(new Linux2639P2m.Entry(e.Start, e.Size, (Linux2639P2m.E820)(int)e.Type));
            linux.SetIdentity(raw, initialDomain: true);
            string what = $"seed {seed} (hvm builder): memory {memoryMiB} MiB, E820 {Describe(entries)}";
            Sweep(d, linux, 0, (E820Map.Create(entries).Top >> Page.Shift) + P2mTree.PfnsPerMid, what);
            AssertSameShape(d, linux, what);
        }
    }

    /// <summary>Every pfn in [from, to): same kind, and the same raw entry where Linux's is not a frame XenLab chose.</summary>
    private static void Sweep(Domain d, Linux2639P2m linux, ulong from, ulong to, string what, bool ramValuesFromLinux = true)
    {
        for (ulong pfn = from; pfn < to; pfn++)
        {
            // Both answer from the same kind of shared page: its 512 pfns agree if one does
            // (the shared pages are never written: SharedPagesIntact, and the transcription
            // throws where 2.6.39 would write one).
            int kind = linux.LeafKind(pfn);
            var mine = d.P2m.Lookup(pfn).LeafPage;
            if ((pfn & (P2mTree.PfnsPerLeaf - 1)) == 0 && pfn + P2mTree.PfnsPerLeaf <= to
                && ((kind == 0 && mine == P2mPageKind.SharedMissing) || (kind == 1 && mine == P2mPageKind.SharedIdentity)))
            {
                Assert.True(linux.GetPhysToMachine(pfn) == d.P2m.Get(pfn), $"{what}: pfn 0x{pfn:x}");
                pfn += P2mTree.PfnsPerLeaf - 1;
                continue;
            }
            ulong expect = linux.GetPhysToMachine(pfn);
            ulong got = d.P2m.Get(pfn);
            if (expect == got) continue;
            bool bothRam = P2mTree.Classify(expect) == P2mEntryKind.Ram && P2mTree.Classify(got) == P2mEntryKind.Ram;
            if (bothRam && !ramValuesFromLinux) continue;   // ballooned frames: whichever the host had free
            Assert.Fail($"{what}: pfn 0x{pfn:x} Linux 2.6.39 says 0x{expect:x}, XenLab says 0x{got:x}");
        }
    }

    private static void AssertSameShape(Domain d, Linux2639P2m linux, string what)
    {
        var (mid, leaf) = linux.AllocatedPages();
        var s = d.P2m.Stats();
        Assert.True(mid == s.MidPagesAllocated && leaf == s.LeafPagesAllocated,
            $"{what}: Linux allocates {mid} mid and {leaf} leaf pages, XenLab {s.MidPagesAllocated} and {s.LeafPagesAllocated}");
        Assert.Equal(0, s.TopEntriesMidIdentity);           // 2.6.39 has no p2m_mid_identity
    }

    /// <summary>
    /// A PC-like map: low RAM, maybe the EBDA/BIOS reservations, RAM from 1 MiB, then a random
    /// run of gaps, reserved/ACPI/NVS/unusable entries (page-unaligned ones too) and RAM, often
    /// a PCI hole up to 4 GiB and RAM above it. RAM stays page-aligned, as E820Map requires.
    /// </summary>
    internal static List<E820Entry> RandomE820(Random rng)
    {
        var list = new List<E820Entry>();
        ulong lowEnd = rng.Next(3) switch { 0 => 0x9F000UL, 1 => 0xA0000UL, _ => 0x9E000UL };
        list.Add(new(0, lowEnd, E820Type.Ram));
        if (lowEnd < 0xA0000 && rng.Next(2) == 0) list.Add(new(lowEnd, 0xA0000 - lowEnd, E820Type.Reserved));
        if (rng.Next(10) < 7) { ulong b = rng.Next(2) == 0 ? 0xE0000UL : 0xF0000UL; list.Add(new(b, MiB - b, E820Type.Reserved)); }
        ulong ram1 = rng.Next(4) switch
        {
            0 => (ulong)rng.Next(1, 4) * GiB - MiB,                      // ends on a 1 GiB boundary
            1 => (ulong)rng.Next(2, 1500) * 2 * MiB,                     // ends on a leaf boundary
            _ => (ulong)rng.Next(1024, 800_000) * Page.Size,             // anywhere
        };
        list.Add(new(MiB, ram1, E820Type.Ram));
        ulong cursor = MiB + ram1;
        int segments = rng.Next(0, 8);
        for (int i = 0; i < segments && cursor < 12 * GiB; i++)
        {
            int kind = rng.Next(8);
            ulong size = RandomSize(rng);
            if (kind == 0)                                               // a gap
            {
                cursor += size;
                continue;
            }
            if (kind == 1 && cursor < E820Map.FourGiB)                   // a PCI hole to 4 GiB, RAM above
            {
                ulong start = Math.Max(cursor, E820Map.FourGiB - (ulong)rng.Next(1, 2048) * MiB);
                if (rng.Next(2) == 0) list.Add(new(start, E820Map.FourGiB - start, E820Type.Reserved));
                cursor = E820Map.FourGiB;
                kind = 7;
            }
            if (kind >= 6)                                               // RAM, page-aligned
            {
                ulong start = (cursor + Page.OffsetMask) & ~Page.OffsetMask;
                ulong pages = Math.Max(1, size >> Page.Shift);
                list.Add(new(start, pages << Page.Shift, E820Type.Ram));
                cursor = start + (pages << Page.Shift);
                continue;
            }
            var type = kind switch { 2 => E820Type.Reserved, 3 => E820Type.Acpi, 4 => E820Type.Nvs, _ => E820Type.Unusable };
            // Next to RAM an entry must leave RAM page-aligned: only runs that end in a gap or
            // before another non-RAM entry may end mid-page; the next RAM rounds up.
            list.Add(new(cursor, size, type));
            cursor += size;
        }
        return list;
    }

    private static ulong RandomSize(Random rng) => rng.Next(5) switch
    {
        0 => (ulong)rng.Next(1, 64) * 0x400,                           // under a page, unaligned
        1 => (ulong)rng.Next(1, 4096) * 0x400 + 0x200,                 // unaligned, up to 4 MiB
        2 => (ulong)rng.Next(1, 600) * 2 * MiB,                        // whole leaves
        3 => (ulong)rng.Next(1, 3) * GiB,                              // whole mid pages
        _ => (ulong)rng.Next(1, 300_000) * Page.Size,                  // pages
    };

    private static string Describe(List<E820Entry> entries)
    {
        var parts = new List<string>();
        foreach (var e in entries) parts.Add($"{e.Type}[0x{e.Start:x},0x{e.End:x})");
        return string.Join(" ", parts);
    }
}
