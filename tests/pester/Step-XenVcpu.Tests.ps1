Describe 'Step-XenVcpu' -Tag 'XenLab', 'Step-XenVcpu' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    BeforeEach {
        $domain = New-XenDomain -Name pester-step -MemoryMB 128 -Vcpus 2
        # Loaded, not run: RIP at the first instruction.
        Invoke-XenGuestCode -DomainName pester-step -Assembly "mov rax, 5`nadd rax, 7`nmov rbx, rax`nhlt" -Budget 0 | Out-Null
    }
    AfterEach { Get-XenDomain -Name 'pester-step*' | Remove-XenDomain -Confirm:$false }

    Context 'DomainName' {
        It 'executes -Count 3 instructions and writes 3 results, each naming the instruction that ran' {
            $steps = @(Step-XenVcpu -DomainName pester-step -Count 3)
            $steps.Count | Should -Be 3
            $steps[0] | Should -BeOfType XenLab.Views.RunResultView
            $steps.Step | Should -Be 1, 2, 3
            $steps.StepInstruction | Should -Be 'mov rax,5', 'add rax,7', 'mov rbx,rax'
            $steps.StepAddress[0] | Should -Be 0x70000000
            $steps.Reason | Should -Be 'BudgetExhausted', 'BudgetExhausted', 'BudgetExhausted'
            $steps.Instructions | Should -Be 1, 1, 1
            $steps[2].Instruction | Should -Be 'hlt'                     # what runs next
            $steps[1].StepAddress | Should -Be $steps[0].Rip              # each step starts where the last ended
            (Get-XenVcpu -DomainName pester-step -Vcpu 0).Rbx | Should -Be 12
        }

        It 'steps one instruction by default' {
            @(Step-XenVcpu -DomainName pester-step).Count | Should -Be 1
            (Get-XenVcpu -DomainName pester-step -Vcpu 0).Rax | Should -Be 5
        }

        It 'stops stepping at the hlt though more steps were asked for' {
            $steps = @(Step-XenVcpu -DomainName pester-step -Count 10)
            $steps.Count | Should -Be 4
            $steps[-1].Reason | Should -Be 'Halted'
            $steps[-1].StepInstruction | Should -Be 'hlt'
        }

        It 'stops stepping at a page fault, the instruction not retired' {
            Invoke-XenGuestCode -DomainName pester-step -Assembly "mov rax, 0x500000000`nmov [rax], eax`nhlt" -Budget 0 | Out-Null
            $steps = @(Step-XenVcpu -DomainName pester-step -Count 5)
            $steps.Count | Should -Be 2
            $steps[1].Reason | Should -Be 'PageFault'
            $steps[1].Instructions | Should -Be 0
            $steps[1].Rip | Should -Be $steps[1].StepAddress
            $steps[1].ErrorCode | Should -Be 0x2
        }

        It 'steps the -Vcpu given' {
            Invoke-XenGuestCode -DomainName pester-step -Vcpu 1 -Assembly "mov rcx, 9`nhlt" -Budget 0 | Out-Null
            Step-XenVcpu -DomainName pester-step -Vcpu 1 | Select-Object -ExpandProperty Vcpu | Should -Be 1
            (Get-XenVcpu -DomainName pester-step -Vcpu 1).Rcx | Should -Be 9
            (Get-XenVcpu -DomainName pester-step -Vcpu 0).Rip | Should -Be 0x70000000
        }

        It 'shows each step in a table within 120 columns: address, instruction, reason, next RIP' {
            $text = Step-XenVcpu -DomainName pester-step -Count 2 | Out-String -Width 120
            $text | Should -Match '0x70000000 mov rax,5\s+BudgetExhausted\s+0x7000000a'
            ($text -split "`n" | Measure-Object -Maximum -Property Length).Maximum | Should -BeLessOrEqual 120
        }

        It 'runs nothing with -WhatIf' {
            Step-XenVcpu -DomainName pester-step -Count 3 -WhatIf | Should -BeNullOrEmpty
            (Get-XenVcpu -DomainName pester-step -Vcpu 0).Rip | Should -Be 0x70000000
        }
    }

    Context 'Domain' {
        It 'steps the vCPUs piped from Get-XenVcpu' {
            $steps = @(Get-XenDomain pester-step | Get-XenVcpu -Vcpu 0 | Step-XenVcpu -Count 2)
            $steps.Count | Should -Be 2
        }

        It 'steps a domain object' {
            (Get-XenDomain pester-step | Step-XenVcpu).StepInstruction | Should -Be 'mov rax,5'
        }
    }

    Context 'Errors' {
        It 'refuses an Arm domain (GuestCodeIsX86Only)' {
            Set-XenPagingMode -DomainName pester-step -Mode Arm
            Step-XenVcpu -DomainName pester-step -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err[0].FullyQualifiedErrorId | Should -BeLike 'GuestCodeIsX86Only,*'
        }

        It 'refuses a vCPU the domain does not have (VcpuOutOfRange)' {
            Step-XenVcpu -DomainName pester-step -Vcpu 4 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'VcpuOutOfRange,*'
        }

        It 'refuses -Count 0 before running' {
            { Step-XenVcpu -DomainName pester-step -Count 0 } | Should -Throw -ErrorId 'ParameterArgumentValidationError,*'
        }
    }
}
