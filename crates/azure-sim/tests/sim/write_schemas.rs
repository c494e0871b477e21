//! Every body keyguard's catalog can write, both directions and every baseline shape, checked
//! against the vendored ARM request schemas with `x-nullable` semantics (issue 15).

use std::collections::BTreeSet;

use azure_sim::schemas;
use keyguard_core::catalog::{KeyRefLayout, WriteMethod};
use keyguard_core::{KeyRef, RevertTarget, entries};

const KV: &str = "https://kv.vault.azure.net";
const UAI: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u";
const DES: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/diskEncryptionSets/d";

/// Every key shape a baseline or a pinned key can have for this layout.
fn baselines(layout: KeyRefLayout) -> Vec<KeyRef> {
    match layout {
        KeyRefLayout::EncryptionSet { .. } => vec![KeyRef::encryption_set(DES).unwrap()],
        KeyRefLayout::None => vec![KeyRef::not_visible()],
        _ => [None, Some("0123456789abcdef0123456789abcdef")]
            .into_iter()
            .flat_map(|version| {
                [None, Some(UAI)]
                    .into_iter()
                    .map(move |uai| KeyRef::new(KV, "k", version, uai).unwrap())
            })
            .collect(),
    }
}

/// The ARM type a write addresses: the resource, or the child type its relative path names.
fn addressed_type(resource_type: &str, relative_path: Option<&str>) -> String {
    match relative_path.and_then(|p| p.split('/').next()) {
        Some(child) => format!("{resource_type}/{child}"),
        None => resource_type.to_string(),
    }
}

/// Writes whose schema is not vendored yet, named so that vendoring one (or a new write)
/// makes this list fail rather than pass silently.
const NOT_YET_VENDORED: &[&str] = &[
    "PATCH Microsoft.CognitiveServices/accounts 2024-10-01",
    "PATCH Microsoft.Compute/disks 2025-01-02",
    "PATCH Microsoft.DBforMySQL/flexibleServers 2023-12-30",
    "PATCH Microsoft.ElasticSan/elasticSans/volumeGroups 2025-09-01",
    "PATCH Microsoft.Kusto/clusters 2024-04-13",
    "PATCH Microsoft.Search/searchServices 2025-05-01",
    "PATCH Microsoft.Storage/storageAccounts 2025-01-01",
    "PATCH Microsoft.Batch/batchAccounts 2024-07-01",
    "PUT Microsoft.Sql/managedInstances/encryptionProtector 2023-08-01",
    "PUT Microsoft.Sql/managedInstances/keys 2023-08-01",
    "PUT Microsoft.Sql/servers/databases/transparentDataEncryption 2025-01-01",
    "PUT Microsoft.Sql/servers/encryptionProtector 2025-01-01",
    "PUT Microsoft.Sql/servers/keys 2025-01-01",
];

#[test]
fn every_write_body_conforms_to_its_vendored_schema() {
    let mut validated = 0;
    let mut missing = BTreeSet::new();
    let mut failures = Vec::new();
    for entry in entries() {
        let mut targets = vec![RevertTarget::Mmk];
        targets.extend(baselines(entry.key_ref).into_iter().map(RevertTarget::Cmk));
        for target in &targets {
            for write in entry.revert_writes(target) {
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
                validated += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    let expected: BTreeSet<String> = NOT_YET_VENDORED.iter().map(|s| s.to_string()).collect();
    assert_eq!(missing, expected, "writes without a vendored schema");
    // App Configuration: MMK + 2 key shapes (it names its identity by client id, so a key
    // naming a user-assigned identity by resource id has no write); Automation: MMK + 4.
    assert_eq!(validated, 8, "bodies validated");
}
