#Requires -Version 7.4
<#
.SYNOPSIS
    Lab 00: the p2m tree, identity holes, and the "nasty condition" of seed 004.
.DESCRIPTION
    Builds the same domain twice, once with the coarse identity switch of the posted patch and
    once with the edges-first alternative, shows where each lookup is answered from, and
    balloons both up to maxmem. Run from the repository root after `dotnet build XenLab.sln`:
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

if (-not $KeepDomains) { $coarse, $edges | Remove-XenDomain -Confirm:$false }
