//! Every outbound request that carries a credential is built here, and only after the egress
//! policy ([`keyguard_core::egress`]) has approved its URL for that credential. The token is
//! fetched for the scope the policy names and attached here; callers never hold one, so a new
//! call site cannot send a credential anywhere the policy does not allow.
//!
//! The Functions host's identity endpoint is the one exception: `azure_identity` talks to it
//! itself, at the address the platform sets (`IDENTITY_ENDPOINT`), with no token of ours.

use std::sync::Arc;

use keyguard_core::egress::{Credential, EgressPolicy, EgressRefusal};
use reqwest::Method;
use url::Url;

use crate::identity::{TokenError, TokenSource};

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The policy refused: a security event, never retried.
    #[error("request not sent: {0}")]
    Refused(#[from] EgressRefusal),
    #[error(transparent)]
    Token(#[from] TokenError),
}

pub struct Egress {
    http: reqwest::Client,
    tokens: Arc<dyn TokenSource>,
    policy: EgressPolicy,
    /// Test-only: sends an approved Key Vault request for `https://{vault}/keys/...` to
    /// `{base}/keyvault/{vault}/keys/...` (the local stand-in). The policy judges the real URL.
    keyvault_override: Option<Url>,
}

impl Egress {
    pub fn new(
        http: reqwest::Client,
        tokens: Arc<dyn TokenSource>,
        policy: EgressPolicy,
        keyvault_override: Option<Url>,
    ) -> Self {
        Self {
            http,
            tokens,
            policy,
            keyvault_override,
        }
    }

    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// keyguard's own token source, to read who keyguard is from its own ARM token and to probe
    /// the identity for health. Never to authorise a request: that is [`Egress::request`]'s job.
    pub fn own_tokens(&self) -> &dyn TokenSource {
        self.tokens.as_ref()
    }

    /// A request to `url` that carries `credential` (a bearer token is attached here; a Shared
    /// Key signature is added by the caller, which signs the final request). Refused before
    /// anything is fetched or sent when the policy does not allow `url` for `credential`.
    pub async fn request(
        &self,
        credential: Credential,
        method: Method,
        url: &Url,
        correlation_id: &str,
    ) -> Result<reqwest::RequestBuilder, EgressError> {
        let allowed = match self.policy.check(credential, url) {
            Ok(allowed) => allowed,
            Err(refusal) => {
                tracing::warn!(
                    target: "keyguard::security",
                    security_event = "egress-refused",
                    credential = credential.name(),
                    origin = %url.origin().ascii_serialization(),
                    correlation_id,
                    %refusal,
                    "a request with a credential was refused: its host is not one the credential may go to"
                );
                return Err(refusal.into());
            }
        };
        let mut builder = self.http.request(method, self.physical_url(credential, url));
        if let Some(scope) = &allowed.token_scope {
            let token = self.tokens.token(scope).await?;
            builder = builder.bearer_auth(token.secret());
        }
        Ok(builder)
    }

    /// Opens a connection to `origin` ahead of need (TLS handshake included) and leaves it in the
    /// pool: a GET of the root that carries no credential, so nothing needs the policy's
    /// approval. Any answer will do; only a failure to connect is an error.
    pub async fn preconnect(&self, origin: &Url) -> Result<(), reqwest::Error> {
        let response = self.http.get(origin.clone()).send().await?;
        // Reading the (small) body to its end hands the connection back to the pool.
        let _ = response.bytes().await;
        Ok(())
    }

    fn physical_url(&self, credential: Credential, url: &Url) -> Url {
        let (Credential::KeyVaultToken, Some(base), Some(host)) = (credential, &self.keyvault_override, url.host_str())
        else {
            return url.clone();
        };
        let mut physical = base.clone();
        let base_path = physical.path().trim_end_matches('/').to_string();
        physical.set_path(&format!("{base_path}/keyvault/{host}{}", url.path()));
        physical.set_query(url.query());
        physical
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use keyguard_core::keyref::Cloud;

    use super::*;
    use crate::identity::TokenFuture;

    /// Records every scope asked for: a refused request must not even fetch a token.
    #[derive(Default)]
    struct RecordingTokens(Mutex<Vec<String>>);

    impl TokenSource for RecordingTokens {
        fn token<'a>(&'a self, scope: &'a str) -> TokenFuture<'a> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(scope.to_string());
            Box::pin(async { Ok(azure_core::credentials::Secret::new("t")) })
        }
    }

    fn egress(tokens: Arc<RecordingTokens>, kv_override: Option<&str>) -> Egress {
        let arm = Url::parse("https://management.azure.com").expect("url");
        Egress::new(
            reqwest::Client::new(),
            tokens,
            EgressPolicy::new(&arm, Cloud::Public, None),
            kv_override.map(|u| Url::parse(u).expect("url")),
        )
    }

    /// The request `e` builds for a Key Vault GET of `url`, which the policy must approve.
    async fn approved(e: &Egress, url: &Url) -> reqwest::Request {
        e.request(Credential::KeyVaultToken, Method::GET, url, "c")
            .await
            .expect("allowed")
            .build()
            .expect("request")
    }

    #[tokio::test]
    async fn a_refused_request_fetches_no_token_and_builds_nothing() {
        let tokens = Arc::new(RecordingTokens::default());
        let e = egress(tokens.clone(), None);
        for bad in [
            "https://127.0.0.1/keys/k",
            "https://kv.vault.azure.net:1@evil.example/keys/k",
        ] {
            let url = Url::parse(bad).expect("url");
            let err = e
                .request(Credential::KeyVaultToken, Method::GET, &url, "c")
                .await
                .expect_err(bad);
            assert!(matches!(err, EgressError::Refused(_)), "{bad}");
        }
        let arm_token_to_vault = Url::parse("https://evil.example/subscriptions").expect("url");
        assert!(
            e.request(Credential::ArmToken, Method::GET, &arm_token_to_vault, "c")
                .await
                .is_err()
        );
        assert!(tokens.0.lock().expect("lock").is_empty(), "no token was fetched");
    }

    #[tokio::test]
    async fn an_approved_request_carries_the_token_of_the_policys_scope() {
        let tokens = Arc::new(RecordingTokens::default());
        let e = egress(tokens.clone(), None);
        let url = Url::parse("https://hsm1.managedhsm.azure.net/keys/k?api-version=7.5").expect("url");
        let request = approved(&e, &url).await;
        assert_eq!(request.url(), &url);
        assert_eq!(
            request.headers().get("authorization").and_then(|v| v.to_str().ok()),
            Some("Bearer t")
        );
        assert_eq!(
            *tokens.0.lock().expect("lock"),
            vec!["https://managedhsm.azure.net/.default".to_string()]
        );
    }

    #[tokio::test]
    async fn the_test_override_moves_only_approved_key_vault_requests() {
        let tokens = Arc::new(RecordingTokens::default());
        let e = egress(tokens, Some("http://127.0.0.1:9/"));
        let url = Url::parse("https://kv.vault.azure.net/keys/k/v1?api-version=7.5").expect("url");
        let request = approved(&e, &url).await;
        assert_eq!(
            request.url().as_str(),
            "http://127.0.0.1:9/keyvault/kv.vault.azure.net/keys/k/v1?api-version=7.5"
        );
        let bad = Url::parse("https://evil.example/keys/k").expect("url");
        assert!(
            e.request(Credential::KeyVaultToken, Method::GET, &bad, "c")
                .await
                .is_err()
        );
    }
}
