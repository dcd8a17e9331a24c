#Requires -Version 7.4
<#
.SYNOPSIS
    Lab 06: walk or VLPT? Seed 002's open question settled by measurement.
.DESCRIPTION
    Part 1 shows one ARM domain with the VLPT lookup: no window slice until tracing starts,
    2 MiB stage-2 blocks that tracing write-protects whole and splits on the first write, and
    the lookup counters. Part 2 sweeps faults per context switch and domain count with
    Measure-XenVlpt (half the domains traced, switches alternating traced and untraced) and
    prints the cycles per fault of each strategy, with the cheapest marked; -ChartPath also
    draws domain count 8 as a chart when the module has Export-XenChart. Run from the
    repository root after `dotnet build XenLab.sln`:
        pwsh labs/06-arm-vlpt/lab.ps1 [-ChartPath labs/06-arm-vlpt/chart.png]
#>
param([string]$ChartPath)
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force

Write-Host "`n== 1. One domain: the slice is taken when tracing starts"
$d = New-XenDomain -Path (Join-Path $PSScriptRoot 'lab.yaml')
Add-XenGuestMapping -Domain $d -VirtualAddress 0x40000000 -Gfn 0x8000 -Count 16
"slice before tracing: $($null -eq $d.Mode.VlptSlice ? 'none' : $d.Mode.VlptSlice)"
"stage-2 blocks: $($d.Mode.Stage2.CountBlocks())"
Enable-XenLogDirty -Domain $d
"slice while tracing: $($d.Mode.VlptSlice)"
foreach ($p in 0, 1, 2) { Write-XenGuestMemory -Domain $d -Virtual -Address (0x40000000 + $p * 4096) -Value 1 -Confirm:$false }
Get-XenPerfCounter -Domain $d -Name stage2_block*, vlpt_lookup, vlpt_superpage_lookup, vlpt_mem_ref, stage2_abort_permission |
    Format-Table Name, Value, Description -AutoSize
Disable-XenLogDirty -Domain $d
"slice after tracing: $($null -eq $d.Mode.VlptSlice ? 'none (returned)' : $d.Mode.VlptSlice)"
$d | Remove-XenDomain -Confirm:$false

Write-Host "`n== 2. Cycles per fault: walk or VLPT, by faults per context switch and domain count"
$arm64Walk = @{ MapDomainPage = 0 }                      # a 64-bit hypervisor's direct map (the thread)
$rows = foreach ($domains in 2, 8, 32) {
    foreach ($faults in 1, 4, 16, 64, 256) {
        $common = @{ Domains = $domains; FaultsPerSwitch = $faults; Switches = 64 }
        $r = [ordered]@{
            Domains       = $domains
            FaultsPerSwitch = $faults
            'walk'        = (Measure-XenVlpt Walk @common).CyclesPerFault
            'walk arm64'  = (Measure-XenVlpt Walk @common -Cost $arm64Walk).CyclesPerFault
            'vlpt slices' = (Measure-XenVlpt Vlpt @common).CyclesPerFault
            'shared by-VA' = (Measure-XenVlpt Vlpt @common -Layout SharedSlots -Invalidation ByAddress).CyclesPerFault
            'shared flush' = (Measure-XenVlpt Vlpt @common -Layout SharedSlots -Invalidation FullFlush).CyclesPerFault
        }
        # The cheapest, with map_domain_page at 40 cycles (arm32's domheap) and at 0 (arm64's direct map).
        $vlptBest = [math]::Min($r.'vlpt slices', [math]::Min($r.'shared by-VA', $r.'shared flush'))
        $r.'best, map 40' = ('vlpt slices', 'shared by-VA', 'shared flush', 'walk' | Sort-Object { $r[$_] } | Select-Object -First 1)
        $r.'best, map 0' = ('vlpt slices', 'shared by-VA', 'shared flush', 'walk arm64' | Sort-Object { $r[$_] } | Select-Object -First 1)
        $r.'walk / VLPT' = '{0:N1}' -f ($r.'walk' / $vlptBest)
        $r.'arm64 walk / VLPT' = '{0:N2}' -f ($r.'walk arm64' / $vlptBest)
        [pscustomobject]$r
    }
}
$cycles = { param($name) @{ n = $name; e = [scriptblock]::Create("'{0:N0}' -f `$_.'$name'"); a = 'right' } }
$rows | Format-Table Domains, @{ n = 'F'; e = { $_.FaultsPerSwitch } }, (& $cycles 'walk'), (& $cycles 'walk arm64'),
    (& $cycles 'vlpt slices'), (& $cycles 'shared by-VA'), (& $cycles 'shared flush'), 'best, map 40', 'best, map 0',
    'walk / VLPT', 'arm64 walk / VLPT' -AutoSize | Out-String -Width 200

if ($ChartPath) {
    if (Get-Command Export-XenChart -ErrorAction SilentlyContinue) {
        $rows | Where-Object Domains -eq 8 |
            Select-Object @{ n = 'Faults'; e = { "$($_.FaultsPerSwitch) per switch" } }, 'walk', 'walk arm64', 'vlpt slices', 'shared by-VA', 'shared flush' |
            Export-XenChart -Category Faults -Value 'walk', 'walk arm64', 'vlpt slices', 'shared by-VA', 'shared flush' -LogScale `
                -YLabel 'cycles per fault' -Title 'Walk or VLPT: 8 ARM domains, 4 traced' -Path $ChartPath
    }
    else { Write-Warning 'This build of the module has no Export-XenChart: the table above is the result.' }
}
