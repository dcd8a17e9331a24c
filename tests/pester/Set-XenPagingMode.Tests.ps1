BeforeDiscovery {
    $switches = @(
        @{ From = 'Hap';    To = 'Shadow'; Options = 'oos=snapshot slots=3 prefetch=on' }
        @{ From = 'Shadow'; To = 'Hap';    Options = 'gpa_cache=32' }
        @{ From = 'Hap';    To = 'Arm';    Options = 'leaf_lookup=walk' }
    )
    $oosModes = @(
        @{ Oos = 'Off';        Text = 'oos=off' }
        @{ Oos = 'NoSnapshot'; Text = 'oos=nosnapshot' }
        @{ Oos = 'Snapshot';   Text = 'oos=snapshot' }
    )
}

Describe 'Set-XenPagingMode' -Tag 'XenLab', 'Set-XenPagingMode' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
        # Bytes written through va 0x400010 of a fresh mapping, read back the same way.
        function Write-PesterBytes { Write-XenGuestMemory -DomainName pester-pm -Address 0x400010 -Virtual -Value 0xDE, 0xAD, 0xBE, 0xEF -ErrorAction Stop }
        function Read-PesterBytes { (Read-XenGuestMemory -DomainName pester-pm -Address 0x400010 -Virtual -Length 4 -ErrorAction Stop).Bytes }
    }
    BeforeEach {
        $domain = New-XenDomain -Name pester-pm -MemoryMB 256 -Vcpus 2
        Add-XenGuestMapping -DomainName pester-pm -VirtualAddress 0x400000 -Gfn 0x1000 -Count 4
    }
    AfterEach { Get-XenDomain -Name 'pester-pm*' | Remove-XenDomain -Confirm:$false }

    Context 'DomainName' {
        It 'keeps guest memory written through the page tables across hap -> shadow -> hap' {
            Write-PesterBytes
            Set-XenPagingMode -DomainName pester-pm -Mode Shadow
            $domain.PagingMode | Should -Be 'Shadow'
            Read-PesterBytes | Should -Be 0xDE, 0xAD, 0xBE, 0xEF
            Set-XenPagingMode -DomainName pester-pm -Mode Hap
            $domain.PagingMode | Should -Be 'Hap'
            Read-PesterBytes | Should -Be 0xDE, 0xAD, 0xBE, 0xEF
            # The physical bytes behind the mapping (gfn 0x1000) are the same ones.
            (Read-XenGuestMemory -DomainName pester-pm -Address 0x1000010 -Length 4).Bytes | Should -Be 0xDE, 0xAD, 0xBE, 0xEF
        }

        It 'switches from <From> to <To> and shows the new mode''s options' -ForEach $switches {
            if ($From -ne 'Hap') { Set-XenPagingMode -DomainName pester-pm -Mode $From -ErrorAction Stop }
            Set-XenPagingMode -DomainName pester-pm -Mode $To -ErrorAction Stop
            $domain.PagingMode | Should -Be $To
            $domain.PagingOptionsText | Should -Be $Options
            Read-XenGuestMemory -DomainName pester-pm -Address 0x400000 -Virtual -Length 1 -ErrorAction Stop | Should -Not -BeNullOrEmpty
        }

        It 'changes nothing with -WhatIf' {
            Write-PesterBytes
            $switchesBefore = @(Get-XenTrace -DomainName pester-pm -Kind ModeSwitch).Count
            Set-XenPagingMode -DomainName pester-pm -Mode Shadow -Oos Off -HapGpaCache 0 -WhatIf
            $domain.PagingMode | Should -Be 'Hap'
            $domain.PagingOptionsText | Should -Be 'gpa_cache=32'
            $domain.Config.PagingOptions.Oos | Should -Be 'Snapshot'           # the option is not stored either
            @(Get-XenTrace -DomainName pester-pm -Kind ModeSwitch).Count | Should -Be $switchesBefore
            (Get-XenPerfCounter -DomainName pester-pm -Name paging_mode_switch).Value | Should -Be 0
            Read-PesterBytes | Should -Be 0xDE, 0xAD, 0xBE, 0xEF
        }

        It 'counts shadow faults once the domain runs in shadow mode' {
            (Get-XenPerfCounter -DomainName pester-pm -Name shadow_fault_fixed).Value | Should -Be 0
            Set-XenPagingMode -DomainName pester-pm -Mode Shadow
            Read-PesterBytes | Out-Null
            # The first access finds no shadow of the mapping: the fault handler builds it and retries.
            (Get-XenPerfCounter -DomainName pester-pm -Name shadow_fault_fixed).Value | Should -BeGreaterThan 0
            (Get-XenPerfCounter -DomainName pester-pm -Name paging_mode_switch).Value | Should -Be 1
        }

        It 'shows -Oos <Oos> in the domain''s PagingOptionsText' -ForEach $oosModes {
            Set-XenPagingMode -DomainName pester-pm -Mode Shadow -Oos $Oos
            $domain.PagingOptionsText | Should -BeLike "$Text *"
            (Get-XenDomain pester-pm | Out-String -Width 120) | Should -Match ([regex]::Escape($Text))
        }

        It 'keeps options not given, across switches to other modes' {
            Set-XenPagingMode -DomainName pester-pm -Mode Shadow -OosSlots 7 -ShadowPrefetch $false
            Set-XenPagingMode -DomainName pester-pm -Mode Hap -HapGpaCache 0
            $domain.PagingOptionsText | Should -Be 'gpa_cache=0'
            Set-XenPagingMode -DomainName pester-pm -Mode Shadow
            $domain.PagingOptionsText | Should -Be 'oos=snapshot slots=7 prefetch=off'
        }

        It 'sets HAP''s log-dirty mechanism and EPT leaf sizes, and shadow''s write removal, as the YAML keys do' {
            Set-XenPagingMode -DomainName pester-pm -Mode Hap -HapGpaCache 32 -HapLogDirty Wp -HapSuperpages 2M
            $domain.PagingOptionsText | Should -Be 'gpa_cache=32 logdirty=wp superpages=2m'
            $domain.Config.PagingOptions.HapLogDirty | Should -Be ([XenLab.Paging.Modes.HapLogDirty]::Wp)
            Set-XenPagingMode -DomainName pester-pm -Mode Hap -HapLogDirty Pml -HapSuperpages Off
            $domain.PagingOptionsText | Should -Be 'gpa_cache=32 superpages=off'
            Set-XenPagingMode -DomainName pester-pm -Mode Shadow -ShadowWriteRemoval Rmap
            $domain.PagingOptionsText | Should -BeLike '* write_removal=rmap'
            Set-XenPagingMode -DomainName pester-pm -Mode Hap -HapSuperpages On
            $domain.PagingOptionsText | Should -Be 'gpa_cache=32'
        }

        It 'refuses a -HapSuperpages value other than On, 2M or Off before running' {
            { Set-XenPagingMode -DomainName pester-pm -Mode Hap -HapSuperpages 1G -ErrorAction Stop } |
                Should -Throw -ErrorId 'ParameterArgumentValidationError,XenLab.PowerShell.SetXenPagingModeCommand'
        }

        It 'writes nothing without -PassThru and the domain with it' {
            Set-XenPagingMode -DomainName pester-pm -Mode Shadow | Should -BeNullOrEmpty
            $d = Set-XenPagingMode -DomainName pester-pm -Mode Hap -PassThru
            $d | Should -BeOfType XenLab.Domains.Domain
            $d.PagingMode | Should -Be 'Hap'
        }

        It 'converts the guest''s tables to AArch64 and back, keeping mappings and memory' {
            Write-PesterBytes
            Set-XenPagingMode -DomainName pester-pm -Mode Arm -ArmLeafLookup Vlpt -ErrorAction Stop
            $domain.PagingOptionsText | Should -Be 'leaf_lookup=vlpt'
            # The mapping is read back from the converted tables, whose leaf is now an AArch64 L3 entry.
            (Get-XenGuestMapping -DomainName pester-pm).Gfn | Should -Be 0x1000
            (Get-XenTranslation -DomainName pester-pm 0x400000 -Step | Where-Object Table -eq 'guest').Name | Should -Be 'L0', 'L1', 'L2', 'L3'
            Read-PesterBytes | Should -Be 0xDE, 0xAD, 0xBE, 0xEF
            Test-XenPaging -DomainName pester-pm | Should -BeTrue
            Set-XenPagingMode -DomainName pester-pm -Mode Hap
            (Get-XenTranslation -DomainName pester-pm 0x400000 -Step | Where-Object Table -eq 'guest').Name | Should -Be 'PML4E', 'PDPTE', 'PDE', 'PTE'
            Read-PesterBytes | Should -Be 0xDE, 0xAD, 0xBE, 0xEF
            Test-XenPaging -DomainName pester-pm | Should -BeTrue
        }

        It 'leaves a clean audit and a ModeSwitch trace event' {
            Write-PesterBytes
            Set-XenPagingMode -DomainName pester-pm -Mode Shadow
            Read-PesterBytes | Out-Null
            Test-XenPaging -DomainName pester-pm | Should -BeTrue
            (Get-XenTrace -DomainName pester-pm -Kind ModeSwitch -Last 1).Detail | Should -BeLike 'Hap->Shadow*'
        }
    }

    Context 'Domain' {
        It 'switches domains piped from Get-XenDomain' {
            New-XenDomain -Name pester-pm-2 -MemoryMB 64 | Out-Null
            Get-XenDomain -Name 'pester-pm*' | Set-XenPagingMode -Mode Shadow
            (Get-XenDomain -Name 'pester-pm*').PagingMode | Should -Be 'Shadow', 'Shadow'
        }
    }

    Context 'Errors' {
        It 'refuses a HAP cache size that is not a power of two, whatever the mode' {
            Set-XenPagingMode -DomainName pester-pm -Mode Shadow -HapGpaCache 3 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidConfiguration,*'
            $err[0].Exception.Message | Should -BeLike '*hap_gpa_cache 3*power of two*'
            $domain.PagingMode | Should -Be 'Hap'
            $domain.Config.PagingOptions.HapGpaCacheEntries | Should -Be 32
        }

        It 'refuses -OosSlots outside 2 to 64 before running' {
            { Set-XenPagingMode -DomainName pester-pm -Mode Shadow -OosSlots 1 } | Should -Throw -ErrorId 'ParameterArgumentValidationError,*'
            $domain.PagingMode | Should -Be 'Hap'
        }

        It 'reports an unknown domain name as DomainNotFound' {
            { Set-XenPagingMode -DomainName pester-pm-none -Mode Shadow -ErrorAction Stop } | Should -Throw -ErrorId 'DomainNotFound,*'
        }
    }
}
