BeforeDiscovery {
    $modes = @(@{ Mode = 'Hap' }, @{ Mode = 'Shadow' }, @{ Mode = 'Arm' })
    $natural = @(
        @{ Mode = 'Hap';    Strategy = 'Tracker' }
        @{ Mode = 'Shadow'; Strategy = 'BackLinks' }
        @{ Mode = 'Arm';    Strategy = 'Tracker' }
    )
}

Describe 'Set-XenVramTracking' -Tag 'XenLab', 'Set-XenVramTracking' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    BeforeEach {
        $domain = New-XenDomain -Name pester-vt -MemoryMB 64
        Add-XenFramebuffer -DomainName pester-vt -Name mon0 -Address 0xF0000000 -Width 1024 -Height 768
        Mount-XenFramebuffer -DomainName pester-vt -Framebuffer mon0 -VirtualAddress 0x40000000
    }
    AfterEach { Remove-XenDomain -Name pester-vt -Confirm:$false }

    Context 'Strategy' {
        It 'tracks new ranges with <Strategy> under Auto in <Mode> paging' -ForEach $natural {
            Set-XenPagingMode -DomainName pester-vt -Mode $Mode
            Set-XenVramTracking -DomainName pester-vt -Strategy Auto
            (Get-DirtyVram -DomainName pester-vt).Strategy | Should -Be $Strategy
        }

        It 'applies to new ranges only; -Stop with it applies it to every framebuffer' {
            Get-DirtyVram -DomainName pester-vt | Out-Null
            Set-XenVramTracking -DomainName pester-vt -Strategy Memcmp
            (Get-DirtyVram -DomainName pester-vt).Strategy | Should -Be 'Tracker'           # the range keeps its own
            Set-XenVramTracking -DomainName pester-vt -Strategy Memcmp -Stop
            $v = Get-DirtyVram -DomainName pester-vt
            $v.Strategy | Should -Be 'Memcmp'
            $v.AllDirty | Should -BeTrue
        }

        It 'refuses a shadow-only strategy in HAP paging as VramStrategyUnavailable' {
            Set-XenVramTracking -DomainName pester-vt -Strategy BackLinks -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'VramStrategyUnavailable,*'
            $domain.Vram.Strategy | Should -Be 'Auto'
        }

        It 'writes the domain with -PassThru, its Vram showing the settings' {
            $d = Set-XenVramTracking -DomainName pester-vt -Strategy Memcmp -SkipTlbFlush $true -PassThru
            $d | Should -BeOfType XenLab.Domains.Domain
            $d.Vram.Strategy | Should -Be 'Memcmp'
            $d.Vram.SkipTlbFlush | Should -BeTrue
        }
    }

    Context 'SkipTlbFlush' {
        It 'loses a write through a stale TLB entry when the flush is skipped in <Mode> paging' -ForEach $modes {
            Set-XenPagingMode -DomainName pester-vt -Mode $Mode
            Set-XenVramTracking -DomainName pester-vt -SkipTlbFlush $true
            Get-DirtyVram -DomainName pester-vt | Out-Null
            Write-XenGuestMemory -DomainName pester-vt -Address 0x40005000 -Virtual -Value 1
            (Get-DirtyVram -DomainName pester-vt).DirtyPageIndexes | Should -Be 5
            # The TLB still holds page 5's entry with write access and D set: the hypervisor sees nothing.
            Write-XenGuestMemory -DomainName pester-vt -Address 0x40005000 -Virtual -Value 2
            (Get-DirtyVram -DomainName pester-vt).DirtyPageIndexes | Should -BeNullOrEmpty   # the lost update (seed 003)
            (Get-XenPerfCounter -DomainName pester-vt vram_flush_skipped).Value | Should -BeGreaterThan 0
        }

        It 'sees the same second write with the flush in <Mode> paging' -ForEach $modes {
            Set-XenPagingMode -DomainName pester-vt -Mode $Mode
            Set-XenVramTracking -DomainName pester-vt -SkipTlbFlush $false
            Get-DirtyVram -DomainName pester-vt | Out-Null
            Write-XenGuestMemory -DomainName pester-vt -Address 0x40005000 -Virtual -Value 1
            Get-DirtyVram -DomainName pester-vt | Out-Null
            Write-XenGuestMemory -DomainName pester-vt -Address 0x40005000 -Virtual -Value 2
            (Get-DirtyVram -DomainName pester-vt).DirtyPageIndexes | Should -Be 5
            (Get-XenPerfCounter -DomainName pester-vt vram_flush_skipped).Value | Should -Be 0
        }
    }

    Context 'Stop' {
        It 'stops every range, track_dirty_vram(.., 0), in <Mode> paging' -ForEach $modes {
            Set-XenPagingMode -DomainName pester-vt -Mode $Mode
            Add-XenFramebuffer -DomainName pester-vt -Name mon1 -Gfn 0xF0400 -Width 64 -Height 64
            Get-DirtyVram -DomainName pester-vt | Out-Null
            (Get-XenFramebuffer -DomainName pester-vt).Tracked | Should -Be $true, $true
            Set-XenVramTracking -DomainName pester-vt -Stop
            (Get-XenFramebuffer -DomainName pester-vt).Tracked | Should -Be $false, $false
            $domain.Vram.Ranges.Count | Should -Be 0
            (Get-DirtyVram -DomainName pester-vt).AllDirty | Should -Be $true, $true      # each starts again
            Test-XenPaging -DomainName pester-vt | Should -BeTrue
        }

        It 'gives HAP''s VRAM p2m entries back as ram_rw' {
            Get-DirtyVram -DomainName pester-vt | Out-Null
            $domain.GetP2mType(0xF0005) | Should -Be 'RamLogDirty'                    # armed: the next write faults
            Set-XenVramTracking -DomainName pester-vt -Stop
            $domain.GetP2mType(0xF0005) | Should -Be 'RamRw'
        }

        It 'changes nothing with -WhatIf' {
            Get-DirtyVram -DomainName pester-vt | Out-Null
            Set-XenVramTracking -DomainName pester-vt -Stop -Strategy Memcmp -SkipTlbFlush $true -WhatIf
            (Get-XenFramebuffer -DomainName pester-vt).Tracked | Should -BeTrue
            $domain.Vram.Strategy | Should -Be 'Auto'
            $domain.Vram.SkipTlbFlush | Should -BeFalse
        }
    }

    Context 'Domain' {
        It 'configures a domain piped from Get-XenDomain' {
            Get-XenDomain pester-vt | Set-XenVramTracking -Strategy Memcmp
            $domain.Vram.Strategy | Should -Be 'Memcmp'
        }
    }

    Context 'Errors' {
        It 'refuses an unknown strategy before running' {
            { Set-XenVramTracking -DomainName pester-vt -Strategy Bogus } | Should -Throw -ErrorId 'CannotConvertArgumentNoMessage,*'
        }

        It 'reports an unknown domain name as DomainNotFound' {
            { Set-XenVramTracking -DomainName pester-vt-none -Stop -ErrorAction Stop } | Should -Throw -ErrorId 'DomainNotFound,*'
        }
    }
}
