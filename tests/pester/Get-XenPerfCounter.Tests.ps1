BeforeDiscovery {
    $counters = @(
        @{ Name = 'guest_phys_read' }
        @{ Name = 'tlb_flush_all' }
        @{ Name = 'balloon_refused' }
    )
}

Describe 'Get-XenPerfCounter' -Tag 'XenLab', 'Get-XenPerfCounter' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
        $domain = New-XenDomain -Name pester-perf -MemoryMB 256 -Vcpus 2
    }
    AfterAll { Remove-XenDomain -Name pester-perf -Confirm:$false }

    Context 'DomainName' {
        It 'writes every counter without -Name' {
            @(Get-XenPerfCounter -DomainName pester-perf).Count | Should -Be ([XenLab.Diagnostics.PerfCounterInfo]::Count)
        }

        It 'has a description for counter <Name>' -ForEach $counters {
            (Get-XenPerfCounter -DomainName pester-perf -Name $Name).Description | Should -Not -BeNullOrEmpty
        }

        It 'selects counters by wildcard' {
            (Get-XenPerfCounter -DomainName pester-perf -Name 'tlb_flush_*').Name | Should -Be @('tlb_flush_all', 'tlb_flush_page')
        }

        It 'counts a guest-physical read per page touched' {
            $before = (Get-XenPerfCounter pester-perf guest_phys_read).Value
            Read-XenGuestMemory -DomainName pester-perf -Address 0x1000ff0 -Length 32 | Out-Null
            (Get-XenPerfCounter pester-perf guest_phys_read).Value | Should -Be ($before + 2)
        }

        It 'writes only counters that moved with -NonZero' {
            $moved = Get-XenPerfCounter -DomainName pester-perf -NonZero
            $moved.Value | Should -Not -Contain 0
            $moved.Name | Should -Contain 'p2m_set'
        }
    }

    Context 'Domain' {
        It 'reads the counters of a domain piped from Get-XenDomain' {
            # Every RAM page populated at build set one p2m entry.
            (Get-XenDomain pester-perf | Get-XenPerfCounter -Name p2m_set).Value | Should -Be $domain.PopulatedPages
        }
    }

    Context 'Errors' {
        It 'reports an unknown counter name as CounterNotFound and lists the counters' {
            Get-XenPerfCounter -DomainName pester-perf -Name tlb_hits -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'CounterNotFound,*'
            $err[0].Exception.Message | Should -BeLike "*no counter named 'tlb_hits'*tlb_hit*"
        }

        It 'reports an unknown domain name as DomainNotFound' {
            { Get-XenPerfCounter -DomainName pester-perf-none -ErrorAction Stop } | Should -Throw -ErrorId 'DomainNotFound,*'
        }
    }
}
