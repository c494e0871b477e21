//! `POST /api/scan`: a sweep of a scope, within the API's time budget.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{correlation_id, failure, json_request};
use crate::http::{AppState, error};
use crate::reconcile::Context;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ScanBody {
    scope: String,
    #[serde(default)]
    types: Vec<String>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    mode: ScanMode,
    require: Option<crate::cli::report::RequireArg>,
    resume_token: Option<String>,
}

#[derive(Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
enum ScanMode {
    /// Evaluate and record only: nothing is written to ARM.
    #[default]
    Report,
    /// Act as the profiles say (revert in enforce mode).
    Remediate,
}

/// `POST /api/scan`: a sweep of a scope within the API's budget; an unfinished one answers with a
/// `resumeToken` to continue from.
pub(in crate::http) async fn api_scan(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request: ScanBody = match json_request(&headers, body) {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    // A "." or ".." segment is no Azure name, and in a listing URL it would climb out of the scope
    // (url normalises `/resourceGroups/../providers/...` to the whole subscription). Scope::parse
    // (sweep.rs) is where this belongs; until then the API, the one caller taking scopes from
    // anyone, refuses them here.
    if request
        .scope
        .split('/')
        .any(|segment| matches!(segment.trim(), "." | ".."))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidScope",
            "scope must not contain \".\" or \"..\" segments",
        );
    }
    let scope = match crate::sweep::Scope::parse(&request.scope) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidScope", &e),
    };
    let derived;
    let context: &Context = match request.require {
        Some(require) => {
            let mut config = (*state.reconcile.config).clone();
            crate::cli::report::apply_requirement(&mut config, Some(require));
            derived = state.reconcile.with_config(config);
            &derived
        }
        None => &state.reconcile,
    };
    let scan = crate::sweep::ScanRequest {
        scope,
        types: request.types,
        dry_run: request.dry_run || request.mode == ScanMode::Report || request.require.is_some(),
        listing: crate::sweep::Listing::Auto,
        resume: request.resume_token.is_some(),
        budget: state.sweep.api_budget,
    };
    if let Some(token) = &request.resume_token
        && *token != crate::sweep::checkpoint_key(&scan)
    {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidResumeToken",
            "resumeToken belongs to a scan of another scope, type list or mode",
        );
    }
    match crate::sweep::scan(context, &scan, &|_| {}).await {
        Ok(report) => (StatusCode::OK, axum::Json(report)).into_response(),
        Err(crate::sweep::SweepError::Invalid(message)) => error(StatusCode::BAD_REQUEST, "InvalidRequest", &message),
        Err(e) => failure(e.retryable(), "the scan", &correlation_id(&headers), &e),
    }
}
