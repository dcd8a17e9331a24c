// A domain's configuration: xl.cfg keys where one exists, plus the lab's own.
// Loaded from YAML (DomainConfigLoader), written back by DomainConfigWriter, and checked
// by Validate() before anything is built.
using System;
using System.Collections.Generic;
using System.Text.RegularExpressions;
using XenLab.E820;
using XenLab.Memory;
using XenLab.P2m;

namespace XenLab.Config;

/// <summary>Which paging mode a domain starts in.</summary>
public enum PagingModeKind
{
    Hap,
    Shadow,
    Arm,
}

/// <summary>
/// How the domain's memory is populated at build. Hvm: the first <c>memory</c> E820 RAM pfns,
/// lowest first (hvmloader's view). Pv: pfns 0..N-1 with descending mfns whatever the E820
/// says, then Linux 2.6.39's xen_memory_setup: holes released, identity installed, the
/// balloon region placed above 4 GiB.
/// </summary>
public enum DomainBuilder
{
    Hvm,
    Pv,
}

/// <summary>
/// xl.cfg's type: which layer the seed-004 identity lives in. Pv: the guest's own p2m maps
/// non-RAM 1:1 and the hypervisor's type is mmio_direct (dom0-style device access). Hvm: the
/// hypervisor's p2m gives non-RAM mmio_dm, every access exits to the device model, which
/// reads all ones and discards writes (no device is emulated).
/// </summary>
public enum GuestType
{
    Pv,
    Hvm,
}

/// <summary>An extra identity (1:1) hole, [Start, End) in bytes.</summary>
public sealed record IdentityHoleConfig(ulong Start, ulong End);

/// <summary>A framebuffer (monitor) in guest-physical memory.</summary>
public sealed record FramebufferConfig(string Name, ulong Address, int Width, int Height, int Bpp, int Stride = 0)
{
    /// <summary>Bytes per scanline: the stride if given, else width * bytes per pixel.</summary>
    public int EffectiveStride => Stride != 0 ? Stride : Width * (Bpp / 8);
    public ulong SizeBytes => (ulong)EffectiveStride * (ulong)Height;
    public ulong Pages => (SizeBytes + Page.OffsetMask) >> Page.Shift;
    public ulong FirstGfn => Address >> Page.Shift;
}

public sealed class DomainConfig
{
    public const ulong DefaultMmioHoleMiB = 1024;
    public const int DefaultKernelPtPages = 512;
    public const int MaxVcpus = 64;

    public string Name { get; set; } = "";
    /// <summary>MiB populated at build (xl's memory).</summary>
    public ulong MemoryMiB { get; set; } = 512;
    /// <summary>MiB of address space the default E820 gives as RAM (xl's maxmem); null = memory.</summary>
    public ulong? MaxMemMiB { get; set; }
    public int Vcpus { get; set; } = 1;
    /// <summary>Shadow pool in MiB (xl's shadow_memory); null = xl's default for the size.</summary>
    public ulong? ShadowMemoryMiB { get; set; }
    /// <summary>Video RAM in MiB (xl's videoram); null = none declared.</summary>
    public ulong? VideoRamMiB { get; set; }
    public PagingModeKind Paging { get; set; } = PagingModeKind.Hap;
    /// <summary>Size of the PCI hole below 4 GiB in the default E820 (xl's mmio_hole).</summary>
    public ulong MmioHoleMiB { get; set; } = DefaultMmioHoleMiB;
    /// <summary>An explicit E820; null = the default HVM map.</summary>
    public List<E820Entry>? E820 { get; set; }
    public List<IdentityHoleConfig> Identity { get; set; } = new();
    public IdentityStrategy IdentityStrategy { get; set; } = IdentityStrategy.EdgesFirst;
    /// <summary>How memory is populated at build (the lab's `builder`).</summary>
    public DomainBuilder Builder { get; set; } = DomainBuilder.Hvm;
    /// <summary>xl.cfg's `type`: pv (identity is mmio_direct) or hvm (identity is mmio_dm, device-model exits).</summary>
    public GuestType Type { get; set; } = GuestType.Pv;
    public List<FramebufferConfig> Framebuffers { get; set; } = new();
    /// <summary>Pages the guest kernel reserves for page tables, from 1 MiB up.</summary>
    public int KernelPtPages { get; set; } = DefaultKernelPtPages;
    public int TlbEntries { get; set; } = XenLab.Paging.Tlb.DefaultEntries;
    /// <summary>Per-mode switches: OOS, prefetch, HAP's nested cache, ARM's leaf lookup.</summary>
    public XenLab.Paging.Modes.PagingOptions PagingOptions { get; set; } = XenLab.Paging.Modes.PagingOptions.Default;
    /// <summary>Dirty-VRAM strategy for new ranges (Auto: the mode's natural one).</summary>
    public XenLab.Dirty.VramStrategy VramStrategy { get; set; } = XenLab.Dirty.VramStrategy.Auto;
    /// <summary>Flush TLBs after clearing dirty state (off only to show what it costs to forget).</summary>
    public bool VramTlbFlush { get; set; } = true;
    /// <summary>A built-in guest workload the headless runner (and Invoke-XenGuestCode -Workload) runs frame by frame.</summary>
    public XenLab.Lab.WorkloadConfig? Workload { get; set; }

    public ulong EffectiveMaxMemMiB => MaxMemMiB ?? MemoryMiB;

    /// <summary>xl's default shadow pool: 1 MiB per vCPU plus 8 KiB per MiB of RAM, rounded up.</summary>
    public ulong EffectiveShadowMemoryMiB => ShadowMemoryMiB ?? (ulong)Vcpus + (EffectiveMaxMemMiB * 8 + 1023) / 1024;

    private static readonly Regex NamePattern = new("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", RegexOptions.CultureInvariant);

    public static bool IsValidName(string name) => NamePattern.IsMatch(name);

    /// <summary>The E820 the domain gets: the explicit one, or the default HVM map.</summary>
    public E820Map BuildE820() =>
        E820 is null ? E820Map.DefaultHvm(EffectiveMaxMemMiB << 20, MmioHoleMiB << 20) : E820Map.Create(E820);

    /// <summary>Every problem with this configuration; empty when it can be built.</summary>
    public List<string> Problems()
    {
        var p = new List<string>();
        if (!IsValidName(Name)) p.Add($"name '{Name}' must be 1-64 characters of letters, digits, '_', '.', '-', starting with a letter or digit");
        if (MemoryMiB < 4) p.Add($"memory {MemoryMiB} MiB is below the 4 MiB minimum");
        if (MemoryMiB > 512 * 1024) p.Add($"memory {MemoryMiB} MiB exceeds the 512 GiB the p2m tree reaches");
        if (MaxMemMiB is { } max && max < MemoryMiB) p.Add($"maxmem {max} MiB is below memory {MemoryMiB} MiB");
        if (EffectiveMaxMemMiB > 512 * 1024) p.Add($"maxmem {EffectiveMaxMemMiB} MiB exceeds the 512 GiB the p2m tree reaches");
        if (Vcpus < 1 || Vcpus > MaxVcpus) p.Add($"vcpus {Vcpus} must be between 1 and {MaxVcpus}");
        if (ShadowMemoryMiB is 0) p.Add("shadow_memory must be at least 1 MiB");
        if (KernelPtPages < 8 || KernelPtPages > 65536) p.Add($"kernel_pt_pages {KernelPtPages} must be between 8 and 65536");
        if (TlbEntries < 1 || TlbEntries > 65536 || (TlbEntries & (TlbEntries - 1)) != 0) p.Add($"tlb_entries {TlbEntries} must be a power of two up to 65536");
        p.AddRange(PagingOptions.Problems());
        if (Builder == DomainBuilder.Pv && Type == GuestType.Hvm) p.Add("builder pv needs type pv: an HVM guest's memory is laid out by hvmloader (builder hvm)");
        if (E820 is null && (MmioHoleMiB < 16 || MmioHoleMiB > 3584 || MmioHoleMiB % 16 != 0))
            p.Add($"mmio_hole {MmioHoleMiB} MiB must be a multiple of 16 between 16 and 3584");
        for (int i = 0; i < Identity.Count; i++)
        {
            var h = Identity[i];
            if (h.End <= h.Start) p.Add($"identity hole {i} [0x{h.Start:x}, 0x{h.End:x}) is empty or reversed");
            else if ((h.End >> Page.Shift) > P2mTree.MaxPfn) p.Add($"identity hole {i} ends beyond the p2m tree's 512 GiB");
        }
        var names = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        for (int i = 0; i < Framebuffers.Count; i++)
        {
            var f = Framebuffers[i];
            string fn = $"framebuffer {i} '{f.Name}'";
            if (!IsValidName(f.Name)) p.Add($"{fn}: name must be letters, digits, '_', '.', '-'");
            if (!names.Add(f.Name)) p.Add($"{fn}: name is used twice");
            if (!Page.IsAligned(f.Address)) p.Add($"{fn}: address 0x{f.Address:x} is not 4 KiB aligned");
            if (f.Width < 1 || f.Width > 16384 || f.Height < 1 || f.Height > 16384) p.Add($"{fn}: {f.Width}x{f.Height} is outside 1..16384");
            if (f.Bpp is not (8 or 16 or 24 or 32)) p.Add($"{fn}: bpp {f.Bpp} must be 8, 16, 24 or 32");
            if (f.Stride != 0 && f.Stride < f.Width * (f.Bpp / 8)) p.Add($"{fn}: stride {f.Stride} is shorter than a scanline ({f.Width * (f.Bpp / 8)} bytes)");
            for (int j = 0; j < i; j++)
            {
                var g = Framebuffers[j];
                if (f.Address < g.Address + g.SizeBytes && g.Address < f.Address + f.SizeBytes)
                    p.Add($"{fn} overlaps framebuffer {j} '{g.Name}'");
            }
        }
        if (p.Count == 0)
        {
            try
            {
                var map = BuildE820();
                ulong ramPages = map.RamBytes >> Page.Shift;
                if (ramPages < (ulong)KernelPtPages + 256 + 1)
                    p.Add($"the E820 has {ramPages} RAM pages, too few for the guest kernel's {KernelPtPages} page-table pages above 1 MiB");
                if (!map.IsRam(E820Map.OneMiB >> Page.Shift) || !map.IsRam((E820Map.OneMiB >> Page.Shift) + (ulong)KernelPtPages - 1))
                    p.Add($"the guest kernel's page tables need RAM from 1 MiB for {KernelPtPages} pages");
            }
            catch (InvalidConfigurationException e)
            {
                p.Add(e.Message);
            }
        }
        return p;
    }

    public void Validate()
    {
        var p = Problems();
        if (p.Count > 0)
            throw new InvalidConfigurationException($"Domain '{Name}' cannot be built: " + string.Join("; ", p) + ".");
    }

    public DomainConfig Clone()
    {
        var c = (DomainConfig)MemberwiseClone();
        c.E820 = E820 is null ? null : new List<E820Entry>(E820);
        c.Identity = new List<IdentityHoleConfig>(Identity);
        c.Framebuffers = new List<FramebufferConfig>(Framebuffers);
        return c;
    }
}
