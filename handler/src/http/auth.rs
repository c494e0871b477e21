//! Who may call keyguard's HTTP routes (`/api/*`): decided once per request by [`require_auth`],
//! with an authenticator chosen once at start-up ([`launch`]). Nothing is ever granted because of
//! the address a request comes from or the listener is bound to: behind a TLS-terminating proxy
//! every caller looks local.
//!
//! # Modes
//!
//! - **Functions host** ([`ApiAuthMode::FunctionsHost`], `keyguard serve` started by the host
//!   only): the `Api` function is declared with `authLevel: function`, so the host has already
//!   checked the function key before it forwards the request. This is an explicit, documented
//!   trust in the host, not an inference from the bind address; `keyguard webhook` never uses it.
//! - **Key** ([`ApiAuthMode::Key`]): a shared secret of at least [`MIN_KEY_CHARS`] characters.
//!   Where the caller puts it depends on the routes ([`KeyLocation`]): the API key in `x-api-key`
//!   (or `x-functions-key`, so scripts written for the Azure deployment work unchanged); Event
//!   Grid's webhook key in `?code=` (or `x-functions-key`). The key is compared as SHA-256 digests
//!   in constant time; only the digest is kept after start-up.
//! - **Entra ID** ([`ApiAuthMode::Entra`]): the caller sends `Authorization: Bearer <access token>`.
//!   The token must be RS256, signed by a key of the tenant's JWKS (matched by `kid`), with `iss`
//!   one of the accepted issuers, `aud` one of the audiences, `exp`/`nbf` valid within the clock
//!   skew, `tid` (when present) equal to the tenant, and — when roles are configured — at least
//!   one of those app roles in `roles`. Event Grid's "Microsoft Entra authentication" for webhook
//!   delivery sends exactly such a token, so `/api/events` takes one too.
//! - **Either** ([`ApiAuthMode::Either`]): a key, when presented, decides; otherwise the bearer
//!   token does.
//! - **Closed** ([`ApiAuthMode::Closed`]): nothing is configured for these routes, so every
//!   request is refused with 401 (e.g. `keyguard webhook` with only a webhook key: the other API
//!   routes answer 401).
//! - **Insecure, no authentication** ([`ApiAuthMode::InsecureNoAuth`]): only with the explicit
//!   `--insecure-no-auth` flag of `keyguard webhook`, for local development. A warning is logged
//!   at start-up and on every request.
//!
//! # Settings
//!
//! The API routes read `KEYGUARD_API_*`, `/api/events` reads `KEYGUARD_WEBHOOK_KEY` and
//! `KEYGUARD_EVENTGRID_*` ([`API_SETTINGS`], [`EVENT_SETTINGS`]); the Entra settings have the same
//! names under either prefix.
//!
//! | variable | meaning |
//! |---|---|
//! | `KEYGUARD_API_KEY`, `KEYGUARD_WEBHOOK_KEY` | the key itself (at least 16 characters; in Azure, a Key Vault reference) |
//! | `KEYGUARD_API_KEY_FILE`, `KEYGUARD_WEBHOOK_KEY_FILE` | or a file holding the key (container secrets); not both |
//! | `…_TENANT_ID` | Entra tenant id (a GUID); turns bearer-token validation on |
//! | `…_AUDIENCE` | accepted `aud` values, comma-separated (app ID URI and client id); required with the tenant |
//! | `…_ISSUERS` | accepted `iss` values, comma-separated; default the tenant's v2 and v1 issuers |
//! | `…_JWKS_URL` | signing-key set; default `https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys` (override for sovereign clouds, apps with their own signing key `?appid=`, tests) |
//! | `…_ROLES` | app roles, comma-separated; a token needs at least one of them. Empty: any valid token |
//! | `…_CLOCK_SKEW_SECS` | leeway for `exp`/`nbf`, default 300, at most 3600 |
//!
//! # Responses
//!
//! - 401 `{"error":{"code":"Unauthorized","message":"authentication required"}}` with a
//!   `WWW-Authenticate` challenge, whatever the reason (no credential, wrong key, expired token, bad
//!   signature...): the reason goes to the log, never to the caller, and never with the token.
//! - 403 for a valid token that lacks every configured app role.
//! - 503 with `Retry-After` when the signing keys could not be fetched and none cached fits the
//!   token: authentication could not be performed, which is not the caller's fault and is worth
//!   retrying; answering 401 would tell a legitimate caller its token is bad.
//!
//! The check runs as middleware, before the handler and its body extractor: a refused request's
//! body is never read, so an anonymous caller cannot make keyguard buffer megabytes.
//!
//! # Signing-key cache
//!
//! The JWKS is fetched on first use and kept for [`entra::JwksPolicy::cache_ttl`] (24 h). A token whose
//! `kid` is not in the set triggers a refetch at most once per
//! [`entra::JwksPolicy::unknown_kid_refetch_interval`] (5 min), so a flood of tokens with invented `kid`s
//! cannot turn keyguard into a load generator against the JWKS endpoint; after a failed fetch the
//! next try waits [`entra::JwksPolicy::failure_retry_interval`]. A stale set keeps serving the keys it has
//! while the endpoint is unreachable: Entra announces new keys weeks before signing with them.

mod entra;
#[cfg(test)]
mod entra_tests;
pub mod launch;
#[cfg(test)]
pub(crate) mod test_tokens;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use aws_lc_rs::{constant_time, digest};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::json;

pub use entra::EntraConfig;
use entra::EntraVerifier;
#[cfg(test)]
pub use entra::JwksPolicy;

pub const API_KEY_HEADER: &str = "x-api-key";
/// Accepted as well, for scripts written against the Azure deployment (the Functions key header).
pub const FUNCTIONS_KEY_HEADER: &str = "x-functions-key";
/// The query parameter Event Grid sends the webhook key in (from the subscription's endpoint URL).
pub const WEBHOOK_KEY_QUERY: &str = "code";
/// Shorter keys are guessable; a generated key (`openssl rand -base64 32`) is 44 characters.
pub const MIN_KEY_CHARS: usize = 16;
const RETRY_AFTER_SECS: &str = "30";

/// How callers of a group of routes are authenticated. `Debug` never shows the key.
#[derive(Debug, Clone)]
pub enum ApiAuthMode {
    /// The Functions host checked the function key before forwarding; trust what arrives.
    FunctionsHost,
    /// `--insecure-no-auth`: everyone, with a warning per request.
    InsecureNoAuth,
    /// Nothing configured: every request is refused.
    Closed,
    Key(SecretString),
    Entra(EntraConfig),
    Either {
        key: SecretString,
        entra: EntraConfig,
    },
}

/// The environment variables that configure one group of routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialSettings {
    /// The shared key's variable, e.g. `KEYGUARD_API_KEY`.
    pub key: &'static str,
    /// The variable naming a file that holds the key instead.
    pub key_file: &'static str,
    /// `{prefix}_TENANT_ID`, `{prefix}_AUDIENCE`, ... configure Entra ID tokens.
    pub entra_prefix: &'static str,
}

/// `/api/check`, `/api/scan`, `/api/findings`, `/api/audit` (and `/api/health`'s details).
pub const API_SETTINGS: CredentialSettings = CredentialSettings {
    key: "KEYGUARD_API_KEY",
    key_file: "KEYGUARD_API_KEY_FILE",
    entra_prefix: "KEYGUARD_API",
};

/// `/api/events`: Event Grid's webhook key, or its Microsoft Entra token.
pub const EVENT_SETTINGS: CredentialSettings = CredentialSettings {
    key: "KEYGUARD_WEBHOOK_KEY",
    key_file: "KEYGUARD_WEBHOOK_KEY_FILE",
    entra_prefix: "KEYGUARD_EVENTGRID",
};

/// Where a group of routes expects its shared key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLocation {
    /// `x-api-key`, or `x-functions-key`. Never the query: query strings end up in proxy logs.
    ApiHeaders,
    /// `?code=` (all Event Grid can send from an endpoint URL), or `x-functions-key`.
    WebhookQuery,
}

/// Who made an authorised request; the middleware puts it in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    pub kind: PrincipalKind,
    /// Entra object id (`oid`, else `sub`) of the user or service principal.
    pub subject: Option<String>,
    /// `preferred_username`, else `name`.
    pub name: Option<String>,
    /// The client application (`azp` in v2 tokens, `appid` in v1).
    pub client_app: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrincipalKind {
    FunctionsHost,
    ApiKey,
    WebhookKey,
    Entra,
    InsecureNoAuth,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::FunctionsHost => "functions-host",
            PrincipalKind::ApiKey => "api-key",
            PrincipalKind::WebhookKey => "webhook-key",
            PrincipalKind::Entra => "entra",
            PrincipalKind::InsecureNoAuth => "insecure-no-auth",
        }
    }
}

impl Principal {
    fn anonymous(kind: PrincipalKind) -> Self {
        Self {
            kind,
            subject: None,
            name: None,
            client_app: None,
        }
    }
}

/// Why a request was not authorised. The `Display` text is for logs only: it never holds the
/// presented credential, and [`ApiAuthenticator::rejection`] never shows it to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credential presented")]
    Missing,
    #[error("credential rejected: {0}")]
    Rejected(&'static str),
    #[error("token of {} carries none of the required app roles", .subject.as_deref().unwrap_or("an unknown subject"))]
    Forbidden { subject: Option<String> },
    #[error("authentication unavailable: {0}")]
    Unavailable(String),
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Missing | AuthError::Rejected(_) => StatusCode::UNAUTHORIZED,
            AuthError::Forbidden { .. } => StatusCode::FORBIDDEN,
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl ApiAuthMode {
    /// The credentials `settings` configure (see the module docs), or `None` when none of its
    /// variables is set. A key shorter than [`MIN_KEY_CHARS`] is refused, naming the variable
    /// and never echoing the key.
    pub fn configured(
        get: impl Fn(&str) -> Option<String>,
        settings: &CredentialSettings,
    ) -> anyhow::Result<Option<Self>> {
        let get = |name: &str| get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let (key_var, file_var) = (settings.key, settings.key_file);
        let key = match (get(key_var), get(file_var)) {
            (Some(_), Some(_)) => anyhow::bail!("set {key_var} or {file_var}, not both"),
            (Some(key), None) => Some(key),
            (None, Some(path)) => Some(
                std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {file_var} {path}"))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        if let Some(key) = &key
            && key.chars().count() < MIN_KEY_CHARS
        {
            anyhow::bail!(
                "the key in {key_var} (or {file_var}) is shorter than {MIN_KEY_CHARS} characters; \
                 use a random one, e.g. `openssl rand -base64 32`"
            );
        }
        let entra = entra::from_lookup(settings.entra_prefix, &get)?;
        Ok(match (key, entra) {
            (Some(key), Some(entra)) => Some(ApiAuthMode::Either {
                key: SecretString::from(key),
                entra,
            }),
            (Some(key), None) => Some(ApiAuthMode::Key(SecretString::from(key))),
            (None, Some(entra)) => Some(ApiAuthMode::Entra(entra)),
            (None, None) => None,
        })
    }
}

/// Checks each request of a group of routes against its [`ApiAuthMode`]. Share it as
/// `Arc<ApiAuthenticator>`.
pub struct ApiAuthenticator {
    scheme: Scheme,
    key_location: KeyLocation,
}

enum Scheme {
    FunctionsHost,
    InsecureNoAuth,
    /// Both `None`: closed.
    Credentials {
        key: Option<SecretDigest>,
        entra: Option<Box<EntraVerifier>>,
    },
}

impl fmt::Debug for ApiAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scheme {
            Scheme::FunctionsHost => f.write_str("ApiAuthenticator(FunctionsHost)"),
            Scheme::InsecureNoAuth => f.write_str("ApiAuthenticator(InsecureNoAuth)"),
            Scheme::Credentials { key, entra } => f
                .debug_struct("ApiAuthenticator")
                .field("key_location", &self.key_location)
                .field("key", &key.as_ref().map(|_| "<redacted>"))
                .field("entra", &entra.as_ref().map(|v| v.config()))
                .finish(),
        }
    }
}

/// Only a digest of a secret is kept: comparing equal-length digests in constant time hides the
/// secret's length as well as its content, and there is no plaintext left to leak.
pub struct SecretDigest(digest::Digest);

impl SecretDigest {
    pub fn new(secret: &SecretString) -> Self {
        Self(digest::digest(&digest::SHA256, secret.expose_secret().as_bytes()))
    }

    pub fn matches(&self, presented: &[u8]) -> bool {
        let presented = digest::digest(&digest::SHA256, presented);
        constant_time::verify_slices_are_equal(self.0.as_ref(), presented.as_ref()).is_ok()
    }
}

impl ApiAuthenticator {
    /// `http` should be the shared client (it carries `KEYGUARD_CA_BUNDLE`); it fetches signing keys.
    pub fn new(mode: ApiAuthMode, key_location: KeyLocation, http: reqwest::Client) -> Self {
        let verifier = |config| Some(Box::new(EntraVerifier::new(config, http.clone())));
        let scheme = match mode {
            ApiAuthMode::FunctionsHost => Scheme::FunctionsHost,
            ApiAuthMode::InsecureNoAuth => Scheme::InsecureNoAuth,
            ApiAuthMode::Closed => Scheme::Credentials { key: None, entra: None },
            ApiAuthMode::Key(key) => Scheme::Credentials {
                key: Some(SecretDigest::new(&key)),
                entra: None,
            },
            ApiAuthMode::Entra(config) => Scheme::Credentials {
                key: None,
                entra: verifier(config),
            },
            ApiAuthMode::Either { key, entra } => Scheme::Credentials {
                key: Some(SecretDigest::new(&key)),
                entra: verifier(entra),
            },
        };
        Self { scheme, key_location }
    }

    /// Tests shorten the intervals; production keeps `JwksPolicy::default()`.
    #[cfg(test)]
    pub fn with_jwks_policy(mut self, policy: JwksPolicy) -> Self {
        if let Scheme::Credentials { entra: Some(v), .. } = &mut self.scheme {
            v.policy = policy;
        }
        self
    }

    /// A short description for the start-up log line.
    pub fn describe(&self) -> &'static str {
        let key_kind = match self.key_location {
            KeyLocation::ApiHeaders => "API key",
            KeyLocation::WebhookQuery => "webhook key",
        };
        match (&self.scheme, key_kind) {
            (Scheme::FunctionsHost, _) => "functions host key",
            (Scheme::InsecureNoAuth, _) => "NONE (--insecure-no-auth)",
            (Scheme::Credentials { key: None, entra: None }, _) => "none configured: every request is refused",
            (
                Scheme::Credentials {
                    key: Some(_),
                    entra: Some(_),
                },
                "API key",
            ) => "API key or Entra ID token",
            (
                Scheme::Credentials {
                    key: Some(_),
                    entra: Some(_),
                },
                _,
            ) => "webhook key or Event Grid Entra ID token",
            (Scheme::Credentials { key: Some(_), .. }, "API key") => "API key",
            (Scheme::Credentials { key: Some(_), .. }, _) => "webhook key",
            (Scheme::Credentials { .. }, "API key") => "Entra ID token",
            (Scheme::Credentials { .. }, _) => "Event Grid Entra ID token",
        }
    }

    /// Whether nothing can pass (no credential configured for these routes).
    pub fn is_closed(&self) -> bool {
        matches!(self.scheme, Scheme::Credentials { key: None, entra: None })
    }

    /// Looks at the headers and, for the webhook key, the query; never at the body.
    pub async fn authorize(&self, headers: &HeaderMap, uri: &Uri) -> Result<Principal, AuthError> {
        let (key, entra) = match &self.scheme {
            Scheme::FunctionsHost => return Ok(Principal::anonymous(PrincipalKind::FunctionsHost)),
            Scheme::InsecureNoAuth => {
                tracing::warn!(
                    path = uri.path(),
                    "serving a request WITHOUT authentication (--insecure-no-auth)"
                );
                return Ok(Principal::anonymous(PrincipalKind::InsecureNoAuth));
            }
            Scheme::Credentials { key, entra } => (key, entra),
        };
        if let Some(expected) = key
            && let Some(presented) = self.presented_key(headers, uri)
        {
            return if expected.matches(&presented) {
                Ok(Principal::anonymous(match self.key_location {
                    KeyLocation::ApiHeaders => PrincipalKind::ApiKey,
                    KeyLocation::WebhookQuery => PrincipalKind::WebhookKey,
                }))
            } else {
                Err(AuthError::Rejected(match self.key_location {
                    KeyLocation::ApiHeaders => "wrong API key",
                    KeyLocation::WebhookQuery => "wrong webhook key",
                }))
            };
        }
        if let Some(verifier) = entra
            && let Some(authorization) = headers.get(header::AUTHORIZATION)
        {
            let token =
                bearer_token(authorization).ok_or(AuthError::Rejected("Authorization is not a bearer token"))?;
            return verifier.verify(token).await;
        }
        Err(AuthError::Missing)
    }

    /// The key as presented, if any. `x-api-key` decides when both headers are sent; `?code=`
    /// decides over `x-functions-key`, and the first `code` over later ones.
    fn presented_key(&self, headers: &HeaderMap, uri: &Uri) -> Option<Vec<u8>> {
        match self.key_location {
            KeyLocation::ApiHeaders => headers
                .get(API_KEY_HEADER)
                .or_else(|| headers.get(FUNCTIONS_KEY_HEADER))
                .map(|v| v.as_bytes().to_vec()),
            KeyLocation::WebhookQuery => {
                let from_query = url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
                    .find(|(name, _)| name == WEBHOOK_KEY_QUERY)
                    .map(|(_, value)| value.into_owned().into_bytes());
                from_query.or_else(|| headers.get(FUNCTIONS_KEY_HEADER).map(|v| v.as_bytes().to_vec()))
            }
        }
    }

    /// The response for a failed [`authorize`](Self::authorize): the same body for every 401.
    pub fn rejection(&self, error: &AuthError) -> Response {
        let (status, code, message) = match error {
            AuthError::Missing | AuthError::Rejected(_) => {
                (StatusCode::UNAUTHORIZED, "Unauthorized", "authentication required")
            }
            AuthError::Forbidden { .. } => (
                StatusCode::FORBIDDEN,
                "Forbidden",
                "the caller is not allowed to use this API",
            ),
            AuthError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "AuthenticationUnavailable",
                "authentication could not be performed; try again later",
            ),
        };
        let mut response = (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(self.challenge()));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
            }
            _ => {}
        }
        response
    }

    fn challenge(&self) -> &'static str {
        match (&self.scheme, self.key_location) {
            (Scheme::Credentials { entra: Some(_), .. }, _) => "Bearer",
            (_, KeyLocation::ApiHeaders) => "ApiKey header=\"x-api-key\"",
            (_, KeyLocation::WebhookQuery) => "ApiKey query=\"code\"",
        }
    }
}

fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// axum middleware: `.route_layer(axum::middleware::from_fn_with_state(auth, require_auth))`.
/// Runs before the handler's extractors, so a refused request's body is never read. Puts the
/// [`Principal`] in the request's extensions for the handlers (and their audit logs).
pub async fn require_auth(State(auth): State<Arc<ApiAuthenticator>>, mut req: Request, next: Next) -> Response {
    match auth.authorize(req.headers(), req.uri()).await {
        Ok(principal) => {
            tracing::debug!(
                kind = principal.kind.as_str(),
                subject = principal.subject.as_deref(),
                path = req.uri().path(),
                "caller authenticated"
            );
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(error) => {
            let path = req.uri().path();
            match &error {
                AuthError::Missing => tracing::debug!(path, reason = %error, "request refused"),
                _ => tracing::warn!(path, status = error.status().as_u16(), reason = %error, "request refused"),
            }
            auth.rejection(&error)
        }
    }
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Through [`require_auth`].
    Authenticated,
    /// Anyone (`/api/health` shows its details to authenticated callers only).
    Open,
    /// Through [`require_auth`] with the events authenticator: Event Grid's webhook key
    /// or its Entra ID token.
    EventGrid,
}

/// One line per authenticated API call: who (kind and subject, never the credential), what, how it ended.
pub(super) async fn log_api_call(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let principal = request.extensions().get::<Principal>().cloned();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        caller_kind = principal.as_ref().map(|p| p.kind.as_str()),
        caller = principal.as_ref().and_then(|p| p.subject.as_deref()),
        "API call"
    );
    response
}
