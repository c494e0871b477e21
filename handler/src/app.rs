//! Entry points over HTTP, kept thin: the Functions custom-handler functions (EncryptionDrift,
//! Reconcile, the forwarded Api routes) and the direct Event Grid webhook. All of them hand the
//! work to the same [`Pipeline`].

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use functions_runtime::{FunctionApp, Invocation, InvocationError, InvocationResult};
use keyguard_core::ResourceId;
use keyguard_core::event::{EventKind, IncomingEvent, parse_delivery, parse_event};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::pipeline::{Outcome, Pipeline, Trigger};

pub const BODY_LIMIT: usize = 4 * 1024 * 1024;
/// (function folder name, trigger binding name) as declared in `function-app/*/function.json`.
pub const EVENT_FUNCTION: (&str, &str) = ("EncryptionDrift", "eventGridEvent");
pub const TIMER_FUNCTION: (&str, &str) = ("Reconcile", "timer");

#[derive(Clone)]
pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    pub webhook_key: Option<Arc<str>>,
}

/// The router the Functions host talks to: payload-mode functions plus the forwarded `/api/*` routes.
pub fn functions_router(state: AppState) -> Router {
    FunctionApp::new()
        .with_state(state.clone())
        .function(EVENT_FUNCTION.0, EVENT_FUNCTION.1, encryption_drift)
        .function(TIMER_FUNCTION.0, TIMER_FUNCTION.1, reconcile_timer)
        .routes(api_routes(state))
        .body_limit(BODY_LIMIT)
        .into_router()
}

/// Direct Event Grid delivery (no Functions host) plus the same API routes.
pub fn webhook_router(state: AppState) -> Router {
    let events = Router::new()
        .route("/api/events", post(webhook_events).options(webhook_options))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state.clone());
    FunctionApp::new()
        .routes(events.merge(api_routes(state)))
        .body_limit(BODY_LIMIT)
        .into_router()
}

fn api_routes(state: AppState) -> Router {
    Router::new()
        .route("/api/check", post(api_check))
        .route("/api/health", get(api_health))
        .route("/api/audit", get(api_audit))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn encryption_drift(invocation: Invocation<Value>, state: AppState) -> Result<InvocationResult, InvocationError> {
    let event =
        parse_event(&invocation.data).map_err(|e| InvocationError::rejected(400, "InvalidEvent", e.to_string()))?;
    let outcome = handle(&state.pipeline, &event).await?;
    let mut result = InvocationResult::new();
    result.log(outcome.summary());
    result.return_value(serde_json::to_value(&outcome).unwrap_or(Value::Null));
    Ok(result)
}

async fn handle(pipeline: &Pipeline, event: &IncomingEvent) -> Result<Outcome, InvocationError> {
    pipeline.handle_event(event).await.map_err(|e| {
        tracing::error!(event_id = %event.id, error = %e, retryable = e.retryable(), "event processing failed");
        if e.retryable() {
            InvocationError::retryable(format!("event {} not processed, retry: {e}", event.id))
        } else {
            InvocationError::rejected(
                422,
                "Unprocessable",
                format!("event {} cannot be processed: {e}", event.id),
            )
        }
    })
}

/// The timer sweep: re-check every resource keyguard has seen, so a lost event never leaves
/// drift unseen for longer than one schedule period. (Listing whole subscriptions comes with the scan API.)
async fn reconcile_timer(_invocation: Invocation<Value>, state: AppState) -> Result<InvocationResult, InvocationError> {
    let pipeline = &state.pipeline;
    let now = time::OffsetDateTime::now_utc();
    match pipeline.store().prune(now, pipeline.retention()).await {
        Ok(report) => tracing::info!(?report, "pruned expired state"),
        Err(e) => tracing::warn!(error = %e, "could not prune expired state"),
    }
    let resources = pipeline
        .store()
        .known_resources()
        .await
        .map_err(|e| InvocationError::retryable(e.to_string()))?;
    let deadline = std::time::Instant::now() + pipeline.time_budget();
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let mut result = InvocationResult::new();
    let (mut checked, mut drift, mut failed) = (0u32, 0u32, 0u32);
    for id in &resources {
        if std::time::Instant::now() >= deadline {
            result.log(format!(
                "time budget reached after {checked} of {} resources",
                resources.len()
            ));
            break;
        }
        match pipeline.reconcile(id, Trigger::Reconcile, &correlation_id, false).await {
            Ok(outcome) => {
                checked += 1;
                if outcome.verdict == "drift" {
                    drift += 1;
                    result.log(outcome.summary());
                }
            }
            Err(e) => {
                failed += 1;
                result.log(format!("{id}: {e}"));
            }
        }
    }
    result.log(format!(
        "reconcile: {checked} checked, {drift} drifted, {failed} failed"
    ));
    result.return_value(json!({"checked": checked, "drift": drift, "failed": failed, "correlationId": correlation_id}));
    Ok(result)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CheckRequest {
    resource_id: String,
    #[serde(default)]
    dry_run: bool,
}

async fn api_check(State(state): State<AppState>, headers: HeaderMap, query: Query<KeyQuery>, body: Bytes) -> Response {
    if let Some(denied) = unauthorized(&state, &headers, &query) {
        return denied;
    }
    if !is_json(&headers, &["application/json"]) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "send Content-Type: application/json",
        );
    }
    let request: CheckRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidRequest", &format!("request body: {e}")),
    };
    let id = match ResourceId::parse(&request.resource_id) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidResourceId", &e.to_string()),
    };
    let correlation_id =
        header_value(&headers, "x-ms-correlation-request-id").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    match state
        .pipeline
        .reconcile(&id, Trigger::Manual, &correlation_id, request.dry_run)
        .await
    {
        Ok(outcome) => (StatusCode::OK, axum::Json(outcome)).into_response(),
        Err(e) if e.retryable() => error(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", &e.to_string()),
        Err(e) => error(StatusCode::BAD_GATEWAY, "ArmError", &e.to_string()),
    }
}

async fn api_health(State(state): State<AppState>) -> Response {
    // A point read proves the store answers without scanning it on every probe.
    let store_ok = state.pipeline.store().ping().await.is_ok();
    let body = json!({
        "status": if store_ok { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "catalogTypes": keyguard_core::catalog::entries().len(),
        "storeReachable": store_ok,
        "store": state.pipeline.store().describe(),
        "dryRun": state.pipeline.config().settings.dry_run,
    });
    let status = if store_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

#[derive(Deserialize, Default)]
struct KeyQuery {
    code: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    code: Option<String>,
    /// A resource id: only its records.
    resource: Option<String>,
    /// RFC 3339 time or an age such as `24h`, `7d`.
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
}

/// The persisted audit trail, oldest first (the newest `limit` records; 1,000 by default).
async fn api_audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(params) = match params {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidQuery", &e.body_text()),
    };
    let key = KeyQuery {
        code: params.code.clone(),
    };
    if let Some(denied) = unauthorized(&state, &headers, &key) {
        return denied;
    }
    let now = time::OffsetDateTime::now_utc();
    let query = match crate::audit::query_from(
        params.resource.as_deref(),
        params.since.as_deref(),
        params.until.as_deref(),
        Some(params.limit.unwrap_or(1000).min(10_000)),
        now,
    ) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidQuery", &e),
    };
    match state
        .pipeline
        .store()
        .audit_records::<crate::pipeline::AuditRecord>(&query)
        .await
    {
        Ok(records) => (StatusCode::OK, axum::Json(json!({ "value": records }))).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "audit trail unreadable");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "StoreUnavailable",
                "the state store did not answer",
            )
        }
    }
}

/// Event Grid delivers to `https://.../api/events?code=<secret>` (the secret rides in the
/// subscription's encrypted endpoint URL); compare in constant time.
/// `Some(401 response)` when a key is configured and the request does not carry it.
fn unauthorized(state: &AppState, headers: &HeaderMap, query: &KeyQuery) -> Option<Response> {
    let expected = state.webhook_key.as_ref()?;
    let presented = query
        .code
        .clone()
        .or_else(|| header_value(headers, "x-functions-key"))
        .unwrap_or_default();
    if constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        None
    } else {
        Some(error(StatusCode::UNAUTHORIZED, "Unauthorized", "missing or wrong key"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const EVENT_GRID_ORIGINS: [&str; 5] = [
    "eventgrid.azure.net",
    "eventgrid.azure.us",
    "eventgrid.azure.cn",
    "eventgrid.azure.eaglex.ic.gov",
    "eventgrid.azure.microsoft.scloud",
];

/// CloudEvents abuse-protection handshake: grant only Event Grid's own origins.
async fn webhook_options(State(state): State<AppState>, headers: HeaderMap, query: Query<KeyQuery>) -> Response {
    if let Some(denied) = unauthorized(&state, &headers, &query) {
        return denied;
    }
    let origin = header_value(&headers, "webhook-request-origin").unwrap_or_default();
    if !EVENT_GRID_ORIGINS.iter().any(|o| o.eq_ignore_ascii_case(origin.trim())) {
        return error(
            StatusCode::FORBIDDEN,
            "OriginNotAllowed",
            "WebHook-Request-Origin is not an Event Grid origin",
        );
    }
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(origin.trim()) {
        h.insert("webhook-allowed-origin", v);
    }
    h.insert("webhook-allowed-rate", HeaderValue::from_static("*"));
    h.insert("allow", HeaderValue::from_static("POST, OPTIONS"));
    response
}

async fn webhook_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Query<KeyQuery>,
    body: Bytes,
) -> Response {
    if let Some(denied) = unauthorized(&state, &headers, &query) {
        return denied;
    }
    if !is_json(
        &headers,
        &[
            "application/json",
            "application/cloudevents+json",
            "application/cloudevents-batch+json",
        ],
    ) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "send application/json or application/cloudevents+json",
        );
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidJson",
                &format!("body is not JSON: {e}"),
            );
        }
    };
    let events = match parse_delivery(&value) {
        Ok(events) => events,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidEvent", &e.to_string()),
    };
    // The Event Grid-schema handshake: echo the code synchronously.
    for event in events.iter().flatten() {
        if let EventKind::SubscriptionValidation { validation_code, .. } = &event.kind {
            tracing::info!(event_id = %event.id, subscription = header_value(&headers, "aeg-subscription-name").unwrap_or_default(), "Event Grid subscription validated");
            return (
                StatusCode::OK,
                axum::Json(json!({"validationResponse": validation_code})),
            )
                .into_response();
        }
    }
    let mut outcomes = Vec::new();
    let mut rejected = Vec::new();
    for event in events {
        match event {
            Ok(event) => match handle(&state.pipeline, &event).await {
                Ok(outcome) => outcomes.push(outcome),
                // Event Grid redelivers the whole batch; already-handled events are deduped.
                Err(e) => {
                    return error(
                        StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                        "NotProcessed",
                        &e.to_string(),
                    );
                }
            },
            Err(e) => rejected.push(e.to_string()),
        }
    }
    if !rejected.is_empty() {
        // 400 is not retried by Event Grid: the delivery goes to the dead-letter container, not lost.
        return error(StatusCode::BAD_REQUEST, "InvalidEvent", &rejected.join("; "));
    }
    (
        StatusCode::OK,
        axum::Json(json!({"processed": outcomes.len(), "outcomes": outcomes})),
    )
        .into_response()
}

fn is_json(headers: &HeaderMap, accepted: &[&str]) -> bool {
    let Some(content_type) = header_value(headers, "content-type") else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    accepted.contains(&essence.as_str())
}

fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_json(relative: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(relative);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The Functions host routes by folder name and keys `Data` by binding name: both must match the code.
    #[test]
    fn function_app_declarations_match_the_registered_functions() {
        for ((folder, binding), trigger) in [(EVENT_FUNCTION, "eventGridTrigger"), (TIMER_FUNCTION, "timerTrigger")] {
            let function = read_json(&format!("function-app/{folder}/function.json"));
            let first = &function["bindings"][0];
            assert_eq!(first["type"], trigger, "{folder}");
            assert_eq!(first["name"], binding, "{folder}");
            assert_eq!(first["direction"], "in", "{folder}");
        }
        let api = read_json("function-app/Api/function.json");
        assert_eq!(api["bindings"][0]["type"], "httpTrigger");
        assert_eq!(api["bindings"][0]["route"], "{*path}");
        assert_eq!(api["bindings"][1]["type"], "http");
        assert_eq!(
            api["bindings"].as_array().map(Vec::len),
            Some(2),
            "forwarding needs exactly http in + http out"
        );

        let host = read_json("host.json");
        assert_eq!(host["version"], "2.0");
        assert_eq!(
            host["customHandler"]["description"]["defaultExecutablePath"],
            "keyguard"
        );
        assert_eq!(
            host["customHandler"]["description"]["arguments"],
            serde_json::json!(["serve"])
        );
        assert_eq!(host["customHandler"]["enableForwardingHttpRequest"], true);
        assert_eq!(
            host["extensionBundle"]["id"],
            "Microsoft.Azure.Functions.ExtensionBundle"
        );
        assert_eq!(host["extensionBundle"]["version"], "[4.*, 5.0.0)");
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h, &["application/json"]));
        h.insert(
            "content-type",
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(is_json(&h, &["application/json"]));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        assert!(!is_json(&h, &["application/json"]));
    }
}
