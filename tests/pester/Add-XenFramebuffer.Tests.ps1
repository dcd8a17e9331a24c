BeforeDiscovery {
    $modes = @(@{ Mode = 'Hap' }, @{ Mode = 'Shadow' }, @{ Mode = 'Arm' })
}

Describe 'Add-XenFramebuffer' -Tag 'XenLab', 'Add-XenFramebuffer' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    BeforeEach { $domain = New-XenDomain -Name pester-fb-add -MemoryMB 64 }
    AfterEach { Get-XenDomain -Name 'pester-fb-add*' | Remove-XenDomain -Confirm:$false }

    Context 'DomainNameAddress' {
        It 'plugs a 1024x768x32 monitor at 0xF0000000 in as 768 pages with a 4096-byte stride' {
            $fb = Add-XenFramebuffer -DomainName pester-fb-add -Name mon0 -Address 0xF0000000 -Width 1024 -Height 768 -PassThru
            $fb | Should -BeOfType XenLab.Views.FramebufferView
            $fb.Pages | Should -Be 768
            $fb.Stride | Should -Be 4096
            $fb.Bpp | Should -Be 32
            $fb.FirstGfn | Should -Be 0xF0000
            $fb.Tracked | Should -BeFalse                                   # tracking starts with the first Get-DirtyVram
            $fb.Framebuffer | Should -Be 'mon0'
        }

        It 'populates frames inside the default PCI hole, where the p2m had identity entries' {
            (Get-XenP2m -DomainName pester-fb-add -Gfn 0xF0000).Kind | Should -Be 'Identity'
            $before = (Get-XenPerfCounter pester-fb-add framebuffer_pages).Value
            Add-XenFramebuffer -DomainName pester-fb-add -Name mon0 -Address 0xF0000000 -Width 1024 -Height 768
            (Get-XenP2m -DomainName pester-fb-add -Gfn 0xF0000, 0xF02FF).Kind | Should -Be 'Ram', 'Ram'
            (Get-XenPerfCounter pester-fb-add framebuffer_pages).Value | Should -Be ($before + 768)
            # The frames hold what is written: guest-physical RAM, not MMIO that drops writes.
            Write-XenGuestMemory -DomainName pester-fb-add -Address 0xF0005000 -Value 0x11, 0x22
            (Read-XenGuestMemory -DomainName pester-fb-add -Address 0xF0005000 -Length 2).Bytes | Should -Be 0x11, 0x22
        }

        It 'rounds a scanline layout up to whole pages and honours -Stride and -Bpp' {
            $fb = Add-XenFramebuffer -DomainName pester-fb-add -Name small -Address 0xF0000000 -Width 640 -Height 480 -Bpp 16 -PassThru
            $fb.Stride | Should -Be 1280
            $fb.Pages | Should -Be 150                                      # 640*2*480 = 614400 bytes = 150 pages
            $wide = Add-XenFramebuffer -DomainName pester-fb-add -Name wide -Address 0xF1000000 -Width 100 -Height 10 -Stride 8192 -PassThru
            $wide.Pages | Should -Be 20
        }

        It 'writes nothing without -PassThru and plugs nothing in with -WhatIf' {
            Add-XenFramebuffer -DomainName pester-fb-add -Name mon0 -Address 0xF0000000 -Width 1024 -Height 768 -WhatIf
            Get-XenFramebuffer -DomainName pester-fb-add | Should -BeNullOrEmpty
            (Get-XenP2m -DomainName pester-fb-add -Gfn 0xF0000).Kind | Should -Be 'Identity'
            Add-XenFramebuffer -DomainName pester-fb-add -Name mon0 -Address 0xF0000000 -Width 1024 -Height 768 | Should -BeNullOrEmpty
        }

        It 'hot-plugs a monitor while the domain runs <Mode> paging' -ForEach $modes {
            Set-XenPagingMode -DomainName pester-fb-add -Mode $Mode
            Add-XenFramebuffer -DomainName pester-fb-add -Name mon0 -Address 0xF0000000 -Width 1024 -Height 768
            Mount-XenFramebuffer -DomainName pester-fb-add -Framebuffer mon0 -VirtualAddress 0x40000000
            Write-XenGuestMemory -DomainName pester-fb-add -Address 0x40005000 -Virtual -Value 0xAB -ErrorAction Stop
            (Read-XenGuestMemory -DomainName pester-fb-add -Address 0xF0005000 -Length 1).Bytes | Should -Be 0xAB
            Test-XenPaging -DomainName pester-fb-add | Should -BeTrue
        }
    }

    Context 'DomainNameGfn' {
        It 'places the framebuffer at gfn << 12' {
            $fb = Add-XenFramebuffer -DomainName pester-fb-add -Name mon1 -Gfn 0xF0400 -Width 640 -Height 480 -PassThru
            $fb.Address | Should -Be 0xF0400000u
        }
    }

    Context 'Domain' {
        It 'plugs into domains piped from Get-XenDomain' {
            New-XenDomain -Name pester-fb-add-2 -MemoryMB 64 | Out-Null
            Get-XenDomain -Name 'pester-fb-add*' | Add-XenFramebuffer -Name mon0 -Gfn 0xF0000 -Width 800 -Height 600
            (Get-XenDomain -Name 'pester-fb-add*' | Get-XenFramebuffer).DomainName | Should -Be 'pester-fb-add', 'pester-fb-add-2'
        }
    }

    Context 'Errors' {
        BeforeEach { Add-XenFramebuffer -DomainName pester-fb-add -Name mon0 -Address 0xF0000000 -Width 1024 -Height 768 }

        It 'refuses an overlapping framebuffer and populates nothing for it' {
            Add-XenFramebuffer -DomainName pester-fb-add -Name mon1 -Address 0xF0100000 -Width 800 -Height 600 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidConfiguration,*'
            $err[0].Exception.Message | Should -BeLike "*'mon1'*overlaps*'mon0'*"
            @(Get-XenFramebuffer -DomainName pester-fb-add).Name | Should -Be 'mon0'
        }

        It 'refuses a name used twice' {
            Add-XenFramebuffer -DomainName pester-fb-add -Name MON0 -Address 0xF1000000 -Width 64 -Height 64 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidConfiguration,*'
            (Get-XenP2m -DomainName pester-fb-add -Gfn 0xF1000).Kind | Should -Be 'Identity'
        }

        It 'refuses an address that is not 4 KiB aligned' {
            { Add-XenFramebuffer -DomainName pester-fb-add -Name mon1 -Address 0xF1000010 -Width 64 -Height 64 -ErrorAction Stop } |
                Should -Throw -ErrorId 'InvalidConfiguration,*'
        }

        It 'refuses a bpp that is not 8, 16, 24 or 32 before running' {
            { Add-XenFramebuffer -DomainName pester-fb-add -Name mon1 -Address 0xF1000000 -Width 64 -Height 64 -Bpp 12 } |
                Should -Throw -ErrorId 'ParameterArgumentValidationError,*'
        }

        It 'refuses a gfn beyond the p2m tree as GfnOutOfRange' {
            Add-XenFramebuffer -DomainName pester-fb-add -Name far -Gfn 0x10000000 -Width 64 -Height 64 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'GfnOutOfRange,*'
        }
    }
}
