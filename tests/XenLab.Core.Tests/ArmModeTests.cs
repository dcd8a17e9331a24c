using System.Collections.Generic;
using System.Linq;
using XenLab.Config;
using XenLab.Diagnostics;
using XenLab.Domains;
using XenLab.E820;
using XenLab.Guest;
using XenLab.Memory;
using XenLab.P2m;
using XenLab.Paging;
using XenLab.Paging.Arm;
using XenLab.Paging.Modes;

namespace XenLab.Tests;

public class ArmModeTests
{
    private const ulong Va = 0x400000;
    private const ulong DataGfn = 0x2010;

    private static DomainConfig ArmConfig(string name, ArmLeafLookup lookup, ulong memoryMiB = 64, ulong? maxMemMiB = 128)
    {
        var c = TestDomains.Config(name, memoryMiB, maxMemMiB);
        c.Paging = PagingModeKind.Arm;
        c.PagingOptions = c.PagingOptions with { ArmLeafLookup = lookup };
        return c;
    }

    private static Domain Arm(ArmLeafLookup lookup = ArmLeafLookup.Walk, XenHost? host = null, string name = "arm")
    {
        host ??= new XenHost(4UL << 30);
        var d = host.CreateDomain(ArmConfig(name, lookup));
        d.Kernel.Map(Va, DataGfn, 4, MapFlags.Writable);
        return d;
    }

    private static ArmMode Mode(Domain d) => (ArmMode)d.Mode!;

    private static WalkStep GuestLeaf(Domain d, ulong va)
    {
        var trace = new TranslationTrace();
        d.Vcpus[0].Explain(va, AccessKind.Read, trace);
        return trace.Steps.FindAll(s => s.Table == "guest")[^1];
    }

    [Fact]
    public void AColdTwoStageWalkCostsNineteenReferencesAndOneFewerForABlock()
    {
        // The guest's tables live at 1 MiB (gfn 0x100..), in 4 KiB stage-2 pages (2 MiB group 0
        // holds the legacy hole). Through 4 KiB pages: 4 stage-1 levels x (3 stage-2 reads + the
        // descriptor) + 3 for the page = 19. Data gfn 0x2010 is under a 2 MiB block: its stage-2
        // walk stops at level 2, so 4 x 4 + 2 = 18.
        var d = Arm();
        d.Kernel.Map(Va + 0x100000, 0x50, 1, MapFlags.Writable);        // gfn 0x50: a 4 KiB leaf
        Assert.Equal(2, Mode(d).Stage2.Locate(DataGfn).ArmLevel);
        Assert.Equal(3, Mode(d).Stage2.Locate(0x50).ArmLevel);
        d.FlushAllTlbs();
        var t = d.Vcpus[0].Translate(Va + 0x100000, AccessKind.Read);
        Assert.True(t.IsOk);
        Assert.Equal(19, t.MemoryReferences);
        Assert.Equal(15, d.Counters[PerfCounter.Stage2WalkMemRef]);    // 5 stage-2 walks of 3
        Assert.Equal(4, d.Counters[PerfCounter.PageWalkMemRef]);       // the stage-1 descriptors
        Assert.Equal(d.P2m.Get(0x50), t.Mfn);
        t = d.Vcpus[0].Translate(Va, AccessKind.Read);
        Assert.True(t.IsOk);
        Assert.Equal(18, t.MemoryReferences);
        Assert.Equal(15 + 14, d.Counters[PerfCounter.Stage2WalkMemRef]);   // 4 walks of 3 + one of 2
        Assert.Equal(d.P2m.Get(DataGfn), t.Mfn);                        // block base + 0x10
        Assert.Equal(d.P2m.Get(0x2000) + 0x10, t.Mfn);
    }

    [Fact]
    public void TheGuestsTablesAreAarch64AndTheWalkerSetsAfThenClearsApTwo()
    {
        var d = Arm();
        var v = d.Vcpus[0];
        // Writable kernel page at gfn 0x2010: 0x2010000 | 0b11 | AP[2] 0x80 | SH 0x300 | DBM bit 51.
        Assert.Equal(0x0008_0000_0201_0383UL, GuestLeaf(d, Va).RawEntry);
        v.ReadVirtual(Va, new byte[1]);
        Assert.Equal(0x0008_0000_0201_0783UL, GuestLeaf(d, Va).RawEntry);   // + AF 0x400
        v.WriteVirtual(Va, new byte[1]);
        Assert.Equal(0x0008_0000_0201_0703UL, GuestLeaf(d, Va).RawEntry);   // AP[2] cleared: writable-dirty
        Assert.Equal(1, d.Counters[PerfCounter.AccessedBitSet]);
        Assert.Equal(1, d.Counters[PerfCounter.DirtyBitSet]);
    }

    [Fact]
    public void GuestFaultsAreNormalizedLikeX86()
    {
        // The same accesses in a HAP (x86) domain and an ARM domain give the same error codes.
        var hap = new XenHost(4UL << 30).CreateDomain(TestDomains.Config("x86", 64, 128));
        var arm = Arm();
        foreach (var d in new[] { hap, arm })
        {
            d.Kernel.Map(Va, DataGfn, 1, MapFlags.Writable);
            d.Kernel.Map(Va + 0x1000, DataGfn + 1, 1, MapFlags.User);          // user, read-only
            var v = d.Vcpus[0];
            Assert.Equal(0x0u, (uint)v.ReadVirtual(Va + 0x10000, new byte[1]).ErrorCode);               // not present, read
            Assert.Equal(0x3u, (uint)v.WriteVirtual(Va + 0x1000, new byte[1]).ErrorCode);               // P | W: read-only
            Assert.Equal(0x5u, (uint)v.ReadVirtual(Va, new byte[1], AccessKind.User).ErrorCode);        // P | U: kernel page
            Assert.Equal(0x7u, (uint)v.WriteVirtual(Va + 0x1000, new byte[1], AccessKind.User).ErrorCode);
            Assert.Equal(4, d.Counters[PerfCounter.GuestPageFault]);
        }
        // The ARM side also says which DFSC it was: a level-3 translation fault is 0b000111.
        var trace = new TranslationTrace();
        arm.Vcpus[0].Explain(Va + 0x10000, AccessKind.Read, trace);
        Assert.Contains(trace.Notes, n => n.Contains("DFSC 0x07 (translation fault, level 3)"));
        trace = new TranslationTrace();
        arm.Vcpus[0].Explain(Va + 0x1000, AccessKind.Write, trace);
        Assert.Contains(trace.Notes, n => n.Contains("DFSC 0x0f (permission fault, level 3)"));
    }

    [Fact]
    public void ExplainShowsBothStagesWithoutChangingAnything()
    {
        var d = Arm();
        var trace = new TranslationTrace();
        long walks = d.Counters[PerfCounter.PageWalk], s2 = d.Counters[PerfCounter.Stage2WalkMemRef];
        var t = d.Vcpus[0].Explain(Va, AccessKind.Write, trace);
        Assert.True(t.IsOk);
        Assert.Equal(18, t.MemoryReferences);                           // the data page is under a block
        Assert.Equal(4, trace.Steps.Count(s => s.Table == "guest"));
        Assert.Equal(14, trace.Steps.Count(s => s.Table == "stage2"));
        Assert.Equal(walks, d.Counters[PerfCounter.PageWalk]);          // scratch counters
        Assert.Equal(s2, d.Counters[PerfCounter.Stage2WalkMemRef]);
        Assert.Equal(0UL, GuestLeaf(d, Va).RawEntry & Aarch64Pte.AccessFlag);   // no AF written
        Assert.StartsWith("block RWX ram_rw", trace.Steps[^1].Decoded);
        Assert.Equal("S2L2", trace.Steps[^1].Name);
    }

    [Theory]
    [InlineData(ArmLeafLookup.Walk)]
    [InlineData(ArmLeafLookup.Vlpt)]
    public void TracedWritesFaultOncePerPageAndAreReportedExactly(ArmLeafLookup lookup)
    {
        var d = Arm(lookup);
        var v = d.Vcpus[0];
        var arm = Mode(d);
        v.WriteVirtual(Va, new byte[1]);                          // cached writable in the TLB before tracing
        arm.WriteProtectForTracing(DataGfn, DataGfn + 4);
        Assert.Equal(0, d.Counters[PerfCounter.Stage2AbortPermission]);
        var written = new[] { 0UL, 2UL, 0UL, 2UL, 2UL };
        foreach (ulong p in written) Assert.True(v.WriteVirtual(Va + (p << 12) + 8, new byte[] { 1, 2 }).IsOk);
        Assert.Equal(2, d.Counters[PerfCounter.Stage2AbortPermission]);   // once per page: the flush made page 0 fault too
        Assert.Equal(2, d.Counters[PerfCounter.ArmDirtyBitSet]);
        Assert.True(Stage2Entry.IsDirty(arm.Stage2.Peek(DataGfn)));    // the mark is in the p2m entry itself (bit 58)
        Assert.NotEqual(0UL, arm.Stage2.Peek(DataGfn) & (1UL << 58));
        Assert.Equal(new ulong[] { DataGfn, DataGfn + 2 }, arm.TestAndClearDirty(DataGfn, DataGfn + 4));
        Assert.Empty(arm.TestAndClearDirty(DataGfn, DataGfn + 4));    // read and reset
        v.ReadVirtual(Va + 0x3000, new byte[1]);                       // reads do not dirty
        v.WriteVirtual(Va + 0x1000, new byte[1]);
        Assert.Equal(3, d.Counters[PerfCounter.Stage2AbortPermission]);
        Assert.True(arm.TestAndClearDirty(DataGfn + 1));
        Assert.False(arm.TestAndClearDirty(DataGfn + 1));
        // A write by a physical path (the guest's direct map) is traced too.
        d.WriteGuestPhysical((DataGfn + 3) << 12, new byte[] { 9 });
        Assert.True(arm.TestAndClearDirty(DataGfn + 3));
        Assert.True(arm.TestAndClearDirty(DataGfn + 100));            // not traced: when in doubt, dirty
        var problems = new List<string>();
        arm.Audit(problems);
        Assert.Empty(problems);
        arm.StopTracing(DataGfn, DataGfn + 4);
        long aborts = d.Counters[PerfCounter.Stage2Abort];
        v.WriteVirtual(Va + 0x2000, new byte[1]);
        Assert.Equal(aborts, d.Counters[PerfCounter.Stage2Abort]);    // write is back
        Assert.True(Stage2Entry.IsWritable(arm.Stage2.Peek(DataGfn + 2)));
    }

    [Fact]
    public void HardwareAccessFlagAndDirtyUpdatesDirtyTheTablePageTheyWrite()
    {
        // The MMU's AF/DBM update of a stage-1 descriptor is a write through stage 2: tracing all
        // of RAM sees the guest's third-level table page dirtied even by a read.
        var d = Arm();
        var arm = Mode(d);
        var v = d.Vcpus[0];
        ulong top = d.E820.Top >> 12;
        ulong tableGfn = GuestLeaf(d, Va).EntryAddress >> 12;
        arm.WriteProtectForTracing(0, top);
        v.ReadVirtual(Va, new byte[1]);                                    // sets AF in the table page
        Assert.Equal(new[] { tableGfn }, arm.TestAndClearDirty(0, top));
        Assert.Equal(1, d.Counters[PerfCounter.Stage2AbortPermission]);
        v.WriteVirtual(Va, new byte[1]);                                   // clears AP[2] there, and writes the page
        Assert.Equal(new[] { tableGfn, DataGfn }, arm.TestAndClearDirty(0, top));
        Assert.Equal(3, d.Counters[PerfCounter.Stage2AbortPermission]);
    }

    [Fact]
    public void TheWalkLookupMapsThreeLevelsPerFault()
    {
        var d = Arm(ArmLeafLookup.Walk);
        Mode(d).WriteProtectForTracing(DataGfn, DataGfn + 4);
        d.Vcpus[0].WriteVirtual(Va, new byte[1]);
        d.Vcpus[0].WriteVirtual(Va + 0x1000, new byte[1]);
        Assert.Equal(2, d.Counters[PerfCounter.Stage2LeafWalk]);
        Assert.Equal(6, d.Counters[PerfCounter.Stage2LeafWalkMaps]);     // 3 per lookup
        Assert.Equal(6, d.Counters[PerfCounter.Stage2LeafWalkMemRef]);
        Assert.Equal(0, d.Counters[PerfCounter.VlptLookup]);
    }

    [Fact]
    public void TheVlptLookupReadsTwoDescriptorsAndMapsNothing()
    {
        var d = Arm(ArmLeafLookup.Vlpt);
        Mode(d).WriteProtectForTracing(DataGfn, DataGfn + 4);
        d.Vcpus[0].WriteVirtual(Va, new byte[1]);
        d.Vcpus[0].WriteVirtual(Va + 0x1000, new byte[1]);
        Assert.Equal(2, d.Counters[PerfCounter.VlptLookup]);
        Assert.Equal(4, d.Counters[PerfCounter.VlptMemRef]);              // second-level check + leaf, per lookup
        Assert.Equal(0, d.Counters[PerfCounter.Stage2LeafWalk]);
        Assert.Equal(0, d.Counters[PerfCounter.Stage2LeafWalkMaps]);
    }

    [Fact]
    public void TheVlptWindowShowsTheP2msOwnTablesAtComputedAddresses()
    {
        var d = Arm(ArmLeafLookup.Vlpt);
        var arm = Mode(d);
        Assert.Null(arm.VlptSlice);                                       // untraced: no slice
        Assert.Equal(0, d.Counters[PerfCounter.VlptSlotWrite]);
        arm.WriteProtectForTracing(DataGfn, DataGfn + 4);
        var slice = arm.VlptSlice!;
        var window = d.Host!.VlptWindow;
        Assert.Equal(0x8000000UL, slice.LeafBase);                        // the thread's 128 MiB
        Assert.Equal(2UL << 20, slice.Bytes);                             // 128 MiB maxmem: one GiB of IPA, one slot
        // Leaf for IPA x at base + (x >> 12) * 8, and it is the p2m's own third-level table.
        var leaf = arm.Stage2.Locate(DataGfn);
        Assert.True(window.TryTranslate(slice.LeafVa(DataGfn), out var f3, out int o3));
        Assert.Equal((leaf.Table, leaf.Index * 8), (f3, o3));
        // Second-level entry for x at base2 + (x >> 21) * 8, through the loop: the p2m's second-level table.
        Assert.True(window.TryTranslate(slice.SecondVa(DataGfn), out var f2, out int o2));
        Assert.Equal(arm.Stage2.SecondLevelTable(0), f2);
        Assert.Equal((int)(DataGfn >> 9) * 8, o2);
        Assert.Equal(1, d.Counters[PerfCounter.VlptSlotWrite]);          // slotted once, when tracing started
        Assert.Equal(2, d.Counters[PerfCounter.VlptTlbFlush]);
    }

    private static DomainConfig FourGiBArm(string name)
    {
        // 4 GiB of IPA, all RAM in the E820, 64 MiB of it populated.
        var c = ArmConfig(name, ArmLeafLookup.Vlpt, 64, null);
        c.E820 = new List<E820Entry> { new(0, 4UL << 30, E820Type.Ram) };
        return c;
    }

    [Fact]
    public void AFourGiBDomainNeedsEightMiBOnlyWhileTracingAndTheWindowRefusesWhenFull()
    {
        var host = new XenHost(8UL << 30, vlptWindowBytes: 64UL << 20);
        var domains = new List<Domain>();
        // Untraced domains hold nothing: twelve fit a window that holds eight traced ones.
        for (int i = 0; i < 12; i++) domains.Add(host.CreateDomain(FourGiBArm("big" + i)));
        Assert.Equal(0UL, host.VlptWindow.UsedBytes);
        for (int i = 0; i < 8; i++) domains[i].LogDirty.Enable();
        Assert.Equal(8UL << 20, Mode(domains[0]).VlptSlice!.Bytes);      // the seed's 8 MB for 4 GB
        Assert.Equal(64UL << 20, host.VlptWindow.UsedBytes);
        ulong frames = host.Machine.AllocatedFrames;
        long writes = domains[8].Counters[PerfCounter.VlptSlotWrite];
        // The ninth cannot start tracing: the error names the window and who holds it; nothing changed.
        var ex = Assert.Throws<VlptWindowFullException>(() => domains[8].LogDirty.Enable());
        Assert.Equal("VlptWindowFull", ex.ErrorId);
        Assert.Contains("VLPT window (64 MiB at 0x8000000, 32 slots of 2 MiB)", ex.Message);
        Assert.Contains("domain 'big8'", ex.Message);
        Assert.Contains("needs 8 MiB in one piece", ex.Message);
        Assert.Contains("held by big0 (slots 0..3), big1 (slots 4..7)", ex.Message);
        Assert.Contains("big7 (slots 28..31)", ex.Message);
        Assert.False(domains[8].LogDirty.Enabled);
        Assert.False(Mode(domains[8]).TracingActive);
        Assert.Null(Mode(domains[8]).VlptSlice);
        Assert.Equal(frames, host.Machine.AllocatedFrames);
        Assert.Equal(writes, domains[8].Counters[PerfCounter.VlptSlotWrite]);
        ulong pfn = domains[8].P2m.EnumerateRam().First().Pfn;
        Assert.True(Stage2Entry.IsWritable(Mode(domains[8]).Stage2.Peek(pfn)));   // not write-protected
        // A dirty-VRAM query that would start tracing is refused the same way.
        Assert.Throws<VlptWindowFullException>(() => domains[9].Vram.Track(0x100, 16));
        Assert.Empty(domains[9].Vram.Ranges);
        // Stopping one returns its slice; the next fits in it (first fit).
        int freed = Mode(domains[3]).VlptSlice!.FirstSlot;
        Assert.Equal(3 * 4, freed);
        domains[3].LogDirty.Disable();
        Assert.Null(Mode(domains[3]).VlptSlice);
        domains[8].LogDirty.Enable();
        Assert.Equal(freed, Mode(domains[8]).VlptSlice!.FirstSlot);
        // Removing a traced domain returns its slice too.
        int removed = Mode(domains[5]).VlptSlice!.FirstSlot;
        host.DestroyDomain(domains[5]);
        domains[9].LogDirty.Enable();
        Assert.Equal(removed, Mode(domains[9]).VlptSlice!.FirstSlot);
        // So does a switch away from ARM; switching back leaves it untraced until tracing restarts.
        int zero = Mode(domains[0]).VlptSlice!.FirstSlot;
        domains[0].LogDirty.Disable();
        domains[10].LogDirty.Enable();
        Assert.Equal(zero, Mode(domains[10]).VlptSlice!.FirstSlot);
        domains[10].SetPagingMode(PagingModeKind.Hap);
        Assert.DoesNotContain(host.VlptWindow.Slices, s => s.Domain == domains[10]);
        var problems = new List<string>();
        foreach (var d in host.Domains) d.Mode!.Audit(problems);
        Assert.Empty(problems);
    }

    [Fact]
    public void SeventeenUntracedFourGiBDomainsCoexistInTheDefaultWindow()
    {
        // 128 MiB holds 16 slices of 8 MiB; a 17th domain is built, and fails only when it starts tracing.
        var host = new XenHost(16UL << 30);
        var domains = new List<Domain>();
        for (int i = 0; i < 17; i++) domains.Add(host.CreateDomain(FourGiBArm("d" + i)));
        for (int i = 0; i < 16; i++) domains[i].LogDirty.Enable();
        Assert.Equal(128UL << 20, host.VlptWindow.UsedBytes);
        var ex = Assert.Throws<VlptWindowFullException>(() => domains[16].LogDirty.Enable());
        Assert.Contains("'d16'", ex.Message);
        Assert.Contains("d15 (slots 60..63)", ex.Message);
        domains[16].Vcpus[0].WriteVirtual(Va, new byte[1]);               // it still runs, untraced
        Assert.Equal(0, domains[16].Counters[PerfCounter.Stage2AbortPermission]);
    }

    [Fact]
    public void ASwitchToArmThatCannotReArmLogDirtyLeavesTheDomainAsItWas()
    {
        // The window is full of traced domains; a HAP domain with log-dirty on asks for ARM with
        // VLPT lookups. Log-dirty must be re-armed under ARM, which needs a slice: the switch is
        // refused and the domain stays in HAP, tracing, every later write still logged.
        var host = new XenHost(8UL << 30, vlptWindowBytes: 16UL << 20);
        var holders = new List<Domain>();
        for (int i = 0; i < 2; i++) { holders.Add(host.CreateDomain(FourGiBArm("h" + i))); holders[i].LogDirty.Enable(); }
        var c = FourGiBArm("sw");
        c.Paging = PagingModeKind.Hap;
        var d = host.CreateDomain(c);
        d.LogDirty.Enable();
        d.LogDirty.Read(clean: true);
        var vlpt = d.Config.PagingOptions with { ArmLeafLookup = ArmLeafLookup.Vlpt };
        Assert.Throws<VlptWindowFullException>(() => d.SetPagingMode(PagingModeKind.Arm, vlpt));
        Assert.Equal(PagingModeKind.Hap, d.PagingMode);                 // nothing half-switched
        Assert.Equal(PagingModeKind.Hap, d.Config.Paging);
        Assert.True(d.LogDirty.Enabled);
        Assert.DoesNotContain(host.VlptWindow.Slices, s => s.Domain == d);
        ulong gfn = d.P2m.EnumerateRam().First().Pfn;
        d.WriteGuestPhysical(gfn << 12, new byte[] { 1 });
        var log = d.LogDirty.Read(clean: true);
        Assert.Equal(1, (log.Bitmap[gfn >> 3] >> (int)(gfn & 7)) & 1);          // the write after the refusal is logged
        // The undone switch may over-report (a mode that never got armed hands back "all
        // dirty"); after one more clean, tracking is exact again under HAP.
        d.WriteGuestPhysical((gfn + 1) << 12, new byte[] { 2 });
        log = d.LogDirty.Read(clean: true);
        Assert.Equal(1, log.DirtyPages);
        Assert.Equal(1, (log.Bitmap[(gfn + 1) >> 3] >> (int)((gfn + 1) & 7)) & 1);
        var problems = new List<string>();
        foreach (var x in host.Domains) x.Mode!.Audit(problems);
        Assert.Empty(problems);
    }

    [Fact]
    public void AVramRangeAboveRamGrowsTheSliceToCoverIt()
    {
        var host = new XenHost(4UL << 30);
        var d = Arm(ArmLeafLookup.Vlpt, host);                           // 128 MiB: one GiB of IPA
        var arm = Mode(d);
        arm.WriteProtectForTracing(DataGfn, DataGfn + 4);
        Assert.Equal(1, arm.VlptSlice!.Slots);
        arm.WriteProtectForTracing(0xC0000, 0xC0010);                     // 3 GiB: needs four slots
        Assert.Equal(4, arm.VlptSlice!.Slots);
        Assert.Single(host.VlptWindow.Slices);                            // the small one went back
        arm.StopTracing(0xC0000, 0xC0010);
        Assert.NotNull(arm.VlptSlice);                                     // DataGfn is still traced
        arm.StopTracing(DataGfn, DataGfn + 4);
        Assert.Null(arm.VlptSlice);
        Assert.Empty(host.VlptWindow.Slices);
        Assert.Equal(0UL, host.VlptWindow.XenSecond(host.VlptWindow.FirstXenSlot));
    }

    [Fact]
    public void SharedSlotsCostSlotWritesAtContextSwitchPerDomainSlicesDoNot()
    {
        var shared = new XenHost(4UL << 30, vlptLayout: VlptLayout.SharedSlots);
        var a = Arm(ArmLeafLookup.Vlpt, shared, "a");
        var b = Arm(ArmLeafLookup.Vlpt, shared, "b");
        Assert.Equal(0, a.Counters[PerfCounter.VlptSlotWrite]);           // nothing slotted until a switch needs it
        Assert.Equal(0, shared.ContextSwitch(b, a));                      // a is not tracing: no work
        Mode(a).WriteProtectForTracing(DataGfn, DataGfn + 4);
        Mode(b).WriteProtectForTracing(DataGfn, DataGfn + 4);
        Assert.Equal(1, shared.ContextSwitch(b, a));                      // a's one GiB slot
        Assert.Equal(1, shared.ContextSwitch(a, b));                      // rewritten for b
        Assert.Equal(1, shared.ContextSwitch(b, a));
        Assert.Equal(2, a.Counters[PerfCounter.VlptSlotWrite]);
        Assert.Equal(4, a.Counters[PerfCounter.VlptTlbFlush]);            // the slot's range and its alias, per write
        // a's fault handler finds its own p2m (loaded) and marks the page.
        a.Vcpus[0].WriteVirtual(Va, new byte[1]);
        Assert.Equal(new ulong[] { DataGfn }, Mode(a).TestAndClearDirty(DataGfn, DataGfn + 4));
        // b faulting while a is loaded pays an implicit switch.
        b.Vcpus[0].WriteVirtual(Va, new byte[1]);
        Assert.Equal(shared.VlptWindow.LoadedDomain, b);
        Assert.Equal(new ulong[] { DataGfn }, Mode(b).TestAndClearDirty(DataGfn, DataGfn + 4));
        var problems = new List<string>();
        Mode(a).Audit(problems);
        Mode(b).Audit(problems);
        Assert.Empty(problems);

        var perDomain = new XenHost(4UL << 30);
        var c = Arm(ArmLeafLookup.Vlpt, perDomain, "c");
        var e = Arm(ArmLeafLookup.Vlpt, perDomain, "e");
        Mode(c).WriteProtectForTracing(DataGfn, DataGfn + 4);
        Mode(e).WriteProtectForTracing(DataGfn, DataGfn + 4);
        long writes = c.Counters[PerfCounter.VlptSlotWrite] + e.Counters[PerfCounter.VlptSlotWrite];
        for (int i = 0; i < 10; i++) { Assert.Equal(0, perDomain.ContextSwitch(c, e)); Assert.Equal(0, perDomain.ContextSwitch(e, c)); }
        Assert.Equal(writes, c.Counters[PerfCounter.VlptSlotWrite] + e.Counters[PerfCounter.VlptSlotWrite]);
        Assert.Equal(20, perDomain.VlptWindow.ContextSwitches);
    }

    [Fact]
    public void X86ToArmToX86KeepsEveryMappingAndItsAccessedDirtyState()
    {
        var d = new XenHost(4UL << 30).CreateDomain(TestDomains.Config("sw", 64, 128));
        var k = d.Kernel;
        var v = d.Vcpus[0];
        k.Map(Va, DataGfn, 8, MapFlags.Writable);
        k.Map(0x800000, 0x3000, 4, MapFlags.User | MapFlags.Writable);
        k.Map(0x900000, 0x3100, 2, MapFlags.NoExecute);
        k.Map(0xFFFF_8000_0000_0000, 0x3200, 2, MapFlags.Writable | MapFlags.NoExecute);
        v.ReadVirtual(Va, new byte[1]);                      // accessed
        v.WriteVirtual(Va + 0x1000, new byte[1]);           // accessed + dirty
        v.WriteVirtual(0x800000, new byte[1], AccessKind.User);
        v.ReadVirtual(0x900000, new byte[1]);
        v.WriteVirtual(0xFFFF_8000_0000_1000, new byte[1]);
        var before = k.Leaves();
        Assert.Contains(before, l => l.State.Dirty);
        d.SetPagingMode(PagingModeKind.Arm);
        Assert.Same(Aarch64GuestFormat.Instance, k.Format);
        Assert.Equal(before, k.Leaves());
        Assert.NotEqual(0UL, GuestLeaf(d, Va).RawEntry & Aarch64Pte.Dbm);   // really AArch64 descriptors now
        // Working under ARM: a new write dirties another page; the mapping set is the same.
        Assert.True(v.WriteVirtual(Va + 0x2000, new byte[1]).IsOk);
        var underArm = k.Leaves();
        Assert.True(underArm.Single(l => l.VirtualAddress == Va + 0x2000).State.Dirty);
        d.SetPagingMode(PagingModeKind.Hap);
        Assert.Same(X86GuestFormat.Instance, k.Format);
        Assert.Equal(underArm, k.Leaves());
        Assert.NotEqual(0UL, d.PagingFrames);                             // HAP holds its EPT again
    }

    [Fact]
    public void TheAuditIsCleanAndCatchesACorruptedDescriptor()
    {
        var d = Arm(ArmLeafLookup.Vlpt);
        d.Kernel.Map(0x800000, 0xC0000, 1, MapFlags.Writable);            // an identity (MMIO) frame
        d.Vcpus[0].ReadVirtual(0x800000, new byte[1]);                    // populated lazily
        var problems = new List<string>();
        d.Mode!.Audit(problems);
        Assert.Empty(problems);
        var arm = Mode(d);
        var where = arm.Stage2.Locate(0x50);                              // a 4 KiB leaf (group 0 has the legacy hole)
        Assert.Equal(3, where.ArmLevel);
        d.Machine.WriteUInt64(where.Table, where.Index * 8, where.Value ^ (1UL << 12));   // another frame
        d.Mode.Audit(problems);
        Assert.Single(problems);
        Assert.Contains("gfn 0x50", problems[0]);
        // A corrupted block is 512 wrong gfns.
        problems.Clear();
        where = arm.Stage2.Locate(DataGfn);
        Assert.Equal(2, where.ArmLevel);
        d.Machine.WriteUInt64(where.Table, where.Index * 8, where.Value ^ (1UL << 21));
        d.Mode.Audit(problems);
        Assert.Equal(1 + 512, problems.Count);
        Assert.Contains(problems, p => p.Contains("gfn 0x2010"));
    }

    [Fact]
    public void WritesToRamRoAreRefusedAndCountedReadsWork()
    {
        var d = Arm();
        var v = d.Vcpus[0];
        v.WriteVirtual(Va, new byte[] { 5 });
        d.SetP2mType(DataGfn, P2mType.RamRo);
        var r = v.WriteVirtual(Va, new byte[] { 1 });
        Assert.Equal(TranslateStatus.P2mReadOnly, r.Status);
        Assert.Equal(1, d.Counters[PerfCounter.Stage2AbortRamRo]);
        var b = new byte[1];
        Assert.True(v.ReadVirtual(Va, b).IsOk);
        Assert.Equal(5, b[0]);
        Assert.Equal(P2mType.RamRo, Stage2Entry.TypeOf(Mode(d).Stage2.Peek(DataGfn)));
        Assert.False(Stage2Entry.IsWritable(Mode(d).Stage2.Peek(DataGfn)));
        // Tracing does not make a ram_ro page writable, and a refused write is not dirty.
        Mode(d).WriteProtectForTracing(DataGfn, DataGfn + 1);
        Assert.Equal(TranslateStatus.P2mReadOnly, v.WriteVirtual(Va, new byte[] { 1 }).Status);
        Assert.False(Mode(d).TestAndClearDirty(DataGfn));
    }

    [Fact]
    public void LogDirtyTypesAndTracingCompose()
    {
        var d = Arm();
        var v = d.Vcpus[0];
        var arm = Mode(d);
        d.SetP2mType(DataGfn, P2mType.RamLogDirty);
        d.SetP2mType(DataGfn + 1, P2mType.RamLogDirty);
        arm.WriteProtectForTracing(DataGfn + 1, DataGfn + 2);
        Assert.True(v.WriteVirtual(Va, new byte[] { 7 }).IsOk);              // log-dirty only
        Assert.True(v.WriteVirtual(Va + 0x1000, new byte[] { 7 }).IsOk);     // log-dirty and traced: one abort does both
        Assert.Equal(2, d.Counters[PerfCounter.Stage2AbortLogDirty]);
        Assert.Equal(2, d.Counters[PerfCounter.Stage2AbortPermission]);
        Assert.Equal(P2mType.RamRw, d.GetP2mType(DataGfn));
        Assert.Equal(P2mType.RamRw, d.GetP2mType(DataGfn + 1));
        Assert.True(arm.TestAndClearDirty(DataGfn + 1));
        v.WriteVirtual(Va, new byte[] { 8 });
        Assert.Equal(2, d.Counters[PerfCounter.Stage2AbortPermission]);      // ram_rw, untraced: no more aborts
        var problems = new List<string>();
        arm.Audit(problems);
        Assert.Empty(problems);
    }

    [Fact]
    public void IdentityFramesGetMmioDirectOnFirstTouch()
    {
        var d = Arm();
        d.Kernel.Map(0x800000, 0xC0000, 1, MapFlags.Writable);
        var b = new byte[2];
        Assert.True(d.Vcpus[0].ReadVirtual(0x800000, b).IsOk);
        Assert.Equal(new byte[] { 0xFF, 0xFF }, b);
        Assert.Equal(1, d.Counters[PerfCounter.Stage2AbortTranslation]);
        ulong leaf = Mode(d).Stage2.Peek(0xC0000);
        Assert.Equal(P2mType.MmioDirect, Stage2Entry.TypeOf(leaf));
        Assert.NotEqual(0UL, leaf & Stage2Entry.ExecuteNever);
    }

    [Fact]
    public void StageTwoLeavesHaveTheHandComputedFormat()
    {
        var d = Arm();
        ulong mfn = d.P2m.Get(DataGfn);
        // ram_rw: mfn << 12 | 0b11 | MemAttr 0b1111 (0x3C) | S2AP RW (0xC0) | SH inner (0x300) | AF (0x400) = | 0x7FF; type 0.
        Assert.Equal((mfn << 12) | 0x7FF, Mode(d).Stage2.Peek(DataGfn));
        // ram_ro: S2AP write (0x80) clear, type 3 in bits 57:55.
        d.SetP2mType(DataGfn, P2mType.RamRo);
        Assert.Equal((mfn << 12) | 0x77F | (3UL << 55), Mode(d).Stage2.Peek(DataGfn));
        Assert.Equal(Mode(d).Stage2.Pages, (int)d.PagingFrames);
        // 64 MiB populated from gfn 0 with the legacy hole skipped ends at gfn 0x4060. The 2 MiB
        // groups 0x200..0x3e00 (31) are whole RAM on aligned machine runs: blocks. Tables: the
        // root, one second-level (the first GiB), third-level for group 0 (the hole) and for
        // 0x4000..0x405f = 4; ram_ro on one gfn of the block at 0x2000 split it: a fifth.
        Assert.Equal(4 + 1, Mode(d).Stage2.Pages);
        Assert.Equal(30, Mode(d).Stage2.CountBlocks());
        Assert.Equal(31, d.Counters[PerfCounter.Stage2Block]);
        Assert.Equal(1, d.Counters[PerfCounter.Stage2BlockSplit]);
    }

    [Theory]
    [InlineData(ArmLeafLookup.Walk)]
    [InlineData(ArmLeafLookup.Vlpt)]
    public void TracingWriteProtectsAWholeBlockAndSplitsItOnItsFirstWrite(ArmLeafLookup lookup)
    {
        // Lazy, as the seed's handler (check the second level for a block first) and KVM/arm64
        // (force_pte while dirty logging) do: enabling splits nothing; the first write does.
        var d = Arm(lookup);
        var arm = Mode(d);
        var v = d.Vcpus[0];
        v.WriteVirtual(Va, new byte[1]);                                 // a writable TLB entry from the block
        arm.WriteProtectForTracing(0x2000, 0x2200);                       // exactly the block
        Assert.Equal(31, arm.Stage2.CountBlocks());
        Assert.Equal(0, d.Counters[PerfCounter.Stage2BlockSplit]);
        Assert.False(Stage2Entry.IsWritable(arm.Stage2.Peek(DataGfn)));
        Assert.Equal(2, arm.Stage2.Locate(DataGfn).ArmLevel);
        var explain = new TranslationTrace();
        v.Explain(Va, AccessKind.Write, explain);
        Assert.Contains(explain.Notes, n => n.Contains("split the 2 MiB block into 512 write-protected pages"));
        Assert.Equal(0, d.Counters[PerfCounter.Stage2BlockSplit]);        // explaining changes nothing
        Assert.True(v.WriteVirtual(Va, new byte[] { 1 }).IsOk);
        Assert.Equal(1, d.Counters[PerfCounter.Stage2AbortPermission]);   // the flush at enable made it fault
        Assert.Equal(1, d.Counters[PerfCounter.Stage2BlockSplit]);
        Assert.Equal(30, arm.Stage2.CountBlocks());
        if (lookup == ArmLeafLookup.Vlpt)
        {
            // The superpage path: the second-level entry read through the loop is a block; no leaf read.
            Assert.Equal(1, d.Counters[PerfCounter.VlptLookup]);
            Assert.Equal(1, d.Counters[PerfCounter.VlptSuperpageLookup]);
            Assert.Equal(1, d.Counters[PerfCounter.VlptMemRef]);
        }
        else
        {
            Assert.Equal(2, d.Counters[PerfCounter.Stage2LeafWalkMemRef]);    // root, then the block
            Assert.Equal(2, d.Counters[PerfCounter.Stage2LeafWalkMaps]);
        }
        var leaf = arm.Stage2.Locate(DataGfn);
        Assert.Equal(3, leaf.ArmLevel);
        Assert.True(Stage2Entry.IsDirty(leaf.Value) && Stage2Entry.IsWritable(leaf.Value));
        Assert.False(Stage2Entry.IsWritable(arm.Stage2.Peek(DataGfn + 1)));  // the other 511 stay protected
        Assert.False(Stage2Entry.IsDirty(arm.Stage2.Peek(DataGfn + 1)));
        // The next write in the same 2 MiB takes the normal leaf path.
        Assert.True(v.WriteVirtual(Va + 0x1000, new byte[] { 1 }).IsOk);
        Assert.Equal(1, d.Counters[PerfCounter.Stage2BlockSplit]);
        if (lookup == ArmLeafLookup.Vlpt) Assert.Equal(1 + 2, d.Counters[PerfCounter.VlptMemRef]);
        Assert.Equal(new ulong[] { DataGfn, DataGfn + 1 }, arm.TestAndClearDirty(0x2000, 0x2200));
        var problems = new List<string>();
        arm.Audit(problems);
        Assert.Empty(problems);
        // Stopping gives write back; the split block stays split (no re-merge).
        arm.StopTracing(0x2000, 0x2200);
        Assert.True(Stage2Entry.IsWritable(arm.Stage2.Peek(DataGfn + 5)));
        Assert.Equal(30, arm.Stage2.CountBlocks());
        // Tracing part of a block must change only part of it: that splits at once.
        arm.WriteProtectForTracing(0x3010, 0x3014);
        Assert.Equal(2, d.Counters[PerfCounter.Stage2BlockSplit]);
        Assert.False(Stage2Entry.IsWritable(arm.Stage2.Peek(0x3010)));
        Assert.True(Stage2Entry.IsWritable(arm.Stage2.Peek(0x3014)));
        arm.Audit(problems);
        Assert.Empty(problems);
    }

    [Fact]
    public void LogDirtyOverAllRamSplitsOnlyTheBlocksWritten()
    {
        var d = Arm(ArmLeafLookup.Vlpt);
        d.LogDirty.Enable();
        Assert.Equal(0, d.Counters[PerfCounter.Stage2BlockSplit]);
        d.Vcpus[0].WriteVirtual(Va, new byte[1]);
        d.Vcpus[0].WriteVirtual(Va + 0x2000, new byte[1]);
        d.WriteGuestPhysical(0x3000UL << 12, new byte[] { 1 });           // another block, by a physical path
        Assert.Equal(2, d.Counters[PerfCounter.Stage2BlockSplit]);
        Assert.Equal(29, Mode(d).Stage2.CountBlocks());
        var dirty = d.LogDirty.Read(clean: true).DirtyGfns().ToList();
        Assert.Contains(DataGfn, dirty);
        Assert.Contains(DataGfn + 2, dirty);
        Assert.Contains(0x3000UL, dirty);
        Assert.DoesNotContain(0x3001UL, dirty);
    }

    [Fact]
    public void BlockPlacementGivesAlignedMachineRunsToAlignedGuestGroups()
    {
        // pfns 0..0x9f and 0x100..0x5ff (0x5a0 pages), frames 0x1fff down to 0x1a60 as the
        // allocator hands them out. Aligned runs among the frames: 0x1e00 and 0x1c00 (0x1a00 is
        // incomplete). Aligned pfn groups of 512: 0x200 and 0x400 (group 0 has the hole).
        var pfns = new List<ulong>();
        for (ulong p = 0; p < 0xa0; p++) pfns.Add(p);
        for (ulong p = 0x100; p < 0x600; p++) pfns.Add(p);
        var mfns = new Mfn[pfns.Count];
        for (int i = 0; i < mfns.Length; i++) mfns[i] = new Mfn(0x1fffUL - (ulong)i);
        BlockPlacement.ArrangeForBlocks(pfns.ToArray(), mfns);
        int at200 = pfns.IndexOf(0x200), at400 = pfns.IndexOf(0x400);
        for (int k = 0; k < 512; k++)
        {
            Assert.Equal(0x1e00UL + (ulong)k, mfns[at200 + k].Value);
            Assert.Equal(0x1c00UL + (ulong)k, mfns[at400 + k].Value);
        }
        // The rest keep the allocator's descending order: 0x1bff first, for pfn 0.
        Assert.Equal(0x1bffUL, mfns[0].Value);
        Assert.Equal(0x1bfeUL, mfns[1].Value);
        Assert.Equal(mfns.Length, mfns.Select(m => m.Value).Distinct().Count());
        Assert.Equal(0x1a60UL, mfns.Min(m => m.Value));
    }

    [Fact]
    public void DetachAndDestroyReturnEveryFrameAndTheWindowSlice()
    {
        var host = new XenHost(4UL << 30);
        var d = Arm(ArmLeafLookup.Vlpt, host);
        Mode(d).WriteProtectForTracing(DataGfn, DataGfn + 4);
        Assert.Single(host.VlptWindow.Slices);
        host.DestroyDomain(d);
        Assert.Equal(0UL, host.Machine.AllocatedFrames);
        Assert.Empty(host.VlptWindow.Slices);
        Assert.Equal(0UL, host.VlptWindow.XenSecond(host.VlptWindow.FirstXenSlot));
    }
}
