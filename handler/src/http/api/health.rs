//! `GET /api/health`: the status for anyone, the details for authenticated callers.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::arm::ArmClient;
use crate::http::AppState;
use crate::http::auth::AuthError;

/// How long `/api/health` waits for the store and for a token: a probe must answer in time even
/// when a dependency hangs, and a dependency that slow is not healthy.
const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Status for anyone, details for authenticated callers (see the docs of [`crate::http`] for why).
pub(in crate::http) async fn api_health(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let principal = match state.auth.authorize(&headers, &uri).await {
        Ok(principal) => Some(principal),
        Err(AuthError::Missing) => None,
        Err(e) => {
            tracing::warn!(reason = %e, "health details refused");
            return state.auth.rejection(&e);
        }
    };
    let context = &state.reconcile;
    // A point read proves the store answers without scanning it on every probe.
    let (store, identity) = tokio::join!(
        tokio::time::timeout(HEALTH_PROBE_TIMEOUT, context.store.ping()),
        token_check(&context.arm),
    );
    let store_ok = match store {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health: the state store did not answer");
            false
        }
        Err(_) => {
            tracing::warn!(
                timeout_secs = HEALTH_PROBE_TIMEOUT.as_secs(),
                "health: the state store timed out"
            );
            false
        }
    };
    let healthy = store_ok && identity.is_ok();
    let (status, label) = if healthy {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "degraded")
    };
    let Some(principal) = principal else {
        return (status, axum::Json(json!({"status": label}))).into_response();
    };
    tracing::info!(
        caller_kind = principal.kind.as_str(),
        caller = principal.subject.as_deref(),
        status = status.as_u16(),
        "API call GET /api/health"
    );
    let mut identity_body = json!({"tokenObtainable": identity.is_ok()});
    if let Err(problem) = &identity {
        identity_body["error"] = json!(problem.to_string());
    }
    let body = json!({
        "status": label,
        "version": env!("CARGO_PKG_VERSION"),
        "catalogTypes": keyguard_core::catalog::entries().len(),
        "profiles": context.config.profiles.len(),
        "storeReachable": store_ok,
        "store": context.store.describe(),
        "identity": identity_body,
        "dryRun": state.dry_run,
    });
    (status, axum::Json(body)).into_response()
}

/// Why health says the identity is not working. Fixed phrases: the credential's own message can
/// carry endpoints and tenant details, so it goes to the log only.
#[derive(Debug, thiserror::Error)]
enum TokenCheckError {
    #[error("the credential did not issue a token (details in the log)")]
    NotIssued,
    #[error("no token within {} s", HEALTH_PROBE_TIMEOUT.as_secs())]
    TimedOut,
}

/// Whether keyguard's credential hands out an ARM token.
async fn token_check(arm: &ArmClient) -> Result<(), TokenCheckError> {
    match tokio::time::timeout(HEALTH_PROBE_TIMEOUT, arm.tokens().token(arm.scope())).await {
        Ok(Ok(_token)) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health: no ARM token");
            Err(TokenCheckError::NotIssued)
        }
        Err(_) => {
            tracing::warn!(
                timeout_secs = HEALTH_PROBE_TIMEOUT.as_secs(),
                "health: the token request timed out"
            );
            Err(TokenCheckError::TimedOut)
        }
    }
}
