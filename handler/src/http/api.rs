//! The `/api/*` handlers, a file per route (the route table is in [`super`]); the request and
//! error helpers they share are here.

mod audit;
mod check;
mod findings;
mod health;
mod scan;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub(super) use audit::api_audit;
pub(super) use check::api_check;
pub(super) use findings::api_findings;
pub(super) use health::api_health;
pub(super) use scan::api_scan;

use super::{OPENAPI_DOCUMENT, body_rejected, error, header_value, is_json};

/// A JSON request body, or the answer that refuses it (413 too large, 415 not JSON, 400 bad JSON).
#[allow(clippy::result_large_err)] // the refusal is the handler's whole answer, returned at once
fn json_request<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Response> {
    let body = body.map_err(|rejection| body_rejected(&rejection))?;
    if !is_json(headers, &["application/json"]) {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "send Content-Type: application/json",
        ));
    }
    serde_json::from_slice(&body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, "InvalidRequest", &format!("request body: {e}")))
}

/// A failure of keyguard's own dependencies (store, identity, ARM). Its text can carry credential,
/// endpoint and tenant details, which `/api/health` hides for the same reason: it goes to the log
/// under the correlation id, and the caller gets a fixed message naming that id. 503 when retrying
/// may help, 502 when a dependency refused or the stored state is unreadable.
fn failure(retryable: bool, what: &str, correlation_id: &str, cause: &dyn std::fmt::Display) -> Response {
    tracing::error!(correlation_id, retryable, error = %cause, "{what} failed");
    let (status, code, reason) = if retryable {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "the state store, keyguard's identity or ARM is not available now; try again later",
        )
    } else {
        (
            StatusCode::BAD_GATEWAY,
            "NotRetryable",
            "ARM, Key Vault, the token endpoint or the state store refused a call keyguard made, or keyguard's stored state is unreadable; retrying will not help",
        )
    };
    let message = format!(
        "{what} did not complete: {reason}. The details are in keyguard's log under correlation id {correlation_id}."
    );
    let mut response = error(status, code, &message);
    if let Ok(value) = HeaderValue::from_str(correlation_id) {
        response.headers_mut().insert("x-ms-correlation-request-id", value);
    }
    response
}

pub(super) async fn api_openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_DOCUMENT).into_response()
}

fn store_unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "StoreUnavailable",
        "the state store did not answer",
    )
}

/// The caller's `x-ms-correlation-request-id` (ARM's name for it) when it looks like an id, else a
/// new one: it is logged and echoed, so it must not carry arbitrary text.
fn correlation_id(headers: &HeaderMap) -> String {
    header_value(headers, "x-ms-correlation-request-id")
        .filter(|id| {
            (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}
