BeforeDiscovery {
    $modes = @(@{ Mode = 'Hap' }, @{ Mode = 'Shadow' })
}

Describe 'Invoke-XenGuestCode' -Tag 'XenLab', 'Invoke-XenGuestCode' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
        $sum = "mov rax, 5`nadd rax, 7`nhlt"
        # A domain with two 320x200x32 monitors (63 pages each, stride 1280) and a workload.
        $yaml = Join-Path $TestDrive 'painter.yaml'
        Set-Content -Path $yaml -Value @'
name: pester-gc-painter
memory: 256
framebuffers:
  - { name: left,  address: 0xF0000000, width: 320, height: 200, bpp: 32 }
  - { name: right, address: 0xF0100000, width: 320, height: 200, bpp: 32 }
workload:
  frames: 4
  steps:
    - { kind: fill,   framebuffer: left,  x: 0,  y: 0,  width: 64, height: 8, color: 0xff0000 }
    - { kind: cursor, framebuffer: right, x: 10, y: 10, size: 16, dx: 8, dy: 4, color: 0xffffff }
'@
    }
    BeforeEach { $domain = New-XenDomain -Name pester-gc -MemoryMB 128 -Vcpus 2 }
    AfterEach { Get-XenDomain -Name 'pester-gc*' | Remove-XenDomain -Confirm:$false }

    Context 'DomainNameAssembly' {
        It 'runs mov, add, hlt to Halted with RAX = 12 in <Mode> paging' -ForEach $modes {
            Set-XenPagingMode -DomainName pester-gc -Mode $Mode
            $r = Invoke-XenGuestCode -DomainName pester-gc -Assembly $sum
            $r | Should -BeOfType XenLab.Views.RunResultView
            $r.Reason | Should -Be 'Halted'
            $r.Instructions | Should -Be 3
            $r.DomainName | Should -Be 'pester-gc'
            $r.Instruction | Should -Not -Be 'hlt'           # RIP is past the hlt
            (Get-XenVcpu -DomainName pester-gc -Vcpu 0).Rax | Should -Be 12
            Test-XenPaging -DomainName pester-gc | Should -BeTrue
        }

        It 'stops at a write to an unmapped address with PageFault, the address and error code 0x2, writing no error in <Mode> paging' -ForEach $modes {
            Set-XenPagingMode -DomainName pester-gc -Mode $Mode
            $r = Invoke-XenGuestCode -DomainName pester-gc -Assembly "mov rax, 0x500000000`nmov qword [rax], 1`nhlt" -ErrorVariable err
            $err | Should -BeNullOrEmpty                    # a guest fault is the run's result
            $r.Reason | Should -Be 'PageFault'
            $r.FaultAddress | Should -Be 0x500000000
            $r.ErrorCode | Should -Be 0x2                   # not present, write, supervisor
            $r.Rip | Should -Be 0x7000000a                  # the store, not retired
            $r.Instruction | Should -BeLike 'mov qword ptr `[rax`],1'
            (Get-XenVcpu -DomainName pester-gc -Vcpu 0).Cr2 | Should -Be 0x500000000
        }

        It 'runs a hot loop translated by default and interpreted with -Translate:$false, to the same result' {
            $loop = "mov ecx, 100000`nxor eax, eax`ntop: add rax, rcx`ndec ecx`njnz top`nhlt"
            $off = Invoke-XenGuestCode -DomainName pester-gc -Assembly $loop -Translate:$false
            $rax = (Get-XenVcpu -DomainName pester-gc -Vcpu 0).Rax
            (Get-XenPerfCounter -DomainName pester-gc -Name cpu_block_executed).Value | Should -Be 0
            $on = Invoke-XenGuestCode -DomainName pester-gc -Assembly $loop -Translate
            (Get-XenVcpu -DomainName pester-gc -Vcpu 0).Rax | Should -Be $rax
            $rax | Should -Be 5000050000                      # 100000 + 99999 + ... + 1
            $on.Reason | Should -Be 'Halted'
            $on.Instructions | Should -Be $off.Instructions
            (Get-XenPerfCounter -DomainName pester-gc -Name cpu_block_executed).Value | Should -BeGreaterThan 0
            (Get-XenPerfCounter -DomainName pester-gc -Name cpu_block_translated).Value | Should -BeGreaterThan 0
        }

        It 'reports an instruction outside the subset as Unsupported, naming it' {
            $r = Invoke-XenGuestCode -DomainName pester-gc -Assembly "mov rax, 1`ncpuid`nhlt"
            $r.Reason | Should -Be 'Unsupported'
            $r.Instruction | Should -Be 'cpuid'
            $r.Instructions | Should -Be 1
        }

        It 'reports division by zero as DivideError' {
            (Invoke-XenGuestCode -DomainName pester-gc -Assembly "xor ecx, ecx`nmov eax, 1`ndiv ecx").Reason | Should -Be 'DivideError'
        }

        It 'stops after -Budget instructions with BudgetExhausted' {
            $r = Invoke-XenGuestCode -DomainName pester-gc -Assembly "again: inc rax`njmp again" -Budget 1000
            $r.Reason | Should -Be 'BudgetExhausted'
            $r.Instructions | Should -Be 1000
        }

        It 'loads without running with -Budget 0: RIP at the first instruction' {
            $r = Invoke-XenGuestCode -DomainName pester-gc -Assembly $sum -Budget 0
            $r.Instructions | Should -Be 0
            $r.Rip | Should -Be 0x70000000
            $r.Instruction | Should -Be 'mov rax,5'
            $v = Get-XenVcpu -DomainName pester-gc -Vcpu 0
            $v.Rsp | Should -Be 0x70210000                  # the stack top
        }

        It 'stops before the instruction at a -Breakpoint' {
            $r = Invoke-XenGuestCode -DomainName pester-gc -Assembly "nop`nnop`nnop`nhlt" -Breakpoint 0x70000002
            $r.Reason | Should -Be 'Breakpoint'
            $r.Rip | Should -Be 0x70000002
            $r.Instructions | Should -Be 2
        }

        It 'runs on the -Vcpu given and leaves the other alone' {
            Invoke-XenGuestCode -DomainName pester-gc -Assembly $sum -Vcpu 1 | Out-Null
            (Get-XenVcpu -DomainName pester-gc -Vcpu 1).Rax | Should -Be 12
            (Get-XenVcpu -DomainName pester-gc -Vcpu 0).Rax | Should -Be 0
        }

        It 'loads and runs nothing with -WhatIf' {
            Invoke-XenGuestCode -DomainName pester-gc -Assembly $sum -WhatIf | Should -BeNullOrEmpty
            (Get-XenVcpu -DomainName pester-gc -Vcpu 0).Rip | Should -Be 0
            (Get-XenVcpu -DomainName pester-gc -Vcpu 0).InstructionsRetired | Should -Be 0
        }

        It 'writes a store that Get-DirtyVram then reports, in <Mode> paging' -ForEach $modes {
            Set-XenPagingMode -DomainName pester-gc -Mode $Mode
            Add-XenFramebuffer -DomainName pester-gc -Name mon0 -Address 0xF0000000 -Width 1024 -Height 768
            Mount-XenFramebuffer -DomainName pester-gc -Framebuffer mon0 -VirtualAddress 0x40000000
            Get-DirtyVram -DomainName pester-gc | Out-Null                          # start tracking: all dirty once
            $r = Invoke-XenGuestCode -DomainName pester-gc -Assembly "mov rdi, 0x40005000`nmov eax, 0xff0000`nmov ecx, 16`nrep stosd`nhlt"
            $r.Reason | Should -Be 'Halted'
            $v = Get-DirtyVram -DomainName pester-gc
            $v.DirtyPageIndexes | Should -Be 5                                      # 64 bytes in page 5 (row 5)
            (Read-XenGuestMemory -DomainName pester-gc -Address 0x40005000 -Virtual -Length 4).Bytes | Should -Be 0x00, 0x00, 0xff, 0x00
        }
    }

    Context 'DomainNameCode' {
        It 'runs machine code given as bytes' {
            # mov eax, 42 ; hlt
            $r = Invoke-XenGuestCode -DomainName pester-gc -Code ([byte[]](0xB8, 42, 0, 0, 0, 0xF4))
            $r.Reason | Should -Be 'Halted'
            (Get-XenVcpu -DomainName pester-gc -Vcpu 0).Rax | Should -Be 42
        }
    }

    Context 'DomainNamePath' {
        It 'assembles a .asm file resolved against the PowerShell location' {
            Set-Content -Path (Join-Path $TestDrive 'count.asm') -Value "; count to ten`n    xor ecx, ecx`nagain:`n    inc ecx`n    cmp ecx, 10`n    jne again`n    hlt"
            Push-Location $TestDrive
            try { $r = Invoke-XenGuestCode -DomainName pester-gc -Path count.asm } finally { Pop-Location }
            $r.Reason | Should -Be 'Halted'
            $r.Instructions | Should -Be 32
            (Get-XenVcpu -DomainName pester-gc -Vcpu 0).Rcx | Should -Be 10
        }

        It 'names the file, line and column of an assembly error' {
            $file = Join-Path $TestDrive 'typo.asm'
            Set-Content -Path $file -Value "    xor ecx, ecx`n    inc exc`n    hlt"
            Invoke-XenGuestCode -DomainName pester-gc -Path $file -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'GuestAssembly,*'
            $err[0].CategoryInfo.Category | Should -Be 'ParserError'
            $err[0].ErrorDetails.Message | Should -BeLike "*typo.asm: line 2, column 9: *exc*"
        }

        It 'reports a missing file as AssemblyFileNotFound' {
            Invoke-XenGuestCode -DomainName pester-gc -Path (Join-Path $TestDrive 'none.asm') -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'AssemblyFileNotFound,*'
        }
    }

    Context 'DomainNameResume' {
        It 'continues after a yield (vmcall with eax = 0) to the hlt' {
            $first = Invoke-XenGuestCode -DomainName pester-gc -Assembly "mov rbx, 1`nxor eax, eax`nvmcall`nmov rbx, 9`nhlt"
            $first.Reason | Should -Be 'Hypercall'
            (Get-XenVcpu -DomainName pester-gc -Vcpu 0).Rbx | Should -Be 1
            $next = Invoke-XenGuestCode -DomainName pester-gc -Resume
            $next.Reason | Should -Be 'Halted'
            $next.Instructions | Should -Be 2
            (Get-XenVcpu -DomainName pester-gc -Vcpu 0).Rbx | Should -Be 9
        }

        It 'resumes the domain and vCPU of a result piped to it' {
            Invoke-XenGuestCode -DomainName pester-gc -Vcpu 1 -Assembly "xor eax, eax`nvmcall`nmov rdx, 3`nhlt" |
                Invoke-XenGuestCode -Resume | Select-Object -ExpandProperty Reason | Should -Be 'Halted'
            (Get-XenVcpu -DomainName pester-gc -Vcpu 1).Rdx | Should -Be 3
        }
    }

    Context 'DomainNameWorkload' {
        It 'runs the YAML workload and writes one FrameReport per frame, each framebuffer with dirty pages' {
            New-XenDomain -Path $yaml | Out-Null
            $frames = @(Invoke-XenGuestCode -DomainName pester-gc-painter -Workload)
            $frames.Count | Should -Be 4                                            # the YAML's frames
            $frames[0] | Should -BeOfType XenLab.Lab.FrameReport
            $frames.Frame | Should -Be 0, 1, 2, 3
            foreach ($f in $frames) {
                $f.Reason | Should -Be 'Hypercall'                                  # every frame ends in a yield
                $f.Framebuffers.Framebuffer | Should -Be 'left', 'right'
                $left, $right = $f.Framebuffers
                $left.DirtyPages | Should -Be 3                                     # 8 rows of 1280 bytes: pages 0-2
                $left.Pages | Should -Be 63
                $right.DirtyPages | Should -BeGreaterThan 0                         # the cursor moves every frame
                $f.DirtySummary | Should -Match '^left 3/63, right \d+/63$'
            }
        }

        It 'runs -Frames frames of the steps given as hashtables, overriding the YAML' {
            New-XenDomain -Path $yaml | Out-Null
            $frames = @(Invoke-XenGuestCode -DomainName pester-gc-painter -Workload -Frames 2 -Step @{ Kind = 'Fill'; Framebuffer = 'right'; X = 0; Y = 100; Width = 320; Height = 1; Color = 0xffffffff })
            $frames.Count | Should -Be 2
            foreach ($f in $frames) {
                ($f.Framebuffers | Where-Object Framebuffer -eq 'left').DirtyPages | Should -Be 0
                $right = $f.Framebuffers | Where-Object Framebuffer -eq 'right'
                $right.DirtyPageIndexes | Should -Be 31                             # row 100 starts at byte 128000: page 31
                $rect = @($right.Rectangles())
                $rect[0].Y | Should -BeLessOrEqual 100
            }
        }

        It 'writes a PNG per framebuffer and frame into -PngDirectory' {
            New-XenDomain -Path $yaml | Out-Null
            $dir = Join-Path $TestDrive 'frames'
            Invoke-XenGuestCode -DomainName pester-gc-painter -Workload -Frames 2 -PngDirectory $dir | Out-Null
            (Get-ChildItem $dir -Filter *.png).Name | Sort-Object | Should -Be 'pester-gc-painter-left-0000.png', 'pester-gc-painter-left-0001.png', 'pester-gc-painter-right-0000.png', 'pester-gc-painter-right-0001.png'
        }

        It 'shows frames as a table with a per-framebuffer summary within 120 columns' {
            New-XenDomain -Path $yaml | Out-Null
            $text = Invoke-XenGuestCode -DomainName pester-gc-painter -Workload -Frames 1 | Out-String -Width 120
            $text | Should -Match 'left 3/63, right \d+/63'
            ($text -split "`n" | Measure-Object -Maximum -Property Length).Maximum | Should -BeLessOrEqual 120
        }

        It 'makes each frame last -FrameMilliseconds of domain time, instructions included; without it only the instructions pass' {
            $d = New-XenDomain -Path $yaml
            $start = $d.ClockNs
            $plain = @(Invoke-XenGuestCode -DomainName pester-gc-painter -Workload -Frames 2)
            $plain[1].ClockNs | Should -Be ($start + $plain[0].Instructions + $plain[1].Instructions)
            $start = $d.ClockNs
            $paced = @(Invoke-XenGuestCode -DomainName pester-gc-painter -Workload -Frames 3 -FrameMilliseconds 16.7)
            $paced.ClockNs | Should -Be ($start + 16700000), ($start + 33400000), ($start + 50100000)
            $d.ClockNs | Should -Be ($start + 50100000)
        }

        It 'refuses a negative -FrameMilliseconds (DomainClockOutOfRange) and one over an hour (FrameIntervalOutOfRange), running nothing' {
            $d = New-XenDomain -Path $yaml
            Invoke-XenGuestCode -DomainName pester-gc-painter -Workload -Frames 1 -FrameMilliseconds -1 -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err[0].FullyQualifiedErrorId | Should -BeLike 'DomainClockOutOfRange,*'
            Invoke-XenGuestCode -DomainName pester-gc-painter -Workload -Frames 1 -FrameMilliseconds 3600001 -ErrorVariable err2 -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err2[0].FullyQualifiedErrorId | Should -BeLike 'FrameIntervalOutOfRange,*'
            $d.ClockNs | Should -Be 0
        }

        It 'refuses a domain without a workload and without -Step (NoWorkload)' {
            Invoke-XenGuestCode -DomainName pester-gc -Workload -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'NoWorkload,*'
        }

        It 'refuses a step with an unknown key, naming it (InvalidWorkloadStep)' {
            New-XenDomain -Path $yaml | Out-Null
            Invoke-XenGuestCode -DomainName pester-gc-painter -Workload -Step @{ Kind = 'Fill'; Framebuffer = 'left'; Colour = 1 } -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidWorkloadStep,*'
            $err[0].Exception.Message | Should -BeLike "Step 1 has the key 'Colour'*"
        }

        It 'refuses a rectangle that does not fit its framebuffer (InvalidConfiguration)' {
            New-XenDomain -Path $yaml | Out-Null
            Invoke-XenGuestCode -DomainName pester-gc-painter -Workload -Step @{ Kind = 'Fill'; Framebuffer = 'left'; Width = 321 } -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidConfiguration,*'
        }
    }

    Context 'Domain' {
        It 'runs in every domain piped from Get-XenDomain' {
            New-XenDomain -Name pester-gc-2 -MemoryMB 128 | Out-Null
            $r = Get-XenDomain 'pester-gc*' | Invoke-XenGuestCode -Assembly $sum
            $r.DomainName | Should -Be 'pester-gc', 'pester-gc-2'
            $r.Reason | Should -Be 'Halted', 'Halted'
        }

        It 'runs the workload of a piped domain' {
            $d = New-XenDomain -Path $yaml
            @($d | Invoke-XenGuestCode -Workload -Frames 1).Count | Should -Be 1
        }
    }

    Context 'Errors' {
        It 'names the line and column of a bad mnemonic (GuestAssembly, ParserError)' {
            Invoke-XenGuestCode -DomainName pester-gc -Assembly "mov rax, 5`n  frob rax, 7`nhlt" -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'GuestAssembly,*'
            $err[0].CategoryInfo.Category | Should -Be 'ParserError'
            $err[0].Exception.Line | Should -Be 2
            $err[0].Exception.Column | Should -Be 3
            $err[0].Exception.Message | Should -BeLike 'line 2, column 3: *frob*'
            (Get-XenVcpu -DomainName pester-gc -Vcpu 0).Rip | Should -Be 0                 # nothing loaded
        }

        It 'refuses guest code in an Arm domain (GuestCodeIsX86Only) and loads nothing' {
            Set-XenPagingMode -DomainName pester-gc -Mode Arm
            Invoke-XenGuestCode -DomainName pester-gc -Assembly $sum -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err[0].FullyQualifiedErrorId | Should -BeLike 'GuestCodeIsX86Only,*'
            $err[0].CategoryInfo.Category | Should -Be 'InvalidOperation'
            (Get-XenVcpu -DomainName pester-gc -Vcpu 0).Rip | Should -Be 0
        }

        It 'refuses -Resume and -Workload in an Arm domain too' {
            Set-XenPagingMode -DomainName pester-gc -Mode Arm
            Invoke-XenGuestCode -DomainName pester-gc -Resume -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'GuestCodeIsX86Only,*'
            Invoke-XenGuestCode -DomainName pester-gc -Workload -Step @{ Kind = 'pt-churn'; Pages = 4 } -ErrorVariable err2 -ErrorAction SilentlyContinue
            $err2[0].FullyQualifiedErrorId | Should -BeLike 'GuestCodeIsX86Only,*'
        }

        It 'refuses a vCPU the domain does not have (VcpuOutOfRange)' {
            Invoke-XenGuestCode -DomainName pester-gc -Assembly $sum -Vcpu 2 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'VcpuOutOfRange,*'
        }

        It 'refuses a domain without RAM where programs live (InvalidConfiguration)' {
            New-XenDomain -Name pester-gc-tiny -MemoryMB 32 | Out-Null
            Invoke-XenGuestCode -DomainName pester-gc-tiny -Assembly $sum -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidConfiguration,*'
            $err[0].Exception.Message | Should -BeLike '*gfn 0x3000*'
        }

        It 'reports a domain that does not exist (DomainNotFound)' {
            Invoke-XenGuestCode -DomainName pester-gc-none -Assembly $sum -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -BeLike 'DomainNotFound,*'
        }
    }

    Context 'Progress and stopping' {
        BeforeAll { . (Join-Path $PSScriptRoot 'XenLabBackground.ps1') }

        It 'writes progress per frame of a workload' {
            New-XenDomain -Path $yaml | Out-Null
            $records = Get-XenLabProgress 'Invoke-XenGuestCode -DomainName pester-gc-painter -Workload -Frames 4 | Out-Null'
            $records.Activity | Select-Object -Unique | Should -Be "Guest workload on domain 'pester-gc-painter' vcpu 0"
            $records.PercentComplete | Should -Be 0, 25, 50, 75, 100
            $records[1].StatusDescription | Should -Be 'frame 1 of 4'
            $records[-1].RecordType | Should -Be 'Completed'
        }

        It 'stops between frames on Ctrl+C: the frames that ran were written and the vCPU resumes at the next frame' {
            New-XenDomain -Path $yaml | Out-Null
            $bg = Start-XenLabBackground 'Invoke-XenGuestCode -DomainName pester-gc-painter -Workload -Frames 100000'
            Wait-XenLabProgress $bg -Count 2
            $bg.Handle.IsCompleted | Should -BeFalse
            Stop-XenLabBackground $bg | Should -BeLessThan ([TimeSpan]::FromSeconds(10))
            $bg.PowerShell.InvocationStateInfo.State | Should -Be 'Stopped'
            $frames = @($bg.Output)
            $bg.PowerShell.Dispose()
            $frames.Count | Should -BeGreaterThan 0
            $frames.Count | Should -BeLessThan 100000
            $frames.Frame | Should -Be (0..($frames.Count - 1))                    # whole frames, in order
            $frames.Reason | Select-Object -Unique | Should -Be 'Hypercall'
            # Nothing ran past the frame that was running when the stop came; that one finished (to
            # its yield) but its report may not have made it out of the stopping pipeline.
            $written = ($frames | Measure-Object -Property Instructions -Sum).Sum
            $perFrame = ($frames | Measure-Object -Property Instructions -Maximum).Maximum
            $retired = (Get-XenPerfCounter -DomainName pester-gc-painter -Name cpu_instructions_retired).Value
            $retired - $written | Should -BeGreaterOrEqual 0
            $retired - $written | Should -BeLessOrEqual (2 * $perFrame)
            Test-XenPaging -DomainName pester-gc-painter | Should -BeTrue
            (Invoke-XenGuestCode -DomainName pester-gc-painter -Resume).Reason | Should -Be 'Hypercall'   # one more frame, to its yield
        }
    }
}
