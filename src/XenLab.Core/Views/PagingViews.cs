// Views of the paging modes: a translation explained step by step, trace events, the audit.
using System.Collections.Generic;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Paging;

namespace XenLab.Views;

public sealed record WalkStepView(string DomainName, int Step, string Table, int Level, string Name, ulong TableFrame, int Index, ulong EntryAddress, ulong RawEntry, string Decoded)
{
    public override string ToString() => $"{Table,-7} {Name}[{Index}] = 0x{RawEntry:x16} {Decoded}";
}

/// <summary>Every step of one translation in the domain's current mode, with the outcome and its cost.</summary>
public sealed record TranslationView(
    string DomainName, int Vcpu, ulong VirtualAddress, string Access, string Mode, TranslateStatus Status,
    ulong? Gfn, ulong? Mfn, uint ErrorCode, int MemoryReferences, IReadOnlyList<WalkStepView> Steps, IReadOnlyList<string> Notes)
{
    public override string ToString() => Status == TranslateStatus.Ok
        ? $"0x{VirtualAddress:x} -> gfn 0x{Gfn:x} -> mfn 0x{Mfn:x} ({Mode}, {MemoryReferences} refs, {Steps.Count} steps)"
        : $"0x{VirtualAddress:x}: {Status} error code 0x{ErrorCode:x} ({Mode})";

    public static TranslationView Of(Domain d, int vcpu, ulong va, AccessKind access)
    {
        using var op = d.EnterOperation();
        if (vcpu < 0 || vcpu >= d.Vcpus.Count)
            throw new InvalidConfigurationException($"Domain '{d.Name}' has no vcpu {vcpu} (it has {d.Vcpus.Count}).");
        var trace = new TranslationTrace();
        var t = d.Vcpus[vcpu].Explain(va, access, trace);
        var steps = new List<WalkStepView>(trace.Steps.Count);
        for (int i = 0; i < trace.Steps.Count; i++)
        {
            var s = trace.Steps[i];
            steps.Add(new WalkStepView(d.Name, i + 1, s.Table, s.Level, s.Name, s.TableFrame, s.Index, s.EntryAddress, s.RawEntry, s.Decoded));
        }
        bool ok = t.Status == TranslateStatus.Ok;
        return new TranslationView(d.Name, vcpu, va, AccessText(access), d.PagingMode.ToString(), t.Status,
            ok || t.Gfn != 0 ? t.Gfn : null, ok && t.Mfn != ulong.MaxValue ? t.Mfn : null, (uint)t.ErrorCode, t.MemoryReferences,
            steps, trace.Notes.ToArray());
    }

    private static string AccessText(AccessKind a) =>
        ((a & AccessKind.Write) != 0 ? "write" : (a & AccessKind.Fetch) != 0 ? "fetch" : "read") + ((a & AccessKind.User) != 0 ? ",user" : "");
}

public sealed record TraceEventView(string DomainName, long Sequence, TraceKind Kind, int Vcpu, ulong VirtualAddress, ulong Gfn, ulong Mfn, ulong Value, string Detail)
{
    public override string ToString() => $"#{Sequence} {Kind} vcpu{Vcpu} va=0x{VirtualAddress:x} gfn=0x{Gfn:x} {Detail}";

    public static List<TraceEventView> Of(Domain d, long since = 0)
    {
        using var op = d.EnterOperation();
        var list = new List<TraceEventView>();
        foreach (var e in d.Trace.Snapshot(since))
            list.Add(new TraceEventView(d.Name, e.Sequence, e.Kind, e.Vcpu, e.VirtualAddress, e.Gfn, e.Mfn, e.Value, e.Detail));
        return list;
    }
}

/// <summary>The paging mode's audit: every entry it keeps checked against the guest and the p2m.</summary>
public sealed record PagingAuditView(string DomainName, string Mode, string Options, bool IsClean, int ProblemCount, IReadOnlyList<string> Problems)
{
    public override string ToString() => IsClean ? $"{DomainName}: {Mode} audit clean" : $"{DomainName}: {Mode} audit found {ProblemCount} problem(s)";

    public static PagingAuditView Of(Domain d)
    {
        using var op = d.EnterOperation();
        var problems = new List<string>();
        d.Mode?.Audit(problems);
        return new PagingAuditView(d.Name, d.PagingMode.ToString(), d.Mode?.Options ?? "", problems.Count == 0, problems.Count, problems);
    }
}
