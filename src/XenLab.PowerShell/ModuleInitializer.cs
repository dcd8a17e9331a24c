// Lets the pictures' native libraries (SkiaSharp, HarfBuzzSharp) load inside pwsh. An app finds
// runtimes/<rid>/native/ through its deps.json; a module loaded by pwsh has none in force, so
// the loader would look only beside pwsh. This resolver looks in the module's own runtimes folder.
using System;
using System.IO;
using System.Management.Automation;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;

namespace XenLab.PowerShell;

public sealed class ModuleInitializer : IModuleAssemblyInitializer
{
    private static int _registered;

    public void OnImport()
    {
        if (System.Threading.Interlocked.Exchange(ref _registered, 1) != 0) return;
        AssemblyLoadContext.Default.ResolvingUnmanagedDll += Resolve;
    }

    /// <summary>runtimes/&lt;rid&gt;/native/&lt;library&gt; under the module's bin folder, for this OS and CPU.</summary>
    internal static string? NativePath(string moduleBin, string libraryName)
    {
        string arch = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => "x64",
            Architecture.Arm64 => "arm64",
            _ => "",
        };
        if (arch.Length == 0) return null;
        string rid, file;
        if (OperatingSystem.IsLinux()) { rid = "linux-" + arch; file = libraryName + ".so"; }
        else if (OperatingSystem.IsMacOS()) { rid = "osx"; file = libraryName + ".dylib"; }
        else if (OperatingSystem.IsWindows()) { rid = "win-" + arch; file = libraryName + ".dll"; }
        else return null;
        string path = Path.Combine(moduleBin, "runtimes", rid, "native", file);
        return File.Exists(path) ? path : null;
    }

    private static IntPtr Resolve(Assembly assembly, string libraryName)
    {
        if (!libraryName.StartsWith("lib", StringComparison.Ordinal)) return IntPtr.Zero;
        string? bin = Path.GetDirectoryName(typeof(ModuleInitializer).Assembly.Location);
        string? path = bin is null ? null : NativePath(bin, libraryName);
        return path is not null && NativeLibrary.TryLoad(path, out IntPtr handle) ? handle : IntPtr.Zero;
    }
}
