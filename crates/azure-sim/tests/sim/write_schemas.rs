//! Every body keyguard's catalog can write, both directions and every baseline shape, checked
//! against the vendored ARM request schemas with `x-nullable` semantics (issue 15).

use std::collections::BTreeSet;

use azure_sim::schemas;
use keyguard_core::catalog::{KeyRefLayout, SetUsage, WriteMethod, WriteShape};
use keyguard_core::keyref::{ClientId, GeoBackupKey};
use keyguard_core::{KeyRef, RevertTarget, entries};
use serde_json::Value;

const KV: &str = "https://kv.vault.azure.net";
const UAI: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u";
const GEO_UAI: &str =
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/geo";
const DES: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/diskEncryptionSets/d";
const CLIENT_ID: &str = "6f1d2c3b-0a9e-4f7d-8c6b-5a4e3d2c1b0a";

/// Every key shape a baseline or a pinned key can have for this layout: versioned or
/// versionless; the system identity, a user-assigned one by resource id, by client id, or both;
/// rotated by the service or not; with a geo-backup key (with or without its identity) or not.
/// A disk's set applied each way it can be.
fn baselines(layout: KeyRefLayout) -> Vec<KeyRef> {
    match layout {
        KeyRefLayout::EncryptionSet { .. } => [
            SetUsage::CustomerKey,
            SetUsage::PlatformAndCustomerKeys,
            SetUsage::ConfidentialVm,
        ]
        .into_iter()
        .map(|usage| KeyRef::encryption_set(DES).unwrap().with_set_usage(usage))
        .collect(),
        KeyRefLayout::None => vec![KeyRef::not_visible()],
        _ => {
            let client_id = ClientId::parse(CLIENT_ID).unwrap();
            let geo_backups = [
                None,
                Some(GeoBackupKey::new("https://geo.vault.azure.net/keys/k/0456", Some(GEO_UAI)).unwrap()),
                Some(GeoBackupKey::new("https://geo.vault.azure.net/keys/k", None).unwrap()),
            ];
            let mut keys = Vec::new();
            for version in [None, Some("0123456789abcdef0123456789abcdef")] {
                for (uai, client) in [
                    (None, None),
                    (Some(UAI), None),
                    (None, Some(client_id)),
                    (Some(UAI), Some(client_id)),
                ] {
                    for rotation in [false, true] {
                        for geo in &geo_backups {
                            keys.push(
                                KeyRef::new(KV, "k", version, uai)
                                    .unwrap()
                                    .with_identity_client_id(client)
                                    .with_auto_rotation(rotation)
                                    .with_geo_backup(geo.clone()),
                            );
                        }
                    }
                }
            }
            keys
        }
    }
}

/// The ARM type a write addresses: the resource, or the child type its relative path names.
fn addressed_type(resource_type: &str, relative_path: Option<&str>) -> String {
    match relative_path.and_then(|p| p.split('/').next()) {
        Some(child) => format!("{resource_type}/{child}"),
        None => resource_type.to_string(),
    }
}

#[test]
fn every_write_body_conforms_to_its_vendored_schema() {
    let mut validated = BTreeSet::new();
    let mut missing = BTreeSet::new();
    let mut failures = Vec::new();
    let mut writable_without_a_body = Vec::new();
    for entry in entries() {
        let mut targets = vec![RevertTarget::Mmk];
        targets.extend(baselines(entry.key_ref).into_iter().map(RevertTarget::Cmk));
        let mut bodies = 0;
        for target in &targets {
            for write in entry.revert_writes(target) {
                bodies += 1;
                let method = match write.method {
                    WriteMethod::Patch => "PATCH",
                    WriteMethod::Put => "PUT",
                };
                let ty = addressed_type(entry.resource_type, write.relative_path.as_deref());
                let Some(schema) = schemas::lookup(&ty, method, write.api_version) else {
                    missing.insert(format!("{method} {ty} {}", write.api_version));
                    continue;
                };
                let problems = schema.violations(&write.body);
                if !problems.is_empty() {
                    failures.push(format!("{method} {ty} to {target:?}: {} -> {problems:?}", write.body));
                }
                validated.insert((ty, method, write.relative_path.clone(), write.body.to_string()));
            }
        }
        if entry.write_shape != WriteShape::None && bodies == 0 {
            writable_without_a_body.push(entry.resource_type);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(missing.is_empty(), "writes without a vendored schema: {missing:#?}");
    assert!(writable_without_a_body.is_empty(), "{writable_without_a_body:?}");
    // Distinct bodies (type, method, child path, body), across the 13 writable types and
    // their 15 writes; printed for the closing note.
    println!(
        "write bodies validated against the vendored schemas: {}",
        validated.len()
    );
    assert_eq!(validated.len(), 57, "bodies validated");
    // Each write keyguard can send has its schema: 15 vendored, none unused.
    let used: BTreeSet<(String, &str)> = validated
        .iter()
        .map(|(ty, m, ..)| (ty.to_ascii_lowercase(), *m))
        .collect();
    assert_eq!(used.len(), schemas::SCHEMAS.len(), "{used:#?}");
}

#[test]
fn a_body_breaking_the_schema_is_caught_for_every_vendored_write() {
    // The check has teeth for each schema: a null where the spec does not allow one.
    for schema in schemas::SCHEMAS {
        let broken: Value = serde_json::json!({"properties": null});
        assert!(
            !schema.violations(&broken).is_empty(),
            "{} {} accepts a null properties",
            schema.method,
            schema.full_type
        );
    }
}
