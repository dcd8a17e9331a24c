using XenLab.Paging;

namespace XenLab.Tests;

/// <summary>The vCPU TLB's flush: everything filled since the last flush goes, however often it is flushed.</summary>
public class TlbTests
{
    [Fact]
    public void EveryFillSinceTheLastFlushIsFlushedAndAnEmptyFlushKeepsItEmpty()
    {
        var tlb = new Tlb(16);
        tlb.Fill(0x1000, 1, 0x100, TlbRights.Writable, 12);
        tlb.Fill(0x200000, 0x200, 0x400, 0, 21);
        Assert.Equal(2, tlb.ValidEntries);
        tlb.FlushAll();
        Assert.Equal(0, tlb.ValidEntries);
        tlb.FlushAll();                                   // nothing filled: nothing to clear
        Assert.Equal(0, tlb.ValidEntries);
        tlb.Fill(0x3000, 3, 0x300, 0, 12);                // a fill after a flush...
        Assert.Equal(1, tlb.ValidEntries);
        tlb.FlushAll();                                   // ...is flushed by the next one
        Assert.Equal(0, tlb.ValidEntries);
        Assert.False(Tlb.Matches(tlb.Slot(0x3000), 0x3000));
        // The large page went with the first flush: an invlpg no longer scans for one.
        tlb.Fill(0x5000, 5, 0x500, 0, 12);
        tlb.Invalidate(0x201000);
        Assert.Equal(1, tlb.ValidEntries);
    }
}
