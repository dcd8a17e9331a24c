BeforeDiscovery {
    $modes = @(@{ Mode = 'Hap' }, @{ Mode = 'Shadow' }, @{ Mode = 'Arm' })
}

Describe 'Invoke-XenWorkload' -Tag 'XenLab', 'Invoke-XenWorkload' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    BeforeEach { $domain = New-XenDomain -Name pester-wl -MemoryMB 128 -Vcpus 2 }
    AfterEach { Get-XenDomain -Name 'pester-wl*' | Remove-XenDomain -Confirm:$false }

    Context 'DomainName' {
        It 'runs pt-churn in <Mode> paging: 64 pages written and read per round' -ForEach $modes {
            Set-XenPagingMode -DomainName pester-wl -Mode $Mode
            $r = Invoke-XenWorkload -DomainName pester-wl -Name pt-churn -Rounds 10
            $r | Should -BeOfType XenLab.Lab.WorkloadResult
            $r.Workload | Should -Be 'pt-churn'
            $r.Mode | Should -Be $Mode
            $r.Operations | Should -Be 1280
            $r.Counters['guest_virt_write'] | Should -Be 640
            Test-XenPaging -DomainName pester-wl | Should -BeTrue
        }

        It 'does the same guest work in every mode but costs differently' {
            Set-XenPagingMode -DomainName pester-wl -Mode Shadow
            $shadow = Invoke-XenWorkload -DomainName pester-wl -Name pte-update -Rounds 32
            Set-XenPagingMode -DomainName pester-wl -Mode Hap
            $hap = Invoke-XenWorkload -DomainName pester-wl -Name pte-update -Rounds 32
            $hap.Operations | Should -Be $shadow.Operations
            $shadow.Counters.Keys | Should -Contain 'shadow_fault_fixed'
            $hap.Counters.Keys | Should -Not -Contain 'shadow_fault_fixed'
        }

        It 'runs 200 rounds by default' {
            (Invoke-XenWorkload -DomainName pester-wl -Name pt-churn).Operations | Should -Be (200 * 128)
        }

        It 'writes one PerfCounterView per counter that moved with -AsCounter' {
            $c = @(Invoke-XenWorkload -DomainName pester-wl -Name pt-churn -Rounds 5 -AsCounter)
            $c[0] | Should -BeOfType XenLab.Views.PerfCounterView
            $c.Value | Should -Not -Contain 0
            ($c | Where-Object Name -eq 'guest_virt_read').Value | Should -Be 320
            ($c | Where-Object Name -eq 'guest_virt_read').Description | Should -Not -BeNullOrEmpty
            $c.Name | Should -Be ($c.Name | Sort-Object)
        }

        It 'shows the counters in its list view' {
            Invoke-XenWorkload -DomainName pester-wl -Name pt-churn -Rounds 2 | Format-List | Out-String -Width 120 |
                Should -Match 'guest_virt_write = 128'
        }
    }

    Context 'Domain' {
        It 'runs in domains piped from Get-XenDomain' {
            New-XenDomain -Name pester-wl-2 -MemoryMB 128 | Out-Null
            (Get-XenDomain 'pester-wl*' | Invoke-XenWorkload -Name pt-churn -Rounds 1).DomainName | Should -Be 'pester-wl', 'pester-wl-2'
        }
    }

    Context 'Errors' {
        It 'refuses an unknown workload before running' {
            { Invoke-XenWorkload -DomainName pester-wl -Name fork-bomb } | Should -Throw -ErrorId 'ParameterArgumentValidationError,*'
        }

        It 'refuses a domain without RAM where the workload runs' {
            New-XenDomain -Name pester-wl-small -MemoryMB 32 | Out-Null
            Invoke-XenWorkload -DomainName pester-wl-small -Name pt-churn -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidConfiguration,*'
            $err[0].Exception.Message | Should -BeLike '*gfn 0x4000*'
        }
    }

    Context 'Progress and stopping' {
        BeforeAll { . (Join-Path $PSScriptRoot 'XenLabBackground.ps1') }

        It 'writes progress per percent of its rounds, ending with a completed record' {
            $records = Get-XenLabProgress 'Invoke-XenWorkload -DomainName pester-wl -Name pt-churn -Rounds 400 | Out-Null'
            $records.Count | Should -Be 102                                         # 0%, 1% .. 100%, then Completed
            $records[0].Activity | Should -Be "Workload pt-churn on domain 'pester-wl'"
            $records[0].PercentComplete | Should -Be 0
            $records[200 / 4].StatusDescription | Should -Be 'round 200 of 400'
            $percent = $records | ForEach-Object PercentComplete
            for ($i = 1; $i -lt 101; $i++) { $percent[$i] | Should -Be ($percent[$i - 1] + 1) }
            $records[-1].RecordType | Should -Be 'Completed'
        }

        It 'stops between whole rounds on Ctrl+C, leaving a domain that audits clean and still works' {
            $bg = Start-XenLabBackground 'Invoke-XenWorkload -DomainName pester-wl -Name pt-churn -Rounds 1000000'
            Wait-XenLabProgress $bg -Count 2                                        # 1% (10000 rounds) is done: it is running
            $bg.Handle.IsCompleted | Should -BeFalse
            Stop-XenLabBackground $bg | Should -BeLessThan ([TimeSpan]::FromSeconds(10))
            $bg.PowerShell.InvocationStateInfo.State | Should -Be 'Stopped'
            $bg.Output.Count | Should -Be 0                                         # a stopped workload writes no result
            $bg.PowerShell.Dispose()
            $writes = (Get-XenPerfCounter -DomainName pester-wl -Name guest_virt_write).Value
            $writes % 64 | Should -Be 0                                             # only whole rounds of 64 page writes ran
            $writes | Should -BeLessThan (1000000 * 64)
            (Get-XenPerfCounter -DomainName pester-wl -Name guest_virt_read).Value | Should -Be $writes
            @(Get-XenGuestMapping -DomainName pester-wl | Where-Object VirtualAddress -eq 0x10000000).Count | Should -Be 0   # the last round unmapped its pages
            Test-XenPaging -DomainName pester-wl | Should -BeTrue
            (Invoke-XenWorkload -DomainName pester-wl -Name pt-churn -Rounds 3).Operations | Should -Be 384
        }
    }
}
