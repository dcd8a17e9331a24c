using XenLab.Config;
using XenLab.Domains;
using XenLab.P2m;

namespace XenLab.Tests;

internal static class TestDomains
{
    public static DomainConfig Config(string name = "t", ulong memoryMiB = 64, ulong? maxMemMiB = null, int vcpus = 1,
        IdentityStrategy strategy = IdentityStrategy.EdgesFirst) =>
        new() { Name = name, MemoryMiB = memoryMiB, MaxMemMiB = maxMemMiB, Vcpus = vcpus, IdentityStrategy = strategy };

    public static (XenHost Host, Domain Domain) Create(ulong memoryMiB = 64, ulong? maxMemMiB = null, int vcpus = 1,
        IdentityStrategy strategy = IdentityStrategy.EdgesFirst, ulong hostBytes = 8UL << 30)
    {
        var host = new XenHost(hostBytes);
        var d = host.CreateDomain(Config("t", memoryMiB, maxMemMiB, vcpus, strategy));
        return (host, d);
    }
}
