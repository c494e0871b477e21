use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use keyguard_notify::webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use keyguard_notify::{Alert, AlertOutcome, Channel, Secret, SendError, TeamsChannel, WebhookChannel, teams};
use serde_json::Value;

/// The credential part of a Workflows URL; it must never show up in errors or Debug output.
const SIG: &str = "sIg-9f8e7d6c5b4a-SECRET";
const HMAC_KEY: &str = "whsec-0123456789abcdef-KEY";

#[derive(Default)]
struct Received {
    requests: Vec<(HeaderMap, Bytes)>,
}

type Shared = Arc<Mutex<Received>>;

/// Stands in for Teams/Power Automate and SOAR receivers: `/hook/{status}` answers with that status.
/// Error answers echo the full request URI (with its `sig=`) in the body, like a careless proxy
/// would, so the tests prove the channel scrubs it.
async fn hook(
    State(state): State<Shared>,
    Path(status): Path<u16>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.lock().unwrap().requests.push((headers, body));
    let status = StatusCode::from_u16(status).unwrap();
    let mut response = if status.is_success() {
        (status, "").into_response()
    } else {
        (status, format!("rejected request to {uri}")).into_response()
    };
    if status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert("retry-after", "7".parse().unwrap());
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        let at = SystemTime::now() + Duration::from_secs(120);
        response
            .headers_mut()
            .insert("retry-after", httpdate::fmt_http_date(at).parse().unwrap());
    }
    if status == StatusCode::FOUND {
        response
            .headers_mut()
            .insert("location", "http://127.0.0.1:1/elsewhere".parse().unwrap());
    }
    response
}

async fn receiver() -> (String, Shared) {
    let state = Shared::default();
    let app = Router::new()
        .route("/hook/{status}", post(hook))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

fn url(base: &str, status: u16) -> Secret {
    Secret::new(format!(
        "{base}/hook/{status}?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIG}"
    ))
}

fn assert_no_secret(err: &SendError, full_url: &Secret) {
    let text = format!("{err} {err:?}");
    assert!(!text.contains(SIG), "signature leaked: {text}");
    assert!(!text.contains(full_url.expose()), "URL leaked: {text}");
    assert!(!text.contains(HMAC_KEY), "key leaked: {text}");
}

#[tokio::test]
async fn teams_workflows_receives_the_adaptive_card() {
    let (base, state) = receiver().await;
    let channel = TeamsChannel::new(url(&base, 202), false).unwrap();
    assert_eq!(channel.name(), "teams");
    let alert = Alert {
        outcome: AlertOutcome::ManualActionNeeded,
        ..Alert::sample()
    };
    channel.send(&alert).await.unwrap();

    let got = state.lock().unwrap();
    assert_eq!(got.requests.len(), 1);
    let (headers, body) = &got.requests[0];
    assert_eq!(headers["content-type"], "application/json");
    let payload: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(payload, teams::workflows_payload(&alert));
    let att = &payload["attachments"][0];
    assert_eq!(att["contentType"], "application/vnd.microsoft.card.adaptive");
    assert_eq!(att["content"]["type"], "AdaptiveCard");
    assert_eq!(att["content"]["version"], "1.5");
}

#[tokio::test]
async fn legacy_connector_receives_a_message_card() {
    let (base, state) = receiver().await;
    let channel = TeamsChannel::new(url(&base, 200), true).unwrap().named("teams-legacy");
    assert_eq!(channel.name(), "teams-legacy");
    channel.send(&Alert::sample()).await.unwrap();
    let got = state.lock().unwrap();
    let payload: Value = serde_json::from_slice(&got.requests[0].1).unwrap();
    assert_eq!(payload["@type"], "MessageCard");
}

#[tokio::test]
async fn throttling_and_outages_are_retryable_with_retry_after() {
    let (base, _state) = receiver().await;

    let u = url(&base, 429);
    let err = TeamsChannel::new(u.clone(), false)
        .unwrap()
        .send(&Alert::sample())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)), "{err}");
    assert!(err.to_string().contains("429"), "{err}");
    assert_no_secret(&err, &u);

    let u = url(&base, 503);
    let err = TeamsChannel::new(u.clone(), false)
        .unwrap()
        .send(&Alert::sample())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let after = err.retry_after().expect("HTTP-date Retry-After");
    assert!(
        after > Duration::from_secs(100) && after <= Duration::from_secs(120),
        "{after:?}"
    );
    assert_no_secret(&err, &u);

    for status in [408, 500, 502] {
        let u = url(&base, status);
        let err = WebhookChannel::new(u.clone(), Secret::new(HMAC_KEY))
            .unwrap()
            .send(&Alert::sample())
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{status}: {err}");
        assert_eq!(err.retry_after(), None);
        assert_no_secret(&err, &u);
    }
}

#[tokio::test]
async fn client_errors_are_permanent_and_scrubbed() {
    let (base, _state) = receiver().await;
    for status in [400, 401, 403, 404, 413, 302] {
        let u = url(&base, status);
        let err = TeamsChannel::new(u.clone(), false)
            .unwrap()
            .send(&Alert::sample())
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Permanent(_)), "{status}: {err}");
        assert!(err.to_string().contains(&status.to_string()), "{err}");
        // The receiver echoed the URI; the path survives, the signature does not.
        if status != 302 {
            assert!(err.to_string().contains("[redacted]"), "{err}");
        }
        assert_no_secret(&err, &u);
    }
}

#[tokio::test]
async fn unreachable_endpoint_is_retryable_without_the_url() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let u = url(&format!("http://127.0.0.1:{port}"), 200);
    let err = TeamsChannel::new(u.clone(), false)
        .unwrap()
        .send(&Alert::sample())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("connection failed"), "{err}");
    assert_no_secret(&err, &u);
}

#[tokio::test]
async fn webhook_body_is_the_alert_signed_with_hmac_sha256() {
    let (base, state) = receiver().await;
    let channel = WebhookChannel::new(url(&base, 204), Secret::new(HMAC_KEY)).unwrap();
    let alert = crate::support::hostile_alert(AlertOutcome::RateLimited);
    channel.send(&alert).await.unwrap();

    let got = state.lock().unwrap();
    let (headers, body) = &got.requests[0];
    assert_eq!(headers["content-type"], "application/json");
    let back: Alert = serde_json::from_slice(body).unwrap();
    assert_eq!(back, alert);

    // Verify as a receiver would, with an independent HMAC implementation call and constant-time compare.
    let sig = headers[SIGNATURE_HEADER].to_str().unwrap();
    let hex = sig.strip_prefix("sha256=").expect("sha256= prefix");
    assert_eq!(hex.len(), 64);
    let tag: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, HMAC_KEY.as_bytes());
    aws_lc_rs::hmac::verify(&key, body, &tag).expect("signature verifies against the body");
    let wrong = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"other key");
    assert!(aws_lc_rs::hmac::verify(&wrong, body, &tag).is_err());
    let mut tampered = body.to_vec();
    tampered[10] ^= 1;
    assert!(aws_lc_rs::hmac::verify(&key, &tampered, &tag).is_err());

    let ts: u64 = headers[TIMESTAMP_HEADER].to_str().unwrap().parse().unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(now.abs_diff(ts) < 60);
}

#[test]
fn secrets_never_appear_in_debug_or_display() {
    let s = Secret::new(HMAC_KEY);
    assert_eq!(s.expose(), HMAC_KEY);
    assert!(!format!("{s:?} {s}").contains(HMAC_KEY));

    let u = url("https://prod-00.westeurope.logic.azure.com:443/workflows/abc", 0);
    let teams = TeamsChannel::new(u.clone(), false).unwrap();
    let debug = format!("{teams:?}");
    assert!(!debug.contains(SIG) && !debug.contains("logic.azure.com"), "{debug}");

    let hook = WebhookChannel::new(u, Secret::new(HMAC_KEY)).unwrap();
    let debug = format!("{hook:?}");
    assert!(!debug.contains(SIG) && !debug.contains(HMAC_KEY), "{debug}");

    let parsed: Secret = serde_json::from_str(&format!("\"{HMAC_KEY}\"")).unwrap();
    assert_eq!(parsed.expose(), HMAC_KEY);
}

#[test]
fn bad_urls_are_rejected_without_echoing_them() {
    for bad in ["", "not a url", "ftp://x/y?sig=SECRET", "file:///etc/passwd?sig=SECRET"] {
        let err = TeamsChannel::new(Secret::new(bad), false).unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }
}

#[test]
fn plain_http_alert_urls_are_refused_for_any_host_but_this_machine() {
    for remote in [
        "http://prod-00.westeurope.logic.azure.com/workflows/x/triggers/manual/paths/invoke?sig=SECRET",
        "http://soar.example.com/hooks/keyguard?token=SECRET",
        "http://10.0.0.5/hook?sig=SECRET",
        "http://[2001:db8::1]/hook?sig=SECRET",
        "http://127.0.0.1.nip.io/hook?sig=SECRET",
        "http://localhost.example.com/hook?sig=SECRET",
    ] {
        let teams = TeamsChannel::new(Secret::new(remote), false).unwrap_err();
        let webhook = WebhookChannel::new(Secret::new(remote), Secret::new(HMAC_KEY)).unwrap_err();
        assert_eq!(
            teams,
            keyguard_notify::ConfigError::InsecureUrl("Teams webhook"),
            "{remote}"
        );
        assert_eq!(
            webhook,
            keyguard_notify::ConfigError::InsecureUrl("webhook"),
            "{remote}"
        );
        let message = webhook.to_string();
        assert!(
            message.contains("must use https") && message.contains("loopback"),
            "{message}"
        );
        assert!(!message.contains("SECRET") && !message.contains("example"), "{message}");
    }
}

#[test]
fn plain_http_alert_urls_are_accepted_for_loopback_hosts_and_https_for_any() {
    for accepted in [
        "http://127.0.0.1:8080/hook",
        "http://127.1.2.3/hook",
        "http://localhost:9000/hook",
        "http://LOCALHOST/hook",
        "http://[::1]:8443/hook",
        "https://prod-00.westeurope.logic.azure.com/workflows/x/triggers/manual/paths/invoke?sig=s",
        "https://soar.example.com/hooks/keyguard",
    ] {
        assert!(TeamsChannel::new(Secret::new(accepted), false).is_ok(), "{accepted}");
        assert!(
            WebhookChannel::new(Secret::new(accepted), Secret::new(HMAC_KEY)).is_ok(),
            "{accepted}"
        );
    }
}

/// Verifies a delivery as a receiver would: recompute HMAC-SHA256 over the body, constant-time compare.
fn verify_signature(headers: &HeaderMap, body: &[u8]) {
    let sig = headers[SIGNATURE_HEADER].to_str().unwrap();
    let hex = sig.strip_prefix("sha256=").expect("sha256= prefix");
    assert_eq!(hex.len(), 64);
    let tag: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, HMAC_KEY.as_bytes());
    aws_lc_rs::hmac::verify(&key, body, &tag).expect("signature verifies against the body");
    let mut tampered = body.to_vec();
    tampered[3] ^= 1;
    assert!(aws_lc_rs::hmac::verify(&key, &tampered, &tag).is_err());
}

#[tokio::test]
async fn webhook_digest_is_one_signed_body_with_every_alert() {
    let (base, state) = receiver().await;
    let channel = WebhookChannel::new(url(&base, 204), Secret::new(HMAC_KEY)).unwrap();
    // No cap for pipelines: all 30 alerts go out.
    let alerts = crate::support::digest_alerts(30);
    channel.send_digest(&alerts).await.unwrap();

    let got = state.lock().unwrap();
    assert_eq!(got.requests.len(), 1);
    let (headers, body) = &got.requests[0];
    assert_eq!(headers["content-type"], "application/json");
    verify_signature(headers, body);
    assert_eq!(
        body.as_ref(),
        keyguard_notify::webhook::digest_body(&alerts).unwrap().as_slice()
    );
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["digest"], true);
    assert_eq!(v["count"], 30);
    let back: Vec<Alert> = serde_json::from_value(v["alerts"].clone()).unwrap();
    assert_eq!(back, alerts);
    assert_eq!(v["alerts"][1]["outcome"], "revert-failed");
    let ts: u64 = headers[TIMESTAMP_HEADER].to_str().unwrap().parse().unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(now.abs_diff(ts) < 60);
}

#[tokio::test]
async fn teams_digest_posts_one_card_for_all_alerts() {
    let (base, state) = receiver().await;
    let channel = TeamsChannel::new(url(&base, 202), false).unwrap();
    let alerts = crate::support::digest_alerts(3);
    channel.send_digest(&alerts).await.unwrap();

    let legacy = TeamsChannel::new(url(&base, 200), true).unwrap();
    legacy.send_digest(&alerts).await.unwrap();

    let got = state.lock().unwrap();
    assert_eq!(got.requests.len(), 2);
    let (headers, body) = &got.requests[0];
    assert_eq!(headers["content-type"], "application/json");
    let payload: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(payload, teams::digest_workflows_payload(&alerts));
    assert_eq!(payload, channel.digest_payload(&alerts));
    let card = &payload["attachments"][0]["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["body"][0]["items"][0]["text"], "3 encryption drift alerts");

    let payload: Value = serde_json::from_slice(&got.requests[1].1).unwrap();
    assert_eq!(payload, teams::digest_message_card(&alerts));
    assert_eq!(payload["@type"], "MessageCard");
}

#[tokio::test]
async fn empty_digest_is_permanent_and_posts_nothing() {
    let (base, state) = receiver().await;
    let teams = TeamsChannel::new(url(&base, 202), false).unwrap();
    let hook = WebhookChannel::new(url(&base, 204), Secret::new(HMAC_KEY)).unwrap();
    for channel in [&teams as &dyn Channel, &hook] {
        let err = channel.send_digest(&[]).await.unwrap_err();
        assert_eq!(err, SendError::Permanent("empty digest".into()), "{}", channel.name());
    }
    assert!(state.lock().unwrap().requests.is_empty());
}

#[tokio::test]
async fn teams_digest_failures_are_classified_and_scrubbed() {
    let (base, _state) = receiver().await;
    let alerts = crate::support::digest_alerts(3);
    let u = url(&base, 429);
    let err = TeamsChannel::new(u.clone(), false)
        .unwrap()
        .send_digest(&alerts)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert_no_secret(&err, &u);
    let u = url(&base, 400);
    let err = WebhookChannel::new(u.clone(), Secret::new(HMAC_KEY))
        .unwrap()
        .send_digest(&alerts)
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Permanent(_)), "{err}");
    assert_no_secret(&err, &u);
}

/// A channel implemented outside this crate gets a correct default: every alert, one by one.
#[tokio::test]
async fn default_send_digest_sends_each_alert() {
    struct Counting(std::sync::atomic::AtomicUsize);
    impl Channel for Counting {
        fn name(&self) -> &str {
            "counting"
        }
        fn send<'a>(&'a self, _alert: &'a Alert) -> keyguard_notify::SendFuture<'a> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async { Ok(()) })
        }
    }
    let c = Counting(Default::default());
    c.send_digest(&crate::support::digest_alerts(4)).await.unwrap();
    assert_eq!(c.0.load(std::sync::atomic::Ordering::SeqCst), 4);
    assert_eq!(
        c.send_digest(&[]).await.unwrap_err(),
        SendError::Permanent("empty digest".into())
    );
}
