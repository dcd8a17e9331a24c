// The one emulated host a PowerShell process works on, shared by all its runspaces. Every
// cmdlet reaches it through here and processes each record under one session lock, so a record
// sees one consistent state; the emulator is thread-safe on its own as well (see Domain's
// locking rule), so scripts calling domain methods from parallel runspaces are safe too.
using XenLab.Domains;

namespace XenLab.PowerShell;

public static class XenLabSession
{
    /// <summary>The host every cmdlet of this process works on.</summary>
    public static XenHost Host { get; } = new();

    /// <summary>Held for the whole of one cmdlet's record processing.</summary>
    public static object Gate { get; } = new();
}
