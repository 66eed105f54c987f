#!/usr/bin/env bash
# Idempotent set-up of the Solidity toolchain (called by `make setup`).
#  - `npm ci` only when node_modules is missing or older than package-lock.json;
#  - writes contracts/foundry.toml from contracts/foundry.toml.in with the absolute solc-js wrapper path.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
contracts="$(cd "$here/.." && pwd)"
root="$(cd "$contracts/.." && pwd)"
stamp="$root/node_modules/.package-lock.json"   # npm writes this hidden lockfile on every install

if [ ! -d "$root/node_modules" ] || [ ! -f "$stamp" ] || [ "$root/package-lock.json" -nt "$stamp" ]; then
  echo "setup: npm ci"
  (cd "$root" && npm ci --no-audit --no-fund --loglevel=error)
  touch "$stamp"
fi

for bin in "$root/node_modules/@foundry-rs/forge-linux-amd64/bin/forge" \
           "$root/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"; do
  [ -x "$bin" ] || chmod +x "$bin"
done
chmod +x "$here/solc.sh"

wrapper="$here/solc.sh"
want="$(sed "s|@SOLC@|$wrapper|" "$contracts/foundry.toml.in")"
if [ ! -f "$contracts/foundry.toml" ] || [ "$(cat "$contracts/foundry.toml")" != "$want" ]; then
  printf '%s\n' "$want" > "$contracts/foundry.toml"
  echo "setup: wrote contracts/foundry.toml"
fi
