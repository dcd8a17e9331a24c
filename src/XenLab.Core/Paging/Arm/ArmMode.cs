using System.Collections.Generic;
using XenLab.Config;
using XenLab.Domains;
using XenLab.Paging.Modes;

namespace XenLab.Paging.Arm;

// Placeholder while the ARM stage-2 mode is being written on its own branch.
public sealed class ArmMode : IPagingMode
{
    private readonly PagingOptions _options;
    public ArmMode(PagingOptions options) => _options = options;
    public PagingModeKind Kind => PagingModeKind.Arm;
    public IGuestPageTableFormat GuestFormat => X86GuestFormat.Instance;
    public ulong FramesHeld => 0;
    public string Options => _options.Describe(Kind);
    public void Attach(Domain domain) => throw new InvalidConfigurationException("ARM stage-2 paging is not built yet.");
    public void Detach() { }
    public Translation Translate(Vcpu v, ulong va, AccessKind access) => throw new System.NotSupportedException();
    public Translation Explain(Vcpu v, ulong va, AccessKind access, TranslationTrace trace) => throw new System.NotSupportedException();
    public XenLab.Dirty.IVramStrategy? CreateVramStrategy(XenLab.Dirty.VramStrategy kind) => null;
    public void OnCr3Load(Vcpu v) { }
    public void OnInvlpg(Vcpu v, ulong va) { }
    public GuestWriteAction BeforeGuestWrite(ulong gfn, Vcpu? writer) => GuestWriteAction.Direct;
    public void AfterGuestWrite(ulong gfn, int offset, int length) { }
    public void OnP2mChanged(ulong startGfn, ulong endGfn, bool flush = true) { }
    public XenLab.Dirty.IDirtyTracker DirtyTracker => throw new System.NotSupportedException();
    public void Audit(List<string> problems) { }
}
