//! Who keyguard is when it calls ARM: one explicitly chosen `azure_identity` credential
//! (the SDK has no chained credential on purpose) and the principal ids found in its token,
//! which let the event path recognise — and skip — keyguard's own writes.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, RetryOptions, Transport};
use azure_identity::{
    AzureCliCredential, ClientSecretCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId,
};
use base64::Engine;
use tokio::sync::OnceCell;

/// How keyguard authenticates. Chosen by `KEYGUARD_AUTH`, defaulting to managed identity when
/// the Functions/App Service identity endpoint is present and to the Azure CLI otherwise.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthMode {
    ManagedIdentity {
        client_id: Option<String>,
    },
    AzureCli,
    ClientSecret {
        tenant_id: String,
        client_id: String,
        secret: String,
    },
}

impl fmt::Debug for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthMode::ManagedIdentity { client_id } => {
                f.debug_struct("ManagedIdentity").field("client_id", client_id).finish()
            }
            AuthMode::AzureCli => f.write_str("AzureCli"),
            AuthMode::ClientSecret {
                tenant_id, client_id, ..
            } => f
                .debug_struct("ClientSecret")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("secret", &"<redacted>")
                .finish(),
        }
    }
}

impl AuthMode {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<AuthMode> {
        let client_id = get("KEYGUARD_CLIENT_ID")
            .or_else(|| get("AZURE_CLIENT_ID"))
            .filter(|s| !s.is_empty());
        let mode = get("KEYGUARD_AUTH").unwrap_or_default().to_ascii_lowercase();
        match mode.as_str() {
            "" if get("IDENTITY_ENDPOINT").is_some() => Ok(AuthMode::ManagedIdentity { client_id }),
            "" | "azure-cli" | "cli" => Ok(AuthMode::AzureCli),
            "managed-identity" | "msi" => Ok(AuthMode::ManagedIdentity { client_id }),
            "client-secret" => {
                let tenant_id = get("AZURE_TENANT_ID")
                    .ok_or_else(|| anyhow::anyhow!("KEYGUARD_AUTH=client-secret needs AZURE_TENANT_ID"))?;
                let client_id =
                    client_id.ok_or_else(|| anyhow::anyhow!("KEYGUARD_AUTH=client-secret needs AZURE_CLIENT_ID"))?;
                let secret = get("AZURE_CLIENT_SECRET")
                    .ok_or_else(|| anyhow::anyhow!("KEYGUARD_AUTH=client-secret needs AZURE_CLIENT_SECRET"))?;
                Ok(AuthMode::ClientSecret {
                    tenant_id,
                    client_id,
                    secret,
                })
            }
            other => anyhow::bail!("KEYGUARD_AUTH={other:?} is not one of managed-identity, azure-cli, client-secret"),
        }
    }
}

pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<Secret, TokenError>> + Send + 'a>>;

/// The one thing the ARM adapter needs from identity. A trait so unit tests can hand in a fixed token.
pub trait TokenSource: Send + Sync {
    fn token<'a>(&'a self, scope: &'a str) -> TokenFuture<'a>;
}

#[derive(Debug, thiserror::Error)]
#[error("could not obtain an access token: {0}")]
pub struct TokenError(pub String);

/// Wraps an `azure_identity` credential. The credential caches tokens until shortly before expiry,
/// so calling it per request is cheap.
pub struct CredentialTokenSource {
    credential: Arc<dyn TokenCredential>,
}

impl CredentialTokenSource {
    pub fn new(mode: &AuthMode, http: reqwest::Client) -> anyhow::Result<Self> {
        let client_options = ClientOptions {
            transport: Some(Transport::new(Arc::new(http))),
            // Our own ARM retry loop owns the time budget; the credential gets one short retry budget.
            retry: RetryOptions::none(),
            ..Default::default()
        };
        let credential: Arc<dyn TokenCredential> = match mode {
            AuthMode::ManagedIdentity { client_id } => {
                let options = ManagedIdentityCredentialOptions {
                    user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                    client_options,
                };
                ManagedIdentityCredential::new(Some(options))?
            }
            AuthMode::AzureCli => AzureCliCredential::new(None)?,
            AuthMode::ClientSecret {
                tenant_id,
                client_id,
                secret,
            } => ClientSecretCredential::new(tenant_id, client_id.clone(), Secret::new(secret.clone()), None)?,
        };
        Ok(Self { credential })
    }
}

impl TokenSource for CredentialTokenSource {
    fn token<'a>(&'a self, scope: &'a str) -> TokenFuture<'a> {
        Box::pin(async move {
            self.credential
                .get_token(&[scope], None)
                .await
                .map(|t| t.token)
                .map_err(|e| TokenError(e.to_string()))
        })
    }
}

/// keyguard's own principal ids: configured ones plus `oid`/`appid` read from its ARM token,
/// learned once. Events whose caller matches are keyguard's own writes.
pub struct SelfIdentity {
    configured: BTreeSet<String>,
    learned: OnceCell<BTreeSet<String>>,
}

impl SelfIdentity {
    pub fn new(configured: impl IntoIterator<Item = String>) -> Self {
        Self {
            configured: configured.into_iter().map(|s| s.to_ascii_lowercase()).collect(),
            learned: OnceCell::new(),
        }
    }

    pub async fn ids(&self, tokens: &dyn TokenSource, scope: &str) -> Result<BTreeSet<String>, TokenError> {
        let learned = self
            .learned
            .get_or_try_init(|| async {
                let token = tokens.token(scope).await?;
                Ok::<_, TokenError>(principal_ids_from_jwt(token.secret()))
            })
            .await?;
        Ok(self.configured.union(learned).cloned().collect())
    }

    pub fn is_self(ids: &BTreeSet<String>, object_id: Option<&str>, app_id: Option<&str>) -> bool {
        [object_id, app_id]
            .into_iter()
            .flatten()
            .any(|id| ids.contains(&id.to_ascii_lowercase()))
    }
}

/// Reads `oid` and `appid`/`azp` from a JWT payload without verifying it: keyguard only learns who
/// it is from a token it was just issued, it never trusts a token presented to it this way.
pub fn principal_ids_from_jwt(token: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let Some(payload) = token.split('.').nth(1) else {
        return ids;
    };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')) else {
        return ids;
    };
    let Ok(claims) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return ids;
    };
    for key in ["oid", "appid", "azp"] {
        if let Some(v) = claims.get(key).and_then(|v| v.as_str()) {
            ids.insert(v.to_ascii_lowercase());
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::lookup;

    #[test]
    fn auth_mode_defaults_follow_the_environment() {
        let mi = AuthMode::from_lookup(lookup(&[("IDENTITY_ENDPOINT", "http://x")])).unwrap();
        assert_eq!(mi, AuthMode::ManagedIdentity { client_id: None });
        assert_eq!(AuthMode::from_lookup(lookup(&[])).unwrap(), AuthMode::AzureCli);
        let uami = AuthMode::from_lookup(lookup(&[
            ("KEYGUARD_AUTH", "managed-identity"),
            ("KEYGUARD_CLIENT_ID", "abc"),
        ]))
        .unwrap();
        assert_eq!(
            uami,
            AuthMode::ManagedIdentity {
                client_id: Some("abc".into())
            }
        );
        assert!(AuthMode::from_lookup(lookup(&[("KEYGUARD_AUTH", "magic")])).is_err());
        assert!(AuthMode::from_lookup(lookup(&[("KEYGUARD_AUTH", "client-secret")])).is_err());
    }

    #[test]
    fn client_secret_never_prints() {
        let mode = AuthMode::ClientSecret {
            tenant_id: "t".into(),
            client_id: "c".into(),
            secret: "hunter2-very-secret".into(),
        };
        assert!(!format!("{mode:?}").contains("hunter2"));
    }

    #[test]
    fn principal_ids_come_from_the_token_payload() {
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"oid":"OID-1","appid":"App-2","aud":"x"}"#);
        let ids = principal_ids_from_jwt(&format!("e30.{payload}.sig"));
        assert_eq!(ids, BTreeSet::from(["oid-1".to_string(), "app-2".to_string()]));
        assert!(principal_ids_from_jwt("not-a-jwt").is_empty());
        assert!(principal_ids_from_jwt("a.!!!.c").is_empty());
        assert!(SelfIdentity::is_self(&ids, Some("OID-1"), None));
        assert!(!SelfIdentity::is_self(&ids, Some("someone"), Some("else")));
    }
}
