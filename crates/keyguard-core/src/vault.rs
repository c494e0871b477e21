//! Where Azure serves Key Vault and Managed HSM: the clouds, their DNS suffixes and token
//! audiences, and a vault's host name parsed with a URL parser. The base of every key reference
//! ([`crate::keyref`]) and of the egress policy ([`crate::egress`]).

use std::fmt;

use serde::{Deserialize, Serialize};
use url::{Host, Url};

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
    #[error("an identity client id must be a GUID")]
    BadClientId,
    #[error("not the resource id of a user-assigned managed identity")]
    NotAUserAssignedIdentity,
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

pub(crate) fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 127 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Key Vault versions are 32 hex digits; Microsoft's own examples also show GUIDs with dashes.
pub(crate) fn valid_key_version(version: &str) -> bool {
    !version.is_empty() && version.len() <= 64 && version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

pub(crate) fn parse_https(text: &str) -> Result<Url, KeyRefError> {
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
