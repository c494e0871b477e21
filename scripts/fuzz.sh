#!/usr/bin/env bash
# Coverage-guided fuzzing of keyguard's parsers with AFL++ (cargo-afl: works on the stable
# toolchain). Installs the engine if needed, builds the instrumented targets of fuzz/ in their own
# target directory, then runs each target for a fixed time, one after the other, and prints one
# line per target: seconds, executions, corpus size, crashes and hangs.
#
#   bash scripts/fuzz.sh                   # every target, 300 s each
#   FUZZ_SECONDS=60 bash scripts/fuzz.sh event keyref
#
# Exits 1 if any target crashed or hung; the inputs are under $FUZZ_OUT/<target>/default/{crashes,hangs}.
# Each one becomes a regression test (a unit test beside the fix) and a file in fuzz/findings/<target>/,
# which `cargo test -p keyguard-fuzz` replays on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keyguard-target}"
FUZZ_SECONDS="${FUZZ_SECONDS:-300}"
# The instrumented build lives apart, so it never invalidates the normal build's artifacts.
FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-$CARGO_TARGET_DIR/afl}"
FUZZ_OUT="${FUZZ_OUT:-$CARGO_TARGET_DIR/fuzz-out}"
CARGO_AFL_VERSION=0.18.2
ALL_TARGETS=(envelope event resource_id keyref config az_export)
TARGETS=("${@:-${ALL_TARGETS[@]}}")

for t in "${TARGETS[@]}"; do
    [ -d "fuzz/corpus/$t" ] || { echo "error: unknown target $t (targets: ${ALL_TARGETS[*]})" >&2; exit 2; }
done
case "$FUZZ_SECONDS" in '' | *[!0-9]*) echo "error: FUZZ_SECONDS must be a number of seconds" >&2; exit 2 ;; esac

if [ "$(cargo afl --version 2>/dev/null | awk '{print $2}')" != "$CARGO_AFL_VERSION" ]; then
    cargo install --locked cargo-afl --version "$CARGO_AFL_VERSION"
fi
# AFL++ itself (built from the source cargo-afl ships); it says so and exits non-zero when it
# already was built for this toolchain, which is fine; anything else is not.
if ! config_log="$(cargo afl config --build 2>&1)"; then
    grep -q "already built" <<<"$config_log" || { echo "$config_log" >&2; exit 1; }
fi

CARGO_TARGET_DIR="$FUZZ_TARGET_DIR" cargo afl build --release --locked -p keyguard-fuzz --features afl --bins

# Not a tuned fuzzing box: no CPU pinning (other builds share the cores), no core-dump pipe
# check, no CPU governor check, plain log output instead of the terminal UI.
export AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1

status=0
summary=()
for t in "${TARGETS[@]}"; do
    out="$FUZZ_OUT/$t"
    rm -rf "$out"
    mkdir -p "$out/in"
    cp fuzz/corpus/"$t"/* "$out/in/"
    if [ -d "fuzz/findings/$t" ]; then cp fuzz/findings/"$t"/* "$out/in/" 2>/dev/null || true; fi
    echo "fuzzing $t for ${FUZZ_SECONDS}s (log: $out/afl.log)"
    # -t: an input that takes over 2 s is a hang; -V: stop after the fixed time.
    nice -n 10 cargo afl fuzz -V "$FUZZ_SECONDS" -t 2000 -i "$out/in" -o "$out" \
        -- "$FUZZ_TARGET_DIR/release/$t" >"$out/afl.log" 2>&1 || {
        echo "error: afl-fuzz failed for $t:" >&2
        tail -20 "$out/afl.log" >&2
        exit 1
    }
    stats="$out/default/fuzzer_stats"
    stat() { awk -F' *: *' -v k="$1" '$1 == k {print $2}' "$stats"; }
    crashes="$(stat saved_crashes)"
    hangs="$(stat saved_hangs)"
    summary+=("$(printf '%-12s %6ss %12s execs %8s/s %6s paths %5s edges %5s crashes %5s hangs' \
        "$t" "$(stat run_time)" "$(stat execs_done)" "$(stat execs_per_sec)" "$(stat corpus_count)" "$(stat edges_found)" "$crashes" "$hangs")")
    if [ "$crashes" != 0 ] || [ "$hangs" != 0 ]; then
        status=1
        ls "$out"/default/crashes "$out"/default/hangs >&2
    fi
done
printf '%s\n' "${summary[@]}"
exit "$status"
