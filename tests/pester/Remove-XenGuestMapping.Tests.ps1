Describe 'Remove-XenGuestMapping' -Tag 'XenLab', 'Remove-XenGuestMapping' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    BeforeEach {
        $domain = New-XenDomain -Name pester-unmap -MemoryMB 256
        Add-XenGuestMapping -DomainName pester-unmap -VirtualAddress 0x400000 -Gfn 0x1000 -Count 4
    }
    AfterEach { Remove-XenDomain -Name pester-unmap -Confirm:$false }

    Context 'DomainName' {
        It 'unmaps the range so a virtual read faults' {
            Remove-XenGuestMapping -DomainName pester-unmap -VirtualAddress 0x400000 -Count 4 -Confirm:$false
            Get-XenGuestMapping -DomainName pester-unmap | Should -BeNullOrEmpty
            { Read-XenGuestMemory -DomainName pester-unmap -Address 0x400000 -Length 1 -Virtual -ErrorAction Stop } | Should -Throw -ErrorId 'GuestPageFault,*'
        }

        It 'unmaps part of a mapping and keeps the rest' {
            Remove-XenGuestMapping -DomainName pester-unmap -VirtualAddress 0x401000 -Count 2 -Confirm:$false
            (Get-XenGuestMapping -DomainName pester-unmap).VirtualAddress | Should -Be @(0x400000, 0x403000)
        }

        It 'takes guest mappings from the pipeline' {
            Get-XenGuestMapping -DomainName pester-unmap | Remove-XenGuestMapping -Confirm:$false
            Get-XenGuestMapping -DomainName pester-unmap | Should -BeNullOrEmpty
        }

        It 'keeps the mapping with -WhatIf' {
            Remove-XenGuestMapping -DomainName pester-unmap -VirtualAddress 0x400000 -Count 4 -WhatIf
            (Get-XenGuestMapping -DomainName pester-unmap).Count | Should -Be 4
        }
    }

    Context 'Domain' {
        It 'unmaps in a domain given as an object' {
            Remove-XenGuestMapping -Domain $domain -VirtualAddress 0x400000 -Count 4 -Confirm:$false
            Get-XenGuestMapping -Domain $domain | Should -BeNullOrEmpty
        }
    }

    Context 'Errors' {
        It 'reports a range with nothing mapped as MappingNotFound' {
            Remove-XenGuestMapping -DomainName pester-unmap -VirtualAddress 0x900000 -Count 1 -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'MappingNotFound,*'
            $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        }

        It 'refuses an unaligned address as an invalid argument' {
            { Remove-XenGuestMapping -DomainName pester-unmap -VirtualAddress 0x400001 -Count 1 -Confirm:$false -ErrorAction Stop } |
                Should -Throw -ErrorId 'InvalidConfiguration,*'
        }
    }
}
