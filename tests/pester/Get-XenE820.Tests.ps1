BeforeDiscovery {
    # The default HVM map for memory 2048, maxmem 2364 and the default 1024 MiB mmio_hole.
    $entries = @(
        @{ Index = 0; Start = 0x0;        End = 0x9f000;     Type = 'Ram' }
        @{ Index = 1; Start = 0x9f000;    End = 0xa0000;     Type = 'Reserved' }
        @{ Index = 2; Start = 0xf0000;    End = 0x100000;    Type = 'Reserved' }
        @{ Index = 3; Start = 0x100000;   End = 0x93c00000L; Type = 'Ram' }
        @{ Index = 4; Start = 0xfc000000L; End = 0x100000000L; Type = 'Reserved' }
    )
}

Describe 'Get-XenE820' -Tag 'XenLab', 'Get-XenE820' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
        $domain = New-XenDomain -Name pester-e820 -MemoryMB 2048 -MaxMemoryMB 2364
    }
    AfterAll { Remove-XenDomain -Name pester-e820 -Confirm:$false }

    Context 'DomainName' {
        It 'writes the five entries of the default HVM map' {
            @(Get-XenE820 -DomainName pester-e820).Count | Should -Be 5
        }

        It 'has entry <Index> from <Start> to <End> of type <Type>' -ForEach $entries {
            $e = (Get-XenE820 -DomainName pester-e820)[$Index]
            $e.Start | Should -Be $Start
            $e.End | Should -Be $End
            $e.Type | Should -Be $Type
            $e.Size | Should -Be ($End - $Start)
        }

        It 'ends RAM below 4 GiB at maxmem, 2364 MiB, where the identity hole begins' {
            $ram = Get-XenE820 -DomainName pester-e820 | Where-Object Type -eq 'Ram' | Select-Object -Last 1
            $ram.End | Should -Be (2364MB)
            $ram.EndGfn | Should -Be 0x93c00
            (Get-XenP2m -DomainName pester-e820 -Gfn $ram.EndGfn).Kind | Should -Be 'Identity'
        }

        It 'tags every entry with the domain name' {
            (Get-XenE820 -DomainName pester-e820).DomainName | Sort-Object -Unique | Should -Be 'pester-e820'
        }

        It 'takes the domain name by position' {
            @(Get-XenE820 pester-e820).Count | Should -Be 5
        }
    }

    Context 'Domain' {
        It 'writes the same map for a domain piped from Get-XenDomain' {
            (Get-XenDomain pester-e820 | Get-XenE820).Start | Should -Be (Get-XenE820 -DomainName pester-e820).Start
        }

        It 'takes the domain object as -Domain' {
            (Get-XenE820 -Domain $domain)[3].Type | Should -Be 'Ram'
        }
    }

    Context 'Errors' {
        It 'reports an unknown domain name as DomainNotFound with the name as target' {
            Get-XenE820 -DomainName pester-e820-none -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'DomainNotFound,*'
            $err[0].TargetObject | Should -Be 'pester-e820-none'
            $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        }
    }
}
