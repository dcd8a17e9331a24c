BeforeDiscovery {
    $vcpus = @(@{ Vcpu = 0 }, @{ Vcpu = 1 })
}

Describe 'Read-XenGuestMemory' -Tag 'XenLab', 'Read-XenGuestMemory' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
        $domain = New-XenDomain -Name pester-read -MemoryMB 2048 -MaxMemoryMB 2364 -Vcpus 2
        Write-XenGuestMemory -DomainName pester-read -Address 0x1000010 -Value 0xDE, 0xAD, 0xBE, 0xEF
        Add-XenGuestMapping -DomainName pester-read -VirtualAddress 0x400000 -Gfn 0x1000 -Count 4
        Add-XenGuestMapping -DomainName pester-read -VirtualAddress 0x600000 -Gfn 0x2000 -Count 1
    }
    AfterAll { Remove-XenDomain -Name pester-read -Confirm:$false }

    Context 'DomainNamePhysical' {
        It 'reads back what was written to a populated gfn' {
            $m = Read-XenGuestMemory -DomainName pester-read -Address 0x1000010 -Length 4
            $m | Should -BeOfType XenLab.Views.GuestMemoryView
            $m.Hex | Should -Be 'DEADBEEF'
            $m.Virtual | Should -BeFalse
            $m.Status | Should -Be 'Ok'
        }

        It 'reads physical memory by default and with -Physical alike' {
            (Read-XenGuestMemory pester-read 0x1000010 4 -Physical).Hex | Should -Be 'DEADBEEF'
        }

        It 'reads identity (MMIO) frames as 0xFF' {
            $m = Read-XenGuestMemory -DomainName pester-read -Address 0xC0000000L -Length 2
            $m.Hex | Should -Be 'FFFF'
            $m.Status | Should -Be 'Mmio'
        }
    }

    Context 'DomainNameVirtual' {
        It 'reads the same bytes through vCPU <Vcpu> and the guest page tables' -ForEach $vcpus {
            $m = Read-XenGuestMemory -DomainName pester-read -Address 0x400010 -Length 4 -Virtual -Vcpu $Vcpu
            $m.Hex | Should -Be 'DEADBEEF'
            $m.Virtual | Should -BeTrue
        }

        It 'reads across a page boundary' {
            Write-XenGuestMemory -DomainName pester-read -Address 0x1000ffe -Value 1, 2, 3, 4
            (Read-XenGuestMemory -DomainName pester-read -Address 0x400ffe -Length 4 -Virtual).Hex | Should -Be '01020304'
        }
    }

    Context 'DomainPhysical' {
        It 'reads a domain piped from Get-XenDomain' {
            (Get-XenDomain pester-read | Read-XenGuestMemory -Address 0x1000010 -Length 4).Hex | Should -Be 'DEADBEEF'
        }
    }

    Context 'DomainVirtual' {
        It 'reads virtual memory of a domain given as an object' {
            (Read-XenGuestMemory -Domain $domain -Address 0x400010 -Length 2 -Virtual).Hex | Should -Be 'DEAD'
        }
    }

    Context 'Errors' {
        It 'reports a gfn with no p2m entry as GfnMissing' {
            Read-XenGuestMemory -DomainName pester-read -Address 0x100000000L -Length 4 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'GfnMissing,*'
            $err[0].Exception.Message | Should -BeLike '*gfn 0x100000 has no p2m entry*'
            $err[0].TargetObject.Name | Should -Be 'pester-read'
        }

        It 'reports an unmapped virtual address as a not-present page fault (error code 0x0)' {
            Read-XenGuestMemory -DomainName pester-read -Address 0x800000 -Length 4 -Virtual -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'GuestPageFault,*'
            $err[0].CategoryInfo.Category | Should -Be 'InvalidOperation'
            $err[0].Exception.Message | Should -Be '#PF at 0x800000 error code 0x0 (None)'
        }

        It 'faults a user-mode read of a supervisor page with error code 0x5' {
            Read-XenGuestMemory -DomainName pester-read -Address 0x600000 -Length 8 -Virtual -User -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].Exception.Message | Should -Be '#PF at 0x600000 error code 0x5 (Present, User)'
        }

        It 'reports a non-canonical address as NonCanonicalAddress' {
            { Read-XenGuestMemory -DomainName pester-read -Address 0x800000000000 -Length 1 -Virtual -ErrorAction Stop } |
                Should -Throw -ErrorId 'NonCanonicalAddress,*'
        }

        It 'reports a vCPU the domain does not have as VcpuOutOfRange' {
            { Read-XenGuestMemory -DomainName pester-read -Address 0x400000 -Length 1 -Virtual -Vcpu 5 -ErrorAction Stop } |
                Should -Throw -ErrorId 'VcpuOutOfRange,*'
        }

        It 'refuses -Vcpu without -Virtual' {
            { Read-XenGuestMemory -DomainName pester-read -Address 0 -Length 1 -Vcpu 1 -ErrorAction Stop } |
                Should -Throw -ErrorId 'MissingMandatoryParameter,*'
        }
    }
}
