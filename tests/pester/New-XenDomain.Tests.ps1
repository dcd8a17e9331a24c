BeforeDiscovery {
    $pagingModes = @(
        @{ Paging = 'Hap';    Name = 'pester-new-hap' }
        @{ Paging = 'Shadow'; Name = 'pester-new-shadow' }
        @{ Paging = 'Arm';    Name = 'pester-new-arm' }
    )
}

Describe 'New-XenDomain' -Tag 'XenLab', 'New-XenDomain' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
        function Remove-PesterDomain { Get-XenDomain -Name 'pester-new-*' | Remove-XenDomain -Confirm:$false }
        Remove-PesterDomain
    }
    AfterEach { Remove-PesterDomain }

    Context 'Settings' {
        It 'builds a domain with the memory, maxmem and vCPUs given' {
            $d = New-XenDomain -Name pester-new-a -MemoryMB 2048 -MaxMemoryMB 2364 -Vcpus 2
            $d | Should -BeOfType XenLab.Domains.Domain
            $d.Name | Should -Be 'pester-new-a'
            $d.MemoryMiB | Should -Be 2048
            # The E820's RAM lacks the 384 KiB below 1 MiB that is not RAM, so it holds 2363 whole MiB.
            $d.Config.EffectiveMaxMemMiB | Should -Be 2364
            $d.MaxMemMiB | Should -Be 2363
            $d.VcpuCount | Should -Be 2
            $d.DomainName | Should -Be 'pester-new-a'
        }

        It 'defaults maxmem to memory and to one vCPU with HAP paging' {
            $d = New-XenDomain -Name pester-new-b -MemoryMB 512
            $d.Config.EffectiveMaxMemMiB | Should -Be 512
            $d.VcpuCount | Should -Be 1
            $d.PagingMode | Should -Be 'Hap'
        }

        It 'starts the domain in <Paging> paging when asked' -ForEach $pagingModes {
            $d = New-XenDomain -Name $Name -MemoryMB 64 -Paging $Paging -ErrorAction Stop
            $d.PagingMode | Should -Be $Paging
            Test-XenPaging -DomainName $Name | Should -BeTrue
        }

        It 'registers the domain so Get-XenDomain finds it' {
            New-XenDomain -Name pester-new-c -MemoryMB 64 | Out-Null
            (Get-XenDomain -Name pester-new-c).Name | Should -Be 'pester-new-c'
        }

        It 'builds nothing with -WhatIf' {
            New-XenDomain -Name pester-new-whatif -MemoryMB 64 -WhatIf
            Get-XenDomain -Name pester-new-whatif -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        }
    }

    Context 'Path' {
        It 'builds the domain a YAML file describes' {
            $file = Join-Path $TestDrive 'good.yaml'
            Set-Content -Path $file -Value "name: pester-new-file`nmemory: 512`nmaxmem: 768`nvcpus: 2`nidentity_strategy: coarse"
            $d = New-XenDomain -Path $file
            $d.Name | Should -Be 'pester-new-file'
            $d.MemoryMiB | Should -Be 512
            $d.Config.MaxMemMiB | Should -Be 768
            $d.IdentityStrategy | Should -Be 'Coarse'
        }

        It 'resolves a relative path against the current location' {
            Set-Content -Path (Join-Path $TestDrive 'rel.yaml') -Value "name: pester-new-rel`nmemory: 64"
            Push-Location $TestDrive
            try { (New-XenDomain -Path ./rel.yaml).Name | Should -Be 'pester-new-rel' }
            finally { Pop-Location }
        }

        It 'takes files from Get-ChildItem through the pipeline' {
            Set-Content -Path (Join-Path $TestDrive 'piped.yaml') -Value "name: pester-new-piped`nmemory: 64"
            (Get-Item (Join-Path $TestDrive 'piped.yaml') | New-XenDomain).Name | Should -Be 'pester-new-piped'
        }
    }

    Context 'Errors' {
        It 'reports a broken YAML file as a ParserError naming file, line and column' {
            $file = Join-Path $TestDrive 'bad.yaml'
            Set-Content -Path $file -Value "name: pester-new-bad`nmemroy: 512"
            New-XenDomain -Path $file -ErrorVariable err -ErrorAction SilentlyContinue | Out-Null
            $err[0].FullyQualifiedErrorId | Should -BeLike 'ConfigFile,*'
            $err[0].CategoryInfo.Category | Should -Be 'ParserError'
            $err[0].Exception.Message | Should -BeLike "*bad.yaml(2,1)*memroy*did you mean 'memory'*"
            Get-XenDomain -Name pester-new-bad -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        }

        It 'reports a deeply nested file as a ParserError at the level too deep, and PowerShell lives on' {
            # 80 KB of '[' overflowed the stack inside the YAML parser and killed pwsh.
            $file = Join-Path $TestDrive 'deep.yaml'
            Set-Content -Path $file -Value ("name: pester-new-deep`nmemory: " + ('[' * 80000))
            New-XenDomain -Path $file -ErrorVariable err -ErrorAction SilentlyContinue | Out-Null
            $err[0].FullyQualifiedErrorId | Should -BeLike 'ConfigFile,*'
            $err[0].Exception.Message | Should -BeLike '*deep.yaml(2,40)*nested more than 32 deep*'
            Get-XenDomain -Name pester-new-deep -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        }

        It 'names the position of the key a build error came from, keeping its ErrorId' {
            $file = Join-Path $TestDrive 'hole.yaml'
            Set-Content -Path $file -Value "name: pester-new-hole`nmemory: 64`nidentity:`n  - { start: 0x200000, size: 4K }"
            New-XenDomain -Path $file -ErrorVariable err -ErrorAction SilentlyContinue | Out-Null
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidConfiguration,*'
            $err[0].Exception.Message | Should -BeLike '*hole.yaml(4,5): Identity range*covers populated RAM*'
            Get-XenDomain -Name pester-new-hole -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        }

        It 'reports a missing file as ObjectNotFound' {
            { New-XenDomain -Path (Join-Path $TestDrive 'none.yaml') -ErrorAction Stop } | Should -Throw -ErrorId 'ConfigFileNotFound,*'
        }

        It 'refuses maxmem below memory as an invalid argument and builds nothing' {
            New-XenDomain -Name pester-new-inv -MemoryMB 1024 -MaxMemoryMB 512 -ErrorVariable err -ErrorAction SilentlyContinue | Out-Null
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidConfiguration,*'
            $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
            $err[0].Exception.Message | Should -BeLike '*maxmem 512 MiB is below memory 1024 MiB*'
            Get-XenDomain -Name pester-new-inv -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        }

        It 'refuses a second domain with the same name' {
            New-XenDomain -Name pester-new-dup -MemoryMB 64 | Out-Null
            { New-XenDomain -Name pester-new-dup -MemoryMB 64 -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidConfiguration,*'
            @(Get-XenDomain -Name pester-new-dup).Count | Should -Be 1
        }

        It 'reports running out of host memory as LimitsExceeded and leaves nothing behind' {
            # The host has 64 GiB: a domain of about 98 GiB cannot be populated.
            New-XenDomain -Name pester-new-huge -MemoryMB 100000 -ErrorVariable err -ErrorAction SilentlyContinue | Out-Null
            $err[0].FullyQualifiedErrorId | Should -BeLike 'MachineMemoryExhausted,*'
            $err[0].CategoryInfo.Category | Should -Be 'LimitsExceeded'
            Get-XenDomain -Name pester-new-huge -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        }
    }

    Context 'Progress and stopping' {
        BeforeAll { . (Join-Path $PSScriptRoot 'XenLabBackground.ps1') }

        It 'writes progress while it builds a big domain, ending with a completed record' {
            $records = Get-XenLabProgress 'New-XenDomain -Name pester-new-big -MemoryMB 4096 | Out-Null'
            $records[0].Activity | Should -BeLike "Building domain 'pester-new-big'*"
            $records.Count | Should -BeGreaterThan 10                               # a safe point every 64 Ki pages
            $records[-1].RecordType | Should -Be 'Completed'
            $records[-1].PercentComplete | Should -Be 100
            $big = Get-XenDomain -Name pester-new-big
            $big.PopulatedPages | Should -Be $big.MaxPages                          # every E820 RAM page of 4 GiB
        }

        It 'stops a big build on Ctrl+C and leaves no domain and no memory behind' {
            $before = (Get-XenDomain | Measure-Object).Count
            $bg = Start-XenLabBackground 'New-XenDomain -Name pester-new-stopped -MemoryMB 49152 -Paging Arm'   # 48 GiB: seconds to build
            Wait-XenLabProgress $bg -Count 3
            $bg.Handle.IsCompleted | Should -BeFalse
            Stop-XenLabBackground $bg | Should -BeLessThan ([TimeSpan]::FromSeconds(10))
            $bg.PowerShell.InvocationStateInfo.State | Should -Be 'Stopped'
            $bg.PowerShell.Dispose()
            Get-XenDomain -Name pester-new-stopped -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            (Get-XenDomain | Measure-Object).Count | Should -Be $before
            # The memory it had taken is free again: a domain of the same size fits in the 64 GiB host now.
            $d = New-XenDomain -Name pester-new-stopped -MemoryMB 49152 -Paging Shadow
            $d.PopulatedPages | Should -Be $d.MaxPages
            Test-XenPaging -Domain $d | Should -BeTrue
        }
    }
}
