Describe 'Measure-XenVlpt' -Tag 'XenLab', 'Measure-XenVlpt' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../../XenLab.psd1') -Force
        $small = @{ Domains = 2; FaultsPerSwitch = 4; Switches = 4; DomainMemoryMB = 16 }
    }

    It 'pays 513 TLBIs by address per slot write with shared slots' {
        # d0 traced, d1 not: ->d0 loads its slot, ->d1 unloads it, twice: 4 writes of 512 pages + 1 alias.
        $m = Measure-XenVlpt @small -Layout SharedSlots -Invalidation ByAddress
        $m | Should -BeOfType XenLab.Paging.Arm.VlptMeasurement
        $m.Strategy | Should -Be 'vlpt shared, by address'
        $m.Faults | Should -Be 8
        $m.SlotWrites | Should -Be 4
        $m.InvalidationsByAddress | Should -Be (4 * 513)
        $m.DescriptorReads | Should -Be 16
    }

    It 'flushes once per switch that rewrote the slots with -Invalidation FullFlush' {
        $m = Measure-XenVlpt @small -Layout SharedSlots -Invalidation FullFlush
        $m.FullFlushes | Should -Be 4
        $m.InvalidationsByAddress | Should -Be 0
    }

    It 'maps and reads three table pages per fault with -Lookup Walk, and writes no slots' {
        $m = Measure-XenVlpt Walk @small
        $m.Strategy | Should -Be 'walk'
        $m.DescriptorReads | Should -Be 24
        $m.Maps | Should -Be 24
        $m.SlotWrites | Should -Be 0
    }

    It 'prices the counts with -Cost by name' {
        $zero = @{ TlbHit = 0; TlbMiss = 0; DescriptorRead = 0; MapDomainPage = 0; TlbiByAddress = 0; FullFlush = 0; SlotWrite = 1 }
        (Measure-XenVlpt @small -Layout SharedSlots -Cost $zero).Cycles | Should -Be 4
        $walk = Measure-XenVlpt Walk @small -Cost @{ TlbMiss = 0; MapDomainPage = 0 }
        $walk.CyclesPerFault | Should -Be 30                 # 3 descriptor reads of 10 cycles
    }

    It 'refuses an unknown cost as InvalidConfiguration' {
        Measure-XenVlpt @small -Cost @{ Bogus = 1 } -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidConfiguration,*'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        "$($err[0])" | Should -BeLike "*Unknown cost 'Bogus'*"
    }

    It 'shows a table with the cycles per fault' {
        $text = Measure-XenVlpt @small | Out-String -Width 200
        $text | Should -BeLike '*Strategy*Cycles/Fault*'
        $text | Should -BeLike '*vlpt slices*'
    }
}
