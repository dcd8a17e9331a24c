using System;
using System.Collections.Generic;
using XenLab.Cpu;

namespace XenLab.Tests.Cpu;

/// <summary>
/// The arithmetic flags of add, sub, adc, sbb, cmp and neg at their edge values, written out by
/// hand (a literal table, not computed: each row's flags were worked out from the operands'
/// unsigned and signed values, the low nibbles for AF and the bits of the low result byte for
/// PF). It runs through the vCPU on any host; on an x86-64 host the same table is also checked
/// against the silicon, so a mistake in the table itself cannot hide.
/// </summary>
public class FlagTableTests
{
    /// <summary>One row: <c>op dst, src</c> at a width, the carry in, the result and the flags set.</summary>
    public sealed record Row(string Op, int Bits, ulong A, ulong B, int CarryIn, ulong Result, string Flags)
    {
        public override string ToString() => Op == "neg"
            ? $"neg{Bits} 0x{A:x} -> 0x{Result:x} [{Flags}]"
            : $"{Op}{Bits} 0x{A:x}, 0x{B:x}{(CarryIn != 0 ? " +CF" : "")} -> 0x{Result:x} [{Flags}]";
    }

    private const ulong M7 = 0x7FFFFFFFFFFFFFFF, M8 = 0x8000000000000000, MF = 0xFFFFFFFFFFFFFFFF;

    private static readonly Row[] Table =
    {
        // ---- 8-bit ----
        new("add", 8, 0x00, 0x00, 0, 0x00, "ZF PF"),
        new("add", 8, 0x7F, 0x01, 0, 0x80, "OF SF AF"),             // +127 + 1: signed overflow, low nibble F+1 carries
        new("add", 8, 0xFF, 0x01, 0, 0x00, "CF ZF AF PF"),          // 255 + 1 wraps; -1 + 1 = 0 is no signed overflow
        new("add", 8, 0x80, 0x80, 0, 0x00, "CF OF ZF PF"),          // -128 + -128
        new("add", 8, 0x7F, 0x7F, 0, 0xFE, "OF SF AF"),             // 0xFE has seven 1 bits: PF clear
        new("add", 8, 0xFF, 0xFF, 0, 0xFE, "CF SF AF"),
        new("add", 8, 0x01, 0x01, 0, 0x02, ""),
        new("add", 8, 0x80, 0x7F, 0, 0xFF, "SF PF"),
        new("sub", 8, 0x00, 0x01, 0, 0xFF, "CF SF AF PF"),
        new("sub", 8, 0x80, 0x01, 0, 0x7F, "OF AF"),                // -128 - 1
        new("sub", 8, 0x7F, 0xFF, 0, 0x80, "CF OF SF"),             // 127 - (-1) = 128
        new("sub", 8, 0x01, 0x01, 0, 0x00, "ZF PF"),
        new("sub", 8, 0xFF, 0x7F, 0, 0x80, "SF"),                   // -1 - 127 = -128 fits
        new("sub", 8, 0x00, 0x80, 0, 0x80, "CF OF SF"),             // 0 - (-128) = 128
        new("cmp", 8, 0x7F, 0x80, 0, 0x7F, "CF OF SF PF"),          // 127 - (-128) = 255; dst unchanged
        new("cmp", 8, 0xFF, 0xFF, 0, 0xFF, "ZF PF"),
        new("cmp", 8, 0x80, 0x7F, 0, 0x80, "OF AF"),                // -128 - 127; 0x01 has one bit
        new("adc", 8, 0xFF, 0x00, 1, 0x00, "CF ZF AF PF"),
        new("adc", 8, 0x7F, 0x00, 1, 0x80, "OF SF AF"),
        new("adc", 8, 0x7F, 0x00, 0, 0x7F, ""),
        new("adc", 8, 0xFF, 0xFF, 1, 0xFF, "CF SF AF PF"),          // 255 + 255 + 1 = 0x1FF
        new("adc", 8, 0x80, 0x7F, 1, 0x00, "CF ZF AF PF"),          // -128 + 127 + 1 = 0: no overflow
        new("adc", 8, 0x00, 0x00, 1, 0x01, ""),
        new("adc", 8, 0x00, 0xFF, 1, 0x00, "CF ZF AF PF"),          // src + carry wraps to 0: still a carry out
        new("adc", 8, 0x7F, 0x7F, 1, 0xFF, "OF SF AF PF"),          // 127 + 127 + 1 = 255
        new("sbb", 8, 0x00, 0x00, 1, 0xFF, "CF SF AF PF"),
        new("sbb", 8, 0x80, 0x00, 1, 0x7F, "OF AF"),                // -128 - 0 - 1
        new("sbb", 8, 0x80, 0x00, 0, 0x80, "SF"),
        new("sbb", 8, 0xFF, 0xFF, 1, 0xFF, "CF SF AF PF"),          // 255 - 255 - 1 borrows
        new("sbb", 8, 0x7F, 0xFF, 1, 0x7F, "CF AF"),                // 127 - (-1) - 1 = 127: no overflow
        new("sbb", 8, 0x01, 0x00, 1, 0x00, "ZF PF"),
        new("sbb", 8, 0x00, 0x7F, 1, 0x80, "CF SF AF"),             // 0 - 127 - 1 = -128 fits
        new("sbb", 8, 0x00, 0xFF, 1, 0x00, "CF ZF AF PF"),          // src + borrow wraps to 0: still a borrow
        new("neg", 8, 0x00, 0, 0, 0x00, "ZF PF"),                   // the only neg that clears CF
        new("neg", 8, 0x01, 0, 0, 0xFF, "CF SF AF PF"),
        new("neg", 8, 0x80, 0, 0, 0x80, "CF OF SF"),                // -(-128) overflows
        new("neg", 8, 0x7F, 0, 0, 0x81, "CF SF AF PF"),             // 0x81: two bits, PF set
        new("neg", 8, 0xFF, 0, 0, 0x01, "CF AF"),

        // ---- 16-bit (PF looks at the low byte only) ----
        new("add", 16, 0x7FFF, 0x0001, 0, 0x8000, "OF SF AF PF"),
        new("add", 16, 0xFFFF, 0x0001, 0, 0x0000, "CF ZF AF PF"),
        new("add", 16, 0x8000, 0x8000, 0, 0x0000, "CF OF ZF PF"),
        new("add", 16, 0x00FF, 0x0001, 0, 0x0100, "AF PF"),         // a carry out of bit 7 is no CF at 16 bits
        new("sub", 16, 0x8000, 0x0001, 0, 0x7FFF, "OF AF PF"),
        new("sub", 16, 0x0000, 0x0001, 0, 0xFFFF, "CF SF AF PF"),
        new("cmp", 16, 0x7FFF, 0xFFFF, 0, 0x7FFF, "CF OF SF PF"),   // 32767 - (-1) = 32768
        new("adc", 16, 0xFFFF, 0x0000, 1, 0x0000, "CF ZF AF PF"),
        new("adc", 16, 0x7FFF, 0x0000, 1, 0x8000, "OF SF AF PF"),
        new("sbb", 16, 0x0000, 0xFFFF, 1, 0x0000, "CF ZF AF PF"),
        new("sbb", 16, 0x8000, 0x0000, 1, 0x7FFF, "OF AF PF"),
        new("neg", 16, 0x8000, 0, 0, 0x8000, "CF OF SF PF"),
        new("neg", 16, 0x0001, 0, 0, 0xFFFF, "CF SF AF PF"),

        // ---- 32-bit ----
        new("add", 32, 0x7FFFFFFF, 0x00000001, 0, 0x80000000, "OF SF AF PF"),
        new("add", 32, 0xFFFFFFFF, 0x00000001, 0, 0x00000000, "CF ZF AF PF"),
        new("add", 32, 0x80000000, 0x80000000, 0, 0x00000000, "CF OF ZF PF"),
        new("sub", 32, 0x80000000, 0x00000001, 0, 0x7FFFFFFF, "OF AF PF"),
        new("sub", 32, 0x00000000, 0x00000001, 0, 0xFFFFFFFF, "CF SF AF PF"),
        new("cmp", 32, 0x80000000, 0x7FFFFFFF, 0, 0x80000000, "OF AF"),    // difference 1
        new("adc", 32, 0xFFFFFFFF, 0xFFFFFFFF, 1, 0xFFFFFFFF, "CF SF AF PF"),
        new("adc", 32, 0x7FFFFFFF, 0x00000000, 1, 0x80000000, "OF SF AF PF"),
        new("sbb", 32, 0x80000000, 0x00000000, 1, 0x7FFFFFFF, "OF AF PF"),
        new("sbb", 32, 0x00000000, 0x7FFFFFFF, 1, 0x80000000, "CF SF AF PF"),
        new("neg", 32, 0x80000000, 0, 0, 0x80000000, "CF OF SF PF"),
        new("neg", 32, 0x00000000, 0, 0, 0x00000000, "ZF PF"),

        // ---- 64-bit ----
        new("add", 64, M7, 1, 0, M8, "OF SF AF PF"),
        new("add", 64, MF, 1, 0, 0, "CF ZF AF PF"),
        new("add", 64, M8, M8, 0, 0, "CF OF ZF PF"),
        new("add", 64, MF, MF, 0, 0xFFFFFFFFFFFFFFFE, "CF SF AF"),
        new("sub", 64, M8, 1, 0, M7, "OF AF PF"),
        new("sub", 64, 0, 1, 0, MF, "CF SF AF PF"),
        new("cmp", 64, M7, M8, 0, M7, "CF OF SF PF"),
        new("cmp", 64, 1, 1, 0, 1, "ZF PF"),
        new("adc", 64, MF, 0, 1, 0, "CF ZF AF PF"),
        new("adc", 64, 0, MF, 1, 0, "CF ZF AF PF"),
        new("adc", 64, M7, M7, 0, 0xFFFFFFFFFFFFFFFE, "OF SF AF"),
        new("sbb", 64, 0, MF, 1, 0, "CF ZF AF PF"),
        new("sbb", 64, M8, 0, 1, M7, "OF AF PF"),
        new("sbb", 64, M8, 0, 0, M8, "SF PF"),                      // low byte 0x00: PF set (unlike 8-bit 0x80)
        new("neg", 64, M8, 0, 0, M8, "CF OF SF PF"),
        new("neg", 64, 1, 0, 0, MF, "CF SF AF PF"),
        new("neg", 64, M7, 0, 0, 0x8000000000000001, "CF SF AF"),
    };

    /// <summary>Each row as its own test case: its index and, for the test name, its text.</summary>
    public static IEnumerable<object[]> Rows()
    {
        for (int i = 0; i < Table.Length; i++) yield return new object[] { i, Table[i].ToString() };
    }

    private static readonly (string Op, int Bits)[] Covered =
    {
        ("add", 8), ("sub", 8), ("adc", 8), ("sbb", 8), ("cmp", 8), ("neg", 8),
        ("add", 16), ("sub", 16), ("adc", 16), ("sbb", 16), ("cmp", 16), ("neg", 16),
        ("add", 32), ("sub", 32), ("adc", 32), ("sbb", 32), ("cmp", 32), ("neg", 32),
        ("add", 64), ("sub", 64), ("adc", 64), ("sbb", 64), ("cmp", 64), ("neg", 64),
    };

    private const ulong Fill = 0xA5A5A5A5A5A5A5A5;       // what RAX holds above the operand
    private const ulong NotStatus = RFlags.Reserved1;    // flags in with every status flag clear
    private const ulong OtherStatus = RFlags.PF | RFlags.AF | RFlags.ZF | RFlags.SF | RFlags.OF;

    private static ulong Mask(int bits) => bits == 64 ? ulong.MaxValue : (1UL << bits) - 1;

    private static string Asm(Row r)
    {
        var (a, b) = r.Bits switch { 8 => ("al", "bl"), 16 => ("ax", "bx"), 32 => ("eax", "ebx"), _ => ("rax", "rbx") };
        return r.Op == "neg" ? $"neg {a}\nhlt" : $"{r.Op} {a}, {b}\nhlt";
    }

    private static ulong Expected(string flags)
    {
        ulong f = 0;
        foreach (var name in flags.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            f |= name switch
            {
                "CF" => RFlags.CF, "PF" => RFlags.PF, "AF" => RFlags.AF,
                "ZF" => RFlags.ZF, "SF" => RFlags.SF, "OF" => RFlags.OF,
                _ => throw new ArgumentException($"unknown flag {name}"),
            };
        return f;
    }

    /// <summary>
    /// The flags to start with: CF as the row's carry in (set for add/sub/cmp/neg too when
    /// <paramref name="othersSet"/>, which must not matter), and the other status flags all
    /// clear or all set, which must not matter either.
    /// </summary>
    private static ulong FlagsIn(Row r, bool othersSet)
    {
        ulong f = NotStatus | (othersSet ? OtherStatus : 0);
        bool usesCarry = r.Op is "adc" or "sbb";
        if (usesCarry ? r.CarryIn != 0 : othersSet) f |= RFlags.CF;
        return f;
    }

    /// <summary>RAX as it must be after the row: 8- and 16-bit ops keep the bits above, 32-bit ops zero them.</summary>
    private static ulong RaxAfter(Row r) => r.Bits switch
    {
        8 or 16 => (Fill & ~Mask(r.Bits)) | r.Result,
        _ => r.Result,
    };

    private static ulong RaxBefore(Row r) => (Fill & ~Mask(r.Bits)) | r.A;

    [Theory]
    [MemberData(nameof(Rows))]
    public void TheVcpuSetsTheHandComputedFlags(int index, string text)
    {
        var row = Table[index];
        Assert.Equal(text, row.ToString());
        var rig = new CpuRig();
        rig.Load(Asm(row));
        foreach (bool othersSet in new[] { false, true })
        {
            rig.Cpu.Rip = CpuRig.CodeVa;
            rig.Cpu[Reg.Rax] = RaxBefore(row);
            rig.Cpu[Reg.Rbx] = row.B;
            rig.Cpu.Rflags = FlagsIn(row, othersSet);
            var run = rig.Cpu.Run(10);
            Assert.Equal(StopReason.Halted, run.Reason);
            ulong want = Expected(row.Flags), got = rig.Cpu.Rflags & RFlags.Status;
            Assert.True(want == got, $"{row} with the other flags {(othersSet ? "set" : "clear")} in: vCPU [{RFlags.Describe(got)}], table [{RFlags.Describe(want)}]");
            Assert.Equal(row.Op == "cmp" ? RaxBefore(row) : RaxAfter(row), rig.Cpu[Reg.Rax]);
            Assert.Equal(row.B, rig.Cpu[Reg.Rbx]);
        }
    }

    public static IEnumerable<object[]> CarryRows()
    {
        for (int i = 0; i < Table.Length; i++)
            if (Table[i].Op is "adc" or "sbb") yield return new object[] { i, Table[i].ToString() };
    }

    /// <summary>
    /// The same adc/sbb rows with the carry in left by an earlier instruction (cmp ecx, edx:
    /// 0 - 1 borrows, 5 - 5 does not) instead of loaded into RFLAGS, so the carry is read from
    /// the previous instruction's pending flags rather than from RFLAGS.
    /// </summary>
    [Theory]
    [MemberData(nameof(CarryRows))]
    public void ACarryLeftByCmpGivesTheSameFlags(int index, string text)
    {
        var row = Table[index];
        Assert.Equal(text, row.ToString());
        var rig = new CpuRig();
        rig.Load("cmp ecx, edx\n" + Asm(row));
        rig.Cpu[Reg.Rax] = RaxBefore(row);
        rig.Cpu[Reg.Rbx] = row.B;
        rig.Cpu[Reg.Rcx] = row.CarryIn != 0 ? 0UL : 5UL;
        rig.Cpu[Reg.Rdx] = row.CarryIn != 0 ? 1UL : 5UL;
        rig.Cpu.Rflags = NotStatus | (row.CarryIn != 0 ? 0 : RFlags.CF);      // the opposite, which cmp overwrites
        Assert.Equal(StopReason.Halted, rig.Cpu.Run(10).Reason);
        ulong want = Expected(row.Flags), got = rig.Cpu.Rflags & RFlags.Status;
        Assert.True(want == got, $"{row} after cmp: vCPU [{RFlags.Describe(got)}], table [{RFlags.Describe(want)}]");
        Assert.Equal(RaxAfter(row), rig.Cpu[Reg.Rax]);
    }

    [Fact]
    public void TheTableCoversEveryOpAndWidthWithBothCarriesIn()
    {
        foreach (var (op, bits) in Covered)
            Assert.Contains(Table, r => r.Op == op && r.Bits == bits);
        foreach (string op in new[] { "adc", "sbb" })
        {
            Assert.Contains(Table, r => r.Op == op && r.CarryIn == 0);
            Assert.Contains(Table, r => r.Op == op && r.CarryIn == 1);
        }
        // Every flag is seen both set and clear somewhere in the table.
        foreach (string f in new[] { "CF", "OF", "ZF", "SF", "AF", "PF" })
        {
            Assert.Contains(Table, r => r.Flags.Contains(f));
            Assert.Contains(Table, r => !r.Flags.Contains(f));
        }
    }

    [NativeX64Fact]
    public void TheTableAgreesWithTheHostCpu()
    {
        using var native = new NativeX64();
        var mismatches = new List<string>();
        foreach (var row in Table)
        {
            var code = GuestAssembler.Assemble(Asm(row).Replace("\nhlt", ""), native.SnippetAddress);
            foreach (bool othersSet in new[] { false, true })
            {
                var regs = new ulong[16];
                regs[0] = RaxBefore(row);
                regs[3] = row.B;
                regs[4] = native.DataAddress + 0x3800;                  // RSP: somewhere harmless
                var (outRegs, flags) = native.Run(code, regs, FlagsIn(row, othersSet));
                ulong want = Expected(row.Flags), got = flags & RFlags.Status;
                ulong rax = row.Op == "cmp" ? RaxBefore(row) : RaxAfter(row);
                if (got != want || outRegs[0] != rax)
                    mismatches.Add($"{row}: host [{RFlags.Describe(got)}] rax 0x{outRegs[0]:x}, table [{RFlags.Describe(want)}] rax 0x{rax:x}");
            }
        }
        Assert.True(mismatches.Count == 0, string.Join("\n", mismatches));
    }
}
