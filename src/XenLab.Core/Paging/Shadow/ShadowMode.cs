using System.Collections.Generic;
using XenLab.Config;
using XenLab.Domains;
using XenLab.Paging.Modes;

namespace XenLab.Paging.Shadow;

public sealed class ShadowMode : IPagingMode
{
    private readonly PagingOptions _options;
    public ShadowMode(PagingOptions options) => _options = options;
    public PagingModeKind Kind => PagingModeKind.Shadow;
    public IGuestPageTableFormat GuestFormat => X86GuestFormat.Instance;
    public ulong FramesHeld => 0;
    public string Options => _options.Describe(Kind);
    public void Attach(Domain domain) => throw new InvalidConfigurationException("shadow paging is not built yet.");
    public void Detach() { }
    public Translation Translate(Vcpu v, ulong va, AccessKind access) => throw new System.NotSupportedException();
    public Translation Explain(Vcpu v, ulong va, AccessKind access, TranslationTrace trace) => throw new System.NotSupportedException();
    public void OnCr3Load(Vcpu v) { }
    public void OnInvlpg(Vcpu v, ulong va) { }
    public GuestWriteAction BeforeGuestWrite(ulong gfn) => GuestWriteAction.Direct;
    public void AfterGuestWrite(ulong gfn, int offset, int length) { }
    public void OnP2mChanged(ulong startGfn, ulong endGfn) { }
    public void Audit(List<string> problems) { }
}
