//! The egress policy: which credential may travel to which origin. Pure; the handler's HTTP
//! layer asks it before every request that carries a credential and attaches the credential
//! only when it agrees, so no call site can send a token somewhere else.
//!
//! - The ARM token goes only to the configured ARM endpoint's origin.
//! - A Key Vault token goes only to `https://<vault>.<suffix>` on port 443, for a Key Vault or
//!   Managed HSM suffix of the configured cloud, and its audience is that suffix's.
//! - The storage credential (token or Shared Key signature) goes only to the configured storage
//!   endpoint's origin.

use serde::Serialize;
use url::Url;

use crate::keyref::{Cloud, KeyRefError, VaultHost};

/// What a request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Credential {
    ArmToken,
    KeyVaultToken,
    StorageToken,
    /// A Shared Key signature, made by the store from the account key.
    StorageSharedKey,
}

impl Credential {
    pub fn name(self) -> &'static str {
        match self {
            Credential::ArmToken => "ARM token",
            Credential::KeyVaultToken => "Key Vault token",
            Credential::StorageToken => "storage token",
            Credential::StorageSharedKey => "storage Shared Key signature",
        }
    }
}

/// Why a request was not sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "refusal", rename_all = "kebab-case")]
pub enum EgressRefusal {
    #[error("{credential} may only go to {allowed}, not {origin}")]
    WrongOrigin {
        credential: &'static str,
        origin: String,
        allowed: String,
    },
    #[error("{credential} refused for {origin}: {problem}")]
    NotAVault {
        credential: &'static str,
        origin: String,
        problem: KeyRefError,
    },
    #[error("Key Vault token refused for {host}: it belongs to the {vault_cloud:?} cloud, keyguard runs in {cloud:?}")]
    OtherCloud {
        host: String,
        vault_cloud: Cloud,
        cloud: Cloud,
    },
    #[error("no {credential} is configured for any host")]
    NotConfigured { credential: &'static str },
}

/// Whether a URL's host is this machine (`localhost`, `127.0.0.0/8`, `::1`): the only place a
/// plain-http endpoint (a local stand-in) is acceptable.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The rule itself, built once from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressPolicy {
    arm: Url,
    cloud: Cloud,
    storage: Option<Url>,
}

/// What the policy allows for one request: the OAuth scope to ask for, when the credential is a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowed {
    pub token_scope: Option<String>,
}

impl EgressPolicy {
    pub fn new(arm_endpoint: &Url, cloud: Cloud, storage_endpoint: Option<&Url>) -> EgressPolicy {
        EgressPolicy {
            arm: arm_endpoint.clone(),
            cloud,
            storage: storage_endpoint.cloned(),
        }
    }

    pub fn cloud(&self) -> Cloud {
        self.cloud
    }

    pub fn arm_endpoint(&self) -> &Url {
        &self.arm
    }

    /// The ARM token's scope: the endpoint's origin (`https://management.azure.com/.default` in
    /// the public cloud). A local stand-in on loopback plays the public cloud and gets its scope.
    pub fn arm_scope(&self) -> String {
        if is_loopback(&self.arm) {
            return "https://management.azure.com/.default".to_string();
        }
        format!("{}/.default", self.arm.origin().ascii_serialization())
    }

    /// Whether `url` may receive `credential`, and with which token scope.
    pub fn check(&self, credential: Credential, url: &Url) -> Result<Allowed, EgressRefusal> {
        let origin = url.origin().ascii_serialization();
        let same_origin = |allowed: &Url| -> Result<(), EgressRefusal> {
            // User info never travels with a credential: it is how a URL hides its real host.
            if url.origin() == allowed.origin() && url.username().is_empty() && url.password().is_none() {
                Ok(())
            } else {
                Err(EgressRefusal::WrongOrigin {
                    credential: credential.name(),
                    origin: origin.clone(),
                    allowed: allowed.origin().ascii_serialization(),
                })
            }
        };
        match credential {
            Credential::ArmToken => {
                same_origin(&self.arm)?;
                Ok(Allowed {
                    token_scope: Some(self.arm_scope()),
                })
            }
            Credential::KeyVaultToken => {
                let vault = VaultHost::of_url(url).map_err(|problem| EgressRefusal::NotAVault {
                    credential: credential.name(),
                    origin: origin.clone(),
                    problem,
                })?;
                if vault.cloud() != self.cloud {
                    return Err(EgressRefusal::OtherCloud {
                        host: vault.as_str().to_string(),
                        vault_cloud: vault.cloud(),
                        cloud: self.cloud,
                    });
                }
                Ok(Allowed {
                    token_scope: Some(vault.suffix().token_scope()),
                })
            }
            Credential::StorageToken | Credential::StorageSharedKey => {
                let Some(storage) = &self.storage else {
                    return Err(EgressRefusal::NotConfigured {
                        credential: credential.name(),
                    });
                };
                same_origin(storage)?;
                Ok(Allowed {
                    token_scope: (credential == Credential::StorageToken)
                        .then(|| "https://storage.azure.com/.default".to_string()),
                })
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn policy() -> EgressPolicy {
        EgressPolicy::new(
            &url("https://management.azure.com"),
            Cloud::Public,
            Some(&url("https://acct.table.core.windows.net")),
        )
    }

    #[test]
    fn the_arm_token_goes_only_to_the_arm_origin() {
        let p = policy();
        let ok = p
            .check(
                Credential::ArmToken,
                &url("https://management.azure.com/subscriptions/s?x=1"),
            )
            .unwrap();
        assert_eq!(ok.token_scope.as_deref(), Some("https://management.azure.com/.default"));
        for bad in [
            "https://management.azure.com.evil.example/",
            "http://management.azure.com/",
            "https://management.azure.com:8443/",
            "https://user@management.azure.com/",
            "https://evil.example/subscriptions",
        ] {
            assert!(
                matches!(
                    p.check(Credential::ArmToken, &url(bad)),
                    Err(EgressRefusal::WrongOrigin { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_key_vault_token_goes_only_to_vaults_of_the_configured_cloud_with_their_audience() {
        let p = policy();
        let kv = p
            .check(Credential::KeyVaultToken, &url("https://kv-a.vault.azure.net/keys/k"))
            .unwrap();
        assert_eq!(kv.token_scope.as_deref(), Some("https://vault.azure.net/.default"));
        let hsm = p
            .check(
                Credential::KeyVaultToken,
                &url("https://hsm1.managedhsm.azure.net/keys/k"),
            )
            .unwrap();
        assert_eq!(
            hsm.token_scope.as_deref(),
            Some("https://managedhsm.azure.net/.default")
        );
        for bad in [
            "https://127.0.0.1/keys/k",
            "https://localhost/keys/k",
            "https://kv.vault.azure.net:1@evil.example/keys/k",
            "https://kv.vault.azure.net:8443/keys/k",
            "http://kv.vault.azure.net/keys/k",
            "https://kv.vault.azure.net.evil.example/keys/k",
            "https://management.azure.com/keys/k",
        ] {
            assert!(
                matches!(
                    p.check(Credential::KeyVaultToken, &url(bad)),
                    Err(EgressRefusal::NotAVault { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            p.check(Credential::KeyVaultToken, &url("https://kv.vault.azure.cn/keys/k")),
            Err(EgressRefusal::OtherCloud { .. })
        ));
    }

    #[test]
    fn sovereign_clouds_get_their_own_audiences() {
        for (cloud, host, scope) in [
            (Cloud::China, "kv.vault.azure.cn", "https://vault.azure.cn/.default"),
            (
                Cloud::China,
                "h.managedhsm.azure.cn",
                "https://managedhsm.azure.cn/.default",
            ),
            (
                Cloud::UsGov,
                "kv.vault.usgovcloudapi.net",
                "https://vault.usgovcloudapi.net/.default",
            ),
            (
                Cloud::UsGov,
                "h.managedhsm.usgovcloudapi.net",
                "https://managedhsm.usgovcloudapi.net/.default",
            ),
        ] {
            let p = EgressPolicy::new(&url("https://management.example"), cloud, None);
            let allowed = p
                .check(Credential::KeyVaultToken, &url(&format!("https://{host}/keys/k")))
                .unwrap();
            assert_eq!(allowed.token_scope.as_deref(), Some(scope), "{host}");
        }
    }

    #[test]
    fn storage_credentials_go_only_to_the_configured_account() {
        let p = policy();
        let t = p
            .check(
                Credential::StorageToken,
                &url("https://acct.table.core.windows.net/Tables"),
            )
            .unwrap();
        assert_eq!(t.token_scope.as_deref(), Some("https://storage.azure.com/.default"));
        let k = p
            .check(
                Credential::StorageSharedKey,
                &url("https://acct.table.core.windows.net/kgLeases"),
            )
            .unwrap();
        assert_eq!(k.token_scope, None);
        assert!(
            p.check(
                Credential::StorageSharedKey,
                &url("https://other.table.core.windows.net/x")
            )
            .is_err()
        );
        let none = EgressPolicy::new(&url("https://management.azure.com"), Cloud::Public, None);
        assert!(matches!(
            none.check(Credential::StorageToken, &url("https://acct.table.core.windows.net/")),
            Err(EgressRefusal::NotConfigured { .. })
        ));
    }

    #[test]
    fn the_arm_scope_is_the_endpoint_and_a_local_stand_in_plays_the_public_cloud() {
        let sovereign = EgressPolicy::new(&url("https://management.chinacloudapi.cn/"), Cloud::China, None);
        assert_eq!(sovereign.arm_scope(), "https://management.chinacloudapi.cn/.default");
        let local = EgressPolicy::new(&url("http://127.0.0.1:4000"), Cloud::Public, None);
        assert_eq!(local.arm_scope(), "https://management.azure.com/.default");
    }

    #[test]
    fn the_cloud_follows_the_arm_endpoint() {
        assert_eq!(
            Cloud::of_arm_endpoint(&url("https://management.azure.com")),
            Cloud::Public
        );
        assert_eq!(
            Cloud::of_arm_endpoint(&url("https://management.chinacloudapi.cn")),
            Cloud::China
        );
        assert_eq!(
            Cloud::of_arm_endpoint(&url("https://management.usgovcloudapi.net/")),
            Cloud::UsGov
        );
        assert_eq!(Cloud::of_arm_endpoint(&url("http://127.0.0.1:4000")), Cloud::Public);
    }
}
