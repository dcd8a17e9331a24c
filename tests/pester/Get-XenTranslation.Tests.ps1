BeforeDiscovery {
    $faults = @(
        # Not present, read, supervisor: nothing is mapped at 112 MiB.
        @{ Address = 0x7000000; Access = 'Read';  User = $false; Code = 0x0; Why = 'nothing is mapped there' }
        # Present, user: the mapping is supervisor-only.
        @{ Address = 0x400000;  Access = 'Read';  User = $true;  Code = 0x5; Why = 'a user read of a supervisor page' }
        # Present, write, user.
        @{ Address = 0x400000;  Access = 'Write'; User = $true;  Code = 0x7; Why = 'a user write of a supervisor page' }
    )
}

Describe 'Get-XenTranslation' -Tag 'XenLab', 'Get-XenTranslation' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    BeforeEach {
        $domain = New-XenDomain -Name pester-tr -MemoryMB 256 -Vcpus 2
        # Below 640 KiB: the first 2 MiB holds the legacy hole, so it is mapped by 4 KiB EPT leaves
        # (elsewhere a 2 MiB leaf ends the data page's nested walk one level early: 23, not 24).
        Add-XenGuestMapping -DomainName pester-tr -VirtualAddress 0x400000 -Gfn 0x40 -Count 4
    }
    AfterEach { Get-XenDomain -Name 'pester-tr*' | Remove-XenDomain -Confirm:$false }

    Context 'DomainName' {
        It 'costs 24 memory references for a cold HAP walk of a 4 KiB page' {
            Set-XenPagingMode -DomainName pester-tr -Mode Hap -HapGpaCache 0
            $t = Get-XenTranslation -DomainName pester-tr -VirtualAddress 0x400000
            $t | Should -BeOfType XenLab.Views.TranslationView
            $t.Status | Should -Be 'Ok'
            $t.Mode | Should -Be 'Hap'
            $t.Gfn | Should -Be 0x40
            $t.Mfn | Should -Not -BeNullOrEmpty
            # 4 guest entries, each at a gpa the EPT translates (4 x 4), plus the EPT walk of the page (4).
            $t.MemoryReferences | Should -Be 24
        }

        It 'steps through 4 guest and 20 EPT entries with -Step, one object each' {
            Set-XenPagingMode -DomainName pester-tr -Mode Hap -HapGpaCache 0
            $steps = @(Get-XenTranslation -DomainName pester-tr 0x400000 -Step)
            $steps.Count | Should -Be 24
            $steps | ForEach-Object { $_ | Should -BeOfType XenLab.Views.WalkStepView }
            @($steps | Where-Object Table -eq 'guest').Count | Should -Be 4
            @($steps | Where-Object Table -eq 'ept').Count | Should -Be 20
            $steps.Step | Should -Be (1..24)
            ($steps | Where-Object Table -eq 'guest').Name | Should -Be 'PML4E', 'PDPTE', 'PDE', 'PTE'
            # Each guest entry is preceded by the 4 EPT entries that translate its table's gpa.
            $steps[0..3].Table | Should -Be 'ept', 'ept', 'ept', 'ept'
            $steps[4].Table | Should -Be 'guest'
            # The guest PTE maps gfn 0x40: its raw entry carries frame address 0x40000.
            $pte = $steps | Where-Object { $_.Table -eq 'guest' -and $_.Name -eq 'PTE' }
            $pte.RawEntry -band 0x000ffffffffff000 | Should -Be 0x40000
        }

        It 'shows the steps as a table of at most 120 columns with 16-digit raw entries' {
            $lines = (Get-XenTranslation -DomainName pester-tr 0x400000 -Step | Format-Table | Out-String -Width 200) -split "`r?`n"
            ($lines | Measure-Object -Property Length -Maximum).Maximum | Should -BeLessOrEqual 120
            $lines | Where-Object { $_ -match '^\s+5 guest\s+PML4E\s+0\s+0x100000 0x[0-9a-f]{16} P RW' } | Should -Not -BeNullOrEmpty
        }

        It 'shows shadow entries once a shadow-mode access has built them' {
            Set-XenPagingMode -DomainName pester-tr -Mode Shadow
            Read-XenGuestMemory -DomainName pester-tr -Address 0x400000 -Virtual -Length 1 | Out-Null
            $t = Get-XenTranslation -DomainName pester-tr 0x400000
            $t.Mode | Should -Be 'Shadow'
            $t.Status | Should -Be 'Ok'
            $t.Gfn | Should -Be 0x40
            $steps = @(Get-XenTranslation -DomainName pester-tr 0x400000 -Step)
            @($steps | Where-Object Table -eq 'shadow').Count | Should -Be 4
            @($steps | Where-Object Table -eq 'guest').Count | Should -Be 4
            # The CPU walks only the shadows: 4 references.
            $t.MemoryReferences | Should -Be 4
        }

        It 'steps through 4 guest and 15 stage-2 entries in ARM mode' {
            Set-XenPagingMode -DomainName pester-tr -Mode Arm -ErrorAction Stop
            $t = Get-XenTranslation -DomainName pester-tr 0x400000
            $t.Mode | Should -Be 'Arm'
            $t.Gfn | Should -Be 0x40
            $t.MemoryReferences | Should -Be 19
            $steps = @(Get-XenTranslation -DomainName pester-tr 0x400000 -Step)
            @($steps | Where-Object Table -eq 'guest').Count | Should -Be 4
            @($steps | Where-Object Table -eq 'stage2').Count | Should -Be 15
        }

        It 'reports <Why> as Status PageFault with error code <Code>' -ForEach $faults {
            $t = Get-XenTranslation -DomainName pester-tr -VirtualAddress $Address -Access $Access -User:$User
            $t.Status | Should -Be 'PageFault'
            $t.ErrorCode | Should -Be $Code
            $t.Mfn | Should -BeNullOrEmpty
        }

        It 'writes the translation, not an error, for an unmapped address' {
            $t = Get-XenTranslation -DomainName pester-tr 0x7000000 -ErrorVariable err
            $err | Should -BeNullOrEmpty
            $t.Status | Should -Be 'PageFault'
            $t.ErrorCode | Should -Be 0
            $t.Gfn | Should -BeNullOrEmpty
        }

        It 'reports a non-canonical address as NonCanonical without walking' {
            $t = Get-XenTranslation -DomainName pester-tr 0x800000000000
            $t.Status | Should -Be 'NonCanonical'
            $t.MemoryReferences | Should -Be 0
            @(Get-XenTranslation -DomainName pester-tr 0x800000000000 -Step).Count | Should -Be 0
        }

        It 'takes an upper-half address written as a hex literal' {
            Add-XenGuestMapping -DomainName pester-tr -VirtualAddress 0xffff800000000000 -Gfn 0x2000 -Count 1
            $t = Get-XenTranslation -DomainName pester-tr 0xffff800000000000
            $t.VirtualAddress | Should -Be ([uint64]::Parse('ffff800000000000', 'AllowHexSpecifier'))
            $t.Status | Should -Be 'Ok'
            $t.Gfn | Should -Be 0x2000
        }

        It 'translates every address given, in order, through vCPU <_>' -ForEach 0, 1 {
            $t = @(Get-XenTranslation -DomainName pester-tr 0x400000, 0x401000, 0x403000 -Vcpu $_)
            $t.Gfn | Should -Be 0x40, 0x41, 0x43
            $t.Vcpu | Should -Be $_, $_, $_
        }

        It 'takes addresses from the pipeline' {
            $t = @(0x400000, 0x402000 | Get-XenTranslation -DomainName pester-tr)
            $t.Gfn | Should -Be 0x40, 0x42
        }

        It 'takes DomainName and VirtualAddress by property name from guest mappings' {
            $t = @(Get-XenGuestMapping -DomainName pester-tr | Get-XenTranslation -Access Write)
            $t.Count | Should -Be 1
            $t[0].Access | Should -Be 'write'
            $t[0].Gfn | Should -Be 0x40
            $t[0].Status | Should -Be 'Ok'
        }

        It 'does not fill the vCPU''s TLB' {
            Get-XenTranslation -DomainName pester-tr 0x400000 | Out-Null
            $hits = (Get-XenPerfCounter -DomainName pester-tr -Name tlb_hit).Value
            $misses = (Get-XenPerfCounter -DomainName pester-tr -Name tlb_miss).Value
            Read-XenGuestMemory -DomainName pester-tr -Address 0x400000 -Virtual -Length 1 | Out-Null
            # Had the explanation filled the TLB, this first real read would hit.
            (Get-XenPerfCounter -DomainName pester-tr -Name tlb_hit).Value | Should -Be $hits
            (Get-XenPerfCounter -DomainName pester-tr -Name tlb_miss).Value | Should -Be ($misses + 1)
        }
    }

    Context 'Domain' {
        It 'translates for domains piped from Get-XenDomain' {
            $t = Get-XenDomain pester-tr | Get-XenTranslation -VirtualAddress 0x400000
            $t.DomainName | Should -Be 'pester-tr'
            $t.Gfn | Should -Be 0x40
        }
    }

    Context 'Errors' {
        It 'reports a vCPU the domain does not have as VcpuOutOfRange' {
            Get-XenTranslation -DomainName pester-tr 0x400000 -Vcpu 2 -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err[0].FullyQualifiedErrorId | Should -BeLike 'VcpuOutOfRange,*'
            $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        }

        It 'reports an unknown domain name as DomainNotFound' {
            { Get-XenTranslation -DomainName pester-tr-none 0x400000 -ErrorAction Stop } | Should -Throw -ErrorId 'DomainNotFound,*'
        }
    }
}
