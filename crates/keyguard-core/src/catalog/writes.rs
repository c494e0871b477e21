//! The revert writes: for each write shape, the requests that switch a resource to its target,
//! minimal and in the service's own spelling. Split from `catalog.rs`, which reads.

use serde_json::{Map, Value};

use super::{
    CatalogEntry, KeyRef, KeyRefLayout, KeySourceKind, RevertTarget, RevertWrite, SetUsage, WriteMethod, WriteShape,
    binding, set_path,
};

/// Managed disks' customer-key encryption types (Microsoft.Compute `EncryptionType`).
const SINGLE_CUSTOMER_KEY: &str = "EncryptionAtRestWithCustomerKey";
pub(super) const DOUBLE_ENCRYPTION: &str = "EncryptionAtRestWithPlatformAndCustomerKeys";

/// The first SQL api-version whose server keys may be versionless (`{vault}_{key}` with a
/// versionless `uri`: spec example `ServerKeyCreateOrUpdateWithVersionlessKey`, 2025-01-01).
const SQL_VERSIONLESS_KEYS_SINCE: &str = "2025-01-01";

/// SQL's server key name, `{vault}_{key}_{version}`, or `{vault}_{key}` for a versionless key
/// where the api-version accepts one: vault and key names cannot contain `_`, so the split is
/// unambiguous.
fn sql_server_key_name(key: &KeyRef, api_version: &str) -> Option<String> {
    let vault = key.vault()?.name();
    match key.version() {
        Some(version) => Some(format!("{vault}_{}_{version}", key.key_name())),
        // ISO dates compare as strings.
        None if api_version >= SQL_VERSIONLESS_KEYS_SINCE => Some(format!("{vault}_{}", key.key_name())),
        None => None,
    }
}

impl CatalogEntry {
    /// The writes that switch the resource to `target`, in order, in the service's spelling.
    /// Empty when no automatic write exists for this type or the target lacks what the service
    /// needs (a SQL managed instance at 2023-08-01 needs a versioned key, a disk needs a disk encryption set).
    pub fn revert_writes(&self, target: &RevertTarget) -> Vec<RevertWrite> {
        let write = |method, relative_path: Option<&str>, body| RevertWrite {
            method,
            relative_path: relative_path.map(str::to_string),
            body,
            api_version: self.api_version,
        };
        match self.write_shape {
            WriteShape::KeySourcePatch => self
                .key_source_patch(target)
                .map(|body| vec![write(WriteMethod::Patch, None, body)])
                .unwrap_or_default(),
            WriteShape::SqlProtector => match target {
                RevertTarget::Mmk => vec![write(
                    WriteMethod::Put,
                    Some("encryptionProtector/current"),
                    serde_json::json!({"properties": {"serverKeyType": "ServiceManaged", "serverKeyName": "ServiceManaged"}}),
                )],
                RevertTarget::Cmk(key) => {
                    let Some(name) = sql_server_key_name(key, self.api_version) else {
                        return Vec::new();
                    };
                    vec![
                        write(
                            WriteMethod::Put,
                            Some(&format!("keys/{name}")),
                            serde_json::json!({"properties": {"serverKeyType": "AzureKeyVault", "uri": key.key_id()}}),
                        ),
                        write(
                            WriteMethod::Put,
                            Some("encryptionProtector/current"),
                            serde_json::json!({"properties": {"serverKeyType": "AzureKeyVault", "serverKeyName": name, "autoRotationEnabled": key.auto_rotation()}}),
                        ),
                    ]
                }
            },
            WriteShape::TdeState => {
                let on = match self.key_source.kind {
                    KeySourceKind::Switch { on, .. } => on.first().copied(),
                    _ => None,
                };
                match (self.key_source.child, on) {
                    (Some(child), Some(on)) => vec![write(
                        WriteMethod::Put,
                        Some(child),
                        serde_json::json!({"properties": {"state": on}}),
                    )],
                    _ => Vec::new(),
                }
            }
            WriteShape::DiskEncryption => {
                let (KeySourceKind::Value { mmk, cmk, .. }, Some((type_field, parent))) =
                    (self.key_source.kind, self.key_source.path.split_last())
                else {
                    return Vec::new();
                };
                let mut encryption = Map::new();
                match target {
                    RevertTarget::Mmk => {
                        let Some(v) = mmk.first() else { return Vec::new() };
                        encryption.insert((*type_field).to_string(), Value::String((*v).to_string()));
                    }
                    RevertTarget::Cmk(key) => {
                        let Some(set) = key.encryption_set_id() else {
                            return Vec::new();
                        };
                        // The kind the baseline had: single or double encryption. A confidential
                        // VM's set lives in securityProfile with the VM's security type, which a
                        // key-source PATCH must not touch: no write, a human acts.
                        let wanted = match key.set_usage() {
                            Some(SetUsage::PlatformAndCustomerKeys) => DOUBLE_ENCRYPTION,
                            Some(SetUsage::CustomerKey) => SINGLE_CUSTOMER_KEY,
                            Some(SetUsage::ConfidentialVm) | None => return Vec::new(),
                        };
                        let Some(v) = cmk.iter().find(|v| v.eq_ignore_ascii_case(wanted)) else {
                            return Vec::new();
                        };
                        encryption.insert((*type_field).to_string(), Value::String((*v).to_string()));
                        encryption.insert("diskEncryptionSetId".to_string(), Value::String(set.to_string()));
                    }
                }
                let mut root = Map::new();
                set_path(&mut root, parent, Value::Object(encryption));
                vec![write(WriteMethod::Patch, None, Value::Object(root))]
            }
            WriteShape::None => Vec::new(),
        }
    }

    /// The minimal PATCH body for the resource itself (key source fields only).
    fn key_source_patch(&self, target: &RevertTarget) -> Option<Value> {
        let mut root = Map::new();
        let path = self.key_source.path;
        match (self.key_source.kind, target) {
            (KeySourceKind::Value { mmk, .. }, RevertTarget::Mmk) => {
                set_path(&mut root, path, Value::String((*mmk.first()?).to_string()));
            }
            // Clearing the key sends an empty key-reference object, as the Azure CLI does for App
            // Configuration (`keyVaultProperties: {}`): the schemas do not allow `null` there.
            (KeySourceKind::Presence, RevertTarget::Mmk) => {
                let (_, container) = path.split_last()?;
                if container.is_empty() {
                    return None;
                }
                set_path(&mut root, container, Value::Object(Map::new()));
            }
            (KeySourceKind::Value { cmk, .. }, RevertTarget::Cmk(key)) => {
                set_path(&mut root, path, Value::String((*cmk.first()?).to_string()));
                // A key held outside ARM (Search: per index) is switched by the key source alone.
                if self.key_ref != KeyRefLayout::None {
                    self.write_key_ref(&mut root, key)?;
                }
            }
            (KeySourceKind::Presence, RevertTarget::Cmk(key)) => self.write_key_ref(&mut root, key)?,
            (KeySourceKind::Switch { .. }, _) => return None,
        }
        Some(Value::Object(root))
    }

    fn write_key_ref(&self, root: &mut Map<String, Value>, key: &KeyRef) -> Option<()> {
        let vault_uri = key.vault_uri()?;
        match self.key_ref {
            KeyRefLayout::Fields {
                container_path,
                vault_uri_field,
                key_name_field,
                key_version_field,
                user_assigned_identity_path,
            } => {
                let mut fields = Map::new();
                fields.insert(vault_uri_field.to_string(), Value::String(vault_uri));
                fields.insert(key_name_field.to_string(), Value::String(key.key_name().to_string()));
                // A versionless key is an empty version, as the services echo it and as the
                // Azure CLI (storage) and Terraform (Cognitive Services) send it: each schema
                // types the version as a plain string. Leaving it out of a PATCH would keep the
                // version the drifted key had.
                fields.insert(
                    key_version_field.to_string(),
                    Value::String(key.version().unwrap_or("").to_string()),
                );
                set_path(root, container_path, Value::Object(fields));
                binding::write_identity(root, user_assigned_identity_path, key)?;
            }
            KeyRefLayout::KeyUri {
                path,
                user_assigned_identity_path,
                geo_backup,
            } => {
                set_path(root, path, Value::String(key.key_id()));
                binding::write_geo_backup(root, geo_backup, key);
                binding::write_identity(root, user_assigned_identity_path, key)?;
            }
            KeyRefLayout::EncryptionSet { .. } | KeyRefLayout::SqlServerKey | KeyRefLayout::None => return None,
        }
        Some(())
    }

    /// The body of the write on the resource itself (the storage PATCH); for types whose revert
    /// is a PUT on a child, the last write's body; `null` when no write exists. Prefer
    /// [`CatalogEntry::revert_writes`], which also says where each body goes.
    pub fn revert_body(&self, target: &RevertTarget) -> Value {
        self.revert_writes(target).pop().map(|w| w.body).unwrap_or(Value::Null)
    }
}
