Describe 'Remove-XenFramebuffer' -Tag 'XenLab', 'Remove-XenFramebuffer' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    BeforeEach {
        $domain = New-XenDomain -Name pester-fb-rm -MemoryMB 64
        Add-XenFramebuffer -DomainName pester-fb-rm -Name mon0 -Address 0xF0000000 -Width 1024 -Height 768
        Add-XenFramebuffer -DomainName pester-fb-rm -Name mon1 -Gfn 0xF0400 -Width 640 -Height 480
    }
    AfterEach { Remove-XenDomain -Name pester-fb-rm -Confirm:$false }

    Context 'DomainName' {
        It 'unplugs one monitor, gives its frames back and leaves the other' {
            $populated = (Get-XenPerfCounter pester-fb-rm framebuffer_pages).Value
            Remove-XenFramebuffer -DomainName pester-fb-rm -Framebuffer mon0 -Confirm:$false
            (Get-XenFramebuffer -DomainName pester-fb-rm).Name | Should -Be 'mon1'
            # The PCI hole is identity again where the monitor was.
            (Get-XenP2m -DomainName pester-fb-rm -Gfn 0xF0000, 0xF02FF).Kind | Should -Be 'Identity', 'Identity'
            (Get-XenP2m -DomainName pester-fb-rm -Gfn 0xF0400).Kind | Should -Be 'Ram'
            $populated | Should -Be (768 + 300)                             # 640x480x32 is 300 pages
        }

        It 'stops tracking the monitor: plugged in again, it starts all dirty' {
            Get-DirtyVram -DomainName pester-fb-rm | Out-Null
            Remove-XenFramebuffer -DomainName pester-fb-rm -Framebuffer mon0 -Confirm:$false
            (Get-XenFramebuffer -DomainName pester-fb-rm mon1).Tracked | Should -BeTrue     # the other goes on
            Add-XenFramebuffer -DomainName pester-fb-rm -Name mon0 -Address 0xF0000000 -Width 1024 -Height 768
            (Get-DirtyVram -DomainName pester-fb-rm -Framebuffer mon0).AllDirty | Should -BeTrue
            (Get-DirtyVram -DomainName pester-fb-rm -Framebuffer mon1).AllDirty | Should -BeFalse
        }

        It 'warns that the guest still maps an unplugged monitor' {
            Mount-XenFramebuffer -DomainName pester-fb-rm -Framebuffer mon0 -VirtualAddress 0x40000000
            Remove-XenFramebuffer -DomainName pester-fb-rm -Framebuffer mon0 -Confirm:$false -WarningVariable warn -WarningAction SilentlyContinue
            $warn[0].Message | Should -BeLike '*0x40000000*Remove-XenGuestMapping*'
        }

        It 'unplugs nothing with -WhatIf' {
            Remove-XenFramebuffer -DomainName pester-fb-rm -Framebuffer mon0, mon1 -WhatIf
            @(Get-XenFramebuffer -DomainName pester-fb-rm).Count | Should -Be 2
        }

        It 'is a high-impact change that asks for confirmation' {
            (Get-Command Remove-XenFramebuffer).ImplementingType.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false)[0].ConfirmImpact |
                Should -Be 'High'
        }
    }

    Context 'Pipeline' {
        It 'unplugs framebuffers piped from Get-XenFramebuffer by DomainName and Framebuffer' {
            Get-XenFramebuffer -DomainName pester-fb-rm | Remove-XenFramebuffer -Confirm:$false
            Get-XenFramebuffer -DomainName pester-fb-rm | Should -BeNullOrEmpty
        }

        It 'unplugs from a domain piped from Get-XenDomain' {
            Get-XenDomain pester-fb-rm | Remove-XenFramebuffer -Framebuffer mon1 -Confirm:$false
            (Get-XenFramebuffer -DomainName pester-fb-rm).Name | Should -Be 'mon0'
        }
    }

    Context 'Errors' {
        It 'reports an unknown framebuffer as FramebufferNotFound and goes on with the others' {
            Remove-XenFramebuffer -DomainName pester-fb-rm -Framebuffer nope, mon1 -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'FramebufferNotFound,*'
            $err[0].Exception.Message | Should -BeLike "*no framebuffer 'nope'*'mon0', 'mon1'*"
            (Get-XenFramebuffer -DomainName pester-fb-rm).Name | Should -Be 'mon0'
        }
    }
}
