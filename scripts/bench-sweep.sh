#!/usr/bin/env bash
# Sweep benchmark: 10,000 resources in azure-sim (release builds), listed once through Resource
# Graph (10 pages of 1,000, its default quota of 15 queries per 5 s enforced) and once through ARM
# list calls (the baseline: 100 resources a page), both dry runs against a fresh embedded store.
# Prints wall time, keyguard's requests by kind, and the ratio. Usage: bash scripts/bench-sweep.sh
set -euo pipefail
cd "$(dirname "$0")/.."
K=./target/release/keyguard
[ -x "$K" ] || { echo "build first: cargo build --release -p keyguard" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $sim_pid 2>/dev/null; rm -rf "$work"' EXIT
"$K" --log-format text sim --port 0 --addr-file "$work/addr" --graph-quota 15/5 >"$work/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 100); do [ -s "$work/addr" ] && break; sleep 0.1; done
sim="http://$(cat "$work/addr")"
curl -fsS -X POST "$sim/_sim/seed/bulk" -H 'content-type: application/json' -d '{
  "subscription": "00000000-0000-0000-0000-0000000bench", "resourceGroups": 10,
  "resourceGroupPrefix": "rg-bench", "driftEvery": 10, "expect": "cmk",
  "perType": {"Microsoft.Storage/storageAccounts": 4000, "Microsoft.Compute/disks": 2000,
              "Microsoft.CognitiveServices/accounts": 2000, "Microsoft.AppConfiguration/configurationStores": 2000}
}' >/dev/null
printf '[[profile]]\nname = "cmk"\nrequire = "cmk"\nmode = "enforce"\n' >"$work/keyguard.toml"
run() { # listing
  rm -f "$work/state.redb"
  curl -fsS -X DELETE "$sim/_sim/requests" >/dev/null 2>&1 || true
  local start end
  start=$(date +%s.%N)
  KEYGUARD_CONFIG="$work/keyguard.toml" KEYGUARD_STATE_PATH="$work/state.redb" KEYGUARD_ARM_ENDPOINT="$sim" \
  KEYGUARD_KEYVAULT_ENDPOINT="$sim" KEYGUARD_AUTH=managed-identity IDENTITY_ENDPOINT="$sim/msi/token" \
  IDENTITY_HEADER=sim-identity-header RUST_LOG=warn \
    "$K" scan --subscription 00000000-0000-0000-0000-0000000bench --dry-run --listing "$1" \
    --format json --output "$work/$1.json" 2>"$work/$1.err" || true
  end=$(date +%s.%N)
  echo "$1 $(python3 -c "print(round($end - $start, 2))") s; $(grep "listed in" "$work/$1.err" | sed "s/^[^:]*: //")"
  curl -fsS "$sim/_sim/requests" | python3 -c '
import json,sys,collections
c=collections.Counter(r["kind"] for r in json.load(sys.stdin) if r.get("principal_oid"))
print("  requests by kind:", dict(c))'
}
run resource-graph
run arm
