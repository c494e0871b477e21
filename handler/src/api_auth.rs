//! Who may call keyguard's HTTP API (`/api/*`): decided once per request by [`require_auth`].
//!
//! # Modes
//!
//! - **Functions host** ([`ApiAuthMode::FunctionsHost`]): the `Api` function is declared with
//!   `authLevel: function`, so the host has already checked the function key before it forwards
//!   the request, and the handler listens on loopback only. Every request that arrives is trusted.
//! - **API key** ([`ApiAuthMode::ApiKey`]): the caller sends the key in `x-api-key`, or in
//!   `x-functions-key` so scripts written for the Azure deployment work unchanged. The key is
//!   compared as SHA-256 digests in constant time; only the digest is kept after start-up.
//! - **Entra ID** ([`ApiAuthMode::Entra`]): the caller sends `Authorization: Bearer <access token>`.
//!   The token must be RS256, signed by a key of the tenant's JWKS (matched by `kid`), with `iss`
//!   one of the accepted issuers, `aud` one of the audiences, `exp`/`nbf` valid within the clock
//!   skew, `tid` (when present) equal to the tenant, and — when roles are configured — at least
//!   one of those app roles in `roles`.
//! - **Either** ([`ApiAuthMode::Either`]): an API-key header, when present, decides; otherwise the
//!   bearer token does.
//! - **Loopback only** ([`ApiAuthMode::LoopbackOnly`]): nothing configured and bound to a loopback
//!   address, so only local processes can connect (the same rule as the webhook without a key).
//!
//! # Settings
//!
//! | variable | meaning |
//! |---|---|
//! | `KEYGUARD_API_KEY` | the API key itself (at least 16 characters; in Azure, a Key Vault reference) |
//! | `KEYGUARD_API_KEY_FILE` | or a file holding the key (container secrets); not both |
//! | `KEYGUARD_API_TENANT_ID` | Entra tenant id (a GUID); turns bearer-token validation on |
//! | `KEYGUARD_API_AUDIENCE` | accepted `aud` values, comma-separated (app ID URI and client id); required with the tenant |
//! | `KEYGUARD_API_ISSUERS` | accepted `iss` values, comma-separated; default the tenant's v2 and v1 issuers |
//! | `KEYGUARD_API_JWKS_URL` | signing-key set; default `https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys` (override for sovereign clouds, apps with their own signing key `?appid=`, tests) |
//! | `KEYGUARD_API_ROLES` | app roles, comma-separated; a token needs at least one of them. Empty: any valid token |
//! | `KEYGUARD_API_CLOCK_SKEW_SECS` | leeway for `exp`/`nbf`, default 300, at most 3600 |
//!
//! With none of the key or tenant settings, the mode is the Functions host when
//! `FUNCTIONS_CUSTOMHANDLER_PORT` is set, loopback-only otherwise, and start-up is refused when the
//! listener is not on a loopback address.
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
//! # Signing-key cache
//!
//! The JWKS is fetched on first use and kept for [`JwksPolicy::cache_ttl`] (24 h). A token whose
//! `kid` is not in the set triggers a refetch at most once per
//! [`JwksPolicy::unknown_kid_refetch_interval`] (5 min), so a flood of tokens with invented `kid`s
//! cannot turn keyguard into a load generator against the JWKS endpoint; after a failed fetch the
//! next try waits [`JwksPolicy::failure_retry_interval`]. A stale set keeps serving the keys it has
//! while the endpoint is unreachable: Entra announces new keys weeks before signing with them.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_lc_rs::{constant_time, digest};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

pub const API_KEY_HEADER: &str = "x-api-key";
/// Accepted as well, for scripts written against the Azure deployment (the Functions key header).
pub const FUNCTIONS_KEY_HEADER: &str = "x-functions-key";
/// Shorter keys are guessable; a generated key (`openssl rand -base64 32`) is 44 characters.
pub const MIN_API_KEY_CHARS: usize = 16;
/// Entra access tokens are a few kilobytes; anything much larger is not worth parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Microsoft's JWKS is a few kilobytes; a cap keeps a misdirected URL from filling memory.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(300);
const MAX_CLOCK_SKEW_SECS: u64 = 3600;
const RETRY_AFTER_SECS: &str = "30";

/// How callers of the API are authenticated. `Debug` never shows the API key.
#[derive(Debug, Clone)]
pub enum ApiAuthMode {
    /// The Functions host checked the function key before forwarding; trust what arrives.
    FunctionsHost,
    /// Nothing configured; acceptable only because the listener is on loopback.
    LoopbackOnly,
    ApiKey(SecretString),
    Entra(EntraConfig),
    Either {
        api_key: SecretString,
        entra: EntraConfig,
    },
}

/// What an Entra ID access token must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraConfig {
    pub tenant_id: String,
    /// Accepted `aud` values, e.g. `api://keyguard` (v1 tokens) and the app's client id (v2 tokens).
    pub audiences: Vec<String>,
    pub jwks_url: Url,
    pub issuers: Vec<String>,
    /// App roles of which the token must carry at least one; empty = any valid token.
    pub required_roles: Vec<String>,
    /// Leeway for `exp` and `nbf`.
    pub clock_skew: Duration,
}

impl EntraConfig {
    /// The public-cloud defaults for `tenant_id`: v2 keys endpoint, v2 and v1 issuers, no roles.
    pub fn new(tenant_id: &str, audiences: Vec<String>) -> anyhow::Result<Self> {
        let jwks_url = format!("https://login.microsoftonline.com/{tenant_id}/discovery/v2.0/keys");
        Ok(Self {
            tenant_id: tenant_id.to_string(),
            audiences,
            jwks_url: Url::parse(&jwks_url).with_context(|| format!("tenant id {tenant_id:?} makes a bad URL"))?,
            issuers: vec![
                format!("https://login.microsoftonline.com/{tenant_id}/v2.0"),
                format!("https://sts.windows.net/{tenant_id}/"),
            ],
            required_roles: Vec::new(),
            clock_skew: DEFAULT_CLOCK_SKEW,
        })
    }
}

/// When the signing-key set is fetched again. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksPolicy {
    pub cache_ttl: Duration,
    pub unknown_kid_refetch_interval: Duration,
    pub failure_retry_interval: Duration,
    pub fetch_timeout: Duration,
}

impl Default for JwksPolicy {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(24 * 3600),
            unknown_kid_refetch_interval: Duration::from_secs(300),
            failure_retry_interval: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(10),
        }
    }
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
    Loopback,
    ApiKey,
    Entra,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::FunctionsHost => "functions-host",
            PrincipalKind::Loopback => "loopback",
            PrincipalKind::ApiKey => "api-key",
            PrincipalKind::Entra => "entra",
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
    /// Reads the settings in the module docs. `bind` is the address the API will listen on.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>, bind: IpAddr) -> anyhow::Result<Self> {
        let get = |name: &str| get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let api_key = match (get("KEYGUARD_API_KEY"), get("KEYGUARD_API_KEY_FILE")) {
            (Some(_), Some(_)) => anyhow::bail!("set KEYGUARD_API_KEY or KEYGUARD_API_KEY_FILE, not both"),
            (Some(key), None) => Some(key),
            (None, Some(path)) => Some(
                std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read KEYGUARD_API_KEY_FILE {path}"))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        if let Some(key) = &api_key
            && key.chars().count() < MIN_API_KEY_CHARS
        {
            anyhow::bail!(
                "the API key (KEYGUARD_API_KEY or KEYGUARD_API_KEY_FILE) is shorter than {MIN_API_KEY_CHARS} \
                 characters; use a random one, e.g. `openssl rand -base64 32`"
            );
        }
        let entra = match get("KEYGUARD_API_TENANT_ID") {
            Some(tenant) => Some(entra_from_lookup(&tenant, &get)?),
            None => {
                let stray = [
                    "KEYGUARD_API_AUDIENCE",
                    "KEYGUARD_API_ISSUERS",
                    "KEYGUARD_API_JWKS_URL",
                    "KEYGUARD_API_ROLES",
                ]
                .into_iter()
                .find(|name| get(name).is_some());
                if let Some(name) = stray {
                    anyhow::bail!(
                        "{name} is set but KEYGUARD_API_TENANT_ID is not: Entra ID validation needs the tenant"
                    );
                }
                None
            }
        };
        Ok(match (api_key, entra) {
            (Some(key), Some(entra)) => ApiAuthMode::Either {
                api_key: SecretString::from(key),
                entra,
            },
            (Some(key), None) => ApiAuthMode::ApiKey(SecretString::from(key)),
            (None, Some(entra)) => ApiAuthMode::Entra(entra),
            (None, None) => {
                if !bind.is_loopback() {
                    anyhow::bail!(
                        "refusing to serve the API on {bind} without KEYGUARD_API_KEY or KEYGUARD_API_TENANT_ID: \
                         anyone could call it"
                    );
                }
                if functions_runtime::HostEnv::from_lookup(get).port.is_some() {
                    ApiAuthMode::FunctionsHost
                } else {
                    ApiAuthMode::LoopbackOnly
                }
            }
        })
    }
}

fn entra_from_lookup(tenant: &str, get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<EntraConfig> {
    // Issuers and `tid` carry the GUID, so a domain name here could never match a token.
    let tenant = uuid::Uuid::parse_str(tenant)
        .map_err(|_| anyhow::anyhow!("KEYGUARD_API_TENANT_ID={tenant:?} is not a tenant id (a GUID)"))?
        .hyphenated()
        .to_string();
    let audiences = comma_list(get("KEYGUARD_API_AUDIENCE"));
    if audiences.is_empty() {
        anyhow::bail!("KEYGUARD_API_TENANT_ID needs KEYGUARD_API_AUDIENCE (the app ID URI and/or client id)");
    }
    let mut config = EntraConfig::new(&tenant, audiences)?;
    if let Some(url) = get("KEYGUARD_API_JWKS_URL") {
        config.jwks_url = checked_jwks_url(&url)?;
    }
    let issuers = comma_list(get("KEYGUARD_API_ISSUERS"));
    if !issuers.is_empty() {
        config.issuers = issuers;
    }
    config.required_roles = comma_list(get("KEYGUARD_API_ROLES"));
    if let Some(secs) = get("KEYGUARD_API_CLOCK_SKEW_SECS") {
        let secs: u64 = secs
            .parse()
            .ok()
            .filter(|s| *s <= MAX_CLOCK_SKEW_SECS)
            .with_context(|| {
                format!("KEYGUARD_API_CLOCK_SKEW_SECS={secs:?} is not 0..={MAX_CLOCK_SKEW_SECS} seconds")
            })?;
        config.clock_skew = Duration::from_secs(secs);
    }
    Ok(config)
}

/// Signing keys decide who gets in, so they are fetched over HTTPS; plain HTTP only to loopback.
fn checked_jwks_url(raw: &str) -> anyhow::Result<Url> {
    let url = Url::parse(raw).with_context(|| format!("KEYGUARD_API_JWKS_URL={raw:?} is not a URL"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => anyhow::bail!("KEYGUARD_API_JWKS_URL={raw:?} must be https (http only for a loopback host)"),
    }
}

fn comma_list(value: Option<String>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Checks each API request against the configured [`ApiAuthMode`]. Share it as `Arc<ApiAuthenticator>`.
pub struct ApiAuthenticator {
    scheme: Scheme,
}

enum Scheme {
    FunctionsHost,
    LoopbackOnly,
    Credentials {
        api_key: Option<ApiKeyDigest>,
        entra: Option<Box<EntraVerifier>>,
    },
}

impl fmt::Debug for ApiAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scheme {
            Scheme::FunctionsHost => f.write_str("ApiAuthenticator(FunctionsHost)"),
            Scheme::LoopbackOnly => f.write_str("ApiAuthenticator(LoopbackOnly)"),
            Scheme::Credentials { api_key, entra } => f
                .debug_struct("ApiAuthenticator")
                .field("api_key", &api_key.as_ref().map(|_| "<redacted>"))
                .field("entra", &entra.as_ref().map(|v| &v.config))
                .finish(),
        }
    }
}

/// Only a digest of the key is kept: comparing equal-length digests in constant time hides the
/// key's length as well as its content, and there is no plaintext key left to leak.
struct ApiKeyDigest(digest::Digest);

impl ApiKeyDigest {
    fn new(key: &SecretString) -> Self {
        Self(digest::digest(&digest::SHA256, key.expose_secret().as_bytes()))
    }

    fn matches(&self, presented: &[u8]) -> bool {
        let presented = digest::digest(&digest::SHA256, presented);
        constant_time::verify_slices_are_equal(self.0.as_ref(), presented.as_ref()).is_ok()
    }
}

impl ApiAuthenticator {
    pub fn new(mode: ApiAuthMode, http: reqwest::Client) -> Self {
        let scheme = match mode {
            ApiAuthMode::FunctionsHost => Scheme::FunctionsHost,
            ApiAuthMode::LoopbackOnly => Scheme::LoopbackOnly,
            ApiAuthMode::ApiKey(key) => Scheme::Credentials {
                api_key: Some(ApiKeyDigest::new(&key)),
                entra: None,
            },
            ApiAuthMode::Entra(config) => Scheme::Credentials {
                api_key: None,
                entra: Some(Box::new(EntraVerifier::new(config, http))),
            },
            ApiAuthMode::Either { api_key, entra } => Scheme::Credentials {
                api_key: Some(ApiKeyDigest::new(&api_key)),
                entra: Some(Box::new(EntraVerifier::new(entra, http))),
            },
        };
        Self { scheme }
    }

    /// From the process environment; `bind` is the address the API listens on (loopback under
    /// the Functions host). `http` should be the shared client (it carries `KEYGUARD_CA_BUNDLE`).
    pub fn from_env(bind: IpAddr, http: reqwest::Client) -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok(), bind, http)
    }

    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
        bind: IpAddr,
        http: reqwest::Client,
    ) -> anyhow::Result<Self> {
        Ok(Self::new(ApiAuthMode::from_lookup(get, bind)?, http))
    }

    /// Tests shorten the intervals; production keeps [`JwksPolicy::default`].
    #[cfg(test)]
    pub fn with_jwks_policy(mut self, policy: JwksPolicy) -> Self {
        if let Scheme::Credentials { entra: Some(v), .. } = &mut self.scheme {
            v.policy = policy;
        }
        self
    }

    /// A short description for the start-up log line.
    pub fn describe(&self) -> &'static str {
        match &self.scheme {
            Scheme::FunctionsHost => "functions host key",
            Scheme::LoopbackOnly => "none (loopback only)",
            Scheme::Credentials {
                api_key: Some(_),
                entra: Some(_),
            } => "API key or Entra ID token",
            Scheme::Credentials { api_key: Some(_), .. } => "API key",
            Scheme::Credentials { .. } => "Entra ID token",
        }
    }

    pub async fn authorize(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let (api_key, entra) = match &self.scheme {
            Scheme::FunctionsHost => return Ok(Principal::anonymous(PrincipalKind::FunctionsHost)),
            Scheme::LoopbackOnly => return Ok(Principal::anonymous(PrincipalKind::Loopback)),
            Scheme::Credentials { api_key, entra } => (api_key, entra),
        };
        if let Some(expected) = api_key
            && let Some(presented) = headers
                .get(API_KEY_HEADER)
                .or_else(|| headers.get(FUNCTIONS_KEY_HEADER))
        {
            return if expected.matches(presented.as_bytes()) {
                Ok(Principal::anonymous(PrincipalKind::ApiKey))
            } else {
                Err(AuthError::Rejected("wrong API key"))
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
        match &self.scheme {
            Scheme::Credentials { entra: None, .. } => "ApiKey header=\"x-api-key\"",
            _ => "Bearer",
        }
    }
}

fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// axum middleware: `.layer(axum::middleware::from_fn_with_state(auth, require_auth))`.
/// Puts the [`Principal`] in the request's extensions for the handlers (and their audit logs).
pub async fn require_auth(State(auth): State<Arc<ApiAuthenticator>>, mut req: Request, next: Next) -> Response {
    match auth.authorize(req.headers()).await {
        Ok(principal) => {
            tracing::debug!(
                kind = principal.kind.as_str(),
                subject = principal.subject.as_deref(),
                path = req.uri().path(),
                "API caller authenticated"
            );
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(error) => {
            let path = req.uri().path();
            match &error {
                AuthError::Missing => tracing::debug!(path, reason = %error, "API request refused"),
                _ => tracing::warn!(path, status = error.status().as_u16(), reason = %error, "API request refused"),
            }
            auth.rejection(&error)
        }
    }
}

/// The claims read from an Entra access token beyond those `jsonwebtoken` validates.
#[derive(Deserialize)]
struct EntraClaims {
    tid: Option<String>,
    oid: Option<String>,
    sub: Option<String>,
    azp: Option<String>,
    appid: Option<String>,
    preferred_username: Option<String>,
    name: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

struct EntraVerifier {
    config: EntraConfig,
    validation: Validation,
    http: reqwest::Client,
    policy: JwksPolicy,
    keys: RwLock<Arc<KeySet>>,
    /// Held while deciding on and performing a fetch, so concurrent misses cause one fetch.
    fetch_gate: tokio::sync::Mutex<FetchGate>,
    fetches: AtomicU64,
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

impl KeySet {
    fn is_fresh(&self, now: Instant, ttl: Duration) -> bool {
        self.fetched_at.is_some_and(|t| now.duration_since(t) < ttl)
    }
}

#[derive(Default)]
struct FetchGate {
    last_attempt: Option<Instant>,
    last_failed: bool,
}

impl EntraVerifier {
    fn new(config: EntraConfig, http: reqwest::Client) -> Self {
        // Only RS256: Entra signs access tokens with it, and a fixed list is what stops `alg: none`
        // and the HS256-keyed-with-the-public-key confusion.
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&config.issuers);
        validation.set_audience(&config.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = config.clock_skew.as_secs();
        Self {
            config,
            validation,
            http,
            policy: JwksPolicy::default(),
            keys: RwLock::new(Arc::new(KeySet::default())),
            fetch_gate: tokio::sync::Mutex::new(FetchGate::default()),
            fetches: AtomicU64::new(0),
        }
    }

    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Rejected("token too large"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Rejected("malformed token header"))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Rejected("token algorithm is not RS256"));
        }
        let kid = header.kid.ok_or(AuthError::Rejected("token header has no kid"))?;
        let key = self.key_for(&kid).await?;
        let claims = jsonwebtoken::decode::<EntraClaims>(token, &key, &self.validation)
            .map_err(|e| AuthError::Rejected(rejection_reason(e.kind())))?
            .claims;
        if let Some(tid) = &claims.tid
            && !tid.eq_ignore_ascii_case(&self.config.tenant_id)
        {
            return Err(AuthError::Rejected("token is from another tenant"));
        }
        let subject = claims.oid.or(claims.sub);
        let required = &self.config.required_roles;
        if !required.is_empty() && !claims.roles.iter().any(|r| required.contains(r)) {
            return Err(AuthError::Forbidden { subject });
        }
        Ok(Principal {
            kind: PrincipalKind::Entra,
            subject,
            name: claims.preferred_username.or(claims.name),
            client_app: claims.azp.or(claims.appid),
        })
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn fresh_key(&self, kid: &str) -> Option<DecodingKey> {
        let set = self.snapshot();
        set.is_fresh(Instant::now(), self.policy.cache_ttl)
            .then(|| set.keys.get(kid).cloned())
            .flatten()
    }

    async fn key_for(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        if let Some(key) = self.fresh_key(kid) {
            return Ok(key);
        }
        let mut gate = self.fetch_gate.lock().await;
        // Another request may have refreshed the set while this one waited for the gate.
        if let Some(key) = self.fresh_key(kid) {
            return Ok(key);
        }
        let now = Instant::now();
        let wait = if self.snapshot().is_fresh(now, self.policy.cache_ttl) {
            self.policy.unknown_kid_refetch_interval
        } else if gate.last_failed {
            self.policy.failure_retry_interval
        } else {
            Duration::ZERO
        };
        if gate.last_attempt.is_none_or(|t| now.duration_since(t) >= wait) {
            gate.last_attempt = Some(now);
            match self.fetch().await {
                Ok(keys) => {
                    gate.last_failed = false;
                    tracing::info!(keys = keys.len(), url = %self.config.jwks_url, "fetched the Entra ID signing keys");
                    let set = Arc::new(KeySet {
                        keys,
                        fetched_at: Some(Instant::now()),
                    });
                    *self.keys.write().unwrap_or_else(PoisonError::into_inner) = set;
                }
                Err(error) => {
                    gate.last_failed = true;
                    tracing::warn!(url = %self.config.jwks_url, %error, "could not fetch the Entra ID signing keys");
                }
            }
        }
        // A stale key still verifies: better than refusing everyone while the endpoint is down.
        if let Some(key) = self.snapshot().keys.get(kid) {
            return Ok(key.clone());
        }
        if gate.last_failed {
            Err(AuthError::Unavailable(
                "the signing keys (JWKS) could not be fetched".into(),
            ))
        } else {
            Err(AuthError::Rejected("token signed with an unknown key id"))
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let response = self
            .http
            .get(self.config.jwks_url.clone())
            .timeout(self.policy.fetch_timeout)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        if response.content_length().is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
            return Err("JWKS document too large".into());
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_JWKS_BYTES {
            return Err("JWKS document too large".into());
        }
        parse_jwks(&body)
    }
}

/// RSA signing keys by `kid`. Keys of other types or uses are skipped rather than failing the
/// whole set, so a key Microsoft adds in a new format does not lock everyone out.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, DecodingKey>, String> {
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let raw: RawSet = serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = HashMap::new();
    for value in raw.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
            || jwk.common.key_algorithm.is_some_and(|a| a != KeyAlgorithm::RS256)
        {
            continue;
        }
        let (Some(kid), AlgorithmParameters::RSA(rsa)) = (jwk.common.key_id, &jwk.algorithm) else {
            continue;
        };
        if let Ok(key) = DecodingKey::from_rsa_components(&rsa.n, &rsa.e) {
            keys.insert(kid, key);
        }
    }
    if keys.is_empty() {
        return Err("the JWKS holds no RSA signing key".into());
    }
    Ok(keys)
}

/// A fixed phrase per failure for the log: `jsonwebtoken`'s own errors can quote claim values.
fn rejection_reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid (nbf)",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm => "algorithm not allowed",
        ErrorKind::MissingRequiredClaim(_) => "a required claim (exp, iss, aud) is missing",
        ErrorKind::InvalidClaimFormat(_) | ErrorKind::Json(_) => "malformed claims",
        _ => "malformed token",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::LazyLock;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
    use axum::Router;
    use axum::body::Body;
    use axum::extract::Extension;
    use axum::routing::get;
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use http_body_util::BodyExt;
    use serde_json::Value;
    use tower::ServiceExt;

    use crate::test_support::lookup;

    const TENANT: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    const OTHER_TENANT: &str = "99999999-8888-7777-6666-555555555555";
    const CLIENT_ID: &str = "6e9c3a1f-2b4d-4c8e-9f0a-1b2c3d4e5f60";
    const CALLER_APP: &str = "1a2b3c4d-0000-4000-8000-000000000001";
    const OID: &str = "4d3c2b1a-1111-4222-8333-444455556666";
    const API_KEY: &str = "k3y-for-tests-only-0123456789abcdef";
    const ROLE: &str = "Keyguard.Invoke";

    struct TestKey {
        pair: KeyPair,
        kid: &'static str,
    }

    impl TestKey {
        fn generate(kid: &'static str) -> Self {
            Self {
                pair: KeyPair::generate(KeySize::Rsa2048).unwrap(),
                kid,
            }
        }

        fn jwk(&self) -> Value {
            let components = PublicKeyComponents::<Vec<u8>>::from(self.pair.public_key());
            // Shaped like an entry of login.microsoftonline.com's keys document.
            json!({
                "kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
                "n": URL_SAFE_NO_PAD.encode(&components.n), "e": URL_SAFE_NO_PAD.encode(&components.e),
            })
        }

        fn public_key_x509_der(&self) -> Vec<u8> {
            self.pair.public_key().as_der().unwrap().as_ref().to_vec()
        }

        fn sign(&self, header: &Value, claims: &Value) -> String {
            let signing_input = format!("{}.{}", b64_json(header), b64_json(claims));
            let mut signature = vec![0; self.pair.public_modulus_len()];
            self.pair
                .sign(
                    &RSA_PKCS1_SHA256,
                    &aws_lc_rs::rand::SystemRandom::new(),
                    signing_input.as_bytes(),
                    &mut signature,
                )
                .unwrap();
            format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
        }

        fn token(&self, claims: &Value) -> String {
            self.sign(&json!({"alg": "RS256", "typ": "JWT", "kid": self.kid}), claims)
        }
    }

    fn b64_json(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    /// Generated once: RSA key generation is the slow part of these tests.
    static SIGNER: LazyLock<TestKey> = LazyLock::new(|| TestKey::generate("test-kid-1"));
    static OTHER_SIGNER: LazyLock<TestKey> = LazyLock::new(|| TestKey::generate("test-kid-2"));

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    fn v2_issuer() -> String {
        format!("https://login.microsoftonline.com/{TENANT}/v2.0")
    }

    /// The claims of a v2 app-only access token Entra issues for a client credential.
    fn valid_claims() -> Value {
        json!({
            "aud": CLIENT_ID,
            "iss": v2_issuer(),
            "iat": now() - 60, "nbf": now() - 60, "exp": now() + 3600,
            "azp": CALLER_APP, "azpacr": "1",
            "oid": OID, "sub": OID, "tid": TENANT,
            "roles": [ROLE],
            "ver": "2.0",
        })
    }

    fn with(mut claims: Value, name: &str, value: Value) -> Value {
        claims[name] = value;
        claims
    }

    fn without(mut claims: Value, name: &str) -> Value {
        claims.as_object_mut().unwrap().remove(name);
        claims
    }

    struct JwksServer {
        url: Url,
        fetches: Arc<AtomicUsize>,
        document: Arc<std::sync::Mutex<Value>>,
        failing: Arc<AtomicBool>,
    }

    impl JwksServer {
        async fn start(keys: &[&TestKey]) -> Self {
            let fetches = Arc::new(AtomicUsize::new(0));
            let document = Arc::new(std::sync::Mutex::new(jwks(keys)));
            let failing = Arc::new(AtomicBool::new(false));
            let (f, d, x) = (fetches.clone(), document.clone(), failing.clone());
            let app = Router::new().route(
                "/tenant/discovery/v2.0/keys",
                get(move || async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    if x.load(Ordering::SeqCst) {
                        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                    }
                    let body = d.lock().unwrap().clone();
                    axum::Json(body).into_response()
                }),
            );
            let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            Self {
                url: Url::parse(&format!("http://{addr}/tenant/discovery/v2.0/keys")).unwrap(),
                fetches,
                document,
                failing,
            }
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }

        fn publish(&self, keys: &[&TestKey]) {
            *self.document.lock().unwrap() = jwks(keys);
        }
    }

    fn jwks(keys: &[&TestKey]) -> Value {
        json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
    }

    fn entra_config(server: &JwksServer) -> EntraConfig {
        let mut config = EntraConfig::new(TENANT, vec!["api://keyguard".into(), CLIENT_ID.into()]).unwrap();
        config.jwks_url = server.url.clone();
        config
    }

    fn entra_auth(server: &JwksServer) -> ApiAuthenticator {
        ApiAuthenticator::new(ApiAuthMode::Entra(entra_config(server)), reqwest::Client::new())
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        headers
    }

    fn header_map(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        headers
    }

    fn fetch_count(auth: &ApiAuthenticator) -> u64 {
        match &auth.scheme {
            Scheme::Credentials { entra: Some(v), .. } => v.fetches.load(Ordering::SeqCst),
            _ => panic!("not an Entra authenticator"),
        }
    }

    #[tokio::test]
    async fn a_valid_v2_token_yields_its_object_id_and_client_app() {
        let server = JwksServer::start(&[&SIGNER]).await;
        let auth = entra_auth(&server);
        let principal = auth.authorize(&bearer(&SIGNER.token(&valid_claims()))).await.unwrap();
        assert_eq!(
            principal,
            Principal {
                kind: PrincipalKind::Entra,
                subject: Some(OID.into()),
                name: None,
                client_app: Some(CALLER_APP.into()),
            }
        );
        // The key set is cached: a second token does not fetch again.
        let user_claims = with(valid_claims(), "preferred_username", json!("alice@contoso.example"));
        let principal = auth.authorize(&bearer(&SIGNER.token(&user_claims))).await.unwrap();
        assert_eq!(principal.name.as_deref(), Some("alice@contoso.example"));
        assert_eq!(server.fetches(), 1);
    }

    #[tokio::test]
    async fn a_v1_token_with_the_app_id_uri_audience_is_accepted() {
        let server = JwksServer::start(&[&SIGNER]).await;
        let auth = entra_auth(&server);
        let claims = json!({
            "aud": "api://keyguard",
            "iss": format!("https://sts.windows.net/{TENANT}/"),
            "iat": now() - 60, "nbf": now() - 60, "exp": now() + 3600,
            "appid": CALLER_APP, "appidacr": "1", "oid": OID, "tid": TENANT, "ver": "1.0",
        });
        let principal = auth.authorize(&bearer(&SIGNER.token(&claims))).await.unwrap();
        assert_eq!(principal.client_app.as_deref(), Some(CALLER_APP));
        assert_eq!(principal.subject.as_deref(), Some(OID));
    }

    /// Every way a bearer token can be wrong ends in 401, each for the reason logged.
    #[tokio::test]
    async fn bad_tokens_are_rejected_with_401() {
        let server = JwksServer::start(&[&SIGNER]).await;
        let auth = entra_auth(&server);
        let valid = valid_claims();
        let header_of = |alg: &str| json!({"alg": alg, "typ": "JWT", "kid": SIGNER.kid});
        let unsigned = format!("{}.{}.", b64_json(&header_of("none")), b64_json(&valid));
        let hs256_with = |secret: &[u8]| {
            jsonwebtoken::encode(
                &jsonwebtoken::Header {
                    kid: Some(SIGNER.kid.into()),
                    ..jsonwebtoken::Header::new(Algorithm::HS256)
                },
                &valid,
                &jsonwebtoken::EncodingKey::from_secret(secret),
            )
            .unwrap()
        };
        let public_der = SIGNER.public_key_x509_der();
        let public_pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(&public_der)
        );
        // Another key's signature under the trusted key's kid.
        let forged = OTHER_SIGNER.sign(&header_of("RS256"), &valid);
        let good = SIGNER.token(&valid);
        let (head_and_claims, _) = good.rsplit_once('.').unwrap();
        let tampered_claims = format!(
            "{}.{}.{}",
            good.split('.').next().unwrap(),
            b64_json(&with(valid.clone(), "oid", json!("someone-else"))),
            good.rsplit('.').next().unwrap()
        );
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "wrong audience",
                SIGNER.token(&with(valid.clone(), "aud", json!("api://other"))),
                "wrong audience",
            ),
            (
                "wrong issuer",
                SIGNER.token(&with(
                    valid.clone(),
                    "iss",
                    json!(format!("https://login.microsoftonline.com/{OTHER_TENANT}/v2.0")),
                )),
                "wrong issuer",
            ),
            (
                "expired beyond the skew",
                SIGNER.token(&with(valid.clone(), "exp", json!(now() - 301 - 5))),
                "token expired",
            ),
            (
                "not yet valid beyond the skew",
                SIGNER.token(&with(valid.clone(), "nbf", json!(now() + 301 + 5))),
                "token not yet valid (nbf)",
            ),
            (
                "other tenant",
                SIGNER.token(&with(valid.clone(), "tid", json!(OTHER_TENANT))),
                "token is from another tenant",
            ),
            (
                "no exp",
                SIGNER.token(&without(valid.clone(), "exp")),
                "a required claim (exp, iss, aud) is missing",
            ),
            ("signed by another key", forged, "bad signature"),
            ("claims changed after signing", tampered_claims, "bad signature"),
            ("signature stripped", format!("{head_and_claims}."), "bad signature"),
            ("alg none", unsigned, "malformed token header"),
            (
                "HS256 keyed with the public key (DER)",
                hs256_with(&public_der),
                "token algorithm is not RS256",
            ),
            (
                "HS256 keyed with the public key (PEM)",
                hs256_with(public_pem.as_bytes()),
                "token algorithm is not RS256",
            ),
            (
                "no kid",
                SIGNER.sign(&json!({"alg": "RS256", "typ": "JWT"}), &valid),
                "token header has no kid",
            ),
            ("garbage", "not-a-jwt".into(), "malformed token header"),
            ("three garbage parts", "a.b.c".into(), "malformed token header"),
        ];
        for (what, token, reason) in cases {
            let err = auth.authorize(&bearer(&token)).await.unwrap_err();
            assert_eq!(err, AuthError::Rejected(reason), "{what}");
            assert_eq!(err.status(), StatusCode::UNAUTHORIZED, "{what}");
        }
        // None of those needed another look at the key set.
        assert_eq!(server.fetches(), 1);
    }

    #[tokio::test]
    async fn the_clock_skew_tolerates_small_drift_only() {
        let server = JwksServer::start(&[&SIGNER]).await;
        let auth = entra_auth(&server);
        let just_expired = with(valid_claims(), "exp", json!(now() - 60));
        let almost_valid = with(valid_claims(), "nbf", json!(now() + 60));
        assert!(auth.authorize(&bearer(&SIGNER.token(&just_expired))).await.is_ok());
        assert!(auth.authorize(&bearer(&SIGNER.token(&almost_valid))).await.is_ok());
        let mut strict = entra_config(&server);
        strict.clock_skew = Duration::ZERO;
        let strict = ApiAuthenticator::new(ApiAuthMode::Entra(strict), reqwest::Client::new());
        assert_eq!(
            strict.authorize(&bearer(&SIGNER.token(&just_expired))).await,
            Err(AuthError::Rejected("token expired"))
        );
    }

    #[tokio::test]
    async fn missing_or_non_bearer_credentials_are_rejected() {
        let server = JwksServer::start(&[&SIGNER]).await;
        let auth = entra_auth(&server);
        assert_eq!(auth.authorize(&HeaderMap::new()).await, Err(AuthError::Missing));
        let basic = header_map("authorization", "Basic dXNlcjpwYXNz");
        assert_eq!(
            auth.authorize(&basic).await,
            Err(AuthError::Rejected("Authorization is not a bearer token"))
        );
        let empty = header_map("authorization", "Bearer   ");
        assert!(matches!(auth.authorize(&empty).await, Err(AuthError::Rejected(_))));
        // An API key means nothing to an Entra-only authenticator.
        let key = header_map(API_KEY_HEADER, API_KEY);
        assert_eq!(auth.authorize(&key).await, Err(AuthError::Missing));
        // The scheme name is case-insensitive (RFC 9110).
        let lower = header_map("authorization", &format!("bearer {}", SIGNER.token(&valid_claims())));
        assert!(auth.authorize(&lower).await.is_ok());
        assert_eq!(server.fetches(), 1);
    }

    #[tokio::test]
    async fn unknown_kids_refetch_at_most_once_per_interval() {
        let server = JwksServer::start(&[&SIGNER]).await;
        let auth = entra_auth(&server).with_jwks_policy(JwksPolicy {
            unknown_kid_refetch_interval: Duration::from_millis(400),
            ..JwksPolicy::default()
        });
        assert!(auth.authorize(&bearer(&SIGNER.token(&valid_claims()))).await.is_ok());
        assert_eq!(server.fetches(), 1);
        // A flood of invented kids right after the fetch: no request reaches the JWKS endpoint.
        for i in 0..50 {
            let kid = format!("bogus-{i}");
            let token = SIGNER.sign(&json!({"alg": "RS256", "kid": kid}), &valid_claims());
            assert_eq!(
                auth.authorize(&bearer(&token)).await,
                Err(AuthError::Rejected("token signed with an unknown key id"))
            );
        }
        assert_eq!(server.fetches(), 1);
        assert_eq!(fetch_count(&auth), 1);
        // Once the interval has passed, the flood costs exactly one more fetch.
        tokio::time::sleep(Duration::from_millis(450)).await;
        for i in 0..50 {
            let token = SIGNER.sign(&json!({"alg": "RS256", "kid": format!("bogus-{i}")}), &valid_claims());
            assert!(auth.authorize(&bearer(&token)).await.is_err());
        }
        assert_eq!(server.fetches(), 2);
        // Known keys keep working throughout.
        assert!(auth.authorize(&bearer(&SIGNER.token(&valid_claims()))).await.is_ok());
        assert_eq!(server.fetches(), 2);
    }

    #[tokio::test]
    async fn a_rotated_key_is_picked_up_by_a_refetch() {
        let server = JwksServer::start(&[&SIGNER]).await;
        let auth = entra_auth(&server).with_jwks_policy(JwksPolicy {
            unknown_kid_refetch_interval: Duration::from_millis(200),
            ..JwksPolicy::default()
        });
        assert!(auth.authorize(&bearer(&SIGNER.token(&valid_claims()))).await.is_ok());
        server.publish(&[&SIGNER, &OTHER_SIGNER]);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let principal = auth.authorize(&bearer(&OTHER_SIGNER.token(&valid_claims()))).await;
        assert_eq!(principal.map(|p| p.subject), Ok(Some(OID.into())));
        assert_eq!(server.fetches(), 2);
    }

    #[tokio::test]
    async fn concurrent_first_requests_share_one_fetch() {
        let server = JwksServer::start(&[&SIGNER]).await;
        let auth = Arc::new(entra_auth(&server));
        let token = SIGNER.token(&valid_claims());
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (auth, headers) = (auth.clone(), bearer(&token));
                tokio::spawn(async move { auth.authorize(&headers).await })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().is_ok());
        }
        assert_eq!(server.fetches(), 1);
    }

    #[tokio::test]
    async fn an_unreachable_jwks_means_503_retried_after_a_pause_and_stale_keys_still_serve() {
        let server = JwksServer::start(&[&SIGNER]).await;
        server.failing.store(true, Ordering::SeqCst);
        let auth = entra_auth(&server).with_jwks_policy(JwksPolicy {
            failure_retry_interval: Duration::from_millis(300),
            cache_ttl: Duration::from_millis(600),
            ..JwksPolicy::default()
        });
        let token = SIGNER.token(&valid_claims());
        let err = auth.authorize(&bearer(&token)).await.unwrap_err();
        assert!(matches!(err, AuthError::Unavailable(_)), "{err:?}");
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        // Within the retry interval nobody hammers the failing endpoint.
        for _ in 0..10 {
            assert!(matches!(
                auth.authorize(&bearer(&token)).await,
                Err(AuthError::Unavailable(_))
            ));
        }
        assert_eq!(server.fetches(), 1);
        server.failing.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(auth.authorize(&bearer(&token)).await.is_ok());
        assert_eq!(server.fetches(), 2);
        // The cache goes stale while the endpoint is down again: the known key keeps working.
        server.failing.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(650)).await;
        assert!(auth.authorize(&bearer(&token)).await.is_ok());
        assert_eq!(server.fetches(), 3);
    }

    #[tokio::test]
    async fn a_jwks_without_usable_keys_is_a_failed_fetch() {
        let server = JwksServer::start(&[]).await;
        *server.document.lock().unwrap() = json!({"keys": [
            {"kty": "EC", "use": "sig", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "use": "enc", "kid": SIGNER.kid, "n": SIGNER.jwk()["n"], "e": "AQAB"},
            {"kty": "RSA", "use": "sig"},
        ]});
        let auth = entra_auth(&server);
        let err = auth
            .authorize(&bearer(&SIGNER.token(&valid_claims())))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::Unavailable(_)), "{err:?}");
    }

    #[test]
    fn jwks_parsing_keeps_rsa_signing_keys_and_skips_the_rest() {
        let body = json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "use": "enc", "kid": "encryption", "n": SIGNER.jwk()["n"], "e": "AQAB"},
            {"kty": "RSA", "kid": "future", "n": 42},
            SIGNER.jwk(),
            OTHER_SIGNER.jwk(),
        ]});
        let keys = parse_jwks(&serde_json::to_vec(&body).unwrap()).unwrap();
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, vec!["test-kid-1", "test-kid-2"]);
        assert!(parse_jwks(b"<html>").is_err());
        assert!(parse_jwks(br#"{"keys": []}"#).is_err());
    }

    #[tokio::test]
    async fn a_token_without_a_required_role_gets_403() {
        let server = JwksServer::start(&[&SIGNER]).await;
        let mut config = entra_config(&server);
        config.required_roles = vec!["Keyguard.Admin".into(), ROLE.into()];
        let auth = ApiAuthenticator::new(ApiAuthMode::Entra(config), reqwest::Client::new());
        assert!(auth.authorize(&bearer(&SIGNER.token(&valid_claims()))).await.is_ok());
        let other_role = with(valid_claims(), "roles", json!(["Keyguard.Reader"]));
        let err = auth.authorize(&bearer(&SIGNER.token(&other_role))).await.unwrap_err();
        assert_eq!(
            err,
            AuthError::Forbidden {
                subject: Some(OID.into())
            }
        );
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        let no_roles = without(valid_claims(), "roles");
        let err = auth.authorize(&bearer(&SIGNER.token(&no_roles))).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        // The role check comes after validation: an expired token without the role is a 401.
        let expired = with(no_roles, "exp", json!(now() - 3600));
        let err = auth.authorize(&bearer(&SIGNER.token(&expired))).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    }

    fn api_key_auth() -> ApiAuthenticator {
        ApiAuthenticator::new(ApiAuthMode::ApiKey(SecretString::from(API_KEY)), reqwest::Client::new())
    }

    #[tokio::test]
    async fn the_api_key_is_accepted_in_either_header_and_nothing_else() {
        let auth = api_key_auth();
        for name in [API_KEY_HEADER, FUNCTIONS_KEY_HEADER] {
            let principal = auth.authorize(&header_map(name, API_KEY)).await.unwrap();
            assert_eq!(principal.kind, PrincipalKind::ApiKey, "{name}");
        }
        for wrong in [
            "k3y-for-tests-only-0123456789abcdeF",
            "k3y-for-tests-only-0123456789abcde",
            "",
            "x",
        ] {
            assert_eq!(
                auth.authorize(&header_map(API_KEY_HEADER, wrong)).await,
                Err(AuthError::Rejected("wrong API key")),
                "{wrong:?}"
            );
        }
        assert_eq!(auth.authorize(&HeaderMap::new()).await, Err(AuthError::Missing));
        // A bearer token means nothing to a key-only authenticator.
        assert_eq!(
            auth.authorize(&bearer(&SIGNER.token(&valid_claims()))).await,
            Err(AuthError::Missing)
        );
        // x-api-key decides when both headers are sent.
        let mut both = header_map(API_KEY_HEADER, "wrong-key-wrong-key");
        both.insert(FUNCTIONS_KEY_HEADER, API_KEY.parse().unwrap());
        assert!(auth.authorize(&both).await.is_err());
    }

    #[tokio::test]
    async fn either_mode_takes_a_key_or_a_token() {
        let server = JwksServer::start(&[&SIGNER]).await;
        let auth = ApiAuthenticator::new(
            ApiAuthMode::Either {
                api_key: SecretString::from(API_KEY),
                entra: entra_config(&server),
            },
            reqwest::Client::new(),
        );
        let by_key = auth.authorize(&header_map(API_KEY_HEADER, API_KEY)).await.unwrap();
        assert_eq!(by_key.kind, PrincipalKind::ApiKey);
        let by_token = auth.authorize(&bearer(&SIGNER.token(&valid_claims()))).await.unwrap();
        assert_eq!(by_token.kind, PrincipalKind::Entra);
        let mut wrong_key_good_token = bearer(&SIGNER.token(&valid_claims()));
        wrong_key_good_token.insert(API_KEY_HEADER, "not-the-key-not-the-key".parse().unwrap());
        assert_eq!(
            auth.authorize(&wrong_key_good_token).await,
            Err(AuthError::Rejected("wrong API key"))
        );
        assert_eq!(auth.authorize(&HeaderMap::new()).await, Err(AuthError::Missing));
    }

    #[tokio::test]
    async fn trusted_modes_let_every_request_through() {
        for (mode, kind) in [
            (ApiAuthMode::FunctionsHost, PrincipalKind::FunctionsHost),
            (ApiAuthMode::LoopbackOnly, PrincipalKind::Loopback),
        ] {
            let auth = ApiAuthenticator::new(mode, reqwest::Client::new());
            assert_eq!(auth.authorize(&HeaderMap::new()).await.unwrap().kind, kind);
        }
    }

    #[test]
    fn debug_output_never_shows_the_api_key() {
        let mode = ApiAuthMode::Either {
            api_key: SecretString::from(API_KEY),
            entra: EntraConfig::new(TENANT, vec![CLIENT_ID.into()]).unwrap(),
        };
        let mode_debug = format!("{mode:?}");
        let auth_debug = format!("{:?}", ApiAuthenticator::new(mode, reqwest::Client::new()));
        for text in [&mode_debug, &auth_debug] {
            assert!(!text.contains(API_KEY), "{text}");
            assert!(text.contains(TENANT), "the rest stays visible: {text}");
        }
        assert!(auth_debug.contains("<redacted>"), "{auth_debug}");
    }

    // --- the middleware, through a router ---

    async fn whoami(Extension(principal): Extension<Principal>) -> axum::Json<Principal> {
        axum::Json(principal)
    }

    fn router(auth: ApiAuthenticator) -> Router {
        let auth = Arc::new(auth);
        Router::new()
            .route("/api/whoami", get(whoami))
            .layer(axum::middleware::from_fn_with_state(auth, require_auth))
    }

    async fn call(app: &Router, headers: HeaderMap) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::builder().uri("/api/whoami").body(Body::empty()).unwrap();
        *request.headers_mut() = headers;
        let response = app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn the_middleware_answers_every_401_alike_and_leaks_nothing() {
        let server = JwksServer::start(&[&SIGNER]).await;
        let app = router(entra_auth(&server));
        let expired = SIGNER.token(&with(valid_claims(), "exp", json!(now() - 3600)));
        let forged = OTHER_SIGNER.sign(
            &json!({"alg": "RS256", "typ": "JWT", "kid": SIGNER.kid}),
            &valid_claims(),
        );
        let wrong_audience = SIGNER.token(&with(valid_claims(), "aud", json!("api://other")));
        let mut bodies = Vec::new();
        for (what, headers, token) in [
            ("no header", HeaderMap::new(), String::new()),
            ("expired", bearer(&expired), expired.clone()),
            ("bad signature", bearer(&forged), forged.clone()),
            ("wrong audience", bearer(&wrong_audience), wrong_audience.clone()),
            ("garbage", bearer("garbage"), "garbage".into()),
        ] {
            let (status, headers, body) = call(&app, headers).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
            assert_eq!(
                serde_json::from_str::<Value>(&body).unwrap(),
                json!({"error": {"code": "Unauthorized", "message": "authentication required"}}),
                "{what}"
            );
            assert_eq!(headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer", "{what}");
            let all_headers = format!("{headers:?}").to_lowercase();
            for detail in ["expired", "signature", "audience", "issuer", "kid", "malformed"] {
                assert!(!body.to_lowercase().contains(detail), "{what}: {body}");
                assert!(!all_headers.contains(detail), "{what}: {all_headers}");
            }
            if !token.is_empty() {
                let signature = token.rsplit('.').next().unwrap();
                assert!(!body.contains(signature) && !all_headers.contains(&signature.to_lowercase()));
            }
            bodies.push(body);
        }
        assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    }

    #[tokio::test]
    async fn the_middleware_passes_the_principal_on_and_maps_403_and_503() {
        let server = JwksServer::start(&[&SIGNER]).await;
        let mut config = entra_config(&server);
        config.required_roles = vec![ROLE.into()];
        let app = router(ApiAuthenticator::new(
            ApiAuthMode::Entra(config),
            reqwest::Client::new(),
        ));

        let (status, _, body) = call(&app, bearer(&SIGNER.token(&valid_claims()))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"kind": "entra", "subject": OID, "name": null, "clientApp": CALLER_APP})
        );

        let no_role = SIGNER.token(&with(valid_claims(), "roles", json!(["Other"])));
        let (status, headers, body) = call(&app, bearer(&no_role)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
            json!("Forbidden")
        );
        assert!(!body.contains(ROLE), "the required role is not disclosed: {body}");
        assert!(headers.get(header::WWW_AUTHENTICATE).is_none());

        let down = JwksServer::start(&[&SIGNER]).await;
        down.failing.store(true, Ordering::SeqCst);
        let app = router(entra_auth(&down));
        let (status, headers, body) = call(&app, bearer(&SIGNER.token(&valid_claims()))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), RETRY_AFTER_SECS);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
            json!("AuthenticationUnavailable")
        );
        assert!(!body.contains(down.url.as_str()));
    }

    #[tokio::test]
    async fn the_middleware_with_an_api_key() {
        let app = router(api_key_auth());
        let (status, _, body) = call(&app, header_map(API_KEY_HEADER, API_KEY)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["kind"], json!("api-key"));
        let (status, headers, body) = call(&app, header_map(API_KEY_HEADER, "wrong-wrong-wrong-wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            headers.get(header::WWW_AUTHENTICATE).unwrap(),
            "ApiKey header=\"x-api-key\""
        );
        assert!(!body.contains("wrong"), "{body}");
        let (status, _, _) = call(&app, HeaderMap::new()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    /// The reason for a refusal is in the log, for the operator; the token is not.
    #[tokio::test]
    async fn refusals_are_logged_with_the_reason_and_without_the_token() {
        #[derive(Clone, Default)]
        struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let server = JwksServer::start(&[&SIGNER]).await;
        let app = router(entra_auth(&server));
        let expired = SIGNER.token(&with(valid_claims(), "exp", json!(now() - 3600)));
        let (status, _, _) = call(&app, bearer(&expired)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let app = router(api_key_auth());
        let wrong_key = "a-wrong-key-that-must-not-be-logged";
        let (status, _, _) = call(&app, header_map(API_KEY_HEADER, wrong_key)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("token expired"), "{log}");
        assert!(log.contains("wrong API key"), "{log}");
        for (i, part) in expired.split('.').enumerate() {
            assert!(!log.contains(part), "token part {i} logged: {log}");
        }
        assert!(!log.contains(wrong_key), "{log}");
    }

    // --- settings ---

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

    fn mode(pairs: &[(&str, &str)], bind: IpAddr) -> anyhow::Result<ApiAuthMode> {
        ApiAuthMode::from_lookup(lookup(pairs), bind)
    }

    fn error_of(pairs: &[(&str, &str)], bind: IpAddr) -> String {
        format!("{:#}", mode(pairs, bind).unwrap_err())
    }

    #[test]
    fn without_settings_the_host_or_loopback_decides_and_a_public_bind_is_refused() {
        assert!(matches!(
            mode(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "7071")], LOOPBACK),
            Ok(ApiAuthMode::FunctionsHost)
        ));
        assert!(matches!(mode(&[], LOOPBACK), Ok(ApiAuthMode::LoopbackOnly)));
        let err = error_of(&[], ANY);
        assert!(err.contains("KEYGUARD_API_KEY") && err.contains("0.0.0.0"), "{err}");
        // The host's key only protects what the host forwards; a public listener needs its own.
        let err = error_of(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "7071")], ANY);
        assert!(err.contains("refusing"), "{err}");
        assert!(matches!(
            mode(&[("KEYGUARD_API_KEY", API_KEY)], ANY),
            Ok(ApiAuthMode::ApiKey(_))
        ));
    }

    #[test]
    fn configured_credentials_win_over_the_functions_host() {
        let m = mode(
            &[
                ("FUNCTIONS_CUSTOMHANDLER_PORT", "7071"),
                ("KEYGUARD_API_KEY", API_KEY),
                ("KEYGUARD_API_TENANT_ID", TENANT),
                ("KEYGUARD_API_AUDIENCE", "api://keyguard"),
            ],
            LOOPBACK,
        )
        .unwrap();
        let ApiAuthMode::Either { api_key, entra } = m else {
            panic!("expected Either, got {m:?}")
        };
        assert_eq!(api_key.expose_secret(), API_KEY);
        assert_eq!(entra.tenant_id, TENANT);
    }

    #[test]
    fn entra_settings_have_public_cloud_defaults_and_overrides() {
        let Ok(ApiAuthMode::Entra(config)) = mode(
            &[
                ("KEYGUARD_API_TENANT_ID", &TENANT.to_uppercase()),
                (
                    "KEYGUARD_API_AUDIENCE",
                    " api://keyguard , 6e9c3a1f-2b4d-4c8e-9f0a-1b2c3d4e5f60 ,",
                ),
            ],
            ANY,
        ) else {
            panic!("expected Entra")
        };
        assert_eq!(
            config.tenant_id, TENANT,
            "normalised to the lower-case GUID of issuers and tid"
        );
        assert_eq!(config.audiences, vec!["api://keyguard", CLIENT_ID]);
        assert_eq!(
            config.jwks_url.as_str(),
            format!("https://login.microsoftonline.com/{TENANT}/discovery/v2.0/keys")
        );
        assert_eq!(
            config.issuers,
            vec![
                format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
                format!("https://sts.windows.net/{TENANT}/"),
            ]
        );
        assert!(config.required_roles.is_empty());
        assert_eq!(config.clock_skew, Duration::from_secs(300));

        let Ok(ApiAuthMode::Entra(config)) = mode(
            &[
                ("KEYGUARD_API_TENANT_ID", TENANT),
                ("KEYGUARD_API_AUDIENCE", "api://keyguard"),
                (
                    "KEYGUARD_API_JWKS_URL",
                    "https://login.microsoftonline.us/t/discovery/v2.0/keys",
                ),
                ("KEYGUARD_API_ISSUERS", "https://login.microsoftonline.us/t/v2.0"),
                ("KEYGUARD_API_ROLES", "Keyguard.Invoke,Keyguard.Admin"),
                ("KEYGUARD_API_CLOCK_SKEW_SECS", "60"),
            ],
            ANY,
        ) else {
            panic!("expected Entra")
        };
        assert_eq!(config.jwks_url.host_str(), Some("login.microsoftonline.us"));
        assert_eq!(config.issuers, vec!["https://login.microsoftonline.us/t/v2.0"]);
        assert_eq!(config.required_roles, vec!["Keyguard.Invoke", "Keyguard.Admin"]);
        assert_eq!(config.clock_skew, Duration::from_secs(60));
    }

    #[test]
    fn bad_settings_are_named_and_never_echo_the_key() {
        let tenant = ("KEYGUARD_API_TENANT_ID", TENANT);
        let audience = ("KEYGUARD_API_AUDIENCE", "api://keyguard");
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                vec![("KEYGUARD_API_TENANT_ID", "contoso.onmicrosoft.com")],
                "KEYGUARD_API_TENANT_ID",
            ),
            (vec![tenant], "KEYGUARD_API_AUDIENCE"),
            (vec![audience], "KEYGUARD_API_TENANT_ID"),
            (vec![("KEYGUARD_API_ROLES", "x")], "KEYGUARD_API_TENANT_ID"),
            (
                vec![tenant, audience, ("KEYGUARD_API_JWKS_URL", "http://keys.example/jwks")],
                "must be https",
            ),
            (
                vec![tenant, audience, ("KEYGUARD_API_JWKS_URL", "not a url")],
                "KEYGUARD_API_JWKS_URL",
            ),
            (
                vec![tenant, audience, ("KEYGUARD_API_CLOCK_SKEW_SECS", "86400")],
                "KEYGUARD_API_CLOCK_SKEW_SECS",
            ),
            (vec![("KEYGUARD_API_KEY", "short-k3y")], "shorter than 16"),
            (
                vec![("KEYGUARD_API_KEY", API_KEY), ("KEYGUARD_API_KEY_FILE", "/k")],
                "not both",
            ),
            (
                vec![("KEYGUARD_API_KEY_FILE", "/nonexistent/api-key")],
                "/nonexistent/api-key",
            ),
        ];
        for (pairs, expected) in cases {
            let err = error_of(&pairs, ANY);
            assert!(err.contains(expected), "{pairs:?}: {err}");
            assert!(!err.contains("short-k3y") && !err.contains(API_KEY), "{err}");
        }
        assert!(
            mode(
                &[
                    tenant,
                    audience,
                    ("KEYGUARD_API_JWKS_URL", "http://127.0.0.1:8080/keys")
                ],
                ANY
            )
            .is_ok()
        );
    }

    #[test]
    fn the_key_can_come_from_a_file() {
        let dir = std::env::temp_dir().join(format!("keyguard-api-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api-key");
        std::fs::write(&path, format!("{API_KEY}\n")).unwrap();
        let m = mode(&[("KEYGUARD_API_KEY_FILE", path.to_str().unwrap())], ANY);
        std::fs::remove_dir_all(&dir).unwrap();
        let Ok(ApiAuthMode::ApiKey(key)) = m else {
            panic!("expected ApiKey")
        };
        assert_eq!(key.expose_secret(), API_KEY, "the trailing newline is trimmed");
    }

    #[test]
    fn from_lookup_builds_a_working_authenticator() {
        let auth = ApiAuthenticator::from_lookup(
            lookup(&[("KEYGUARD_API_KEY", API_KEY)]),
            LOOPBACK,
            reqwest::Client::new(),
        )
        .unwrap();
        assert_eq!(auth.describe(), "API key");
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let principal = runtime.block_on(auth.authorize(&header_map(FUNCTIONS_KEY_HEADER, API_KEY)));
        assert_eq!(principal.map(|p| p.kind), Ok(PrincipalKind::ApiKey));
    }
}
