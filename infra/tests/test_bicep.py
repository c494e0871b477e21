"""infra/*.bicep, parsed by pycep-parser: the role, the event filters and the policy ids are
loaded from the generated files (written by `keyguard infra export`), never listed by hand, and
nothing grants Owner, Contributor or a wildcard action."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pycep import BicepParser

from bicep_tree import GENERATED, INFRA, accessor, body, loaded_file, loop_source, resources_of, strings

BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
# Built-in roles that must never be assigned by this deployment (ids from Azure's built-in role list).
FORBIDDEN_ROLE_IDS = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
}


@pytest.fixture(scope="module")
def parsed() -> dict[str, dict]:
    return {p.relative_to(INFRA).as_posix(): BicepParser().parse(file_path=p) for p in BICEP_FILES}


def load(name: str) -> dict:
    return json.loads((GENERATED / name).read_text())


def resolves_to(doc_path: str, doc: dict, variable: str, generated_name: str) -> bool:
    loaded = loaded_file(doc, variable)
    return loaded is not None and (INFRA / Path(doc_path).parent / loaded).resolve() == GENERATED / generated_name


def test_every_bicep_file_parses(parsed):
    expected = {
        "main.bicep", "main.mg.bicep", "modules/app.bicep", "modules/home.bicep", "modules/target.bicep",
        "modules/topic.bicep", "modules/eventSubscriptions.bicep", "modules/deadLetterAccess.bicep",
        "modules/secretsAccess.bicep",
    }
    assert expected <= set(parsed), sorted(parsed)
    for name, doc in parsed.items():
        assert doc.get("resources") or doc.get("modules"), f"{name} declares nothing"


def test_role_permissions_are_loaded_from_role_json(parsed):
    definitions = {
        name: resources_of(doc, "Microsoft.Authorization/roleDefinitions") for name, doc in parsed.items()
    }
    assert {n for n, d in definitions.items() if d} == {"main.bicep", "main.mg.bicep"}
    for name in ("main.bicep", "main.mg.bicep"):
        (definition,) = definitions[name].values()
        (permissions,) = body(definition)["properties"]["permissions"]
        for key in ("actions", "notActions", "dataActions", "notDataActions"):
            variable, field = accessor(permissions[key])
            assert field == key, f"{name}: {key} is not role.{key}"
            assert resolves_to(name, parsed[name], variable, "role.json"), f"{name}: {variable} is not role.json"


def test_event_subscriptions_loop_over_the_generated_filters(parsed):
    name = "modules/eventSubscriptions.bicep"
    doc = parsed[name]
    (writes,) = resources_of(doc, "Microsoft.EventGrid/systemTopics/eventSubscriptions").values()
    variable, field = accessor(loop_source(writes))
    assert field == "subscriptions" and resolves_to(name, doc, variable, "event-filters.json")
    item = writes["config"]["loop_type"]["detail"]["item_name"]
    properties = body(writes)["properties"]
    assert accessor(properties["filter"]["includedEventTypes"]) == (variable, "includedEventTypes")
    (advanced,) = properties["filter"]["advancedFilters"]
    assert accessor(advanced["values"]) == (item, "operationNames")
    assert accessor(advanced["key"]) == (variable, "key")
    assert properties["destination"]["endpointType"] == "AzureFunction"
    assert properties["destination"]["properties"]["resourceId"].endswith("/functions/EncryptionDrift")
    # Event Grid's ceilings (30 attempts, 24 h), then dead-lettering with the topic's identity.
    assert properties["retryPolicy"] == {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440}
    dead_letter = properties["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"]["type"] == "SystemAssigned"
    assert dead_letter["deadLetterDestination"]["endpointType"] == "StorageBlob"
    # The system topic is the subscription's ARM events.
    (topic,) = resources_of(parsed["modules/topic.bicep"], "Microsoft.EventGrid/systemTopics").values()
    assert body(topic)["properties"]["topicType"] == "Microsoft.Resources.Subscriptions"


def test_policy_assignments_come_from_policies_json(parsed):
    name = "modules/target.bicep"
    doc = parsed[name]
    assignments = resources_of(doc, "Microsoft.Authorization/policyAssignments")
    everywhere = [n for n, d in parsed.items() if resources_of(d, "Microsoft.Authorization/policyAssignments")]
    assert everywhere == [name]
    (preventions,) = assignments.values()
    source = loop_source(preventions)["operator"]
    assert source["type"] == "conditional" and source["operands"]["condition"] == "enablePolicyDeny"
    assert source["operands"]["false_value"] == []
    variable, field = accessor(source["operands"]["true_value"])
    assert field == "assignments" and resolves_to(name, doc, variable, "policies.json")
    item = preventions["config"]["loop_type"]["detail"]["item_name"]
    properties = body(preventions)["properties"]
    assert accessor(properties["policyDefinitionId"]) == (item, "policyDefinitionId")
    assert accessor(properties["parameters"]["effect"]["value"]) == (item, "effect")
    # No policy definition id is written into the Bicep itself.
    guid = re.compile(r"policyDefinitions/[0-9a-f-]{36}", re.I)
    for n, d in parsed.items():
        assert not [s for s in strings(d) if guid.search(s)], n


def test_nothing_grants_owner_contributor_or_wildcards(parsed):
    for name, doc in parsed.items():
        text = " ".join(strings(doc)).lower()
        for role_id, role in FORBIDDEN_ROLE_IDS.items():
            assert role_id not in text, f"{name} refers to {role}"
        for assignment in resources_of(doc, "Microsoft.Authorization/roleAssignments").values():
            role = json.dumps(body(assignment)["properties"]["roleDefinitionId"])
            assert not any(r in role for r in FORBIDDEN_ROLE_IDS), f"{name}: {role}"
    role = load("role.json")
    for action in role["actions"] + role["dataActions"]:
        assert action != "*" and not action.startswith("*"), action
        if "*" in action:
            # The one wildcard: read-only operation status under a provider's locations.
            assert re.fullmatch(r"Microsoft\.[A-Za-z]+/locations/\*/read", action), action
        assert not action.endswith(("/delete", "/action")), action
    assert role["notActions"] == [] and role["notDataActions"] == []
    writes = [a for a in role["actions"] if a.endswith("/write")]
    assert writes and all("*" not in a for a in writes)
