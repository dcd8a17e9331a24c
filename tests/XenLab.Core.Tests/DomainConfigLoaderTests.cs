using System.IO;
using XenLab.Config;
using XenLab.Domains;
using XenLab.E820;
using XenLab.P2m;
using XenLab.Views;

namespace XenLab.Tests;

public class DomainConfigLoaderTests
{
    private const string Full = """
        name: lab1
        memory: 1G
        maxmem: 2364
        vcpus: 2
        shadow_memory: 16
        videoram: 0x10
        paging: shadow
        identity_strategy: coarse
        kernel_pt_pages: 64
        tlb_entries: 256
        vram_strategy: dbit
        vram_tlb_flush: off
        identity:
          - { start: 0xA0000000, size: 16M }
        framebuffers:
          - { name: mon0, address: 0xF0000000, width: 1024, height: 768, bpp: 32 }
          - { name: mon1, gfn: 0xF1000, width: 800, height: 600, bpp: 16, stride: 2048 }
        """;

    [Fact]
    public void EveryKeyIsReadWithUnitsAndHex()
    {
        var c = DomainConfigLoader.Load(Full, "full.yaml");
        Assert.Equal("lab1", c.Name);
        Assert.Equal(1024UL, c.MemoryMiB);                    // 1G in MiB
        Assert.Equal(2364UL, c.MaxMemMiB);
        Assert.Equal(2, c.Vcpus);
        Assert.Equal(16UL, c.ShadowMemoryMiB);
        Assert.Equal(16UL, c.VideoRamMiB);                    // 0x10
        Assert.Equal(PagingModeKind.Shadow, c.Paging);
        Assert.Equal(IdentityStrategy.Coarse, c.IdentityStrategy);
        Assert.Equal(64, c.KernelPtPages);
        Assert.Equal(256, c.TlbEntries);
        Assert.Equal(XenLab.Dirty.VramStrategy.DirtyBit, c.VramStrategy);
        Assert.False(c.VramTlbFlush);
        Assert.Equal(new IdentityHoleConfig(0xA0000000, 0xA1000000), c.Identity[0]);
        Assert.Equal(0xF1000000UL, c.Framebuffers[1].Address);
        Assert.Equal(2048 * 600UL, c.Framebuffers[1].SizeBytes);
        Assert.Equal(768UL, c.Framebuffers[0].Pages);         // 1024*768*4 / 4096
    }

    [Fact]
    public void AnUnknownKeySuggestsTheClosestAndNamesLineAndColumn()
    {
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load("name: a\nmemroy: 64\n", "x.yaml"));
        Assert.Equal((2L, 1L), (ex.Line, ex.Column));
        Assert.Equal("x.yaml(2,1): unknown key 'memroy' in domain; did you mean 'memory'?", ex.Message);
    }

    [Fact]
    public void AWrongTypeNamesTheValuePosition()
    {
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load("name: a\nvcpus: [1, 2]\n", "x.yaml"));
        Assert.Equal((2L, 8L), (ex.Line, ex.Column));
        Assert.Contains("'vcpus' must be a number, not a list", ex.Message);
    }

    [Fact]
    public void AnOutOfRangeValueSaysTheRange()
    {
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load("name: a\nvcpus: 65\n", "x.yaml"));
        Assert.Equal("x.yaml(2,8): 'vcpus' is 65, outside the range 1 to 64", ex.Message);
    }

    [Fact]
    public void AnUnknownKeyInANestedEntryIsFoundWhereItIs()
    {
        const string yaml = "name: a\nframebuffers:\n  - name: m\n    adress: 0xF0000000\n    width: 8\n    height: 8\n";
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load(yaml, "x.yaml"));
        Assert.Equal((4L, 5L), (ex.Line, ex.Column));
        Assert.Contains("did you mean 'address'?", ex.Message);
    }

    [Fact]
    public void OverlappingE820EntriesNameBoth()
    {
        const string yaml = """
            name: a
            memory: 64
            e820:
              - { start: 0, size: 0x9f000, type: ram }
              - { start: 0x100000, end: 0x8000000, type: ram }
              - { start: 0x7000000, size: 1M, type: reserved }
            """;
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load(yaml, "x.yaml"));
        Assert.Equal(6L, ex.Line);
        Assert.Contains("e820 entry 2 [0x7000000, 0x7100000) overlaps entry 1", ex.Message);
    }

    [Fact]
    public void SyntaxErrorsCarryThePosition()
    {
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load("name: a\nmemory: [64\n", "x.yaml"));
        Assert.Equal("x.yaml", ex.File);
        Assert.True(ex.Line >= 2, ex.Message);
        Assert.Contains("YAML syntax error", ex.Message);
    }

    [Fact]
    public void AnUnclosedFlowMappingEndingInATabIsASyntaxErrorNearItsLine()
    {
        // Found by fuzzing: YamlDotNet throws InvalidOperationException here, with no position.
        const string yaml = "name: a\nmemory: 64\nframebuffers:\n  - { name: m, address: 0xF0000000, width: 8, height: 8\t\nvcpus: 1\n";
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load(yaml, "x.yaml"));
        Assert.InRange(ex.Line, 3, 5);
        Assert.Contains("left open", ex.Message);
    }

    [Fact]
    public void SemanticProblemsAreReportedTogether()
    {
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load("name: a\nmemory: 64\nmaxmem: 32\nmmio_hole: 17\n", "x.yaml"));
        Assert.Contains("maxmem 32 MiB is below memory 64 MiB", ex.Message);
        Assert.Contains("mmio_hole 17 MiB must be a multiple of 16", ex.Message);
    }

    [Theory]
    [InlineData("memory: 1.5G", "'memory': '1.5G' is not a number")]
    [InlineData("memory: 1536K", "'memory' must be a whole number of MiB")]
    [InlineData("paging: ept", "'paging' must be one of hap, shadow, arm, not the value 'ept'")]
    [InlineData("identity_strategy: fine", "must be one of edges-first, coarse")]
    public void BadValuesAreExplained(string line, string expected)
    {
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load("name: a\n" + line + "\n", "x.yaml"));
        Assert.Contains(expected, ex.Message);
        Assert.Equal(2L, ex.Line);
    }

    [Fact]
    public void AFailedLoadCreatesNothing()
    {
        var host = new XenHost(1UL << 30);
        string path = Path.Combine(Path.GetTempPath(), $"xenlab-bad-{System.Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, "name: a\nmemory: 64\nvcpus: 0\n");
        try
        {
            var ex = Assert.Throws<ConfigFileException>(() => host.CreateDomain(DomainConfigLoader.LoadFile(path)));
            Assert.Equal(path, ex.File);
            Assert.Empty(host.Domains);
            Assert.Equal(0UL, host.Machine.AllocatedFrames);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void WrittenBackConfigLoadsToTheSameDomain()
    {
        var c = DomainConfigLoader.Load(Full + "\ne820:\n  - { start: 0, size: 0x9f000, type: ram }\n  - { start: 0x100000, end: 0x93c00000, type: ram }\n  - { start: 0xfec00000, size: 0x1000, type: reserved }\n", "full.yaml");
        string yaml = DomainConfigWriter.ToYaml(c);
        var again = DomainConfigLoader.Load(yaml, "again.yaml");
        Assert.Equal(yaml, DomainConfigWriter.ToYaml(again));
        var h1 = new XenHost(8UL << 30);
        var h2 = new XenHost(8UL << 30);
        var d1 = h1.CreateDomain(c);
        var d2 = h2.CreateDomain(again);
        Assert.Equal(d1.E820.Entries, d2.E820.Entries);
        Assert.Equal(P2mTreeView.Of(d1) with { DomainName = "" }, P2mTreeView.Of(d2) with { DomainName = "" });
        foreach (ulong gfn in new ulong[] { 0, 0x9F, 0x40000, 0x93BFF, 0x93C00, 0xA0000, 0xC0000, 0xFEC00 })
            Assert.Equal(d1.P2m.Get(gfn), d2.P2m.Get(gfn));
        Assert.Equal(E820Type.Reserved, d2.E820.Entries[2].Type);
    }
}
