#!/usr/bin/env python3
"""Rebuilds fuzz/corpus/<target>/ from the repository's fixtures (the committed seed corpus).

Run from anywhere: `python3 fuzz/make_seeds.py`. Seeds are named by where they came from; the
script only adds and overwrites `seed-*` files, so findings kept beside them (`finding-*`) stay.
"""
import hashlib
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
EVENTGRID = ROOT / "tests" / "fixtures" / "eventgrid"
FUNCTIONS = ROOT / "tests" / "fixtures" / "functions"
ARM = ROOT / "tests" / "fixtures" / "arm"
EXPORTS = ROOT / "crates" / "keyguard-core" / "testdata" / "az-export"
EXAMPLE_CONFIG = ROOT / "crates" / "keyguard-core" / "examples" / "keyguard.example.toml"


def write(target, name, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (folder / f"seed-{name}").write_bytes(data)


def short(text):
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)


def fixture_json(folder):
    for path in sorted(folder.rglob("*.json")):
        try:
            yield path, json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue


def events():
    """Every event in the Event Grid fixtures: deliveries (arrays) and single events."""
    for path, value in fixture_json(EVENTGRID):
        for event in value if isinstance(value, list) else [value]:
            if isinstance(event, dict) and ("eventType" in event or "specversion" in event):
                yield path.stem, event


def main():
    for path in sorted(EVENTGRID.glob("*.json")):
        write("event", path.name, path.read_bytes())

    # The host's envelopes: the captured ones of other triggers, and each fixture event as the
    # host sends it, as an object and as the JSON text of one, with and without a retry context.
    for path in sorted(FUNCTIONS.glob("request.*.json")):
        write("envelope", path.name, path.read_bytes())
    for index, (stem, event) in enumerate(events()):
        write("envelope", f"{stem}-{index}-object.json", json.dumps({"Data": {"eventGridEvent": event}, "Metadata": {}}))
        metadata = {"RetryContext": {"RetryCount": 1, "MaxRetryCount": 5}, "sys": {"MethodName": "EncryptionDrift"}}
        write(
            "envelope",
            f"{stem}-{index}-text.json",
            json.dumps({"Data": {"eventGridEvent": json.dumps(event)}, "Metadata": metadata}),
        )

    texts = set()
    for folder in (ARM, EVENTGRID, EXPORTS):
        for _, value in fixture_json(folder):
            texts.update(strings(value))
    ids = sorted(t for t in texts if t.startswith(("/subscriptions/", "/providers/")) and len(t) < 600)
    for text in ids:
        write("resource_id", short(text), text)
    for text in ["00000000-0000-0000-0000-000000000000", "/providers/Microsoft.Management/managementGroups/mg1"]:
        write("resource_id", short(text), text)

    identity = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/uai"
    keys = sorted(t for t in texts if t.startswith("https://") and (".vault." in t or ".managedhsm." in t))
    sets = [t for t in ids if "diskencryptionsets" in t.lower()]
    for text in keys + sets:
        write("keyref", short(text), text)
        write("keyref", short(text + identity), f"{text}\n{identity}")
    stored = {"vaultUri": "https://kv1.vault.azure.net", "keyName": "k", "keyVersion": "0123456789abcdef0123456789abcdef"}
    write("keyref", "stored.json", json.dumps(stored))
    write("keyref", "client-id", "2c1a4f8e-5b7d-4e0a-9c3f-1d2e3f4a5b6c")

    write("config", "keyguard.example.toml", EXAMPLE_CONFIG.read_bytes())
    write(
        "config",
        "scoped.toml",
        '[settings]\ndry_run = true\n\n[[profile]]\nname = "tagged"\nrequire = "mmk"\nmode = "enforce"\n'
        '[profile.scope]\nsubscriptions = ["00000000-0000-0000-0000-000000000000"]\ntags = { env = "prod" }\n\n'
        '[[exemption]]\nresource = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/*"\n'
        'reason = "CHG-1"\nexpires = 2027-01-31T10:00:00Z\n',
    )

    for path in sorted(EXPORTS.iterdir()):
        if path.suffix in (".json", ".jsonl"):
            write("az_export", path.name, path.read_bytes())


if __name__ == "__main__":
    main()
