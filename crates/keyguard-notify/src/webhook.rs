//! Generic signed JSON webhook, for SOAR/SIEM pipelines that want the raw alert.
//!
//! Receivers authenticate a delivery by recomputing `X-Keyguard-Signature: sha256=<hex>` — an
//! HMAC-SHA256 over the exact body bytes with the shared key — and comparing in constant time.
//! `X-Keyguard-Timestamp` (Unix seconds) is informational and NOT covered by the signature; receivers
//! that need replay protection should de-duplicate on the body's `correlation_id` + `outcome`.
//!
//! A digest delivery ([`digest_body`]) is `{"digest": true, "count": n, "alerts": [...]}`, signed the
//! same way; single alerts have no `digest` key.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;

use crate::{Alert, Channel, ConfigError, Secret, SendError, SendFuture, http};

pub const SIGNATURE_HEADER: &str = "X-Keyguard-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Keyguard-Timestamp";

/// `sha256=<lowercase hex HMAC-SHA256(key, body)>`, the value of [`SIGNATURE_HEADER`].
/// Public so receivers written in Rust (and tests) use the same definition.
pub fn signature(key: &Secret, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key.expose().as_bytes());
    let tag = hmac::sign(&key, body);
    let mut out = String::from("sha256=");
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The exact body bytes of a digest delivery: `{"digest": true, "count": n, "alerts": [Alert, ...]}`
/// with every alert (no cap: receivers are pipelines, not people). Signed like a single alert.
pub fn digest_body(alerts: &[Alert]) -> Result<Vec<u8>, SendError> {
    #[derive(serde::Serialize)]
    struct Digest<'a> {
        digest: bool,
        count: usize,
        alerts: &'a [Alert],
    }
    serde_json::to_vec(&Digest {
        digest: true,
        count: alerts.len(),
        alerts,
    })
    .map_err(|e| SendError::Permanent(format!("cannot serialise digest: {e}")))
}

/// Posts the [`Alert`] as JSON, signed with a shared key.
pub struct WebhookChannel {
    name: String,
    url: Secret,
    key: Secret,
    client: reqwest::Client,
}

impl WebhookChannel {
    pub fn new(url: Secret, hmac_key: Secret) -> Result<Self, ConfigError> {
        Self::with_client(url, hmac_key, http::default_client()?)
    }

    pub fn with_client(url: Secret, hmac_key: Secret, client: reqwest::Client) -> Result<Self, ConfigError> {
        http::check_url(&url, "webhook")?;
        Ok(WebhookChannel {
            name: "webhook".into(),
            url,
            key: hmac_key,
            client,
        })
    }

    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Signs exactly these bytes and posts them.
    async fn post_signed(&self, body: Vec<u8>) -> Result<(), SendError> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let request = self
            .client
            .post(self.url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature(&self.key, &body))
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .body(body);
        http::deliver(request, &self.url, "webhook").await
    }
}

impl fmt::Debug for WebhookChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookChannel")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Channel for WebhookChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, alert: &'a Alert) -> SendFuture<'a> {
        Box::pin(async move {
            // Serialise once and sign exactly these bytes; re-serialising could reorder or reformat.
            let body =
                serde_json::to_vec(alert).map_err(|e| SendError::Permanent(format!("cannot serialise alert: {e}")))?;
            self.post_signed(body).await
        })
    }

    fn send_digest<'a>(&'a self, alerts: &'a [Alert]) -> SendFuture<'a> {
        Box::pin(async move {
            if alerts.is_empty() {
                return Err(SendError::empty_digest());
            }
            let body = digest_body(alerts)?;
            self.post_signed(body).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2, so the signature is known-good independently of our own verifier.
    #[test]
    fn signature_matches_rfc4231() {
        assert_eq!(
            signature(&Secret::new("Jefe"), b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
