# Runs every Pester suite in this folder against the built module and prints one line
# "Pester: N passed, N failed" for tests/run.sh to add up.
# -PesterPath names the Pester.psd1 to use (tests/run.sh restores Pester 5.9.1 from NuGet into
# .tools/); without it, the newest Pester 5 on PSModulePath is imported.
param(
    [string] $PesterPath,
    [string[]] $Path = @($PSScriptRoot),
    [string] $Verbosity = 'Detailed'
)
$ErrorActionPreference = 'Stop'
if ($PesterPath) {
    Import-Module (Resolve-Path -LiteralPath $PesterPath).Path -Force
} else {
    Import-Module Pester -MinimumVersion 5.0 -MaximumVersion 5.99.99
}
$pester = Get-Module Pester
if ($pester.Version.Major -ne 5) { throw "Pester 5 is required; loaded $($pester.Version) from $($pester.Path)" }
$config = New-PesterConfiguration
$config.Run.Path = $Path
$config.Run.PassThru = $true
$config.Output.Verbosity = $Verbosity
# Plain text in a log (CI), colours on a terminal.
if ([Console]::IsOutputRedirected) { $config.Output.RenderMode = 'Plaintext' }
$result = Invoke-Pester -Configuration $config
if ($result.TotalCount -eq 0) { throw 'Pester discovered no tests' }
"Pester: $($result.PassedCount) passed, $($result.FailedCount + $result.FailedBlocksCount + $result.FailedContainersCount) failed, $($result.SkippedCount) skipped"
