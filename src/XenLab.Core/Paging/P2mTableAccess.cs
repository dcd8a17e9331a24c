// Guest-table access through the domain's p2m, as the hypervisor itself reads guest memory
// (shadow's guest walk, audits). With Explain set it writes nothing and counts into scratch
// counters, so showing a walk changes nothing a lab measures.
using XenLab.Diagnostics;
using XenLab.Domains;

namespace XenLab.Paging;

public struct P2mTableAccess : IGuestTableAccess
{
    private readonly Domain _domain;
    private readonly PerfCounters _counters;
    private readonly TranslationTrace? _trace;

    public P2mTableAccess(Domain domain, TranslationTrace? explain = null)
    {
        _domain = domain;
        _trace = explain;
        _counters = explain is null ? domain.Counters : new PerfCounters();
    }

    public PerfCounters Counters => _counters;
    public TranslationTrace? Trace => _trace;

    public bool TryRead(ulong gpa, out ulong value, ref int refs, out TranslateStatus failure)
    {
        if (_domain.TryReadPhysU64(gpa, out value))
        {
            refs++;
            failure = TranslateStatus.Ok;
            return true;
        }
        failure = TranslateStatus.PhysicalMissing;
        return false;
    }

    public bool TryWriteAccessedDirty(ulong gpa, ulong value, ref int refs)
    {
        if (_trace is not null) return true;          // explaining: show, do not touch
        return _domain.WriteAccessedDirty(gpa, value);
    }
}
