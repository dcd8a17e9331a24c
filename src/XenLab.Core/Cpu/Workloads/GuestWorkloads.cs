// Built-in guest workloads, written with Iced's assembler: a frame loop whose body is a list
// of drawing and page-table steps, each parameterized, ending every frame with a yield
// hypercall (vmcall with RAX = 0) so the host can pull dirty rectangles between frames.
// Register use: R15 = frame number (kept across frames), RSP = the guest stack; every step
// may clobber RAX RBX RCX RDX RSI RDI R8-R14.
using System;
using System.Collections.Generic;
using System.IO;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace XenLab.Cpu.Workloads;

public enum WorkloadStepKind
{
    /// <summary>Fill a rectangle; the colour changes by ColorStep each frame.</summary>
    Fill,
    /// <summary>Copy a rectangle from one framebuffer to another (or the same), moving Dx/Dy per frame.</summary>
    Blit,
    /// <summary>Scroll a framebuffer up by Lines scanlines and fill the freed lines.</summary>
    Scroll,
    /// <summary>Move a Size x Size cursor by Dx/Dy per frame, erasing where it was.</summary>
    Cursor,
    /// <summary>Rewrite Pages page-table entries through the kernel's mapping of its tables, invlpg and touch each.</summary>
    PageTableChurn,
}

/// <summary>Where a framebuffer is for guest code: the virtual address it is mapped at and its geometry.</summary>
public readonly record struct GuestFramebuffer(string Name, ulong VirtualAddress, int Width, int Height, int Stride);

/// <summary>One step of the frame loop. Unused fields are ignored by the step's kind.</summary>
public sealed record WorkloadStep(WorkloadStepKind Kind, string Framebuffer = "", int X = 0, int Y = 0, int Width = 0, int Height = 0,
    uint Color = 0x00336699, uint ColorStep = 0x00010101, int Dx = 0, int Dy = 0, int Lines = 1, int Size = 16,
    string Source = "", int SourceX = 0, int SourceY = 0, int Pages = 16);

/// <summary>A PTE the churn step flips between two frames: its alias address and the two values.</summary>
public readonly record struct ChurnEntry(ulong AliasVa, ulong VirtualAddress, ulong ValueA, ulong ValueB);

public static class GuestWorkloads
{
    public const ulong YieldHypercall = 0;

    /// <summary>Assembles the frame loop at <paramref name="origin"/>; <paramref name="dataVa"/> is a writable scratch page.</summary>
    public static byte[] FrameLoop(IReadOnlyList<WorkloadStep> steps, IReadOnlyDictionary<string, GuestFramebuffer> framebuffers,
        IReadOnlyList<ChurnEntry> churn, ulong origin, ulong dataVa)
    {
        var a = new Assembler(64);
        var frame = a.CreateLabel("frame");
        a.xor(r15, r15);
        a.Label(ref frame);
        int slot = 0;
        foreach (var s in steps)
        {
            switch (s.Kind)
            {
                case WorkloadStepKind.Fill: Fill(a, s, Fb(framebuffers, s.Framebuffer, s)); break;
                case WorkloadStepKind.Blit: Blit(a, s, Fb(framebuffers, s.Source.Length > 0 ? s.Source : s.Framebuffer, s), Fb(framebuffers, s.Framebuffer, s)); break;
                case WorkloadStepKind.Scroll: Scroll(a, s, Fb(framebuffers, s.Framebuffer, s)); break;
                case WorkloadStepKind.Cursor: Cursor(a, s, Fb(framebuffers, s.Framebuffer, s), dataVa + (ulong)slot++ * 16); break;
                case WorkloadStepKind.PageTableChurn: Churn(a, churn, s.Pages); break;
            }
        }
        a.mov(eax, (uint)YieldHypercall);
        a.vmcall();
        a.inc(r15);
        a.jmp(frame);
        using var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), origin);
        return ms.ToArray();
    }

    private static GuestFramebuffer Fb(IReadOnlyDictionary<string, GuestFramebuffer> fbs, string name, WorkloadStep s) =>
        fbs.TryGetValue(name, out var fb) ? fb : throw new InvalidConfigurationException($"Workload step {s.Kind} names framebuffer '{name}', which the domain does not have (or has not mounted).");

    private static void CheckRect(GuestFramebuffer fb, int x, int y, int w, int h, WorkloadStepKind kind)
    {
        if (w <= 0 || h <= 0 || x < 0 || y < 0 || x + w > fb.Width || y + h > fb.Height)
            throw new InvalidConfigurationException($"Workload step {kind}: rectangle {w}x{h} at ({x},{y}) does not fit framebuffer '{fb.Name}' ({fb.Width}x{fb.Height}).");
    }

    /// <summary>RBX = first pixel, RDX = rows; per row rep stosd of EAX, RCX pixels.</summary>
    private static void Rows(Assembler a, ulong stride, int pixels)
    {
        var row = a.CreateLabel();
        a.Label(ref row);
        a.mov(rdi, rbx);
        a.mov(ecx, (uint)pixels);
        a.rep.stosd();
        a.add(rbx, (int)stride);
        a.dec(rdx);
        a.jnz(row);
    }

    private static void Fill(Assembler a, WorkloadStep s, GuestFramebuffer fb)
    {
        int w = s.Width == 0 ? fb.Width - s.X : s.Width, h = s.Height == 0 ? fb.Height - s.Y : s.Height;
        CheckRect(fb, s.X, s.Y, w, h, s.Kind);
        a.mov(eax, r15d);
        a.imul(eax, eax, (int)s.ColorStep);
        a.add(eax, (int)s.Color);
        a.mov(rbx, fb.VirtualAddress + (ulong)s.Y * (ulong)fb.Stride + (ulong)s.X * 4);
        a.mov(edx, (uint)h);
        Rows(a, (ulong)fb.Stride, w);
    }

    private static void Scroll(Assembler a, WorkloadStep s, GuestFramebuffer fb)
    {
        if (s.Lines <= 0 || s.Lines >= fb.Height)
            throw new InvalidConfigurationException($"Workload step Scroll: {s.Lines} line(s) must be between 1 and {fb.Height - 1} for '{fb.Name}'.");
        ulong moved = (ulong)(fb.Height - s.Lines) * (ulong)fb.Stride;
        a.mov(rdi, fb.VirtualAddress);
        a.mov(rsi, fb.VirtualAddress + (ulong)s.Lines * (ulong)fb.Stride);
        a.mov(rcx, moved / 8);
        a.rep.movsq();
        // RDI now points at the freed lines: fill them.
        a.mov(eax, r15d);
        a.imul(eax, eax, (int)s.ColorStep);
        a.add(eax, (int)s.Color);
        a.mov(rcx, (ulong)s.Lines * (ulong)fb.Stride / 4);
        a.rep.stosd();
    }

    private static void Blit(Assembler a, WorkloadStep s, GuestFramebuffer src, GuestFramebuffer dst)
    {
        CheckRect(src, s.SourceX, s.SourceY, s.Width, s.Height, s.Kind);
        CheckRect(dst, s.X, s.Y, s.Width, s.Height, s.Kind);
        // Destination x moves by Dx per frame, wrapping inside the room the destination leaves.
        MovingCoordinate(a, 0, s.Dx, dst.Width - s.Width - s.X + 1);   // RDX = (frame * dx) mod room
        a.lea(rbx, __[rdx * 4]);
        a.mov(rax, dst.VirtualAddress + (ulong)s.Y * (ulong)dst.Stride + (ulong)s.X * 4);
        a.add(rbx, rax);                                // RBX = destination row start
        a.mov(r8, src.VirtualAddress + (ulong)s.SourceY * (ulong)src.Stride + (ulong)s.SourceX * 4);
        a.mov(r9d, (uint)s.Height);
        var row = a.CreateLabel();
        a.Label(ref row);
        a.mov(rdi, rbx);
        a.mov(rsi, r8);
        a.mov(ecx, (uint)s.Width);
        a.rep.movsd();
        a.add(rbx, dst.Stride);
        a.add(r8, src.Stride);
        a.dec(r9d);
        a.jnz(row);
    }

    private static void Cursor(Assembler a, WorkloadStep s, GuestFramebuffer fb, ulong state)
    {
        int size = s.Size;
        if (size <= 0 || size >= fb.Width || size >= fb.Height)
            throw new InvalidConfigurationException($"Workload step Cursor: size {size} does not fit framebuffer '{fb.Name}'.");
        // New position: ((x0 + dx*frame) mod (W-size), (y0 + dy*frame) mod (H-size)).
        MovingCoordinate(a, s.X, s.Dx, fb.Width - size);
        a.mov(r8, rdx);                                 // x
        MovingCoordinate(a, s.Y, s.Dy, fb.Height - size);
        a.mov(r9, rdx);                                 // y
        a.mov(r12, state);
        // Erase the old cursor (state holds x, y; first frame: its own position).
        a.mov(r10, __qword_ptr[r12]);
        a.mov(r11, __qword_ptr[r12 + 8]);
        a.test(r15, r15);
        var drawn = a.CreateLabel();
        a.jnz(drawn);
        a.mov(r10, r8);
        a.mov(r11, r9);
        a.Label(ref drawn);
        Box(a, fb, r10, r11, size, 0x00000000);
        Box(a, fb, r8, r9, size, s.Color);
        a.mov(__qword_ptr[r12], r8);
        a.mov(__qword_ptr[r12 + 8], r9);
    }

    /// <summary>RDX = (start + step * frame) mod span, the frame number being R15. Clobbers RAX, RCX.</summary>
    private static void MovingCoordinate(Assembler a, int start, int step, int span)
    {
        a.mov(rax, r15);
        a.imul(rax, rax, step);
        if (start != 0) a.add(rax, start);
        a.xor(edx, edx);
        a.mov(ecx, (uint)span);
        a.div(rcx);
    }

    /// <summary>Draws a size x size box of <paramref name="color"/> at (x, y) given in registers.</summary>
    private static void Box(Assembler a, GuestFramebuffer fb, AssemblerRegister64 x, AssemblerRegister64 y, int size, uint color)
    {
        a.mov(rax, y);
        a.imul(rax, rax, fb.Stride);
        a.lea(rbx, __[rax + x * 4]);
        a.mov(rax, fb.VirtualAddress);
        a.add(rbx, rax);
        a.mov(eax, color);
        a.mov(edx, (uint)size);
        Rows(a, (ulong)fb.Stride, size);
    }

    private static void Churn(Assembler a, IReadOnlyList<ChurnEntry> churn, int pages)
    {
        if (churn.Count == 0) throw new InvalidConfigurationException("Workload step PageTableChurn needs page-table entries to rewrite; the runner prepares them.");
        for (int i = 0; i < Math.Min(pages, churn.Count); i++)
        {
            var e = churn[i];
            // Flip the PTE between its two frames (a copy-on-write break), invalidate, touch.
            a.mov(rbx, e.AliasVa);
            a.mov(rax, __qword_ptr[rbx]);
            a.mov(rcx, e.ValueA ^ e.ValueB);
            a.xor(rax, rcx);
            a.mov(__qword_ptr[rbx], rax);
            a.mov(rdx, e.VirtualAddress);
            a.invlpg(__[rdx]);
            a.mov(__byte_ptr[rdx], r15b);
        }
    }
}
