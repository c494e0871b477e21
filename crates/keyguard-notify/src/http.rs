//! Shared HTTP delivery: one place decides what is retryable and keeps secret URLs out of errors.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::{ConfigError, Secret, SendError};

/// Longest slice of a receiver's error body kept in a `SendError`: enough to see Teams' reason
/// ("Webhook message delivery failed…"), not enough to flood the outbox.
const MAX_BODY_IN_ERROR: usize = 300;

/// A client with bounded timeouts and no redirects: a webhook that redirects is misconfigured, and
/// following it would send the alert (and for our own webhook, its signature) somewhere unreviewed.
pub(crate) fn default_client() -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("keyguard-notify/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConfigError::HttpClient(e.without_url().to_string()))
}

/// Rejects unusable URLs at startup instead of on the first drift. Plain `http` only reaches this
/// machine (a local relay or a test receiver): anywhere else the alert, and the URL's own secret
/// (a Teams workflow signature, a webhook token), would cross the network readable and forgeable.
pub(crate) fn check_url(url: &Secret, what: &'static str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url.expose()) {
        Ok(u) if u.host().is_none() => Err(ConfigError::InvalidUrl(what)),
        Ok(u) if u.scheme() == "https" => Ok(()),
        Ok(u) if u.scheme() == "http" && keyguard_core::egress::is_loopback(&u) => Ok(()),
        Ok(u) if u.scheme() == "http" => Err(ConfigError::InsecureUrl(what)),
        _ => Err(ConfigError::InvalidUrl(what)),
    }
}

/// Sends a prepared request and maps the result onto the outbox's retry/park decision:
/// 2xx ok; 408, 429, 5xx and transport failures retryable; every other status permanent.
pub(crate) async fn deliver(request: reqwest::RequestBuilder, url: &Secret, what: &str) -> Result<(), SendError> {
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Err(SendError::Retryable(scrub(transport_error(what, &e), url))),
    };
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = parse_retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    let mut msg = format!("{what} answered HTTP {}", status.as_u16());
    let excerpt: String = body.chars().take(MAX_BODY_IN_ERROR).collect();
    let excerpt = excerpt.split_whitespace().collect::<Vec<_>>().join(" ");
    if !excerpt.is_empty() {
        msg.push_str(": ");
        msg.push_str(&excerpt);
    }
    let msg = scrub(msg, url);
    if status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Err(SendError::retryable_after(msg, retry_after))
    } else {
        Err(SendError::Permanent(msg))
    }
}

/// reqwest's Display includes the URL; `without_url` drops it, and the kind is spelled out because
/// "error sending request" alone does not tell an operator whether DNS, TCP or TLS failed.
fn transport_error(what: &str, e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut msg = format!("{what} {kind}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// Last line of defence: whatever an inner library or the receiver put in the text, the secret URL
/// (and its query, which carries the signature) never leaves this crate in an error.
pub(crate) fn scrub(msg: String, secret: &Secret) -> String {
    let mut msg = msg;
    let full = secret.expose();
    if !full.is_empty() && msg.contains(full) {
        msg = msg.replace(full, "[redacted]");
    }
    if let Ok(u) = reqwest::Url::parse(full)
        && let Some(q) = u.query()
        && !q.is_empty()
        && msg.contains(q)
    {
        msg = msg.replace(q, "[redacted]");
    }
    msg
}

/// Both forms from RFC 9110: delay-seconds and HTTP-date (converted to a delay from now).
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}
