# Runs the README's PowerShell quick start line by line, in order, from the repository's folder,
# so the first thing a new user types cannot rot. A line whose comment says "refused" must fail;
# every other line must run without an error. A few lines carry the numbers the README promises
# in their comments; those are checked too.
BeforeDiscovery {
    $readme = Get-Content (Join-Path $PSScriptRoot '../../README.md') -Raw
    $block = [regex]::Match($readme, '(?s)## PowerShell quick start.*?```powershell\r?\n(.*?)```').Groups[1].Value
    $quickStart = @(
        $block -split '\r?\n' | Where-Object { $_.Trim() -and $_ -notmatch '^\s*#' } | ForEach-Object {
            @{ Line = $_; Refused = $_ -match '#\s*refused' }
        }
    )
}

Describe 'README quick start' -Tag 'XenLab', 'Readme' {
    BeforeAll {
        $script:root = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
        Import-Module (Join-Path $root 'XenLab.psd1') -Force
        # The quick start creates these by name: start from a host without them.
        Get-XenDomain -Name coarse, demo -ErrorAction SilentlyContinue | Remove-XenDomain -Confirm:$false
        function Invoke-QuickStartLine([string] $Line) {
            $ErrorActionPreference = 'Continue'   # a refused line writes its error; we collect it
            Push-Location $script:root
            try { , @(& ([scriptblock]::Create($Line)) 2>&1) } finally { Pop-Location }
        }
    }
    AfterAll { Get-XenDomain -Name coarse, demo -ErrorAction SilentlyContinue | Remove-XenDomain -Confirm:$false }

    It 'finds the quick start in README.md' -ForEach @(@{ Lines = $quickStart.Count }) {
        $Lines | Should -BeGreaterThan 15
    }

    It 'runs "<Line>"' -ForEach $quickStart {
        $out = Invoke-QuickStartLine $Line
        $errors = @($out | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
        if ($Refused) {
            $errors.Count | Should -BeGreaterThan 0 -Because 'the README says this line is refused'
        } else {
            $errors | ForEach-Object { $_.ToString() } | Should -BeNullOrEmpty
        }
        $objects = @($out | Where-Object { $_ -isnot [System.Management.Automation.ErrorRecord] })
        switch -Regex ($Line) {
            'Set-XenDomain .*coarse' {
                $errors[0].FullyQualifiedErrorId | Should -BeLike 'BalloonRefused,*'
                $errors[0].ToString() | Should -BeLike '*BUG_ON(phys_to_machine_mapping_valid(0x80000))*'
            }
            'Get-XenTranslation .* -Step' {
                # 4 guest entries + 19 EPT entries, with the gpa cache off: (4+1) x (4+1) - 1 = 24, less
                # one because gfn 0x2000 sits in a 2 MiB EPT leaf and its nested walk stops at the EPDE.
                $objects.Count | Should -Be 23
                @($objects | Where-Object Table -EQ 'ept').Count | Should -Be 19
                $objects[-1].Name | Should -Be 'EPDE'
                $objects[-1].Decoded | Should -BeLike '*2M*' 
            }
            'Test-XenPaging' { $objects | Should -Be $true }
            'Get-DirtyVram -AsRectangle' {
                $objects.Count | Should -Be 1
                $objects[0].X | Should -Be 0
                $objects[0].Y | Should -Be 5
                $objects[0].Width | Should -Be 1024
                $objects[0].Height | Should -Be 1
            }
            'Get-XenDomain demo \| Get-DirtyVram\s+#' {
                $objects[0].AllDirty | Should -BeTrue
            }
            'Get-XenVcpu' { $objects[0].Rax | Should -Be 12 }
        }
    }
}
