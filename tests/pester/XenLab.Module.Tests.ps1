# Conventions every exported command meets: help with a synopsis, a description, examples and
# every parameter described, read through Get-Help from the MAML the module ships; and every
# help example runs, failing only with an ErrorId its remarks name. Examples assume the lab
# domain of about_XenLab (memory 2048, maxmem 2364, 2 vCPUs), which each run gets fresh.
BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
    $commands = @(Get-Command -Module XenLab | ForEach-Object { @{ Name = $_.Name } })
    $examples = @(foreach ($c in Get-Command -Module XenLab) {
        $i = 0
        foreach ($e in (Get-Help $c.Name -Full).examples.example) {
            $i++
            @{ Name = $c.Name; Index = $i; Code = $e.code; Remarks = (@($e.remarks | ForEach-Object Text) -join ' ') }
        }
    })
}

Describe 'XenLab module conventions' -Tag 'XenLab', 'Conventions' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
        $common = [System.Management.Automation.PSCmdlet]::CommonParameters + [System.Management.Automation.PSCmdlet]::OptionalCommonParameters
    }

    It 'found the module''s commands and examples to check' -ForEach @{ CommandCount = $commands.Count; ExampleCount = $examples.Count } {
        # Guard: with no commands found, every -ForEach below would run nothing and pass.
        $CommandCount | Should -BeGreaterOrEqual 31
        $ExampleCount | Should -BeGreaterOrEqual $CommandCount
    }

    It 'exports exactly the cmdlets the assembly has' {
        $manifest = Import-PowerShellDataFile (Join-Path $PSScriptRoot '../../XenLab.psd1')
        (Get-Command -Module XenLab).Name | Sort-Object | Should -Be ($manifest.CmdletsToExport | Sort-Object)
    }

    It 'finds the about_XenLab topic through Get-Help' {
        # Found in module/en-US because the nested manifest module/XenLab.Help.psd1 makes module/ a module base.
        $about = Get-Help about_XenLab
        $about.Name | Should -Be 'about_XenLab'
        ($about | Out-String) | Should -Match 'SHORT DESCRIPTION'
    }

    Context 'Help of <Name>' -ForEach $commands {
        BeforeAll {
            $help = Get-Help $Name -Full
            $command = Get-Command $Name
        }

        It 'has a synopsis written for it' {
            # Without MAML, Get-Help makes the synopsis from the syntax, which starts with the name.
            $help.Synopsis | Should -Not -BeNullOrEmpty
            $help.Synopsis | Should -Not -BeLike "$Name *"
        }

        It 'has a description' {
            ($help.description.Text -join '') | Should -Not -BeNullOrEmpty
        }

        It 'has at least one example with code and remarks' {
            @($help.examples.example).Count | Should -BeGreaterOrEqual 1
            foreach ($e in $help.examples.example) {
                $e.code | Should -Not -BeNullOrEmpty
                (@($e.remarks | ForEach-Object Text) -join '') | Should -Not -BeNullOrEmpty
            }
        }

        It 'describes every parameter' {
            $documented = @{}
            foreach ($p in $help.parameters.parameter) { $documented[$p.name] = ($p.description.Text -join '') }
            foreach ($p in $command.Parameters.Keys | Where-Object { $_ -notin $common }) {
                $documented[$p] | Should -Not -BeNullOrEmpty -Because "-$p of $Name needs help"
            }
        }

        It 'declares an output type unless it writes nothing' {
            if ($Name -notin 'Remove-XenDomain', 'Remove-XenGuestMapping', 'Remove-XenFramebuffer') {
                $command.OutputType | Should -Not -BeNullOrEmpty
            }
        }
    }

    Context 'Example <Index> of <Name>' -ForEach $examples {
        BeforeAll {
            $before = @((Get-XenDomain).Name)
            if ('lab' -notin $before) { New-XenDomain -Name lab -MemoryMB 2048 -MaxMemoryMB 2364 -Vcpus 2 | Out-Null }
        }
        AfterAll {
            Get-XenDomain | Where-Object Name -notin $before | Remove-XenDomain -Confirm:$false
            Remove-Item (Join-Path ([IO.Path]::GetTempPath()) 'xenlab-demo.yaml') -ErrorAction SilentlyContinue
            Remove-Item (Join-Path ([IO.Path]::GetTempPath()) 'xenlab-*.png') -ErrorAction SilentlyContinue
            Remove-Item (Join-Path ([IO.Path]::GetTempPath()) 'xenlab-demo.asm') -ErrorAction SilentlyContinue
        }

        It 'runs, failing only with an ErrorId its remarks name' {
            $output = & { $ErrorActionPreference = 'Continue'; . ([scriptblock]::Create($Code)) } 2>&1 6>$null
            foreach ($err in @($output | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })) {
                $id = $err.FullyQualifiedErrorId.Split(',')[0]
                $Remarks | Should -Match "\b$([regex]::Escape($id))\b" -Because "example $Index of $Name failed with '$err'"
            }
        }
    }
}
