BeforeDiscovery {
    $targets = @(
        # Maxmem 2364 means all the E820's RAM, 2363 whole MiB (the 384 KiB below 1 MiB is not RAM).
        @{ Target = 2364; Expected = 2363; Change = 'up to maxmem' }
        @{ Target = 1024; Expected = 1024; Change = 'down' }
        @{ Target = 2048; Expected = 2048; Change = 'to where it is' }
    )
}

Describe 'Set-XenDomain' -Tag 'XenLab', 'Set-XenDomain' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    BeforeEach {
        $domain = New-XenDomain -Name pester-set -MemoryMB 2048 -MaxMemoryMB 2364
    }
    AfterEach { Get-XenDomain -Name 'pester-set*' | Remove-XenDomain -Confirm:$false }

    Context 'DomainName' {
        It 'balloons the domain <Change> (<Target> MiB)' -ForEach $targets {
            Set-XenDomain -DomainName pester-set -MemoryMB $Target
            (Get-XenDomain pester-set).MemoryMiB | Should -Be $Expected
        }

        It 'writes nothing without -PassThru and the domain with it' {
            Set-XenDomain -DomainName pester-set -MemoryMB 1024 | Should -BeNullOrEmpty
            (Set-XenDomain -DomainName pester-set -MemoryMB 1536 -PassThru).MemoryMiB | Should -Be 1536
        }

        It 'changes nothing with -WhatIf' {
            Set-XenDomain -DomainName pester-set -MemoryMB 1024 -WhatIf
            $domain.MemoryMiB | Should -Be 2048
        }

        It 'binds DomainName by property name from view objects' {
            Get-XenE820 -DomainName pester-set | Select-Object -First 1 | Set-XenDomain -MemoryMB 1024
            $domain.MemoryMiB | Should -Be 1024
        }
    }

    Context 'Domain' {
        It 'balloons domains piped from Get-XenDomain' {
            Get-XenDomain pester-set | Set-XenDomain -MemoryMB 1024
            $domain.MemoryMiB | Should -Be 1024
        }
    }

    Context 'Errors' {
        It 'refuses to balloon into pfns a Coarse identity hole switched (the nasty condition)' {
            $nasty = New-XenDomain -Name pester-set-nasty -MemoryMB 1024 -MaxMemoryMB 2364
            Set-XenIdentityHole -Domain $nasty -Gfn 0x80100 -Count 16 -Strategy Coarse
            Set-XenDomain -Domain $nasty -MemoryMB 2048 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'BalloonRefused,*'
            $err[0].CategoryInfo.Category | Should -Be 'InvalidOperation'
            $err[0].TargetObject.Name | Should -Be 'pester-set-nasty'
            $err[0].Exception.Message | Should -BeLike 'balloon driver BUG_ON(phys_to_machine_mapping_valid(0x80000))*(Identity)*'
            $nasty.MemoryMiB | Should -Be 1024
        }

        It 'balloons through the same hole when it was installed EdgesFirst' {
            $safe = New-XenDomain -Name pester-set-safe -MemoryMB 1024 -MaxMemoryMB 2364
            Set-XenIdentityHole -Domain $safe -Gfn 0x80100 -Count 16 -Strategy EdgesFirst
            Set-XenDomain -Domain $safe -MemoryMB 2048 -ErrorAction Stop
            $safe.MemoryMiB | Should -Be 2048
        }

        It 'populates all the E820 RAM when asked for maxmem' {
            Set-XenDomain -DomainName pester-set -MemoryMB 2364
            $domain.PopulatedPages | Should -Be $domain.MaxPages
        }

        It 'reproduces the nasty condition at build with a coarse domain file' {
            # maxmem 2365 ends RAM at gfn 0x93d00, inside the leaf 0x93c00-0x93dff: the coarse build
            # swaps that whole leaf to identity, RAM pfns 0x93c00-0x93cff included.
            $file = Join-Path $TestDrive 'coarse.yaml'
            Set-Content -Path $file -Value "name: pester-set-file`nmemory: 2048`nmaxmem: 2365`nidentity_strategy: coarse"
            $d = New-XenDomain -Path $file
            Set-XenDomain -Domain $d -MemoryMB 2365 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'BalloonRefused,*'
            $err[0].Exception.Message | Should -BeLike '*phys_to_machine_mapping_valid(0x93c00)*'
        }

        It 'refuses a target above maxmem as an invalid argument' {
            Set-XenDomain -DomainName pester-set -MemoryMB 4096 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidConfiguration,*'
            $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
            $domain.MemoryMiB | Should -Be 2048
        }

        It 'reports an unknown domain name as DomainNotFound' {
            { Set-XenDomain -DomainName pester-set-none -MemoryMB 64 -ErrorAction Stop } | Should -Throw -ErrorId 'DomainNotFound,*'
        }
    }
}
