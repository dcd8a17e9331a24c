# Helpers for the progress and Ctrl+C tests: run a XenLab command in a second PowerShell of this
# process (so it shares the emulated host and its domains), watch its Progress stream, stop it
# as Ctrl+C would (PowerShell.Stop() calls the cmdlet's StopProcessing). Dot-source in BeforeAll.

function Start-XenLabBackground([string] $Script) {
    $module = (Resolve-Path (Join-Path $PSScriptRoot '../../XenLab.psd1')).Path
    $ps = [powershell]::Create()
    $null = $ps.AddScript("Import-Module '$module'`n$Script")
    $output = [System.Management.Automation.PSDataCollection[psobject]]::new()
    $handle = $ps.BeginInvoke([System.Management.Automation.PSDataCollection[psobject]]::new(), $output)
    [pscustomobject]@{ PowerShell = $ps; Output = $output; Handle = $handle }
}

# Waits (at most -TimeoutSeconds) until the command has written -Count progress records.
function Wait-XenLabProgress($Background, [int] $Count, [int] $TimeoutSeconds = 60) {
    $deadline = [DateTime]::UtcNow.AddSeconds($TimeoutSeconds)
    while ($Background.PowerShell.Streams.Progress.Count -lt $Count -and -not $Background.Handle.IsCompleted -and [DateTime]::UtcNow -lt $deadline) {
        Start-Sleep -Milliseconds 20
    }
}

# Stops the command (blocks until it has stopped) and returns how long stopping took.
function Stop-XenLabBackground($Background) {
    $watch = [System.Diagnostics.Stopwatch]::StartNew()
    $Background.PowerShell.Stop()
    $watch.Elapsed
}

# Runs a command to its end in the background and returns its progress records.
function Get-XenLabProgress([string] $Script) {
    $bg = Start-XenLabBackground $Script
    $null = $bg.PowerShell.EndInvoke($bg.Handle)
    $records = @($bg.PowerShell.Streams.Progress)
    $bg.PowerShell.Dispose()
    $records
}
