Describe 'Export-XenPicture' -Tag 'XenLab', 'Export-XenPicture' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
        function Read-Png([string]$Path) { [SkiaSharp.SKBitmap]::Decode($Path) }
        function Get-Rgb($Bitmap, [float]$X, [float]$Y) { $c = $Bitmap.GetPixel([int]$X, [int]$Y); '{0:x2}{1:x2}{2:x2}' -f $c.Red, $c.Green, $c.Blue }
        function Format-Rgb($Color) { '{0:x2}{1:x2}{2:x2}' -f $Color.Red, $Color.Green, $Color.Blue }
    }
    BeforeEach {
        $domain = New-XenDomain -Name pester-pic -MemoryMB 256 -MaxMemoryMB 2364
        # Below 640 KiB, where the legacy hole keeps the first 2 MiB on 4 KiB EPT leaves: a full 24-reference walk.
        Add-XenGuestMapping -DomainName pester-pic -VirtualAddress 0x400000 -Gfn 0x50 -Count 4
    }
    AfterEach { Remove-XenDomain -Name pester-pic -Confirm:$false }

    Context 'P2mTree' {
        It 'draws the tree with the shared identity page in its colour where the layout puts it' {
            $r = Export-XenPicture -DomainName pester-pic -Kind P2mTree -Path (Join-Path $TestDrive 'p2m.png')
            $r | Should -BeOfType XenLab.Pictures.PictureView
            $layout = [XenLab.Pictures.P2mTreePicture]::Layout($domain.P2m, 'x')
            $bmp = Read-Png $r.Path
            try {
                $bmp.Width | Should -Be $layout.Width
                $bmp.Height | Should -Be $r.Height
                $box = $layout.Box('p2m_identity')
                Get-Rgb $bmp ($box.Rect.Right - 3) ($box.Rect.Bottom - 3) | Should -Be (Format-Rgb ([XenLab.Pictures.PictureColors]::Identity))
            }
            finally { $bmp.Dispose() }
        }

        It 'names the file <domain>-p2m.png in an existing folder' {
            (Export-XenPicture -DomainName pester-pic -Kind P2mTree -Path $TestDrive).Path | Should -Be (Join-Path $TestDrive 'pester-pic-p2m.png')
        }
    }

    Context 'Walk' {
        It 'draws a cold HAP walk as 24 references, EPT cells blue and guest cells green' -ForEach @(
            @{ Row = 0; Column = 0; Color = 'Nested' }
            @{ Row = 0; Column = 4; Color = 'Guest' }
            @{ Row = 4; Column = 4; Color = 'Data' }
        ) {
            Set-XenPagingMode -DomainName pester-pic -Mode Hap -HapGpaCache 0
            $r = Export-XenPicture -Domain $domain -Kind Walk -VirtualAddress 0x400000 -Path (Join-Path $TestDrive 'walk.png')
            $view = [XenLab.Views.TranslationView]::Of($domain, 0, 0x400000, [XenLab.Paging.AccessKind]::Read)
            $layout = [XenLab.Pictures.WalkPicture]::Layout($view, $null)
            $layout.References | Should -Be 24
            $cell = $layout.Cell($Row, $Column)
            $bmp = Read-Png $r.Path
            try {
                ($bmp.Width, $bmp.Height) | Should -Be ($layout.Width, $layout.Height)
                Get-Rgb $bmp ($cell.Rect.Left + 3) ($cell.Rect.Bottom - 3) | Should -Be (Format-Rgb ([XenLab.Pictures.PictureColors]::$Color))
            }
            finally { $bmp.Dispose() }
        }

        It 'draws the shadow walk in each mode without changing anything' {
            Set-XenPagingMode -DomainName pester-pic -Mode Shadow
            $null = Read-XenGuestMemory -DomainName pester-pic -Virtual -Address 0x400000 -Length 1
            $before = (Get-XenPerfCounter -DomainName pester-pic -NonZero | Measure-Object Value -Sum).Sum
            $r = Export-XenPicture -DomainName pester-pic -Kind Walk -VirtualAddress 0x400000 -Path (Join-Path $TestDrive 'shadow.png')
            $r.Kind | Should -Be 'Walk'
            (Get-XenPerfCounter -DomainName pester-pic -NonZero | Measure-Object Value -Sum).Sum | Should -Be $before
        }
    }

    Context 'DirtyMap' {
        It 'draws a domain''s log as it is now, a peek' {
            Enable-XenLogDirty -DomainName pester-pic
            $null = Get-XenDirtyLog -DomainName pester-pic
            Write-XenGuestMemory -DomainName pester-pic -Virtual -Address 0x400000 -Value 1 -Confirm:$false
            $dirty = (Get-XenDirtyLog -DomainName pester-pic -Peek).DirtyPages     # the page and the page tables the walk marked
            $r = Export-XenPicture -DomainName pester-pic -Kind DirtyMap -Path (Join-Path $TestDrive 'log.png')
            $layout = [XenLab.Pictures.DirtyMapLayout]::new((Get-XenDirtyLog -DomainName pester-pic -Peek).Pfns, 1)
            $cell = $layout.Cell(0, 0x50)
            $bmp = Read-Png $r.Path
            try { Get-Rgb $bmp $cell.X $cell.Y | Should -Be (Format-Rgb ([XenLab.Pictures.PictureColors]::Dirty)) }
            finally { $bmp.Dispose() }
            (Get-XenDirtyLog -DomainName pester-pic).DirtyPages | Should -Be $dirty     # the picture cleaned nothing
        }

        It 'draws a migration one panel per round' {
            $m = [XenLab.Lab.LiveMigration]::PreCopy($domain, 0.02, 2048, 30, 64, 1)
            $r = $m | Export-XenPicture -Kind DirtyMap -Path $TestDrive
            $r.Path | Should -Be (Join-Path $TestDrive 'pester-pic-dirtymap.png')
            $layout = [XenLab.Pictures.DirtyMapLayout]::new($m.DirtyLogs[0].Pfns, $m.Rounds.Count)
            ($r.Width, $r.Height) | Should -Be ($layout.Width, $layout.Height)
        }
    }

    Context 'Errors' {
        It 'refuses -Kind Walk without -VirtualAddress as VirtualAddressRequired' {
            Export-XenPicture -DomainName pester-pic -Kind Walk -Path $TestDrive -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'VirtualAddressRequired,*'
        }

        It 'refuses a migration drawn as anything but a dirty map' {
            $m = [XenLab.Lab.LiveMigration]::PreCopy($domain, 0.02, 2048, 30, 64, 1)
            $m | Export-XenPicture -Kind P2mTree -Path $TestDrive -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'PictureKindNotForMigration,*'
        }

        It 'reports a dirty map of a domain without log-dirty as InvalidConfiguration' {
            Export-XenPicture -DomainName pester-pic -Kind DirtyMap -Path $TestDrive -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidConfiguration,*'
        }

        It 'reports a folder that does not exist as ExportPathNotFound' {
            Export-XenPicture -DomainName pester-pic -Kind P2mTree -Path (Join-Path $TestDrive 'no/such/p2m.png') -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'ExportPathNotFound,*'
        }

        It 'writes no file with -WhatIf' {
            $file = Join-Path $TestDrive 'whatif.png'
            Export-XenPicture -DomainName pester-pic -Kind P2mTree -Path $file -WhatIf
            Test-Path $file | Should -BeFalse
        }
    }
}
