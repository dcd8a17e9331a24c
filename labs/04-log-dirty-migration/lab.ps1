#Requires -Version 7.4
<#
.SYNOPSIS
    Lab 04: pre-copy live migration over log-dirty: pages sent per round until the dirty set converges.
.DESCRIPTION
    Part 1 runs the pre-copy loop by hand with the cmdlets: enable log-dirty, "send" every page,
    let the guest write, read-and-clean the log, send what it says, again. Part 2 runs the
    built-in pre-copy at several dirty rates and in each paging mode, to show when migration
    converges and when it cannot. Run from the repository root after `dotnet build XenLab.sln`:
        pwsh labs/04-log-dirty-migration/lab.ps1
#>
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force

$d = New-XenDomain -Path (Join-Path $PSScriptRoot 'lab.yaml')
Add-XenGuestMapping -Domain $d -VirtualAddress 0x30000000 -Gfn 0x4000 -Count 256

Write-Host "`n== 1. Pre-copy by hand"
Enable-XenLogDirty -Domain $d
$null = Get-XenDirtyLog -Domain $d                       # start from a clean log
$toSend = $d.PopulatedPages
$round = 1
while ($true) {
    # While $toSend pages are on the wire the guest writes a little (here: one write per 200 pages sent).
    $writes = [math]::Ceiling($toSend / 200)
    $rng = [System.Random]::new($round)
    for ($i = 0; $i -lt $writes; $i++) {
        $page = $rng.Next(64)                             # a hot working set of 64 pages
        Write-XenGuestMemory -Domain $d -Virtual -Address (0x30000000 + $page * 4096) -Value ([byte[]](1..8)) -Confirm:$false
    }
    $log = Get-XenDirtyLog -Domain $d                     # read AND clean: the next round's pages
    "round {0}: sent {1,6}, guest wrote {2,4} times, {3,4} dirty now" -f $round, $toSend, $writes, $log.DirtyPages
    $toSend = $log.DirtyPages
    if ($toSend -le 16 -or $round -ge 10) { break }
    $round++
}
"stop-and-copy: $toSend page(s)"
Disable-XenLogDirty -Domain $d

Write-Host "`n== 2. The built-in pre-copy at several dirty rates (guest writes per page sent), per paging mode"
$progress = [XenLab.Progress.SynchronousProgress]::new({
    param($p)
    Write-Progress -Activity $p.Activity -Status $p.Status -PercentComplete $p.PercentComplete -Completed:$p.Completed
})
$migrations = [System.Collections.Generic.List[object]]::new()
$rows = foreach ($mode in 'Hap', 'Shadow', 'Arm') {
    foreach ($ratio in 0.02, 0.5, 1.5) {
        $m = New-XenDomain -Name ("mig-{0}-{1}" -f $mode, ($ratio -replace '\.', '_')) -MemoryMB 256 -Vcpus 2
        Set-XenPagingMode -Domain $m -Mode $mode
        # A .NET call into the emulator's migration loop (the same log-dirty cmdlets underneath).
        # It reports to Write-Progress; Ctrl+C stops it at a report, between two guest writes,
        # with log-dirty put back as it was.
        $r = [XenLab.Lab.LiveMigration]::PreCopy($m, $ratio, 4096, 30, 64, 1, $progress, [System.Threading.CancellationToken]::None)
        if ($mode -eq 'Hap') { $migrations.Add($r) }
        [pscustomobject]@{
            Mode = $mode; DirtyRatio = $ratio; Rounds = $r.Rounds.Count; PagesSent = $r.PagesSent
            StopAndCopy = $r.StopAndCopyPages; Converged = $r.Converged
        }
        $m | Remove-XenDomain -Confirm:$false
    }
}
$rows | Format-Table -AutoSize

Write-Host "== 2b. What each log-dirty mechanism pays for the same migration (0.5 writes per page sent)"
# Same rounds and pages everywhere; the hypervisor's work differs: HAP with PML (EPT D bits, a
# 512-entry log per vCPU, one exit when it fills), HAP with write protection (one EPT violation
# per first write), shadow (every clean blows the tables; the first write since a clean is a
# shadow fault that marks the page), ARM (stage-2 permission faults).
$counterNames = 'ept_violation_logdirty', 'pml_logged', 'pml_full_exit', 'ept_misconfig', 'ept_split',
    'shadow_logdirty_blow', 'shadow_alloc', 'shadow_logdirty_demand_write', 'stage2_abort_permission'
$mechanisms = @(
    @{ Name = 'HAP pml'; Mode = 'Hap'; Options = @{ HapLogDirty = 'Pml' } }
    @{ Name = 'HAP wp'; Mode = 'Hap'; Options = @{ HapLogDirty = 'Wp' } }
    @{ Name = 'shadow'; Mode = 'Shadow'; Options = @{} }
    @{ Name = 'ARM'; Mode = 'Arm'; Options = @{} }
)
$costs = foreach ($mech in $mechanisms) {
    $m = New-XenDomain -Name 'mig-costs' -MemoryMB 256 -Vcpus 2
    $opts = $mech.Options
    Set-XenPagingMode -Domain $m -Mode $mech.Mode @opts
    $before = @{}; Get-XenPerfCounter -Domain $m -Name $counterNames | ForEach-Object { $before[$_.Name] = $_.Value }
    $r = [XenLab.Lab.LiveMigration]::PreCopy($m, 0.5, 4096, 30, 64, 1, $progress, [System.Threading.CancellationToken]::None)
    $c = @{}; Get-XenPerfCounter -Domain $m -Name $counterNames | ForEach-Object { $c[$_.Name] = $_.Value - $before[$_.Name] }
    # Faults/exits that log a page: EPT violations (HAP wp), PML-full exits, shadow demand writes,
    # stage-2 permission faults; misconfigurations are the lazy type changes' exits.
    [pscustomobject]@{
        Mechanism = $mech.Name; Pages = $r.PagesSent
        LogExits = $c['ept_violation_logdirty'] + $c['pml_full_exit'] + $c['shadow_logdirty_demand_write'] + $c['stage2_abort_permission']
        PmlFull = $c['pml_full_exit']; PmlLogged = $c['pml_logged']; Misconfig = $c['ept_misconfig']; Splits = $c['ept_split']
        Blows = $c['shadow_logdirty_blow']; Rebuilt = $c['shadow_alloc']
    }
    $m | Remove-XenDomain -Confirm:$false
}
$costs | Format-Table -AutoSize

Write-Host "== 3. Pictures: pages sent per round (precopy-rounds.png), the dirty map per round (dirty-rounds.png, dirty-rounds-busy.png)"
$migrations | Export-XenChart -Title 'Pre-copy under HAP: pages sent per round at three dirty rates' -Path (Join-Path $PSScriptRoot 'precopy-rounds.png') |
    Format-Table Kind, Width, Height, Path
$migrations[0] | Export-XenPicture -Kind DirtyMap -Path (Join-Path $PSScriptRoot 'dirty-rounds.png') | Format-Table Kind, Width, Height, Path
$migrations[2] | Export-XenPicture -Kind DirtyMap -Path (Join-Path $PSScriptRoot 'dirty-rounds-busy.png') | Format-Table Kind, Width, Height, Path
$d | Remove-XenDomain -Confirm:$false
