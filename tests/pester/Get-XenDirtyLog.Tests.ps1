BeforeDiscovery {
    $modes = @(@{ Mode = 'Hap' }, @{ Mode = 'Shadow' }, @{ Mode = 'Arm' })
}

Describe 'Get-XenDirtyLog' -Tag 'XenLab', 'Get-XenDirtyLog' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    BeforeEach {
        $domain = New-XenDomain -Name pester-log -MemoryMB 64
        Add-XenGuestMapping -DomainName pester-log -VirtualAddress 0x400000 -Gfn 0x1000 -Count 4
    }
    AfterEach { Remove-XenDomain -Name pester-log -Confirm:$false }

    Context 'DomainName' {
        It 'reports two pages written in <Mode> paging; -Peek keeps them, the default read cleans' -ForEach $modes {
            Set-XenPagingMode -DomainName pester-log -Mode $Mode
            Enable-XenLogDirty -DomainName pester-log
            Write-XenGuestMemory -DomainName pester-log -Address 0x1000000 -Value 1
            Write-XenGuestMemory -DomainName pester-log -Address 0x1003010 -Value 2
            $peek = Get-XenDirtyLog -DomainName pester-log -Peek
            $peek | Should -BeOfType XenLab.Dirty.DirtyLogView
            $peek.Cleaned | Should -BeFalse
            @($peek.DirtyGfns()) | Should -Be 0x1000, 0x1003
            $peek.FaultCount | Should -Be 2                                                          # one first write per page
            $again = Get-XenDirtyLog -DomainName pester-log -Peek
            @($again.DirtyGfns()) | Should -Be 0x1000, 0x1003                                        # still there
            $again.FaultCount | Should -Be 2                                                         # a peek resets nothing
            $clean = Get-XenDirtyLog -DomainName pester-log
            $clean.Cleaned | Should -BeTrue
            $clean.DirtyPages | Should -Be 2
            $clean.FaultCount | Should -Be 2
            Write-XenGuestMemory -DomainName pester-log -Address 0x1001000 -Value 3
            $next = Get-XenDirtyLog -DomainName pester-log
            $next.DirtyPages | Should -Be 1                                                          # cleaned, then one page
            $next.FaultCount | Should -Be 1                                                          # the clean reset the count
            (Get-XenDirtyLog -DomainName pester-log).FaultCount | Should -Be 0
        }

        It 'reports the guest''s page-table pages too after a write through a mapping' {
            Enable-XenLogDirty -DomainName pester-log
            Write-XenGuestMemory -DomainName pester-log -Address 0x403010 -Virtual -Value 2
            $gfns = @(Get-XenDirtyLog -DomainName pester-log -AsGfn)
            $gfns | Should -Contain 0x1003
            # The walk set accessed/dirty bits in the guest's tables, which live in RAM from gfn 0x100 (1 MiB).
            @($gfns | Where-Object { $_ -ge 0x100 -and $_ -lt 0x300 }).Count | Should -BeGreaterThan 0
        }

        It 'reports a page again once it is written after a clean' {
            Enable-XenLogDirty -DomainName pester-log
            Write-XenGuestMemory -DomainName pester-log -Address 0x400000 -Virtual -Value 1
            Get-XenDirtyLog -DomainName pester-log | Out-Null
            Write-XenGuestMemory -DomainName pester-log -Address 0x400000 -Virtual -Value 2
            Get-XenDirtyLog -DomainName pester-log -AsGfn | Where-Object { $_ -ge 0x1000 } | Should -Be 0x1000
        }

        It 'writes each dirty gfn as a number with -AsGfn, ready for Get-XenP2m' {
            Enable-XenLogDirty -DomainName pester-log
            Write-XenGuestMemory -DomainName pester-log -Address 0x1001000 -Value 1
            Write-XenGuestMemory -DomainName pester-log -Address 0x1002000 -Value 1
            $gfns = @(Get-XenDirtyLog -DomainName pester-log -AsGfn -Peek)
            $gfns | Should -Be 0x1001, 0x1002
            $gfns[0] | Should -BeOfType [uint64]
            (Get-XenDirtyLog -DomainName pester-log -AsGfn | Get-XenP2m -DomainName pester-log).Kind | Should -Be 'Ram', 'Ram'
        }

        It 'shows the dirty gfns in hex in its table' {
            Enable-XenLogDirty -DomainName pester-log
            Write-XenGuestMemory -DomainName pester-log -Address 0x1003000 -Value 1
            Get-XenDirtyLog -DomainName pester-log -Peek | Out-String -Width 120 | Should -Match '0x1003'
        }
    }

    Context 'Domain' {
        It 'reads the log of a domain piped from Get-XenDomain' {
            Enable-XenLogDirty -DomainName pester-log
            (Get-XenDomain pester-log | Get-XenDirtyLog).DomainName | Should -Be 'pester-log'
        }
    }

    Context 'Errors' {
        It 'reports a log that is not enabled as LogDirtyNotEnabled' {
            Get-XenDirtyLog -DomainName pester-log -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err[0].FullyQualifiedErrorId | Should -BeLike 'LogDirtyNotEnabled,*'
            $err[0].Exception.Message | Should -BeLike '*Enable-XenLogDirty*'
        }
    }
}
