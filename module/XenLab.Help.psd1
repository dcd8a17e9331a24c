# Exports nothing. XenLab.psd1 loads it as a nested module so that this folder is the base of a
# loaded module: Get-Help looks for about_ topics in <module base>/<culture>/ of loaded modules,
# and so finds en-US/about_XenLab.help.txt here (the root manifest's own folder has no en-US).
@{
    ModuleVersion     = '0.1.0'
    GUID              = '7d0c3a52-5f0e-4b0e-9d55-3f3a2f1e9b11'
    Description       = 'The about_ help topics of XenLab (module/en-US).'
    CmdletsToExport   = @()
    FunctionsToExport = @()
    AliasesToExport   = @()
    VariablesToExport = @()
}
