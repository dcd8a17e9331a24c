Describe 'Step-XenDomainClock' -Tag 'XenLab', 'Step-XenDomainClock' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    BeforeEach {
        $domain = New-XenDomain -Name pester-clock -MemoryMB 64 -Paging Shadow
    }
    AfterEach { Get-XenDomain -Name 'pester-clock*' | Remove-XenDomain -Confirm:$false }

    Context 'DomainName' {
        It 'moves the clock by -Milliseconds, kept to the nanosecond, and writes where it stands' {
            $before = $domain.ClockNs
            $c = Step-XenDomainClock -DomainName pester-clock -Milliseconds 16.7
            $c | Should -BeOfType XenLab.Views.DomainClockView
            $c.DomainName | Should -Be 'pester-clock'
            $c.AdvancedNs | Should -Be 16700000
            $c.ClockNs | Should -Be ($before + 16700000)
            $domain.ClockNs | Should -Be $c.ClockNs
            (Step-XenDomainClock pester-clock 2000.000001).AdvancedNs | Should -Be 2000000001
            (Step-XenDomainClock pester-clock 0).AdvancedNs | Should -Be 0
        }

        It 'adds the time to the domain_time_ns counter' {
            $counted = (Get-XenPerfCounter -DomainName pester-clock -Name domain_time_ns).Value
            Step-XenDomainClock -DomainName pester-clock -Milliseconds 1.5 | Out-Null
            (Get-XenPerfCounter -DomainName pester-clock -Name domain_time_ns).Value | Should -Be ($counted + 1500000)
        }

        It 'shows the clock in a table within 120 columns, seconds to the nanosecond' {
            $text = Step-XenDomainClock -DomainName pester-clock -Milliseconds 1234.5 | Out-String -Width 120
            $text | Should -Match 'pester-clock\s+\d+\s+\d+\.\d{9}\s+1234500000'
            ($text -split "`n" | Measure-Object -Maximum -Property Length).Maximum | Should -BeLessOrEqual 120
        }

        It 'shows the clock in the domain''s list view (Get-XenDomain | Format-List)' {
            Step-XenDomainClock -DomainName pester-clock -Milliseconds 16.7 | Out-Null
            $text = Get-XenDomain pester-clock | Format-List | Out-String
            $text | Should -Match "ClockNs\s+:\s+$($domain.ClockNs)"
        }

        It 'moves nothing with -WhatIf' {
            $before = $domain.ClockNs
            Step-XenDomainClock -DomainName pester-clock -Milliseconds 5000 -WhatIf | Should -BeNullOrEmpty
            $domain.ClockNs | Should -Be $before
        }
    }

    Context 'Domain' {
        It 'advances every domain piped in' {
            New-XenDomain -Name pester-clock2 -MemoryMB 64 | Out-Null
            $clocks = @(Get-XenDomain -Name 'pester-clock*' | Step-XenDomainClock -Milliseconds 3)
            $clocks.Count | Should -Be 2
            $clocks.DomainName | Sort-Object | Should -Be 'pester-clock', 'pester-clock2'
            $clocks.AdvancedNs | Should -Be 3000000, 3000000
        }
    }

    Context 'Mainline VRAM tracking' {
        It 'removes write access at the first query more than 2 s (not exactly 2 s) after the last dirty page' {
            Add-XenFramebuffer -DomainName pester-clock -Name mon0 -Address 0xF0000000 -Width 1024 -Height 768
            Mount-XenFramebuffer -DomainName pester-clock -Framebuffer mon0 -VirtualAddress 0x40000000
            Set-XenVramTracking -DomainName pester-clock -Strategy Mainline
            (Get-DirtyVram -DomainName pester-clock).AllDirty | Should -BeTrue           # -ENODATA: repaint all
            Write-XenGuestMemory -DomainName pester-clock -Address 0x40003000 -Virtual -Value 1
            (Get-DirtyVram -DomainName pester-clock).DirtyPageIndexes | Should -Be 3    # last_dirty = now
            $removed = { (Get-XenPerfCounter -DomainName pester-clock -Name vram_mainline_write_removed).Value }
            Step-XenDomainClock -DomainName pester-clock -Milliseconds 2000 | Out-Null
            (Get-DirtyVram -DomainName pester-clock).DirtyPages | Should -Be 0
            & $removed | Should -Be 0                                                   # exactly 2 s: not yet
            Step-XenDomainClock -DomainName pester-clock -Milliseconds 0.000001 | Out-Null
            (Get-DirtyVram -DomainName pester-clock).DirtyPages | Should -Be 0
            & $removed | Should -Be 1                                                   # 2 s + 1 ns: write access gone
            $faults = (Get-XenPerfCounter -DomainName pester-clock -Name shadow_fault_fixed).Value
            Write-XenGuestMemory -DomainName pester-clock -Address 0x40003000 -Virtual -Value 2
            (Get-XenPerfCounter -DomainName pester-clock -Name shadow_fault_fixed).Value | Should -Be ($faults + 1)
            (Get-DirtyVram -DomainName pester-clock).DirtyPageIndexes | Should -Be 3
        }
    }

    Context 'Errors' {
        It 'refuses a negative step as DomainClockOutOfRange, naming the domain' {
            $before = $domain.ClockNs
            Step-XenDomainClock -DomainName pester-clock -Milliseconds -1 -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err[0].FullyQualifiedErrorId | Should -BeLike 'DomainClockOutOfRange,*'
            $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
            $err[0].Exception.Message | Should -BeLike "*'pester-clock'*back*"
            $domain.ClockNs | Should -Be $before
        }

        It 'refuses a step past the end of the clock and leaves it where it was' {
            Step-XenDomainClock -DomainName pester-clock -Milliseconds 9223372036000 | Out-Null
            $before = $domain.ClockNs
            Step-XenDomainClock -DomainName pester-clock -Milliseconds 1000 -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err[0].FullyQualifiedErrorId | Should -BeLike 'DomainClockOutOfRange,*'
            $err[0].Exception.Message | Should -BeLike "*'pester-clock'*292 years*"
            $domain.ClockNs | Should -Be $before
            { Step-XenDomainClock -DomainName pester-clock -Milliseconds 1e20 -ErrorAction Stop } | Should -Throw -ErrorId 'DomainClockOutOfRange,*'
        }

        It 'reports a removed domain object as DomainRemoved' {
            $gone = New-XenDomain -Name pester-clock-gone -MemoryMB 16
            $gone | Remove-XenDomain -Confirm:$false
            $gone | Step-XenDomainClock -Milliseconds 1 -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err[0].FullyQualifiedErrorId | Should -BeLike 'DomainRemoved,*'
            { Step-XenDomainClock -Domain $gone -Milliseconds 1 -ErrorAction Stop } | Should -Throw -ErrorId 'DomainRemoved,*'
        }

        It 'reports an unknown domain name as DomainNotFound' {
            { Step-XenDomainClock -DomainName pester-clock-none -Milliseconds 1 -ErrorAction Stop } | Should -Throw -ErrorId 'DomainNotFound,*'
        }
    }

    Context 'Completion' {
        It 'completes domain names' {
            $line = 'Step-XenDomainClock -DomainName pester-clo'
            $r = TabExpansion2 -inputScript $line -cursorColumn $line.Length
            $r.CompletionMatches.CompletionText | Should -Be 'pester-clock'
        }
    }
}
