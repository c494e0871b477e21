//! Entra ID stand-ins for tests: RSA signing keys that mint tokens shaped like Entra's, and a
//! JWKS endpoint that publishes them (and can be made to fail).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use url::Url;

use super::EntraConfig;

pub(crate) const TENANT: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
pub(crate) const OTHER_TENANT: &str = "99999999-8888-7777-6666-555555555555";
pub(crate) const CLIENT_ID: &str = "6e9c3a1f-2b4d-4c8e-9f0a-1b2c3d4e5f60";
pub(crate) const CALLER_APP: &str = "1a2b3c4d-0000-4000-8000-000000000001";
pub(crate) const OID: &str = "4d3c2b1a-1111-4222-8333-444455556666";
pub(crate) const ROLE: &str = "Keyguard.Invoke";

pub(crate) struct TestKey {
    pair: KeyPair,
    pub(crate) kid: &'static str,
}

impl TestKey {
    pub(crate) fn generate(kid: &'static str) -> Self {
        Self {
            pair: KeyPair::generate(KeySize::Rsa2048).unwrap(),
            kid,
        }
    }

    pub(crate) fn jwk(&self) -> Value {
        let components = PublicKeyComponents::<Vec<u8>>::from(self.pair.public_key());
        // Shaped like an entry of login.microsoftonline.com's keys document.
        json!({
            "kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&components.n), "e": URL_SAFE_NO_PAD.encode(&components.e),
        })
    }

    pub(crate) fn public_key_x509_der(&self) -> Vec<u8> {
        self.pair.public_key().as_der().unwrap().as_ref().to_vec()
    }

    pub(crate) fn sign(&self, header: &Value, claims: &Value) -> String {
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

    pub(crate) fn token(&self, claims: &Value) -> String {
        self.sign(&json!({"alg": "RS256", "typ": "JWT", "kid": self.kid}), claims)
    }
}

pub(crate) fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// Generated once: RSA key generation is the slow part of these tests.
pub(crate) static SIGNER: LazyLock<TestKey> = LazyLock::new(|| TestKey::generate("test-kid-1"));
pub(crate) static OTHER_SIGNER: LazyLock<TestKey> = LazyLock::new(|| TestKey::generate("test-kid-2"));

pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub(crate) fn v2_issuer() -> String {
    format!("https://login.microsoftonline.com/{TENANT}/v2.0")
}

/// The claims of a v2 app-only access token Entra issues for a client credential.
pub(crate) fn valid_claims() -> Value {
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

pub(crate) fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

pub(crate) fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

pub(crate) struct JwksServer {
    pub(crate) url: Url,
    fetches: Arc<AtomicUsize>,
    pub(crate) document: Arc<std::sync::Mutex<Value>>,
    pub(crate) failing: Arc<AtomicBool>,
}

impl JwksServer {
    pub(crate) async fn start(keys: &[&TestKey]) -> Self {
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

    pub(crate) fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    pub(crate) fn publish(&self, keys: &[&TestKey]) {
        *self.document.lock().unwrap() = jwks(keys);
    }
}

pub(crate) fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

pub(crate) fn entra_config(server: &JwksServer) -> EntraConfig {
    let mut config = EntraConfig::new(TENANT, vec!["api://keyguard".into(), CLIENT_ID.into()]).unwrap();
    config.jwks_url = server.url.clone();
    config
}

pub(crate) fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    headers
}

pub(crate) fn header_map(name: &'static str, value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(name, value.parse().unwrap());
    headers
}
