using System;
using System.Text;
using XenLab.Config;
using XenLab.Domains;

namespace XenLab.Tests;

/// <summary>
/// Issue 9 section 3: bad input gets a clear error naming the file, line and column of the key
/// at fault, and nothing crashes. Each case here crashed, threw a non-XenLab exception or
/// pointed at the wrong place before its fix.
/// </summary>
public class BadInputTests
{
    private static Domain Create(string yaml, ulong hostBytes = 8UL << 30) =>
        new XenHost(hostBytes).CreateDomain(DomainConfigLoader.Load(yaml, "x.yaml"));

    [Fact]
    public void DeeplyNestedYamlIsRefusedWithAPositionNotAStackOverflow()
    {
        // 80 KB of '[' used to overflow the stack inside YamlDotNet's node model and kill the process.
        string yaml = "name: a\nmemory: " + new string('[', 80_000) + "\n";
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load(yaml, "x.yaml"));
        Assert.Equal(2L, ex.Line);                                   // where nesting passes the limit (the root mapping is level 1)
        Assert.Equal(9L + DomainConfigLoader.MaxNestingDepth - 1, ex.Column);
        Assert.Contains("nested more than 32 deep", ex.Message);
    }

    [Fact]
    public void DeepBlockNestingIsRefusedToo()
    {
        var sb = new StringBuilder("name: a\nworkload:\n");
        for (int i = 0; i < 200; i++) sb.Append(new string(' ', 2 * (i + 1))).Append("k:\n");
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load(sb.ToString(), "x.yaml"));
        Assert.Contains("nested more than", ex.Message);
    }

    [Fact]
    public void AHugeDocumentIsRefusedBeforeParsing()
    {
        string yaml = "name: a\n" + new string('#', DomainConfigLoader.MaxDocumentChars) + "\n";
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load(yaml, "x.yaml"));
        Assert.Equal((1L, 1L), (ex.Line, ex.Column));
        Assert.Contains("more than a lab file may have", ex.Message);
    }

    [Fact]
    public void AHugeShadowPoolIsRefusedAtItsKeyNotByAnOverflowAtAttach()
    {
        // shadow_memory: 8388608 (8 TiB) threw OverflowException in ShadowMode.Attach.
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load("name: a\npaging: shadow\nshadow_memory: 8388608\n", "x.yaml"));
        Assert.Equal("x.yaml(3,16): 'shadow_memory' is 8388608, outside the range 1 to 16384 MiB", ex.Message);
        // Built from the API, the same value is refused by the check, not by an overflow.
        var c = TestDomains.Config();
        c.Paging = PagingModeKind.Shadow;
        c.ShadowMemoryMiB = 8388608;
        var api = Assert.Throws<InvalidConfigurationException>(() => new XenHost(1UL << 30).CreateDomain(c));
        Assert.Contains("shadow_memory 8388608 MiB exceeds the 16384 MiB limit", api.Message);
    }

    [Theory]
    [InlineData("memory: 1T", 2, 9, "'memory' is 1T, outside the range 4 to 524288 MiB (the p2m tree reaches 512 GiB)")]
    [InlineData("maxmem: 0x1000000", 2, 9, "'maxmem' is 0x1000000, outside the range 4 to 524288 MiB (the p2m tree reaches 512 GiB)")]
    [InlineData("videoram: 1T", 2, 11, "'videoram' is 1T, outside the range 0 to 4096 MiB")]
    [InlineData("mmio_hole: 8G", 2, 12, "'mmio_hole' is 8G, outside the range 16 to 3584 MiB")]
    [InlineData("kernel_pt_pages: 0x100000", 2, 18, "'kernel_pt_pages' is 0x100000, outside the range 8 to 65536")]
    [InlineData("tlb_entries: 1G", 2, 14, "'tlb_entries' is 1G, outside the range 1 to 65536")]
    [InlineData("oos_slots: 65", 2, 12, "'oos_slots' is 65, outside the range 2 to 64")]
    [InlineData("hap_gpa_cache: 8K", 2, 16, "'hap_gpa_cache' is 8K, outside the range 0 to 4096")]
    public void EverySizeKeyHasAnUpperBoundCheckedAtItsValue(string line, int row, int column, string message)
    {
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load("name: a\n" + line + "\n", "x.yaml"));
        Assert.Equal($"x.yaml({row},{column}): {message}", ex.Message);
    }

    [Fact]
    public void FramebufferAndWorkloadSizesAreBounded()
    {
        const string head = "name: a\nframebuffers:\n  - { name: m, address: 0xF0000000, width: 64, height: 64, ";
        var stride = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load(head + "stride: 1M }\n", "x.yaml"));
        Assert.Contains("'stride' is 1M, outside the range 1 to 65536", stride.Message);
        const string wl = "name: a\nworkload:\n  frames: 100001\n  steps:\n    - { kind: pt-churn, pages: 4 }\n";
        var frames = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load(wl, "x.yaml"));
        Assert.Equal("x.yaml(3,11): 'frames' is 100001, outside the range 1 to 100000", frames.Message);
        var steps = new StringBuilder("name: a\nworkload:\n  steps:\n");
        for (int i = 0; i < 300; i++) steps.Append("    - { kind: pt-churn, pages: 1 }\n");
        var many = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load(steps.ToString(), "x.yaml"));
        Assert.Equal(4L + DomainConfigLoader.MaxSteps, many.Line);            // the first step too many
        Assert.Contains("'steps' has 300 entries, more than the 256 allowed", many.Message);
    }

    [Fact]
    public void AnIdentityHoleEndingInThePageAfterTheTreeIsRefusedAtLoad()
    {
        // The load check rounded the end down and the build up: ArgumentOutOfRangeException in P2mTree.SetIdentityRange.
        const string yaml = "name: a\nidentity:\n  - { start: 0x8000000000, size: 1 }\n";
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load(yaml, "x.yaml"));
        Assert.Equal((3L, 5L), (ex.Line, ex.Column));
        Assert.Contains("identity hole 0 [0x8000000000, 0x8000000001) ends beyond the p2m tree's 512 GiB", ex.Message);
        // The last page below the limit: coarse installs it; edges-first (2.6.39 gives up on a
        // range reaching MAX_P2M_PFN) refuses it at load instead of building without the hole.
        var d = Create("name: a\nidentity_strategy: coarse\nidentity:\n  - { start: 0x7FFFFFF000, size: 1 }\n");
        Assert.Equal(P2m.P2mTree.IdentityFrame(0x7FFFFFF), d.P2m.Get(0x7FFFFFF));
        var edges = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load("name: a\nidentity:\n  - { start: 0x7FFFFFF000, size: 1 }\n", "x.yaml"));
        Assert.Equal((3L, 5L), (edges.Line, edges.Column));
        Assert.Contains("reaches the end of the p2m tree", edges.Message);
        // A page lower, edges-first installs it.
        var lower = Create("name: b\nidentity:\n  - { start: 0x7FFFFFE000, size: 1 }\n");
        Assert.Equal(P2m.P2mTree.IdentityFrame(0x7FFFFFE), lower.P2m.Get(0x7FFFFFE));
    }

    [Fact]
    public void ANameEndingInANewlineIsRefused()
    {
        // '$' matched before a final newline: "block\n" was a valid name and the written config did not load back.
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load("name: |\n  block\nmemory: 64\n", "x.yaml"));
        Assert.Equal((1L, 7L), (ex.Line, ex.Column));
        Assert.Contains("must be 1-64 characters", ex.Message);
        Assert.False(DomainConfig.IsValidName("block\n"));
        Assert.True(DomainConfig.IsValidName("block"));
    }

    [Fact]
    public void SemanticErrorsPointAtTheKeyNotAtTheTopOfTheFile()
    {
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load("name: a\nvcpus: 2\nmemory: 64\nmaxmem: 32\n", "x.yaml"));
        Assert.Equal("x.yaml(4,9): maxmem 32 MiB is below memory 64 MiB", ex.Message);
        const string fbs = "name: a\nframebuffers:\n  - { name: m, address: 0xF0000000, width: 64, height: 64 }\n  - { name: n, address: 0xF0000000, width: 64, height: 64 }\n";
        var overlap = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load(fbs, "x.yaml"));
        Assert.Equal((4L, 25L), (overlap.Line, overlap.Column));             // the second one's address
        Assert.Contains("overlaps framebuffer 0", overlap.Message);
    }

    [Fact]
    public void AFramebufferBeyondTheTreesReachIsRefusedAtLoadWithItsPosition()
    {
        // Found only while building, with no file, line or column.
        const string yaml = "name: a\nframebuffers:\n  - { name: m, address: 0x7FFFFFF000, width: 1024, height: 768 }\n";
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load(yaml, "x.yaml"));
        Assert.Equal((3L, 25L), (ex.Line, ex.Column));
        Assert.Contains("ends beyond the p2m tree's 512 GiB", ex.Message);
    }

    [Fact]
    public void BuildErrorsNameTheKeyThatCausedThem()
    {
        // An identity hole over populated RAM is found while building.
        var hole = Assert.ThrowsAny<XenLabException>(() => Create("name: a\nmemory: 64\nidentity:\n  - { start: 0x200000, size: 4K }\n"));
        Assert.IsType<InvalidConfigurationException>(hole);
        Assert.StartsWith("x.yaml(4,5): Identity range", hole.Message);
        // Memory larger than the host: the error keeps its type (and ErrorId) and gains the position.
        var host = new XenHost(1UL << 30);
        var big = Assert.Throws<MachineMemoryExhaustedException>(() =>
            host.CreateDomain(DomainConfigLoader.Load("name: a\nvcpus: 1\nmemory: 2G\n", "x.yaml")));
        Assert.StartsWith("x.yaml(3,9): Host machine memory exhausted", big.Message);
        Assert.Equal(new ConfigLocation("x.yaml", 3, 9), big.Location);
        Assert.Empty(host.Domains);
        Assert.Equal(0UL, host.Machine.AllocatedFrames);
        // A second domain of the same name: the name's position.
        host.CreateDomain(DomainConfigLoader.Load("name: a\nmemory: 64\n", "x.yaml"));
        var twice = Assert.Throws<InvalidConfigurationException>(() => host.CreateDomain(DomainConfigLoader.Load("memory: 64\nname: a\n", "y.yaml")));
        Assert.StartsWith("y.yaml(2,7): A domain named 'a' already exists", twice.Message);
    }

    [Fact]
    public void AShadowPoolLargerThanTheHostIsRefusedAtShadowMemory()
    {
        var host = new XenHost(1UL << 30);
        var ex = Assert.Throws<MachineMemoryExhaustedException>(() =>
            host.CreateDomain(DomainConfigLoader.Load("name: a\nmemory: 64\npaging: shadow\nshadow_memory: 2048\n", "x.yaml")));
        Assert.Equal(new ConfigLocation("x.yaml", 4, 16), ex.Location);
        Assert.Equal(0UL, host.Machine.AllocatedFrames);
    }

    [Fact]
    public void MemoryLargerThanTheHostAllocatesNoHugeArrayFirst()
    {
        // 512 GiB on a 1 GiB host used to build a 1 GiB array of frame numbers before noticing.
        long before = GC.GetAllocatedBytesForCurrentThread();
        var c = TestDomains.Config("big", 400 * 1024);
        Assert.Throws<MachineMemoryExhaustedException>(() => new XenHost(1UL << 30).CreateDomain(c));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 64L << 20, "allocated a frame array for memory the host does not have");
    }

    [Fact]
    public void MessagesPrintValuesAsTheUserWroteThem()
    {
        // "0x10 is outside 1..16384" was a width of 0 and a height of 10.
        var (_, d) = TestDomains.Create();
        var ex = Assert.Throws<InvalidConfigurationException>(() => d.AddFramebuffer(new FramebufferConfig("m", 0xF0000000, 0, 10, 32)));
        Assert.DoesNotContain("0x10", ex.Message);
        Assert.Contains("width 0 is outside the range 1 to 16384", ex.Message);
        // In a file, the text as written: hex stays hex, sizes keep their suffix.
        var hex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load(
            "name: a\nframebuffers:\n  - { name: m, address: 0xF0000000, width: 64, height: 0x20000 }\n", "x.yaml"));
        Assert.Contains("'height' is 0x20000, outside the range 1 to 16384", hex.Message);
        var mib = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load("name: a\nmemory: 1536K\n", "x.yaml"));
        Assert.Contains("'memory' must be a whole number of MiB; 1536K", mib.Message);
    }

    [Fact]
    public void AHugeScalarDoesNotMakeAHugeMessage()
    {
        string yaml = "name: a\npaging: " + new string('x', 100_000) + "\n";
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load(yaml, "x.yaml"));
        Assert.True(ex.Message.Length < 300, ex.Message.Length.ToString());
    }

    [Fact]
    public void TheDefaultMapIsRefusedWhenThePciHoleWouldPushRamPastTheTree()
    {
        // maxmem 512 GiB plus the 1 GiB PCI hole ends RAM at 513 GiB: ballooning up to it threw ArgumentOutOfRangeException.
        var ex = Assert.Throws<ConfigFileException>(() => DomainConfigLoader.Load("name: a\nmemory: 64\nmaxmem: 512G\n", "x.yaml"));
        Assert.Equal((3L, 9L), (ex.Line, ex.Column));
        Assert.Contains("beyond the p2m tree's 512 GiB", ex.Message);
    }
}
