BeforeDiscovery {
    $patterns = @(
        @{ Pattern = 'pester-get-*';   Expected = @('pester-get-alpha', 'pester-get-beta', 'pester-get-gamma') }
        @{ Pattern = 'pester-get-?e*'; Expected = @('pester-get-beta') }
        @{ Pattern = 'PESTER-GET-ALPHA'; Expected = @('pester-get-alpha') }
    )
}

Describe 'Get-XenDomain' -Tag 'XenLab', 'Get-XenDomain' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
        foreach ($n in 'pester-get-alpha', 'pester-get-beta', 'pester-get-gamma') { New-XenDomain -Name $n -MemoryMB 64 | Out-Null }
    }
    AfterAll { Get-XenDomain -Name 'pester-get-*' | Remove-XenDomain -Confirm:$false }

    Context 'Name' {
        It 'lists every domain, including the ones this suite built, without -Name' {
            $names = (Get-XenDomain).Name
            $names | Should -Contain 'pester-get-alpha'
            $names | Should -Contain 'pester-get-gamma'
        }

        It 'returns the domains matching <Pattern>' -ForEach $patterns {
            (Get-XenDomain -Name $Pattern).Name | Should -Be $Expected
        }

        It 'takes the name by position' {
            (Get-XenDomain pester-get-beta).Name | Should -Be 'pester-get-beta'
        }

        It 'writes each domain once when patterns overlap' {
            @(Get-XenDomain -Name 'pester-get-alpha', 'pester-get-a*').Count | Should -Be 1
        }

        It 'binds Name by property name from piped objects' {
            ([pscustomobject]@{ Name = 'pester-get-gamma' } | Get-XenDomain).Name | Should -Be 'pester-get-gamma'
        }

        It 'writes domain objects that carry a DomainName alias' {
            (Get-XenDomain pester-get-alpha).DomainName | Should -Be 'pester-get-alpha'
        }
    }

    Context 'Errors' {
        It 'reports a plain name that matches nothing as DomainNotFound' {
            { Get-XenDomain -Name pester-get-none -ErrorAction Stop } | Should -Throw -ErrorId 'DomainNotFound,*'
        }

        It 'keeps going after a name that matches nothing' {
            $found = Get-XenDomain -Name pester-get-none, pester-get-beta -ErrorVariable err -ErrorAction SilentlyContinue
            $found.Name | Should -Be 'pester-get-beta'
            $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
            $err[0].TargetObject | Should -Be 'pester-get-none'
        }

        It 'writes no error for a wildcard that matches nothing' {
            Get-XenDomain -Name 'pester-get-zz*' -ErrorVariable err | Should -BeNullOrEmpty
            $err | Should -BeNullOrEmpty
        }
    }
}
