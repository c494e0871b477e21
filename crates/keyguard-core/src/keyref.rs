//! Customer-managed key references, parsed with a URL parser and valid by construction.
//!
//! A key reference comes from a resource body, an event, a profile or the store: all of them can
//! be written by someone other than keyguard's owner. keyguard reads the key it names (with a
//! bearer token) and may write it back in a revert, so a reference is only accepted when it
//! names a key in Key Vault or Managed HSM: `https`, no user info, the default port, a DNS name
//! `<vault>.<suffix>` with a known Key Vault suffix, and a path `/keys/NAME[/VERSION]`. The host
//! that is checked is the host that is later used (the parser's normalised form), so a reference
//! cannot say one host to the check and another to the connection.

use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::resource_id::ResourceId;

pub use crate::vault::{Cloud, KeyRefError, VAULT_SUFFIXES, VaultHost, VaultKind, VaultSuffix};
use crate::vault::{parse_https, valid_key_name, valid_key_version};

#[path = "keyref_parts.rs"]
mod parts;
pub use parts::{ClientId, GeoBackupKey};

/// How a managed disk applies the key its disk encryption set holds. Part of the binding, so a
/// revert puts back the same kind: double encryption stays double, and a confidential VM's set
/// is never moved into the ordinary encryption field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SetUsage {
    /// `encryption.type = EncryptionAtRestWithCustomerKey` (and AKS's `diskEncryptionSetID`).
    #[default]
    CustomerKey,
    /// `encryption.type = EncryptionAtRestWithPlatformAndCustomerKeys`: double encryption.
    PlatformAndCustomerKeys,
    /// `securityProfile.secureVMDiskEncryptionSetId`: a confidential VM's disk.
    ConfidentialVm,
}

/// Where a customer-managed key lives.
#[derive(Clone, Debug, PartialEq, Eq)]
enum KeyLocation {
    /// A key in Key Vault or Managed HSM.
    Vault {
        vault: VaultHost,
        name: String,
        /// `None`: versionless (the service follows the latest version).
        version: Option<String>,
        /// The service moves to the key's newer versions by itself (SQL's protector
        /// `autoRotationEnabled`), so a revert must switch that back on too.
        auto_rotation: bool,
    },
    /// A disk encryption set holds the binding (managed disks, AKS): its id names the key, and
    /// `usage` says how the disk applies it.
    EncryptionSet { id: ResourceId, usage: SetUsage },
    /// The key is not visible in ARM (Search keeps it per index in the data plane).
    NotVisible,
}

/// A customer-managed key, as configured on a resource or in a profile. Only the constructors
/// below make one, so every `KeyRef` in the program names a Key Vault key (or a disk
/// encryption set, or "not visible").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredKeyRef", into = "StoredKeyRef")]
pub struct KeyRef {
    location: KeyLocation,
    /// Resource id of the user-assigned identity the service should use for the key, if any.
    user_assigned_identity: Option<String>,
    /// The same kind of identity named by its client id, for services that name it so
    /// (`identityClientId`); kept so a revert names the identity the baseline named.
    identity_client_id: Option<ClientId>,
    /// The key of the resource's geo-redundant backups, for services that keep one beside the
    /// key (MySQL flexible servers); only ever set on a key in a vault.
    geo_backup: Option<Box<GeoBackupKey>>,
}

impl KeyRef {
    /// A key in a vault, from the vault URI (or host) and the key's name and version, as resource
    /// bodies with separate fields spell it. An empty version is versionless.
    pub fn new(
        vault_uri: &str,
        key_name: &str,
        key_version: Option<&str>,
        user_assigned_identity: Option<&str>,
    ) -> Result<KeyRef, KeyRefError> {
        let vault = VaultHost::parse(vault_uri)?;
        KeyRef::in_vault(vault, key_name, key_version, user_assigned_identity)
    }

    fn in_vault(
        vault: VaultHost,
        key_name: &str,
        key_version: Option<&str>,
        user_assigned_identity: Option<&str>,
    ) -> Result<KeyRef, KeyRefError> {
        let name = key_name.trim();
        if !valid_key_name(name) {
            return Err(KeyRefError::BadKeyName);
        }
        let version = key_version.map(str::trim).filter(|v| !v.is_empty());
        if version.is_some_and(|v| !valid_key_version(v)) {
            return Err(KeyRefError::BadKeyVersion);
        }
        Ok(KeyRef {
            location: KeyLocation::Vault {
                vault,
                name: name.to_string(),
                version: version.map(str::to_string),
                auto_rotation: false,
            },
            user_assigned_identity: non_empty(user_assigned_identity),
            identity_client_id: None,
            geo_backup: None,
        })
    }

    /// A key identifier `https://{vault}/keys/{name}[/{version}]`.
    pub fn from_key_uri(uri: &str, user_assigned_identity: Option<&str>) -> Result<KeyRef, KeyRefError> {
        let url = parse_https(uri.trim())?;
        let vault = VaultHost::of_url(&url)?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(KeyRefError::NotAKeyPath);
        }
        let path = url.path();
        let path = path.strip_suffix('/').unwrap_or(path);
        let mut segments = path.split('/').skip(1);
        let (Some(keys), Some(name)) = (segments.next(), segments.next()) else {
            return Err(KeyRefError::NotAKeyPath);
        };
        let version = segments.next();
        if !keys.eq_ignore_ascii_case("keys") || segments.next().is_some() || version == Some("") {
            return Err(KeyRefError::NotAKeyPath);
        }
        KeyRef::in_vault(vault, name, version, user_assigned_identity)
    }

    /// A key held by a disk encryption set: the set, not the resource, names the vault.
    pub fn encryption_set(set_id: &str) -> Result<KeyRef, KeyRefError> {
        let id = ResourceId::parse(set_id.trim()).map_err(|_| KeyRefError::NotAnEncryptionSet)?;
        if !id
            .resource_type()
            .eq_ignore_ascii_case("Microsoft.Compute/diskEncryptionSets")
        {
            return Err(KeyRefError::NotAnEncryptionSet);
        }
        Ok(KeyRef {
            location: KeyLocation::EncryptionSet {
                id,
                usage: SetUsage::default(),
            },
            user_assigned_identity: None,
            identity_client_id: None,
            geo_backup: None,
        })
    }

    /// The same vault key, with the service rotating it by itself or not; a key that is not in a
    /// vault is unchanged.
    pub fn with_auto_rotation(mut self, enabled: bool) -> KeyRef {
        if let KeyLocation::Vault { auto_rotation, .. } = &mut self.location {
            *auto_rotation = enabled;
        }
        self
    }

    /// Whether the service rotates this vault key by itself (SQL's `autoRotationEnabled`).
    pub fn auto_rotation(&self) -> bool {
        matches!(
            self.location,
            KeyLocation::Vault {
                auto_rotation: true,
                ..
            }
        )
    }

    /// The same encryption set applied another way; a key that is not a set is unchanged.
    pub fn with_set_usage(mut self, usage: SetUsage) -> KeyRef {
        if let KeyLocation::EncryptionSet { usage: current, .. } = &mut self.location {
            *current = usage;
        }
        self
    }

    /// How the disk applies its encryption set, when a set holds the key.
    pub fn set_usage(&self) -> Option<SetUsage> {
        match &self.location {
            KeyLocation::EncryptionSet { usage, .. } => Some(*usage),
            _ => None,
        }
    }

    /// A customer-managed key whose reference ARM does not show.
    pub fn not_visible() -> KeyRef {
        KeyRef {
            location: KeyLocation::NotVisible,
            user_assigned_identity: None,
            identity_client_id: None,
            geo_backup: None,
        }
    }

    /// The vault, for a key in Key Vault or Managed HSM.
    pub fn vault(&self) -> Option<&VaultHost> {
        match &self.location {
            KeyLocation::Vault { vault, .. } => Some(vault),
            _ => None,
        }
    }

    /// Lower-case DNS name of the vault, the unit allow-lists are written in.
    pub fn vault_host(&self) -> Option<&str> {
        self.vault().map(VaultHost::as_str)
    }

    /// `https://<vault host>`, or `None` when the key is not in a vault keyguard can see.
    pub fn vault_uri(&self) -> Option<String> {
        self.vault().map(VaultHost::uri)
    }

    /// The key's name in its vault (empty when no vault key is named).
    pub fn key_name(&self) -> &str {
        match &self.location {
            KeyLocation::Vault { name, .. } => name,
            _ => "",
        }
    }

    /// The version; `None` for a versionless reference.
    pub fn version(&self) -> Option<&str> {
        match &self.location {
            KeyLocation::Vault { version, .. } => version.as_deref(),
            _ => None,
        }
    }

    pub fn user_assigned_identity(&self) -> Option<&str> {
        self.user_assigned_identity.as_deref()
    }

    /// The same key with another user-assigned identity (or the system identity).
    pub fn with_user_assigned_identity(mut self, identity: Option<&str>) -> KeyRef {
        self.user_assigned_identity = non_empty(identity);
        self
    }

    /// The client id of the user-assigned identity, for services that name it so.
    pub fn identity_client_id(&self) -> Option<ClientId> {
        self.identity_client_id
    }

    /// The same key, naming its identity by this client id (or by none).
    pub fn with_identity_client_id(mut self, client_id: Option<ClientId>) -> KeyRef {
        self.identity_client_id = client_id;
        self
    }

    /// The key of the resource's geo-redundant backups, when the service keeps one.
    pub fn geo_backup(&self) -> Option<&GeoBackupKey> {
        self.geo_backup.as_deref()
    }

    /// The same vault key with this geo-backup key (or none); a key that is not in a vault is
    /// unchanged, as only a vault key has a geo-redundant twin.
    pub fn with_geo_backup(mut self, geo_backup: Option<GeoBackupKey>) -> KeyRef {
        if matches!(self.location, KeyLocation::Vault { .. }) {
            self.geo_backup = geo_backup.map(Box::new);
        }
        self
    }

    /// The disk encryption set id, when a set holds the key.
    pub fn encryption_set_id(&self) -> Option<&str> {
        match &self.location {
            KeyLocation::EncryptionSet { id, .. } => Some(id.as_str()),
            _ => None,
        }
    }

    /// The data-plane URL of the key (`https://{vault}/keys/{name}[/{version}]`), built from the
    /// parsed parts.
    pub fn key_url(&self) -> Option<Url> {
        let KeyLocation::Vault {
            vault, name, version, ..
        } = &self.location
        else {
            return None;
        };
        let mut url = Url::parse(&vault.uri()).ok()?;
        {
            let mut segments = url.path_segments_mut().ok()?;
            segments.push("keys").push(name);
            if let Some(v) = version {
                segments.push(v);
            }
        }
        Some(url)
    }

    /// The same key whatever its version: a rotation keeps it, a new vault, key name or disk
    /// encryption set does not (the key-swap guard's test of "another key").
    pub fn same_key_any_version(&self, other: &KeyRef) -> bool {
        match (&self.location, &other.location) {
            (
                KeyLocation::Vault { vault, name, .. },
                KeyLocation::Vault {
                    vault: other_vault,
                    name: other_name,
                    ..
                },
            ) => vault == other_vault && name.eq_ignore_ascii_case(other_name),
            _ => self.same_key(other),
        }
    }

    /// Same vault and key name (case-insensitive, as Key Vault is). Versions are compared only
    /// when both sides name one: a versionless reference follows whatever version is current.
    pub fn same_key(&self, other: &KeyRef) -> bool {
        match (&self.location, &other.location) {
            (
                KeyLocation::Vault {
                    vault, name, version, ..
                },
                KeyLocation::Vault {
                    vault: other_vault,
                    name: other_name,
                    version: other_version,
                    ..
                },
            ) => {
                vault == other_vault
                    && name.eq_ignore_ascii_case(other_name)
                    && match (version, other_version) {
                        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                        _ => true,
                    }
            }
            (KeyLocation::EncryptionSet { id: a, .. }, KeyLocation::EncryptionSet { id: b, .. }) => a.same_resource(b),
            (KeyLocation::NotVisible, KeyLocation::NotVisible) => true,
            _ => false,
        }
    }

    /// `https://{vault}/keys/{name}[/{version}]`, the set id, or "" — for humans and write bodies.
    pub fn key_id(&self) -> String {
        match &self.location {
            KeyLocation::Vault {
                vault, name, version, ..
            } => match version {
                Some(v) => format!("{}/keys/{name}/{v}", vault.uri()),
                None => format!("{}/keys/{name}", vault.uri()),
            },
            KeyLocation::EncryptionSet { id, .. } => id.as_str().to_string(),
            KeyLocation::NotVisible => String::new(),
        }
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key_id())
    }
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
}

/// The stored form (audit log, baselines, findings): camelCase fields as earlier builds wrote
/// them, snake_case accepted on read. Reading validates again, so a tampered or older record
/// cannot smuggle a host in.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredKeyRef {
    #[serde(alias = "vault_uri", default)]
    vault_uri: String,
    #[serde(alias = "key_name", default)]
    key_name: String,
    #[serde(alias = "key_version", default)]
    key_version: Option<String>,
    #[serde(alias = "user_assigned_identity", default)]
    user_assigned_identity: Option<String>,
    /// Only for a disk encryption set applied other than the default way; absent otherwise, so
    /// every record written before it existed reads the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    set_usage: Option<SetUsage>,
    /// Only when the service rotates the key by itself; absent (false) otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    auto_rotation: bool,
    /// Only for a service that names its identity by client id; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity_client_id: Option<String>,
    /// Only for a service that keeps a geo-backup key (MySQL); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    geo_backup_key_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    geo_backup_identity: Option<String>,
}

impl TryFrom<StoredKeyRef> for KeyRef {
    type Error = KeyRefError;

    fn try_from(s: StoredKeyRef) -> Result<KeyRef, KeyRefError> {
        let identity = s.user_assigned_identity.as_deref();
        // Parsed again like everything else read back: a stored record is not trusted more
        // than the resource body it came from.
        let client_id = s.identity_client_id.as_deref().map(ClientId::parse).transpose()?;
        let geo_backup = s
            .geo_backup_key_uri
            .as_deref()
            .map(|uri| GeoBackupKey::new(uri, s.geo_backup_identity.as_deref()))
            .transpose()?;
        if !s.vault_uri.trim().is_empty() {
            return KeyRef::new(&s.vault_uri, &s.key_name, s.key_version.as_deref(), identity).map(|key| {
                key.with_auto_rotation(s.auto_rotation)
                    .with_identity_client_id(client_id)
                    .with_geo_backup(geo_backup)
            });
        }
        if s.key_name.trim().is_empty() {
            return Ok(KeyRef::not_visible()
                .with_user_assigned_identity(identity)
                .with_identity_client_id(client_id));
        }
        Ok(KeyRef::encryption_set(&s.key_name)?.with_set_usage(s.set_usage.unwrap_or_default()))
    }
}

impl From<KeyRef> for StoredKeyRef {
    fn from(k: KeyRef) -> StoredKeyRef {
        let mut stored_rotation = false;
        let (vault_uri, key_name, key_version, set_usage) = match k.location {
            KeyLocation::Vault {
                vault,
                name,
                version,
                auto_rotation,
            } => {
                stored_rotation = auto_rotation;
                (vault.uri(), name, version, None)
            }
            KeyLocation::EncryptionSet { id, usage } => (
                String::new(),
                id.as_str().to_string(),
                None,
                (usage != SetUsage::default()).then_some(usage),
            ),
            KeyLocation::NotVisible => (String::new(), String::new(), None, None),
        };
        StoredKeyRef {
            vault_uri,
            key_name,
            key_version,
            user_assigned_identity: k.user_assigned_identity,
            set_usage,
            auto_rotation: stored_rotation,
            identity_client_id: k.identity_client_id.map(|id| id.to_string()),
            geo_backup_key_uri: k.geo_backup.as_ref().map(|geo| geo.key_id()),
            geo_backup_identity: k.geo_backup.as_ref().and_then(|geo| geo.identity().map(str::to_string)),
        }
    }
}

#[cfg(test)]
#[path = "keyref_tests.rs"]
mod tests;
