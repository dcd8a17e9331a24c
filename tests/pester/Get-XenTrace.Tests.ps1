Describe 'Get-XenTrace' -Tag 'XenLab', 'Get-XenTrace' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    }
    BeforeEach {
        $domain = New-XenDomain -Name pester-trace -MemoryMB 256 -Vcpus 2
        Add-XenGuestMapping -DomainName pester-trace -VirtualAddress 0x400000 -Gfn 0x1000 -Count 4
        # Activity of several kinds: two mode switches, shadow faults, and a guest page fault on vCPU 1.
        Set-XenPagingMode -DomainName pester-trace -Mode Shadow
        Read-XenGuestMemory -DomainName pester-trace -Address 0x400000 -Virtual -Length 8 | Out-Null
        Read-XenGuestMemory -DomainName pester-trace -Address 0x7000000 -Virtual -Vcpu 1 -Length 1 -ErrorAction SilentlyContinue
        Set-XenPagingMode -DomainName pester-trace -Mode Hap
    }
    AfterEach { Get-XenDomain -Name 'pester-trace*' | Remove-XenDomain -Confirm:$false }

    Context 'DomainName' {
        It 'writes the events oldest first, one object each' {
            $events = @(Get-XenTrace -DomainName pester-trace)
            $events.Count | Should -BeGreaterOrEqual 4
            $events | ForEach-Object { $_ | Should -BeOfType XenLab.Views.TraceEventView }
            $events.Sequence | Should -Be ($events.Sequence | Sort-Object)
            $events[-1].Kind | Should -Be 'ModeSwitch'
            $events[-1].Detail | Should -BeLike 'Shadow->Hap*'
        }

        It 'records a guest page fault with its vCPU, address and error code' {
            $fault = @(Get-XenTrace -DomainName pester-trace -Kind GuestPageFault)
            $fault.Count | Should -Be 1
            $fault[0].Vcpu | Should -Be 1
            $fault[0].VirtualAddress | Should -Be 0x7000000
            $fault[0].Value | Should -Be 0                 # error code: not present, read, supervisor
        }

        It 'keeps only the kinds given with -Kind' {
            $events = @(Get-XenTrace -DomainName pester-trace -Kind ModeSwitch, ShadowFault)
            $events.Count | Should -BeGreaterOrEqual 3
            $events.Kind | Sort-Object -Unique | Should -Be 'ShadowFault', 'ModeSwitch'
            @(Get-XenTrace -DomainName pester-trace -Kind OosEvict).Count | Should -Be 0
        }

        It 'keeps the last <_> events with -Last, still oldest first' -ForEach 1, 2 {
            $all = @(Get-XenTrace -DomainName pester-trace)
            $last = @(Get-XenTrace -DomainName pester-trace -Last $_)
            $last.Count | Should -Be $_
            $last.Sequence | Should -Be $all[(-$_)..-1].Sequence
        }

        It 'applies -Last after -Kind' {
            $last = @(Get-XenTrace -DomainName pester-trace -Kind ModeSwitch -Last 1)
            $last.Count | Should -Be 1
            $last[0].Detail | Should -BeLike 'Shadow->Hap*'
        }

        It 'writes only events from a sequence number on with -Since' {
            $mark = (Get-XenTrace -DomainName pester-trace -Last 1).Sequence + 1
            @(Get-XenTrace -DomainName pester-trace -Since $mark).Count | Should -Be 0
            Read-XenGuestMemory -DomainName pester-trace -Address 0x7000000 -Virtual -Length 1 -ErrorAction SilentlyContinue
            $new = @(Get-XenTrace -DomainName pester-trace -Since $mark)
            $new.Count | Should -Be 1
            $new[0].Kind | Should -Be 'GuestPageFault'
        }
    }

    Context 'Domain' {
        It 'reads the trace of domains piped from Get-XenDomain' {
            $events = @(Get-XenDomain pester-trace | Get-XenTrace -Kind ModeSwitch)
            $events.Count | Should -Be 2
            $events.DomainName | Should -Be 'pester-trace', 'pester-trace'
        }
    }

    Context 'Errors' {
        It 'refuses -Last 0 before running' {
            { Get-XenTrace -DomainName pester-trace -Last 0 } | Should -Throw -ErrorId 'ParameterArgumentValidationError,*'
        }

        It 'refuses a kind of event that does not exist' {
            { Get-XenTrace -DomainName pester-trace -Kind NoSuchKind } | Should -Throw -ErrorId 'CannotConvertArgumentNoMessage,*'
        }

        It 'reports an unknown domain name as DomainNotFound' {
            { Get-XenTrace -DomainName pester-trace-none -ErrorAction Stop } | Should -Throw -ErrorId 'DomainNotFound,*'
        }
    }
}
