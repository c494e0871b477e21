#!/usr/bin/env bash
# Builds the Function App package: dist/keyguard-functionapp.zip with host.json, one folder per
# function (EncryptionDrift/function.json, ...) and the keyguard binary (Linux x86-64, stripped,
# executable bit set) at the root, named as host.json's defaultExecutablePath says.
#
#   bash scripts/package.sh                      # cargo build --release, then zip
#   bash scripts/package.sh --binary PATH        # zip an already built binary (CI reuses its build)
#   bash scripts/package.sh --out FILE           # another zip path
#
# The binary is the glibc (gnu) build: it needs the glibc version printed below (2.34 when built
# on Debian 12). See infra/README.md for how that compares with the Functions Linux images.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keyguard-target}"

binary=""
out="dist/keyguard-functionapp.zip"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
        --out) out="${2:?--out needs a path}"; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

command -v python3 >/dev/null || { echo "error: python3 is required to write the zip" >&2; exit 1; }

if [ -z "$binary" ]; then
    [ "$(uname -s)/$(uname -m)" = "Linux/x86_64" ] || {
        echo "error: build on Linux x86-64 (the Functions Linux workers), or pass --binary" >&2
        exit 1
    }
    # Leave the local Azure stand-in out when the crate lets a feature do that.
    features=()
    if cargo metadata --format-version 1 --no-deps --locked \
        | python3 -c 'import json,sys; m=json.load(sys.stdin); k=[p for p in m["packages"] if p["name"]=="keyguard"][0]; sys.exit(0 if "sim" in k["features"] else 1)'; then
        features=(--no-default-features)
    fi
    cargo build --release --locked -p keyguard --bin keyguard "${features[@]}"
    binary="$CARGO_TARGET_DIR/release/keyguard"
fi
[ -f "$binary" ] || { echo "error: no binary at $binary" >&2; exit 1; }

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
exe_name="$(python3 -c 'import json; print(json.load(open("host.json"))["customHandler"]["description"]["defaultExecutablePath"])')"
cp host.json "$stage/"
for dir in function-app/*/; do
    name="$(basename "$dir")"
    mkdir -p "$stage/$name"
    cp "$dir/function.json" "$stage/$name/"
done
cp "$binary" "$stage/$exe_name"
# The release profile strips already; a debug build handed in with --binary is stripped here.
if command -v strip >/dev/null; then strip "$stage/$exe_name"; fi
chmod 0755 "$stage/$exe_name"

glibc_floor="$(objdump -T "$stage/$exe_name" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1 || true)"

mkdir -p "$(dirname "$out")"
# Python's zipfile writes the Unix mode into each entry, so the executable bit survives on the
# read-only run-from-package file system (a zip made on Windows loses it).
python3 - "$stage" "$out" <<'PY'
import os, sys, zipfile
stage, out = sys.argv[1], sys.argv[2]
tmp = out + ".tmp"
with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
    for root, dirs, files in os.walk(stage):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            arc = os.path.relpath(path, stage)
            info = zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so external_attr carries the mode
            info.external_attr = (os.stat(path).st_mode & 0o777 | 0o100000) << 16
            with open(path, "rb") as f:
                z.writestr(info, f.read())
os.replace(tmp, out)
PY
echo "wrote $out ($(du -h "$out" | cut -f1)); $exe_name needs glibc >= ${glibc_floor:-unknown}"
