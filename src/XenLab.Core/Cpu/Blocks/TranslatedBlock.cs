// One translated block: a straight run of decoded instructions on one code page compiled to a
// DynamicMethod, with the successors it was seen to leave to (taken and not taken), so the run
// loop can go from block to block without looking the next one up. Dropping the code page
// unlinks every block on it.
namespace XenLab.Cpu.Blocks;

/// <summary>Compiled block code: runs at the block's first instruction with at most <c>budgetLeft</c> instructions to retire.</summary>
internal delegate int BlockCode(X86Cpu cpu, long budgetLeft);

internal sealed class TranslatedBlock
{
    /// <summary>
    /// How a block's code returns: by its branch (taken / not taken or falling through), with a
    /// fault recorded (#GP on a jump to a non-canonical target), or before an instruction whose
    /// memory operand has no fast access (ExitSlow: the interpreter runs that instruction next,
    /// with every side effect).
    /// </summary>
    public const int ExitTaken = 0, ExitNext = 1, ExitFault = 2, ExitSlow = 3;

    /// <summary>Marks a slot whose first instruction cannot be translated (the interpreter runs it).</summary>
    public static readonly TranslatedBlock Untranslatable = new(null!, null, 0, 0, false);

    public TranslatedBlock(CodePage page, BlockCode? code, int startOffset, int instructions, bool loops)
    {
        Page = page;
        Code = code;
        StartOffset = startOffset;
        Instructions = instructions;
        Loops = loops;
    }

    public readonly CodePage Page;
    public readonly BlockCode? Code;
    public readonly int StartOffset;
    /// <summary>Instructions in one pass: the run loop enters only with at least this much budget left.</summary>
    public readonly int Instructions;
    /// <summary>The block branches back to its own start and runs as an IL loop.</summary>
    public readonly bool Loops;

    /// <summary>Where the block went when its branch was taken (or its jmp), and when it fell through.</summary>
    public TranslatedBlock? Taken, Next;
    public bool Valid = true;

    public void Unlink()
    {
        Valid = false;
        Taken = null;
        Next = null;
    }
}
