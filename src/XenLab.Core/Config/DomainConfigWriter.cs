// Writes a configuration back as YAML that DomainConfigLoader reads to the same domain.
using System.Globalization;
using System.Text;
using XenLab.E820;
using XenLab.P2m;

namespace XenLab.Config;

public static class DomainConfigWriter
{
    public static string ToYaml(DomainConfig c)
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        sb.Append("name: ").Append(Quote(c.Name)).Append('\n');
        sb.Append(inv, $"memory: {c.MemoryMiB}\n");
        if (c.MaxMemMiB is { } max) sb.Append(inv, $"maxmem: {max}\n");
        sb.Append(inv, $"vcpus: {c.Vcpus}\n");
        if (c.ShadowMemoryMiB is { } sh) sb.Append(inv, $"shadow_memory: {sh}\n");
        if (c.VideoRamMiB is { } vr) sb.Append(inv, $"videoram: {vr}\n");
        sb.Append("paging: ").Append(c.Paging.ToString().ToLowerInvariant()).Append('\n');
        if (c.MmioHoleMiB != DomainConfig.DefaultMmioHoleMiB) sb.Append(inv, $"mmio_hole: {c.MmioHoleMiB}\n");
        sb.Append("identity_strategy: ").Append(c.IdentityStrategy == IdentityStrategy.Coarse ? "coarse" : "edges-first").Append('\n');
        if (c.Builder != DomainBuilder.Hvm) sb.Append("builder: pv\n");
        if (c.Type != GuestType.Pv) sb.Append("type: hvm\n");
        if (c.KernelPtPages != DomainConfig.DefaultKernelPtPages) sb.Append(inv, $"kernel_pt_pages: {c.KernelPtPages}\n");
        if (c.TlbEntries != Paging.Tlb.DefaultEntries) sb.Append(inv, $"tlb_entries: {c.TlbEntries}\n");
        var o = c.PagingOptions;
        var d = Paging.Modes.PagingOptions.Default;
        if (o.Oos != d.Oos) sb.Append("oos: ").Append(o.Oos.ToString().ToLowerInvariant()).Append('\n');
        if (o.OosSlots != d.OosSlots) sb.Append(inv, $"oos_slots: {o.OosSlots}\n");
        if (o.HapSuperpageText != d.HapSuperpageText) sb.Append("hap_superpages: ").Append(o.HapSuperpageText).Append('\n');
        if (o.ShadowPrefetch != d.ShadowPrefetch) sb.Append("shadow_prefetch: ").Append(o.ShadowPrefetch ? "on" : "off").Append('\n');
        if (o.ShadowWriteRemoval != d.ShadowWriteRemoval) sb.Append("shadow_write_removal: ").Append(o.ShadowWriteRemoval.ToString().ToLowerInvariant()).Append('\n');
        if (o.HapGpaCacheEntries != d.HapGpaCacheEntries) sb.Append(inv, $"hap_gpa_cache: {o.HapGpaCacheEntries}\n");
        if (o.HapLogDirty != d.HapLogDirty) sb.Append("hap_logdirty: ").Append(o.HapLogDirty.ToString().ToLowerInvariant()).Append('\n');
        if (o.ArmLeafLookup != d.ArmLeafLookup) sb.Append("arm_leaf_lookup: ").Append(o.ArmLeafLookup.ToString().ToLowerInvariant()).Append('\n');
        if (c.VramStrategy != XenLab.Dirty.VramStrategy.Auto)
            sb.Append("vram_strategy: ").Append(c.VramStrategy switch
            {
                XenLab.Dirty.VramStrategy.BackLinks => "backlinks",
                XenLab.Dirty.VramStrategy.DirtyBit => "dbit",
                XenLab.Dirty.VramStrategy.Tracker => "tracker",
                XenLab.Dirty.VramStrategy.Mainline => "mainline",
                _ => "memcmp",
            }).Append('\n');
        if (!c.VramTlbFlush) sb.Append("vram_tlb_flush: off\n");
        if (!c.Translate) sb.Append("translate: off\n");
        if (c.VramWithLogDirty == XenLab.Dirty.VramWithLogDirty.Coexist) sb.Append("vram_with_logdirty: coexist\n");
        if (c.E820 is not null)
        {
            sb.Append("e820:\n");
            foreach (var e in c.E820)
                sb.Append(inv, $"  - {{ start: 0x{e.Start:x}, size: 0x{e.Size:x}, type: {e.Type.ToString().ToLowerInvariant()} }}\n");
        }
        if (c.Identity.Count > 0)
        {
            sb.Append("identity:\n");
            foreach (var h in c.Identity) sb.Append(inv, $"  - {{ start: 0x{h.Start:x}, end: 0x{h.End:x} }}\n");
        }
        if (c.Framebuffers.Count > 0)
        {
            sb.Append("framebuffers:\n");
            foreach (var f in c.Framebuffers)
            {
                sb.Append("  - { name: ").Append(Quote(f.Name));
                sb.Append(inv, $", address: 0x{f.Address:x}, width: {f.Width}, height: {f.Height}, bpp: {f.Bpp}");
                if (f.Stride != 0) sb.Append(inv, $", stride: {f.Stride}");
                sb.Append(" }\n");
            }
        }
        if (c.Workload is { } w)
        {
            sb.Append(inv, $"workload:\n  frames: {w.Frames}\n  budget: {w.BudgetPerFrame}\n  steps:\n");
            foreach (var s in w.Steps)
            {
                string kind = s.Kind == XenLab.Cpu.Workloads.WorkloadStepKind.PageTableChurn ? "pt-churn" : s.Kind.ToString().ToLowerInvariant();
                sb.Append("    - { kind: ").Append(kind);
                if (s.Framebuffer.Length > 0) sb.Append(", framebuffer: ").Append(Quote(s.Framebuffer));
                if (s.Source.Length > 0) sb.Append(", source: ").Append(Quote(s.Source));
                sb.Append(inv, $", x: {s.X}, y: {s.Y}");
                if (s.Width != 0) sb.Append(inv, $", width: {s.Width}");
                if (s.Height != 0) sb.Append(inv, $", height: {s.Height}");
                sb.Append(inv, $", color: 0x{s.Color:x}, color_step: 0x{s.ColorStep:x}");
                sb.Append(inv, $", dx: {s.Dx}, dy: {s.Dy}, lines: {s.Lines}, size: {s.Size}, source_x: {s.SourceX}, source_y: {s.SourceY}, pages: {s.Pages} }}\n");
            }
        }
        return sb.ToString();
    }

    private static string Quote(string s) => "'" + s.Replace("'", "''", System.StringComparison.Ordinal) + "'";
}
