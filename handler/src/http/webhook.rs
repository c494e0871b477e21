//! `/api/events`: Event Grid delivering straight to `keyguard webhook` (no Functions host), already
//! authenticated by the events authenticator when it gets here.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use functions_runtime::InvocationError;
use keyguard_core::event::{EventKind, parse_delivery};
use serde_json::{Value, json};

use super::{AppState, body_rejected, error, handle, header_value, is_json};

/// Event Grid batches at most 5,000 events per delivery (`maxEventsPerBatch`); a longer array is
/// not from Event Grid, and refusing it keeps the work and the answer for one request bounded.
const MAX_EVENTS_PER_DELIVERY: usize = 5_000;
/// How many refused events an answer names; the count says how many more there were.
const MAX_REASONS_SHOWN: usize = 10;

const EVENT_GRID_ORIGINS: [&str; 5] = [
    "eventgrid.azure.net",
    "eventgrid.azure.us",
    "eventgrid.azure.cn",
    "eventgrid.azure.eaglex.ic.gov",
    "eventgrid.azure.microsoft.scloud",
];

/// CloudEvents abuse-protection handshake: grant only Event Grid's own origins.
/// Authenticated before it gets here (the events authenticator), like `POST /api/events`.
pub(super) async fn webhook_options(headers: HeaderMap) -> Response {
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

/// Event Grid's deliveries, authenticated before the body is read (see [`super::ApiRouter::finish`]).
pub(super) async fn webhook_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_rejected(&rejection),
    };
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
    if events.len() > MAX_EVENTS_PER_DELIVERY {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidEvent",
            &format!(
                "a delivery holds at most {MAX_EVENTS_PER_DELIVERY} events (Event Grid's largest batch); this one holds {}",
                events.len()
            ),
        );
    }
    // The Event Grid-schema handshake: echo the code synchronously. Event Grid sends it alone; an
    // answer to a handshake would acknowledge every other event of the delivery unprocessed.
    for event in events.iter().flatten() {
        if let EventKind::SubscriptionValidation { validation_code, .. } = &event.kind {
            if events.len() > 1 {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidEvent",
                    &format!(
                        "event {} is a subscription validation, which is delivered alone; this delivery holds {} events",
                        event.id,
                        events.len()
                    ),
                );
            }
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
    let mut not_processed = Vec::new();
    for event in events {
        match event {
            Ok(event) => match handle(&state.reconcile, &event).await {
                Ok(outcome) => outcomes.push(outcome),
                // Retrying cannot fix it: the batch's other events are still handled first.
                Err(e @ InvocationError::Rejected { .. }) => not_processed.push(e.to_string()),
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
        let mut message = rejected
            .iter()
            .take(MAX_REASONS_SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if rejected.len() > MAX_REASONS_SHOWN {
            message.push_str(&format!("; and {} more", rejected.len() - MAX_REASONS_SHOWN));
        }
        return error(StatusCode::BAD_REQUEST, "InvalidEvent", &message);
    }
    if !not_processed.is_empty() {
        return error(StatusCode::BAD_REQUEST, "NotProcessed", &not_processed.join("; "));
    }
    if !not_processed.is_empty() {
        return error(StatusCode::BAD_REQUEST, "NotProcessed", &not_processed.join("; "));
    }
    (
        StatusCode::OK,
        axum::Json(json!({"processed": outcomes.len(), "outcomes": outcomes})),
    )
        .into_response()
}
