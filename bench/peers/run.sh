#!/usr/bin/env bash
# keyguard next to Cloud Custodian and Prowler on the same inputs, against one loopback TLS
# stand-in (`keyguard sim --tls-dir`). Installs the peers (pinned) into virtualenvs, builds the
# release keyguard, runs bench.py and prints one table of ratios. See README.md here.
#
# usage: bench/peers/run.sh [--quick] [--skip-prowler] [--sweeps 1000,10000] [--events 200]
#   env: KEYGUARD_PEERS_VENVS   virtualenvs (default ~/.cache/keyguard-peers)
#        KEYGUARD_PEERS_WORK    inputs, outputs, logs (default ${TMPDIR:-/tmp}/keyguard-peers)
#        KEYGUARD_BIN           use this keyguard binary instead of building one
#        PYTHON                 interpreter for the virtualenvs (python3)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENVS="${KEYGUARD_PEERS_VENVS:-$HOME/.cache/keyguard-peers}"
WORK="${KEYGUARD_PEERS_WORK:-${TMPDIR:-/tmp}/keyguard-peers}"
PY="${PYTHON:-python3}"
# Pinned top-level versions (their own dependencies resolve from PyPI at install time).
C7N_PINS="c7n==0.9.53 c7n-azure==0.7.52"
PROWLER_PINS="prowler==5.46.0"

ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) ARGS+=(--events 50 --cold-runs 5 --sweeps 1000) ;;
    --skip-prowler) ARGS+=(--skip-prowler) ;;
    --sweeps|--events|--cold-runs) ARGS+=("$1" "$2"); shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

# A virtualenv per peer, (re)installed when its pins change.
venv() {
  local dir="$VENVS/$1" pins="$2"
  if [ "$(cat "$dir/.pins" 2>/dev/null)" != "$pins" ]; then
    echo "== installing $pins into $dir" >&2
    rm -rf "$dir"
    "$PY" -m venv "$dir"
    "$dir/bin/pip" install -q --upgrade pip
    # shellcheck disable=SC2086
    "$dir/bin/pip" install -q $pins
    printf '%s' "$pins" > "$dir/.pins"
  fi
}
mkdir -p "$VENVS" "$WORK"
venv c7n "$C7N_PINS"
venv prowler "$PROWLER_PINS"

if [ -n "${KEYGUARD_BIN:-}" ]; then
  KG="$KEYGUARD_BIN"
else
  echo "== building the release keyguard (with the stand-in, cargo feature sim)" >&2
  (cd "$ROOT" && cargo build --release -p keyguard --bin keyguard >&2)
  KG="${CARGO_TARGET_DIR:-$ROOT/target}/release/keyguard"
fi

exec "$PY" "$HERE/bench.py" --keyguard "$KG" --c7n-venv "$VENVS/c7n" --prowler-venv "$VENVS/prowler" \
  --work "$WORK" "${ARGS[@]}"
