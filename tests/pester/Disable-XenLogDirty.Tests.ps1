Describe 'Disable-XenLogDirty' -Tag 'XenLab', 'Disable-XenLogDirty' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    BeforeEach {
        $domain = New-XenDomain -Name pester-ld-off -MemoryMB 64
        Add-XenFramebuffer -DomainName pester-ld-off -Name mon0 -Address 0xF0000000 -Width 1024 -Height 768
        Enable-XenLogDirty -DomainName pester-ld-off
    }
    AfterEach { Remove-XenDomain -Name pester-ld-off -Confirm:$false }

    Context 'DomainName' {
        It 'stops the log: reading it is then LogDirtyNotEnabled' {
            Disable-XenLogDirty -DomainName pester-ld-off
            $domain.LogDirty.Enabled | Should -BeFalse
            Get-XenDirtyLog -DomainName pester-ld-off -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'LogDirtyNotEnabled,*'
        }

        It 'gives dirty VRAM back: a range never tracked starts all dirty' {
            Disable-XenLogDirty -DomainName pester-ld-off
            $v = Get-DirtyVram -DomainName pester-ld-off -ErrorAction Stop
            $v.AllDirty | Should -BeTrue
            $v.DirtyPages | Should -Be 768
        }

        It 'warns, and queries answer VramEINVAL until -Stop, when the tracker under a range was disarmed' {
            Disable-XenLogDirty -DomainName pester-ld-off
            Get-DirtyVram -DomainName pester-ld-off | Out-Null                       # HAP: the Tracker strategy
            Enable-XenLogDirty -DomainName pester-ld-off
            Disable-XenLogDirty -DomainName pester-ld-off -WarningVariable warn -WarningAction SilentlyContinue
            $warn[0].Message | Should -BeLike '*VramEINVAL*Set-XenVramTracking -Stop*'
            Get-DirtyVram -DomainName pester-ld-off -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'VramEINVAL,*'
            "$($err[0])" | Should -BeLike '*-EINVAL*errno 22*'
            Set-XenVramTracking -DomainName pester-ld-off -Stop
            (Get-DirtyVram -DomainName pester-ld-off -ErrorAction Stop).AllDirty | Should -BeTrue
        }

        It 'changes nothing with -WhatIf' {
            Disable-XenLogDirty -DomainName pester-ld-off -WhatIf
            $domain.LogDirty.Enabled | Should -BeTrue
        }

        It 'writes the domain with -PassThru, also when already disabled' {
            Disable-XenLogDirty -DomainName pester-ld-off
            (Disable-XenLogDirty -DomainName pester-ld-off -PassThru).Name | Should -Be 'pester-ld-off'
        }
    }

    Context 'Domain' {
        It 'disables log-dirty of a domain piped from Get-XenDomain' {
            Get-XenDomain pester-ld-off | Disable-XenLogDirty
            $domain.LogDirty.Enabled | Should -BeFalse
        }
    }

    Context 'Errors' {
        It 'reports an unknown domain name as DomainNotFound' {
            { Disable-XenLogDirty -DomainName pester-ld-none -ErrorAction Stop } | Should -Throw -ErrorId 'DomainNotFound,*'
        }
    }
}
