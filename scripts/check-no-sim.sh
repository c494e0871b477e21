#!/usr/bin/env bash
# The shipped build leaves the local Azure stand-in out (cargo feature `sim` off): its binary has
# no `sim` or `demo` subcommand and refuses the stand-in's test-only setting. Checks the binary
# given, built with `cargo build -p keyguard --no-default-features` (scripts/package.sh does so).
set -euo pipefail
bin="${1:?usage: check-no-sim.sh path/to/keyguard}"
fail() { echo "error: $*" >&2; exit 1; }
help="$("$bin" --help)"
grep -qE '^  scan ' <<<"$help" || fail "$bin --help lists no commands; is it keyguard?"
for command in sim demo; do
    if grep -qE "^  $command " <<<"$help"; then fail "$bin lists the stand-in's '$command' command"; fi
    if "$bin" "$command" --help >/dev/null 2>&1; then fail "$bin accepts '$command'"; fi
done
if out="$(KEYGUARD_KEYVAULT_ENDPOINT=http://127.0.0.1:9 "$bin" store check 2>&1)"; then
    fail "$bin accepted KEYGUARD_KEYVAULT_ENDPOINT: $out"
fi
grep -q "KEYGUARD_KEYVAULT_ENDPOINT is a test setting" <<<"$out" || fail "unexpected refusal: $out"
echo "check-no-sim: $bin has no stand-in (no sim, no demo, test-only setting refused)"
