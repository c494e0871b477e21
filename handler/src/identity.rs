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
use keyguard_core::event::{Caller, public_client_name};
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

/// Why no token came, by what a caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint could not be reached, timed out, or answered 5xx, 408 or 429: a later
    /// request may get a token.
    #[error("could not obtain an access token: {0}")]
    Unavailable(String),
    /// The credential was refused or cannot be used as configured: the token endpoint's 400 or 401
    /// (an identity not assigned, a wrong secret, an unknown client), no signed-in Azure CLI, a
    /// setting missing. Every request gets the same answer until a person fixes it.
    #[error("could not obtain an access token: {0}")]
    Refused(String),
}

impl TokenError {
    /// Whether asking again later may get a token.
    pub fn retryable(&self) -> bool {
        matches!(self, TokenError::Unavailable(_))
    }

    /// What a token endpoint's failed answer means.
    pub fn from_status(status: u16, message: String) -> Self {
        if matches!(status, 408 | 429) || status >= 500 {
            TokenError::Unavailable(message)
        } else {
            TokenError::Refused(message)
        }
    }

    /// What an `azure_identity` credential's failure means. The credential wraps the cause (the
    /// token endpoint's HTTP answer, or the transport's failure) in an error of its own; the
    /// first cause that says is decisive. Without one the credential itself gave up on its
    /// configuration or its tool (the Azure CLI not signed in), which retrying does not change.
    fn from_credential(error: &azure_core::Error) -> Self {
        use azure_core::error::ErrorKind;
        let message = error.to_string();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(current) = cause {
            if let Some(azure) = current.downcast_ref::<azure_core::Error>() {
                match azure.kind() {
                    ErrorKind::HttpResponse { status, .. } => return Self::from_status(u16::from(*status), message),
                    ErrorKind::Connection | ErrorKind::Io => return TokenError::Unavailable(message),
                    _ => {}
                }
            }
            cause = current.source();
        }
        TokenError::Refused(message)
    }
}

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
                .map_err(|e| TokenError::from_credential(&e))
        })
    }
}

/// keyguard's own principal, learned once from its ARM token, plus `self_principal_ids`.
/// Events whose caller it matches are keyguard's own writes and are skipped.
pub struct SelfIdentity {
    configured: BTreeSet<String>,
    learned: OnceCell<LearnedIds>,
}

impl SelfIdentity {
    pub fn new(configured: impl IntoIterator<Item = String>) -> Self {
        Self {
            configured: configured.into_iter().map(|s| s.trim().to_ascii_lowercase()).collect(),
            learned: OnceCell::new(),
        }
    }

    pub async fn ids(&self, tokens: &dyn TokenSource, scope: &str) -> Result<OwnIds, TokenError> {
        let learned = self
            .learned
            .get_or_try_init(|| async {
                let token = tokens.token(scope).await?;
                Ok::<_, TokenError>(principal_ids_from_jwt(token.secret()))
            })
            .await?;
        Ok(OwnIds {
            learned: learned.clone(),
            configured: self.configured.clone(),
        })
    }
}

/// The ids keyguard's own token carries that identify it and nobody else.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LearnedIds {
    /// `oid`: the principal itself (a managed identity, a service principal, or the signed-in user
    /// under Azure CLI credentials).
    pub object_id: Option<String>,
    /// `appid`/`azp`, only from an app-only token: then it is the service principal's own
    /// application. In a user's token it is the client the user signed in with, which every user
    /// of that client shares (the Azure CLI's id is in every `az` user's token).
    pub app_id: Option<String>,
}

/// Who keyguard is, for recognising its own writes in events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnIds {
    learned: LearnedIds,
    /// `self_principal_ids`: object or application ids the operator declared (lower case).
    configured: BTreeSet<String>,
}

impl OwnIds {
    /// An event's caller is keyguard when its object id is keyguard's. Its application id only
    /// counts when the event names no object id, or when the operator declared it: a user acting
    /// through the same application is still someone else.
    pub fn is_own_write(&self, caller: &Caller) -> bool {
        let same = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
        let declared = |id: &Option<String>| {
            id.as_deref()
                .is_some_and(|id| self.configured.contains(&id.trim().to_ascii_lowercase()))
        };
        if declared(&caller.object_id) || declared(&caller.app_id) {
            return true;
        }
        match (&caller.object_id, &self.learned.object_id) {
            (Some(theirs), Some(mine)) => same(theirs, mine),
            (Some(_), None) => false,
            (None, _) => {
                matches!((&caller.app_id, &self.learned.app_id), (Some(theirs), Some(mine)) if same(theirs, mine))
            }
        }
    }
}

/// Reads who a token was issued to from its payload, without verifying it: keyguard only learns
/// who it is from a token it was just issued, it never trusts a token presented to it this way.
/// `oid` always; `appid`/`azp` only for an app-only token (`idtyp` = `app`, or no `idtyp` and no
/// delegated `scp`), and never a public client's id.
pub fn principal_ids_from_jwt(token: &str) -> LearnedIds {
    let Some(claims) = jwt_claims(token) else {
        return LearnedIds::default();
    };
    let text = |key: &str| {
        claims
            .get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let app_only = match text("idtyp") {
        Some(kind) => kind.eq_ignore_ascii_case("app"),
        None => text("scp").is_none(),
    };
    let app_id = ["appid", "azp"]
        .into_iter()
        .find_map(text)
        .filter(|_| app_only)
        .filter(|id| public_client_name(id).is_none());
    LearnedIds {
        object_id: text("oid").map(str::to_ascii_lowercase),
        app_id: app_id.map(str::to_ascii_lowercase),
    }
}

fn jwt_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::lookup;
    use serde_json::json;

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

    fn token(claims: serde_json::Value) -> String {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
        format!("e30.{payload}.sig")
    }

    fn caller(object_id: Option<&str>, app_id: Option<&str>) -> Caller {
        Caller {
            object_id: object_id.map(str::to_string),
            app_id: app_id.map(str::to_string),
            ..Caller::default()
        }
    }

    const AZURE_CLI: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

    /// What `azure_identity`'s credentials return: an error of their own around the cause.
    fn credential_failure(cause: azure_core::Error) -> azure_core::Error {
        azure_core::Error::with_error(
            azure_core::error::ErrorKind::Credential,
            cause,
            "ManagedIdentityCredential authentication failed. the cause",
        )
    }

    fn endpoint_answered(status: azure_core::http::StatusCode) -> azure_core::Error {
        azure_core::Error::with_message(
            azure_core::error::ErrorKind::HttpResponse {
                status,
                error_code: None,
                raw_response: None,
            },
            "The request failed",
        )
    }

    #[test]
    fn a_token_endpoint_that_is_down_is_retried_and_a_refused_credential_is_not() {
        use azure_core::error::ErrorKind;
        use azure_core::http::StatusCode;
        let retryable = |error: azure_core::Error| TokenError::from_credential(&credential_failure(error)).retryable();
        for status in [
            StatusCode::InternalServerError,
            StatusCode::BadGateway,
            StatusCode::ServiceUnavailable,
            StatusCode::GatewayTimeout,
            StatusCode::TooManyRequests,
            StatusCode::RequestTimeout,
        ] {
            assert!(retryable(endpoint_answered(status)), "{status:?}");
        }
        // The identity is not assigned to this app, a wrong secret, an unknown client.
        for status in [StatusCode::BadRequest, StatusCode::Unauthorized, StatusCode::Forbidden] {
            assert!(!retryable(endpoint_answered(status)), "{status:?}");
        }
        // The transport's failures: the endpoint was not reached, or the answer broke off.
        assert!(retryable(azure_core::Error::with_message(
            ErrorKind::Connection,
            "refused"
        )));
        assert!(retryable(azure_core::Error::with_message(ErrorKind::Io, "timed out")));
        // The credential gave up on its own: no signed-in Azure CLI, a setting missing.
        let cli = azure_core::Error::with_message(ErrorKind::Credential, "Please run 'az login' to set up an account");
        let error = TokenError::from_credential(&cli);
        assert!(matches!(error, TokenError::Refused(_)) && !error.retryable(), "{error}");
        assert!(
            error.to_string().contains("az login"),
            "the credential's words are kept: {error}"
        );
    }

    #[test]
    fn an_app_only_token_gives_the_object_id_and_the_applications_id() {
        let managed_identity = token(json!({"oid": "OID-1", "appid": "App-2", "idtyp": "app"}));
        assert_eq!(
            principal_ids_from_jwt(&managed_identity),
            LearnedIds {
                object_id: Some("oid-1".into()),
                app_id: Some("app-2".into())
            }
        );
        // Older v1 tokens carry no idtyp; no delegated scope means app-only too.
        let v1 = principal_ids_from_jwt(&token(json!({"oid": "o", "azp": "a", "roles": ["x"]})));
        assert_eq!(v1.app_id.as_deref(), Some("a"));
        assert_eq!(principal_ids_from_jwt("not-a-jwt"), LearnedIds::default());
        assert_eq!(principal_ids_from_jwt("a.!!!.c"), LearnedIds::default());
    }

    #[test]
    fn a_users_token_gives_the_users_object_id_and_never_the_clients_app_id() {
        for claims in [
            json!({"oid": "User-1", "appid": AZURE_CLI, "idtyp": "user", "scp": "user_impersonation"}),
            json!({"oid": "User-1", "appid": AZURE_CLI, "scp": "user_impersonation"}),
            json!({"oid": "User-1", "azp": "some-web-app", "idtyp": "user"}),
            // Even a token that claims to be app-only never teaches a public client's id.
            json!({"oid": "User-1", "appid": AZURE_CLI, "idtyp": "app"}),
        ] {
            let learned = principal_ids_from_jwt(&token(claims.clone()));
            assert_eq!(learned.object_id.as_deref(), Some("user-1"), "{claims}");
            assert_eq!(learned.app_id, None, "{claims}");
        }
    }

    #[test]
    fn under_cli_credentials_only_the_signed_in_users_own_writes_are_skipped() {
        let me = OwnIds {
            learned: principal_ids_from_jwt(&token(
                json!({"oid": "alice-oid", "appid": AZURE_CLI, "idtyp": "user", "scp": "user_impersonation"}),
            )),
            configured: BTreeSet::new(),
        };
        assert!(
            !me.is_own_write(&caller(Some("bob-oid"), Some(AZURE_CLI))),
            "another az user"
        );
        assert!(!me.is_own_write(&caller(None, Some(AZURE_CLI))), "an app id alone");
        assert!(me.is_own_write(&caller(Some("ALICE-OID"), Some(AZURE_CLI))));
    }

    #[test]
    fn a_service_principals_app_id_counts_only_when_the_event_names_no_object() {
        let me = OwnIds {
            learned: principal_ids_from_jwt(&token(json!({"oid": "sp-oid", "appid": "sp-app", "idtyp": "app"}))),
            configured: BTreeSet::from(["declared-id".to_string()]),
        };
        assert!(me.is_own_write(&caller(Some("sp-oid"), Some("sp-app"))));
        assert!(me.is_own_write(&caller(None, Some("SP-APP"))));
        assert!(
            !me.is_own_write(&caller(Some("a-user"), Some("sp-app"))),
            "a user signed in through the same application"
        );
        assert!(
            me.is_own_write(&caller(Some("x"), Some("Declared-Id"))),
            "declared by the operator"
        );
        assert!(me.is_own_write(&caller(Some("declared-id"), None)));
        assert!(!me.is_own_write(&caller(None, None)));
    }
}
