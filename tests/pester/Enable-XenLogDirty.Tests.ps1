BeforeDiscovery {
    $modes = @(@{ Mode = 'Hap' }, @{ Mode = 'Shadow' }, @{ Mode = 'Arm' })
}

Describe 'Enable-XenLogDirty' -Tag 'XenLab', 'Enable-XenLogDirty' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    BeforeEach {
        $domain = New-XenDomain -Name pester-ld-on -MemoryMB 64
        Add-XenFramebuffer -DomainName pester-ld-on -Name mon0 -Address 0xF0000000 -Width 1024 -Height 768
    }
    AfterEach { Get-XenDomain -Name 'pester-ld-on*' | Remove-XenDomain -Confirm:$false }

    Context 'DomainName' {
        It 'records the pages written from then on in <Mode> paging' -ForEach $modes {
            Set-XenPagingMode -DomainName pester-ld-on -Mode $Mode
            Enable-XenLogDirty -DomainName pester-ld-on
            $domain.LogDirty.Enabled | Should -BeTrue
            Write-XenGuestMemory -DomainName pester-ld-on -Address 0x1000000 -Value 1
            Write-XenGuestMemory -DomainName pester-ld-on -Address 0x1003008 -Value 2
            Get-XenDirtyLog -DomainName pester-ld-on -AsGfn | Should -Be 0x1000, 0x1003
        }

        It 'makes Get-DirtyVram fail with VramENODATA and errno 61' {
            Enable-XenLogDirty -DomainName pester-ld-on
            Get-DirtyVram -DomainName pester-ld-on -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err[0].FullyQualifiedErrorId | Should -BeLike 'VramENODATA,*'
            $err[0].CategoryInfo.Category | Should -Be 'ResourceUnavailable'
            "$($err[0])" | Should -BeLike "*'pester-ld-on'*'mon0'*-ENODATA*errno 61*"
            $err[0].Exception.Errno | Should -Be 'ENODATA'
        }

        It 'refuses with VlptWindowFull, naming the window and its holders, when ARM VLPT domains fill the window' {
            # Untraced ARM domains hold no slice: they are all built; tracing takes slices until none is left.
            $failed = $null
            foreach ($i in 1..40) {
                New-XenDomain -Name "pester-ld-on-vlpt$i" -MemoryMB 8 -MaxMemoryMB 4096 -Paging Arm | Out-Null
                Set-XenPagingMode -DomainName "pester-ld-on-vlpt$i" -Mode Arm -ArmLeafLookup Vlpt
                Enable-XenLogDirty -DomainName "pester-ld-on-vlpt$i" -ErrorVariable err -ErrorAction SilentlyContinue
                if ($err) { $failed = $i; break }
            }
            $failed | Should -Not -BeNullOrEmpty
            $err[0].FullyQualifiedErrorId | Should -BeLike 'VlptWindowFull,*'
            $err[0].CategoryInfo.Category | Should -Be 'LimitsExceeded'
            "$($err[0])" | Should -BeLike "*VLPT window (128 MiB at 0x8000000*'pester-ld-on-vlpt$failed'*held by pester-ld-on-vlpt1 (slots 0..*"
            (Get-XenDomain "pester-ld-on-vlpt$failed").LogDirty.Enabled | Should -BeFalse
            # Another untraced ARM VLPT domain is still built.
            New-XenDomain -Name pester-ld-on-vlpt-more -MemoryMB 8 -MaxMemoryMB 4096 -Paging Arm | Should -Not -BeNullOrEmpty
        }

        It 'changes nothing with -WhatIf' {
            Enable-XenLogDirty -DomainName pester-ld-on -WhatIf
            $domain.LogDirty.Enabled | Should -BeFalse
        }

        It 'writes the domain with -PassThru, and enabling twice changes nothing' {
            $d = Enable-XenLogDirty -DomainName pester-ld-on -PassThru
            $d | Should -BeOfType XenLab.Domains.Domain
            Write-XenGuestMemory -DomainName pester-ld-on -Address 0x1000000 -Value 1
            Enable-XenLogDirty -DomainName pester-ld-on
            (Get-XenDirtyLog -DomainName pester-ld-on).DirtyPages | Should -Be 1        # the log was not reset
        }
    }

    Context 'Domain' {
        It 'enables log-dirty for domains piped from Get-XenDomain' {
            New-XenDomain -Name pester-ld-on-2 -MemoryMB 64 | Out-Null
            Get-XenDomain -Name 'pester-ld-on*' | Enable-XenLogDirty
            (Get-XenDomain -Name 'pester-ld-on*').LogDirty.Enabled | Should -Be $true, $true
        }
    }

    Context 'Errors' {
        It 'reports an unknown domain name as DomainNotFound' {
            { Enable-XenLogDirty -DomainName pester-ld-none -ErrorAction Stop } | Should -Throw -ErrorId 'DomainNotFound,*'
        }
    }
}
