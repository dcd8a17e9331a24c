using System.Linq;
using XenLab.Config;
using XenLab.Domains;
using XenLab.Guest;
using XenLab.Paging;
using XenLab.Paging.Hap;
using XenLab.Pictures;
using XenLab.Views;

namespace XenLab.Tests.Pictures;

public class WalkPictureTests
{
    private const ulong Va = 0x400000, DataGfn = 0x2010;

    private static Domain Create(PagingModeKind mode, int gpaCache = 0)
    {
        var host = new XenHost(4UL << 30);
        var c = TestDomains.Config("walk", 64, 128);
        c.Paging = mode;
        c.PagingOptions = c.PagingOptions with { HapGpaCacheEntries = gpaCache, HapSuperpages = false };   // 4 KiB EPT leaves: the 5x5 grid
        var d = host.CreateDomain(c);
        d.Kernel.Map(Va, DataGfn, 4, MapFlags.Writable);
        return d;
    }

    private static int Count(WalkDiagram d, WalkCellKind kind) => d.Rows.Sum(r => r.Cells.Count(c => c.Kind == kind));

    [Fact]
    public void AColdHapWalkIsTheFiveByFiveGridOfTwentyFourReferences()
    {
        var d = Create(PagingModeKind.Hap);
        var diagram = WalkPicture.Layout(TranslationView.Of(d, 0, Va, AccessKind.Read));
        Assert.Equal(5, diagram.Rows.Count);
        Assert.All(diagram.Rows, r => Assert.Equal(5, r.Cells.Count));
        Assert.Equal(24, diagram.References);                    // (4+1) x (4+1) - 1
        Assert.Equal(20, Count(diagram, WalkCellKind.Nested));
        Assert.Equal(4, Count(diagram, WalkCellKind.Guest));
        Assert.Equal(WalkCellKind.Data, diagram.Cell(4, 4).Kind);  // bottom right: the access itself
        Assert.Equal(WalkCellKind.Guest, diagram.Cell(0, 4).Kind); // the guest L4 entry, after its 4 EPT entries
        Assert.Equal(5, diagram.Cell(0, 4).Order);
        Assert.Equal(24, diagram.Cell(4, 3).Order);                // the data page's EPT L1 entry is read last
    }

    [Fact]
    public void RowsWhoseNestedWalkIsCachedAreShadedAndNotCounted()
    {
        var d = Create(PagingModeKind.Hap, gpaCache: 32);
        Assert.True(d.Vcpus[0].ReadVirtual(Va, new byte[1]).IsOk);   // fills the nested-walk cache with the 4 table gfns and the data gfn
        var hap = Assert.IsType<HapMode>(d.Mode);
        // The next page: same tables (cached), a data gfn not walked yet.
        var diagram = WalkPicture.Layout(TranslationView.Of(d, 0, Va + 0x1000, AccessKind.Read), g => hap.IsNestedWalkCached(0, g));
        Assert.Equal(16, diagram.CachedReferences);
        Assert.Equal(8, diagram.References);                    // 4 guest entries + the data page's 4 EPT entries
        Assert.All(diagram.Rows.Take(4), r => Assert.Equal(WalkCellKind.Cached, r.Cells[0].Kind));
        Assert.Equal(WalkCellKind.Nested, diagram.Cell(4, 0).Kind);
    }

    [Fact]
    public void ShadowReadsFourShadowEntriesAndNoGuestTable()
    {
        var d = Create(PagingModeKind.Shadow);
        Assert.True(d.Vcpus[0].ReadVirtual(Va, new byte[1]).IsOk);   // builds the shadows
        var diagram = WalkPicture.Layout(TranslationView.Of(d, 0, Va, AccessKind.Read));
        Assert.Equal(4, diagram.References);
        Assert.Equal(4, Count(diagram, WalkCellKind.Shadow));
        Assert.Equal(4, Count(diagram, WalkCellKind.NotRead));
        Assert.Equal(0, Count(diagram, WalkCellKind.Nested));
    }

    [Fact]
    public void ABeforeAnyAccessShadowWalkShowsTheGuestTablesTheHypervisorWouldRead()
    {
        var d = Create(PagingModeKind.Shadow);                     // no access yet: the shadows are not built
        var view = TranslationView.Of(d, 0, Va, AccessKind.Read);
        var diagram = WalkPicture.Layout(view);
        Assert.Equal(2, diagram.Rows.Count);                       // the shadow row and the guest row, never a nested grid
        Assert.Equal(4, diagram.Rows[1].Cells.Count(c => c.Kind == WalkCellKind.Guest));
        Assert.Equal(0, Count(diagram, WalkCellKind.Nested));
    }

    [Fact]
    public void ArmWalksStageOneThroughStageTwo()
    {
        var d = Create(PagingModeKind.Arm);
        var view = TranslationView.Of(d, 0, Va, AccessKind.Read);
        var diagram = WalkPicture.Layout(view);
        int stage1 = view.Steps.Count(s => s.Table == "guest"), stage2 = view.Steps.Count(s => s.Table == "stage2");
        Assert.Equal(stage1 + 1, diagram.Rows.Count);
        Assert.Equal(stage1 + stage2, diagram.References);
        Assert.Equal(view.MemoryReferences, diagram.References);
        Assert.StartsWith("stage-2", diagram.Columns[0]);
    }

    [Theory]
    [InlineData(PagingModeKind.Hap)]
    [InlineData(PagingModeKind.Shadow)]
    [InlineData(PagingModeKind.Arm)]
    public void PictureShowsEachCellInItsColour(PagingModeKind mode)
    {
        var d = Create(mode);
        Assert.True(d.Vcpus[0].ReadVirtual(Va, new byte[1]).IsOk);
        var diagram = WalkPicture.Layout(TranslationView.Of(d, 0, Va, AccessKind.Read));
        using var files = new PictureFiles();
        var view = WalkPicture.Save(d, 0, Va, files.Path($"walk-{mode}.png".ToLowerInvariant()));
        using var bmp = PictureFiles.Decode(view.Path);
        Assert.Equal((diagram.Width, diagram.Height), (bmp.Width, bmp.Height));
        foreach (var row in diagram.Rows)
            foreach (var cell in row.Cells)
                PictureFiles.AssertColor(WalkPicture.ColorOf(cell.Kind), bmp, cell.Rect.Left + 3, cell.Rect.Bottom - 3, $"{row.Header} {cell.Label}");
    }
}
