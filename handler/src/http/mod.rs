//! Entry points over HTTP, kept thin: the Functions custom-handler functions (EncryptionDrift,
//! Reconcile, the forwarded Api routes) and the direct Event Grid webhook. All of them hand the
//! work to the same reconcile ([`crate::reconcile::reconcile`]).
//!
//! # The `/api/*` routes
//!
//! [`API_ROUTES`] lists every route with who may call it; the routers are built through it (a
//! route missing from the list does not start) and the OpenAPI document `handler/openapi.json`,
//! served at `GET /api/openapi.json`, is tested against it and against the real responses.
//!
//! - [`Access::Authenticated`] routes go through [`auth::require_auth`]: under the Functions
//!   host the host has already checked the function key (`authLevel: function`), standalone an API
//!   key or an Entra ID token is required (see [`auth`] for the settings; with neither
//!   configured they answer 401). Each call is logged with the caller's kind and subject, never its
//!   credential.
//! - `/api/events` ([`Access::EventGrid`]) is Event Grid's webhook, behind its own authenticator:
//!   the webhook key (`KEYGUARD_WEBHOOK_KEY`, sent as `?code=`) or the Microsoft Entra token Event
//!   Grid sends when the subscription uses Entra authentication (`KEYGUARD_EVENTGRID_*`). Neither
//!   configured: 401. The check runs before the body is read.
//! - `keyguard webhook --insecure-no-auth` opens every route, with a warning per request.
//! - `/api/openapi.json` is public: it describes the API and holds nothing about the deployment.
//! - `/api/health` answers everyone, but with `{"status"}` only unless the caller is
//!   authenticated. Load balancers, container orchestrators and uptime monitors probe without
//!   credentials and only need the status code; the details (store location, identity errors,
//!   dry-run) help an attacker more than a prober, so they stay behind authentication. A request
//!   that presents a wrong credential still gets 401, so a misconfigured client learns about it.
//!   Under the Functions host the host's key check applies to every forwarded route, health included.
//!
//! The route table and the plumbing every entry point shares are here; the handlers sit in
//! [`functions`] (the Functions host's functions), [`api`] (`/api/*`) and [`webhook`]
//! (`/api/events`), and who may call what in [`auth`].

mod api;
pub mod auth;
mod functions;
pub mod in_flight;
mod webhook;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::handler::Handler;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use functions_runtime::{FunctionApp, InvocationError};
use keyguard_core::event::IncomingEvent;
use serde_json::json;

use crate::reconcile::{self, Context, Decision};
use api::{api_audit, api_check, api_findings, api_health, api_openapi, api_scan};
use auth::{Access, ApiAuthenticator, log_api_call};
use functions::{EVENT_FUNCTION, TIMER_FUNCTION, encryption_drift, reconcile_timer};
use webhook::{webhook_events, webhook_options};

pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// The API's description, kept in the repository and served verbatim.
pub const OPENAPI_DOCUMENT: &str = include_str!("../../openapi.json");

#[derive(Clone)]
pub struct AppState {
    pub reconcile: Arc<Context>,
    /// What the timer sweeps and how long sweeps may run.
    pub sweep: crate::sweep::SweepSettings,
    /// What the timer's pruning keeps.
    pub retention: crate::store::Retention,
    /// Decides who may call the [`Access::Authenticated`] routes (and see health's details).
    pub auth: Arc<ApiAuthenticator>,
    /// Decides who may deliver to `/api/events` ([`Access::EventGrid`]).
    pub events_auth: Arc<ApiAuthenticator>,
    /// Whether keyguard runs in dry run (configuration or `KEYGUARD_DRY_RUN`), for health and reports.
    pub dry_run: bool,
}

/// One `/api/*` route. See the module docs.
#[derive(Clone, Copy, Debug)]
pub struct ApiRoute {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    /// Served by `keyguard webhook` only: under the Functions host, events arrive through the
    /// `EncryptionDrift` function instead.
    pub webhook_only: bool,
}

impl ApiRoute {
    const fn new(method: &'static str, path: &'static str, access: Access) -> Self {
        Self {
            method,
            path,
            access,
            webhook_only: false,
        }
    }

    const fn webhook_only(mut self) -> Self {
        self.webhook_only = true;
        self
    }
}

/// Every `/api/*` route keyguard serves. `handler/openapi.json` documents exactly these.
pub const API_ROUTES: &[ApiRoute] = &[
    ApiRoute::new("POST", "/api/check", Access::Authenticated),
    ApiRoute::new("POST", "/api/scan", Access::Authenticated),
    ApiRoute::new("GET", "/api/findings", Access::Authenticated),
    ApiRoute::new("GET", "/api/audit", Access::Authenticated),
    ApiRoute::new("GET", "/api/health", Access::Open),
    ApiRoute::new("GET", "/api/openapi.json", Access::Open),
    ApiRoute::new("POST", "/api/events", Access::EventGrid).webhook_only(),
    ApiRoute::new("OPTIONS", "/api/events", Access::EventGrid).webhook_only(),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Host {
    Functions,
    Webhook,
}

/// The router the Functions host talks to: payload-mode functions plus the forwarded `/api/*` routes.
pub fn functions_router(state: AppState) -> Router {
    FunctionApp::new()
        .with_state(state.clone())
        .function(EVENT_FUNCTION.0, EVENT_FUNCTION.1, encryption_drift)
        .function(TIMER_FUNCTION.0, TIMER_FUNCTION.1, reconcile_timer)
        .routes(api_routes(state, Host::Functions))
        .body_limit(BODY_LIMIT)
        .into_router()
}

/// Direct Event Grid delivery (no Functions host) plus the same API routes.
pub fn webhook_router(state: AppState) -> Router {
    FunctionApp::new()
        .routes(api_routes(state, Host::Webhook))
        .body_limit(BODY_LIMIT)
        .into_router()
}

fn api_routes(state: AppState, host: Host) -> Router {
    ApiRouter::new(host)
        .add("POST", "/api/check", api_check)
        .add("POST", "/api/scan", api_scan)
        .add("GET", "/api/findings", api_findings)
        .add("GET", "/api/audit", api_audit)
        .add("GET", "/api/health", api_health)
        .add("GET", "/api/openapi.json", api_openapi)
        .add("POST", "/api/events", webhook_events)
        .add("OPTIONS", "/api/events", webhook_options)
        .finish(state)
}

/// Registers routes under the access [`API_ROUTES`] gives them.
struct ApiRouter {
    host: Host,
    authenticated: Router<AppState>,
    events: Router<AppState>,
    /// Whether `events` holds a route (a route layer over none is refused by axum).
    has_events: bool,
    open: Router<AppState>,
}

impl ApiRouter {
    fn new(host: Host) -> Self {
        Self {
            host,
            authenticated: Router::new(),
            events: Router::new(),
            has_events: false,
            open: Router::new(),
        }
    }

    /// Panics on a route missing from [`API_ROUTES`]: a programming error, caught by every test
    /// that builds a router, so an undocumented route cannot ship.
    fn add<H, T>(mut self, method: &'static str, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let Some(route) = API_ROUTES.iter().find(|r| r.method == method && r.path == path) else {
            panic!("{method} {path} is not listed in API_ROUTES (nor, then, in openapi.json)");
        };
        if route.webhook_only && self.host != Host::Webhook {
            return self;
        }
        let filter = match method {
            "GET" => MethodFilter::GET,
            "POST" => MethodFilter::POST,
            "OPTIONS" => MethodFilter::OPTIONS,
            "PUT" => MethodFilter::PUT,
            "DELETE" => MethodFilter::DELETE,
            other => panic!("API_ROUTES: method {other} is not supported"),
        };
        let group = match route.access {
            Access::Authenticated => &mut self.authenticated,
            Access::EventGrid => {
                self.has_events = true;
                &mut self.events
            }
            Access::Open => &mut self.open,
        };
        *group = std::mem::take(group).route(path, on(filter, handler));
        self
    }

    fn finish(self, state: AppState) -> Router {
        // Layers added last run first: require_auth, then the log line that names the caller.
        // Route layers run before the handler's extractors, so a refused body is never read.
        let authenticated = self
            .authenticated
            .route_layer(middleware::from_fn(log_api_call))
            .route_layer(middleware::from_fn_with_state(state.auth.clone(), auth::require_auth));
        // Under the Functions host no events route is registered, and axum refuses a route layer
        // over no route.
        let events = if self.has_events {
            self.events.route_layer(middleware::from_fn_with_state(
                state.events_auth.clone(),
                auth::require_auth,
            ))
        } else {
            self.events
        };
        authenticated
            .merge(events)
            .merge(self.open)
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(state)
    }
}

/// One event through the pipeline, for the `EncryptionDrift` function and the webhook alike: a
/// retryable failure asks for redelivery (500), any other is refused with 400, which Event Grid
/// dead-letters at once on the webhook (a 422 it would retry for a day). The error's own text can
/// carry credential, endpoint or tenant details (like `/api/check`'s), so it goes to the log under
/// the event id, and the sender learns only what to do.
async fn handle(context: &Context, event: &IncomingEvent) -> Result<Decision, InvocationError> {
    reconcile::handle_event(context, event).await.map_err(|e| {
        tracing::error!(event_id = %event.id, error = %e, retryable = e.retryable(), "event processing failed");
        let id = &event.id;
        if e.retryable() {
            InvocationError::retryable(format!(
                "event {id} was not processed: the state store, keyguard's identity or ARM is not available now; \
                 redeliver it. The details are in keyguard's log under this event id."
            ))
        } else {
            // 400: Event Grid dead-letters a webhook delivery at once (it retries a 422 for a day).
            InvocationError::rejected(
                400,
                "NotProcessed",
                format!(
                    "event {id} cannot be processed, and redelivering it will not help (a refusal, or stored state that \
                     is unreadable). The details are in keyguard's log under this event id."
                ),
            )
        }
    })
}

/// A body that could not be read (over [`BODY_LIMIT`], or a broken stream), in the API's error shape.
fn body_rejected(rejection: &BytesRejection) -> Response {
    let status = rejection.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "PayloadTooLarge"
    } else {
        "InvalidRequest"
    };
    error(status, code, &rejection.body_text())
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
mod access_tests;
#[cfg(test)]
mod event_failure_tests;
#[cfg(test)]
mod hostile_env;
#[cfg(test)]
mod hostile_rows;
#[cfg(test)]
mod hostile_rows_ids;
#[cfg(test)]
mod hostile_socket_tests;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod openapi_tests;
#[cfg(test)]
mod response_tests;
#[cfg(test)]
mod test_env;

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

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
