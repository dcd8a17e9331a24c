Describe 'Export-XenChart' -Tag 'XenLab', 'Export-XenChart' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
        $rows = @(
            [pscustomobject]@{ Mode = 'HAP'; WalkRefs = 2400; TlbMisses = 100 }
            [pscustomobject]@{ Mode = 'shadow'; WalkRefs = 400; TlbMisses = 100 }
        )
    }

    Context 'Table' {
        It 'draws the rows piped in as a PNG of the size asked' {
            $r = $rows | Export-XenChart -Category Mode -Value WalkRefs, TlbMisses -Title 'refs' -Path (Join-Path $TestDrive 'bars.png') -Width 640 -Height 360
            $r | Should -BeOfType XenLab.Pictures.PictureView
            $r.Kind | Should -Be 'Chart'
            $bmp = [SkiaSharp.SKBitmap]::Decode($r.Path)
            try {
                ($bmp.Width, $bmp.Height) | Should -Be (640, 360)
                # Some pixels of the first series' colour: the bars are there.
                $c = [XenLab.Pictures.LabCharts]::Palette[0]
                $found = 0
                for ($x = 0; $x -lt 640; $x += 4) { if ($bmp.GetPixel($x, 300) -eq $c) { $found++ } }
                $found | Should -BeGreaterThan 0
            }
            finally { $bmp.Dispose() }
        }

        It 'writes one chart for the whole pipeline, chart.png in a folder' {
            $r = @($rows | Export-XenChart -Category Mode -Value WalkRefs -Path $TestDrive)
            $r.Count | Should -Be 1
            $r[0].Path | Should -Be (Join-Path $TestDrive 'chart.png')
        }
    }

    Context 'Migration' {
        It 'draws pages sent per round of each migration piped in' {
            $d = New-XenDomain -Name pester-chart -MemoryMB 128
            try {
                $m = [XenLab.Lab.LiveMigration]::PreCopy($d, 0.02, 2048, 30, 64, 1)
                $r = $m | Export-XenChart -Path (Join-Path $TestDrive 'precopy.png') -Title 'pre-copy'
                ($r.Width, $r.Height) | Should -Be (900, 500)
            }
            finally { Remove-XenDomain -Name pester-chart -Confirm:$false }
        }
    }

    Context 'Errors' {
        It 'reports a value that is not a number as ChartValueNotNumeric' {
            $rows | Export-XenChart -Category Mode -Value Mode -Path $TestDrive -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'ChartValueNotNumeric,*'
        }

        It 'reports a missing category property as ChartPropertyNotFound' {
            $rows | Export-XenChart -Category Nope -Value WalkRefs -Path $TestDrive -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'ChartPropertyNotFound,*'
        }

        It 'writes no file with -WhatIf' {
            $file = Join-Path $TestDrive 'whatif.png'
            $rows | Export-XenChart -Category Mode -Value WalkRefs -Path $file -WhatIf
            Test-Path $file | Should -BeFalse
        }
    }
}
