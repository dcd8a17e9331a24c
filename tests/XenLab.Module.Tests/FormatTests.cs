// module/XenLab.format.ps1xml: a view for every output type, tables that fit 120 columns.
using System.Collections.Generic;
using System.Linq;
using System.Xml.Linq;
using Xunit;

namespace XenLab.Module.Tests;

public class FormatTests
{
    private const int ScreenWidth = 120;
    private static readonly XDocument Format = XDocument.Load(BuiltModule.FormatPath);

    /// <summary>'0x{0:x}', or with a fixed digit count such as '0x{0:x16}' for raw entries.</summary>
    private static readonly System.Text.RegularExpressions.Regex HexFormat = new(@"'0x\{0:x[0-9]*\}'");

    private static IEnumerable<XElement> Views => Format.Descendants("View");

    [Fact]
    public void EveryOutputTypeHasADefaultView()
    {
        var viewed = Views.SelectMany(v => v.Element("ViewSelectedBy")!.Elements("TypeName")).Select(t => t.Value).ToHashSet();
        // XenLab's own types; a System.Boolean (Test-XenPaging) is shown by PowerShell as it is.
        var outputs = BuiltModule.Commands.SelectMany(c => c.OutputTypes).Distinct().Where(o => o.StartsWith("XenLab.")).ToList();
        Assert.True(outputs.Count >= 21, $"only {outputs.Count} output types found");
        var missing = outputs.Where(o => !viewed.Contains(o)).ToList();
        Assert.True(missing.Count == 0, "output types with no view: " + string.Join(", ", missing));
    }

    [Fact]
    public void EveryTableFitsInOneHundredTwentyColumns()
    {
        var tables = Views.Where(v => v.Element("TableControl") is not null).ToList();
        Assert.True(tables.Count >= 21, $"only {tables.Count} table views");
        var problems = new List<string>();
        foreach (var v in tables)
        {
            string name = (string)v.Element("Name")!;
            var headers = v.Descendants("TableColumnHeader").ToList();
            var items = v.Descendants("TableColumnItem").ToList();
            if (headers.Count != items.Count) problems.Add($"{name}: {headers.Count} headers but {items.Count} columns");
            if (headers.Any(h => h.Element("Width") is null)) { problems.Add($"{name}: a column has no width"); continue; }
            int width = headers.Sum(h => (int)h.Element("Width")!) + headers.Count - 1;   // one space between columns
            if (width > ScreenWidth) problems.Add($"{name}: {width} columns wide");
        }
        Assert.True(problems.Count == 0, string.Join("; ", problems));
    }

    [Fact]
    public void AddressAndFrameColumnsAreShownInHex()
    {
        string[] hexColumns = { "Start", "End", "Gfn", "Mfn", "RawEntry", "Address", "VirtualAddress", "EndAddress", "StartGfn", "EndGfn", "FirstGfn", "EntryAddress", "Mounts", "DirtyGfns",
            "Rip", "NextRip", "FaultAddress", "ErrorCode", "Rax", "Rsp", "Cr3" };
        var problems = new List<string>();
        int seen = 0;
        foreach (var v in Views.Where(v => v.Element("TableControl") is not null))
        {
            var labels = v.Descendants("TableColumnHeader").Select(h => (string?)h.Element("Label")).ToList();
            var items = v.Descendants("TableColumnItem").ToList();
            for (int i = 0; i < labels.Count && i < items.Count; i++)
            {
                if (!hexColumns.Contains(labels[i])) continue;
                seen++;
                string? script = (string?)items[i].Element("ScriptBlock");
                if (script is null || !HexFormat.IsMatch(script)) problems.Add($"{v.Element("Name")!.Value}.{labels[i]}");
            }
        }
        Assert.True(seen >= 33, $"only {seen} address columns found");
        Assert.True(problems.Count == 0, "not hex: " + string.Join(", ", problems));
    }

    [Fact]
    public void StepResultsHaveTheirOwnTableUnderTheTypeNameStepXenVcpuGivesThem()
    {
        // Step-XenVcpu writes RunResultViews with the stepped instruction as NoteProperties and
        // inserts a type name whose table shows it; the name in the cmdlet and in the file must agree.
        string typeName = BuiltModule.Inspect((asm, _) =>
            (string)asm.GetType("XenLab.PowerShell.StepXenVcpuCommand", throwOnError: true)!.GetField("StepTypeName")!.GetRawConstantValue()!);
        var view = Views.SingleOrDefault(v => v.Element("ViewSelectedBy")!.Elements("TypeName").Any(t => t.Value == typeName));
        Assert.NotNull(view);
        var shown = view!.Descendants("TableColumnItem").Select(i => ((string?)i.Element("PropertyName") ?? (string?)i.Element("ScriptBlock"))!).ToList();
        Assert.Contains(shown, s => s.Contains("StepAddress"));        // where the stepped instruction was
        Assert.Contains("StepInstruction", shown);                     // and what it was
    }
}
