"""scripts/package.sh, run for real on a built binary: the zip holds host.json and each
function's function.json at its root, the binary named as host.json's defaultExecutablePath
says, executable, an x86-64 Linux ELF, and no newer glibc than the documented floor."""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

from bicep_tree import INFRA

REPO = INFRA.parent
# The documented floor (infra/README.md, "Package"): the gnu build needs glibc 2.34.
GLIBC_FLOOR = (2, 34)


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    binary = os.environ.get("KEYGUARD_BINARY")
    assert binary and Path(binary).is_file(), "set KEYGUARD_BINARY to a built keyguard binary (scripts/infra-test.sh does)"
    out = tmp_path_factory.mktemp("package") / "keyguard-functionapp.zip"
    run = subprocess.run(
        ["bash", str(REPO / "scripts/package.sh"), "--binary", binary, "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path_factory.getbasetemp(),
    )
    assert run.returncode == 0, run.stderr
    assert out.is_file()
    return out


def test_layout_has_host_json_and_every_function_at_the_root(package):
    with zipfile.ZipFile(package) as z:
        names = set(z.namelist())
        host = json.loads(z.read("host.json"))
    functions = {p.name for p in (REPO / "function-app").iterdir() if (p / "function.json").is_file()}
    assert {"EncryptionDrift", "Reconcile", "Api"} <= functions
    exe = host["customHandler"]["description"]["defaultExecutablePath"]
    assert names == {"host.json", exe} | {f"{f}/function.json" for f in functions}
    assert host == json.loads((REPO / "host.json").read_text())


def test_the_binary_is_executable_and_named_by_host_json(package, tmp_path):
    with zipfile.ZipFile(package) as z:
        exe = json.loads(z.read("host.json"))["customHandler"]["description"]["defaultExecutablePath"]
        info = z.getinfo(exe)
        mode = info.external_attr >> 16
        assert info.create_system == 3, "mode bits are only read from Unix entries"
        assert stat.S_ISREG(mode) and mode & 0o111 == 0o111, oct(mode)
        for name in z.namelist():
            if name != exe:
                assert (z.getinfo(name).external_attr >> 16) & 0o111 == 0, name
        header = z.read(exe)[:20]
        z.extract(exe, tmp_path)
    assert header[:4] == b"\x7fELF" and header[4] == 2, "not a 64-bit ELF"
    assert int.from_bytes(header[18:20], "little") == 0x3E, "not x86-64"
    # It runs: the packaged binary answers --version.
    extracted = tmp_path / exe
    extracted.chmod(0o755)
    version = subprocess.run([str(extracted), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("keyguard ")


def test_the_binary_is_stripped_and_within_the_documented_glibc_floor(package, tmp_path):
    with zipfile.ZipFile(package) as z:
        z.extract("keyguard", tmp_path)
    binary = tmp_path / "keyguard"
    sections = subprocess.run(["readelf", "-S", "-W", str(binary)], capture_output=True, text=True, check=True).stdout
    assert ".symtab" not in sections and ".debug_info" not in sections, "not stripped"
    symbols = subprocess.run(["objdump", "-T", str(binary)], capture_output=True, text=True, check=True).stdout
    versions = {tuple(int(x) for x in v.split(".")) for v in re.findall(r"GLIBC_([0-9]+(?:\.[0-9]+)+)", symbols)}
    assert versions, "no glibc symbol versions found: is this the gnu build?"
    assert max(versions) <= GLIBC_FLOOR, f"needs glibc {max(versions)}, the README documents {GLIBC_FLOOR}"
