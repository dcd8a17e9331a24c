# The module package (dotnet pack src/XenLab.Package, which tests/run.sh does before Pester):
# it installs with PSResourceGet from a local folder repository into a throw-away HOME and then
# imports by name from an unrelated folder, as a user's machine would. A missing package fails.
Describe 'XenLab module package' -Tag 'XenLab', 'Package' {
    BeforeAll {
        $root = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
        $manifest = Import-PowerShellDataFile (Join-Path $root 'XenLab.psd1')
        $script:version = $manifest.ModuleVersion
        $script:manifest = $manifest
        $script:packageDir = Join-Path $root 'artifacts/package'
        $script:nupkg = Join-Path $packageDir "XenLab.$version.nupkg"
    }

    Context 'Metadata' {
        It 'has a package for the manifest version <version> in artifacts/package' {
            Test-Path $nupkg | Should -BeTrue -Because 'tests/run.sh packs the module before running Pester'
        }

        It 'carries what a gallery expects in the manifest' {
            $psData = $manifest.PrivateData.PSData
            $psData.ProjectUri | Should -Match '^https://'
            $psData.LicenseUri | Should -Match '^https://.*LICENSE$'
            $psData.ReleaseNotes | Should -Not -BeNullOrEmpty
            $psData.Tags | Should -Contain 'Xen'
            Test-Path (Join-Path $PSScriptRoot '../../LICENSE') | Should -BeTrue
        }

        It 'agrees with the manifest on id, version, description and tags' {
            Add-Type -AssemblyName System.IO.Compression.FileSystem
            $zip = [System.IO.Compression.ZipFile]::OpenRead($nupkg)
            try {
                $entry = $zip.Entries | Where-Object FullName -EQ 'XenLab.nuspec'
                $reader = [System.IO.StreamReader]::new($entry.Open())
                [xml] $nuspec = $reader.ReadToEnd()
                $reader.Dispose()
                $names = @($zip.Entries.FullName)
            } finally { $zip.Dispose() }
            $meta = $nuspec.package.metadata
            $meta.id | Should -Be 'XenLab'
            $meta.version | Should -Be $version
            $meta.description | Should -Be $manifest.Description
            $meta.projectUrl | Should -Be $manifest.PrivateData.PSData.ProjectUri
            $meta.releaseNotes | Should -Be $manifest.PrivateData.PSData.ReleaseNotes
            $tags = $meta.tags -split ' '
            $tags | Should -Contain 'PSModule'
            foreach ($t in $manifest.PrivateData.PSData.Tags) { $tags | Should -Contain $t }
            # Everything Import-Module and Get-Help need, at the paths the manifest names.
            foreach ($n in 'XenLab.psd1', 'LICENSE', 'module/XenLab.Help.psd1', 'module/XenLab.format.ps1xml',
                'module/XenLab.types.ps1xml', 'module/bin/XenLab.PowerShell.dll', 'module/bin/XenLab.Core.dll',
                'module/bin/en-US/XenLab.PowerShell.dll-Help.xml', 'module/en-US/about_XenLab.help.txt') {
                $names | Should -Contain $n
            }
        }
    }

    Context 'Installed by name' {
        BeforeAll {
            # A fresh HOME: PSResourceGet's repository list and the CurrentUser module path live
            # under it, so nothing of this machine's PowerShell setup is used or changed.
            $script:home2 = Join-Path ([IO.Path]::GetTempPath()) ("xenlab-pkg-" + [guid]::NewGuid().ToString('N'))
            $elsewhere = Join-Path $home2 'elsewhere'
            New-Item -ItemType Directory -Path $elsewhere -Force | Out-Null
            $script = @'
$ErrorActionPreference = 'Stop'
Register-PSResourceRepository -Name local -Uri $env:XENLAB_PACKAGE_DIR -Trusted
Install-PSResource XenLab -Repository local -TrustRepository -Quiet
Import-Module XenLab
$m = Get-Module XenLab
New-XenDomain -Name pkg-smoke -MemoryMB 64 | Out-Null
Write-XenGuestMemory -DomainName pkg-smoke -Address 0x2000 -Value 7, 8, 9
[pscustomobject]@{
    ModuleBase = $m.ModuleBase
    Version    = $m.Version.ToString()
    Cmdlets    = @(Get-Command -Module XenLab -CommandType Cmdlet).Count
    Bytes      = @((Read-XenGuestMemory -DomainName pkg-smoke -Address 0x2000 -Length 3).Bytes)
    Synopsis   = (Get-Help New-XenDomain).Synopsis
    About      = (Get-Help about_XenLab | Out-String).Length
    Audit      = [bool](Test-XenPaging -DomainName pkg-smoke)
} | ConvertTo-Json -Compress
'@
            # The pwsh running this suite, started again: an apphost, or dotnet running pwsh.dll.
            $exe = [Environment]::ProcessPath
            $pre = @(if ([IO.Path]::GetFileNameWithoutExtension($exe) -eq 'dotnet') { Join-Path $PSHOME 'pwsh.dll' })
            $saved = @{ HOME = $env:HOME; XENLAB_PACKAGE_DIR = $env:XENLAB_PACKAGE_DIR }
            $env:HOME = $home2; $env:XENLAB_PACKAGE_DIR = $packageDir
            Push-Location $elsewhere
            try {
                $script:output = & $exe @pre -NoProfile -NonInteractive -Command $script 2>&1 | ForEach-Object { "$_" }
                $script:exitCode = $LASTEXITCODE
            } finally {
                Pop-Location
                $env:HOME = $saved.HOME; $env:XENLAB_PACKAGE_DIR = $saved.XENLAB_PACKAGE_DIR
            }
            $json = $output | Where-Object { $_ -like '{*' } | Select-Object -Last 1
            $script:smoke = if ($json) { $json | ConvertFrom-Json } else { $null }
        }
        AfterAll { if ($home2) { Remove-Item -Recurse -Force $home2 -ErrorAction SilentlyContinue } }

        It 'installs with Install-PSResource and imports by name from another folder' {
            $exitCode | Should -Be 0 -Because ($output -join "`n")
            $smoke | Should -Not -BeNullOrEmpty -Because ($output -join "`n")
            $smoke.ModuleBase | Should -BeLike "$home2*"        # the installed copy, not the repository
            $smoke.Version | Should -Be $version
        }

        It 'exports every cmdlet of the manifest and runs them' {
            $smoke.Cmdlets | Should -Be $manifest.CmdletsToExport.Count
            $smoke.Bytes | Should -Be 7, 8, 9
            $smoke.Audit | Should -BeTrue
        }

        It 'brings its cmdlet help and about_XenLab' {
            $smoke.Synopsis | Should -BeLike 'Builds a new guest domain*'
            $smoke.About | Should -BeGreaterThan 5000
        }
    }
}
