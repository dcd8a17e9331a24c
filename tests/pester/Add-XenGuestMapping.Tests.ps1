BeforeDiscovery {
    $rights = @(
        @{ Switches = @{};                                    Writable = $true;  User = $false; NoExecute = $false }
        @{ Switches = @{ ReadOnly = $true };                  Writable = $false; User = $false; NoExecute = $false }
        @{ Switches = @{ User = $true; NoExecute = $true };   Writable = $true;  User = $true;  NoExecute = $true }
    )
}

Describe 'Add-XenGuestMapping' -Tag 'XenLab', 'Add-XenGuestMapping' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    BeforeEach { $domain = New-XenDomain -Name pester-map -MemoryMB 256 }
    AfterEach { Remove-XenDomain -Name pester-map -Confirm:$false }

    Context 'DomainName' {
        It 'maps four pages and passes the mapping through' {
            $m = Add-XenGuestMapping -DomainName pester-map -VirtualAddress 0x400000 -Gfn 0x1000 -Count 4 -PassThru
            $m | Should -BeOfType XenLab.Guest.GuestMapping
            $m.VirtualAddress | Should -Be 0x400000
            $m.EndAddress | Should -Be 0x404000
            $m.Gfn | Should -Be 0x1000
            $m.Count | Should -Be 4
        }

        It 'sets writable <Writable>, user <User>, no-execute <NoExecute> as asked' -ForEach $rights {
            $m = Add-XenGuestMapping -DomainName pester-map -VirtualAddress 0x400000 -Gfn 0x1000 -Count 1 -PassThru @Switches
            $m.Writable | Should -Be $Writable
            $m.User | Should -Be $User
            $m.NoExecute | Should -Be $NoExecute
        }

        It 'writes nothing without -PassThru and maps nothing with -WhatIf' {
            Add-XenGuestMapping -DomainName pester-map -VirtualAddress 0x400000 -Gfn 0x1000 -Count 1 | Should -BeNullOrEmpty
            Add-XenGuestMapping -DomainName pester-map -VirtualAddress 0x800000 -Gfn 0x1000 -Count 1 -WhatIf
            @(Get-XenGuestMapping -DomainName pester-map).Count | Should -Be 1
        }

        It 'shoots down the TLB of every vCPU page by page' {
            $before = (Get-XenPerfCounter pester-map tlb_flush_page).Value
            Add-XenGuestMapping -DomainName pester-map -VirtualAddress 0x400000 -Gfn 0x1000 -Count 3
            (Get-XenPerfCounter pester-map tlb_flush_page).Value | Should -Be ($before + 3)
        }
    }

    Context 'Domain' {
        It 'maps in a domain piped from Get-XenDomain' {
            Get-XenDomain pester-map | Add-XenGuestMapping -VirtualAddress 0x400000 -Gfn 0x1000 -Count 2
            (Get-XenGuestMapping -Domain $domain).Count | Should -Be 2
        }
    }

    Context 'Errors' {
        It 'refuses a count beyond any page-table pool at once: parameter validation above 2^25, the domain''s pool below' {
            { Add-XenGuestMapping -DomainName pester-map -VirtualAddress 0x400000 -Gfn 0 -Count ([uint64]1 -shl 34) -ErrorAction Stop } |
                Should -Throw -ErrorId 'ParameterArgumentValidationError,*'
            Add-XenGuestMapping -DomainName pester-map -VirtualAddress 0x400000 -Gfn 0 -Count ([uint64]1 -shl 24) -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidConfiguration,*'
            $err[0].Exception.Message | Should -BeLike '*needs at least 32768 leaf page-table page(s)*kernel_pt_pages*'
            Get-XenGuestMapping -DomainName pester-map | Should -BeNullOrEmpty
        }

        It 'refuses an unaligned address and maps nothing' {
            Add-XenGuestMapping -DomainName pester-map -VirtualAddress 0x400010 -Gfn 0x1000 -Count 1 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidConfiguration,*'
            $err[0].Exception.Message | Should -BeLike '*0x400010 is not 4 KiB aligned*'
            Get-XenGuestMapping -DomainName pester-map | Should -BeNullOrEmpty
        }

        It 'refuses a non-canonical range' {
            { Add-XenGuestMapping -DomainName pester-map -VirtualAddress 0x800000000000 -Gfn 0 -Count 1 -ErrorAction Stop } |
                Should -Throw -ErrorId 'InvalidConfiguration,*'
        }

        It 'refuses zero pages before reaching the guest kernel' {
            { Add-XenGuestMapping -DomainName pester-map -VirtualAddress 0x400000 -Gfn 0 -Count 0 -ErrorAction Stop } |
                Should -Throw -ErrorId 'ParameterArgumentValidationError,*'
        }
    }
}
