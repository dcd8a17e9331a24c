// The built-in guest kernel's page tables: map, list and unmap virtual ranges.
using System.Management.Automation;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Memory;

namespace XenLab.PowerShell;

[Cmdlet(VerbsCommon.Add, "XenGuestMapping", DefaultParameterSetName = ParameterSets.DomainName, SupportsShouldProcess = true)]
[OutputType(typeof(GuestMapping))]
public sealed class AddXenGuestMappingCommand : DomainCmdlet
{
    [Parameter(Mandatory = true)]
    [AddressTransformation]
    public ulong VirtualAddress { get; set; }

    [Parameter(Mandatory = true)]
    public ulong Gfn { get; set; }

    // At most every page table the largest kernel_pt_pages (65536) allows, 512 pages each.
    [Parameter(Mandatory = true)]
    [ValidateRange(1UL, 1UL << 25)]
    public ulong Count { get; set; }

    [Parameter]
    public SwitchParameter ReadOnly { get; set; }

    [Parameter]
    public SwitchParameter User { get; set; }

    [Parameter]
    public SwitchParameter NoExecute { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Process(Domain domain)
    {
        var flags = (ReadOnly ? MapFlags.None : MapFlags.Writable) | (User ? MapFlags.User : 0) | (NoExecute ? MapFlags.NoExecute : 0);
        string rights = (ReadOnly ? "ro" : "rw") + (User ? ", user" : "") + (NoExecute ? ", nx" : "");
        if (!ShouldProcess($"Domain '{domain.Name}'", $"Map va {Hex(VirtualAddress)} + {Count} page(s) to gfn {Hex(Gfn)} ({rights})")) return;
        domain.Kernel.Map(VirtualAddress, Gfn, Count, flags);
        if (!PassThru) return;
        ulong end = VirtualAddress + (Count << Page.Shift);
        foreach (var m in domain.Kernel.Mappings())
            if (m.VirtualAddress < end && m.EndAddress > VirtualAddress) WriteObject(m);
    }
}

[Cmdlet(VerbsCommon.Remove, "XenGuestMapping", DefaultParameterSetName = ParameterSets.DomainName, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
public sealed class RemoveXenGuestMappingCommand : DomainCmdlet
{
    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true)]
    [AddressTransformation]
    public ulong VirtualAddress { get; set; }

    // At most one canonical half of the address space (2^47 bytes).
    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true)]
    [ValidateRange(1UL, 1UL << 35)]
    public ulong Count { get; set; }

    protected override void Process(Domain domain)
    {
        if (!ShouldProcess($"Domain '{domain.Name}'", $"Unmap va {Hex(VirtualAddress)} + {Count} page(s)")) return;
        ulong cleared = domain.Kernel.Unmap(VirtualAddress, Count);
        if (cleared == 0)
        {
            WriteFailure("MappingNotFound", ErrorCategory.ObjectNotFound, domain,
                $"Domain '{domain.Name}' has no page mapped in va {Hex(VirtualAddress)} + {Count} page(s); nothing was unmapped.");
            return;
        }
        WriteVerbose($"Domain '{domain.Name}': unmapped {cleared} of {Count} page(s) at va {Hex(VirtualAddress)}.");
    }
}

[Cmdlet(VerbsCommon.Get, "XenGuestMapping", DefaultParameterSetName = ParameterSets.DomainName)]
[OutputType(typeof(GuestMapping))]
public sealed class GetXenGuestMappingCommand : DomainCmdlet
{
    protected override void Process(Domain domain) => WriteObject(domain.Kernel.Mappings(), enumerateCollection: true);
}
