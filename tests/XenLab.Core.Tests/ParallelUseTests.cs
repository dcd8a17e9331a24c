using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;
using XenLab.Config;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Lab;
using XenLab.Memory;
using XenLab.Paging;
using XenLab.Paging.Arm;
using XenLab.Paging.Modes;

namespace XenLab.Tests;

/// <summary>
/// Issue 9 section 5: one host driven from several threads, as ForEach-Object -Parallel and
/// runspaces do. Host-wide state (machine memory, the VLPT window, the domain list) is shared;
/// operations on one domain are serialised by its lock.
/// </summary>
public class ParallelUseTests
{
    [Fact]
    public void FramesAllocatedAndFreedFromManyThreadsAreNeverHandedOutTwice()
    {
        var m = new MachineMemory(64UL << 20);                // 16384 frames
        const int threads = 4, rounds = 5000, batch = 2;
        var errors = new ConcurrentQueue<string>();
        var together = new Barrier(threads);
        Run(threads, t =>
        {
            var mine = new Mfn[batch];
            for (int r = 0; r < rounds; r++)
            {
                together.SignalAndWait();                      // all threads allocate at once
                m.Allocate(mine);
                // Every frame is fresh (zeros) and ours alone: mark it, then check the mark survived.
                foreach (var f in mine)
                {
                    if (m.ReadUInt64(f, 0) != 0) errors.Enqueue($"{f} was handed out with someone's bytes in it");
                    m.WriteUInt64(f, 0, ((ulong)t << 32) | (uint)r);
                }
                foreach (var f in mine)
                    if (m.ReadUInt64(f, 0) != (((ulong)t << 32) | (uint)r)) errors.Enqueue($"{f} lost thread {t}'s write in round {r}");
                together.SignalAndWait();                      // and free at once
                foreach (var f in mine) m.Free(f);
            }
        });
        Assert.Empty(errors);
        Assert.Equal(m.FrameCount, m.FreeFrames);             // every frame back, the count never wrapped
        Assert.Equal(0UL, m.BackedFrames);
    }

    [Fact]
    public void FirstWritesFromSeveralThreadsIntoOneFreshChunkAreAllKept()
    {
        const int rounds = 2000, threads = 4, perThread = 4;
        // Fresh memories (no chunk has bytes yet), each with neighbouring frames in one 512-frame chunk.
        var memories = new MachineMemory[rounds];
        var frames = new Mfn[rounds][];
        for (int r = 0; r < rounds; r++)
        {
            memories[r] = new MachineMemory(4UL << 20);
            frames[r] = new Mfn[threads * perThread];
            memories[r].Allocate(frames[r]);
        }
        var together = new Barrier(threads);
        Run(threads, t =>
        {
            for (int r = 0; r < rounds; r++)
            {
                together.SignalAndWait();                      // all threads write their first bytes at once
                for (int i = t; i < frames[r].Length; i += threads) memories[r].WriteUInt64(frames[r][i], 8, 0xA0UL + (ulong)i);
            }
        });
        var errors = new List<string>();
        for (int r = 0; r < rounds; r++)
        {
            for (int i = 0; i < frames[r].Length; i++)
                if (memories[r].ReadUInt64(frames[r][i], 8) != 0xA0UL + (ulong)i) errors.Add($"round {r}: {frames[r][i]} lost its first write");
            if (memories[r].BackedFrames != (ulong)frames[r].Length) errors.Add($"round {r}: {memories[r].BackedFrames} frames backed, {frames[r].Length} written");
        }
        Assert.Empty(errors);
    }

    /// <summary>
    /// The stress test: <see cref="Threads"/> threads, each with a domain of its own (HAP, shadow,
    /// ARM with a VLPT slice, shadow) and a slice of one shared shadow domain, do random operations
    /// (physical and virtual writes, balloon, mode switches, log-dirty, guest code, context
    /// switches between two domains, building and removing scratch domains). Each thread keeps a model of the bytes it wrote and
    /// checks every read against it; at the end every audit is clean and, once every domain is
    /// removed, the host's free-frame count is what it was before.
    /// </summary>
    private const int Threads = 4;
    private const int Steps = 250;
    private const ulong RegionGfn = 0x1000;                  // 16 MiB: below what balloon takes back
    private const int RegionPages = 32;
    private const ulong SharedVa = 0x50000000;

    [Fact]
    public void ThreadsDrivingTheirOwnDomainsAndOneSharedDomainStayConsistent()
    {
        var host = new XenHost(2UL << 30);
        ulong freeAtStart = host.Machine.FreeFrames;
        var sharedConfig = TestDomains.Config("shared", 64, maxMemMiB: 96, vcpus: Threads);
        sharedConfig.Paging = PagingModeKind.Shadow;
        var shared = host.CreateDomain(sharedConfig);
        var errors = new ConcurrentQueue<string>();
        var modes = new[] { PagingModeKind.Hap, PagingModeKind.Shadow, PagingModeKind.Arm, PagingModeKind.Shadow };
        var done = new int[13];                               // operations of each kind that went through

        Run(Threads, t =>
        {
            var rng = new Random(1000 + t);
            var c = TestDomains.Config($"own{t}", 64, maxMemMiB: 96, vcpus: 2);
            c.Paging = modes[t % modes.Length];
            if (c.Paging == PagingModeKind.Arm) c.PagingOptions = c.PagingOptions with { ArmLeafLookup = ArmLeafLookup.Vlpt };
            var own = host.CreateDomain(c);                    // built while the others build theirs
            var ownModel = new byte[RegionPages * Page.Size];
            // This thread's slice of the shared domain: its own gfns, its own VA window, its own vCPU.
            ulong sharedGfn = RegionGfn + (ulong)t * RegionPages;
            ulong sharedVa = SharedVa + ((ulong)t << 24);
            var sharedModel = new byte[RegionPages * Page.Size];
            shared.Kernel.Map(sharedVa, sharedGfn, RegionPages, MapFlags.Writable);
            own.Kernel.Map(SharedVa, RegionGfn, RegionPages, MapFlags.Writable);

            for (int step = 0; step < Steps; step++)
            {
                string what = "";
                try
                {
                    int kind = rng.Next(13);
                    switch (kind)
                    {
                        case 0: case 1:
                            what = "physical write to own";
                            WriteAndCheck(own, null, RegionGfn, ownModel, rng, errors, t);
                            break;
                        case 2:
                            what = "virtual write to own";
                            WriteAndCheck(own, own.Vcpus[0], RegionGfn, ownModel, rng, errors, t, SharedVa);
                            break;
                        case 3: case 4:
                            what = "physical write to shared";
                            WriteAndCheck(shared, null, sharedGfn, sharedModel, rng, errors, t);
                            break;
                        case 5: case 6:
                            what = "virtual write to shared";
                            WriteAndCheck(shared, shared.Vcpus[t], sharedGfn, sharedModel, rng, errors, t, sharedVa);
                            break;
                        case 7:
                            what = "balloon own";
                            own.Balloon(own.MaxPages - (ulong)rng.Next(0, 4096));
                            break;
                        case 8:
                        {
                            what = "mode switch";
                            var d = rng.Next(3) == 0 ? shared : own;
                            var kinds = new[] { PagingModeKind.Hap, PagingModeKind.Shadow, PagingModeKind.Arm };
                            d.SetPagingMode(kinds[rng.Next(kinds.Length)]);
                            break;
                        }
                        case 9:
                        {
                            what = "log-dirty";
                            var d = rng.Next(2) == 0 ? shared : own;
                            using var op = d.EnterOperation();        // enable, read, disable as one step
                            if (!d.LogDirty.Enabled) d.LogDirty.Enable();
                            d.LogDirty.Read(clean: rng.Next(2) == 0);
                            if (rng.Next(2) == 0) d.LogDirty.Disable();
                            break;
                        }
                        case 10:
                            what = "guest code in own";
                            if (own.PagingMode == PagingModeKind.Arm) break;
                            {
                                using var op = own.EnterOperation();      // load and run as one step
                                ulong value = (ulong)rng.NextInt64();
                                GuestPrograms.LoadAssembly(own, $"mov rax, 0x{value:x}\nmov [0x{GuestPrograms.DataVa:x}], rax\nhlt");
                                var r = own.Vcpus[0].Cpu.Run(100);
                                own.TryReadPhysU64(GuestPrograms.DataGfn << Page.Shift, out ulong back);
                                if (r.Reason != XenLab.Cpu.StopReason.Halted || back != value)
                                    errors.Enqueue($"thread {t}: guest code stopped {r} and left 0x{back:x}, wrote 0x{value:x}");
                            }
                            break;
                        case 11:
                        {
                            what = "scratch domain";
                            var sc = TestDomains.Config($"scratch{t}", 16);
                            sc.Paging = modes[rng.Next(modes.Length)];
                            var scratch = host.CreateDomain(sc);
                            scratch.WriteGuestPhysical(0x100000, new byte[] { 1, 2, 3 });
                            host.DestroyDomain(scratch);
                            break;
                        }
                        case 12:
                            what = "context switch";                  // takes two domains' locks, in domid order
                            if (rng.Next(2) == 0) host.ContextSwitch(own, shared);
                            else host.ContextSwitch(shared, own);
                            break;
                    }
                    Interlocked.Increment(ref done[kind]);
                }
                catch (XenLabException e) when (e is MachineMemoryExhaustedException or InvalidConfigurationException)
                {
                    // Refusals are allowed (and change nothing); anything else is a failure.
                }
                catch (Exception e)
                {
                    errors.Enqueue($"thread {t} step {step} ({what}): {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
                    return;
                }
            }
            // The thread's own bytes, in both domains, are exactly what it wrote.
            CheckAll(own, RegionGfn, ownModel, errors, $"thread {t} own");
            CheckAll(shared, sharedGfn, sharedModel, errors, $"thread {t} shared");
            var problems = new List<string>();
            using (own.EnterOperation()) own.Mode!.Audit(problems);
            foreach (var p in problems) errors.Enqueue($"thread {t} own audit: {p}");
            host.DestroyDomain(own);
        });

        var sharedProblems = new List<string>();
        shared.Mode!.Audit(sharedProblems);
        foreach (var p in sharedProblems) errors.Enqueue($"shared audit: {p}");
        Assert.Empty(errors);
        for (int k = 0; k < done.Length; k++) Assert.True(done[k] > 10, $"operation kind {k} went through only {done[k]} time(s)");
        host.DestroyDomain(shared);
        Assert.Empty(host.Domains);
        Assert.Equal(freeAtStart, host.Machine.FreeFrames);   // every frame accounted for
        Assert.Equal(0UL, host.Machine.AllocatedFrames);
        Assert.Equal(0UL, host.VlptWindow.UsedBytes);
    }

    private static void WriteAndCheck(Domain d, Vcpu? v, ulong gfn, byte[] model, Random rng, ConcurrentQueue<string> errors, int t, ulong va = 0)
    {
        int len = rng.Next(1, 3 * Page.Size);
        int off = rng.Next(0, model.Length - len);
        var data = new byte[len];
        rng.NextBytes(data);
        if (v is null)
        {
            var r = d.WriteGuestPhysical((gfn << Page.Shift) + (ulong)off, data);
            if (r.Status != PhysAccessStatus.Ok) { errors.Enqueue($"thread {t}: {d.Name} physical write {r.Status}"); return; }
        }
        else
        {
            var r = v.WriteVirtual(va + (ulong)off, data);
            if (!r.IsOk) { errors.Enqueue($"thread {t}: {d.Name} virtual write {r}"); return; }
        }
        data.CopyTo(model, off);
        var back = new byte[len];
        d.ReadPhysical((gfn << Page.Shift) + (ulong)off, back);
        if (!back.AsSpan().SequenceEqual(data)) errors.Enqueue($"thread {t}: {d.Name} read back differs from what was written at +0x{off:x}");
    }

    private static void CheckAll(Domain d, ulong gfn, byte[] model, ConcurrentQueue<string> errors, string who)
    {
        var back = new byte[model.Length];
        d.ReadPhysical(gfn << Page.Shift, back);
        for (int i = 0; i < model.Length; i += Page.Size)
            if (!back.AsSpan(i, Page.Size).SequenceEqual(model.AsSpan(i, Page.Size)))
                errors.Enqueue($"{who}: gfn 0x{gfn + (ulong)(i / Page.Size):x} differs from what the thread wrote");
    }

    private static void Run(int threads, Action<int> body)
    {
        var failures = new ConcurrentQueue<Exception>();
        var start = new Barrier(threads);
        var list = new List<Thread>();
        for (int t = 0; t < threads; t++)
        {
            int id = t;
            var th = new Thread(() =>
            {
                try { start.SignalAndWait(); body(id); }
                catch (Exception e) { failures.Enqueue(e); }
            }, 16 << 20);
            th.Start();
            list.Add(th);
        }
        foreach (var th in list) th.Join();
        if (!failures.IsEmpty) throw new AggregateException(failures);
    }
}
