BeforeDiscovery {
    $modes = @(
        @{ Paging = 'Hap' }
        @{ Paging = 'Shadow' }
        @{ Paging = 'Arm' }
    )
}

Describe 'Test-XenPaging' -Tag 'XenLab', 'Test-XenPaging' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
        function Remove-PesterDomain { Get-XenDomain -Name 'pester-audit*' | Remove-XenDomain -Confirm:$false }
        Remove-PesterDomain
    }
    AfterEach { Remove-PesterDomain }

    Context 'DomainName' {
        It 'is true for a fresh domain in <Paging> paging' -ForEach $modes {
            New-XenDomain -Name pester-audit -MemoryMB 128 -Paging $Paging -ErrorAction Stop | Out-Null
            $result = Test-XenPaging -DomainName pester-audit
            $result | Should -BeOfType [bool]
            $result | Should -BeTrue
        }

        It 'returns the audit with -Detailed for a fresh domain in <Paging> paging' -ForEach $modes {
            New-XenDomain -Name pester-audit -MemoryMB 128 -Paging $Paging -ErrorAction Stop | Out-Null
            $audit = Test-XenPaging -DomainName pester-audit -Detailed
            $audit | Should -BeOfType XenLab.Views.PagingAuditView
            $audit.DomainName | Should -Be 'pester-audit'
            $audit.Mode | Should -Be $Paging
            $audit.IsClean | Should -BeTrue
            $audit.ProblemCount | Should -Be 0
            $audit.Problems | Should -BeNullOrEmpty
            $audit.Options | Should -Be (Get-XenDomain pester-audit).PagingOptionsText
        }

        It 'stays clean after guest writes, mappings and switches' {
            New-XenDomain -Name pester-audit -MemoryMB 128 -Vcpus 2 | Out-Null
            Add-XenGuestMapping -DomainName pester-audit -VirtualAddress 0x400000 -Gfn 0x1000 -Count 8
            Set-XenPagingMode -DomainName pester-audit -Mode Shadow -Oos Snapshot
            foreach ($page in 0..7) {
                Write-XenGuestMemory -DomainName pester-audit -Address (0x400000 + $page * 0x1000) -Virtual -Value 1, 2, 3 -Vcpu ($page % 2)
            }
            Remove-XenGuestMapping -DomainName pester-audit -VirtualAddress 0x404000 -Count 2 -Confirm:$false
            Test-XenPaging -DomainName pester-audit | Should -BeTrue
            Set-XenPagingMode -DomainName pester-audit -Mode Hap
            (Test-XenPaging -DomainName pester-audit -Detailed).IsClean | Should -BeTrue
        }

        It 'shows the audit as a list with its problems' {
            New-XenDomain -Name pester-audit -MemoryMB 64 -Paging Shadow | Out-Null
            $text = Test-XenPaging -DomainName pester-audit -Detailed | Out-String
            $text | Should -Match 'IsClean\s+: True'
            $text | Should -Match 'Problems\s+: \(none\)'
        }

        It 'changes nothing' {
            New-XenDomain -Name pester-audit -MemoryMB 64 -Paging Shadow | Out-Null
            $before = @(Get-XenTrace -DomainName pester-audit).Count
            Test-XenPaging -DomainName pester-audit -Detailed | Out-Null
            @(Get-XenTrace -DomainName pester-audit).Count | Should -Be $before
            (Get-XenDomain pester-audit).PagingMode | Should -Be 'Shadow'
        }
    }

    Context 'Domain' {
        It 'audits every domain piped from Get-XenDomain' {
            New-XenDomain -Name pester-audit-a -MemoryMB 64 | Out-Null
            New-XenDomain -Name pester-audit-b -MemoryMB 64 -Paging Shadow | Out-Null
            $audits = @(Get-XenDomain -Name 'pester-audit-*' | Test-XenPaging -Detailed)
            $audits.Mode | Should -Be 'Hap', 'Shadow'
            $audits.IsClean | Should -Be $true, $true
        }
    }

    Context 'Errors' {
        It 'reports an unknown domain name as DomainNotFound' {
            { Test-XenPaging -DomainName pester-audit-none -ErrorAction Stop } | Should -Throw -ErrorId 'DomainNotFound,*'
        }
    }
}
