//! The resource catalog: per resource type, where the key source lives, how each service spells
//! "Microsoft-managed" and "customer-managed", whether a switch is possible on an existing
//! resource, and how to write it.
//!
//! The catalog is data, not code: every behaviour below (`observe`, `revert_body`,
//! `has_identity_for`) is driven by the paths and spellings in a [`CatalogEntry`], so adding a
//! service with the common "key source enum + key reference object" shape (Cognitive Services,
//! Batch, Automation, NetApp, ...) is a new table row. Facts come from
//! `research/arm-encryption-catalog.md`; the service's own spelling is what we write, while
//! reading compares case-insensitively because services echo values in varying case.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Whether a key-source switch in one direction can be made on an existing resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    /// Possible on an existing resource, and the opposite switch is possible too: safe to automate.
    Reversible,
    /// Possible, but cannot be undone afterwards (Cosmos DB, Event Hubs to CMK): never automated.
    OneWay,
    /// Only when the resource is created: an existing resource cannot be switched at all.
    CreationOnly,
}

impl Direction {
    /// Only a switch we could undo is ours to make automatically.
    pub fn allows_automatic_revert(self) -> bool {
        matches!(self, Direction::Reversible)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reversibility {
    pub to_cmk: Direction,
    pub to_mmk: Direction,
}

/// How a revert is sent. Only PATCH exists today; child-resource PUTs (SQL encryption protector)
/// will add variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum WriteMethod {
    /// `PATCH {id}?api-version=...` with a minimal body: only the encryption fields, never a full
    /// document, so a revert cannot clobber unrelated settings changed in the meantime.
    Patch,
}

/// Where the CMK key reference lives inside the resource, in the service's own field spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRefLayout {
    /// Path of the object holding the key fields, e.g. `properties.encryption.keyvaultproperties`.
    pub container_path: &'static [&'static str],
    pub vault_uri_field: &'static str,
    pub key_name_field: &'static str,
    pub key_version_field: &'static str,
    /// Path of the user-assigned identity (resource id) the service uses to reach the vault, if
    /// the service has one; absent means it uses the system-assigned identity.
    pub user_assigned_identity_path: Option<&'static [&'static str]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogEntry {
    pub resource_type: &'static str,
    /// Pinned api-version for GET and PATCH; the spec examples our fixtures come from.
    pub api_version: &'static str,
    /// Event Grid `data.operationName` values (RBAC actions) that can change the key source.
    pub write_operations: &'static [&'static str],
    pub key_source_path: &'static [&'static str],
    pub mmk_value: &'static str,
    pub cmk_value: &'static str,
    pub key_ref: KeyRefLayout,
    pub reversibility: Reversibility,
    pub write_method: WriteMethod,
    /// Whether the write is a long-running operation that must be polled before re-reading.
    pub long_running: bool,
    /// What "compliant" means at CIS level 1 (encrypted at rest) and level 2 (customer-managed key).
    pub cis_level1: &'static str,
    pub cis_level2: &'static str,
    /// Prerequisites and caveats a human should read in an alert.
    pub notes: &'static str,
}

static ENTRIES: &[CatalogEntry] = &[CatalogEntry {
    resource_type: "Microsoft.Storage/storageAccounts",
    api_version: "2025-01-01",
    write_operations: &["Microsoft.Storage/storageAccounts/write"],
    key_source_path: &["properties", "encryption", "keySource"],
    mmk_value: "Microsoft.Storage",
    // Lower-case "v": the storage account spelling (encryption scopes use "Microsoft.KeyVault").
    cmk_value: "Microsoft.Keyvault",
    key_ref: KeyRefLayout {
        container_path: &["properties", "encryption", "keyvaultproperties"],
        vault_uri_field: "keyvaulturi",
        key_name_field: "keyname",
        key_version_field: "keyversion",
        user_assigned_identity_path: Some(&["properties", "encryption", "identity", "userAssignedIdentity"]),
    },
    reversibility: Reversibility {
        to_cmk: Direction::Reversible,
        to_mmk: Direction::Reversible,
    },
    write_method: WriteMethod::Patch,
    long_running: false,
    cis_level1: "Storage service encryption at rest (always on; Microsoft-managed keys)",
    cis_level2: "CIS Microsoft Azure Foundations 3.0.0 6.1.3: storage accounts use a customer-managed key",
    notes: "CMK needs a vault with soft delete and purge protection, and an identity on the account \
            with get/wrapKey/unwrapKey on the key. Queue and table services are covered by the CMK \
            only when created with keyType Account.",
}];

/// Every supported resource type.
pub fn entries() -> &'static [CatalogEntry] {
    ENTRIES
}

/// Case-insensitive: ids and `type` fields arrive in varying case.
pub fn lookup(resource_type: &str) -> Option<&'static CatalogEntry> {
    let wanted = resource_type.trim();
    ENTRIES.iter().find(|e| e.resource_type.eq_ignore_ascii_case(wanted))
}

/// The entry whose write operations include `operation_name` (case-insensitive), so the
/// pipeline can drop irrelevant events before any ARM call.
pub fn lookup_operation(operation_name: &str) -> Option<&'static CatalogEntry> {
    let wanted = operation_name.trim();
    ENTRIES
        .iter()
        .find(|e| e.write_operations.iter().any(|op| op.eq_ignore_ascii_case(wanted)))
}

/// A customer-managed key, as configured on a resource or in a profile.
///
/// Serialised in camelCase like the rest of the audit log; snake_case is also accepted when
/// reading, so records written by earlier builds stay readable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    /// Normalised: lower-case scheme and host, no trailing slash.
    #[serde(alias = "vault_uri")]
    pub vault_uri: String,
    #[serde(alias = "key_name")]
    pub key_name: String,
    /// `None` or `""`: versionless (the service follows the latest key version).
    #[serde(alias = "key_version")]
    pub key_version: Option<String>,
    /// Resource id of the user-assigned identity the service should use for the key, if any.
    #[serde(alias = "user_assigned_identity")]
    pub user_assigned_identity: Option<String>,
}

impl KeyRef {
    /// Build a key reference with the vault URI normalised and an empty version read as versionless.
    pub fn new(
        vault_uri: &str,
        key_name: &str,
        key_version: Option<&str>,
        user_assigned_identity: Option<&str>,
    ) -> KeyRef {
        KeyRef {
            vault_uri: normalize_vault_uri(vault_uri),
            key_name: key_name.trim().to_string(),
            key_version: key_version.map(str::trim).filter(|v| !v.is_empty()).map(str::to_string),
            user_assigned_identity: user_assigned_identity
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string),
        }
    }

    /// Lower-case DNS name of the vault, the unit allow-lists are written in.
    pub fn vault_host(&self) -> String {
        vault_host_of(&self.vault_uri)
    }

    /// The version, with `Some("")` read as versionless.
    pub fn version(&self) -> Option<&str> {
        self.key_version.as_deref().filter(|v| !v.is_empty())
    }

    /// Same vault and key name (case-insensitive, as Key Vault is). Versions are compared only
    /// when both sides name one: a versionless reference follows whatever version is current.
    pub fn same_key(&self, other: &KeyRef) -> bool {
        if self.vault_host() != other.vault_host() || !self.key_name.eq_ignore_ascii_case(&other.key_name) {
            return false;
        }
        match (self.version(), other.version()) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => true,
        }
    }

    /// `https://{vault}/keys/{name}[/{version}]`, for humans.
    pub fn key_id(&self) -> String {
        match self.version() {
            Some(v) => format!("{}/keys/{}/{}", self.vault_uri, self.key_name, v),
            None => format!("{}/keys/{}", self.vault_uri, self.key_name),
        }
    }
}

impl std::fmt::Display for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key_id())
    }
}

/// Lower-case scheme and host, no trailing slash; a bare host gets `https://`.
pub fn normalize_vault_uri(uri: &str) -> String {
    let trimmed = uri.trim().trim_end_matches('/');
    let (scheme, rest) = match trimmed.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("https".to_string(), trimmed),
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    format!("{scheme}://{}{path}", host.to_ascii_lowercase())
}

/// Host part of a vault URI or a bare host, lower-case, without port or trailing dot.
pub fn vault_host_of(uri_or_host: &str) -> String {
    let s = uri_or_host.trim();
    let rest = match s.split_once("://") {
        Some((_, rest)) => rest,
        None => s,
    };
    let host = rest.split('/').next().unwrap_or("");
    let host = host.split(':').next().unwrap_or("");
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// What a resource's encryption looks like right now.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "camelCase")]
pub enum EncryptionState {
    Mmk,
    Cmk(KeyRef),
    /// The raw key-source value, "missing", or why a CMK reference could not be read. Never acted on.
    Unknown(String),
}

/// What a revert should switch the resource to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "target", content = "key", rename_all = "camelCase")]
pub enum RevertTarget {
    Mmk,
    Cmk(KeyRef),
}

fn get_path<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| get_ci(v, key))
}

/// Object member lookup, exact spelling first, then case-insensitive: ARM JSON property names
/// are meant to be case-insensitive, and some services echo them in another case.
fn get_ci<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    let obj = value.as_object()?;
    obj.get(key)
        .or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

fn set_path(root: &mut Map<String, Value>, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = root;
    for key in parents {
        let slot = current
            .entry((*key).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else { return };
        current = next;
    }
    current.insert((*last).to_string(), value);
}

fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    get_ci(value, key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl CatalogEntry {
    /// Read the key source from a resource body (GET response, or a Resource Notifications
    /// `resourceInfo`). Anything we cannot read with certainty is `Unknown`, which the planner
    /// never writes over.
    pub fn observe(&self, resource: &Value) -> EncryptionState {
        let raw = match get_path(resource, self.key_source_path) {
            None | Some(Value::Null) => return EncryptionState::Unknown("missing".to_string()),
            Some(Value::String(s)) => s.trim(),
            Some(other) => return EncryptionState::Unknown(other.to_string()),
        };
        if raw.eq_ignore_ascii_case(self.mmk_value) {
            return EncryptionState::Mmk;
        }
        if !raw.eq_ignore_ascii_case(self.cmk_value) {
            return EncryptionState::Unknown(raw.to_string());
        }
        let layout = &self.key_ref;
        let Some(container) = get_path(resource, layout.container_path) else {
            return EncryptionState::Unknown(format!("{raw} without {}", layout.container_path.join(".")));
        };
        let (Some(vault), Some(name)) = (
            str_at(container, layout.vault_uri_field),
            str_at(container, layout.key_name_field),
        ) else {
            return EncryptionState::Unknown(format!(
                "{raw} with an incomplete key reference ({}.{{{},{}}})",
                layout.container_path.join("."),
                layout.vault_uri_field,
                layout.key_name_field
            ));
        };
        let version = str_at(container, layout.key_version_field);
        let identity = layout
            .user_assigned_identity_path
            .and_then(|p| get_path(resource, p))
            .and_then(Value::as_str);
        EncryptionState::Cmk(KeyRef::new(vault, name, version, identity))
    }

    /// The minimal PATCH body that switches the resource to `target`, in the service's spelling.
    pub fn revert_body(&self, target: &RevertTarget) -> Value {
        let mut root = Map::new();
        match target {
            RevertTarget::Mmk => {
                set_path(
                    &mut root,
                    self.key_source_path,
                    Value::String(self.mmk_value.to_string()),
                );
            }
            RevertTarget::Cmk(key) => {
                set_path(
                    &mut root,
                    self.key_source_path,
                    Value::String(self.cmk_value.to_string()),
                );
                let layout = &self.key_ref;
                let mut key_fields = Map::new();
                key_fields.insert(layout.vault_uri_field.to_string(), Value::String(key.vault_uri.clone()));
                key_fields.insert(layout.key_name_field.to_string(), Value::String(key.key_name.clone()));
                key_fields.insert(
                    layout.key_version_field.to_string(),
                    Value::String(key.version().unwrap_or("").to_string()),
                );
                set_path(&mut root, layout.container_path, Value::Object(key_fields));
                if let (Some(path), Some(uai)) = (
                    layout.user_assigned_identity_path,
                    key.user_assigned_identity.as_deref(),
                ) {
                    set_path(&mut root, path, Value::String(uai.to_string()));
                }
            }
        }
        Value::Object(root)
    }

    /// Whether the resource has the identity the key reference needs: the named user-assigned
    /// identity attached to the resource, or, when the key names none, a system-assigned identity.
    /// Without it the service cannot unwrap its key and a CMK revert would fail (or worse, be
    /// accepted and leave the data unreadable).
    pub fn has_identity_for(&self, resource: &Value, key: &KeyRef) -> bool {
        let Some(identity) = get_ci(resource, "identity") else {
            return false;
        };
        match key.user_assigned_identity.as_deref() {
            Some(wanted) => get_ci(identity, "userAssignedIdentities")
                .and_then(Value::as_object)
                .is_some_and(|ids| ids.keys().any(|id| id.trim().eq_ignore_ascii_case(wanted.trim()))),
            None => get_ci(identity, "type").and_then(Value::as_str).is_some_and(|t| {
                t.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case("SystemAssigned"))
            }),
        }
    }

    /// Whether switching the resource to `target` is something we may automate.
    pub fn direction_to(&self, target: &RevertTarget) -> Direction {
        match target {
            RevertTarget::Mmk => self.reversibility.to_mmk,
            RevertTarget::Cmk(_) => self.reversibility.to_cmk,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn storage() -> &'static CatalogEntry {
        lookup("Microsoft.Storage/storageAccounts").unwrap()
    }

    #[test]
    fn lookups_are_case_insensitive() {
        assert!(lookup("microsoft.storage/STORAGEACCOUNTS").is_some());
        assert!(lookup("Microsoft.Storage/storageAccounts/encryptionScopes").is_none());
        assert!(lookup_operation("microsoft.storage/storageaccounts/WRITE").is_some());
        assert!(lookup_operation("Microsoft.Storage/storageAccounts/delete").is_none());
        assert!(lookup_operation("Microsoft.Storage/storageAccounts/listKeys/action").is_none());
    }

    #[test]
    fn catalog_rows_are_well_formed() {
        for e in entries() {
            assert!(e.resource_type.contains('/'), "{}", e.resource_type);
            assert_eq!(e.api_version.len(), 10, "{}", e.api_version);
            assert!(!e.write_operations.is_empty());
            for op in e.write_operations {
                assert!(
                    op.to_ascii_lowercase()
                        .starts_with(&e.resource_type.to_ascii_lowercase())
                );
            }
            assert!(!e.key_source_path.is_empty());
            assert!(!e.mmk_value.eq_ignore_ascii_case(e.cmk_value));
            assert!(!e.cis_level1.is_empty() && !e.cis_level2.is_empty());
        }
    }

    #[test]
    fn observe_reads_key_source_case_insensitively() {
        let e = storage();
        assert_eq!(
            e.observe(&json!({"properties":{"encryption":{"keySource":"microsoft.storage"}}})),
            EncryptionState::Mmk
        );
        assert_eq!(
            e.observe(&json!({"properties":{"encryption":{"KeySource":"Microsoft.Storage"}}})),
            EncryptionState::Mmk
        );
        assert_eq!(
            e.observe(&json!({"properties":{}})),
            EncryptionState::Unknown("missing".into())
        );
        assert_eq!(
            e.observe(&json!({"properties":{"encryption":{"keySource":null}}})),
            EncryptionState::Unknown("missing".into())
        );
        assert_eq!(
            e.observe(&json!({"properties":{"encryption":{"keySource":1}}})),
            EncryptionState::Unknown("1".into())
        );
        assert_eq!(
            e.observe(&json!({"properties":{"encryption":{"keySource":"Microsoft.Other"}}})),
            EncryptionState::Unknown("Microsoft.Other".into())
        );
        assert_eq!(
            e.observe(&json!("nonsense")),
            EncryptionState::Unknown("missing".into())
        );
    }

    #[test]
    fn observe_cmk_needs_a_complete_key_reference() {
        let e = storage();
        let st = e.observe(&json!({"properties":{"encryption":{"keySource":"MICROSOFT.KEYVAULT"}}}));
        assert!(
            matches!(st, EncryptionState::Unknown(ref s) if s.contains("without properties.encryption.keyvaultproperties")),
            "{st:?}"
        );
        let st = e.observe(&json!({"properties":{"encryption":{"keySource":"Microsoft.Keyvault","keyvaultproperties":{"keyvaulturi":"https://kv.vault.azure.net"}}}}));
        assert!(
            matches!(st, EncryptionState::Unknown(ref s) if s.contains("incomplete")),
            "{st:?}"
        );
        let st = e.observe(&json!({"properties":{"encryption":{"keySource":"Microsoft.Keyvault","keyvaultproperties":{"keyvaulturi":"HTTPS://KV.Vault.Azure.NET/","keyname":"k","keyversion":"ABC"},"identity":{"userAssignedIdentity":"/x"}}}}));
        assert_eq!(
            st,
            EncryptionState::Cmk(KeyRef {
                vault_uri: "https://kv.vault.azure.net".into(),
                key_name: "k".into(),
                key_version: Some("ABC".into()),
                user_assigned_identity: Some("/x".into()),
            })
        );
    }

    #[test]
    fn revert_bodies_are_minimal_and_in_the_service_spelling() {
        let e = storage();
        assert_eq!(
            e.revert_body(&RevertTarget::Mmk),
            json!({"properties":{"encryption":{"keySource":"Microsoft.Storage"}}})
        );
        let k = KeyRef::new("https://kv.vault.azure.net/", "k1", None, None);
        assert_eq!(
            e.revert_body(&RevertTarget::Cmk(k)),
            json!({"properties":{"encryption":{"keySource":"Microsoft.Keyvault","keyvaultproperties":{"keyvaulturi":"https://kv.vault.azure.net","keyname":"k1","keyversion":""}}}})
        );
        let k = KeyRef::new(
            "https://kv.vault.azure.net",
            "k1",
            Some("v2"),
            Some("/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u"),
        );
        assert_eq!(
            e.revert_body(&RevertTarget::Cmk(k)),
            json!({"properties":{"encryption":{"keySource":"Microsoft.Keyvault","keyvaultproperties":{"keyvaulturi":"https://kv.vault.azure.net","keyname":"k1","keyversion":"v2"},"identity":{"userAssignedIdentity":"/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u"}}}})
        );
    }

    #[test]
    fn identity_precondition() {
        let e = storage();
        let sys = KeyRef::new("https://kv.vault.azure.net", "k", None, None);
        let uai_id = "/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u";
        let uai = KeyRef::new("https://kv.vault.azure.net", "k", None, Some(uai_id));
        assert!(e.has_identity_for(&json!({"identity":{"type":"SystemAssigned"}}), &sys));
        assert!(e.has_identity_for(&json!({"identity":{"type":"SystemAssigned,UserAssigned"}}), &sys));
        assert!(e.has_identity_for(&json!({"identity":{"type":"SystemAssigned, UserAssigned"}}), &sys));
        assert!(!e.has_identity_for(&json!({"identity":{"type":"UserAssigned"}}), &sys));
        assert!(!e.has_identity_for(&json!({"identity":{"type":"None"}}), &sys));
        assert!(!e.has_identity_for(&json!({}), &sys));
        let with_uai = json!({"identity":{"type":"UserAssigned","userAssignedIdentities":{uai_id.replace("resourceGroups","resourcegroups").to_uppercase(): {}}}});
        assert!(e.has_identity_for(&with_uai, &uai));
        assert!(!e.has_identity_for(&json!({"identity":{"type":"SystemAssigned"}}), &uai));
    }

    #[test]
    fn key_ref_comparisons() {
        let a = KeyRef::new("https://KV.vault.azure.net/", "Key", None, None);
        assert_eq!(a.vault_uri, "https://kv.vault.azure.net");
        assert_eq!(a.vault_host(), "kv.vault.azure.net");
        assert_eq!(a.key_id(), "https://kv.vault.azure.net/keys/Key");
        let b = KeyRef::new("kv.vault.azure.net", "key", Some("v1"), None);
        assert_eq!(b.vault_uri, "https://kv.vault.azure.net");
        assert!(a.same_key(&b));
        assert!(b.same_key(&KeyRef::new("https://kv.vault.azure.net", "KEY", Some("V1"), None)));
        assert!(!b.same_key(&KeyRef::new("https://kv.vault.azure.net", "key", Some("v2"), None)));
        assert!(!a.same_key(&KeyRef::new("https://other.vault.azure.net", "key", None, None)));
        let legacy = KeyRef {
            vault_uri: "https://kv.vault.azure.net".into(),
            key_name: "key".into(),
            key_version: Some(String::new()),
            user_assigned_identity: None,
        };
        assert_eq!(legacy.version(), None);
        assert!(legacy.same_key(&b));
        assert_eq!(vault_host_of("https://kv.vault.azure.net:443/x"), "kv.vault.azure.net");
        assert_eq!(vault_host_of("KV.vault.azure.net."), "kv.vault.azure.net");
    }

    #[test]
    fn key_ref_reads_both_spellings() {
        let k = KeyRef::new("https://kv.vault.azure.net", "k", Some("v"), None);
        let v = serde_json::to_value(&k).unwrap();
        assert_eq!(
            v,
            json!({"vaultUri": "https://kv.vault.azure.net", "keyName": "k", "keyVersion": "v", "userAssignedIdentity": null})
        );
        assert_eq!(serde_json::from_value::<KeyRef>(v).unwrap(), k);
        let snake = json!({"vault_uri": "https://kv.vault.azure.net", "key_name": "k", "key_version": "v", "user_assigned_identity": null});
        assert_eq!(serde_json::from_value::<KeyRef>(snake).unwrap(), k);
    }

    #[test]
    fn encryption_state_serializes_with_a_tag() {
        assert_eq!(
            serde_json::to_value(EncryptionState::Mmk).unwrap(),
            json!({"state":"mmk"})
        );
        assert_eq!(
            serde_json::to_value(EncryptionState::Unknown("x".into())).unwrap(),
            json!({"state":"unknown","detail":"x"})
        );
        let k = KeyRef::new("https://kv.vault.azure.net", "k", None, None);
        assert_eq!(
            serde_json::to_value(EncryptionState::Cmk(k)).unwrap()["detail"]["keyName"],
            "k"
        );
    }
}
