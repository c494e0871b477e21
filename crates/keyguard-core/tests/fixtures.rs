#![allow(clippy::unwrap_used)]
//! Every shared fixture, parsed and judged with its expected outcome written out.
//!
//! Fixtures are Microsoft's own examples; they win over our memory of the formats. A new file in
//! a fixture directory without an entry here fails the build, so nothing is silently untested.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use keyguard_core::catalog::KeyRef;
use keyguard_core::{
    Action, Config, DriftReason, EncryptionState, EventError, EventKind, IncomingEvent, NoRevertReason, PlanContext,
    ResourceId, RevertTarget, Schema, Verdict, evaluate, lookup, parse_delivery, plan,
};
use serde_json::Value;
use time::macros::datetime;

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// File names in a fixture directory; a missing directory fails the test rather than passing vacuously.
fn list_dir(rel: &str) -> BTreeSet<String> {
    let dir = fixtures_root().join(rel);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("fixture directory {} is missing: {e}", dir.display()));
    entries
        .map(|e| e.expect("directory entry").file_name().to_string_lossy().into_owned())
        .collect()
}

// -------------------------------------------------------------------------------------------
// Events

const WRITE_ID: &str = "4db48cba-50a2-455a-93b4-de41a3b5b7f6";
const DELETE_ID: &str = "19a69642-1aad-4a96-a5ab-8d05494513ce";
const RN_ID: &str = "4eef929a-a65c-47dd-93e2-46b8c17c6c17";
const RN_DELETED_ID: &str = "d4611260-d179-4f86-b196-3a9d4128be2d";
const STORAGE_TYPE: &str = "Microsoft.Storage/storageAccounts";
const STORAGE_WRITE: &str = "Microsoft.Storage/storageAccounts/write";
const STORAGE_DELETE: &str = "Microsoft.Storage/storageAccounts/delete";

#[derive(Debug)]
enum Ev {
    /// ResourceWriteSuccess.
    Write {
        schema: Schema,
        id: &'static str,
        resource_id: &'static str,
        operation: &'static str,
        caller_object_id: Option<&'static str>,
        caller_upn: Option<&'static str>,
        caller_ip: Option<&'static str>,
    },
    /// Another Microsoft.Resources.* event.
    OtherArm {
        schema: Schema,
        id: &'static str,
        event_type: &'static str,
        operation: &'static str,
    },
    /// Recognised as Resource Notifications CreatedOrUpdated, rejected for its resource id.
    NotificationWithInvalidId {
        id: &'static str,
    },
    NotificationDeleted {
        schema: Schema,
        id: &'static str,
        resource_type: &'static str,
        name: &'static str,
    },
    Validation {
        id: &'static str,
        code: &'static str,
        has_url: bool,
    },
    Unrecognised {
        id: &'static str,
        event_type: &'static str,
    },
    /// Not an event at all (a config body, a reply body): rejected for the missing field.
    MissingField {
        field: &'static str,
    },
}

enum Expect {
    /// Documentation, not a payload.
    NotAPayload,
    /// A delivery body and the outcome for each event in it.
    Delivery(Vec<Ev>),
}

fn expectations() -> Vec<(&'static str, Expect)> {
    use Ev::*;
    use Expect::*;
    let storage_write = |schema| Write {
        schema,
        id: WRITE_ID,
        resource_id: "/subscriptions/{subscription-id}/resourceGroups/{resource-group}/providers/Microsoft.Storage/storageAccounts/{storage-name}",
        operation: STORAGE_WRITE,
        caller_object_id: Some("{ID}"),
        caller_upn: Some("{user-name}"),
        caller_ip: Some("{IP-address}"),
    };
    vec![
        ("eventgrid/README.md", NotAPayload),
        (
            "eventgrid/arm-resourceactionsuccess.eventgrid.spec-example.json",
            Delivery(vec![OtherArm {
                schema: Schema::EventGrid,
                id: "{ID}",
                event_type: "Microsoft.Resources.ResourceActionSuccess",
                operation: "Microsoft.EventHub/namespaces/AuthorizationRules/listKeys/action",
            }]),
        ),
        (
            "eventgrid/arm-resourcedeletesuccess.cloudevents.spec-example.json",
            Delivery(vec![OtherArm {
                schema: Schema::CloudEvents,
                id: DELETE_ID,
                event_type: "Microsoft.Resources.ResourceDeleteSuccess",
                operation: STORAGE_DELETE,
            }]),
        ),
        (
            "eventgrid/arm-resourcedeletesuccess.eventgrid.spec-example.json",
            Delivery(vec![OtherArm {
                schema: Schema::EventGrid,
                id: DELETE_ID,
                event_type: "Microsoft.Resources.ResourceDeleteSuccess",
                operation: STORAGE_DELETE,
            }]),
        ),
        (
            "eventgrid/arm-resourcewritefailure.eventgrid.spec-example.json",
            Delivery(vec![OtherArm {
                schema: Schema::EventGrid,
                id: WRITE_ID,
                event_type: "Microsoft.Resources.ResourceWriteFailure",
                operation: STORAGE_WRITE,
            }]),
        ),
        (
            "eventgrid/arm-resourcewritesuccess.cloudevents.spec-example.json",
            Delivery(vec![storage_write(Schema::CloudEvents)]),
        ),
        (
            "eventgrid/arm-resourcewritesuccess.eventgrid.spec-example.json",
            Delivery(vec![storage_write(Schema::EventGrid)]),
        ),
        (
            "eventgrid/arm-resourcewritesuccess.subscription-topic.delivery.docs.json",
            Delivery(vec![storage_write(Schema::EventGrid)]),
        ),
        (
            "eventgrid/deadletter-event.eventgrid.docs.json",
            Delivery(vec![Unrecognised {
                id: "93902694-901e-008f-6f95-7153a806873c",
                event_type: "Microsoft.Storage.BlobCreated",
            }]),
        ),
        (
            "eventgrid/eventsubscription-azurefunction-destination.put-body.docs.json",
            Delivery(vec![MissingField { field: "id" }]),
        ),
        (
            "eventgrid/eventsubscription-get-azurefunction-destination.arm-spec-example.json",
            Delivery(vec![MissingField { field: "id" }]),
        ),
        (
            "eventgrid/resourcenotifications-createdorupdated.cloudevents.spec-example.json",
            Delivery(vec![NotificationWithInvalidId { id: RN_ID }]),
        ),
        (
            "eventgrid/resourcenotifications-createdorupdated.eventgrid.spec-example.json",
            Delivery(vec![NotificationWithInvalidId { id: RN_ID }]),
        ),
        (
            "eventgrid/resourcenotifications-deleted.cloudevents.spec-example.json",
            Delivery(vec![NotificationDeleted {
                schema: Schema::CloudEvents,
                id: RN_DELETED_ID,
                resource_type: STORAGE_TYPE,
                name: "{storageAccount-name}",
            }]),
        ),
        (
            "eventgrid/resourcenotifications-deleted.eventgrid.spec-example.json",
            Delivery(vec![NotificationDeleted {
                schema: Schema::EventGrid,
                id: RN_DELETED_ID,
                resource_type: STORAGE_TYPE,
                name: "{storageAccount-name}",
            }]),
        ),
        (
            "eventgrid/subscriptionvalidation-response.docs.json",
            Delivery(vec![MissingField { field: "id" }]),
        ),
        (
            "eventgrid/subscriptionvalidationevent.delivery.docs.json",
            Delivery(vec![Validation {
                id: "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
                code: "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
                has_url: true,
            }]),
        ),
        (
            "arm/events/ResourceWriteSuccess.storageAccount.json",
            Delivery(vec![storage_write(Schema::EventGrid)]),
        ),
    ]
}

fn check_event(file: &str, got: &Result<IncomingEvent, EventError>, want: &Ev) {
    let ctx = format!("{file}: expected {want:?}, got {got:?}");
    match want {
        Ev::Write {
            schema,
            id,
            resource_id,
            operation,
            caller_object_id,
            caller_upn,
            caller_ip,
        } => {
            let ev = got.as_ref().expect(&ctx);
            assert_eq!((&ev.schema, ev.id.as_str()), (schema, *id), "{ctx}");
            assert_eq!(ev.event_type, "Microsoft.Resources.ResourceWriteSuccess", "{ctx}");
            let EventKind::ResourceWrite(op) = &ev.kind else {
                panic!("{ctx}")
            };
            assert_eq!(op.resource_id.as_str(), *resource_id, "{ctx}");
            assert_eq!(op.resource_id.resource_type(), STORAGE_TYPE, "{ctx}");
            assert_eq!(op.operation_name, *operation, "{ctx}");
            assert_eq!(op.status.as_deref(), Some("Succeeded"), "{ctx}");
            assert_eq!(op.correlation_id.as_deref(), Some("{ID}"), "{ctx}");
            assert_eq!(op.tenant_id.as_deref(), Some("{tenant-id}"), "{ctx}");
            assert_eq!(op.caller.object_id.as_deref(), *caller_object_id, "{ctx}");
            assert_eq!(op.caller.app_id.as_deref(), Some("{ID}"), "{ctx}");
            assert_eq!(op.caller.name.as_deref(), Some("{full-name}"), "{ctx}");
            assert_eq!(op.caller.upn.as_deref(), *caller_upn, "{ctx}");
            assert_eq!(op.caller.ip_address.as_deref(), *caller_ip, "{ctx}");
            assert!(lookup(&op.resource_id.resource_type()).is_some(), "{ctx}");
            assert!(keyguard_core::lookup_operation(&op.operation_name).is_some(), "{ctx}");
        }
        Ev::OtherArm {
            schema,
            id,
            event_type,
            operation,
        } => {
            let ev = got.as_ref().expect(&ctx);
            assert_eq!(
                (&ev.schema, ev.id.as_str(), ev.event_type.as_str()),
                (schema, *id, *event_type),
                "{ctx}"
            );
            let EventKind::OtherArm {
                operation_name,
                resource_uri,
            } = &ev.kind
            else {
                panic!("{ctx}")
            };
            assert_eq!(operation_name.as_deref(), Some(*operation), "{ctx}");
            assert!(resource_uri.is_some(), "{ctx}");
        }
        Ev::NotificationWithInvalidId { id } => match got {
            Err(EventError::InvalidResourceUri { event_id, reason }) => {
                assert_eq!(event_id, id, "{ctx}");
                // Only the Resource Notifications branch reads data.resourceInfo.id: the type was recognised.
                assert!(
                    reason.starts_with(
                        "data.resourceInfo.id: resource id must not contain whitespace or control characters"
                    ),
                    "{ctx}"
                );
            }
            _ => panic!("{ctx}"),
        },
        Ev::NotificationDeleted {
            schema,
            id,
            resource_type,
            name,
        } => {
            let ev = got.as_ref().expect(&ctx);
            assert_eq!((&ev.schema, ev.id.as_str()), (schema, *id), "{ctx}");
            let EventKind::ResourceNotificationDeleted { resource_id } = &ev.kind else {
                panic!("{ctx}")
            };
            assert_eq!(resource_id.resource_type(), *resource_type, "{ctx}");
            assert_eq!(resource_id.name(), *name, "{ctx}");
        }
        Ev::Validation { id, code, has_url } => {
            let ev = got.as_ref().expect(&ctx);
            assert_eq!(ev.id, *id, "{ctx}");
            let EventKind::SubscriptionValidation {
                validation_code,
                validation_url,
            } = &ev.kind
            else {
                panic!("{ctx}")
            };
            assert_eq!(validation_code, code, "{ctx}");
            assert_eq!(validation_url.is_some(), *has_url, "{ctx}");
        }
        Ev::Unrecognised { id, event_type } => {
            let ev = got.as_ref().expect(&ctx);
            assert_eq!((ev.id.as_str(), ev.event_type.as_str()), (*id, *event_type), "{ctx}");
            assert_eq!(ev.kind, EventKind::Unrecognised, "{ctx}");
        }
        Ev::MissingField { field } => match got {
            Err(EventError::MissingField { field: f, .. }) => assert_eq!(f, field, "{ctx}"),
            _ => panic!("{ctx}"),
        },
    }
}

#[test]
fn every_event_fixture_has_an_expectation() {
    let mut on_disk: BTreeSet<String> = BTreeSet::new();
    for dir in ["eventgrid", "arm/events"] {
        for f in list_dir(dir) {
            on_disk.insert(format!("{dir}/{f}"));
        }
    }
    let expected: BTreeSet<String> = expectations().iter().map(|(f, _)| f.to_string()).collect();
    let missing: Vec<_> = on_disk.difference(&expected).collect();
    let stale: Vec<_> = expected.difference(&on_disk).collect();
    assert!(
        missing.is_empty(),
        "fixtures without an expected outcome in tests/fixtures.rs: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "expectations for fixtures that no longer exist: {stale:?}"
    );
}

#[test]
fn event_fixtures_parse_as_expected() {
    for (file, expect) in expectations() {
        let Expect::Delivery(events) = expect else { continue };
        let body = read_json(&fixtures_root().join(file));
        let results = parse_delivery(&body).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(results.len(), events.len(), "{file}");
        for (got, want) in results.iter().zip(&events) {
            check_event(file, got, want);
        }
    }
}

#[test]
fn resource_notification_with_its_id_fixed_carries_a_usable_body() {
    // The spec example has a stray space in the id; with it removed the event is a normal
    // notification whose body evaluates like a GET response.
    for file in [
        "eventgrid/resourcenotifications-createdorupdated.eventgrid.spec-example.json",
        "eventgrid/resourcenotifications-createdorupdated.cloudevents.spec-example.json",
    ] {
        let mut body = read_json(&fixtures_root().join(file));
        let fixed = body["data"]["resourceInfo"]["id"].as_str().unwrap().replace(' ', "");
        body["data"]["resourceInfo"]["id"] = Value::String(fixed);
        let results = parse_delivery(&body).unwrap();
        let ev = results[0].as_ref().unwrap();
        let EventKind::ResourceNotification {
            resource_id,
            resource,
            api_version,
        } = &ev.kind
        else {
            panic!("{file}: {:?}", ev.kind)
        };
        assert_eq!(resource_id.resource_type(), STORAGE_TYPE);
        assert_eq!(api_version.as_deref(), Some("2019-06-01"));
        assert_eq!(
            resource["properties"]["encryption"]["requireInfrastructureEncryption"], 0,
            "1/0 left as is"
        );
        let eval = evaluate(
            resource_id,
            resource,
            &Config::builtin_default(),
            datetime!(2026-01-01 0:00 UTC),
        );
        assert_eq!(eval.observed, EncryptionState::Mmk);
        assert_eq!(eval.verdict, Verdict::Drift(DriftReason::ExpectedCmkFoundMmk));
    }
}

// -------------------------------------------------------------------------------------------
// Storage bodies

const VAULT: &str = "https://myvault8569.vault.azure.net";
const UAI: &str = "/subscriptions/{subscription-id}/resourcegroups/res9101/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{managed-identity-name}";

struct StorageExpect {
    file: &'static str,
    observed: EncryptionState,
    /// Whether the account can reach its own CMK (None for MMK).
    has_identity: Option<bool>,
}

fn storage_expectations() -> Vec<StorageExpect> {
    let cmk = |uai: Option<&str>| EncryptionState::Cmk(KeyRef::new(VAULT, "wrappingKey", None, uai).unwrap());
    vec![
        StorageExpect {
            file: "StorageAccountCreateUserAssignedEncryptionIdentityWithCMK.json",
            observed: cmk(Some(UAI)),
            has_identity: Some(true),
        },
        StorageExpect {
            file: "StorageAccountEnableCMK.json",
            observed: cmk(None),
            has_identity: Some(true),
        },
        StorageExpect {
            file: "StorageAccountGetProperties.json",
            observed: EncryptionState::Mmk,
            has_identity: None,
        },
        StorageExpect {
            file: "StorageAccountGetPropertiesCMKEnabled.json",
            observed: cmk(None),
            has_identity: Some(true),
        },
        StorageExpect {
            file: "StorageAccountUpdateUserAssignedEncryptionIdentityWithCMK.json",
            observed: cmk(Some(UAI)),
            has_identity: Some(true),
        },
    ]
}

#[test]
fn every_storage_fixture_has_an_expectation() {
    let on_disk = list_dir("arm/storage");
    let expected: BTreeSet<String> = storage_expectations().iter().map(|e| e.file.to_string()).collect();
    assert_eq!(on_disk, expected);
}

#[test]
fn observe_storage_fixture_bodies() {
    let entry = lookup(STORAGE_TYPE).unwrap();
    for want in storage_expectations() {
        let doc = read_json(&fixtures_root().join("arm/storage").join(want.file));
        let body = &doc["responses"]["200"]["body"];
        assert!(body.is_object(), "{}: no 200 body", want.file);
        let observed = entry.observe(body);
        assert_eq!(observed, want.observed, "{}", want.file);
        if let EncryptionState::Cmk(key) = &observed {
            assert_eq!(
                Some(entry.has_identity_for(body, key)),
                want.has_identity,
                "{}",
                want.file
            );
            // An identity the account does not have is refused.
            let stranger = key.clone().with_user_assigned_identity(Some(
                "/subscriptions/x/resourceGroups/y/providers/Microsoft.ManagedIdentity/userAssignedIdentities/stranger",
            ));
            assert!(!entry.has_identity_for(body, &stranger), "{}", want.file);
        }
        // The id in each body is a valid resource id of the catalogued type.
        let id = ResourceId::parse(body["id"].as_str().unwrap()).unwrap();
        assert_eq!(id.resource_type(), STORAGE_TYPE);
    }
}

#[test]
fn observe_resource_notification_properties() {
    let entry = lookup(STORAGE_TYPE).unwrap();
    for file in [
        "eventgrid/resourcenotifications-createdorupdated.eventgrid.spec-example.json",
        "eventgrid/resourcenotifications-createdorupdated.cloudevents.spec-example.json",
    ] {
        let doc = read_json(&fixtures_root().join(file));
        assert_eq!(
            entry.observe(&doc["data"]["resourceInfo"]),
            EncryptionState::Mmk,
            "{file}"
        );
    }
}

/// Our revert bodies agree with Microsoft's own PATCH/PUT examples, field for field.
#[test]
fn cmk_revert_bodies_match_the_spec_requests() {
    let entry = lookup(STORAGE_TYPE).unwrap();
    for want in storage_expectations() {
        let EncryptionState::Cmk(key) = &want.observed else {
            continue;
        };
        let doc = read_json(&fixtures_root().join("arm/storage").join(want.file));
        let request = &doc["parameters"]["parameters"]["properties"]["encryption"];
        if !request.is_object() {
            continue; // a GET example has no request body
        }
        let ours = entry.revert_body(&RevertTarget::Cmk(key.clone()));
        let ours = &ours["properties"]["encryption"];
        assert_eq!(ours["keySource"], request["keySource"], "{}", want.file);
        assert_eq!(
            ours["keyvaultproperties"], request["keyvaultproperties"],
            "{}",
            want.file
        );
        // The request spells the identity with "resourceGroups"; the response echoes "resourcegroups".
        match (ours.get("identity"), request.get("identity")) {
            (None, None) => {}
            (Some(a), Some(b)) => assert!(
                a["userAssignedIdentity"]
                    .as_str()
                    .unwrap()
                    .eq_ignore_ascii_case(b["userAssignedIdentity"].as_str().unwrap()),
                "{}",
                want.file
            ),
            other => panic!("{}: identity mismatch {other:?}", want.file),
        }
    }
}

#[test]
fn fixture_to_plan_end_to_end() {
    let config = Config::from_toml_str(
        r#"
[[profile]]
name = "fixtures"
require = "cmk"
mode = "enforce"
allowed_vaults = ["myvault8569.vault.azure.net"]
"#,
        "inline",
    )
    .unwrap();
    let now = datetime!(2026-01-01 0:00 UTC);
    let dir = fixtures_root().join("arm/storage");

    // Compliant CMK account: nothing to do, remember its key.
    let cmk_doc = read_json(&dir.join("StorageAccountGetPropertiesCMKEnabled.json"));
    let body = &cmk_doc["responses"]["200"]["body"];
    let id = ResourceId::parse(body["id"].as_str().unwrap()).unwrap();
    let eval = evaluate(&id, body, &config, now);
    assert_eq!(eval.verdict, Verdict::Compliant);
    let p = plan(&eval, &PlanContext::new(&eval, &config.settings));
    assert_eq!(p.action, Action::Nothing);
    let baseline = p.record_baseline.clone().unwrap();

    // The same account, later found on MMK: revert to the remembered key.
    let mmk_doc = read_json(&dir.join("StorageAccountGetProperties.json"));
    let body = &mmk_doc["responses"]["200"]["body"];
    let eval = evaluate(&id, body, &config, now);
    assert_eq!(eval.verdict, Verdict::Drift(DriftReason::ExpectedCmkFoundMmk));
    let mut ctx = PlanContext::new(&eval, &config.settings);
    ctx.baseline = Some(baseline.clone());
    // The MMK fixture body has no identity at all: the precondition fails.
    ctx.resource_has_identity_for = Some(lookup(STORAGE_TYPE).unwrap().has_identity_for(body, &baseline));
    assert_eq!(
        plan(&eval, &ctx).action,
        Action::NoRevert(NoRevertReason::MissingIdentity)
    );
    ctx.resource_has_identity_for = Some(true);
    let p = plan(&eval, &ctx);
    let Action::Revert {
        body,
        api_version,
        dry_run,
        ..
    } = &p.action
    else {
        panic!("{p:?}")
    };
    assert_eq!(*api_version, "2025-01-01");
    assert!(!dry_run);
    assert!(p.alert);
    assert_eq!(
        body,
        &serde_json::json!({"properties": {"encryption": {"keySource": "Microsoft.Keyvault", "keyvaultproperties": {"keyvaulturi": VAULT, "keyname": "wrappingKey", "keyversion": ""}}}})
    );
}
