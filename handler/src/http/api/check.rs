//! `POST /api/check`: one resource through the pipeline, now.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keyguard_core::ResourceId;
use serde::Deserialize;

use super::{correlation_id, failure, json_request};
use crate::http::{AppState, error};
use crate::reconcile::{self, Attempt, Trigger, VerdictKind};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CheckRequest {
    resource_id: String,
    #[serde(default)]
    dry_run: bool,
}

pub(in crate::http) async fn api_check(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request: CheckRequest = match json_request(&headers, body) {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    let id = match ResourceId::parse(&request.resource_id) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidResourceId", &e.to_string()),
    };
    let correlation_id = correlation_id(&headers);
    let attempt = Attempt::new(Trigger::Manual, &correlation_id, request.dry_run);
    match reconcile::reconcile(&state.reconcile, &id, attempt).await {
        // Recorded like any decision (its finding is dropped), but the caller asked about a resource
        // that is not there: that is a 404, not a verdict.
        Ok(outcome) if outcome.outcome.verdict == VerdictKind::Gone => error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!("ARM has no resource {id}"),
        ),
        Ok(outcome) => (StatusCode::OK, axum::Json(outcome)).into_response(),
        Err(e) => failure(e.retryable(), "the check", &correlation_id, &e),
    }
}
