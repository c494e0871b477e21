//! Who gets in, through the real routers: every route of [`API_ROUTES`] under each start-up
//! combination of `keyguard webhook`, `/api/events`' credential checked before its body is read,
//! Event Grid's Entra token, `--insecure-no-auth`, and what a failed check tells its caller.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::test_env::{API_KEY, CREDENTIAL_ERROR, Env, FailingCredential, WEBHOOK_KEY, app_state, context};
use super::*;
use crate::http::auth::ApiAuthMode;
use crate::http::auth::launch::{AccessModes, Launch};
use crate::http::auth::test_tokens::{CLIENT_ID, JwksServer, SIGNER, TENANT, valid_claims, with};
use crate::store::{EmbeddedBackend, StateStore};
use crate::test_support::{CapturedLogs, lookup};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const EVENTS_AUDIENCE: &str = "api://keyguard-events";

/// A Subscription Validation delivery: answering it needs no ARM, so a 200 proves the caller got in.
fn validation() -> Value {
    json!([{
        "id": "v1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "subject": "", "topic": "t",
        "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "1", "metadataVersion": "1",
        "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6", "validationUrl": "https://example.invalid"}
    }])
}

async fn call(router: &Router, method: &str, uri: &str, headers: &[(&str, String)], body: Body) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri)
        .header("content-type", "application/json")
        .header("webhook-request-origin", "eventgrid.azure.net");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A plausible body for each route, so a request that got past authentication would succeed.
fn body_for(route: &ApiRoute) -> Body {
    match (route.method, route.path) {
        ("POST", "/api/events") => Body::from(validation().to_string()),
        ("POST", "/api/check") => Body::from(
            json!({"resourceId": format!("/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/stcmkpayments", azure_sim::DEMO_SUBSCRIPTION, azure_sim::DEMO_RESOURCE_GROUP)}).to_string(),
        ),
        ("POST", "/api/scan") => {
            Body::from(json!({"scope": format!("/subscriptions/{}", azure_sim::DEMO_SUBSCRIPTION)}).to_string())
        }
        _ => Body::empty(),
    }
}

fn webhook_router_for(env: &Env, pairs: &[(&str, &str)], launch: Launch) -> anyhow::Result<Router> {
    let modes = AccessModes::from_lookup(lookup(pairs), launch)?;
    let auth = modes.authenticators(reqwest::Client::new());
    Ok(webhook_router(AppState {
        reconcile: env.context.clone(),
        sweep: crate::sweep::SweepSettings::default(),
        retention: crate::test_support::retention(),
        auth: auth.api,
        events_auth: auth.events,
        dry_run: false,
    }))
}

const WEBHOOK: Launch = Launch::Webhook {
    bind: LOOPBACK,
    insecure_no_auth: false,
};

/// Finding 2: with a webhook key alone, `keyguard webhook` served findings, audit and scans to
/// anyone. Now every route but the public two answers 401 without a credential, whichever
/// credential is configured; with none at all the webhook does not start.
#[tokio::test]
async fn every_route_refuses_callers_without_credentials_in_each_start_up_combination() {
    let env = Env::start().await;
    let combinations: [(&str, Vec<(&str, &str)>); 4] = [
        ("webhook key only", vec![("KEYGUARD_WEBHOOK_KEY", WEBHOOK_KEY)]),
        ("API key only", vec![("KEYGUARD_API_KEY", API_KEY)]),
        (
            "Entra only",
            vec![("KEYGUARD_API_TENANT_ID", TENANT), ("KEYGUARD_API_AUDIENCE", CLIENT_ID)],
        ),
        ("none", vec![]),
    ];
    for (name, pairs) in combinations {
        let router = match webhook_router_for(&env, &pairs, WEBHOOK) {
            Ok(router) => router,
            Err(e) => {
                assert_eq!(name, "none", "{name} did not start: {e:#}");
                assert!(format!("{e:#}").contains("no credential configured"), "{e:#}");
                continue;
            }
        };
        assert_ne!(name, "none", "a webhook with no credential at all started");
        for route in API_ROUTES {
            let (status, body) = call(&router, route.method, route.path, &[], body_for(route)).await;
            match (route.access, route.path) {
                (Access::Open, "/api/health") => {
                    assert_eq!(status, StatusCode::OK, "{name}: {body}");
                    assert_eq!(
                        body,
                        json!({"status": "ok"}),
                        "{name}: health shows no details anonymously"
                    );
                }
                (Access::Open, _) => assert_eq!(body, super::openapi_tests::document(), "{name}"),
                (Access::Authenticated | Access::EventGrid, _) => {
                    assert_eq!(
                        status,
                        StatusCode::UNAUTHORIZED,
                        "{name}: {} {} answered {status} without credentials: {body}",
                        route.method,
                        route.path
                    );
                    assert_eq!(body["error"]["message"], "authentication required", "{name}");
                }
            }
        }
    }
    // The configured credential does open its routes (the 401s above are not a broken router).
    let router = webhook_router_for(&env, &[("KEYGUARD_API_KEY", API_KEY)], WEBHOOK).unwrap();
    let (status, body) = call(
        &router,
        "GET",
        "/api/findings",
        &[("x-api-key", API_KEY.into())],
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn insecure_no_auth_serves_every_route_and_warns_at_start_up_and_on_each_request() {
    let env = Env::start().await;
    let logs = CapturedLogs::start();
    let insecure = Launch::Webhook {
        bind: LOOPBACK,
        insecure_no_auth: true,
    };
    let router = webhook_router_for(&env, &[], insecure).unwrap();
    let startup = logs.text();
    assert!(
        startup.contains("WARN") && startup.contains("--insecure-no-auth") && startup.contains("ANYONE"),
        "{startup}"
    );
    let mut served = 0;
    for route in API_ROUTES.iter().filter(|r| r.access != Access::Open) {
        let (status, body) = call(&router, route.method, route.path, &[], body_for(route)).await;
        assert!(
            status.is_success(),
            "{} {} answered {status}: {body}",
            route.method,
            route.path
        );
        served += 1;
    }
    let per_request = logs
        .text()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("WITHOUT authentication"))
        .count();
    assert_eq!(per_request, served, "one warning per request:\n{}", logs.text());
    env.sim.shutdown().await;
}

/// A body whose first poll is recorded: proves whether anything read it.
fn watched_body(read: Arc<AtomicBool>) -> Body {
    let mut sent = false;
    Body::from_stream(futures_util::stream::poll_fn(move |_| {
        read.store(true, Ordering::SeqCst);
        if std::mem::replace(&mut sent, true) {
            Poll::Ready(None)
        } else {
            Poll::Ready(Some(Ok::<_, std::io::Error>(axum::body::Bytes::from(
                validation().to_string(),
            ))))
        }
    }))
}

/// Finding 7: the webhook body was buffered (up to 4 MiB) before the key was checked.
#[tokio::test]
async fn events_refuse_a_missing_or_wrong_key_before_reading_the_body() {
    let env = Env::start().await;
    let router = webhook_router_for(&env, &[("KEYGUARD_WEBHOOK_KEY", WEBHOOK_KEY)], WEBHOOK).unwrap();
    for uri in [
        "/api/events".to_string(),
        "/api/events?code=not-the-webhook-key".to_string(),
        format!("/api/events?code={API_KEY}"),
    ] {
        for method in ["POST", "OPTIONS"] {
            let read = Arc::new(AtomicBool::new(false));
            let (status, body) = call(&router, method, &uri, &[], watched_body(read.clone())).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}: {body}");
            assert!(
                !read.load(Ordering::SeqCst),
                "{method} {uri}: the body was read before the key check"
            );
        }
        // Over the body limit: still 401, not 413, since the body is never looked at.
        let huge = Body::from(vec![b' '; BODY_LIMIT + 1]);
        let (status, _) = call(&router, "POST", &uri, &[], huge).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    // With the key, the same bodies are read: the probe would have seen a read.
    let with_key = format!("/api/events?code={WEBHOOK_KEY}");
    let read = Arc::new(AtomicBool::new(false));
    let (status, body) = call(&router, "POST", &with_key, &[], watched_body(read.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(read.load(Ordering::SeqCst));
    let (status, _) = call(&router, "POST", &with_key, &[], Body::from(vec![b' '; BODY_LIMIT + 1])).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // The key in a header works too; in x-api-key it does not.
    for (header, expected) in [
        ("x-functions-key", StatusCode::OK),
        ("x-api-key", StatusCode::UNAUTHORIZED),
    ] {
        let headers = [(header, WEBHOOK_KEY.to_string())];
        let delivery = Body::from(validation().to_string());
        let (status, _) = call(&router, "POST", "/api/events", &headers, delivery).await;
        assert_eq!(status, expected, "{header}");
    }
    env.sim.shutdown().await;
}

/// Event Grid's "Microsoft Entra authentication" for webhook delivery: a bearer token for the
/// configured tenant and audience gets in; another audience (the API's, say) does not, and an
/// events token opens nothing else.
#[tokio::test]
async fn events_take_event_grid_entra_tokens_for_their_audience_only() {
    let env = Env::start().await;
    let jwks = JwksServer::start(&[&SIGNER]).await;
    let jwks_url = jwks.url.to_string();
    let pairs = [
        ("KEYGUARD_EVENTGRID_TENANT_ID", TENANT),
        ("KEYGUARD_EVENTGRID_AUDIENCE", EVENTS_AUDIENCE),
        ("KEYGUARD_EVENTGRID_JWKS_URL", jwks_url.as_str()),
        ("KEYGUARD_API_TENANT_ID", TENANT),
        ("KEYGUARD_API_AUDIENCE", CLIENT_ID),
        ("KEYGUARD_API_JWKS_URL", jwks_url.as_str()),
    ];
    let router = webhook_router_for(&env, &pairs, WEBHOOK).unwrap();
    let bearer = |audience: &str| {
        let token = SIGNER.token(&with(valid_claims(), "aud", json!(audience)));
        [("authorization", format!("Bearer {token}"))]
    };
    let delivery = || Body::from(validation().to_string());

    let (status, body) = call(&router, "POST", "/api/events", &bearer(EVENTS_AUDIENCE), delivery()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["validationResponse"], "512d38b6-c7b8-40c8-89fe-f46f9e9622b6");
    let (status, _) = call(
        &router,
        "OPTIONS",
        "/api/events",
        &bearer(EVENTS_AUDIENCE),
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    for audience in [CLIENT_ID, "api://someone-else"] {
        let (status, body) = call(&router, "POST", "/api/events", &bearer(audience), delivery()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "aud {audience}: {body}");
    }
    let expired = SIGNER.token(&with(
        with(valid_claims(), "aud", json!(EVENTS_AUDIENCE)),
        "exp",
        json!(time::OffsetDateTime::now_utc().unix_timestamp() - 3600),
    ));
    let (status, _) = call(
        &router,
        "POST",
        "/api/events",
        &[("authorization", format!("Bearer {expired}"))],
        delivery(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Each audience opens its own routes only.
    let (status, _) = call(&router, "GET", "/api/findings", &bearer(EVENTS_AUDIENCE), Body::empty()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&router, "GET", "/api/findings", &bearer(CLIENT_ID), Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    env.sim.shutdown().await;
}

/// Finding 7: `/api/check` answered with the credential's error text, which `/api/health` hides.
/// The caller gets a fixed message with the correlation id; the log has the text under that id.
#[tokio::test]
async fn a_failed_check_names_its_correlation_id_and_logs_the_credential_error() {
    let env = Env::start().await;
    let dir = std::env::temp_dir().join(format!("keyguard-access-{}", uuid::Uuid::new_v4()));
    let store = StateStore::new(Arc::new(EmbeddedBackend::open(&dir.join("state.redb")).unwrap()))
        .await
        .unwrap();
    let router = webhook_router(app_state(
        Arc::new(context(&env.sim, Arc::new(FailingCredential), store)),
        ApiAuthMode::Key(API_KEY.to_string().into()),
        ApiAuthMode::Closed,
        false,
    ));
    let logs = CapturedLogs::start();
    let id = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/stcmkpayments",
        azure_sim::DEMO_SUBSCRIPTION,
        azure_sim::DEMO_RESOURCE_GROUP
    );
    let headers = [
        ("x-api-key", API_KEY.to_string()),
        ("x-ms-correlation-request-id", "corr-0123".to_string()),
    ];
    let body = Body::from(json!({"resourceId": id}).to_string());
    let (status, body) = call(&router, "POST", "/api/check", &headers, body).await;
    // An invalid client secret is refused every time: not worth a retry (503 would say it is).
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("corr-0123"), "{body}");
    assert!(!message.contains("AADSTS") && !message.contains("secret"), "{body}");
    let log = logs.text();
    assert!(
        log.lines()
            .any(|l| l.contains("corr-0123") && l.contains(CREDENTIAL_ERROR)),
        "the detail is logged under the correlation id:\n{log}"
    );
    // A correlation id that is not an id is replaced, not echoed.
    let headers = [
        ("x-api-key", API_KEY.to_string()),
        ("x-ms-correlation-request-id", "<script>alert(1)</script>".to_string()),
    ];
    let (_, body) = call(
        &router,
        "POST",
        "/api/check",
        &headers,
        Body::from(json!({"resourceId": id}).to_string()),
    )
    .await;
    assert!(!body.to_string().contains("script"), "{body}");
    let _ = std::fs::remove_dir_all(&dir);
    env.sim.shutdown().await;
}
