#![allow(clippy::unwrap_used)]
//! What a key binding holds beside its key, kept through a revert (issue 15, findings 5 and 6):
//! the client id Cognitive Services and App Configuration name their identity by, and MySQL's
//! declared identities and geo-backup key, as the spec examples write them.

use std::path::Path;

use keyguard_core::keyref::{ClientId, GeoBackupKey};
use keyguard_core::{CatalogEntry, EncryptionState, KeyRef, RevertTarget, lookup};
use serde_json::{Map, Value, json};

const KV: &str = "https://kv.vault.azure.net";
const MYSQL_UAI: &str = "/subscriptions/ffffffff-ffff-ffff-ffff-ffffffffffff/resourceGroups/testrg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/test-identity";
const UAI: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u";
const CLIENT_ID: &str = "6f1d2c3b-0a9e-4f7d-8c6b-5a4e3d2c1b0a";

fn entry(t: &str) -> &'static CatalogEntry {
    lookup(t).unwrap_or_else(|| panic!("{t} not in catalog"))
}

/// The request body of a spec example under `tests/fixtures/arm` (its named body parameter).
fn example_request(file: &str, parameter: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/arm")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["parameters"][parameter].clone()
}

/// A Cognitive Services account on a user-assigned identity, as ARM returns it.
fn cognitive_account_on_uai(version: &str) -> Value {
    json!({
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {UAI: {"principalId": "p", "clientId": CLIENT_ID}}},
        "properties": {"encryption": {
            "keySource": "Microsoft.KeyVault",
            "keyVaultProperties": {"keyVaultUri": KV, "keyName": "k", "keyVersion": version, "identityClientId": CLIENT_ID},
        }},
    })
}

#[test]
fn cognitive_services_keeps_the_identity_client_id_of_a_user_assigned_baseline() {
    let e = entry("Microsoft.CognitiveServices/accounts");
    let account = cognitive_account_on_uai("0123");
    let EncryptionState::Cmk(baseline) = e.observe(&account) else {
        panic!("a CMK account")
    };
    assert_eq!(baseline.identity_client_id(), Some(ClientId::parse(CLIENT_ID).unwrap()));
    assert!(e.has_identity_for(&account, &baseline));
    // The revert names the same identity: without identityClientId the service would use its
    // system identity, which may have no access to the key.
    assert_eq!(
        e.revert_body(&RevertTarget::Cmk(baseline)),
        json!({"properties": {"encryption": {
            "keySource": "Microsoft.KeyVault",
            "keyVaultProperties": {"keyVaultUri": KV, "keyName": "k", "keyVersion": "0123", "identityClientId": CLIENT_ID},
        }}})
    );
}

#[test]
fn cognitive_services_versionless_key_is_an_empty_version() {
    // The 2024-10-01 schema types keyVersion as a plain string with no versionless form of its
    // own; Terraform's Cognitive Services CMK resource sends the parsed version, "" for a
    // versionless key id, and reads "" back as versionless. An omitted keyVersion in a PATCH
    // would keep whatever version the drifted key had.
    let e = entry("Microsoft.CognitiveServices/accounts");
    let EncryptionState::Cmk(baseline) = e.observe(&cognitive_account_on_uai("")) else {
        panic!("a CMK account")
    };
    assert_eq!(baseline.version(), None);
    let body = e.revert_body(&RevertTarget::Cmk(baseline));
    assert_eq!(body["properties"]["encryption"]["keyVaultProperties"]["keyVersion"], "");
}

#[test]
fn a_client_id_identity_needs_the_client_id() {
    let e = entry("Microsoft.CognitiveServices/accounts");
    // A pinned key naming its identity by resource id: this service is told a client id, and
    // writing none would silently switch it to the system identity. No write; an alert.
    let by_resource_id = KeyRef::new(KV, "k", None, Some(UAI)).unwrap();
    assert!(e.revert_writes(&RevertTarget::Cmk(by_resource_id)).is_empty());
    // A system-identity key is written without one.
    let system = KeyRef::new(KV, "k", None, None).unwrap();
    let body = e.revert_body(&RevertTarget::Cmk(system));
    assert!(
        body["properties"]["encryption"]["keyVaultProperties"]
            .get("identityClientId")
            .is_none()
    );
    // The identity must be attached: matched by the client id ARM lists for it.
    let key = KeyRef::new(KV, "k", None, None)
        .unwrap()
        .with_identity_client_id(Some(ClientId::parse(CLIENT_ID).unwrap()));
    assert!(e.has_identity_for(&cognitive_account_on_uai(""), &key));
    let other = json!({"identity": {"type": "UserAssigned", "userAssignedIdentities": {UAI: {"clientId": "00000000-0000-0000-0000-000000000001"}}}});
    assert!(!e.has_identity_for(&other, &key));
}

#[test]
fn an_identity_client_id_that_is_no_guid_is_never_acted_on() {
    let e = entry("Microsoft.CognitiveServices/accounts");
    let mut account = cognitive_account_on_uai("0123");
    account["properties"]["encryption"]["keyVaultProperties"]["identityClientId"] = json!("../../evil");
    let state = e.observe(&account);
    assert!(
        matches!(state, EncryptionState::Unknown(ref why) if why.contains("identityClientId is not a client id")),
        "{state:?}"
    );
}

#[test]
fn app_configuration_keeps_the_identity_client_id_too() {
    let e = entry("Microsoft.AppConfiguration/configurationStores");
    let store = json!({"properties": {"encryption": {"keyVaultProperties": {
        "keyIdentifier": format!("{KV}/keys/k"),
        "identityClientId": CLIENT_ID,
    }}}});
    let EncryptionState::Cmk(baseline) = e.observe(&store) else {
        panic!("a CMK store")
    };
    assert_eq!(
        e.revert_body(&RevertTarget::Cmk(baseline)),
        json!({"properties": {"encryption": {"keyVaultProperties": {
            "keyIdentifier": format!("{KV}/keys/k"),
            "identityClientId": CLIENT_ID,
        }}}})
    );
}

#[test]
fn mysql_write_is_the_byok_example_for_a_geo_redundant_baseline() {
    let e = entry("Microsoft.DBforMySQL/flexibleServers");
    let want = example_request("mysql/ServerUpdateWithBYOK.2023-12-30.json", "parameters");
    // The baseline keyguard reads from the example's server: key, identity, geo-backup key and
    // geo-backup identity, all of which the write puts back.
    let EncryptionState::Cmk(key) = e.observe(&want) else {
        panic!("the example request is a CMK body")
    };
    let geo = key
        .geo_backup()
        .expect("the geo-backup key is part of the baseline")
        .clone();
    assert_eq!(geo.key_id(), want["properties"]["dataEncryption"]["geoBackupKeyURI"]);
    let writes = e.revert_writes(&RevertTarget::Cmk(key));
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].relative_path, None);
    assert_eq!(writes[0].body["properties"], want["properties"]);
    // The identity block as the example declares it, plus the geo-backup identity, as the Azure
    // CLI declares it (`--backup-identity`): PATCH merges identities, so naming an attached one
    // again changes nothing, and the geo-backup key needs its identity on the server.
    let mut identity = want["identity"].clone();
    identity["userAssignedIdentities"]
        .as_object_mut()
        .unwrap()
        .insert(geo.identity().unwrap().to_string(), json!({}));
    assert_eq!(writes[0].body["identity"], identity);
    assert_eq!(writes[0].body.as_object().unwrap().len(), 2);
    assert_eq!(
        e.revert_body(&RevertTarget::Mmk),
        json!({"properties": {"dataEncryption": {"type": "SystemManaged"}}})
    );
}

#[test]
fn mysql_without_a_geo_backup_key_writes_the_primary_binding_only() {
    let e = entry("Microsoft.DBforMySQL/flexibleServers");
    let key = KeyRef::from_key_uri(&format!("{KV}/keys/k/0123"), Some(MYSQL_UAI)).unwrap();
    assert_eq!(
        e.revert_body(&RevertTarget::Cmk(key)),
        json!({
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {MYSQL_UAI: {}}},
            "properties": {"dataEncryption": {
                "type": "AzureKeyVault",
                "primaryKeyURI": format!("{KV}/keys/k/0123"),
                "primaryUserAssignedIdentityId": MYSQL_UAI,
            }},
        })
    );
    // The service reaches its key through a user-assigned identity only: a key naming none
    // has no write (it would be refused, or worse, bind no identity).
    let system = KeyRef::from_key_uri(&format!("{KV}/keys/k/0123"), None).unwrap();
    assert!(e.revert_writes(&RevertTarget::Cmk(system)).is_empty());
}

#[test]
fn mysql_geo_redundant_server_needs_the_geo_backup_key_and_its_identity() {
    let e = entry("Microsoft.DBforMySQL/flexibleServers");
    let geo_uai = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/geo";
    let server = |geo_redundant: &str, identities: &[&str]| {
        let attached: Map<String, Value> = identities.iter().map(|id| (id.to_string(), json!({}))).collect();
        json!({
            "identity": {"type": "UserAssigned", "userAssignedIdentities": attached},
            "properties": {"backup": {"geoRedundantBackup": geo_redundant}},
        })
    };
    let primary_only = KeyRef::from_key_uri(&format!("{KV}/keys/k/0123"), Some(MYSQL_UAI)).unwrap();
    let with_geo = primary_only.clone().with_geo_backup(Some(
        GeoBackupKey::new("https://geo.vault.azure.net/keys/k/0456", Some(geo_uai)).unwrap(),
    ));
    assert!(e.has_identity_for(&server("Disabled", &[MYSQL_UAI]), &primary_only));
    // Geo-redundant: MySQL wants the geo-backup key with the key, and it is not in the target.
    assert!(!e.has_identity_for(&server("Enabled", &[MYSQL_UAI]), &primary_only));
    // The geo-backup identity must be attached too.
    assert!(!e.has_identity_for(&server("Enabled", &[MYSQL_UAI]), &with_geo));
    assert!(e.has_identity_for(&server("Enabled", &[MYSQL_UAI, geo_uai]), &with_geo));
}
