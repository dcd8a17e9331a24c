// Framebuffers (monitors): plug in and unplug while the domain runs, list, have the guest
// kernel map one, and export one as a PNG. Each body is one call into XenLab.Core.
using System.IO;
using System.Management.Automation;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.Memory;
using XenLab.P2m;
using XenLab.Views;

namespace XenLab.PowerShell;

[Cmdlet(VerbsCommon.Add, "XenFramebuffer", DefaultParameterSetName = ParameterSets.DomainNameAddress, SupportsShouldProcess = true)]
[OutputType(typeof(FramebufferView))]
public sealed class AddXenFramebufferCommand : XenCmdlet
{
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ParameterSets.DomainAddress)]
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = ParameterSets.DomainGfn)]
    [ValidateNotNull]
    public Domain Domain { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainNameAddress)]
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ParameterSets.DomainNameGfn)]
    [ArgumentCompleter(typeof(DomainNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string DomainName { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    public string Name { get; set; } = null!;

    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainAddress)]
    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainNameAddress)]
    [AddressTransformation]
    public ulong Address { get; set; }

    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainGfn)]
    [Parameter(Mandatory = true, ParameterSetName = ParameterSets.DomainNameGfn)]
    [AddressTransformation]
    public ulong Gfn { get; set; }

    [Parameter(Mandatory = true)]
    [ValidateRange(1, 16384)]
    public int Width { get; set; }

    [Parameter(Mandatory = true)]
    [ValidateRange(1, 16384)]
    public int Height { get; set; }

    [Parameter]
    [ValidateSet("8", "16", "24", "32")]
    public int Bpp { get; set; } = 32;

    [Parameter]
    [ValidateRange(0, 16384 * 4)]
    public int Stride { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Process()
    {
        bool byObject = ParameterSetName is ParameterSets.DomainAddress or ParameterSets.DomainGfn;
        var d = ResolveDomain(byObject ? Domain : null, DomainName);
        if (d is null) return;
        bool byGfn = ParameterSetName is ParameterSets.DomainGfn or ParameterSets.DomainNameGfn;
        if (byGfn && Gfn >= P2mTree.MaxPfn)
        {
            WriteFailure("GfnOutOfRange", ErrorCategory.InvalidArgument, d,
                $"Framebuffer '{Name}' at gfn {Hex(Gfn)} is beyond the p2m tree's reach (gfn {Hex(P2mTree.MaxPfn)}, 512 GiB).");
            return;
        }
        var config = new FramebufferConfig(Name, byGfn ? Gfn << Page.Shift : Address, Width, Height, Bpp, Stride);
        string what = $"Plug in framebuffer '{Name}': {Width}x{Height}x{Bpp}, stride {config.EffectiveStride}, " +
                      $"at gpa {Hex(config.Address)} (gfn {Hex(config.FirstGfn)} + {config.Pages} page(s))";
        if (!ShouldProcess($"Domain '{d.Name}'", what)) return;
        long before = d.Counters[PerfCounter.FramebufferPages];
        var fb = d.AddFramebuffer(config);
        WriteVerbose($"Domain '{d.Name}': {fb}; {d.Counters[PerfCounter.FramebufferPages] - before} frame(s) populated for it.");
        if (PassThru) WriteObject(FramebufferView.Of(d, fb));
    }
}

[Cmdlet(VerbsCommon.Remove, "XenFramebuffer", DefaultParameterSetName = ParameterSets.DomainName, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
public sealed class RemoveXenFramebufferCommand : DomainCmdlet
{
    [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(FramebufferNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string[] Framebuffer { get; set; } = null!;

    protected override void Process(Domain domain)
    {
        foreach (string name in Framebuffer)
        {
            var fb = FindFramebuffer(domain, name);
            if (fb is null) continue;
            string what = $"Unplug framebuffer '{fb.Name}' (gfn {Hex(fb.FirstGfn)} + {fb.Pages} page(s)): stop tracking it and free the frames plugging it in populated";
            if (!ShouldProcess($"Domain '{domain.Name}'", what)) continue;
            domain.RemoveFramebuffer(fb.Name);
            if (fb.Mounts.Count > 0)
                WriteWarning($"Domain '{domain.Name}': the guest still maps framebuffer '{fb.Name}' at va {string.Join(", ", fb.Mounts.ConvertAll(Hex))}; " +
                             "those mappings now reach what the gfns were before (the PCI hole's identity frames, or nothing). Remove-XenGuestMapping unmaps them.");
        }
    }
}

[Cmdlet(VerbsCommon.Get, "XenFramebuffer", DefaultParameterSetName = ParameterSets.DomainName)]
[OutputType(typeof(FramebufferView))]
public sealed class GetXenFramebufferCommand : DomainCmdlet
{
    // Not by property name: a piped Domain's Name would bind here and filter by the domain's name.
    [Parameter(Position = 1)]
    [ArgumentCompleter(typeof(FramebufferNameCompleter))]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[] Name { get; set; } = null!;

    protected override void Process(Domain domain)
    {
        foreach (var fb in SelectFramebuffers(domain, Name)) WriteObject(FramebufferView.Of(domain, fb));
    }
}

[Cmdlet(VerbsData.Mount, "XenFramebuffer", DefaultParameterSetName = ParameterSets.DomainName, SupportsShouldProcess = true)]
[OutputType(typeof(FramebufferView))]
public sealed class MountXenFramebufferCommand : DomainCmdlet
{
    [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(FramebufferNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string Framebuffer { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 2)]
    [AddressTransformation]
    public ulong VirtualAddress { get; set; }

    [Parameter]
    public SwitchParameter ReadOnly { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Process(Domain domain)
    {
        var fb = FindFramebuffer(domain, Framebuffer);
        if (fb is null) return;
        string rights = ReadOnly ? "read-only" : "writable";
        string alias = fb.Mounts.Count > 0 ? $"; alias {fb.Mounts.Count + 1} of it (also at va {string.Join(", ", fb.Mounts.ConvertAll(Hex))})" : "";
        if (!ShouldProcess($"Domain '{domain.Name}'", $"Map framebuffer '{fb.Name}' ({fb.Pages} page(s) from gfn {Hex(fb.FirstGfn)}) at va {Hex(VirtualAddress)}, {rights}{alias}")) return;
        domain.MountFramebuffer(fb.Name, VirtualAddress, writable: !ReadOnly);
        if (PassThru) WriteObject(FramebufferView.Of(domain, fb));
    }
}

[Cmdlet(VerbsData.Export, "XenFramebuffer", DefaultParameterSetName = ParameterSets.DomainName, SupportsShouldProcess = true)]
[OutputType(typeof(FramebufferExportView))]
public sealed class ExportXenFramebufferCommand : DomainCmdlet
{
    [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(FramebufferNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string Framebuffer { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 2)]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = null!;

    [Parameter]
    public SwitchParameter HighlightDirty { get; set; }

    protected override void Process(Domain domain)
    {
        var fb = FindFramebuffer(domain, Framebuffer);
        if (fb is null) return;
        if (!TryResolveOutputFile(Path, $"{domain.Name}-{fb.Name}.png", $"framebuffer '{fb.Name}'", out string file)) return;
        string how = HighlightDirty ? ", dirty pages outlined in red (a peek: dirty state is kept)" : "";
        if (!ShouldProcess(file, $"Write framebuffer '{fb.Name}' of domain '{domain.Name}' ({fb.Config.Width}x{fb.Config.Height}) as a PNG{how}")) return;
        WriteObject(DirtyViews.ExportPng(domain, fb.Name, file, HighlightDirty));
    }
}
