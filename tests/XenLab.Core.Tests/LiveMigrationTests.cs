using XenLab.Config;
using XenLab.Domains;
using XenLab.Lab;

namespace XenLab.Tests;

public class LiveMigrationTests
{
    private static Domain Build(PagingModeKind mode)
    {
        var host = new XenHost(2UL << 30);
        var c = TestDomains.Config("mig", 128);
        c.Paging = mode;
        c.ShadowMemoryMiB = 8;
        return host.CreateDomain(c);
    }

    [Theory]
    [InlineData(PagingModeKind.Hap)]
    [InlineData(PagingModeKind.Shadow)]
    [InlineData(PagingModeKind.Arm)]
    public void ALowDirtyRateConverges(PagingModeKind mode)
    {
        var d = Build(mode);
        var r = LiveMigration.PreCopy(d, dirtyRatio: 0.02, workingSetPages: 2048);
        Assert.True(r.Converged, r.Why);
        Assert.Equal((long)d.PopulatedPages, r.Rounds[0].PagesSent);       // round 1 sends every page
        // Each later round sends exactly what the log said was dirty after the one before.
        for (int i = 1; i < r.Rounds.Count; i++) Assert.Equal(r.Rounds[i - 1].DirtyAfter, r.Rounds[i].PagesSent);
        // Every page in a round's log took exactly one log-dirty fault since the clean before it
        // (on ARM too: its stage-2 tracing faults are its log-dirty faults).
        foreach (var round in r.Rounds)
        {
            Assert.True(round.DirtyAfter > 0, round.ToString());
            Assert.Equal(round.DirtyAfter, round.LogDirtyFaults);
        }
        Assert.True(r.StopAndCopyPages <= 64);
        Assert.False(d.LogDirty.Enabled);                                   // left as found
        // The guest's writes took domain time, one instruction (1 ns) each, and nothing else did.
        long written = 0;
        foreach (var round in r.Rounds) written += round.GuestWrites;
        Assert.Equal(written, d.ClockNs);
    }

    [Fact]
    public void AHighDirtyRateStopsShrinkingAndSaysSo()
    {
        var d = Build(PagingModeKind.Hap);
        var r = LiveMigration.PreCopy(d, dirtyRatio: 2.0, workingSetPages: 2048);
        Assert.False(r.Converged);
        Assert.Contains("stopped shrinking", r.Why);
        Assert.True(r.StopAndCopyPages > 64);
    }

    [Fact]
    public void TheDirtyCountNeverExceedsTheWritesOrTheWorkingSet()
    {
        var d = Build(PagingModeKind.Shadow);
        var r = LiveMigration.PreCopy(d, dirtyRatio: 0.05, workingSetPages: 1024);
        foreach (var round in r.Rounds)
        {
            Assert.True(round.DirtyAfter <= round.GuestWrites + 8, round.ToString());    // + pages the kernel or A/D updates touch
            Assert.True(round.DirtyAfter <= 1024 + 8, round.ToString());
        }
    }
}
