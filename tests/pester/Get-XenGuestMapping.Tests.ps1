Describe 'Get-XenGuestMapping' -Tag 'XenLab', 'Get-XenGuestMapping' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
        $domain = New-XenDomain -Name pester-getmap -MemoryMB 256
        Add-XenGuestMapping -DomainName pester-getmap -VirtualAddress 0x400000 -Gfn 0x1000 -Count 4
        Add-XenGuestMapping -DomainName pester-getmap -VirtualAddress 0x404000 -Gfn 0x1004 -Count 2
        Add-XenGuestMapping -DomainName pester-getmap -VirtualAddress 0x500000 -Gfn 0x2000 -Count 1 -ReadOnly
    }
    AfterAll { Remove-XenDomain -Name pester-getmap -Confirm:$false }

    Context 'DomainName' {
        It 'merges neighbouring pages with the same rights into one mapping' {
            $m = Get-XenGuestMapping -DomainName pester-getmap
            @($m).Count | Should -Be 2
            $m[0].VirtualAddress | Should -Be 0x400000
            $m[0].Count | Should -Be 6
            $m[0].Writable | Should -BeTrue
        }

        It 'keeps a read-only page as a mapping of its own' {
            $ro = Get-XenGuestMapping -DomainName pester-getmap | Where-Object Writable -eq $false
            $ro.VirtualAddress | Should -Be 0x500000
            $ro.Gfn | Should -Be 0x2000
            $ro.Rights | Should -Be 'ro'
        }

        It 'tags each mapping with the domain name' {
            (Get-XenGuestMapping -DomainName pester-getmap).DomainName | Sort-Object -Unique | Should -Be 'pester-getmap'
        }
    }

    Context 'Domain' {
        It 'lists the mappings of a domain piped from Get-XenDomain' {
            @(Get-XenDomain pester-getmap | Get-XenGuestMapping).Count | Should -Be 2
        }
    }

    Context 'Errors' {
        It 'reports an unknown domain name as DomainNotFound' {
            { Get-XenGuestMapping -DomainName pester-getmap-none -ErrorAction Stop } | Should -Throw -ErrorId 'DomainNotFound,*'
        }
    }
}
