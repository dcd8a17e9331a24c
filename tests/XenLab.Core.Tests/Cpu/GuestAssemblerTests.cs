using XenLab.Cpu;

namespace XenLab.Tests.Cpu;

public class GuestAssemblerTests
{
    [Fact]
    public void AssemblesLabelsDataAndMemoryOperands()
    {
        var bytes = GuestAssembler.Assemble("""
            start: mov rax, [rbx + rcx*4 + 0x10] ; comment
                   rep stosd
                   jmp start
            data:  db 1, 2, 'A'
                   dw 0x1234
            """, 0x1000);
        // mov rax,[rbx+rcx*4+10h] = 48 8B 44 8B 10; rep stosd = F3 AB; jmp short -9 = EB F7
        Assert.Equal(new byte[] { 0x48, 0x8B, 0x44, 0x8B, 0x10, 0xF3, 0xAB, 0xEB, 0xF7, 1, 2, 0x41, 0x34, 0x12 }, bytes);
    }

    [Fact]
    public void AnUnknownRegisterIsReportedWithLineAndColumn()
    {
        var e = Assert.Throws<GuestAssemblyException>(() => GuestAssembler.Assemble("nop\nnop\nmov rax, rxx\n", 0));
        Assert.Equal("line 3, column 10: unknown register 'rxx'", e.Message);
        Assert.Equal(3, e.Line);
        Assert.Equal(10, e.Column);
    }

    [Fact]
    public void AnUnknownRegisterInAnAddressPointsAtIt()
    {
        var e = Assert.Throws<GuestAssemblyException>(() => GuestAssembler.Assemble("  mov rax, [rbx + rqq*2]", 0));
        Assert.Equal(2 + 1 + 16, e.Column);                   // the 'r' of rqq
        Assert.Contains("unknown register 'rqq'", e.Message);
    }

    [Fact]
    public void AMissingSizeAndAnUnknownMnemonicAreExplained()
    {
        var e = Assert.Throws<GuestAssemblyException>(() => GuestAssembler.Assemble("add [rax], 1", 0));
        Assert.Contains("size", e.Message);                     // byte/word/dword/qword needed
        var u = Assert.Throws<GuestAssemblyException>(() => GuestAssembler.Assemble("\n  frob rax", 0));
        Assert.Equal("line 2, column 3: unknown instruction 'frob'", u.Message);
    }
}
