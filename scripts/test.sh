#!/usr/bin/env bash
# The whole test suite: unit, property, fixture and end-to-end tests, then the demo as a smoke test.
# End-to-end tests start the real `keyguard` binary, so it is built first.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keyguard-target}"
# Real components the notification tests talk to: an SMTP server (aiosmtpd), Microsoft's
# Adaptive Cards parser and renderer (npm adaptivecards), both pinned, and Debian's Chromium,
# which renders the Teams card to a PNG kept under $CARGO_TARGET_DIR/artifacts.
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "error: chromium is needed for the card rendering test: sudo apt-get install -y chromium" >&2
        exit 1
    fi
fi
python3 -m pip install --quiet --disable-pip-version-check "aiosmtpd==1.4.6"
npm ci --prefix crates/keyguard-notify/tests/node --no-audit --no-fund --loglevel=error
# The SARIF 2.1.0 schema (from Microsoft's npm package) and Ajv, for the report tests.
npm ci --prefix crates/keyguard-report/tests/node --no-audit --no-fund --loglevel=error
# Azurite, Microsoft's Azure Storage emulator (pinned), for every Table Storage state-store test;
# the tests start their own instances on free loopback ports.
npm ci --prefix tools/azurite --no-audit --no-fund --loglevel=error
cargo build --locked --workspace --bins
# End-to-end tests each run two processes; a few at a time keep a 2-core machine responsive.
cargo test --locked --workspace --no-fail-fast -- --test-threads 4
# The deployment files: checkov and pycep-parser (pinned, in virtualenvs under $CARGO_TARGET_DIR)
# on infra/, and scripts/package.sh on the binary built above.
KEYGUARD_BINARY="$CARGO_TARGET_DIR/debug/keyguard" bash scripts/infra-test.sh
"$CARGO_TARGET_DIR/debug/keyguard" --log-format text demo --output "${KEYGUARD_DEMO_OUTPUT:-$CARGO_TARGET_DIR/demo-output}"
# The shipped build without the stand-in (feature `sim` off, as scripts/package.sh builds it): no
# `sim`/`demo` command, the test-only Key Vault redirect refused. It replaces the debug binary the
# tests above ran, so the default one is put back after it (e2e tests run alone expect it).
cargo build --locked -p keyguard --bin keyguard --no-default-features
bash scripts/check-no-sim.sh "$CARGO_TARGET_DIR/debug/keyguard"
cargo build --locked -p keyguard --bin keyguard
