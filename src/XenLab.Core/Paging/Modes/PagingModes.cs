using XenLab.Config;
using XenLab.Paging.Hap;
using XenLab.Paging.Shadow;

namespace XenLab.Paging.Modes;

/// <summary>Makes the paging mode object for a kind.</summary>
public static class PagingModes
{
    public static IPagingMode Create(PagingModeKind kind, PagingOptions options) => kind switch
    {
        PagingModeKind.Hap => new HapMode(options),
        PagingModeKind.Shadow => new ShadowMode(options),
        PagingModeKind.Arm => new Arm.ArmMode(options),
        _ => throw new InvalidConfigurationException($"Unknown paging mode {kind}."),
    };
}
