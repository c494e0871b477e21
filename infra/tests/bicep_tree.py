"""Helpers over pycep-parser's JSON form of a Bicep file (the parser checkov uses)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

INFRA = Path(__file__).resolve().parents[1]
GENERATED = INFRA / "generated"


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's own properties, under any loop (`[for ...]`) or condition (`if (...)`)."""
    config = resource["config"]
    while "config" in config and ("loop_type" in config or "condition" in config):
        config = config["config"]
    return config


def loop_source(resource: dict[str, Any]) -> Any:
    """The expression a looped resource iterates over, or None."""
    loop = resource["config"].get("loop_type")
    return loop["detail"]["array_name"] if loop else None


def accessor(node: Any) -> tuple[Any, str] | None:
    """(`a`, `b`) for the expression `a.b`."""
    if isinstance(node, dict) and node.get("operator", {}).get("type") == "property_accessor":
        operands = node["operator"]["operands"]
        return operands["operand_1"], operands["operand_2"]
    return None


def loaded_file(doc: dict[str, Any], variable: str) -> str | None:
    """The file a variable reads with loadJsonContent(), relative to the Bicep file."""
    value = doc.get("variables", {}).get(variable, {}).get("value")
    function = value.get("function", {}) if isinstance(value, dict) else {}
    if function.get("type") == "load_json_content":
        return function["parameters"]["file_path"]
    return None


def resources_of(doc: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in doc.get("resources", {}).items() if r["type"] == resource_type}


def strings(node: Any) -> Iterator[str]:
    """Every string anywhere in a parsed tree."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
