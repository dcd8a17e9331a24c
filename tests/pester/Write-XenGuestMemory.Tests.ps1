BeforeDiscovery {
    $payloads = @(
        @{ Label = 'one byte';             Value = [byte[]]@(0x5A);                                   Hex = '5A' }
        @{ Label = 'text';                 Value = [Text.Encoding]::ASCII.GetBytes('XenLab');         Hex = '58656E4C6162' }
        @{ Label = 'bytes across a page';  Value = [byte[]]@(1, 2, 3, 4, 5, 6, 7, 8);                 Hex = '0102030405060708' }
    )
}

Describe 'Write-XenGuestMemory' -Tag 'XenLab', 'Write-XenGuestMemory' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
        $domain = New-XenDomain -Name pester-write -MemoryMB 512 -Vcpus 2
        Add-XenGuestMapping -DomainName pester-write -VirtualAddress 0x400000 -Gfn 0x1000 -Count 4
        Add-XenGuestMapping -DomainName pester-write -VirtualAddress 0x500000 -Gfn 0x2000 -Count 1 -ReadOnly
    }
    AfterAll { Remove-XenDomain -Name pester-write -Confirm:$false }

    Context 'DomainNamePhysical' {
        It 'writes <Label> that reads back the same' -ForEach $payloads {
            Write-XenGuestMemory -DomainName pester-write -Address 0x1001ffc -Value $Value
            (Read-XenGuestMemory -DomainName pester-write -Address 0x1001ffc -Length $Value.Length).Hex | Should -Be $Hex
        }

        It 'writes nothing to the pipeline without -PassThru and what it wrote with it' {
            Write-XenGuestMemory -DomainName pester-write -Address 0x1000000 -Value 7 | Should -BeNullOrEmpty
            $m = Write-XenGuestMemory -DomainName pester-write -Address 0x1000000 -Value 9, 8 -PassThru
            $m | Should -BeOfType XenLab.Views.GuestMemoryView
            $m.Address | Should -Be 0x1000000
            $m.Hex | Should -Be '0908'
        }

        It 'changes nothing with -WhatIf' {
            Write-XenGuestMemory -DomainName pester-write -Address 0x1003000 -Value 0x11
            Write-XenGuestMemory -DomainName pester-write -Address 0x1003000 -Value 0x22 -WhatIf
            (Read-XenGuestMemory -DomainName pester-write -Address 0x1003000 -Length 1).Hex | Should -Be '11'
        }

        It 'drops writes to identity (MMIO) frames with a warning' {
            Write-XenGuestMemory -DomainName pester-write -Address 0xC0000000L -Value 1 -WarningVariable warn -WarningAction SilentlyContinue
            $warn[0] | Should -BeLike '*identity (MMIO)*dropped*'
            (Read-XenGuestMemory -DomainName pester-write -Address 0xC0000000L -Length 1).Hex | Should -Be 'FF'
        }
    }

    Context 'DomainNameVirtual' {
        It 'writes through the guest page tables to the mapped gfn' {
            Write-XenGuestMemory -DomainName pester-write -Address 0x400020 -Virtual -Vcpu 1 -Value 0xCA, 0xFE
            (Read-XenGuestMemory -DomainName pester-write -Address 0x1000020 -Length 2).Hex | Should -Be 'CAFE'
        }

        It 'sets the dirty bit, counted once per page' {
            $before = (Get-XenPerfCounter pester-write dirty_bit_set).Value
            Write-XenGuestMemory -DomainName pester-write -Address 0x402000 -Virtual -Value 1
            (Get-XenPerfCounter pester-write dirty_bit_set).Value | Should -Be ($before + 1)
        }
    }

    Context 'DomainPhysical' {
        It 'writes a domain piped from Get-XenDomain' {
            Get-XenDomain pester-write | Write-XenGuestMemory -Address 0x1004000 -Value 0x42
            (Read-XenGuestMemory -DomainName pester-write -Address 0x1004000 -Length 1).Hex | Should -Be '42'
        }
    }

    Context 'DomainVirtual' {
        It 'writes virtual memory of a domain given as an object' {
            Write-XenGuestMemory -Domain $domain -Address 0x400030 -Virtual -Value 0x43
            (Read-XenGuestMemory -DomainName pester-write -Address 0x1000030 -Length 1).Hex | Should -Be '43'
        }
    }

    Context 'Errors' {
        It 'faults a write to a read-only mapping with error code 0x3 and writes nothing' {
            Write-XenGuestMemory -DomainName pester-write -Address 0x2000000 -Value 0x00
            Write-XenGuestMemory -DomainName pester-write -Address 0x500000 -Virtual -Value 0x77 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'GuestPageFault,*'
            $err[0].Exception.Message | Should -Be '#PF at 0x500000 error code 0x3 (Present, Write)'
            (Read-XenGuestMemory -DomainName pester-write -Address 0x2000000 -Length 1).Hex | Should -Be '00'
        }

        It 'reports a write to a gfn with no p2m entry as GfnMissing' {
            { Write-XenGuestMemory -DomainName pester-write -Address 0x100000000L -Value 1 -ErrorAction Stop } | Should -Throw -ErrorId 'GfnMissing,*'
        }

        It 'reports an unknown domain name as DomainNotFound' {
            { Write-XenGuestMemory -DomainName pester-write-none -Address 0 -Value 1 -ErrorAction Stop } | Should -Throw -ErrorId 'DomainNotFound,*'
        }
    }
}
