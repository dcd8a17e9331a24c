Describe 'Export-XenFramebuffer' -Tag 'XenLab', 'Export-XenFramebuffer' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
        $pngSignature = [byte[]](0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A)
    }
    BeforeEach {
        $domain = New-XenDomain -Name pester-fb-exp -MemoryMB 64
        Add-XenFramebuffer -DomainName pester-fb-exp -Name mon0 -Address 0xF0000000 -Width 1024 -Height 768
        Mount-XenFramebuffer -DomainName pester-fb-exp -Framebuffer mon0 -VirtualAddress 0x40000000
    }
    AfterEach { Remove-XenDomain -Name pester-fb-exp -Confirm:$false }

    Context 'DomainName' {
        It 'writes a file that starts with the PNG signature' {
            $file = Join-Path $TestDrive 'mon0.png'
            $r = Export-XenFramebuffer -DomainName pester-fb-exp -Framebuffer mon0 -Path $file
            $r | Should -BeOfType XenLab.Views.FramebufferExportView
            $r.Width | Should -Be 1024
            $r.Height | Should -Be 768
            $bytes = [IO.File]::ReadAllBytes($file)
            $bytes[0..7] | Should -Be $pngSignature
            $bytes.Length | Should -Be $r.Bytes
        }

        It 'resolves a relative path against the PowerShell location, not the process folder' {
            Push-Location $TestDrive
            try {
                $r = Export-XenFramebuffer -DomainName pester-fb-exp -Framebuffer mon0 -Path 'relative.png'
            }
            finally { Pop-Location }
            $r.Path | Should -Be (Join-Path $TestDrive 'relative.png')
            Test-Path (Join-Path $TestDrive 'relative.png') | Should -BeTrue
        }

        It 'names the file <domain>-<framebuffer>.png in an existing folder' {
            $r = Export-XenFramebuffer -DomainName pester-fb-exp -Framebuffer mon0 -Path $TestDrive
            $r.Path | Should -Be (Join-Path $TestDrive 'pester-fb-exp-mon0.png')
        }

        It 'outlines the dirty rows with -HighlightDirty and clears nothing' {
            Get-DirtyVram -DomainName pester-fb-exp | Out-Null
            Write-XenGuestMemory -DomainName pester-fb-exp -Address 0x40005000 -Virtual -Value 0xFF, 0xFF, 0xFF, 0xFF
            $r = Export-XenFramebuffer -DomainName pester-fb-exp -Framebuffer mon0 -Path (Join-Path $TestDrive 'dirty.png') -HighlightDirty
            $r.DirtyRectangles | Should -Be 1
            # Scanline 5 (one page of a 1024x32bpp framebuffer) outlined in red; scanline 4 stays black.
            $bmp = [SkiaSharp.SKBitmap]::Decode($r.Path)
            try {
                $bmp.GetPixel(0, 5).ToString() | Should -Be '#ffff0000'
                $bmp.GetPixel(512, 5).ToString() | Should -Be '#ffff0000'
                $bmp.GetPixel(0, 4).ToString() | Should -Be '#ff000000'
            }
            finally { $bmp.Dispose() }
            (Get-DirtyVram -DomainName pester-fb-exp).DirtyPageIndexes | Should -Be 5       # the export only peeked
        }

        It 'writes no file with -WhatIf' {
            $file = Join-Path $TestDrive 'whatif.png'
            Export-XenFramebuffer -DomainName pester-fb-exp -Framebuffer mon0 -Path $file -WhatIf
            Test-Path $file | Should -BeFalse
        }
    }

    Context 'Pipeline' {
        It 'exports every framebuffer piped from Get-XenFramebuffer into a folder' {
            Add-XenFramebuffer -DomainName pester-fb-exp -Name mon1 -Gfn 0xF0400 -Width 64 -Height 64
            $r = Get-XenFramebuffer -DomainName pester-fb-exp | Export-XenFramebuffer -Path $TestDrive
            $r.Path | Split-Path -Leaf | Should -Be 'pester-fb-exp-mon0.png', 'pester-fb-exp-mon1.png'
        }
    }

    Context 'Errors' {
        It 'reports a folder that does not exist as ExportPathNotFound' {
            Export-XenFramebuffer -DomainName pester-fb-exp -Framebuffer mon0 -Path (Join-Path $TestDrive 'no/such/dir/x.png') -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'ExportPathNotFound,*'
        }

        It 'cannot highlight dirty pages while log-dirty is enabled: VramENODATA' {
            Enable-XenLogDirty -DomainName pester-fb-exp
            $file = Join-Path $TestDrive 'nodata.png'
            Export-XenFramebuffer -DomainName pester-fb-exp -Framebuffer mon0 -Path $file -HighlightDirty -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'VramENODATA,*'
            Test-Path $file | Should -BeFalse
        }

        It 'reports an unknown framebuffer as FramebufferNotFound' {
            { Export-XenFramebuffer -DomainName pester-fb-exp -Framebuffer mon9 -Path $TestDrive -ErrorAction Stop } |
                Should -Throw -ErrorId 'FramebufferNotFound,*'
        }
    }
}
