#Requires -Version 7.4
<#
.SYNOPSIS
    Lab 00: the p2m tree, identity holes, and the "nasty condition" of seed 004.
.DESCRIPTION
    Builds the same domain twice, once with the coarse identity switch of the posted patch and
    once with edges-first (what Linux 2.6.39 merged), shows where each lookup is answered from,
    and balloons both up. Then builds it as a PV guest (builder: pv, 2.6.39's setup and balloon)
    and as an HVM guest (type: hvm: holes are mmio_dm, accesses exit to the device model).
    Run from the repository root after `dotnet build XenLab.sln`:
        pwsh labs/00-p2m-identity/lab.ps1
#>
param([switch]$KeepDomains)

$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force

$coarse = New-XenDomain -Path (Join-Path $PSScriptRoot 'coarse.yaml')
$edges  = New-XenDomain -Path (Join-Path $PSScriptRoot 'edges-first.yaml')

Write-Host "`n== 1. The E820 both domains get (RAM to 2364 MiB, then not RAM up to 4 GiB)"
$coarse | Get-XenE820 | Format-Table

Write-Host "== 2. Where lookups are answered from. The hole starts at gfn 0x93c00 (2364 MiB)."
$probe = 0x0, 0x9f, 0x40000, 0x80000, 0x93bff, 0x93c00, 0xc0000
foreach ($d in $coarse, $edges) {
    Write-Host "-- $($d.Name)"
    $probe | Get-XenP2m -Domain $d | Format-Table Gfn, Kind, RawEntry, Source, TopIndex, MidIndex, Index
}

Write-Host "== 3. What the tree costs: pages allocated vs the four shared pages"
$coarse, $edges | ForEach-Object { Get-XenP2m -Domain $_ -Tree } | Format-List

Write-Host "== Pictures of both trees: p2m-coarse.png, p2m-edges-first.png (each shared page drawn once)"
foreach ($d in $coarse, $edges) {
    Export-XenPicture -Domain $d -Kind P2mTree -Path (Join-Path $PSScriptRoot "p2m-$($d.Name).png") | Format-Table Kind, Width, Height, Path
}

Write-Host "== 4. Balloon both up to 2048 MiB: the guest's driver checks phys_to_machine_mapping_valid(pfn)"
foreach ($d in $coarse, $edges) {
    Set-XenDomain -Domain $d -MemoryMB 2048 -ErrorAction SilentlyContinue -ErrorVariable refused
    if ($refused) { Write-Host "-- $($d.Name): refused: $($refused[0].Exception.Message)" }
    else { Write-Host "-- $($d.Name): now $($d.MemoryMiB) MiB" }
}

Write-Host "`n== 5. Counters"
$coarse, $edges | ForEach-Object { Get-XenPerfCounter -Domain $_ -NonZero } | Format-Table DomainName, Name, Value

Write-Host "== 6. The same machine as a PV guest (builder: pv), still with the coarse switch"
$pv = New-XenDomain -Path (Join-Path $PSScriptRoot 'pv.yaml')
Write-Host "   populated $($pv.PopulatedPages) pages from pfn 0; balloon ceiling $($pv.MaxPages) pages"
0x9f, 0x3ffff, 0x40000, 0x80000, 0x100000, 0x153bff | Get-XenP2m -Domain $pv | Format-Table Gfn, Kind, Source, Type
Set-XenDomain -Domain $pv -MemoryMB 2048
Write-Host "-- $($pv.Name): now $($pv.MemoryMiB) MiB; the balloon filled pfns from 0x153bff down, above 4 GiB:"
0x153bff, 0x100000, 0x80000 | Get-XenP2m -Domain $pv | Format-Table Gfn, Kind, Source

Write-Host "== 7. Two layers: type pv (mmio_direct) and type hvm (mmio_dm, device-model exits)"
$hvm = New-XenDomain -Path (Join-Path $PSScriptRoot 'hvm.yaml')
foreach ($d in $edges, $hvm) {
    $bytes = Read-XenGuestMemory -Domain $d -Physical -Address 0xC0000000 -Length 8
    Write-XenGuestMemory -Domain $d -Physical -Address 0xC0000000 -Value 1, 2, 3 -WarningAction SilentlyContinue
    $type = (Get-XenP2m -Domain $d -Gfn 0xC0000).Type
    $exits = (Get-XenPerfCounter -Domain $d -Name dm_exit).Value
    Write-Host ("-- {0}: gfn 0xC0000 is {1}; read {2}; dm_exit = {3}" -f $d.Name, $type, (($bytes.Bytes | ForEach-Object { '{0:x2}' -f $_ }) -join ''), $exits)
}

if (-not $KeepDomains) { $coarse, $edges, $pv, $hvm | Remove-XenDomain -Confirm:$false }
