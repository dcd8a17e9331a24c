BeforeDiscovery {
    $modes = @(
        @{ Mode = 'Hap'; Count = 3 }
        @{ Mode = 'Shadow'; Count = 9 }
        @{ Mode = 'Arm'; Count = 3 }
    )
}

Describe 'Test-XenDirtyTracking' -Tag 'XenLab', 'Test-XenDirtyTracking' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
        function Remove-PesterDomain { Get-XenDomain -Name 'pester-oracle*' | Remove-XenDomain -Confirm:$false }
        Remove-PesterDomain
    }
    AfterEach { Remove-PesterDomain }

    Context 'Default' {
        It 'runs every <Mode> variant and misses nothing' -ForEach $modes {
            $results = @(Test-XenDirtyTracking -Mode $Mode -Steps 300 -Seed 3 -AuditInterval 1)
            $results.Count | Should -Be $Count
            foreach ($r in $results) {
                $r | Should -BeOfType XenLab.Lab.DirtyTrackingOracleResult
                $r.Passed | Should -BeTrue -Because ($r.Problems -join '; ')
                $r.MissedPages | Should -Be 0
                $r.AuditProblems | Should -Be 0
                $r.Steps | Should -Be 300
                $r.Queries | Should -BeGreaterThan 20
                $r.Reproducer | Should -BeNullOrEmpty
            }
        }

        It 'selects variants by strategy, Auto meaning each mode''s own' {
            $names = @(Test-XenDirtyTracking -Strategy Auto -Steps 50).Variant
            $names | Should -Contain 'hap/types'
            $names | Should -Contain 'shadow oos=snapshot/backlinks'
            $names | Should -Contain 'arm walk/avail'
            $names | Should -Not -Contain 'hap/memcmp'
        }

        It 'replays the same run for the same seed' {
            $a = Test-XenDirtyTracking -Mode Hap -Strategy Tracker -Steps 400 -Seed 11
            $b = Test-XenDirtyTracking -Mode Hap -Strategy Tracker -Steps 400 -Seed 11
            $b.Queries | Should -Be $a.Queries
            $b.AllDirtyAnswers | Should -Be $a.AllDirtyAnswers
            $b.ModeSwitches | Should -Be $a.ModeSwitches
        }

        It 'leaves mode switches out with -NoModeSwitch' {
            $r = @(Test-XenDirtyTracking -Mode Hap -Strategy Tracker -Steps 400 -NoModeSwitch)
            $r.Count | Should -Be 2                                   # hap/types and its 2 GiB variant
            $r.ModeSwitches | Should -Be 0, 0
        }

        It 'stops between two operations when the pipeline is stopped' {
            $ps = [powershell]::Create()
            $null = $ps.AddScript("Import-Module '$((Join-Path $PSScriptRoot '../../XenLab.psd1'))'; Test-XenDirtyTracking -Steps 100000000")
            $async = $ps.BeginInvoke()
            Start-Sleep -Seconds 2
            $watch = [Diagnostics.Stopwatch]::StartNew()
            $ps.Stop()
            $watch.Elapsed.TotalSeconds | Should -BeLessThan 10
            $async.IsCompleted | Should -BeTrue
            $ps.InvocationStateInfo.State | Should -Be 'Stopped'
            $ps.Dispose()
        }

        It 'shows a table with the variant and what it missed' {
            $text = Test-XenDirtyTracking -Mode Arm -Strategy Memcmp -Steps 20 | Out-String
            $text | Should -Match 'Variant\s+Seed\s+Steps\s+Missed'
            $text | Should -Match 'arm walk/memcmp'
        }

        It 'reports progress while it runs' {
            $ps = [powershell]::Create()
            $null = $ps.AddScript("Import-Module '$((Join-Path $PSScriptRoot '../../XenLab.psd1'))'; Test-XenDirtyTracking -Mode Hap -Strategy Tracker -Steps 300")
            $null = $ps.Invoke()
            $ps.Streams.Progress.Count | Should -BeGreaterThan 1
            $ps.Streams.Progress[-1].RecordType | Should -Be 'Completed'
            $ps.Dispose()
        }
    }

    Context 'DomainName' {
        It 'runs on a copy of the domain and leaves the domain as it was' {
            New-XenDomain -Name pester-oracle -MemoryMB 64 -Vcpus 2 -Paging Shadow | Out-Null
            $before = (Get-XenPerfCounter -DomainName pester-oracle -NonZero | Measure-Object).Count
            $r = Test-XenDirtyTracking -DomainName pester-oracle -Mode Shadow -Strategy BackLinks -Steps 200
            @($r).Count | Should -Be 4                     # three oos settings and the 1 MiB pool
            $r.DomainName | Sort-Object -Unique | Should -Be 'pester-oracle'
            $r.Passed | Should -Not -Contain $false
            (Get-XenPerfCounter -DomainName pester-oracle -NonZero | Measure-Object).Count | Should -Be $before
            (Get-XenDomain pester-oracle).PagingMode | Should -Be 'Shadow'
        }
    }

    Context 'Domain' {
        It 'takes domains from the pipeline' {
            New-XenDomain -Name pester-oracle-a -MemoryMB 64 | Out-Null
            New-XenDomain -Name pester-oracle-b -MemoryMB 64 | Out-Null
            $r = @(Get-XenDomain -Name 'pester-oracle-*' | Test-XenDirtyTracking -Mode Hap -Strategy Memcmp -Steps 50)
            $r.DomainName | Should -Be 'pester-oracle-a', 'pester-oracle-b'
        }
    }

    Context 'Path' {
        It 'runs on a YAML file' {
            $file = Join-Path $TestDrive 'oracle.yaml'
            Set-Content -Path $file -Value "name: pester-oracle-file`nmemory: 64`nvcpus: 2`nframebuffers:`n  - { name: fb, address: 0xF0000000, width: 640, height: 480, bpp: 32 }"
            $r = Test-XenDirtyTracking -Path $file -Mode Hap -Strategy Tracker -Steps 200
            $r.DomainName | Should -Be 'pester-oracle-file'           # one result: the 2 GiB variant sizes its own domain, not the file's
            $r.Passed | Should -BeTrue
            Get-XenDomain -Name pester-oracle-file -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        }
    }

    Context 'Errors' {
        It 'reports an unknown domain name as DomainNotFound' {
            { Test-XenDirtyTracking -DomainName pester-oracle-none -ErrorAction Stop } | Should -Throw -ErrorId 'DomainNotFound,*'
        }

        It 'reports a missing file as ConfigFileNotFound' {
            { Test-XenDirtyTracking -Path (Join-Path $TestDrive 'none.yaml') -ErrorAction Stop } | Should -Throw -ErrorId 'ConfigFileNotFound,*'
        }

        It 'reports a selection no variant has as NoOracleVariant' {
            { Test-XenDirtyTracking -Mode Hap -Strategy BackLinks -ErrorAction Stop } | Should -Throw -ErrorId 'NoOracleVariant,*'
        }

        It 'refuses negative steps' {
            { Test-XenDirtyTracking -Steps -1 -ErrorAction Stop } | Should -Throw -ErrorId 'ParameterArgumentValidationError,*'
        }
    }
}
