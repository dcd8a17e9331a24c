using System.Collections.Generic;
using System.Linq;
using XenLab.Lab;

namespace XenLab.Tests;

/// <summary>
/// The product oracle (Test-XenDirtyTracking, xenlab --oracle) in its short seeded form over every
/// mode and VRAM strategy, with mode switches: no written page is missed, the audit stays clean,
/// nothing throws. Over-reports are allowed only as all-dirty answers (or the D-bit design's
/// pages mapped writable twice), which the oracle does not count as over-reports.
/// </summary>
public class DirtyTrackingOracleTests
{
    public static IEnumerable<object[]> Cases() =>
        from v in DirtyTrackingOracle.Variants
        from seed in new[] { 1, 2 }
        select new object[] { v.Name, seed };

    [Theory]
    [MemberData(nameof(Cases))]
    public void NoVariantMissesAWrittenPage(string variant, int seed)
    {
        var v = DirtyTrackingOracle.Variants.Single(x => x.Name == variant);
        var r = DirtyTrackingOracle.Run(DirtyTrackingOracle.DefaultConfig(), v,
            new DirtyTrackingOracleOptions { Steps = 1500, Seed = seed, AuditInterval = 1 });
        Assert.True(r.Passed, r + "\n" + string.Join("\n", r.Problems) + "\n" + string.Join("\n", r.Reproducer));
        Assert.Equal(1500, r.Steps);
        Assert.True(r.Queries > 100, $"only {r.Queries} queries");            // the run really checked something
        Assert.True(r.LogDirtyReads > 0);
        Assert.True(r.ModeSwitches > 0);
        Assert.Equal(0, r.OverReportedPages);
    }
}
