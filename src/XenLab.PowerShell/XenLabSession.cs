// The one emulated host a PowerShell process works on. Every cmdlet reaches it through here,
// under one lock, so runspaces on other threads (ForEach-Object -Parallel) cannot interleave
// inside the emulator.
using XenLab.Domains;

namespace XenLab.PowerShell;

public static class XenLabSession
{
    /// <summary>The host every cmdlet of this process works on.</summary>
    public static XenHost Host { get; } = new();

    /// <summary>Held for the whole of one cmdlet's record processing.</summary>
    public static object Gate { get; } = new();
}
