#Requires -Version 7.4
<#
.SYNOPSIS
    Lab 02: how many revalidations out-of-sync shadows and their snapshots save.
.DESCRIPTION
    Runs the pte-update workload (copy-on-write breaks written through the kernel's own
    mapping of its page tables, with a context switch on every CPU every 16 updates) and the
    pt-churn workload under shadow paging with OOS off, OOS without snapshots and OOS with
    snapshots, and shows the OOS trace events. Run from the repository root after
    `dotnet build XenLab.sln`:  pwsh labs/02-oos-snapshots/lab.ps1
#>
param([int]$Rounds = 400)

$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force

function Count($r, $name) { if ($r.Counters.ContainsKey($name)) { $r.Counters[$name] } else { 0 } }

$rows = foreach ($workload in 'pte-update', 'pt-churn') {
    foreach ($oos in 'Off', 'NoSnapshot', 'Snapshot') {
        $d = New-XenDomain -Path (Join-Path $PSScriptRoot 'lab.yaml')
        Set-XenPagingMode -Domain $d -Mode Shadow -Oos $oos
        $r = Invoke-XenWorkload -Domain $d -Name $workload -Rounds ($workload -eq 'pt-churn' ? [math]::Max(1, $Rounds / 4) : $Rounds)
        [pscustomobject]@{
            Workload     = $workload
            Oos          = $oos
            Emulated     = Count $r 'shadow_emulate_write'
            Unsync       = Count $r 'oos_unsync'
            Resync       = (Count $r 'oos_resync') + (Count $r 'oos_light_resync')
            Compared     = Count $r 'oos_entries_compared'
            Repropagated = Count $r 'oos_entries_repropagated'
            SnapshotUpd  = Count $r 'oos_snapshot_update'
        }
        if ($workload -eq 'pte-update' -and $oos -eq 'Snapshot') {
            Write-Host "`n== OOS events of the snapshot run (last 8)"
            Get-XenTrace -Domain $d -Kind OosUnsync, OosResync, OosEvict -Last 8 |
                Format-Table Sequence, Kind, Vcpu, Gfn, Value, Detail | Out-Host
        }
        $d | Remove-XenDomain -Confirm:$false
    }
}
$rows | Format-Table -AutoSize
foreach ($workload in 'pte-update', 'pt-churn') {
    $rows | Where-Object Workload -eq $workload |
        Export-XenChart -Category Oos -Value Emulated, Resync, Compared, Repropagated, SnapshotUpd -LogScale -YLabel 'count' `
            -Title "$workload under shadow paging: OOS off, without and with snapshots" -Path (Join-Path $PSScriptRoot "revalidations-$workload.png") |
        Format-Table Kind, Width, Height, Path
}
