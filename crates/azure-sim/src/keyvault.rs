//! Key Vault data plane, the one call keyguard makes before pointing a resource at a key:
//! `GET /keyvault/{vault-host}/keys/{name}[/{version}]?api-version=7.x` returning the key
//! bundle (`{"key": {kid, kty, key_ops, n, e}, "attributes": {enabled, exp?, created, updated,
//! recoveryLevel, recoverableDays?}}`).
//!
//! **Permissive unless seeded.** A vault nobody seeded keys into answers for *any* key name as
//! an enabled RSA key without expiry, recovery level `Recoverable` (soft delete + purge
//! protection), version derived deterministically from vault and name (the same version storage
//! accounts report in `currentVersionedKeyIdentifier`). As soon as one key is seeded into a vault
//! (`POST /_sim/keys` or [`Sim::seed_keys`]), that vault holds exactly the seeded keys: anything
//! else is 404 `KeyNotFound`. Existing tests and demos that never seed keys keep working.
//!
//! Authentication: a Bearer token whose `aud` is `https://vault.azure.net` (with or without the
//! trailing slash); otherwise 401 with Key Vault's `WWW-Authenticate` challenge, which the Azure
//! SDKs' challenge policy relies on.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Sim;
use crate::faults::PrincipalOid;
use crate::identity::decode_token;
use crate::util::{fnv1a, lock, now_unix};

/// Audience Key Vault accepts.
pub const VAULT_AUDIENCE: &str = "https://vault.azure.net";

/// A key to seed, as posted to `/_sim/keys`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KeySpec {
    /// Vault URI (`https://kv-approved.vault.azure.net`) or bare host.
    pub vault: String,
    pub name: String,
    /// Defaults to a deterministic 32-hex version; a new version becomes the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<i64>,
    /// `Recoverable` (default: soft delete + purge protection), `Recoverable+Purgeable`,
    /// `CustomizedRecoverable`, `CustomizedRecoverable+Purgeable`, `Purgeable`, ...
    #[serde(default = "default_recovery_level")]
    pub recovery_level: String,
    #[serde(default = "default_kty")]
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

fn default_recovery_level() -> String {
    "Recoverable".into()
}

fn default_kty() -> String {
    "RSA".into()
}

#[derive(Clone, Debug)]
struct KeyVersion {
    spec: KeySpec,
    version: String,
    created: i64,
    updated: i64,
}

/// vault host (lower-case) -> key name (lower-case) -> versions, oldest first.
#[derive(Default)]
pub(crate) struct KeyStore {
    vaults: BTreeMap<String, BTreeMap<String, Vec<KeyVersion>>>,
}

/// What a lookup found: a key bundle, or why not.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct KeyInfo {
    pub bundle: Value,
    pub enabled: bool,
    pub expires: Option<i64>,
    pub not_before: Option<i64>,
    pub recovery_level: String,
}

impl KeyInfo {
    /// Purge protection is on for `Recoverable` and `CustomizedRecoverable` (the `+Purgeable`
    /// variants and `Purgeable` lack it).
    pub fn purge_protected(&self) -> bool {
        let l = self.recovery_level.to_ascii_lowercase();
        l == "recoverable" || l == "customizedrecoverable"
    }

    pub fn usable_now(&self) -> bool {
        let now = now_unix();
        self.enabled && self.expires.is_none_or(|e| e > now) && self.not_before.is_none_or(|n| n <= now)
    }
}

/// Host part of a vault URI or host (`https://KV.vault.azure.net/` -> `kv.vault.azure.net`).
pub(crate) fn vault_host(vault: &str) -> String {
    let v = vault.trim();
    let v = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .unwrap_or(v);
    v.split('/').next().unwrap_or(v).to_ascii_lowercase()
}

/// Splits a key URI `https://{host}/keys/{name}[/{version}]`.
pub(crate) fn parse_key_uri(uri: &str) -> Option<(String, String, Option<String>)> {
    let rest = uri.trim().strip_prefix("https://")?;
    let mut parts = rest.split('/').filter(|s| !s.is_empty());
    let host = parts.next()?.to_ascii_lowercase();
    if !parts.next()?.eq_ignore_ascii_case("keys") {
        return None;
    }
    let name = parts.next()?.to_owned();
    let version = parts.next().map(str::to_owned);
    if parts.next().is_some() {
        return None;
    }
    Some((host, name, version))
}

fn default_version(host: &str, name: &str) -> String {
    let input = format!("https://{host}/{}", name.to_ascii_lowercase());
    format!("{:016x}{:016x}", fnv1a(0, input.as_bytes()), fnv1a(1, input.as_bytes()))
}

/// A deterministic 2048-bit modulus-shaped value (not a real key).
fn modulus(kid: &str) -> String {
    let mut bytes = Vec::with_capacity(256);
    let mut seed = 0u64;
    while bytes.len() < 256 {
        let h = fnv1a(seed, kid.as_bytes());
        bytes.extend_from_slice(&h.to_be_bytes());
        seed += 1;
    }
    if let Some(first) = bytes.first_mut() {
        *first |= 0x80;
    }
    URL_SAFE_NO_PAD.encode(&bytes)
}

fn bundle(host: &str, name: &str, kv: &KeyVersion) -> KeyInfo {
    let kid = format!("https://{host}/keys/{name}/{}", kv.version);
    let ops = kv.spec.key_ops.clone().unwrap_or_else(|| {
        ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    });
    let mut attributes = json!({
        "enabled": kv.spec.enabled,
        "created": kv.created,
        "updated": kv.updated,
        "recoveryLevel": kv.spec.recovery_level,
    });
    if let Some(exp) = kv.spec.expires {
        attributes["exp"] = json!(exp);
    }
    if let Some(nbf) = kv.spec.not_before {
        attributes["nbf"] = json!(nbf);
    }
    if kv.spec.recovery_level.to_ascii_lowercase().contains("recoverable") {
        attributes["recoverableDays"] = json!(90);
    }
    KeyInfo {
        bundle: json!({
            "key": {"kid": kid, "kty": kv.spec.kty, "key_ops": ops, "n": modulus(&kid), "e": "AQAB"},
            "attributes": attributes,
        }),
        enabled: kv.spec.enabled,
        expires: kv.spec.expires,
        not_before: kv.spec.not_before,
        recovery_level: kv.spec.recovery_level.clone(),
    }
}

impl KeyStore {
    fn add(&mut self, spec: KeySpec) -> String {
        let host = vault_host(&spec.vault);
        let version = spec
            .version
            .clone()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| default_version(&host, &spec.name));
        let now = now_unix();
        let versions = self
            .vaults
            .entry(host.clone())
            .or_default()
            .entry(spec.name.to_ascii_lowercase())
            .or_default();
        versions.retain(|v| !v.version.eq_ignore_ascii_case(&version));
        let kid = format!("https://{host}/keys/{}/{version}", spec.name);
        versions.push(KeyVersion {
            spec,
            version,
            created: now,
            updated: now,
        });
        kid
    }

    /// The key bundle for `host`/`name`/`version` (current version when `None`); `None` when
    /// the vault was seeded and has no such key (or version).
    pub(crate) fn lookup(&self, host: &str, name: &str, version: Option<&str>) -> Option<KeyInfo> {
        let host = host.to_ascii_lowercase();
        let Some(vault) = self.vaults.get(&host) else {
            let kv = KeyVersion {
                spec: KeySpec {
                    vault: host.clone(),
                    name: name.to_owned(),
                    version: None,
                    enabled: true,
                    expires: None,
                    not_before: None,
                    recovery_level: default_recovery_level(),
                    kty: default_kty(),
                    key_ops: None,
                },
                version: version
                    .map(str::to_owned)
                    .unwrap_or_else(|| default_version(&host, name)),
                created: 1_700_000_000,
                updated: 1_700_000_000,
            };
            return Some(bundle(&host, name, &kv));
        };
        let versions = vault.get(&name.to_ascii_lowercase())?;
        let kv = match version {
            Some(v) => versions.iter().find(|k| k.version.eq_ignore_ascii_case(v))?,
            None => versions.last()?,
        };
        Some(bundle(&host, &kv.spec.name, kv))
    }

    fn list(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for (host, keys) in &self.vaults {
            for versions in keys.values() {
                for kv in versions {
                    out.push(bundle(host, &kv.spec.name, kv).bundle);
                }
            }
        }
        out
    }
}

impl Sim {
    /// Seeds keys; returns their `kid`s. Seeding one key into a vault makes the vault strict.
    pub fn seed_keys(&self, specs: Vec<KeySpec>) -> Vec<String> {
        let mut store = lock(&self.keys);
        specs.into_iter().map(|s| store.add(s)).collect()
    }

    /// Every seeded key version's bundle.
    pub fn seeded_keys(&self) -> Vec<Value> {
        lock(&self.keys).list()
    }

    /// Forgets every seeded key (all vaults permissive again).
    pub fn clear_keys(&self) {
        lock(&self.keys).vaults.clear();
    }

    /// Key Vault's answer for a key URI (`https://{vault}/keys/{name}[/{version}]`), as the
    /// data plane would give it; `None` when it does not exist.
    pub fn key_bundle(&self, key_uri: &str) -> Option<Value> {
        let (host, name, version) = parse_key_uri(key_uri)?;
        lock(&self.keys)
            .lookup(&host, &name, version.as_deref())
            .map(|k| k.bundle)
    }
}

fn kv_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

fn unauthorized(sim: &Sim, message: &str) -> Response {
    let mut resp = kv_error(StatusCode::UNAUTHORIZED, "Unauthorized", message);
    let challenge = format!(
        "Bearer authorization=\"https://login.microsoftonline.com/{}\", resource=\"{VAULT_AUDIENCE}\"",
        sim.settings.tenant_id
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert("www-authenticate", v);
    }
    resp
}

fn check_token(sim: &Sim, headers: &HeaderMap) -> Result<Option<String>, Box<Response>> {
    let raw = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim();
    let token = match raw.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => t.trim(),
        _ => {
            return Err(Box::new(unauthorized(
                sim,
                "AKV10000: Request is missing a Bearer or PoP token.",
            )));
        }
    };
    let claims =
        decode_token(token).map_err(|e| Box::new(unauthorized(sim, &format!("AKV10032: Invalid token: {e}."))))?;
    let aud = claims.get("aud").and_then(Value::as_str).unwrap_or_default();
    if !aud.trim_end_matches('/').eq_ignore_ascii_case(VAULT_AUDIENCE) {
        return Err(Box::new(unauthorized(
            sim,
            &format!("AKV10022: Invalid audience. Expected {VAULT_AUDIENCE}, found: {aud}."),
        )));
    }
    Ok(claims.get("oid").and_then(Value::as_str).map(str::to_owned))
}

fn api_version_ok(uri: &Uri) -> bool {
    uri.query().unwrap_or_default().split('&').any(|kv| {
        kv.split_once('=')
            .is_some_and(|(k, v)| k == "api-version" && (v.starts_with("7.") || v.starts_with("2016-10-01")))
    })
}

fn get_key_inner(sim: &Sim, host: &str, name: &str, version: Option<&str>, headers: &HeaderMap, uri: &Uri) -> Response {
    let oid = match check_token(sim, headers) {
        Ok(o) => o,
        Err(resp) => return *resp,
    };
    let mut resp = if !api_version_ok(uri) {
        kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The request URI contains an invalid or missing api-version (expected 7.x).",
        )
    } else {
        match lock(&sim.keys).lookup(host, name, version) {
            Some(info) => Json(info.bundle).into_response(),
            None => kv_error(
                StatusCode::NOT_FOUND,
                "KeyNotFound",
                &format!(
                    "A key with (name/id) {name}{} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
                    version.map(|v| format!("/{v}")).unwrap_or_default()
                ),
            ),
        }
    };
    if let Some(oid) = oid {
        resp.extensions_mut().insert(PrincipalOid(oid));
    }
    resp
}

/// `GET /keyvault/{host}/keys/{name}`.
pub(crate) async fn get_key(
    State(sim): State<Arc<Sim>>,
    Path((host, name)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    get_key_inner(&sim, &host, &name, None, &headers, &uri)
}

/// `GET /keyvault/{host}/keys/{name}/{version}`.
pub(crate) async fn get_key_version(
    State(sim): State<Arc<Sim>>,
    Path((host, name, version)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    get_key_inner(&sim, &host, &name, Some(&version), &headers, &uri)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn permissive_unless_seeded() {
        let mut s = KeyStore::default();
        let any = s.lookup("kv-x.vault.azure.net", "whatever", None).unwrap();
        assert!(any.usable_now() && any.purge_protected());
        s.add(KeySpec {
            vault: "https://KV-X.vault.azure.net/".into(),
            name: "k1".into(),
            version: Some("v1".into()),
            enabled: false,
            expires: None,
            not_before: None,
            recovery_level: "Recoverable+Purgeable".into(),
            kty: "RSA".into(),
            key_ops: None,
        });
        assert!(s.lookup("kv-x.vault.azure.net", "whatever", None).is_none());
        let k = s.lookup("kv-x.vault.azure.net", "K1", None).unwrap();
        assert!(!k.enabled && !k.purge_protected());
        assert_eq!(k.bundle["key"]["kid"], "https://kv-x.vault.azure.net/keys/k1/v1");
        assert!(s.lookup("kv-x.vault.azure.net", "k1", Some("v2")).is_none());
        assert_eq!(
            parse_key_uri("https://kv.vault.azure.net/keys/k/abc"),
            Some(("kv.vault.azure.net".into(), "k".into(), Some("abc".into())))
        );
        assert!(parse_key_uri("https://kv.vault.azure.net/secrets/k").is_none());
    }
}
