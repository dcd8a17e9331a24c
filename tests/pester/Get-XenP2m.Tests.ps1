BeforeDiscovery {
    $lookups = @(
        @{ Gfn = 0x1000;  Kind = 'Ram';      Source = 'leaf' }
        @{ Gfn = 0xC0000; Kind = 'Identity'; Source = 'p2m_identity' }
        @{ Gfn = 0x9f;    Kind = 'Identity'; Source = 'leaf' }
        @{ Gfn = 0x93bff; Kind = 'Missing';  Source = 'p2m_missing' }
        @{ Gfn = 0x93c00; Kind = 'Identity'; Source = 'p2m_identity' }
        @{ Gfn = 0x100000; Kind = 'Missing'; Source = 'p2m_mid_missing' }
    )
}

Describe 'Get-XenP2m' -Tag 'XenLab', 'Get-XenP2m' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
        $domain = New-XenDomain -Name pester-p2m -MemoryMB 2048 -MaxMemoryMB 2364
    }
    AfterAll { Remove-XenDomain -Name pester-p2m -Confirm:$false }

    Context 'DomainNameGfn' {
        It 'finds gfn <Gfn> to be <Kind>, answered by <Source>' -ForEach $lookups {
            $e = Get-XenP2m -DomainName pester-p2m -Gfn $Gfn
            $e.Kind | Should -Be $Kind
            $e.Source | Should -Be $Source
        }

        It 'answers identity at gfn 0xC0000, the start of the default 1024 MiB PCI hole' {
            $e = Get-XenP2m -DomainName pester-p2m -Gfn 0xC0000
            $e.Mfn | Should -Be 0xC0000
            $e.RawEntry | Should -Be (0xC0000 -bor (1L -shl 62))
            $e.TopIndex | Should -Be 3
        }

        It 'takes gfns from the pipeline, one entry per gfn' {
            $e = 0xC0000, 0xC0001 | Get-XenP2m -DomainName pester-p2m
            $e.Gfn | Should -Be @(0xC0000, 0xC0001)
        }

        It 'binds DomainName and Gfn by property name from guest mappings' {
            Add-XenGuestMapping -DomainName pester-p2m -VirtualAddress 0x400000 -Gfn 0x1000 -Count 2
            try { (Get-XenGuestMapping -DomainName pester-p2m | Get-XenP2m).Gfn | Should -Be 0x1000 }
            finally { Remove-XenGuestMapping -DomainName pester-p2m -VirtualAddress 0x400000 -Count 2 -Confirm:$false }
        }

        It 'gives RAM a machine frame that is not the gfn' {
            $e = Get-XenP2m pester-p2m 0x1000
            $e.Mfn | Should -Not -BeNullOrEmpty
            $e.Mfn | Should -Not -Be 0x1000
        }
    }

    Context 'DomainGfn' {
        It 'looks up gfns of a domain piped from Get-XenDomain' {
            (Get-XenDomain pester-p2m | Get-XenP2m -Gfn 0xC0000).Kind | Should -Be 'Identity'
        }
    }

    Context 'DomainNameTree' {
        It 'reports the tree''s pages: allocated versus the four shared ones' {
            $t = Get-XenP2m -DomainName pester-p2m -Tree
            $t | Should -BeOfType XenLab.Views.P2mTreeView
            $t.SharedPages | Should -Be 4
            $t.TopPages | Should -Be 1
            $t.AllocatedPages | Should -Be ($t.TopPages + $t.MidPagesAllocated + $t.LeafPagesAllocated)
            $t.TopEntriesMidIdentity | Should -Be 0      # edges-first is 2.6.39: a mid page per 1 GiB, no p2m_mid_identity
        }
    }

    Context 'DomainTree' {
        It 'reports the tree of a domain piped from Get-XenDomain' {
            (Get-XenDomain pester-p2m | Get-XenP2m -Tree).DomainName | Should -Be 'pester-p2m'
        }
    }

    Context 'Errors' {
        It 'reports an unknown domain name as DomainNotFound' {
            { Get-XenP2m -DomainName pester-p2m-none -Gfn 0 -ErrorAction Stop } | Should -Throw -ErrorId 'DomainNotFound,*'
        }

        It 'refuses -Gfn together with -Tree' {
            { Get-XenP2m -DomainName pester-p2m -Gfn 0 -Tree -ErrorAction Stop } | Should -Throw -ErrorId 'AmbiguousParameterSet,*'
        }
    }
}
