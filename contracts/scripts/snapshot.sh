#!/usr/bin/env bash
# Regenerate contracts/.gas-snapshot after an intended gas change (same filter as test.sh checks).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
contracts="$(cd "$here/.." && pwd)"
bash "$here/setup.sh" >/dev/null
cd "$contracts"
"$contracts/../node_modules/@foundry-rs/forge-linux-amd64/bin/forge" snapshot --offline \
  --no-match-test '(testFuzz_|invariant_)' --no-match-path 'test/invariants/*'
