#Requires -Version 7.4
<#
.SYNOPSIS
    Lab 03: dirty VRAM for several monitors: hot-plug, dirty rectangles, PNG.
.DESCRIPTION
    Two monitors are mapped by the guest (the left one twice), written to, and polled with
    Get-DirtyVram as a display server would each frame; a third monitor is hot-plugged and
    unplugged; the frames are exported as PNGs with the dirty regions outlined. Then the same
    is done with each strategy of each paging mode. Run from the repository root after
    `dotnet build XenLab.sln`:  pwsh labs/03-multi-monitor/lab.ps1
#>
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force

$d = New-XenDomain -Path (Join-Path $PSScriptRoot 'lab.yaml')
Mount-XenFramebuffer -Domain $d -Framebuffer left  -VirtualAddress 0x40000000
Mount-XenFramebuffer -Domain $d -Framebuffer left  -VirtualAddress 0x50000000     # a second alias
Mount-XenFramebuffer -Domain $d -Framebuffer right -VirtualAddress 0x60000000
Get-XenFramebuffer -Domain $d | Format-Table

Write-Host "== Frame 0: the first query of each range starts tracking and says 'repaint everything'"
Get-DirtyVram -Domain $d | Format-Table Framebuffer, DirtyPages, Pages, AllDirty, Reason

function Draw-Box($va, $stride, $x, $y, $w, $h, [byte]$shade) {
    $row = [byte[]]::new($w * 4); for ($i = 0; $i -lt $row.Length; $i++) { $row[$i] = $shade }
    for ($r = 0; $r -lt $h; $r++) {
        Write-XenGuestMemory -Domain $d -Virtual -Address ($va + ($y + $r) * $stride + $x * 4) -Value $row -Confirm:$false
    }
}

Write-Host "== Frame 1: a window on the left (through the first alias), a cursor on the right"
Draw-Box 0x40000000 4096 100 200 300 40 0x80
Draw-Box 0x60000000 3200 400 300 16 16 0xFF
Get-DirtyVram -Domain $d -AsRectangle | Format-Table Framebuffer, X, Y, Width, Height

Write-Host "== Frame 2: the guest draws through the second alias of the left monitor"
Draw-Box 0x50000000 4096 0 700 1024 8 0x40
Draw-Box 0x60000000 3200 420 310 16 16 0xFF
# Export first: -HighlightDirty peeks, so the query below still sees the same pages.
Export-XenFramebuffer -Domain $d -Framebuffer left  -Path (Join-Path $PSScriptRoot 'monitor-left.png') -HighlightDirty
Export-XenFramebuffer -Domain $d -Framebuffer right -Path (Join-Path $PSScriptRoot 'monitor-right.png') -HighlightDirty
Get-DirtyVram -Domain $d -AsRectangle | Format-Table Framebuffer, X, Y, Width, Height

Write-Host "== Hot-plug: a third monitor comes and goes while the others keep being tracked"
Add-XenFramebuffer -Domain $d -Name extra -Address 0xF2000000 -Width 640 -Height 480
Mount-XenFramebuffer -Domain $d -Framebuffer extra -VirtualAddress 0x70000000
Get-DirtyVram -Domain $d | Format-Table Framebuffer, DirtyPages, AllDirty
Draw-Box 0x70000000 2560 0 0 640 4 0x10
Get-DirtyVram -Domain $d -Framebuffer extra | Format-Table Framebuffer, DirtyPages, AllDirty
Remove-XenFramebuffer -Domain $d -Framebuffer extra -Confirm:$false
Get-XenFramebuffer -Domain $d | Format-Table Name, Width, Height, Tracked

Write-Host "== The same frame under each strategy (pages reported for one 300x40 window)"
$shade = 0x20
$rows = foreach ($s in @(@{Mode='Shadow';Strategy='BackLinks'}, @{Mode='Shadow';Strategy='DirtyBit'},
                         @{Mode='Shadow';Strategy='Mainline'}, @{Mode='Shadow';Strategy='Memcmp'}, @{Mode='Hap';Strategy='Tracker'},
                         @{Mode='Arm';Strategy='Tracker'})) {
    Set-XenVramTracking -Domain $d -Stop
    Set-XenPagingMode -Domain $d -Mode $s.Mode
    Set-XenVramTracking -Domain $d -Strategy $s.Strategy
    # Every page read once before arming (the D-bit design learns its address from the first write after).
    for ($p = 0; $p -lt 768; $p++) { $null = Read-XenGuestMemory -Domain $d -Virtual -Address (0x40000000 + $p * 4096) -Length 1 }
    $null = Get-DirtyVram -Domain $d -Framebuffer left                     # arm
    $shade += 0x10                                                          # new bytes, or memcmp sees no change
    Draw-Box 0x40000000 4096 100 200 300 40 $shade
    $v = Get-DirtyVram -Domain $d -Framebuffer left
    [pscustomobject]@{ Mode = $s.Mode; Strategy = $s.Strategy; DirtyPages = $v.DirtyPages; AllDirty = $v.AllDirty }
}
$rows | Format-Table -AutoSize

# Domain time (the domain's own clock, Step-XenDomainClock) paces the frames: each lasts 16.7 ms,
# the display polls Get-DirtyVram at its end. Frames 1-3 draw the window, frames 4-123 draw
# nothing (120 polls, 2.004 s: past mainline's 2 s), frames 124-125 draw again.
Write-Host "== Several 60 Hz frames under shadow: draw, idle for more than 2 s of domain time, draw again"
$costs = [ordered]@{ Faults = 'shadow_fault_fixed'; TlbFlush = 'tlb_flush_all'; Blown = 'shadow_blow_tables'; AllDirty = 'vram_all_dirty'
                     WrRemoved = 'vram_mainline_write_removed'; BfScan = 'shadow_writeable_bf'; LinkPages = 'vram_link_pages'; MemcmpKiB = 'vram_memcmp_bytes' }
function Get-Costs { $h = @{}; foreach ($c in Get-XenPerfCounter -Domain $d -Name @($costs.Values)) { $h[$c.Name] = $c.Value }; $h }
function Add-FrameRow($strategy, $frames, $dirty, $before) {
    $after = Get-Costs
    $row = [ordered]@{ Strategy = $strategy; Frames = $frames; Dirty = $dirty }
    foreach ($k in $costs.Keys) { $row[$k] = $after[$costs[$k]] - $before[$costs[$k]] }
    $row.MemcmpKiB = $row.MemcmpKiB / 1024
    [pscustomobject]$row
}
$frameMs = 16.7
$series = foreach ($strategy in 'BackLinks', 'DirtyBit', 'Mainline', 'Memcmp') {
    Set-XenVramTracking -Domain $d -Stop
    Set-XenPagingMode -Domain $d -Mode Shadow
    Set-XenVramTracking -Domain $d -Strategy $strategy
    for ($p = 0; $p -lt 768; $p++) { $null = Read-XenGuestMemory -Domain $d -Virtual -Address (0x40000000 + $p * 4096) -Length 1 }
    $before = Get-Costs
    $v = Get-DirtyVram -Domain $d -Framebuffer left                        # frame 0: tracking starts
    Add-FrameRow $strategy '0 (start)' $v.DirtyPages $before
    $frame = 1
    foreach ($phase in @(@{ Draw = $true; Count = 3 }, @{ Draw = $false; Count = 120 }, @{ Draw = $true; Count = 2 })) {
        $first = $frame; $dirty = 0; $before = Get-Costs
        for ($i = 0; $i -lt $phase.Count; $i++, $frame++) {
            if ($phase.Draw) { $shade += 0x10; Draw-Box 0x40000000 4096 100 200 300 40 ($shade -band 0xFF) }
            $null = Step-XenDomainClock -Domain $d -Milliseconds $frameMs
            $dirty += (Get-DirtyVram -Domain $d -Framebuffer left).DirtyPages
            if ($phase.Draw) { Add-FrameRow $strategy "$frame" $dirty $before; $dirty = 0; $before = Get-Costs }
        }
        if (-not $phase.Draw) { Add-FrameRow $strategy "$first-$($frame - 1) idle" $dirty $before }
    }
}
$series | Format-Table -Property (@("Strategy", "Frames", "Dirty") + @($costs.Keys)) -AutoSize | Out-String -Width 140 | Write-Host
"Domain clock now: $((Get-XenDomain -Name $d.Name).ClockNs) ns"
# What each strategy paid over the whole sequence (frame 0 included), on a log scale.
$totals = foreach ($g in $series | Group-Object Strategy) {
    $t = [ordered]@{ Strategy = $g.Name }
    foreach ($k in 'Faults', 'TlbFlush', 'BfScan') { $t[$k] = ($g.Group | Measure-Object $k -Sum).Sum }
    [pscustomobject]$t
}
$null = $totals | Export-XenChart -Category Strategy -Value Faults, TlbFlush, BfScan -LogScale -YLabel 'count over frames 0-125' `
    -Title 'Lab 03: shadow VRAM tracking costs over 126 frames (draw, idle 2 s, draw)' -Path (Join-Path $PSScriptRoot 'costs-over-frames.png')
"PNGs written to $PSScriptRoot"
$d | Remove-XenDomain -Confirm:$false
