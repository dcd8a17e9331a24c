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

        It 'reports a domain object that was already removed as DomainRemoved' {
            $d = New-XenDomain -Name pester-rm-twice -MemoryMB 64
            Remove-XenDomain -Domain $d -Confirm:$false
            { Remove-XenDomain -Domain $d -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'DomainRemoved,*'
        }
    }

    Context 'A removed domain object' {
        BeforeAll {
            # Names outside pester-rm-*, which AfterEach removes.
            $gone = New-XenDomain -Name pester-gone -MemoryMB 64
            Remove-XenDomain -Domain $gone -Confirm:$false
            # A domain built afterwards gets the frames the removed one had (highest free first),
            # and here its name too: the stale object must not reach it.
            $next = New-XenDomain -Name pester-gone -MemoryMB 64
            $free = [XenLab.PowerShell.XenLabSession]::Host.Machine.FreeFrames
        }
        AfterAll { Remove-XenDomain -Name pester-gone -Confirm:$false }

        It 'is refused by <Command> with DomainRemoved' -ForEach @(
            @{ Command = 'Get-XenE820';          Run = { $gone | Get-XenE820 -ErrorAction Stop } }
            @{ Command = 'Write-XenGuestMemory'; Run = { $gone | Write-XenGuestMemory -Address 0 -Value 0x41 -ErrorAction Stop } }
            @{ Command = 'Read-XenGuestMemory';  Run = { $gone | Read-XenGuestMemory -Address 0 -Length 8 -ErrorAction Stop } }
            @{ Command = 'Set-XenPagingMode';    Run = { $gone | Set-XenPagingMode -Mode Shadow -ErrorAction Stop } }
            @{ Command = 'Add-XenFramebuffer';   Run = { $gone | Add-XenFramebuffer -Name m0 -Address 0xF0000000 -Width 64 -Height 64 -ErrorAction Stop } }
            @{ Command = 'Enable-XenLogDirty';   Run = { $gone | Enable-XenLogDirty -ErrorAction Stop } }
            @{ Command = 'Invoke-XenGuestCode';  Run = { $gone | Invoke-XenGuestCode -Assembly 'hlt' -ErrorAction Stop } }
        ) {
            $err = $null
            try { & $Run } catch { $err = $_ }
            $err | Should -Not -BeNullOrEmpty
            $err.FullyQualifiedErrorId | Should -BeLike 'DomainRemoved,*'
            $err.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        }

        It 'is refused through its methods with DomainRemoved, and the next domain''s memory is untouched' {
            $e = { $gone.TryWritePhysU64(0, 0x4141414141414141) } | Should -Throw -PassThru
            $e.Exception.InnerException.ErrorId | Should -Be 'DomainRemoved'
            $e = { $gone.Balloon(20000) } | Should -Throw -PassThru
            $e.Exception.InnerException.ErrorId | Should -Be 'DomainRemoved'
            (Read-XenGuestMemory -Domain $next -Address 0 -Length 8).Hex | Should -Be '0000000000000000'
        }

        It 'keeps its name as Name and says it was removed in DomainName' {
            $gone.Name | Should -Be 'pester-gone'
            $gone.IsDestroyed | Should -BeTrue
            $gone.DomainName | Should -BeLike '<removed domid *> pester-gone'
            $next.DomainName | Should -Be 'pester-gone'
        }

        It 'allocated nothing while being refused' {
            [XenLab.PowerShell.XenLabSession]::Host.Machine.FreeFrames | Should -Be $free
        }
    }
}
