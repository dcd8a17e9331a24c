Describe 'Remove-XenDomain' -Tag 'XenLab', 'Remove-XenDomain' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    AfterEach { Get-XenDomain -Name 'pester-rm-*' | Remove-XenDomain -Confirm:$false }

    Context 'Name' {
        It 'destroys the named domain' {
            New-XenDomain -Name pester-rm-a -MemoryMB 64 | Out-Null
            Remove-XenDomain -Name pester-rm-a -Confirm:$false
            Get-XenDomain -Name pester-rm-a -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        }

        It 'destroys every domain a wildcard matches' {
            'pester-rm-w1', 'pester-rm-w2' | ForEach-Object { New-XenDomain -Name $_ -MemoryMB 64 | Out-Null }
            Remove-XenDomain -Name 'pester-rm-w*' -Confirm:$false
            Get-XenDomain -Name 'pester-rm-w*' | Should -BeNullOrEmpty
        }

        It 'gives the machine frames back to the host' {
            $before = [XenLab.PowerShell.XenLabSession]::Host.Machine.FreeFrames
            $d = New-XenDomain -Name pester-rm-frames -MemoryMB 64
            # RAM pages plus the frames the paging mode holds (EPT tables for HAP).
            [XenLab.PowerShell.XenLabSession]::Host.Machine.FreeFrames | Should -Be ($before - $d.PopulatedPages - $d.PagingFrames)
            Remove-XenDomain -Name pester-rm-frames -Confirm:$false
            [XenLab.PowerShell.XenLabSession]::Host.Machine.FreeFrames | Should -Be $before
        }

        It 'keeps the domain with -WhatIf' {
            New-XenDomain -Name pester-rm-whatif -MemoryMB 64 | Out-Null
            Remove-XenDomain -Name pester-rm-whatif -WhatIf
            (Get-XenDomain -Name pester-rm-whatif).Name | Should -Be 'pester-rm-whatif'
        }
    }

    Context 'Domain' {
        It 'destroys domains piped from Get-XenDomain' {
            'pester-rm-p1', 'pester-rm-p2' | ForEach-Object { New-XenDomain -Name $_ -MemoryMB 64 | Out-Null }
            Get-XenDomain -Name 'pester-rm-p*' | Remove-XenDomain -Confirm:$false
            Get-XenDomain -Name 'pester-rm-p*' | Should -BeNullOrEmpty
        }

        It 'marks the removed domain object as destroyed' {
            $d = New-XenDomain -Name pester-rm-obj -MemoryMB 64
            Remove-XenDomain -Domain $d -Confirm:$false
            $d.IsDestroyed | Should -BeTrue
        }
    }

    Context 'Errors' {
        It 'reports a name that matches nothing as DomainNotFound' {
            { Remove-XenDomain -Name pester-rm-none -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'DomainNotFound,*'
        }

        It 'reports a domain object that was already removed as DomainDestroyed' {
            $d = New-XenDomain -Name pester-rm-twice -MemoryMB 64
            Remove-XenDomain -Domain $d -Confirm:$false
            { Remove-XenDomain -Domain $d -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'DomainDestroyed,*'
        }
    }
}
