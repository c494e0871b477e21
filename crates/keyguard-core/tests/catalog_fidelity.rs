#![allow(clippy::unwrap_used)]
//! Issue 15: the catalog rows re-checked against Microsoft Learn. Each corrected row has its own
//! test: its reversibility, the page it cites, and the write it now makes (or does not make).

use keyguard_core::catalog::{RevertPermission, WriteShape};
use keyguard_core::{CatalogEntry, Direction, KeyRef, RevertTarget, entries, lookup};
use serde_json::json;

const KV: &str = "https://kv.vault.azure.net";
const UAI: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u";

fn entry(t: &str) -> &'static CatalogEntry {
    lookup(t).unwrap_or_else(|| panic!("{t} not in catalog"))
}

fn key() -> KeyRef {
    KeyRef::new(KV, "k", Some("v1"), None).unwrap()
}

/// The row cites a Microsoft Learn page, and the label a human reads matches the direction.
fn cites(e: &CatalogEntry, page: &str) {
    assert!(
        e.sources
            .iter()
            .any(|s| s.starts_with("https://learn.microsoft.com/") && s.contains(page)),
        "{} cites {:?}",
        e.resource_type,
        e.sources
    );
    // `keyguard catalog --format json` shows the same pages.
    let row = keyguard_core::catalog_table()
        .into_iter()
        .find(|r| r.resource_type == e.resource_type)
        .unwrap();
    assert_eq!(serde_json::to_value(&row).unwrap()["sources"], json!(e.sources));
}

#[test]
fn elastic_san_volume_groups_switch_both_ways_at_any_time() {
    let e = entry("Microsoft.ElasticSan/elasticSans/volumeGroups");
    assert_eq!(e.reversibility.to_cmk, Direction::Reversible);
    assert_eq!(e.reversibility.to_mmk, Direction::Reversible);
    cites(e, "elastic-san-encryption-overview");
    assert_eq!(
        e.revert_body(&RevertTarget::Mmk),
        json!({"properties": {"encryption": "EncryptionAtRestWithPlatformKey"}})
    );
    let k = KeyRef::new(KV, "k", Some("v1"), Some(UAI)).unwrap();
    assert_eq!(
        e.revert_body(&RevertTarget::Cmk(k)),
        json!({"properties": {"encryption": "EncryptionAtRestWithCustomerManagedKey", "encryptionProperties": {
            "keyVaultProperties": {"keyVaultUri": KV, "keyName": "k", "keyVersion": "v1"},
            "identity": {"userAssignedIdentity": UAI}}}})
    );
}

#[test]
fn automation_accounts_switch_to_cmk_with_an_update_and_back_with_their_own_key_source() {
    let e = entry("Microsoft.Automation/automationAccounts");
    assert_eq!(e.reversibility.to_cmk, Direction::Reversible);
    assert_eq!(
        e.reversibility.to_mmk,
        Direction::Reversible,
        "Set-AzAutomationAccount -AutomationServicesEncryption"
    );
    cites(e, "automation-secure-asset-encryption");
    cites(e, "set-azautomationaccount");
    assert_eq!(
        e.revert_body(&RevertTarget::Mmk),
        json!({"properties": {"encryption": {"keySource": "Microsoft.Automation"}}})
    );
    assert_eq!(
        e.revert_body(&RevertTarget::Cmk(key())),
        json!({"properties": {"encryption": {"keySource": "Microsoft.Keyvault",
            "keyVaultProperties": {"keyvaultUri": KV, "keyName": "k", "keyVersion": "v1"}}}})
    );
}

#[test]
fn kusto_clusters_take_a_key_on_an_existing_cluster_and_only_alert_on_its_removal() {
    let e = entry("Microsoft.Kusto/clusters");
    assert_eq!(e.reversibility.to_cmk, Direction::Reversible);
    assert!(matches!(e.reversibility.to_mmk, Direction::ReversibleIf(p) if p.contains("not documented")));
    // The portal removes the key; no ARM body is documented, so the condition is never "checked".
    assert_eq!(
        e.reversibility.to_mmk.permission(None, true),
        RevertPermission::PreconditionUnconfirmed
    );
    cites(e, "data-explorer/customer-managed-keys");
    let k = KeyRef::new(KV, "k", None, Some(UAI)).unwrap();
    assert_eq!(
        e.revert_body(&RevertTarget::Cmk(k)),
        json!({"properties": {"keyVaultProperties": {"keyVaultUri": KV, "keyName": "k", "keyVersion": "", "userIdentity": UAI}}})
    );
}

#[test]
fn search_services_switch_cmk_enforcement_both_ways_without_naming_a_key() {
    let e = entry("Microsoft.Search/searchServices");
    assert_eq!(e.reversibility.to_cmk, Direction::Reversible);
    assert_eq!(e.reversibility.to_mmk, Direction::Reversible);
    cites(e, "search-security-manage-encryption-keys");
    assert_eq!(
        e.revert_body(&RevertTarget::Cmk(KeyRef::not_visible())),
        json!({"properties": {"encryptionWithCmk": {"enforcement": "Enabled"}}})
    );
    assert_eq!(
        e.revert_body(&RevertTarget::Mmk),
        json!({"properties": {"encryptionWithCmk": {"enforcement": "Disabled"}}})
    );
    // Enforcement needs no identity on the service: the keys are configured per index.
    assert!(e.has_identity_for(&json!({}), &KeyRef::not_visible()));
}

#[test]
fn redis_enterprise_switches_are_disruptive_and_need_the_profile_opt_in() {
    let e = entry("Microsoft.Cache/redisEnterprise");
    for d in [e.reversibility.to_cmk, e.reversibility.to_mmk] {
        assert!(
            matches!(d, Direction::Disruptive(why) if why.contains("maintenance")),
            "{d:?}"
        );
        assert_eq!(d.permission(Some(true), false), RevertPermission::NeedsOptIn);
        assert_eq!(d.permission(None, true), RevertPermission::AllowedByOptIn);
        assert!(d.label().contains("opt-in"));
    }
    cites(e, "redis");
    // No write body was verified against the spec yet: opted in, it still only alerts.
    assert_eq!(e.write_shape, WriteShape::None);
    assert!(e.revert_writes(&RevertTarget::Mmk).is_empty());
}

#[test]
fn batch_back_to_mmk_is_not_automatic() {
    let e = entry("Microsoft.Batch/batchAccounts");
    assert_eq!(e.reversibility.to_cmk, Direction::CreationOnly);
    assert_eq!(e.reversibility.to_mmk, Direction::OneWay);
    assert!(!e.reversibility.to_mmk.allows_revert_when(Some(true)));
    assert_eq!(
        e.reversibility.to_mmk.permission(None, true),
        RevertPermission::AllowedByOptIn
    );
    cites(e, "batch-customer-managed-key");
    // With the opt-in the write exists (and is the documented key source).
    assert_eq!(
        e.revert_body(&RevertTarget::Mmk),
        json!({"properties": {"encryption": {"keySource": "Microsoft.Batch"}}})
    );
}

#[test]
fn netapp_accounts_to_cmk_is_one_way_not_creation_only() {
    let e = entry("Microsoft.NetApp/netAppAccounts");
    assert_eq!(e.reversibility.to_cmk, Direction::OneWay);
    assert_eq!(e.reversibility.to_cmk.label(), "one-way");
    cites(e, "configure-customer-managed-keys");
    assert!(
        e.revert_writes(&RevertTarget::Cmk(key())).is_empty(),
        "label only: no write"
    );
}

#[test]
fn app_configuration_back_to_mmk_needs_the_current_key_and_sends_an_empty_key_reference() {
    let e = entry("Microsoft.AppConfiguration/configurationStores");
    assert_eq!(e.reversibility.to_cmk, Direction::Reversible);
    assert!(matches!(e.reversibility.to_mmk, Direction::ReversibleIf(p) if p.contains("current customer-managed key")));
    cites(e, "concept-customer-managed-keys");
    // What the Azure CLI sends; `keyIdentifier: null` is refused by the schema (not x-nullable).
    assert_eq!(
        e.revert_body(&RevertTarget::Mmk),
        json!({"properties": {"encryption": {"keyVaultProperties": {}}}})
    );
}

/// Directions keyguard reverts without asking: `Reversible`, with a write for it.
fn auto_revertible() -> usize {
    entries()
        .iter()
        .map(|e| {
            let cmk = if matches!(e.key_ref, keyguard_core::catalog::KeyRefLayout::EncryptionSet { .. }) {
                KeyRef::encryption_set(
                    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/diskEncryptionSets/d",
                )
                .unwrap()
            } else if matches!(e.key_ref, keyguard_core::catalog::KeyRefLayout::None) {
                KeyRef::not_visible()
            } else if matches!(
                e.key_ref,
                keyguard_core::catalog::KeyRefLayout::KeyUri {
                    user_assigned_identity_path: Some(keyguard_core::catalog::IdentityPath::DeclaredResourceId(_)),
                    ..
                }
            ) {
                // MySQL reaches its key through a user-assigned identity only.
                key().with_user_assigned_identity(Some(
                    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u",
                ))
            } else {
                key()
            };
            [
                (e.reversibility.to_cmk, RevertTarget::Cmk(cmk)),
                (e.reversibility.to_mmk, RevertTarget::Mmk),
            ]
            .into_iter()
            .filter(|(d, t)| d.allows_automatic_revert() && !e.revert_writes(t).is_empty())
            .count()
        })
        .sum()
}

#[test]
fn the_count_of_auto_revertible_directions() {
    // Before issue 15: 14 (storage 2, SQL server 2, SQL database 1, managed instance 2, MySQL 2,
    // Cognitive Services 2, App Configuration 2, Batch to MMK 1).
    // After: App Configuration to MMK and Batch to MMK leave (conditional / opt-in); Elastic SAN 2,
    // Automation 2, Search 2 and Kusto to CMK 1 join.
    assert_eq!(auto_revertible(), 14 - 2 + 7);
}

#[test]
fn sql_servers_take_a_versionless_key_as_the_2025_01_01_example_does() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/arm/sql/ServerKeyCreateOrUpdateWithVersionlessKey.json");
    let example: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let request = &example["parameters"];
    let uri = request["parameters"]["properties"]["uri"].as_str().unwrap();
    let key = KeyRef::from_key_uri(uri, None).unwrap();
    let e = entry("Microsoft.Sql/servers");
    assert_eq!(e.api_version, request["api-version"]);
    let writes = e.revert_writes(&RevertTarget::Cmk(key));
    // Host names are lower-cased by KeyRef; SQL key names and vault URIs are case-insensitive.
    let name = request["keyName"].as_str().unwrap();
    assert!(
        writes[0]
            .relative_path
            .as_deref()
            .unwrap()
            .eq_ignore_ascii_case(&format!("keys/{name}"))
    );
    assert_eq!(writes[0].body["properties"]["serverKeyType"], "AzureKeyVault");
    assert!(
        writes[0].body["properties"]["uri"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case(uri)
    );
    assert!(
        writes[1].body["properties"]["serverKeyName"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case(name)
    );
    // The managed instance's pinned 2023-08-01 has no versionless example: still versioned only.
    let mi = entry("Microsoft.Sql/managedInstances");
    assert!(
        mi.revert_writes(&RevertTarget::Cmk(KeyRef::from_key_uri(uri, None).unwrap()))
            .is_empty()
    );
}

const DES: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/diskEncryptionSets/des";

#[test]
fn a_double_encryption_disk_comes_back_double_encrypted() {
    use keyguard_core::catalog::SetUsage;
    let disks = entry("Microsoft.Compute/disks");
    let doc = json!({"properties": {"encryption": {"type": "EncryptionAtRestWithPlatformAndCustomerKeys", "diskEncryptionSetId": DES}}});
    let keyguard_core::EncryptionState::Cmk(baseline) = disks.observe(&doc) else {
        panic!("{:?}", disks.observe(&doc))
    };
    assert_eq!(baseline.set_usage(), Some(SetUsage::PlatformAndCustomerKeys));
    // The baseline survives the store (its stored form carries the usage; old records read as
    // the single-key default).
    let stored = serde_json::to_value(&baseline).unwrap();
    assert_eq!(stored["setUsage"], "platformAndCustomerKeys");
    assert_eq!(serde_json::from_value::<KeyRef>(stored).unwrap(), baseline);
    let old_record = json!({"vaultUri": "", "keyName": DES, "keyVersion": null, "userAssignedIdentity": null});
    assert_eq!(
        serde_json::from_value::<KeyRef>(old_record).unwrap().set_usage(),
        Some(SetUsage::CustomerKey)
    );
    assert_eq!(
        disks.revert_body(&RevertTarget::Cmk(baseline)),
        json!({"properties": {"encryption": {"type": "EncryptionAtRestWithPlatformAndCustomerKeys", "diskEncryptionSetId": DES}}})
    );
    // A single-key baseline still writes the single-key type.
    let single = disks.observe(
        &json!({"properties": {"encryption": {"type": "EncryptionAtRestWithCustomerKey", "diskEncryptionSetId": DES}}}),
    );
    let keyguard_core::EncryptionState::Cmk(single) = single else {
        panic!()
    };
    assert_eq!(
        disks.revert_body(&RevertTarget::Cmk(single))["properties"]["encryption"]["type"],
        "EncryptionAtRestWithCustomerKey"
    );
}

#[test]
fn a_confidential_vm_disks_set_is_never_written_into_the_ordinary_encryption_field() {
    use keyguard_core::catalog::SetUsage;
    let disks = entry("Microsoft.Compute/disks");
    let doc = json!({"properties": {"securityProfile": {"securityType": "ConfidentialVM_DiskEncryptedWithCustomerKey",
        "secureVMDiskEncryptionSetId": DES}}});
    let keyguard_core::EncryptionState::Cmk(baseline) = disks.observe(&doc) else {
        panic!("{:?}", disks.observe(&doc))
    };
    assert_eq!(baseline.set_usage(), Some(SetUsage::ConfidentialVm));
    // The set belongs in securityProfile with the VM's security type: no key-source PATCH, so
    // the plan has no revert target and a human acts.
    assert!(disks.revert_writes(&RevertTarget::Cmk(baseline)).is_empty());
}

#[test]
fn a_sql_protector_that_rotated_by_itself_keeps_rotating_after_a_revert() {
    let sql = entry("Microsoft.Sql/servers");
    let protector = |rotation: bool| {
        json!({"properties": {"serverKeyType": "AzureKeyVault", "serverKeyName": "kv_k_v1",
            "uri": format!("{KV}/keys/k/v1"), "autoRotationEnabled": rotation}})
    };
    for rotation in [true, false] {
        let server = json!({});
        let view =
            keyguard_core::ResourceView::new(&server).with_child("encryptionProtector/current", protector(rotation));
        let keyguard_core::EncryptionState::Cmk(baseline) = sql.observe_view(&view) else {
            panic!("{:?}", sql.observe_view(&view))
        };
        assert_eq!(baseline.auto_rotation(), rotation);
        // Stored with the baseline and read back the same (absent when off, as before).
        let stored = serde_json::to_value(&baseline).unwrap();
        assert_eq!(stored.get("autoRotation").is_some(), rotation, "{stored}");
        assert_eq!(serde_json::from_value::<KeyRef>(stored).unwrap(), baseline);
        let writes = sql.revert_writes(&RevertTarget::Cmk(baseline));
        assert_eq!(writes[1].body["properties"]["autoRotationEnabled"], rotation);
    }
}
