# XenLab: a lab for how a hypervisor (Xen) manages guest memory.
# Build first (dotnet build XenLab.sln), then: Import-Module ./XenLab.psd1
#
# The assembly is a nested module, not the RootModule, on purpose: PowerShell looks for a
# RootModule's cmdlet help only under this manifest's folder, but for a nested module's it
# also looks in the assembly's own folder, where the build puts en-US/XenLab.PowerShell.dll-Help.xml.
#
# module/XenLab.Help.psd1 exports nothing: it is loaded so that module/ is the base of a loaded
# module. Get-Help looks for about_ topics only in <base>/<culture> of loaded modules (and in
# $PSHOME and the PSModulePath folders), so that is how it finds module/en-US/about_XenLab.help.txt.
@{
    NestedModules        = @('module/bin/XenLab.PowerShell.dll', 'module/XenLab.Help.psd1')
    ModuleVersion        = '0.1.0'
    GUID                 = '458b9a0f-1283-4c21-a428-0d852155949f'
    Author               = 'XenLab contributors'
    CompanyName          = 'XenLab'
    Copyright            = '(c) XenLab contributors'
    Description          = 'An emulator lab for how Xen manages guest memory: domains, E820, the p2m tree and its identity holes, ballooning, guest page tables, paging modes (shadow, HAP/EPT, ARM stage 2) with traces and audits, framebuffers with log-dirty and dirty-VRAM tracking, memory workloads, guest x86-64 code on an emulated vCPU, and performance counters.'
    PowerShellVersion    = '7.4'
    CompatiblePSEditions = @('Core')
    TypesToProcess       = @('module/XenLab.types.ps1xml')
    FormatsToProcess     = @('module/XenLab.format.ps1xml')
    CmdletsToExport      = @(
        'New-XenDomain'
        'Export-XenDomain'
        'Get-XenDomain'
        'Set-XenDomain'
        'Remove-XenDomain'
        'Get-XenE820'
        'Set-XenIdentityHole'
        'Get-XenP2m'
        'Read-XenGuestMemory'
        'Write-XenGuestMemory'
        'Get-XenPerfCounter'
        'Add-XenGuestMapping'
        'Get-XenGuestMapping'
        'Remove-XenGuestMapping'
        'Set-XenPagingMode'
        'Get-XenTranslation'
        'Get-XenTrace'
        'Test-XenPaging'
        'Test-XenDirtyTracking'
        'Add-XenFramebuffer'
        'Get-XenFramebuffer'
        'Remove-XenFramebuffer'
        'Mount-XenFramebuffer'
        'Export-XenFramebuffer'
        'Export-XenPicture'
        'Export-XenChart'
        'Enable-XenLogDirty'
        'Disable-XenLogDirty'
        'Get-XenDirtyLog'
        'Get-DirtyVram'
        'Set-XenVramTracking'
        'Invoke-XenWorkload'
        'Invoke-XenGuestCode'
        'Get-XenVcpu'
        'Step-XenVcpu'
        'Step-XenDomainClock'
        'Measure-XenVlpt'
    )
    FunctionsToExport    = @()
    AliasesToExport      = @()
    VariablesToExport    = @()
    PrivateData          = @{
        PSData = @{
            Tags         = @('Xen', 'Hypervisor', 'Emulator', 'Memory', 'Teaching')
            ProjectUri   = 'https://github.com/xenlab/xenlab'
            LicenseUri   = 'https://github.com/xenlab/xenlab/blob/main/LICENSE'
            ReleaseNotes = '0.1.0: the first package. Domains from YAML; shadow, HAP and ARM stage-2 paging; dirty VRAM for several framebuffers; log-dirty; the seed-004 p2m tree; guest x86-64 code. Pester suites run in CI.'
        }
    }
}
