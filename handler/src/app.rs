//! Entry points over HTTP, kept thin: the Functions custom-handler functions (EncryptionDrift,
//! Reconcile, the forwarded Api routes) and the direct Event Grid webhook. All of them hand the
//! work to the same [`Pipeline`].
//!
//! # The `/api/*` routes
//!
//! [`API_ROUTES`] lists every route with who may call it; the routers are built through it (a
//! route missing from the list does not start) and the OpenAPI document `handler/openapi.json`,
//! served at `GET /api/openapi.json`, is tested against it and against the real responses.
//!
//! - [`Access::Authenticated`] routes go through [`api_auth::require_auth`]: under the Functions
//!   host the host has already checked the function key (`authLevel: function`), standalone an API
//!   key or an Entra ID token is required (see [`api_auth`] for the settings; with neither
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

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, RawQuery, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use functions_runtime::{FunctionApp, Invocation, InvocationError, InvocationResult};
use keyguard_core::ResourceId;
use keyguard_core::event::{EventKind, IncomingEvent, parse_delivery, parse_event};
use keyguard_report::{Finding, FindingVerdict, Format, ReportContext};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_auth::{self, ApiAuthenticator, AuthError, Principal};
use crate::arm::ArmClient;
use crate::pipeline::{Outcome, Pipeline, Trigger};

pub const BODY_LIMIT: usize = 4 * 1024 * 1024;
/// (function folder name, trigger binding name) as declared in `function-app/*/function.json`.
pub const EVENT_FUNCTION: (&str, &str) = ("EncryptionDrift", "eventGridEvent");
pub const TIMER_FUNCTION: (&str, &str) = ("Reconcile", "timer");

/// The API's description, kept in the repository and served verbatim.
pub const OPENAPI_DOCUMENT: &str = include_str!("../openapi.json");

/// How long `/api/health` waits for the store and for a token: a probe must answer in time even
/// when a dependency hangs, and a dependency that slow is not healthy.
const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    /// Decides who may call the [`Access::Authenticated`] routes (and see health's details).
    pub auth: Arc<ApiAuthenticator>,
    /// Decides who may deliver to `/api/events` ([`Access::EventGrid`]).
    pub events_auth: Arc<ApiAuthenticator>,
    /// Whether keyguard runs in dry run (configuration or `KEYGUARD_DRY_RUN`), for health and reports.
    pub dry_run: bool,
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Through [`api_auth::require_auth`].
    Authenticated,
    /// Anyone (`/api/health` shows its details to authenticated callers only).
    Open,
    /// Through [`api_auth::require_auth`] with the events authenticator: Event Grid's webhook key
    /// or its Entra ID token.
    EventGrid,
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
            .route_layer(middleware::from_fn_with_state(
                state.auth.clone(),
                api_auth::require_auth,
            ));
        // Under the Functions host no events route is registered, and axum refuses a route layer
        // over no route.
        let events = if self.has_events {
            self.events.route_layer(middleware::from_fn_with_state(
                state.events_auth.clone(),
                api_auth::require_auth,
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

/// One line per authenticated API call: who (kind and subject, never the credential), what, how it ended.
async fn log_api_call(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let principal = request.extensions().get::<Principal>().cloned();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        caller_kind = principal.as_ref().map(|p| p.kind.as_str()),
        caller = principal.as_ref().and_then(|p| p.subject.as_deref()),
        "API call"
    );
    response
}

async fn encryption_drift(invocation: Invocation<Value>, state: AppState) -> Result<InvocationResult, InvocationError> {
    let event =
        parse_event(&invocation.data).map_err(|e| InvocationError::rejected(400, "InvalidEvent", e.to_string()))?;
    let mut result = InvocationResult::new();
    match handle(&state.pipeline, &event).await {
        Ok(outcome) => {
            result.log(outcome.summary());
            result.return_value(serde_json::to_value(&outcome).unwrap_or(Value::Null));
        }
        // The host fails an invocation on any error answer and Event Grid then redelivers for up
        // to a day, to the same answer: one retrying cannot fix is answered as taken, the log
        // says why, and the next timer reconcile looks at the resource again.
        Err(InvocationError::Rejected { message, .. }) => {
            tracing::warn!(event_id = %event.id, "not retryable: answered as taken, so Event Grid does not redeliver it");
            result.log(format!("{message} (not retryable: not redelivered)"));
            result.return_value(json!({"notProcessed": message, "retryable": false}));
        }
        Err(retry) => return Err(retry),
    }
    Ok(result)
}

async fn handle(pipeline: &Pipeline, event: &IncomingEvent) -> Result<Outcome, InvocationError> {
    pipeline.handle_event(event).await.map_err(|e| {
        tracing::error!(event_id = %event.id, error = %e, retryable = e.retryable(), "event processing failed");
        if e.retryable() {
            InvocationError::retryable(format!("event {} not processed, retry: {e}", event.id))
        } else {
            // 400: Event Grid dead-letters a webhook delivery at once (it retries a 422 for a day).
            InvocationError::rejected(
                400,
                "NotProcessed",
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
    if pipeline.sweep_settings().scopes.is_empty() {
        return recheck_known_resources(pipeline).await;
    }
    // Sweep each configured scope, resuming where the last run stopped.
    let mut result = InvocationResult::new();
    let mut summaries = Vec::new();
    for scope in &pipeline.sweep_settings().scopes {
        let request = crate::sweep::ScanRequest {
            scope: scope.clone(),
            types: Vec::new(),
            dry_run: false,
            listing: crate::sweep::Listing::Auto,
            resume: true,
            budget: pipeline.sweep_settings().timer_budget / pipeline.sweep_settings().scopes.len().max(1) as u32,
        };
        let report = crate::sweep::scan(pipeline, &request, &|progress| {
            tracing::debug!(listed = progress.listed, evaluated = progress.evaluated, total = ?progress.total, "sweep progress");
        })
        .await
        .map_err(|e| InvocationError::retryable(format!("sweep of {}: {e}", scope.path())))?;
        result.log(format!(
            "sweep {}: {} listed, {} evaluated, {} drift, {} error, {}",
            report.scope,
            report.listed,
            report.evaluated,
            report.summary.drift,
            report.summary.error,
            if report.complete {
                "complete"
            } else {
                "unfinished: resumes next run"
            }
        ));
        summaries.push(json!({
            "scope": report.scope, "complete": report.complete, "listed": report.listed,
            "evaluated": report.evaluated, "summary": report.summary,
        }));
    }
    result.return_value(json!({ "sweeps": summaries }));
    Ok(result)
}

/// Without configured sweep scopes: re-check every resource keyguard has seen, so a lost event
/// never leaves drift unseen for longer than one schedule period.
async fn recheck_known_resources(pipeline: &Pipeline) -> Result<InvocationResult, InvocationError> {
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

async fn api_check(State(state): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let request: CheckRequest = match json_request(&headers, body) {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    let id = match ResourceId::parse(&request.resource_id) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidResourceId", &e.to_string()),
    };
    let correlation_id = correlation_id(&headers);
    match state
        .pipeline
        .reconcile(&id, Trigger::Manual, &correlation_id, request.dry_run)
        .await
    {
        // Recorded like any decision (its finding is dropped), but the caller asked about a resource
        // that is not there: that is a 404, not a verdict.
        Ok(outcome) if outcome.verdict == "gone" => error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!("ARM has no resource {id}"),
        ),
        Ok(outcome) => (StatusCode::OK, axum::Json(outcome)).into_response(),
        Err(e) => failure(e.retryable(), "the check", &correlation_id, &e),
    }
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
    require: Option<crate::cli_scan::RequireArg>,
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
async fn api_scan(State(state): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let request: ScanBody = match json_request(&headers, body) {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    let scope = match crate::sweep::Scope::parse(&request.scope) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidScope", &e.to_string()),
    };
    let derived;
    let pipeline: &Pipeline = match request.require {
        Some(require) => {
            let mut config = state.pipeline.config().clone();
            crate::cli_scan::apply_requirement(&mut config, Some(require));
            derived = state.pipeline.with_config(config);
            &derived
        }
        None => &state.pipeline,
    };
    let scan = crate::sweep::ScanRequest {
        scope,
        types: request.types,
        dry_run: request.dry_run || request.mode == ScanMode::Report || request.require.is_some(),
        listing: crate::sweep::Listing::Auto,
        resume: request.resume_token.is_some(),
        budget: state.pipeline.sweep_settings().api_budget,
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
    match crate::sweep::scan(pipeline, &scan, &|_| {}).await {
        Ok(report) => (StatusCode::OK, axum::Json(report)).into_response(),
        Err(crate::sweep::SweepError::Invalid(message)) => error(StatusCode::BAD_REQUEST, "InvalidRequest", &message),
        Err(e) => failure(e.retryable(), "the scan", &correlation_id(&headers), &e),
    }
}

/// `GET /api/findings` query: filters and the output format.
#[derive(Debug, PartialEq)]
struct FindingsQuery {
    /// Empty: every verdict.
    verdicts: BTreeSet<FindingVerdict>,
    subscription: Option<String>,
    resource_group: Option<String>,
    resource_type: Option<String>,
    format: Format,
}

const FINDINGS_PARAMETERS: &str = "verdict, subscription, resourceGroup, type, format";
const FINDINGS_FORMATS: [Format; 4] = [Format::Json, Format::Csv, Format::Sarif, Format::Html];

impl FindingsQuery {
    /// Parsed by hand because `verdict` may repeat (`?verdict=drift&verdict=error`), which serde's
    /// query deserializer cannot express next to unknown-key rejection.
    fn parse(raw: Option<&str>) -> Result<Self, FindingsQueryError> {
        let mut query = FindingsQuery {
            verdicts: BTreeSet::new(),
            subscription: None,
            resource_group: None,
            resource_type: None,
            format: Format::Json,
        };
        let mut format: Option<Format> = None;
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let value = value.trim();
            match key.as_ref() {
                "verdict" => {
                    for item in value.split(',').map(str::trim) {
                        let verdict = FindingVerdict::ALL
                            .into_iter()
                            .find(|v| v.as_str().eq_ignore_ascii_case(item))
                            .ok_or_else(|| FindingsQueryError::UnknownVerdict(item.to_string()))?;
                        query.verdicts.insert(verdict);
                    }
                }
                "subscription" => set_once(&mut query.subscription, "subscription", value)?,
                "resourceGroup" => set_once(&mut query.resource_group, "resourceGroup", value)?,
                "type" => set_once(&mut query.resource_type, "type", value)?,
                "format" => {
                    if format.is_some() {
                        return Err(FindingsQueryError::Repeated("format"));
                    }
                    let parsed = value
                        .parse::<Format>()
                        .ok()
                        .filter(|f| FINDINGS_FORMATS.contains(f))
                        .ok_or_else(|| FindingsQueryError::UnknownFormat(value.to_string()))?;
                    format = Some(parsed);
                }
                // The Functions key: the host checks it before forwarding the request.
                "code" => {}
                other => return Err(FindingsQueryError::UnknownParameter(other.to_string())),
            }
        }
        query.format = format.unwrap_or(Format::Json);
        Ok(query)
    }

    fn matches(&self, finding: &Finding) -> bool {
        let same = |wanted: &Option<String>, actual: Option<&str>| {
            wanted
                .as_deref()
                .is_none_or(|w| actual.is_some_and(|a| a.eq_ignore_ascii_case(w)))
        };
        (self.verdicts.is_empty() || self.verdicts.contains(&finding.verdict))
            && same(&self.subscription, finding.subscription_id.as_deref())
            && same(&self.resource_group, finding.resource_group.as_deref())
            && same(&self.resource_type, Some(&finding.resource_type))
    }

    /// The report's scope line.
    fn describe(&self) -> String {
        let mut parts = vec!["latest finding per resource".to_string()];
        if let Some(s) = &self.subscription {
            parts.push(format!("subscription {s}"));
        }
        if let Some(g) = &self.resource_group {
            parts.push(format!("resource group {g}"));
        }
        if let Some(t) = &self.resource_type {
            parts.push(format!("type {t}"));
        }
        if !self.verdicts.is_empty() {
            let verdicts: Vec<&str> = self.verdicts.iter().map(|v| v.as_str()).collect();
            parts.push(format!("verdict {}", verdicts.join(",")));
        }
        parts.join(" / ")
    }
}

/// Why `GET /api/findings` refuses its query.
#[derive(Debug, thiserror::Error)]
enum FindingsQueryError {
    #[error("verdict {0:?} is not one of compliant, drift, exempt, unsupported, error")]
    UnknownVerdict(String),
    #[error("format {0:?} is not one of json, csv, sarif, html")]
    UnknownFormat(String),
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("{0} is given more than once")]
    Repeated(&'static str),
    #[error("unknown query parameter {0:?}; expected {FINDINGS_PARAMETERS}")]
    UnknownParameter(String),
}

fn set_once(slot: &mut Option<String>, name: &'static str, value: &str) -> Result<(), FindingsQueryError> {
    if value.is_empty() {
        return Err(FindingsQueryError::Empty(name));
    }
    if slot.is_some() {
        return Err(FindingsQueryError::Repeated(name));
    }
    *slot = Some(value.to_string());
    Ok(())
}

/// The latest finding per resource, as JSON with a summary or as a CSV, SARIF or HTML report.
async fn api_findings(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let query = match FindingsQuery::parse(raw.as_deref()) {
        Ok(q) => q,
        Err(problem) => return error(StatusCode::BAD_REQUEST, "InvalidQuery", &problem.to_string()),
    };
    let findings = match state.pipeline.store().findings().await {
        Ok(findings) => findings,
        Err(e) => {
            tracing::error!(error = %e, "findings unreadable");
            return store_unavailable();
        }
    };
    let findings: Vec<Finding> = findings.into_iter().filter(|f| query.matches(f)).collect();
    if query.format == Format::Json {
        let summary = keyguard_report::summarize(&findings);
        return (
            StatusCode::OK,
            axum::Json(json!({"value": findings, "summary": summary})),
        )
            .into_response();
    }
    let context = ReportContext {
        dry_run: state.dry_run,
        ..ReportContext::new(
            env!("CARGO_PKG_VERSION"),
            time::OffsetDateTime::now_utc(),
            &query.describe(),
        )
    };
    let body = keyguard_report::render(&findings, query.format, &context);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, query.format.media_type())],
        body,
    )
        .into_response()
}

/// Status for anyone, details for authenticated callers (see the module docs for why).
async fn api_health(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let principal = match state.auth.authorize(&headers, &uri).await {
        Ok(principal) => Some(principal),
        Err(AuthError::Missing) => None,
        Err(e) => {
            tracing::warn!(reason = %e, "health details refused");
            return state.auth.rejection(&e);
        }
    };
    let pipeline = &state.pipeline;
    // A point read proves the store answers without scanning it on every probe.
    let (store, identity) = tokio::join!(
        tokio::time::timeout(HEALTH_PROBE_TIMEOUT, pipeline.store().ping()),
        token_check(pipeline.arm()),
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
        "profiles": pipeline.config().profiles.len(),
        "storeReachable": store_ok,
        "store": pipeline.store().describe(),
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

async fn api_openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_DOCUMENT).into_response()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AuditParams {
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
async fn api_audit(
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
        .pipeline
        .store()
        .audit_records::<crate::pipeline::AuditRecord>(&query)
        .await
    {
        Ok(records) => (StatusCode::OK, axum::Json(json!({ "value": records }))).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "audit trail unreadable");
            store_unavailable()
        }
    }
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

fn store_unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "StoreUnavailable",
        "the state store did not answer",
    )
}

const EVENT_GRID_ORIGINS: [&str; 5] = [
    "eventgrid.azure.net",
    "eventgrid.azure.us",
    "eventgrid.azure.cn",
    "eventgrid.azure.eaglex.ic.gov",
    "eventgrid.azure.microsoft.scloud",
];

/// CloudEvents abuse-protection handshake: grant only Event Grid's own origins.
/// Authenticated before it gets here (the events authenticator), like `POST /api/events`.
async fn webhook_options(headers: HeaderMap) -> Response {
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

/// Event Grid's deliveries, authenticated before the body is read (see [`ApiRouter::finish`]).
async fn webhook_events(
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
    let mut not_processed = Vec::new();
    for event in events {
        match event {
            Ok(event) => match handle(&state.pipeline, &event).await {
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
        return error(StatusCode::BAD_REQUEST, "InvalidEvent", &rejected.join("; "));
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
mod openapi_tests;

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
