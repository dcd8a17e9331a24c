// Throws live here, out of the interpreter's hot methods (iced's ThrowHelper pattern).
using System.Diagnostics.CodeAnalysis;

namespace XenLab.Cpu;

/// <summary>The vCPU was asked to run where it cannot: an ARM domain (guest code is x86-64 only, SPEC section 1, ARM).</summary>
public sealed class GuestArchitectureException : XenLabException
{
    public GuestArchitectureException(string message) : base(message) { }
    public override string ErrorId => "GuestCodeIsX86Only";
}

internal static class ThrowHelper
{
    [DoesNotReturn]
    public static void ArmDomain(string domain) =>
        throw new GuestArchitectureException(
            $"Domain '{domain}' uses ARM paging: guest code runs on x86-64 vCPUs only (Iced); drive an ARM domain through the memory-access interface and the built-in workloads, or switch it to hap or shadow first.");

    [DoesNotReturn]
    public static void NoPagingMode(string domain) =>
        throw new InvalidConfigurationException($"Domain '{domain}' has no paging mode attached; it cannot run guest code.");
}
