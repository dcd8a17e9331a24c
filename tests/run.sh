#!/usr/bin/env bash
# Runs every XenLab test: the xunit suites (emulator and module metadata) and, where pwsh is
# on PATH, the Pester suites against the freshly built module. Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
passed=0; failed=0; status=0
log=$(mktemp)

echo "== build"
if ! dotnet build XenLab.sln -c Release -m:1 -nologo -v q 2>&1 | tee "$log" | grep -E "error|Build succeeded|Warn" ; then :; fi
if grep -qE " error |error [A-Z]+[0-9]+" "$log"; then
  echo "build failed"; echo "0 passed, 1 failed"; exit 1
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
if command -v pwsh >/dev/null 2>&1; then
  pwsh -NoProfile -NonInteractive -File tests/pester/Invoke-XenLabPester.ps1 2>&1 | tee "$log"
  line=$(grep -E "^Pester: [0-9]+ passed, [0-9]+ failed" "$log" | tail -n 1)
  if [ -n "$line" ]; then
    p=$(echo "$line" | sed -E 's/Pester: ([0-9]+) passed, ([0-9]+) failed.*/\1/')
    f=$(echo "$line" | sed -E 's/Pester: ([0-9]+) passed, ([0-9]+) failed.*/\2/')
    passed=$((passed + p)); failed=$((failed + f))
  else
    echo "Pester did not report a result"; failed=$((failed + 1))
  fi
else
  echo "SKIPPED: pwsh is not on PATH, so the Pester suites in tests/pester were not run."
fi
rm -f "$log"
[ "$failed" -eq 0 ] || status=1
echo "$passed passed, $failed failed"
exit $status
