BeforeDiscovery {
    $strategies = @(
        @{ Mode = 'Hap';    Strategy = 'Tracker' }
        @{ Mode = 'Shadow'; Strategy = 'BackLinks' }
        @{ Mode = 'Arm';    Strategy = 'Tracker' }
    )
}

Describe 'Get-XenFramebuffer' -Tag 'XenLab', 'Get-XenFramebuffer' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    BeforeEach {
        $domain = New-XenDomain -Name pester-fb-get -MemoryMB 64
        Add-XenFramebuffer -DomainName pester-fb-get -Name mon0 -Address 0xF0000000 -Width 1024 -Height 768
        Add-XenFramebuffer -DomainName pester-fb-get -Name side -Gfn 0xF0400 -Width 640 -Height 480
    }
    AfterEach { Remove-XenDomain -Name pester-fb-get -Confirm:$false }

    Context 'DomainName' {
        It 'writes every framebuffer in plug-in order' {
            $all = Get-XenFramebuffer -DomainName pester-fb-get
            $all.Name | Should -Be 'mon0', 'side'
            $all[0] | Should -BeOfType XenLab.Views.FramebufferView
            $all.DomainName | Should -Be 'pester-fb-get', 'pester-fb-get'
        }

        It 'selects by wildcard' {
            (Get-XenFramebuffer -DomainName pester-fb-get -Name 'mo*').Name | Should -Be 'mon0'
            Get-XenFramebuffer -DomainName pester-fb-get -Name 'zz*' | Should -BeNullOrEmpty
        }

        It 'shows the range tracked with <Strategy> once queried in <Mode> paging' -ForEach $strategies {
            Set-XenPagingMode -DomainName pester-fb-get -Mode $Mode
            Get-DirtyVram -DomainName pester-fb-get -Framebuffer mon0 | Out-Null
            $fb = Get-XenFramebuffer -DomainName pester-fb-get mon0
            $fb.Tracked | Should -BeTrue
            $fb.Strategy | Should -Be $Strategy
            (Get-XenFramebuffer -DomainName pester-fb-get side).Tracked | Should -BeFalse
        }

        It 'shows the address, first gfn and mounts in hex in its table' {
            Mount-XenFramebuffer -DomainName pester-fb-get -Framebuffer mon0 -VirtualAddress 0x40000000
            $text = Get-XenFramebuffer -DomainName pester-fb-get | Out-String -Width 120
            $text | Should -Match '1024x768x32\s+4096\s+0xf0000000\s+0xf0000\s+768'
            $text | Should -Match '0x40000000'
        }
    }

    Context 'Domain' {
        It 'lists every framebuffer of a piped domain: the domain''s own Name does not bind to -Name' {
            (Get-XenDomain pester-fb-get | Get-XenFramebuffer).Name | Should -Be 'mon0', 'side'
        }
    }

    Context 'Errors' {
        It 'reports a plain name that matches nothing as FramebufferNotFound' {
            Get-XenFramebuffer -DomainName pester-fb-get -Name mon9 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'FramebufferNotFound,*'
            $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        }

        It 'reports an unknown domain name as DomainNotFound' {
            { Get-XenFramebuffer -DomainName pester-fb-none -ErrorAction Stop } | Should -Throw -ErrorId 'DomainNotFound,*'
        }
    }

    Context 'Completion' {
        It 'completes framebuffer names of the domain given' {
            $line = 'Get-XenFramebuffer -DomainName pester-fb-get -Name s'
            $r = TabExpansion2 -inputScript $line -cursorColumn $line.Length
            $r.CompletionMatches.CompletionText | Should -Be 'side'
        }
    }
}
