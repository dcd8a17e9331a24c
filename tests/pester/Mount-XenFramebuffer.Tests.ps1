BeforeDiscovery {
    $modes = @(@{ Mode = 'Hap' }, @{ Mode = 'Shadow' }, @{ Mode = 'Arm' })
}

Describe 'Mount-XenFramebuffer' -Tag 'XenLab', 'Mount-XenFramebuffer' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    BeforeEach {
        $domain = New-XenDomain -Name pester-fb-mnt -MemoryMB 64 -Vcpus 2
        Add-XenFramebuffer -DomainName pester-fb-mnt -Name mon0 -Address 0xF0000000 -Width 1024 -Height 768
    }
    AfterEach { Remove-XenDomain -Name pester-fb-mnt -Confirm:$false }

    Context 'DomainName' {
        It 'has the guest kernel map all 768 pages at the address, writable' {
            $fb = Mount-XenFramebuffer -DomainName pester-fb-mnt -Framebuffer mon0 -VirtualAddress 0x40000000 -PassThru
            $fb.Mounts | Should -Be 0x40000000
            $m = Get-XenGuestMapping -DomainName pester-fb-mnt
            $m.VirtualAddress | Should -Be 0x40000000
            $m.Gfn | Should -Be 0xF0000
            $m.Count | Should -Be 768
            $m.Writable | Should -BeTrue
        }

        It 'writes through the mount land in the framebuffer''s frames' {
            Mount-XenFramebuffer -DomainName pester-fb-mnt -Framebuffer mon0 -VirtualAddress 0x40000000
            Write-XenGuestMemory -DomainName pester-fb-mnt -Address 0x402FF000 -Virtual -Value 7, 8
            (Read-XenGuestMemory -DomainName pester-fb-mnt -Address 0xF02FF000 -Length 2).Bytes | Should -Be 7, 8
        }

        It 'tracks writes through both of two aliases in <Mode> paging' -ForEach $modes {
            Set-XenPagingMode -DomainName pester-fb-mnt -Mode $Mode
            Mount-XenFramebuffer -DomainName pester-fb-mnt -Framebuffer mon0 -VirtualAddress 0x40000000
            $fb = Mount-XenFramebuffer -DomainName pester-fb-mnt -Framebuffer mon0 -VirtualAddress 0x80000000 -PassThru
            $fb.Mounts | Should -Be 0x40000000, 0x80000000L
            (Get-DirtyVram -DomainName pester-fb-mnt).AllDirty | Should -BeTrue          # tracking starts
            Write-XenGuestMemory -DomainName pester-fb-mnt -Address 0x40003000 -Virtual -Value 1
            Write-XenGuestMemory -DomainName pester-fb-mnt -Address 0x80007000 -Virtual -Value 1 -Vcpu 1
            $v = Get-DirtyVram -DomainName pester-fb-mnt
            $v.AllDirty | Should -BeFalse
            $v.DirtyPageIndexes | Should -Be 3, 7                                       # one write through each alias
            Test-XenPaging -DomainName pester-fb-mnt | Should -BeTrue
        }

        It 'maps read-only with -ReadOnly: a write through it faults' {
            Mount-XenFramebuffer -DomainName pester-fb-mnt -Framebuffer mon0 -VirtualAddress 0x40000000 -ReadOnly
            (Get-XenGuestMapping -DomainName pester-fb-mnt).Writable | Should -BeFalse
            Write-XenGuestMemory -DomainName pester-fb-mnt -Address 0x40000000 -Virtual -Value 1 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'GuestPageFault,*'
        }

        It 'maps nothing with -WhatIf and writes nothing without -PassThru' {
            Mount-XenFramebuffer -DomainName pester-fb-mnt -Framebuffer mon0 -VirtualAddress 0x40000000 -WhatIf
            Get-XenGuestMapping -DomainName pester-fb-mnt | Should -BeNullOrEmpty
            (Get-XenFramebuffer -DomainName pester-fb-mnt).Mounts | Should -BeNullOrEmpty
            Mount-XenFramebuffer -DomainName pester-fb-mnt -Framebuffer mon0 -VirtualAddress 0x40000000 | Should -BeNullOrEmpty
        }
    }

    Context 'Pipeline' {
        It 'mounts a framebuffer piped from Get-XenFramebuffer' {
            Get-XenFramebuffer -DomainName pester-fb-mnt | Mount-XenFramebuffer -VirtualAddress 0x40000000
            (Get-XenFramebuffer -DomainName pester-fb-mnt).Mounts | Should -Be 0x40000000
        }
    }

    Context 'Errors' {
        It 'refuses an unaligned address and records no mount' {
            Mount-XenFramebuffer -DomainName pester-fb-mnt -Framebuffer mon0 -VirtualAddress 0x40000010 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidConfiguration,*'
            (Get-XenFramebuffer -DomainName pester-fb-mnt).Mounts | Should -BeNullOrEmpty
        }

        It 'reports an unknown framebuffer as FramebufferNotFound' {
            { Mount-XenFramebuffer -DomainName pester-fb-mnt -Framebuffer mon9 -VirtualAddress 0x40000000 -ErrorAction Stop } |
                Should -Throw -ErrorId 'FramebufferNotFound,*'
        }
    }
}
