#Requires -Version 7.4
<#
.SYNOPSIS
    Lab 01: walk costs and faults of shadow paging against HAP on a page-table-heavy workload.
.DESCRIPTION
    Builds one domain, shows what one translation costs in each mode (Get-XenTranslation),
    then runs the pt-churn workload (map 64 pages, write and read each, unmap; repeated) once
    per mode and prints the counters that tell the two designs apart. Run from the repository
    root after `dotnet build XenLab.sln`:  pwsh labs/01-shadow-vs-hap/lab.ps1
#>
param([int]$Rounds = 100)

$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force

$d = New-XenDomain -Path (Join-Path $PSScriptRoot 'lab.yaml')
Add-XenGuestMapping -Domain $d -VirtualAddress 0x400000 -Gfn 0x4000 -Count 16

Write-Host "`n== 1. One cold translation under HAP: guest entries, each reached through the EPT"
Set-XenPagingMode -Domain $d -Mode Hap -HapGpaCache 0
$t = Get-XenTranslation -Domain $d -VirtualAddress 0x400000
"{0} memory references ((4+1)x(4+1)-1 = 24 of a 2D walk, less 1: gfn 0x4000 is in a 2 MiB EPT leaf, 3 reads)" -f $t.MemoryReferences
Get-XenTranslation -Domain $d -VirtualAddress 0x400000 -Step | Format-Table Step, Table, Name, Index, RawEntry, Decoded
Export-XenPicture -Domain $d -Kind Walk -VirtualAddress 0x400000 -Path (Join-Path $PSScriptRoot 'walk-hap.png') | Format-Table Kind, Width, Height, Path

Write-Host "== 1b. The data page under a 1 GiB, a 2 MiB and a 4 KiB EPT leaf (a 2 GiB guest, hap_superpages on / 2m / off)"
# The guest's tables sit in region 0 (4 KiB EPT leaves in every case: 4 EPT reads per table);
# the data page (gfn 0x40010, in GiB 1) costs its own nested walk: 2, 3 or 4 EPT reads.
$yaml = Get-Content (Join-Path $PSScriptRoot 'gigapage.yaml') -Raw
$leaves = foreach ($sp in 'on', '2m', 'off') {
    $file = Join-Path ([System.IO.Path]::GetTempPath()) "xenlab-lab01-$sp-$PID.yaml"
    $yaml -replace 'hap_superpages: on', "hap_superpages: $sp" -replace 'name: gigapage', "name: gigapage-$sp" | Set-Content -Path $file
    try { $g = New-XenDomain -Path $file } finally { Remove-Item $file }
    Add-XenGuestMapping -Domain $g -VirtualAddress 0x400000 -Gfn 0x40010 -Count 1
    $steps = @(Get-XenTranslation -Domain $g -VirtualAddress 0x400000 -Step)
    $lastGuest = [array]::FindLastIndex([object[]]$steps, [Predicate[object]] { param($s) $s.Table -ne 'ept' })
    $dataWalk = $steps[($lastGuest + 1)..($steps.Count - 1)]
    [pscustomobject]@{
        hap_superpages = $sp
        DataLeaf       = ($dataWalk[-1].Decoded -split ' ')[1] -replace '^(R|-).*', '4K'
        DataEptReads   = $dataWalk.Count
        References     = (Get-XenTranslation -Domain $g -VirtualAddress 0x400000).MemoryReferences
        EptPages       = $g.PagingFrames
    }
    if ($sp -eq 'on') {
        $dataWalk | Format-Table Step, Table, Name, Index, RawEntry, Decoded | Out-Host
        Export-XenPicture -Domain $g -Kind Walk -VirtualAddress 0x400000 -Path (Join-Path $PSScriptRoot 'walk-hap-1g.png') | Format-Table Kind, Width, Height, Path | Out-Host
    }
    $g | Remove-XenDomain -Confirm:$false
}
$leaves | Format-Table -AutoSize

Write-Host "== 2. The same address under shadow paging, after one access built the shadows"
Set-XenPagingMode -Domain $d -Mode Shadow -Oos Off
$null = Read-XenGuestMemory -Domain $d -Virtual -Address 0x400000 -Length 1
Get-XenTranslation -Domain $d -VirtualAddress 0x400000 -Step | Where-Object Table -eq 'shadow' | Format-Table Step, Table, Name, RawEntry, Decoded
Export-XenPicture -Domain $d -Kind Walk -VirtualAddress 0x400000 -Path (Join-Path $PSScriptRoot 'walk-shadow.png') | Format-Table Kind, Width, Height, Path

Write-Host "== 2b. ARM's two stages: stage 1 through a 3-level stage 2, and HAP once its nested-walk cache is warm"
Set-XenPagingMode -Domain $d -Mode Arm
Export-XenPicture -Domain $d -Kind Walk -VirtualAddress 0x400000 -Path (Join-Path $PSScriptRoot 'walk-arm.png') | Format-Table Kind, Width, Height, Path
Set-XenPagingMode -Domain $d -Mode Hap -HapGpaCache 32
$null = Read-XenGuestMemory -Domain $d -Virtual -Address 0x400000 -Length 1
Export-XenPicture -Domain $d -Kind Walk -VirtualAddress 0x401000 -Path (Join-Path $PSScriptRoot 'walk-hap-cached.png') | Format-Table Kind, Width, Height, Path

Write-Host "== 3. pt-churn, $Rounds rounds, in each mode (counters are differences over the run)"
function Count($r, $name) { if ($r.Counters.ContainsKey($name)) { $r.Counters[$name] } else { 0 } }
$modes = @(
    @{ Mode = 'Hap';    HapGpaCache = 32 }
    @{ Mode = 'Hap';    HapGpaCache = 0 }
    @{ Mode = 'Shadow'; Oos = 'Off' }
    @{ Mode = 'Shadow'; Oos = 'Snapshot' }
)
$rows = foreach ($m in $modes) {
    Set-XenPagingMode -Domain $d @m
    $r = Invoke-XenWorkload -Domain $d -Name pt-churn -Rounds $Rounds
    [pscustomobject]@{
        Mode          = "$($r.Mode) ($($r.Options))"
        Label         = $m.Mode -eq 'Hap' ? "HAP, nested cache $($m.HapGpaCache)" : "shadow, OOS $($m.Oos)"
        TlbMisses     = Count $r 'tlb_miss'
        WalkRefs      = (Count $r 'hap_walk_mem_ref') + (Count $r 'shadow_walk_mem_ref')
        ShadowFaults  = Count $r 'shadow_fault_fixed'
        Emulated      = Count $r 'shadow_emulate_write'
        GuestFaults   = Count $r 'guest_page_fault'
    }
}
$rows | Select-Object -Property * -ExcludeProperty Label | Format-Table -AutoSize
$rows | Export-XenChart -Category Label -Value WalkRefs, TlbMisses, ShadowFaults, Emulated -LogScale -Width 1000 `
    -Title "pt-churn, $Rounds rounds: walk references and exits per mode" -YLabel 'count' -Path (Join-Path $PSScriptRoot 'walk-refs.png') |
    Format-Table Kind, Width, Height, Path

Write-Host "== 4. The audit agrees with every mode's structures"
Test-XenPaging -Domain $d -Detailed | Format-List DomainName, Mode, IsClean, ProblemCount

$d | Remove-XenDomain -Confirm:$false
