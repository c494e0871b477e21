#!/usr/bin/env bash
# The full-size fault soak (issue 13): the release `keyguard serve`, three instances sharing one
# Azurite, against `keyguard sim`; 1,000 resources of five kinds (reversible, one-way,
# creation-only, exempt, compliant) x 10 rounds = 10,000 events, delivered with duplicates,
# reordering, bursts, retries and late redeliveries while ARM, the identity endpoint, Key Vault,
# the alert receivers, Table Storage and one instance fail. Prints the accounting table; exits
# non-zero when any line of it does not hold. The reduced size of the same test runs in .ci/run.
#   KEYGUARD_SOAK_PER_KIND (200), KEYGUARD_SOAK_ROUNDS (10), KEYGUARD_SOAK_INSTANCES (3),
#   KEYGUARD_SOAK_SEED, KEYGUARD_SOAK_SKIP (comma-separated faults to leave out).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keyguard-target}"
export KEYGUARD_SOAK_PER_KIND="${KEYGUARD_SOAK_PER_KIND:-200}"
export KEYGUARD_SOAK_ROUNDS="${KEYGUARD_SOAK_ROUNDS:-10}"
export KEYGUARD_SOAK_INSTANCES="${KEYGUARD_SOAK_INSTANCES:-3}"
npm ci --prefix tools/azurite --no-audit --no-fund --loglevel=error
cargo build --locked --release -p keyguard --bin keyguard
# keyguard's own JSON log lines are kept out of the way; the table is the output.
cargo test --locked --release -p keyguard-e2e --test soak -- --nocapture 2>&1 | grep -v '^{'
