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
use url::{Host, Url};

use crate::resource_id::ResourceId;

/// An Azure cloud, for the Key Vault suffixes and token audiences keyguard may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cloud {
    Public,
    China,
    UsGov,
}

impl Cloud {
    pub const ALL: [Cloud; 3] = [Cloud::Public, Cloud::China, Cloud::UsGov];

    /// The cloud an ARM endpoint belongs to; any other host (a local stand-in) is treated as the
    /// public cloud, whose Key Vault names it then stands in for.
    pub fn of_arm_endpoint(endpoint: &Url) -> Cloud {
        match endpoint.host_str().map(str::to_ascii_lowercase).as_deref() {
            Some("management.chinacloudapi.cn") => Cloud::China,
            Some("management.usgovcloudapi.net") => Cloud::UsGov,
            _ => Cloud::Public,
        }
    }

    pub fn parse(name: &str) -> Option<Cloud> {
        match name.trim().to_ascii_lowercase().as_str() {
            "public" | "azurecloud" | "azure" => Some(Cloud::Public),
            "china" | "azurechinacloud" => Some(Cloud::China),
            "usgov" | "azureusgovernment" | "usgovernment" => Some(Cloud::UsGov),
            _ => None,
        }
    }
}

/// Key Vault or Managed HSM: they differ in DNS suffix and token audience.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VaultKind {
    KeyVault,
    ManagedHsm,
}

/// One DNS suffix under which Azure serves vaults, with the audience its tokens are issued for.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VaultSuffix {
    pub suffix: &'static str,
    pub cloud: Cloud,
    pub kind: VaultKind,
}

impl VaultSuffix {
    /// The OAuth scope of the data plane: the audience is the suffix itself.
    pub fn token_scope(&self) -> String {
        format!("https://{}/.default", self.suffix)
    }
}

/// Every suffix Azure serves Key Vault and Managed HSM under (Azure Germany is closed and left out).
pub const VAULT_SUFFIXES: &[VaultSuffix] = &[
    VaultSuffix {
        suffix: "vault.azure.net",
        cloud: Cloud::Public,
        kind: VaultKind::KeyVault,
    },
    VaultSuffix {
        suffix: "managedhsm.azure.net",
        cloud: Cloud::Public,
        kind: VaultKind::ManagedHsm,
    },
    VaultSuffix {
        suffix: "vault.azure.cn",
        cloud: Cloud::China,
        kind: VaultKind::KeyVault,
    },
    VaultSuffix {
        suffix: "managedhsm.azure.cn",
        cloud: Cloud::China,
        kind: VaultKind::ManagedHsm,
    },
    VaultSuffix {
        suffix: "vault.usgovcloudapi.net",
        cloud: Cloud::UsGov,
        kind: VaultKind::KeyVault,
    },
    VaultSuffix {
        suffix: "managedhsm.usgovcloudapi.net",
        cloud: Cloud::UsGov,
        kind: VaultKind::ManagedHsm,
    },
];

/// Why a key reference (or vault URI) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum KeyRefError {
    #[error("not a URL")]
    NotAUrl,
    #[error("scheme {scheme} is not https")]
    NotHttps { scheme: String },
    #[error("the URL carries user info, so its real host differs from what it appears to name")]
    UserInfo,
    #[error("port {port} is not Key Vault's (443)")]
    Port { port: u16 },
    #[error("host {host} is an IP address, not a Key Vault name")]
    IpLiteral { host: String },
    #[error("host {host} is not a Key Vault or Managed HSM name (<vault>.vault.azure.net and the like)")]
    NotAVaultHost { host: String },
    #[error("the path is not /keys/<name>[/<version>]")]
    NotAKeyPath,
    #[error("a vault URI has no path, query or fragment")]
    NotAVaultUri,
    #[error("the key name must be 1-127 letters, digits or dashes")]
    BadKeyName,
    #[error("the key version must be letters, digits or dashes (at most 64)")]
    BadKeyVersion,
    #[error("not the resource id of a disk encryption set")]
    NotAnEncryptionSet,
}

impl KeyRefError {
    /// Whether the reference points somewhere other than Key Vault (a finding of its own), as
    /// opposed to a Key Vault URL that names no key properly.
    pub fn is_outside_key_vault(&self) -> bool {
        matches!(
            self,
            KeyRefError::NotAUrl
                | KeyRefError::NotHttps { .. }
                | KeyRefError::UserInfo
                | KeyRefError::Port { .. }
                | KeyRefError::IpLiteral { .. }
                | KeyRefError::NotAVaultHost { .. }
        )
    }
}

/// A vault's DNS name, `<name>.<suffix>`, lower-case, with a known suffix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VaultHost {
    host: String,
    suffix: &'static VaultSuffix,
}

impl VaultHost {
    /// From a vault URI (`https://kv.vault.azure.net/`) or a bare host (`kv.vault.azure.net`).
    pub fn parse(uri_or_host: &str) -> Result<VaultHost, KeyRefError> {
        let text = uri_or_host.trim();
        let url = if text.contains("://") {
            parse_https(text)?
        } else {
            parse_https(&format!("https://{text}"))?
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(KeyRefError::NotAVaultUri);
        }
        VaultHost::of_url(&url)
    }

    /// The vault an `https` URL points at: user info, ports and IP literals are refused.
    pub fn of_url(url: &Url) -> Result<VaultHost, KeyRefError> {
        if url.scheme() != "https" {
            return Err(KeyRefError::NotHttps {
                scheme: url.scheme().to_string(),
            });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(KeyRefError::UserInfo);
        }
        // `Url` drops the scheme's default port, so `:443` reads as `None` here.
        if let Some(port) = url.port() {
            return Err(KeyRefError::Port { port });
        }
        let domain = match url.host() {
            Some(Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(Host::Ipv4(ip)) => return Err(KeyRefError::IpLiteral { host: ip.to_string() }),
            Some(Host::Ipv6(ip)) => return Err(KeyRefError::IpLiteral { host: ip.to_string() }),
            None => return Err(KeyRefError::NotAUrl),
        };
        let not_vault = || KeyRefError::NotAVaultHost { host: clip(&domain) };
        let (name, suffix) = domain.split_once('.').ok_or_else(not_vault)?;
        let suffix = VAULT_SUFFIXES
            .iter()
            .find(|s| s.suffix == suffix)
            .ok_or_else(not_vault)?;
        if !valid_vault_name(name) {
            return Err(not_vault());
        }
        Ok(VaultHost { host: domain, suffix })
    }

    pub fn as_str(&self) -> &str {
        &self.host
    }

    /// The vault's name, the first label.
    pub fn name(&self) -> &str {
        self.host.split('.').next().unwrap_or_default()
    }

    pub fn suffix(&self) -> &'static VaultSuffix {
        self.suffix
    }

    pub fn cloud(&self) -> Cloud {
        self.suffix.cloud
    }

    /// `https://<host>`, the form resource bodies use.
    pub fn uri(&self) -> String {
        format!("https://{}", self.host)
    }
}

impl fmt::Display for VaultHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host)
    }
}

/// Vault and Managed HSM names: letters, digits and dashes, starting with a letter, ending with a
/// letter or digit, no double dash, at most 24 characters.
fn valid_vault_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 24
        && bytes[0].is_ascii_alphabetic()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && !name.contains("--")
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 127 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Key Vault versions are 32 hex digits; Microsoft's own examples also show GUIDs with dashes.
fn valid_key_version(version: &str) -> bool {
    !version.is_empty() && version.len() <= 64 && version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn parse_https(text: &str) -> Result<Url, KeyRefError> {
    let url = Url::parse(text).map_err(|_| KeyRefError::NotAUrl)?;
    if url.scheme() != "https" {
        return Err(KeyRefError::NotHttps {
            scheme: clip(url.scheme()),
        });
    }
    Ok(url)
}

/// Attacker-supplied text kept for messages, bounded.
fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

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
}

impl TryFrom<StoredKeyRef> for KeyRef {
    type Error = KeyRefError;

    fn try_from(s: StoredKeyRef) -> Result<KeyRef, KeyRefError> {
        let identity = s.user_assigned_identity.as_deref();
        if !s.vault_uri.trim().is_empty() {
            return KeyRef::new(&s.vault_uri, &s.key_name, s.key_version.as_deref(), identity)
                .map(|key| key.with_auto_rotation(s.auto_rotation));
        }
        if s.key_name.trim().is_empty() {
            return Ok(KeyRef::not_visible().with_user_assigned_identity(identity));
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
        }
    }
}

#[cfg(test)]
#[path = "keyref_tests.rs"]
mod tests;
