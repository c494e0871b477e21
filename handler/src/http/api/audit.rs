//! `GET /api/audit`: the persisted audit trail.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::store_unavailable;
use crate::http::{AppState, error};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(in crate::http) struct AuditParams {
    /// A resource id: only its records.
    resource: Option<String>,
    /// RFC 3339 time or an age such as `24h`, `7d`.
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    /// The Functions key (`?code=`): the host checks it before forwarding the request.
    #[serde(rename = "code")]
    _functions_key: Option<serde::de::IgnoredAny>,
}

/// The persisted audit trail, oldest first: the newest `limit` records (1,000 by default, at most
/// 10,000), a bound the store's query applies.
pub(in crate::http) async fn api_audit(
    State(state): State<AppState>,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(params) = match params {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidQuery", &e.body_text()),
    };
    let now = time::OffsetDateTime::now_utc();
    let query = match crate::audit::query_from(
        params.resource.as_deref(),
        params.since.as_deref(),
        params.until.as_deref(),
        params.limit,
        now,
    ) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidQuery", &e.to_string()),
    };
    match state
        .reconcile
        .store
        .audit_records::<crate::reconcile::AuditRecord>(&query)
        .await
    {
        Ok(records) => (StatusCode::OK, axum::Json(json!({ "value": records }))).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "audit trail unreadable");
            store_unavailable()
        }
    }
}
