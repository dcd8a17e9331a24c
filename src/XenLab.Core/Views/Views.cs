// Objects a lab prints or pipes: each carries its domain's name (so PowerShell binds
// -DomainName by property name), raw values and their decoding, and a readable ToString().
// The cmdlets and the headless runner both build their output from here.
using System;
using System.Collections.Generic;
using System.Globalization;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.E820;
using XenLab.Memory;
using XenLab.P2m;

namespace XenLab.Views;

public sealed record E820EntryView(string DomainName, int Index, ulong Start, ulong End, ulong Size, E820Type Type)
{
    public ulong FirstGfn => Start >> Page.Shift;
    public ulong EndGfn => (End + Page.OffsetMask) >> Page.Shift;
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"[0x{Start:x12}-0x{End:x12}) {Type,-8} {SizeText(Size)}");
    internal static string SizeText(ulong bytes) =>
        bytes >= 1UL << 30 && bytes % (1UL << 20) == 0 ? $"{bytes >> 20} MiB" : bytes >= 1UL << 20 ? $"{bytes / 1024.0 / 1024.0:0.##} MiB" : $"{bytes >> 10} KiB";
}

public sealed record P2mEntryView(
    string DomainName, ulong Gfn, ulong RawEntry, P2mEntryKind Kind, ulong? Mfn,
    int TopIndex, int MidIndex, int Index, P2mPageKind MidPage, P2mPageKind LeafPage, string E820Type, string Type = "")
{
    public bool IsIdentity => Kind == P2mEntryKind.Identity;
    public bool IsMissing => Kind == P2mEntryKind.Missing;
    /// <summary>Where the answer came from, in the thread's words.</summary>
    public string Source => LeafPage switch
    {
        P2mPageKind.SharedIdentity => MidPage == P2mPageKind.SharedIdentity ? "p2m_mid_identity" : "p2m_identity",
        P2mPageKind.SharedMissing => MidPage == P2mPageKind.SharedMissing ? "p2m_mid_missing" : "p2m_missing",
        _ => "leaf",
    };
    public override string ToString() => Kind switch
    {
        P2mEntryKind.Missing => $"gfn 0x{Gfn:x}: INVALID ({Source})",
        P2mEntryKind.Identity => $"gfn 0x{Gfn:x}: identity -> 0x{Mfn:x} ({Source})",
        _ => $"gfn 0x{Gfn:x}: mfn 0x{Mfn:x}",
    };

    public static P2mEntryView Of(Domain d, ulong gfn)
    {
        using var op = d.EnterOperation();
        var l = d.P2m.Lookup(gfn);
        string e820 = d.E820.Find(gfn << Page.Shift)?.Type.ToString() ?? (gfn << Page.Shift < d.E820.Top ? "gap" : "beyond map");
        return new P2mEntryView(d.Name, gfn, l.RawEntry, l.Kind, l.Mfn.IsValid ? l.Mfn.Value : null,
            l.TopIndex, l.MidIndex, l.Index, l.MidPage, l.LeafPage, e820, P2mTypeInfo.Name(d.GetP2mType(gfn)));
    }
}

public sealed record P2mTreeView(
    string DomainName, int TopPages, int MidPagesAllocated, int LeafPagesAllocated, int SharedPages,
    int TopEntriesMidMissing, int TopEntriesMidIdentity, int MidEntriesMissing, int MidEntriesIdentity,
    ulong IdentityPfns)
{
    public int AllocatedPages => TopPages + MidPagesAllocated + LeafPagesAllocated;
    public ulong AllocatedKiB => (ulong)AllocatedPages * 4;
    public override string ToString() =>
        $"p2m tree: {AllocatedPages} page(s) allocated (top {TopPages}, mid {MidPagesAllocated}, leaf {LeafPagesAllocated}), {SharedPages} shared; " +
        $"top -> mid_missing {TopEntriesMidMissing}, mid_identity {TopEntriesMidIdentity}; mid -> p2m_missing {MidEntriesMissing}, p2m_identity {MidEntriesIdentity}";

    public static P2mTreeView Of(Domain d)
    {
        using var op = d.EnterOperation();
        var s = d.P2m.Stats();
        return new P2mTreeView(d.Name, s.TopPages, s.MidPagesAllocated, s.LeafPagesAllocated, P2mTreeStats.SharedPages,
            s.TopEntriesMidMissing, s.TopEntriesMidIdentity, s.MidEntriesMissing, s.MidEntriesIdentity, d.P2m.CountIdentity());
    }
}

public sealed record PerfCounterView(string DomainName, string Name, long Value, string Description)
{
    public override string ToString() => $"{Name} = {Value}";

    public static List<PerfCounterView> Of(Domain d, bool includeZero = true)
    {
        using var op = d.EnterOperation();
        var list = new List<PerfCounterView>(PerfCounterInfo.Count);
        for (int i = 0; i < PerfCounterInfo.Count; i++)
        {
            var c = (PerfCounter)i;
            long v = d.Counters[c];
            if (v != 0 || includeZero) list.Add(new PerfCounterView(d.Name, PerfCounterInfo.Name(c), v, PerfCounterInfo.Description(c)));
        }
        return list;
    }
}

public sealed record IdentityHoleView(string DomainName, ulong StartGfn, ulong EndGfn, IdentityStrategy Strategy, ulong PfnsSwitched)
{
    /// <summary>Pfns switched to identity outside the range asked for (the coarse strategy's collateral).</summary>
    public ulong CollateralPfns => PfnsSwitched > EndGfn - StartGfn ? PfnsSwitched - (EndGfn - StartGfn) : 0;
    public override string ToString() =>
        $"identity [gfn 0x{StartGfn:x}, 0x{EndGfn:x}) {Strategy}: {PfnsSwitched} pfn(s) switched, {CollateralPfns} outside the range";
}

/// <summary>Bytes read from a guest, with where they came from.</summary>
public sealed record GuestMemoryView(string DomainName, ulong Address, bool Virtual, byte[] Bytes, string Status)
{
    public int Length => Bytes.Length;
    public string Hex => Convert.ToHexString(Bytes);
    public override string ToString() => $"{(Virtual ? "va" : "gpa")} 0x{Address:x} [{Bytes.Length}]: {Hex}";
}

public sealed record BalloonView(string DomainName, BalloonOutcome Outcome, long PagesChanged, ulong PopulatedPages, ulong? OffendingGfn, string Message)
{
    public override string ToString() => Message;
    public static BalloonView Of(Domain d, BalloonResult r) =>
        new(d.Name, r.Outcome, r.PagesChanged, d.PopulatedPages,
            r.Outcome == BalloonOutcome.RefusedMappingValid ? r.OffendingPfn : null, r.Describe());
}

public static class DomainViews
{
    public static List<E820EntryView> E820(Domain d)
    {
        var list = new List<E820EntryView>();
        for (int i = 0; i < d.E820.Entries.Count; i++)
        {
            var e = d.E820.Entries[i];
            list.Add(new E820EntryView(d.Name, i, e.Start, e.End, e.Size, e.Type));
        }
        return list;
    }
}
