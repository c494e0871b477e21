//! Entra ID access tokens: what a token must satisfy ([`EntraConfig`]), and the verifier that
//! checks its signature against the tenant's signing keys (JWKS), cached as the parent module's
//! docs describe. Used for the API's callers and for Event Grid's deliveries alike.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use url::Url;

use super::{AuthError, Principal, PrincipalKind};

/// Entra access tokens are a few kilobytes; anything much larger is not worth parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Microsoft's JWKS is a few kilobytes; a cap keeps a misdirected URL from filling memory.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(300);
const MAX_CLOCK_SKEW_SECS: u64 = 3600;

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

/// The Entra settings under `prefix` (`{prefix}_TENANT_ID`, `{prefix}_AUDIENCE`, ...; see the
/// parent module's docs), or `None` when none is set. `get` already trims and drops empty values.
pub(super) fn from_lookup(prefix: &str, get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<EntraConfig>> {
    let var = |suffix: &str| format!("{prefix}_{suffix}");
    let (tenant_var, audience_var) = (var("TENANT_ID"), var("AUDIENCE"));
    let Some(tenant) = get(&tenant_var) else {
        let stray = ["AUDIENCE", "ISSUERS", "JWKS_URL", "ROLES", "CLOCK_SKEW_SECS"]
            .into_iter()
            .map(var)
            .find(|name| get(name).is_some());
        if let Some(name) = stray {
            anyhow::bail!("{name} is set but {tenant_var} is not: Entra ID validation needs the tenant");
        }
        return Ok(None);
    };
    // Issuers and `tid` carry the GUID, so a domain name here could never match a token.
    let tenant = uuid::Uuid::parse_str(&tenant)
        .map_err(|_| anyhow::anyhow!("{tenant_var}={tenant:?} is not a tenant id (a GUID)"))?
        .hyphenated()
        .to_string();
    let audiences = comma_list(get(&audience_var));
    if audiences.is_empty() {
        anyhow::bail!("{tenant_var} needs {audience_var} (the app ID URI and/or client id)");
    }
    let mut config = EntraConfig::new(&tenant, audiences)?;
    let jwks_var = var("JWKS_URL");
    if let Some(url) = get(&jwks_var) {
        config.jwks_url = checked_jwks_url(&jwks_var, &url)?;
    }
    let issuers = comma_list(get(&var("ISSUERS")));
    if !issuers.is_empty() {
        config.issuers = issuers;
    }
    config.required_roles = comma_list(get(&var("ROLES")));
    let skew_var = var("CLOCK_SKEW_SECS");
    if let Some(secs) = get(&skew_var) {
        let secs: u64 = secs
            .parse()
            .ok()
            .filter(|s| *s <= MAX_CLOCK_SKEW_SECS)
            .with_context(|| format!("{skew_var}={secs:?} is not 0..={MAX_CLOCK_SKEW_SECS} seconds"))?;
        config.clock_skew = Duration::from_secs(secs);
    }
    Ok(Some(config))
}

/// Signing keys decide who gets in, so they are fetched over HTTPS; plain HTTP only to loopback.
fn checked_jwks_url(name: &str, raw: &str) -> anyhow::Result<Url> {
    let url = Url::parse(raw).with_context(|| format!("{name}={raw:?} is not a URL"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => anyhow::bail!("{name}={raw:?} must be https (http only for a loopback host)"),
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

/// Verifies bearer tokens against one [`EntraConfig`], with its own signing-key cache.
pub(super) struct EntraVerifier {
    config: EntraConfig,
    validation: Validation,
    http: reqwest::Client,
    pub(super) policy: JwksPolicy,
    keys: RwLock<Arc<KeySet>>,
    /// Held while deciding on and performing a fetch, so concurrent misses cause one fetch.
    fetch_gate: tokio::sync::Mutex<FetchGate>,
    pub(super) fetches: AtomicU64,
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
    pub(super) fn new(config: EntraConfig, http: reqwest::Client) -> Self {
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

    pub(super) fn config(&self) -> &EntraConfig {
        &self.config
    }

    pub(super) async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
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

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, JwksError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let response = self
            .http
            .get(self.config.jwks_url.clone())
            .timeout(self.policy.fetch_timeout)
            .send()
            .await
            .map_err(JwksError::Request)?;
        let status = response.status();
        if !status.is_success() {
            return Err(JwksError::Status(status));
        }
        if response.content_length().is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
            return Err(JwksError::TooLarge);
        }
        let body = response.bytes().await.map_err(JwksError::Request)?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        parse_jwks(&body)
    }
}

/// Why the signing keys could not be had: logged, never shown to a caller.
#[derive(Debug, thiserror::Error)]
pub(super) enum JwksError {
    #[error("{0}")]
    Request(reqwest::Error),
    #[error("HTTP {0}")]
    Status(reqwest::StatusCode),
    #[error("JWKS document too large")]
    TooLarge,
    #[error("not a JWKS document: {0}")]
    NotJwks(serde_json::Error),
    #[error("the JWKS holds no RSA signing key")]
    NoSigningKey,
}

/// RSA signing keys by `kid`. Keys of other types or uses are skipped rather than failing the
/// whole set, so a key Microsoft adds in a new format does not lock everyone out.
pub(super) fn parse_jwks(body: &[u8]) -> Result<HashMap<String, DecodingKey>, JwksError> {
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let raw: RawSet = serde_json::from_slice(body).map_err(JwksError::NotJwks)?;
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
        return Err(JwksError::NoSigningKey);
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
