Describe 'Get-XenVcpu' -Tag 'XenLab', 'Get-XenVcpu' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    BeforeEach { $domain = New-XenDomain -Name pester-vcpu -MemoryMB 128 -Vcpus 3 }
    AfterEach { Get-XenDomain -Name 'pester-vcpu*' | Remove-XenDomain -Confirm:$false }

    Context 'DomainName' {
        It 'writes one VcpuView per vCPU by default' {
            $v = @(Get-XenVcpu -DomainName pester-vcpu)
            $v.Count | Should -Be 3
            $v[0] | Should -BeOfType XenLab.Views.VcpuView
            $v.Vcpu | Should -Be 0, 1, 2
            $v.DomainName | Should -Be 'pester-vcpu', 'pester-vcpu', 'pester-vcpu'
        }

        It 'shows the registers a run left, the decoded flags, and the instruction at RIP' {
            Invoke-XenGuestCode -DomainName pester-vcpu -Assembly "mov rax, -1`nadd rax, 1`nmov rbx, 0x1234`nnop`nhlt" -Breakpoint 0x70000000 -Budget 3 | Out-Null
            $v = Get-XenVcpu -DomainName pester-vcpu -Vcpu 0
            $v.Rax | Should -Be 0
            $v.Rbx | Should -Be 0x1234
            $v.Flags | Should -Be 'CF PF AF ZF'                 # -1 + 1: carry out, zero, even parity, nibble carry
            ($v.Rflags -band 0x41) | Should -Be 0x41            # CF and ZF bits
            $v.Instruction | Should -Be 'nop'                   # stopped by the budget before the nop
            $v.Cr3 | Should -Not -Be 0
            $v.PagingMode | Should -Be 'Hap'
            $v.InstructionsRetired | Should -Be 3
        }

        It 'shows CR2 after a page fault' {
            Invoke-XenGuestCode -DomainName pester-vcpu -Assembly "mov rax, [0x600000000]" | Out-Null
            (Get-XenVcpu -DomainName pester-vcpu -Vcpu 0).Cr2 | Should -Be 0x600000000
        }

        It 'shows the vCPUs asked for, by position too' {
            (Get-XenVcpu pester-vcpu 2, 0).Vcpu | Should -Be 2, 0
        }

        It 'shows the vCPU of a run result piped to it' {
            $v = Invoke-XenGuestCode -DomainName pester-vcpu -Vcpu 2 -Assembly "mov rcx, 77`nhlt" | Get-XenVcpu
            $v.Vcpu | Should -Be 2
            $v.Rcx | Should -Be 77
        }

        It 'shows a table within 120 columns with RIP and RAX in hex, and every register with Format-List' {
            Invoke-XenGuestCode -DomainName pester-vcpu -Assembly "mov r15, 0xabcdef`nhlt" | Out-Null
            $table = Get-XenVcpu -DomainName pester-vcpu -Vcpu 0 | Out-String -Width 120
            $table | Should -Match '0x7000000b'
            ($table -split "`n" | Measure-Object -Maximum -Property Length).Maximum | Should -BeLessOrEqual 120
            $list = Get-XenVcpu -DomainName pester-vcpu -Vcpu 0 | Format-List | Out-String -Width 120
            $list | Should -Match 'R15\s+: 0x0000000000abcdef'
            $list | Should -Match 'Rflags\s+: 0x'
        }

        It 'changes nothing by reading' {
            Invoke-XenGuestCode -DomainName pester-vcpu -Assembly "nop`nhlt" -Budget 0 | Out-Null
            $before = Get-XenPerfCounter -DomainName pester-vcpu -Name cpu_instructions_retired
            1..3 | ForEach-Object { Get-XenVcpu -DomainName pester-vcpu | Out-Null }
            (Get-XenVcpu -DomainName pester-vcpu -Vcpu 0).Rip | Should -Be 0x70000000
            (Get-XenPerfCounter -DomainName pester-vcpu -Name cpu_instructions_retired).Value | Should -Be $before.Value
        }
    }

    Context 'Domain' {
        It 'shows the vCPUs of every domain piped to it' {
            New-XenDomain -Name pester-vcpu-2 -MemoryMB 64 | Out-Null
            (Get-XenDomain 'pester-vcpu*' | Get-XenVcpu).DomainName | Should -Be 'pester-vcpu', 'pester-vcpu', 'pester-vcpu', 'pester-vcpu-2'
        }
    }

    Context 'Errors' {
        It 'reports a vCPU the domain does not have (VcpuOutOfRange) and still shows the others' {
            $v = @(Get-XenVcpu -DomainName pester-vcpu -Vcpu 0, 5 -ErrorVariable err -ErrorAction SilentlyContinue)
            $v.Vcpu | Should -Be 0
            $err[0].FullyQualifiedErrorId | Should -BeLike 'VcpuOutOfRange,*'
        }

        It 'reports a domain that does not exist (DomainNotFound)' {
            Get-XenVcpu -DomainName pester-vcpu-none -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'DomainNotFound,*'
        }
    }
}
