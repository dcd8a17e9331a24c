// Frame numbers as distinct types (Xen's typesafe mfn_t/gfn_t): a guest frame can
// never be passed where a machine frame is meant without saying so.
using System;
using System.Globalization;

namespace XenLab.Memory;

/// <summary>Page geometry shared by every mode: 4 KiB pages.</summary>
public static class Page
{
    public const int Shift = 12;
    public const int Size = 1 << Shift;
    public const ulong OffsetMask = Size - 1;

    public static ulong FrameOf(ulong address) => address >> Shift;
    public static ulong AddressOf(ulong frame) => frame << Shift;
    public static bool IsAligned(ulong address) => (address & OffsetMask) == 0;
}

/// <summary>A machine (host) frame number.</summary>
public readonly record struct Mfn(ulong Value) : IComparable<Mfn>
{
    public static readonly Mfn Invalid = new(ulong.MaxValue);
    public bool IsValid => Value != ulong.MaxValue;
    public ulong Address => Value << Page.Shift;
    public int CompareTo(Mfn other) => Value.CompareTo(other.Value);
    public override string ToString() => IsValid ? "mfn 0x" + Value.ToString("x", CultureInfo.InvariantCulture) : "mfn INVALID";
}

/// <summary>A guest (pseudo-)physical frame number; pfn and gfn are the same thing here.</summary>
public readonly record struct Gfn(ulong Value) : IComparable<Gfn>
{
    public ulong Address => Value << Page.Shift;
    public static Gfn FromAddress(ulong address) => new(address >> Page.Shift);
    public int CompareTo(Gfn other) => Value.CompareTo(other.Value);
    public override string ToString() => "gfn 0x" + Value.ToString("x", CultureInfo.InvariantCulture);
}
