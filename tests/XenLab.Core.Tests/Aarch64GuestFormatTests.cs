using System.Collections.Generic;
using XenLab.Guest;
using XenLab.Paging;
using XenLab.Paging.Arm;

namespace XenLab.Tests;

public class Aarch64GuestFormatTests
{
    private static readonly Aarch64GuestFormat Arm = Aarch64GuestFormat.Instance;

    [Fact]
    public void AFreshWritableUserPageHasTheHandComputedDescriptor()
    {
        // gfn 0x2000 -> OA 0x2000 << 12 = 0x2000000
        //   | 0b11 (page)                       0x3
        //   | AttrIndx 0 (MAIR normal WB)       0x0
        //   | AP[1] EL0 access (bit 6)          0x40
        //   | AP[2] read-only (bit 7): clean    0x80
        //   | SH inner shareable (bits 9:8=11)  0x300
        //   | DBM (bit 51): writable-clean      0x0008_0000_0000_0000
        //   AF (bit 10) clear: not accessed yet.
        ulong e = Arm.LeafEntry(0x2000, MapFlags.Writable | MapFlags.User);
        Assert.Equal(0x0008_0000_0200_03C3UL, e);
        // The walker's first access sets AF (0x400); the first write clears AP[2] (0x80).
        var accessed = Arm.Encode(Arm.Decode(e, 1) with { Accessed = true }, 1);
        Assert.Equal(0x0008_0000_0200_07C3UL, accessed);
        var dirty = Arm.Encode(Arm.Decode(e, 1) with { Accessed = true, Dirty = true }, 1);
        Assert.Equal(0x0008_0000_0200_0743UL, dirty);
    }

    [Fact]
    public void ReadOnlyNoExecuteKernelPagesAndTablesHaveTheHandComputedDescriptors()
    {
        // gfn 0x2001, read-only: 0x2001000 | 0b11 | AP[2] 0x80 | SH 0x300 | PXN (bit 53) | UXN (bit 54);
        // no AP[1] (kernel only), no DBM (not writable).
        Assert.Equal(0x0060_0000_0200_1383UL, Arm.LeafEntry(0x2001, MapFlags.NoExecute));
        // A table at gfn 0x101: OA | 0b11, no APTable/XNTable restrictions.
        Assert.Equal(0x101003UL, Arm.TableEntry(0x101));
        // A 2 MiB block (our level 2, ARM level 2) at gfn 0x1000, writable, kernel: bits[1:0] = 0b01.
        var block = new GuestEntryState(true, true, 0x1000, true, false, false, false, false);
        Assert.Equal(0x0008_0000_0100_0381UL, Arm.Encode(block, 2));
    }

    public static IEnumerable<object[]> Levels() => new[] { new object[] { 1 }, new object[] { 2 }, new object[] { 3 } };

    [Theory]
    [MemberData(nameof(Levels))]
    public void EveryLeafStateRoundTrips(int level)
    {
        for (int bits = 0; bits < 32; bits++)
        {
            var s = new GuestEntryState(true, true, 0x12345, (bits & 1) != 0, (bits & 2) != 0, (bits & 4) != 0, (bits & 8) != 0, (bits & 16) != 0);
            Assert.Equal(s, Arm.Decode(Arm.Encode(s, level), level));                     // ARM encode/decode
            // Across formats: x86 -> ARM -> x86 gives back the same x86 entry.
            ulong x86 = X86GuestFormat.Instance.Encode(s, level);
            ulong back = X86GuestFormat.Instance.Encode(Arm.Decode(Arm.Encode(X86GuestFormat.Instance.Decode(x86, level), level), level), level);
            Assert.Equal(x86, back);
        }
    }

    [Theory]
    [InlineData(4)]
    [InlineData(3)]
    [InlineData(2)]
    public void EveryTableStateRoundTripsWithoutAccessed(int level)
    {
        for (int bits = 0; bits < 8; bits++)
        {
            var s = new GuestEntryState(true, false, 0x777, (bits & 1) != 0, (bits & 2) != 0, (bits & 4) != 0, false, false);
            Assert.Equal(s, Arm.Decode(Arm.Encode(s, level), level));
        }
        // Tables carry no AF: an accessed x86 table entry comes back not accessed, nothing else lost.
        var accessed = new GuestEntryState(true, false, 0x777, true, true, false, true, false);
        Assert.Equal(accessed with { Accessed = false }, Arm.Decode(Arm.Encode(accessed, level), level));
    }

    [Fact]
    public void DbmAndApTwoGiveTheFourWriteStates()
    {
        const ulong page = 0x5000UL | Aarch64Pte.TypeMask | Aarch64Pte.AccessFlag;
        var clean = Arm.Decode(page | Aarch64Pte.Dbm | Aarch64Pte.ApReadOnly, 1);
        Assert.True(clean.Writable); Assert.False(clean.Dirty);                      // writable-clean
        var dirty = Arm.Decode(page | Aarch64Pte.Dbm, 1);
        Assert.True(dirty.Writable); Assert.True(dirty.Dirty);                        // writable-dirty
        var ro = Arm.Decode(page | Aarch64Pte.ApReadOnly, 1);
        Assert.False(ro.Writable); Assert.False(ro.Dirty);                            // read-only
        var roDirty = Arm.Decode(page | Aarch64Pte.ApReadOnly | Aarch64Pte.SoftwareDirty, 1);
        Assert.False(roDirty.Writable); Assert.True(roDirty.Dirty);                   // read-only, software dirty
    }

    [Fact]
    public void EncodingsIllegalAtALevelDecodeAsInvalid()
    {
        Assert.False(Arm.Decode(0x5000UL | Aarch64Pte.Valid, 1).Present);             // 0b01 at ARM level 3 is reserved
        Assert.False(Arm.Decode(0x5000UL | Aarch64Pte.Valid, 4).Present);             // no 512 GiB blocks
        Assert.True(Arm.Decode(0x5000UL | Aarch64Pte.Valid, 3).Leaf);                 // 1 GiB block
        Assert.False(Arm.Decode(0x5000UL | Aarch64Pte.TableOrPage, 1).Present);       // bit 0 clear: invalid
    }
}
