"""Event Grid's limits, checked on the filters the Bicep deploys (generated/event-filters.json):
at most 25 values per event subscription, 512 characters a value, and together every write
operation of the catalog, each once."""
from __future__ import annotations

import json
import os
import subprocess

from bicep_tree import GENERATED

MAX_VALUES = 25  # https://learn.microsoft.com/azure/event-grid/event-filtering#limitations
MAX_VALUE_CHARS = 512


def filters() -> dict:
    return json.loads((GENERATED / "event-filters.json").read_text())


def catalog_types() -> list[str]:
    """The catalog's types, as the built binary prints them; `infra export --check` first proves
    the committed filters are what that binary derives from the same catalog."""
    binary = os.environ.get("KEYGUARD_BINARY")
    assert binary, "set KEYGUARD_BINARY to a built keyguard binary (scripts/infra-test.sh does)"
    check = subprocess.run([binary, "infra", "export", "--check", "--out", str(GENERATED)], capture_output=True, text=True)
    assert check.returncode == 0, f"generated files are stale: {check.stderr}"
    catalog = subprocess.run([binary, "catalog", "--format", "json"], capture_output=True, text=True, check=True)
    return [row["resourceType"] for row in json.loads(catalog.stdout)]


def test_each_subscription_is_within_event_grid_limits():
    data = filters()
    assert data["maxValuesPerSubscription"] == MAX_VALUES
    assert data["includedEventTypes"] == ["Microsoft.Resources.ResourceWriteSuccess"]
    assert data["key"] == "data.operationName" and data["operatorType"] == "StringIn"
    names = [s["name"] for s in data["subscriptions"]]
    assert len(set(names)) == len(names)
    for s in data["subscriptions"]:
        assert 1 <= len(s["operationNames"]) <= MAX_VALUES, s["name"]
        assert all(len(v) <= MAX_VALUE_CHARS for v in s["operationNames"])
        assert 3 <= len(s["name"]) <= 64


def test_the_subscriptions_cover_every_catalog_type_write_once():
    data = filters()
    values = [v.lower() for s in data["subscriptions"] for v in s["operationNames"]]
    assert len(values) == len(set(values)), "an operation is filtered twice"
    # Fewest subscriptions that hold them.
    assert len(data["subscriptions"]) == -(-len(values) // MAX_VALUES)
    for resource_type in catalog_types():
        assert f"{resource_type}/write".lower() in values, resource_type
    # Only writes: a delete or an action never makes keyguard look.
    assert all(v.endswith("/write") for v in values)
