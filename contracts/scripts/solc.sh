#!/usr/bin/env bash
# solc-js behind forge's native-solc interface (see /work/shared/TOOLCHAIN.md, "Solidity").
#  1. drop `--allow-paths <dir>` (solc-js does not know it), pass everything else on;
#  2. spool stdin/stdout through temp files: solc-js fails on a non-blocking pipe above 64 KiB;
#  3. drop solc-js's `>>>` notice lines from stdout (they precede the JSON);
#  4. exit with solc-js's exit code.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
solcjs="$here/../../node_modules/solc/solc.js"
args=()
skip_next=0
for a in "$@"; do
  if [ "$skip_next" = 1 ]; then skip_next=0; continue; fi
  case "$a" in
    --allow-paths) skip_next=1 ;;
    --allow-paths=*) ;;
    *) args+=("$a") ;;
  esac
done
tmp="$(mktemp -d "${TMPDIR:-/tmp}/hx-solc.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
if [ -t 0 ]; then : > "$tmp/in"; else cat > "$tmp/in"; fi
node "$solcjs" "${args[@]}" < "$tmp/in" > "$tmp/out" 2> "$tmp/err"
rc=$?
grep -v '^>>>' "$tmp/out" || true
cat "$tmp/err" >&2
exit "$rc"
