using System.Collections.Generic;
using System.Linq;
using XenLab.Config;
using XenLab.Domains;
using XenLab.Memory;
using XenLab.P2m;
using XenLab.Paging.Hap;
using XenLab.Paging.Modes;

namespace XenLab.Tests;

/// <summary>
/// Issue 11, point 8 (scale): HAP's audit and its hand-over of types on a mode switch walk the
/// EPT's entries against the p2m's runs (a 1 GiB or 2 MiB leaf checked as one unit) instead of
/// every gfn. The expectation is the per-gfn definition, written out here as the audit read it
/// before (every RAM gfn's leaf as ept_get_entry reads it, compared with what its p2m frame and
/// type give): each corruption must yield exactly the problems that walk finds, and the switch
/// must leave exactly the types a per-gfn read gives. A 4 GiB domain (default 1 GiB PCI hole)
/// has 1 GiB leaves on GiBs 1, 2 and 4, 2 MiB leaves on GiB 0 but its region 0 (4 KiB leaves).
/// </summary>
public class HapAuditScaleTests
{
    private const ulong Gib = 0x40000;

    private static Domain Hap(HapLogDirty logDirty = HapLogDirty.Pml)
    {
        var host = new XenHost(8UL << 30);
        var c = TestDomains.Config("scale", 4096, 4096);
        c.Paging = PagingModeKind.Hap;
        c.PagingOptions = c.PagingOptions with { HapLogDirty = logDirty, HapSuperpages = true, HapSuperpages1G = true };
        return host.CreateDomain(c);
    }

    private static Ept EptOf(Domain d) => ((HapMode)d.Mode!).Ept;

    private static List<string> Audit(Domain d)
    {
        var p = new List<string>();
        d.Mode!.Audit(p);
        return p;
    }

    /// <summary>The audit's per-gfn definition (the structure check aside): one message per RAM gfn whose leaf is wrong.</summary>
    private static List<string> PerGfnReference(Domain d)
    {
        var ept = EptOf(d);
        var problems = new List<string>();
        foreach (var (pfn, mfn) in d.P2m.EnumerateRam())
        {
            ulong have = ept.PeekWithRecalc(pfn, out bool recalc, out bool super);
            if (!EptEntry.IsPresent(have) || EptEntry.FrameOf(have) != mfn.Value)
            {
                problems.Add($"hap: gfn 0x{pfn:x}: EPT leaf 0x{have:x16} does not map mfn 0x{mfn.Value:x}");
                continue;
            }
            if (recalc || EptEntry.IsMisconfigured(have)) continue;
            ulong want = ept.LeafFor(mfn.Value, EptEntry.TypeOf(have), super) & ~(EptEntry.Accessed | EptEntry.Dirty | EptEntry.PageSize);
            have &= ~(EptEntry.Accessed | EptEntry.Dirty);
            if (have != want)
                problems.Add($"hap: gfn 0x{pfn:x}: EPT leaf 0x{have:x16}, its type says 0x{want:x16} ({EptEntry.Describe(want, 1)})");
        }
        return problems;
    }

    private static Mfn L3Table(Domain d) => new(EptEntry.FrameOf(d.Machine.ReadUInt64(EptOf(d).Root, 0)));
    private static Mfn L2Table(Domain d) => new(EptEntry.FrameOf(d.Machine.ReadUInt64(L3Table(d), 0)));   // GiB 0's EPD
    private static Mfn L1Table(Domain d) => new(EptEntry.FrameOf(d.Machine.ReadUInt64(L2Table(d), 0)));   // region 0's leaf table

    /// <summary>Writes a raw entry, checks the audit against the per-gfn reference and the expected count, restores it.</summary>
    private static void Corrupt(Domain d, Mfn table, int index, System.Func<ulong, ulong> change, int expected, string containing)
    {
        ulong old = d.Machine.ReadUInt64(table, index * 8);
        d.Machine.WriteUInt64(table, index * 8, change(old));
        var got = Audit(d);
        Assert.Equal(PerGfnReference(d), got);
        Assert.Equal(expected, got.Count);
        Assert.All(got, p => Assert.Contains(containing, p));
        d.Machine.WriteUInt64(table, index * 8, old);
        Assert.Empty(Audit(d));
    }

    [Fact]
    public void TheAuditIsCleanOnAGigapageDomainAndAgreesWithThePerGfnWalk()
    {
        var d = Hap();
        Assert.True(EptEntry.IsSuperpage(d.Machine.ReadUInt64(L3Table(d), 8)));          // GiB 1 is one 1 GiB leaf
        Assert.True(EptEntry.IsSuperpage(d.Machine.ReadUInt64(L2Table(d), 8)));          // GiB 0's region 1 a 2 MiB leaf
        Assert.Empty(Audit(d));
        Assert.Empty(PerGfnReference(d));
    }

    [Fact]
    public void AOneGiBLeafOnAnotherAlignedGiBIsCaughtForEveryGfnItMaps()
    {
        // Aligned (the structure check passes) but GiB 2's frames: all 262,144 gfns of GiB 1 map the wrong frame.
        var d = Hap();
        Corrupt(d, L3Table(d), 1, e => e + (Gib << 12), (int)Gib, "does not map mfn");
    }

    [Fact]
    public void AWrongTypeInAOneGiBLeafIsCaughtForEveryGfn()
    {
        // sa_p2mt says ram_ro but the rights stay RWX: every gfn's leaf differs from what its type gives.
        var d = Hap();
        Corrupt(d, L3Table(d), 2, e => (e & ~EptEntry.TypeMask) | ((ulong)P2mType.RamRo << EptEntry.TypeShift), (int)Gib, "its type says");
    }

    [Fact]
    public void AMissingOneGiBLeafAndAWrongTwoMiBLeafAndOneWrongFourKiBLeafAreCaught()
    {
        var d = Hap();
        Corrupt(d, L3Table(d), 4, _ => 0, (int)Gib, "does not map mfn");                         // GiB 4 unmapped
        Corrupt(d, L2Table(d), 7, e => e & ~EptEntry.Write, 512, "its type says");               // a ram_rw 2 MiB leaf read-only
        Corrupt(d, L1Table(d), 0x123, e => e ^ (1UL << 12), 1, "gfn 0x123: EPT leaf");          // one 4 KiB leaf's frame
    }

    [Fact]
    public void AP2mFrameChangedInsideAOneGiBLeafIsCaughtForThatGfnAlone()
    {
        // The p2m's run breaks in the middle of GiB 1's leaf: the audit must check each run's part of the leaf.
        var d = Hap();
        ulong g = Gib + 0x1234;
        ulong m = d.P2m.Get(g);
        d.P2m.Set(g, m + 7);
        var got = Audit(d);
        Assert.Equal(PerGfnReference(d), got);
        Assert.Equal(new[] { $"hap: gfn 0x{g:x}: EPT leaf 0x{EptEntry.PageOf(d.Machine.ReadUInt64(L3Table(d), 8), g, 3) & ~EptEntry.PageSize:x16} does not map mfn 0x{m + 7:x}" }, got);
        d.P2m.Set(g, m);
        Assert.Empty(Audit(d));
    }

    [Fact]
    public void AMarkedOneGiBLeafIsLeftToTheMisconfigurationExitAsBefore()
    {
        // A leaf marked for recalculation is not compared (resolve_misconfig rewrites it), but its frame still is.
        var d = Hap();
        Corrupt(d, L3Table(d), 1, e => EptEntry.MarkMisconfigured(e & ~EptEntry.Write, recalc: true), 0, "");
        Corrupt(d, L3Table(d), 1, e => EptEntry.MarkMisconfigured(e, recalc: true) + (Gib << 12), (int)Gib, "does not map mfn");
    }

    /// <summary>Every RAM gfn's type that is not ram_rw, read one gfn at a time.</summary>
    private static Dictionary<ulong, P2mType> TypesByGfn(Domain d)
    {
        var types = new Dictionary<ulong, P2mType>();
        foreach (var (pfn, _) in d.P2m.EnumerateRam())
        {
            var t = d.GetP2mType(pfn);
            if (t != P2mType.RamRw) types[pfn] = t;
        }
        return types;
    }

    [Theory]
    [InlineData(HapLogDirty.Pml)]
    [InlineData(HapLogDirty.Wp)]
    public void AHapShadowHapRoundTripKeepsEveryTypeExactly(HapLogDirty how)
    {
        var d = Hap(how);
        // Lazy log-dirty ranges: part of a 1 GiB leaf (mixed: the leaf is marked whole), a whole GiB,
        // part of a 2 MiB leaf in GiB 0, and a range over region 0's 4 KiB leaves.
        d.ChangeP2mTypes(Gib + 0x100, Gib + 0x100 + 3 * 512 + 7, P2mType.RamRw, P2mType.RamLogDirty, flush: true);
        d.ChangeP2mTypes(2 * Gib, 3 * Gib, P2mType.RamRw, P2mType.RamLogDirty, flush: true);
        d.ChangeP2mTypes(0x1000 + 0x30, 0x1000 + 0x90, P2mType.RamRw, P2mType.RamLogDirty, flush: true);
        d.ChangeP2mTypes(0x180, 0x1a0, P2mType.RamRw, P2mType.RamLogDirty, flush: true);
        // ram_ro on a few gfns (each splits its superpage), one inside a log-dirty range, one in GiB 4;
        // and one log-dirty page made ram_rw again (as its first write would).
        foreach (ulong g in new ulong[] { 0x1c0, 0x3000 + 5, Gib + 0x200, 4 * Gib + 5 }) d.SetP2mType(g, P2mType.RamRo);
        d.SetP2mType(2 * Gib + 0x777, P2mType.RamRw);
        var expected = TypesByGfn(d);
        Assert.Equal(4, expected.Count(kv => kv.Value == P2mType.RamRo));
        Assert.Equal(3 * 512 + 7 - 1 + (int)Gib - 1 + 0x60 + 0x20, expected.Count(kv => kv.Value == P2mType.RamLogDirty));
        Assert.Empty(Audit(d));

        d.SetPagingMode(PagingModeKind.Shadow);
        Assert.Equal(expected.OrderBy(kv => kv.Key), d.Types.Overrides.OrderBy(kv => kv.Key));
        Assert.Equal(expected, TypesByGfn(d));

        d.SetPagingMode(PagingModeKind.Hap);
        Assert.Equal(0, d.Types.Count);                  // the EPT holds them again
        Assert.Equal(expected, TypesByGfn(d));
        Assert.Empty(Audit(d));

        d.SetPagingMode(PagingModeKind.Shadow);
        Assert.Equal(expected.OrderBy(kv => kv.Key), d.Types.Overrides.OrderBy(kv => kv.Key));
    }
}
