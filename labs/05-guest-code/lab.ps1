#Requires -Version 7.4
<#
.SYNOPSIS
    Lab 05: guest code draws on two monitors while the lab pulls dirty rectangles each frame.
.DESCRIPTION
    Part 1 assembles draw.asm (NASM-style Intel syntax, assembled in-process with Iced), runs
    it one frame at a time (the guest yields with vmcall, RAX = 0) and, between frames, asks
    Get-DirtyVram for the merged dirty rectangles, as a VNC/SPICE server would. Part 2 runs the
    built-in workload of lab.yaml (fill, cursor, scroll, blit, page-table churn) and writes
    PNGs of each frame with the dirty regions outlined. Part 3 runs pixels.asm, which draws a
    band pixel by pixel, translated to IL and then interpreted (-Translate:$false), with the
    dirty rectangles of each frame and the frame rate of both. Run from the repository root
    after `dotnet build XenLab.sln`:  pwsh labs/05-guest-code/lab.ps1
#>
param([int]$Frames = 5, [int]$PixelFrames = 20)
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force

$d = New-XenDomain -Path (Join-Path $PSScriptRoot 'lab.yaml')
Mount-XenFramebuffer -Domain $d -Framebuffer left  -VirtualAddress 0x40000000
Mount-XenFramebuffer -Domain $d -Framebuffer right -VirtualAddress 0x48000000
$null = Get-DirtyVram -Domain $d                              # start tracking both monitors

Write-Host "== 1. draw.asm, frame by frame"
$asm = Get-Content -Raw (Join-Path $PSScriptRoot 'draw.asm')
$run = Invoke-XenGuestCode -Domain $d -Assembly $asm -Confirm:$false
for ($f = 0; $f -lt $Frames; $f++) {
    if ($f -gt 0) { $run = Invoke-XenGuestCode -Domain $d -Resume -Confirm:$false }
    "frame {0}: {1} after {2} instruction(s)" -f $f, $run.Reason, $run.Instructions
    Get-DirtyVram -Domain $d -AsRectangle | Format-Table Framebuffer, X, Y, Width, Height | Out-Host
}
Get-XenVcpu -Domain $d | Format-List | Out-Host
$d | Remove-XenDomain -Confirm:$false

Write-Host "== 2. The built-in workload of lab.yaml, with PNGs"
$out = Join-Path ([System.IO.Path]::GetTempPath()) 'xenlab-lab05'
$null = New-Item -ItemType Directory -Force -Path $out
$w = New-XenDomain -Path (Join-Path $PSScriptRoot 'lab.yaml')
Invoke-XenGuestCode -Domain $w -Workload -Frames 4 -PngDirectory $out -Confirm:$false | Format-Table | Out-Host
Get-XenPerfCounter -Domain $w -Name cpu_*, shadow_fault_fixed, vram_* -NonZero | Format-Table Name, Value | Out-Host
# One more frame, then each monitor with what that frame dirtied outlined, into the lab folder.
$null = Invoke-XenGuestCode -Domain $w -Resume -Confirm:$false
Get-XenFramebuffer -Domain $w | ForEach-Object {
    Export-XenFramebuffer -Domain $w -Framebuffer $_.Name -Path (Join-Path $PSScriptRoot "frame-$($_.Name).png") -HighlightDirty
} | Format-Table | Out-Host
"PNGs in $out"
$w | Remove-XenDomain -Confirm:$false

Write-Host "== 3. pixels.asm: pixel by pixel, translated and interpreted"
$pixels = Get-Content -Raw (Join-Path $PSScriptRoot 'pixels.asm')
foreach ($translate in $true, $false) {
    $p = New-XenDomain -Path (Join-Path $PSScriptRoot 'lab.yaml')
    Mount-XenFramebuffer -Domain $p -Framebuffer left -VirtualAddress 0x40000000
    $null = Get-DirtyVram -Domain $p
    $sw = [System.Diagnostics.Stopwatch]::new()           # guest time: the runs, not the queries
    $instructions = 0
    for ($f = 0; $f -lt $PixelFrames; $f++) {
        $sw.Start()
        $run = if ($f -eq 0) { Invoke-XenGuestCode -Domain $p -Assembly $pixels -Translate:$translate -Confirm:$false }
               else { Invoke-XenGuestCode -Domain $p -Resume -Confirm:$false }
        $sw.Stop()
        $instructions += $run.Instructions
        $rects = Get-DirtyVram -Domain $p -AsRectangle | Where-Object Framebuffer -eq 'left'
        if ($f -lt 4) { 'frame {0}: {1}' -f $f, (($rects | ForEach-Object { '{0}x{1}+{2}+{3}' -f $_.Width, $_.Height, $_.X, $_.Y }) -join ' ') }
    }
    '{0}: {1} frames of 262,144 pixels in {2:N0} ms: {3:N1} frames/s, {4:N0} M instructions/s' -f
        ($translate ? 'translated' : 'interpreted'), $PixelFrames, $sw.ElapsedMilliseconds,
        ($PixelFrames / $sw.Elapsed.TotalSeconds), ($instructions / $sw.Elapsed.TotalSeconds / 1e6)
    Get-XenPerfCounter -Domain $p -Name cpu_block_*, cpu_instructions_retired | Format-Table Name, Value | Out-Host
    $p | Remove-XenDomain -Confirm:$false
}
