BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
}

Describe 'Export-XenDomain' -Tag 'Export-XenDomain' {
    BeforeEach {
        $yaml = Join-Path $TestDrive 'source.yaml'
        Set-Content -Path $yaml -Value @'
name: pester-export
memory: 128
maxmem: 192
vcpus: 2
paging: shadow
oos: nosnapshot
identity:
  - { start: 0xA0000000, size: 16M }
framebuffers:
  - { name: mon0, address: 0xF0000000, width: 320, height: 200, bpp: 32 }
'@
        $d = New-XenDomain -Path $yaml
    }
    AfterEach {
        Get-XenDomain -Name 'pester-export*' | Remove-XenDomain -Confirm:$false
    }

    Context 'Writing a file' {
        It 'writes YAML that loads to a domain with the same E820, p2m tree and settings' {
            $file = Export-XenDomain -Domain $d -Path (Join-Path $TestDrive 'out.yaml')
            $file | Should -BeOfType System.IO.FileInfo
            $before = Get-XenE820 -Domain $d | ForEach-Object { '{0:x}-{1:x}-{2}' -f $_.Start, $_.End, $_.Type }
            $tree = Get-XenP2m -Domain $d -Tree
            $d | Remove-XenDomain -Confirm:$false
            $copy = New-XenDomain -Path $file.FullName
            (Get-XenE820 -Domain $copy | ForEach-Object { '{0:x}-{1:x}-{2}' -f $_.Start, $_.End, $_.Type }) | Should -Be $before
            (Get-XenP2m -Domain $copy -Tree).AllocatedPages | Should -Be $tree.AllocatedPages
            $copy.PagingMode | Should -Be 'Shadow'
            $copy.PagingOptionsText | Should -Match 'oos=nosnapshot'
            (Get-XenFramebuffer -Domain $copy).Name | Should -Be 'mon0'
        }

        It 'writes the paging mode as it is now, after a switch' {
            Set-XenPagingMode -Domain $d -Mode Hap
            $file = Export-XenDomain -Domain $d -Path (Join-Path $TestDrive 'now.yaml')
            Get-Content $file.FullName | Should -Contain 'paging: hap'
        }

        It 'names the file after the domain when given a folder' {
            $file = Export-XenDomain -DomainName pester-export -Path $TestDrive
            $file.Name | Should -Be 'pester-export.yaml'
        }
    }

    Context 'Errors and -WhatIf' {
        It 'writes nothing with -WhatIf' {
            $target = Join-Path $TestDrive 'whatif.yaml'
            Export-XenDomain -Domain $d -Path $target -WhatIf
            Test-Path $target | Should -BeFalse
        }

        It 'reports a folder that does not exist with ErrorId ExportPathNotFound' {
            { Export-XenDomain -Domain $d -Path (Join-Path $TestDrive 'no/such/folder/x.yaml') -ErrorAction Stop } |
                Should -Throw -ErrorId 'ExportPathNotFound,*'
        }
    }
}
