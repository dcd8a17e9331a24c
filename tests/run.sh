#!/usr/bin/env bash
# Runs every XenLab test: the xunit suites (emulator and module metadata) and the Pester suites
# against the freshly built module. Ends with one line "N passed, N failed" counting both.
#
# PowerShell and Pester come from NuGet when they are not already here: pwsh 7.6.9 as a .NET tool
# and Pester 5.9.1 as a package, both into .tools/ (ignored by git). A Pester run that cannot
# start counts as a failure, never as a skip.
set -u
cd "$(dirname "$0")/.."
root=$(pwd)
passed=0; failed=0; status=0
log=$(mktemp)
tools="$root/.tools"
pwsh_version=7.6.9
pester_version=5.9.1

echo "== build"
if ! dotnet build XenLab.sln -c Release -m:1 -nologo -v q 2>&1 | tee "$log" | grep -E "error|Build succeeded|Warn" ; then :; fi
if grep -qE " error |error [A-Z]+[0-9]+" "$log"; then
  echo "build failed"; echo "0 passed, 1 failed"; exit 1
fi

echo "== package"
# The module package the Pester suite XenLab.Package.Tests.ps1 installs by name.
rm -rf artifacts/package
if ! dotnet pack src/XenLab.Package -c Release -nologo -v q >"$log" 2>&1; then
  cat "$log"; echo "FAILED: dotnet pack src/XenLab.Package"; failed=$((failed + 1))
else
  ls artifacts/package
fi

echo "== xunit"
dotnet test XenLab.sln -c Release --no-build -nologo 2>&1 | tee "$log" | grep -E "Passed!|Failed!|\[FAIL\]|error" || true
while read -r f p; do
  failed=$((failed + f)); passed=$((passed + p))
done < <(sed -nE 's/.*(Passed|Failed)! +- +Failed: +([0-9]+), +Passed: +([0-9]+).*/\2 \3/p' "$log")
if ! grep -qE "(Passed|Failed)! +- +Failed" "$log"; then
  echo "xunit produced no result line"; failed=$((failed + 1))
fi

echo "== pester"
# pwsh: the one on PATH if it is 7.4 or later, else the .NET tool in .tools/pwsh.
pwsh_cmd=""
if command -v pwsh >/dev/null 2>&1 && pwsh -NoProfile -NonInteractive -Command 'if ($PSVersionTable.PSVersion -lt [version]"7.4") { exit 1 }' >/dev/null 2>&1; then
  pwsh_cmd=$(command -v pwsh)
else
  if [ ! -x "$tools/pwsh/pwsh" ]; then
    echo "installing PowerShell $pwsh_version (.NET tool) into .tools/pwsh"
    dotnet tool install --tool-path "$tools/pwsh" PowerShell --version "$pwsh_version" >"$log" 2>&1 || cat "$log"
  fi
  [ -x "$tools/pwsh/pwsh" ] && pwsh_cmd="$tools/pwsh/pwsh"
fi
pester_psd1="$tools/packages/pester/$pester_version/tools/Pester.psd1"
if [ ! -f "$pester_psd1" ]; then
  echo "restoring Pester $pester_version from NuGet into .tools/packages"
  dotnet restore tests/tools/Pester.proj --packages "$tools/packages" -nologo -v q >"$log" 2>&1 || cat "$log"
fi
if [ -z "$pwsh_cmd" ]; then
  echo "FAILED: PowerShell could not be installed, so the Pester suites could not run"; failed=$((failed + 1))
elif [ ! -f "$pester_psd1" ]; then
  echo "FAILED: Pester $pester_version could not be restored, so the Pester suites could not run"; failed=$((failed + 1))
else
  echo "pwsh: $pwsh_cmd ($("$pwsh_cmd" -NoProfile -NonInteractive -Command '$PSVersionTable.PSVersion.ToString()' 2>/dev/null))"
  "$pwsh_cmd" -NoProfile -NonInteractive -File tests/pester/Invoke-XenLabPester.ps1 -PesterPath "$pester_psd1" 2>&1 | tee "$log"
  line=$(grep -E "^Pester: [0-9]+ passed, [0-9]+ failed" "$log" | tail -n 1)
  if [ -n "$line" ]; then
    p=$(echo "$line" | sed -E 's/Pester: ([0-9]+) passed, ([0-9]+) failed.*/\1/')
    f=$(echo "$line" | sed -E 's/Pester: ([0-9]+) passed, ([0-9]+) failed.*/\2/')
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$p" -eq 0 ]; then echo "FAILED: Pester passed no test"; failed=$((failed + 1)); fi
  else
    echo "FAILED: Pester did not report a result"; failed=$((failed + 1))
  fi
fi
rm -f "$log"
[ "$failed" -eq 0 ] || status=1
echo "$passed passed, $failed failed"
exit $status
