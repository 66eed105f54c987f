#!/usr/bin/env bash
# Contracts CI (called by `make test`): fmt check, build, tests (offline), gas snapshot check.
# FOUNDRY_PROFILE=deep runs far more fuzz and invariant cases.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
contracts="$(cd "$here/.." && pwd)"
bash "$here/setup.sh" >/dev/null
forge="$contracts/../node_modules/@foundry-rs/forge-linux-amd64/bin/forge"
cd "$contracts"
# Gas snapshot: deterministic unit tests only (fuzz/invariant gas varies with the inputs).
snap_filter=(--no-match-test '(testFuzz_|invariant_)' --no-match-path 'test/invariants/*')

echo "== forge fmt --check"
"$forge" fmt --check
echo "== forge build"
"$forge" build --offline --deny warnings 2>&1 | tail -n 3
echo "== contract sizes (EIP-170: a chain refuses to deploy runtime code above 24,576 bytes)"
"$forge" build --offline --sizes --skip test --skip script | grep -E "ClearingHouse|EscapeHatch|Vault|PriceBounds|InsuranceFund"
echo "== forge test"
"$forge" test --offline
if [ "${FOUNDRY_PROFILE:-default}" = "default" ]; then
  echo "== forge snapshot --check"
  "$forge" snapshot --offline --check "${snap_filter[@]}"
fi
