# XenLab from several runspaces at once (issue 9 section 5): ForEach-Object -Parallel loads the
# module into each runspace, and they all share the process's one host. Each runspace drives a
# domain of its own with cmdlets and with the domain's methods (which the cmdlets' session lock
# does not cover), checks that its memory holds what it wrote, and removes it; every frame
# comes back to the host.
Describe 'XenLab from parallel runspaces' -Tag 'XenLab', 'Parallel' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
        $modulePath = (Resolve-Path (Join-Path $PSScriptRoot '../../XenLab.psd1')).Path
        $xenHost = [XenLab.PowerShell.XenLabSession]::Host
    }
    AfterAll { Get-XenDomain -Name 'pester-par-*' | Remove-XenDomain -Confirm:$false }

    It 'gives each runspace''s domain exactly its own bytes and every frame back on removal' {
        $free = $xenHost.Machine.FreeFrames
        $results = 1..4 | ForEach-Object -ThrottleLimit 4 -Parallel {
            Import-Module $using:modulePath
            $n = $_
            $name = "pester-par-$n"
            $mode = @('Hap', 'Shadow', 'Hap', 'Shadow')[$n - 1]
            $d = New-XenDomain -Name $name -MemoryMB 64 -MaxMemoryMB 96 -Paging $mode
            $bad = [System.Collections.Generic.List[string]]::new()
            for ($i = 0; $i -lt 40; $i++) {
                $gpa = 0x1000000 + $i * 0x1000
                # A cmdlet write and a method write per page, both tagged with this runspace's number.
                Write-XenGuestMemory -DomainName $name -Address $gpa -Value $n, $i
                $null = $d.WriteGuestPhysU64($gpa + 8, [uint64]($n * 100000 + $i), $null)
                if ($i % 10 -eq 0) { $null = $d.Balloon(20000 + $i * 10) }
                if ($i % 20 -eq 5) { $d.SetPagingMode(@('Hap', 'Shadow')[($n + $i) % 2], $null) }
            }
            for ($i = 0; $i -lt 40; $i++) {
                $gpa = 0x1000000 + $i * 0x1000
                $hex = (Read-XenGuestMemory -DomainName $name -Address $gpa -Length 2).Hex
                if ($hex -ne ('{0:X2}{1:X2}' -f $n, $i)) { $bad.Add("page $i reads $hex") }
                $value = 0
                if (-not $d.TryReadPhysU64($gpa + 8, [ref] $value) -or $value -ne $n * 100000 + $i) { $bad.Add("page $i word reads $value") }
            }
            [pscustomobject]@{
                Name  = $name
                Bad   = $bad.ToArray()
                Clean = Test-XenPaging -DomainName $name
                Host  = [System.Runtime.CompilerServices.RuntimeHelpers]::GetHashCode([XenLab.PowerShell.XenLabSession]::Host)
            }
            Remove-XenDomain -Name $name -Confirm:$false
        }
        $results.Count | Should -Be 4
        foreach ($r in $results) {
            $r.Bad | Should -BeNullOrEmpty -Because "$($r.Name) must read back what its runspace wrote"
            $r.Clean | Should -BeTrue -Because "$($r.Name)'s paging audit must be clean"
        }
        # One host per process: every runspace saw the host this one sees.
        $results.Host | Select-Object -Unique | Should -Be ([System.Runtime.CompilerServices.RuntimeHelpers]::GetHashCode($xenHost))
        $xenHost.Machine.FreeFrames | Should -Be $free
        Get-XenDomain -Name 'pester-par-*' | Should -BeNullOrEmpty
    }
}
