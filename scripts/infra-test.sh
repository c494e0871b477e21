#!/usr/bin/env bash
# Tests of the deployment files with real components, no Azure: checkov scans infra/, pycep-parser
# (the Bicep parser checkov uses) parses every .bicep file, and scripts/package.sh packs a real
# binary. Both tools are pinned and installed into virtualenvs under $CARGO_TARGET_DIR: checkov
# pins its own older pycep-parser, so the two get separate environments.
#
#   KEYGUARD_BINARY=path/to/keyguard bash scripts/infra-test.sh    # default: the debug build
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keyguard-target}"

CHECKOV_PIN="checkov==3.3.30"
PYTEST_PINS=("pycep-parser==0.7.1" "pytest==8.3.5")

# venv DIR PIN...: a virtualenv holding exactly these pins (re-created when they change).
venv() {
    local dir="$1"; shift
    local want; want="$(printf '%s\n' "$@" | sort)"
    if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.pins" 2>/dev/null)" = "$want" ]; then
        return
    fi
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    printf '%s\n' "$want" > "$dir/.pins"
}

venv "$CARGO_TARGET_DIR/infra-checkov" "$CHECKOV_PIN"
venv "$CARGO_TARGET_DIR/infra-pytest" "${PYTEST_PINS[@]}"

export KEYGUARD_BINARY="${KEYGUARD_BINARY:-$CARGO_TARGET_DIR/debug/keyguard}"
export KEYGUARD_CHECKOV="$CARGO_TARGET_DIR/infra-checkov/bin/checkov"
[ -x "$KEYGUARD_BINARY" ] || { echo "error: no keyguard binary at $KEYGUARD_BINARY: cargo build -p keyguard first" >&2; exit 1; }

set +e
"$CARGO_TARGET_DIR/infra-pytest/bin/python" -m pytest infra/tests -v -p no:cacheprovider --rootdir infra/tests
status=$?
set -e
# pytest exits 5 when it collected no test: that is a failure here, not a pass.
if [ "$status" -eq 5 ]; then
    echo "error: pytest collected no test in infra/tests" >&2
    exit 1
fi
exit "$status"
