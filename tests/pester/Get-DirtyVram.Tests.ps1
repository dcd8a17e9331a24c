BeforeDiscovery {
    $modes = @(@{ Mode = 'Hap' }, @{ Mode = 'Shadow' }, @{ Mode = 'Arm' })
}

Describe 'Get-DirtyVram' -Tag 'XenLab', 'Get-DirtyVram' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    BeforeEach {
        # 1024x768x32 in the default PCI hole: 768 pages, one scanline each (stride 4096).
        $domain = New-XenDomain -Name pester-vram -MemoryMB 64 -Vcpus 2
        Add-XenFramebuffer -DomainName pester-vram -Name mon0 -Address 0xF0000000 -Width 1024 -Height 768
        Mount-XenFramebuffer -DomainName pester-vram -Framebuffer mon0 -VirtualAddress 0x40000000
    }
    AfterEach { Get-XenDomain -Name 'pester-vram*' | Remove-XenDomain -Confirm:$false }

    Context 'DomainNameFramebuffer' {
        It 'reports all 768 pages dirty first, then exactly page 5 after a write through the mount in <Mode> paging' -ForEach $modes {
            Set-XenPagingMode -DomainName pester-vram -Mode $Mode
            $first = Get-DirtyVram -DomainName pester-vram
            $first | Should -BeOfType XenLab.Views.DirtyVramView
            $first.AllDirty | Should -BeTrue                        # the first call creates the range: repaint everything
            $first.DirtyPages | Should -Be 768
            $first.Reason | Should -BeLike 'new range*'
            $first.Mode | Should -Be $Mode
            Write-XenGuestMemory -DomainName pester-vram -Address 0x40005010 -Virtual -Value 1, 2, 3
            $next = Get-DirtyVram -DomainName pester-vram
            $next.AllDirty | Should -BeFalse
            $next.DirtyPageIndexes | Should -Be 5
            $next.DirtyPages | Should -Be 1
            (Get-DirtyVram -DomainName pester-vram).DirtyPages | Should -Be 0          # nothing written since
            Test-XenPaging -DomainName pester-vram | Should -BeTrue
        }

        It 'merges page 5 into the rectangle X 0, Y 5, Width 1024, Height 1 with -AsRectangle in <Mode> paging' -ForEach $modes {
            Set-XenPagingMode -DomainName pester-vram -Mode $Mode
            Get-DirtyVram -DomainName pester-vram | Out-Null
            Write-XenGuestMemory -DomainName pester-vram -Address 0x40005000 -Virtual -Value 0xFF
            $r = @(Get-DirtyVram -DomainName pester-vram -AsRectangle)
            $r.Count | Should -Be 1
            $r[0] | Should -BeOfType XenLab.Views.DirtyRectView
            $r[0].X | Should -Be 0
            $r[0].Y | Should -Be 5
            $r[0].Width | Should -Be 1024
            $r[0].Height | Should -Be 1
        }

        It 'writes one DirtyPageView per dirty page with -AsPage' {
            Get-DirtyVram -DomainName pester-vram | Out-Null
            Write-XenGuestMemory -DomainName pester-vram -Address 0x40005000 -Virtual -Value 1
            Write-XenGuestMemory -DomainName pester-vram -Address 0x402FF000 -Virtual -Value 1
            $pages = @(Get-DirtyVram -DomainName pester-vram -AsPage)
            $pages.Index | Should -Be 5, 767
            $pages.Gfn | Should -Be 0xF0005, 0xF02FF
            $pages[0].FirstRow | Should -Be 5
            $pages[0].LastRow | Should -Be 5
        }

        It 'keeps the dirty pages with -Peek' {
            Get-DirtyVram -DomainName pester-vram | Out-Null
            Write-XenGuestMemory -DomainName pester-vram -Address 0x40003000 -Virtual -Value 1
            (Get-DirtyVram -DomainName pester-vram -Peek).DirtyPageIndexes | Should -Be 3
            (Get-DirtyVram -DomainName pester-vram -Peek).DirtyPageIndexes | Should -Be 3
            (Get-DirtyVram -DomainName pester-vram).DirtyPageIndexes | Should -Be 3
            (Get-DirtyVram -DomainName pester-vram).DirtyPageIndexes | Should -BeNullOrEmpty
        }

        It 'answers one object per framebuffer, or those -Framebuffer names' {
            Add-XenFramebuffer -DomainName pester-vram -Name mon1 -Gfn 0xF0400 -Width 640 -Height 480
            (Get-DirtyVram -DomainName pester-vram).Framebuffer | Should -Be 'mon0', 'mon1'
            (Get-DirtyVram -DomainName pester-vram -Framebuffer 'mon1').DirtyPages | Should -Be 0
            (Get-DirtyVram -DomainName pester-vram -Framebuffer 'mon*').Framebuffer | Should -Be 'mon0', 'mon1'
        }

        It 'reads the runs of dirty pages in DirtyRuns and in its table' {
            Get-DirtyVram -DomainName pester-vram | Out-Null
            foreach ($p in 5, 6, 9) { Write-XenGuestMemory -DomainName pester-vram -Address (0x40000000 + $p * 4096) -Virtual -Value 1 }
            $v = Get-DirtyVram -DomainName pester-vram -Peek
            $v.DirtyRuns | Should -Be '5-6,9'
            $v | Out-String -Width 120 | Should -Match 'mon0\s+0xf0000\s+768\s+3 False'
        }

        It 'tracks with the memcmp baseline in <Mode> paging, physical writes included' -ForEach $modes {
            Set-XenPagingMode -DomainName pester-vram -Mode $Mode
            Set-XenVramTracking -DomainName pester-vram -Strategy Memcmp
            Get-DirtyVram -DomainName pester-vram | Out-Null
            Write-XenGuestMemory -DomainName pester-vram -Address 0xF0007000 -Value 1
            $v = Get-DirtyVram -DomainName pester-vram
            $v.Strategy | Should -Be 'Memcmp'
            $v.DirtyPageIndexes | Should -Be 7
        }

        It 'tracks with the D-bit design under shadow paging' {
            Set-XenPagingMode -DomainName pester-vram -Mode Shadow
            Set-XenVramTracking -DomainName pester-vram -Strategy DirtyBit
            # Reads before the range exists teach nothing: the first write after it teaches the address.
            foreach ($p in 0..767) { Read-XenGuestMemory -DomainName pester-vram -Address (0x40000000 + $p * 4096) -Virtual -Length 1 | Out-Null }
            (Get-DirtyVram -DomainName pester-vram).Strategy | Should -Be 'DirtyBit'
            Write-XenGuestMemory -DomainName pester-vram -Address 0x4000B000 -Virtual -Value 1
            $v = Get-DirtyVram -DomainName pester-vram
            # One writable mapping at the learned address, every entry present: the answer must be exact.
            $v.AllDirty | Should -BeFalse -Because $v.Reason
            $v.DirtyPageIndexes | Should -Be 11
        }
    }

    Context 'Pipeline' {
        It 'reads naturally: Get-XenDomain | Get-DirtyVram | Where-Object DirtyPages -gt 0' {
            Add-XenFramebuffer -DomainName pester-vram -Name mon1 -Gfn 0xF0400 -Width 640 -Height 480
            Get-DirtyVram -DomainName pester-vram | Out-Null
            Write-XenGuestMemory -DomainName pester-vram -Address 0x40001000 -Virtual -Value 1
            $changed = @(Get-XenDomain pester-vram | Get-DirtyVram | Where-Object DirtyPages -gt 0)
            $changed.Framebuffer | Should -Be 'mon0'
        }

        It 'queries framebuffers piped from Get-XenFramebuffer in their own domain' {
            New-XenDomain -Name pester-vram-2 -MemoryMB 64 | Out-Null
            Add-XenFramebuffer -DomainName pester-vram-2 -Name other -Gfn 0xF0000 -Width 64 -Height 64
            $v = Get-XenDomain 'pester-vram*' | Get-XenFramebuffer | Get-DirtyVram
            $v.DomainName | Should -Be 'pester-vram', 'pester-vram-2'
            $v.Framebuffer | Should -Be 'mon0', 'other'
        }
    }

    Context 'DomainNameGfn' {
        It 'queries a raw range and names the framebuffer it is' {
            $v = Get-DirtyVram -DomainName pester-vram -Gfn 0xF0000 -Count 768
            $v.Framebuffer | Should -Be 'mon0'
            $v.AllDirty | Should -BeTrue
        }

        It 'reports a part of a framebuffer without a name, and an untracked range all dirty' {
            $v = Get-DirtyVram -DomainName pester-vram -Gfn 0xF0100 -Count 16
            $v.Framebuffer | Should -Be ''
            $v.AllDirty | Should -BeTrue
            $v.DirtyPages | Should -Be 16
        }

        It 'is all dirty again after every VRAM range was stopped' {
            Get-DirtyVram -DomainName pester-vram | Out-Null
            Set-XenVramTracking -DomainName pester-vram -Stop
            (Get-XenFramebuffer -DomainName pester-vram).Tracked | Should -BeFalse
            (Get-DirtyVram -DomainName pester-vram -Gfn 0xF0000 -Count 768).AllDirty | Should -BeTrue
        }
    }

    Context 'Errors' {
        It 'fails with VramENODATA, errno 61, while log-dirty is enabled' {
            Enable-XenLogDirty -DomainName pester-vram
            Get-DirtyVram -DomainName pester-vram -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err[0].FullyQualifiedErrorId | Should -BeLike 'VramENODATA,*'
            "$($err[0])" | Should -BeLike '*-ENODATA*(errno 61)'
        }

        It 'reports each framebuffer''s error and goes on' {
            Add-XenFramebuffer -DomainName pester-vram -Name mon1 -Gfn 0xF0400 -Width 64 -Height 64
            Enable-XenLogDirty -DomainName pester-vram
            Get-DirtyVram -DomainName pester-vram -ErrorVariable err -ErrorAction SilentlyContinue
            $err.Count | Should -Be 2
            "$($err[1])" | Should -BeLike "*'mon1'*"
        }

        It 'refuses a range beyond max_mapped_pfn + 1 with VramEINVAL, errno 22' {
            # The framebuffer is the domain's highest RAM: its end is max_mapped_pfn + 1.
            Get-DirtyVram -DomainName pester-vram -Gfn 0xF0000 -Count 769 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'VramEINVAL,*'
            "$($err[0])" | Should -BeLike '*max_mapped_pfn + 1*(errno 22)'
        }

        It 'refuses a range whose end overflows with VramEINVAL' {
            Get-DirtyVram -DomainName pester-vram -Gfn 0xFFFFFFFFFFFFFFFE -Count 4 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'VramEINVAL,*'
            "$($err[0])" | Should -BeLike '*end_pfn < begin_pfn*'
        }

        It 'refuses -Count 0, which would stop all tracking (Set-XenVramTracking -Stop does)' {
            { Get-DirtyVram -DomainName pester-vram -Gfn 0xF0000 -Count 0 } | Should -Throw -ErrorId 'ParameterArgumentValidationError,*'
        }

        It 'refuses -AsPage with -AsRectangle' {
            { Get-DirtyVram -DomainName pester-vram -AsPage -AsRectangle } | Should -Throw -ErrorId 'AsPageAndAsRectangle,*'
        }

        It 'refuses -AsRectangle on a raw range with no geometry, before clearing anything' {
            Get-DirtyVram -DomainName pester-vram -Gfn 0xF0100 -Count 16 -AsRectangle -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'NoFramebufferGeometry,*'
            (Get-XenFramebuffer -DomainName pester-vram).Tracked | Should -BeFalse    # nothing was queried
        }

        It 'reports an unknown framebuffer as FramebufferNotFound' {
            Get-DirtyVram -DomainName pester-vram -Framebuffer mon9 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'FramebufferNotFound,*'
        }
    }
}
