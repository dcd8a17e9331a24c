BeforeDiscovery {
    # 16 pages at gfn 0x80100 are unpopulated RAM in a domain with memory 1024, maxmem 2364. Its mid
    # page for gfns 0x80000-0xbffff is allocated at build (the E820 gap at 0x93c61), so Coarse swaps
    # the one shared p2m_missing leaf under the hole: 512 pfns, 0x80000-0x801ff.
    $strategies = @(
        @{ Strategy = 'EdgesFirst'; Switched = 16;     Collateral = 0 }
        @{ Strategy = 'Coarse';     Switched = 512;    Collateral = 496 }
    )
}

Describe 'Set-XenIdentityHole' -Tag 'XenLab', 'Set-XenIdentityHole' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    BeforeEach {
        $domain = New-XenDomain -Name pester-hole -MemoryMB 1024 -MaxMemoryMB 2364
    }
    AfterEach { Remove-XenDomain -Name pester-hole -Confirm:$false }

    Context 'DomainName' {
        It 'switches <Switched> pfns with the <Strategy> strategy, <Collateral> outside the range' -ForEach $strategies {
            $v = Set-XenIdentityHole -DomainName pester-hole -Gfn 0x80100 -Count 16 -Strategy $Strategy -PassThru
            $v | Should -BeOfType XenLab.Views.IdentityHoleView
            $v.StartGfn | Should -Be 0x80100
            $v.EndGfn | Should -Be 0x80110
            $v.Strategy | Should -Be $Strategy
            $v.PfnsSwitched | Should -Be $Switched
            $v.CollateralPfns | Should -Be $Collateral
        }

        It 'makes the hole answer identity and leaves a neighbour missing with EdgesFirst' {
            Set-XenIdentityHole -DomainName pester-hole -Gfn 0x80100 -Count 16 -Strategy EdgesFirst
            (Get-XenP2m -DomainName pester-hole -Gfn 0x80100).Kind | Should -Be 'Identity'
            (Get-XenP2m -DomainName pester-hole -Gfn 0x80110).Kind | Should -Be 'Missing'
        }

        It 'uses the domain''s own strategy when -Strategy is not given' {
            (Set-XenIdentityHole -DomainName pester-hole -Gfn 0x80100 -Count 16 -PassThru).Strategy | Should -Be 'EdgesFirst'
        }

        It 'writes nothing without -PassThru' {
            Set-XenIdentityHole -DomainName pester-hole -Gfn 0x80100 -Count 16 | Should -BeNullOrEmpty
        }

        It 'changes nothing with -WhatIf' {
            Set-XenIdentityHole -DomainName pester-hole -Gfn 0x80100 -Count 16 -WhatIf
            (Get-XenP2m -DomainName pester-hole -Gfn 0x80100).Kind | Should -Be 'Missing'
        }
    }

    Context 'Domain' {
        It 'installs the hole in a domain piped from Get-XenDomain' {
            Get-XenDomain pester-hole | Set-XenIdentityHole -Gfn 0x90000 -Count 1
            (Get-XenP2m -DomainName pester-hole -Gfn 0x90000).Kind | Should -Be 'Identity'
        }
    }

    Context 'Errors' {
        It 'refuses a hole over populated RAM and changes nothing' {
            Set-XenIdentityHole -DomainName pester-hole -Gfn 0x1000 -Count 1 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidConfiguration,*'
            $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
            $err[0].Exception.Message | Should -BeLike '*covers populated RAM at gfn 0x1000*'
            (Get-XenP2m -DomainName pester-hole -Gfn 0x1000).Kind | Should -Be 'Ram'
        }

        It 'refuses a range beyond the p2m tree''s reach' {
            { Set-XenIdentityHole -DomainName pester-hole -Gfn 0x7FFFFFF -Count 2 -ErrorAction Stop } | Should -Throw -ErrorId 'GfnOutOfRange,*'
        }

        It 'reports an unknown domain name as DomainNotFound' {
            { Set-XenIdentityHole -DomainName pester-hole-none -Gfn 0 -Count 1 -ErrorAction Stop } | Should -Throw -ErrorId 'DomainNotFound,*'
        }
    }
}
