using System;
using XenLab.Memory;

namespace XenLab.Tests;

public class MachineMemoryTests
{
    [Fact]
    public void FramesAreHandedOutFromTheTopDown()
    {
        var m = new MachineMemory(1 << 20);               // 256 frames
        var got = new Mfn[4];
        m.Allocate(got);
        Assert.Equal(new[] { new Mfn(255), new Mfn(254), new Mfn(253), new Mfn(252) }, got);
        Assert.Equal(252UL, m.FreeFrames);
    }

    [Fact]
    public void ExhaustionAllocatesNothingAndSaysHowMuchWasFree()
    {
        var m = new MachineMemory(64 * 4096);
        var first = new Mfn[60];
        m.Allocate(first);
        var ex = Assert.Throws<MachineMemoryExhaustedException>(() => m.Allocate(new Mfn[5]));
        Assert.Equal(4UL, ex.Free);
        Assert.Equal(5UL, ex.Requested);
        Assert.Equal(4UL, m.FreeFrames);                   // nothing taken
        Assert.Contains("5 frame(s) requested, 4 free", ex.Message);
    }

    [Fact]
    public void BytesExistOnlyOnceWrittenAndAreForgottenOnFree()
    {
        var m = new MachineMemory(16 * 4096);
        var f = m.AllocateOne();
        Assert.Equal(0UL, m.BackedFrames);
        Assert.True(m.Read(f).IndexOfAnyExcept((byte)0) < 0);   // reads zeros before any write
        m.WriteUInt64(f, 8, 0x1122334455667788);
        Assert.Equal(1UL, m.BackedFrames);
        Assert.Equal(0x1122334455667788UL, m.ReadUInt64(f, 8));
        m.Free(f);
        Assert.Equal(0UL, m.BackedFrames);
        var again = m.AllocateOne();                       // the highest free frame is f again
        Assert.Equal(f, again);
        Assert.Equal(0UL, m.ReadUInt64(again, 8));         // the next owner sees zeros
    }

    [Fact]
    public void AfterChurnADomainsFramesAreNotContiguous()
    {
        var m = new MachineMemory(64 * 4096);
        var a = new Mfn[8];
        m.Allocate(a);                                     // 63..56
        m.Free(a[1]);                                      // 62 and 60 come back
        m.Free(a[3]);
        var b = new Mfn[4];
        m.Allocate(b);
        Assert.Equal(new[] { new Mfn(62), new Mfn(60), new Mfn(55), new Mfn(54) }, b);
    }

    [Fact]
    public void DoubleFreeIsRefused()
    {
        var m = new MachineMemory(16 * 4096);
        var f = m.AllocateOne();
        m.Free(f);
        Assert.Throws<InvalidOperationException>(() => m.Free(f));
    }

    [Theory]
    [InlineData(0UL)]
    [InlineData(4095UL)]
    [InlineData(4097UL)]
    public void SizeMustBeWholePages(ulong size) =>
        Assert.Throws<InvalidConfigurationException>(() => new MachineMemory(size));
}
