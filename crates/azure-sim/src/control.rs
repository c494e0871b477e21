//! The `/_sim` control API: unauthenticated, never logged and never faulted, because it is
//! the test's or demo's hand on the simulator rather than part of the simulated Azure.
//!
//! Listing, quotas and bulk seeding (for sweeps):
//!
//! * `POST /_sim/seed/bulk` — body: [`crate::BulkSeed`] in camelCase, e.g.
//!   `{"subscription": "…", "resourceGroups": 10, "perType": {"Microsoft.Storage/storageAccounts":
//!   4000}, "driftEvery": 10, "expect": "cmk"}`; answers [`crate::BulkSeedReport`]
//!   `{"created", "perType", "drifted": [ids], "resourceGroups"}`; 400 for an unsupported type;
//! * `GET /_sim/listing`, `PUT /_sim/listing` — `{"page_size": 100, "management_groups":
//!   {"mg-name": ["sub-id", …]}}` ([`crate::ListingConfig`]; fields left out of a PUT keep their
//!   value);
//! * `GET /_sim/throttle`, `PUT /_sim/throttle` — `{"graph": {"limit": 15, "window_ms": 5000,
//!   "enforce": true}, "arm_reads": {…}, "arm_writes": {…}}` ([`crate::ThrottleConfig`]; quotas
//!   left out of a PUT keep their value; every PUT restarts all quota windows);
//! * `GET /_sim/requests` entries carry `kind` (`graph`, `list`, `read`, `write`, `poll`, `msi`,
//!   `keyvault`) so a test can count calls by kind.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::eventgrid::{DEFAULT_FUNCTION_NAME, DeliveryConfig, DeliveryMode, OutputSchema};
use crate::faults::FaultSpec;
use crate::keyvault::KeySpec;
use crate::lro::LroConfig;
use crate::{BulkSeed, Principal, Quota, Sim};

type S = State<Arc<Sim>>;

pub(crate) fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/resources", post(post_resources).get(get_resources))
        .route("/resource", get(get_resource).delete(delete_resource))
        .route("/act", post(act))
        .route("/token", post(token))
        .route("/requests", get(get_requests).delete(clear_requests))
        .route("/faults", post(add_fault).get(get_faults).delete(clear_faults))
        .route("/faults/{id}", delete(remove_fault))
        .route("/events", post(post_events).get(get_events))
        .route("/deliveries", get(get_deliveries))
        .route("/deadletters", get(get_deadletters))
        .route("/delivery", get(get_delivery).put(put_delivery).delete(delete_delivery))
        .route("/msi", get(msi_stats))
        .route("/lro", get(get_lro).put(put_lro))
        .route("/operations", get(get_operations))
        .route("/keys", post(post_keys).get(get_keys).delete(delete_keys))
        .route("/seed/bulk", post(seed_bulk))
        .route("/listing", get(get_listing).put(put_listing))
        .route("/throttle", get(get_throttle).put(put_throttle))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

fn one_or_many(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        other => vec![other],
    }
}

async fn post_resources(State(sim): S, body: Bytes) -> Response {
    let docs = match parse::<Value>(&body) {
        Ok(v) => one_or_many(v),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match sim.upsert_resources(docs) {
        Ok(n) => Json(json!({"upserted": n})).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn get_resources(State(sim): S) -> Response {
    Json(sim.resources()).into_response()
}

#[derive(Deserialize)]
struct IdQuery {
    id: Option<String>,
}

async fn get_resource(State(sim): S, Query(q): Query<IdQuery>) -> Response {
    let Some(id) = q.id else {
        return error(StatusCode::BAD_REQUEST, "query parameter `id` is required");
    };
    match sim.resource(&id) {
        Some(doc) => Json(doc).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no resource '{id}'")),
    }
}

async fn delete_resource(State(sim): S, Query(q): Query<IdQuery>) -> Response {
    let Some(id) = q.id else {
        return error(StatusCode::BAD_REQUEST, "query parameter `id` is required");
    };
    if sim.delete_resource(&id) {
        Json(json!({"deleted": id})).into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no resource '{id}'"))
    }
}

#[derive(Deserialize)]
struct ActBody {
    id: String,
    principal: Principal,
    patch: Value,
}

async fn act(State(sim): S, body: Bytes) -> Response {
    let b: ActBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let out = sim.act(&b.id, &b.principal, &b.patch);
    let status = StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(out.body)).into_response()
}

#[derive(Deserialize)]
struct TokenBody {
    oid: String,
    appid: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    upn: Option<String>,
    #[serde(default)]
    tid: Option<String>,
    /// Lifetime override; negative mints an expired token.
    #[serde(default)]
    expires_in_secs: Option<i64>,
}

async fn token(State(sim): S, body: Bytes) -> Response {
    let b: TokenBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let principal = Principal {
        oid: b.oid,
        appid: b.appid,
        name: b.name,
        upn: b.upn,
    };
    let (tok, exp) = sim.issue_token_with(&principal, b.tid.as_deref(), b.expires_in_secs);
    Json(json!({"access_token": tok, "expires_on": exp.to_string(), "token_type": "Bearer"})).into_response()
}

async fn get_requests(State(sim): S) -> Response {
    Json(sim.requests()).into_response()
}

async fn clear_requests(State(sim): S) -> Response {
    sim.clear_requests();
    StatusCode::NO_CONTENT.into_response()
}

async fn add_fault(State(sim): S, body: Bytes) -> Response {
    let spec: FaultSpec = match parse(&body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if spec.status.is_none() && spec.latency_ms.is_none() && spec.latency_after_ms.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "a fault needs `status`, `latency_ms` or `latency_after_ms`",
        );
    }
    if let Some(s) = spec.status
        && !(100..=999).contains(&s)
    {
        return error(StatusCode::BAD_REQUEST, format!("invalid status {s}"));
    }
    let id = sim.add_fault(spec);
    (StatusCode::CREATED, Json(json!({"id": id}))).into_response()
}

async fn get_faults(State(sim): S) -> Response {
    Json(sim.faults()).into_response()
}

async fn clear_faults(State(sim): S) -> Response {
    sim.clear_faults();
    StatusCode::NO_CONTENT.into_response()
}

async fn remove_fault(State(sim): S, Path(id): Path<String>) -> Response {
    if sim.remove_fault(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no fault '{id}'"))
    }
}

async fn post_events(State(sim): S, body: Bytes) -> Response {
    let events = match parse::<Value>(&body) {
        Ok(v) => one_or_many(v),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if let Some(bad) = events.iter().find(|e| !e.is_object()) {
        return error(StatusCode::BAD_REQUEST, format!("event is not an object: {bad}"));
    }
    let n = events.len();
    sim.enqueue_events(events);
    (StatusCode::ACCEPTED, Json(json!({"enqueued": n}))).into_response()
}

async fn get_events(State(sim): S) -> Response {
    Json(sim.events()).into_response()
}

async fn get_deliveries(State(sim): S) -> Response {
    Json(sim.deliveries()).into_response()
}

async fn get_deadletters(State(sim): S) -> Response {
    Json(sim.deadletters()).into_response()
}

#[derive(Deserialize)]
struct DeliveryBody {
    mode: DeliveryMode,
    url: String,
    function_name: Option<String>,
    schema: Option<OutputSchema>,
    max_attempts: Option<u32>,
    time_factor: Option<f64>,
    timeout_ms: Option<u64>,
}

async fn put_delivery(State(sim): S, body: Bytes) -> Response {
    let b: DeliveryBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if let Some(tf) = b.time_factor
        && !(tf.is_finite() && tf >= 0.0)
    {
        return error(StatusCode::BAD_REQUEST, "time_factor must be a finite number >= 0");
    }
    let defaults = DeliveryConfig::functions(b.url.clone());
    let cfg = DeliveryConfig {
        mode: b.mode,
        url: b.url,
        function_name: b.function_name.unwrap_or_else(|| DEFAULT_FUNCTION_NAME.to_owned()),
        schema: b.schema.unwrap_or(OutputSchema::EventGrid),
        max_attempts: b.max_attempts.unwrap_or(defaults.max_attempts).max(1),
        time_factor: b.time_factor.unwrap_or(defaults.time_factor),
        timeout: b.timeout_ms.map(Duration::from_millis).unwrap_or(defaults.timeout),
    };
    let view = cfg.to_json();
    sim.set_delivery(Some(cfg));
    Json(view).into_response()
}

async fn get_delivery(State(sim): S) -> Response {
    Json(sim.delivery().map(|c| c.to_json())).into_response()
}

async fn delete_delivery(State(sim): S) -> Response {
    sim.set_delivery(None);
    StatusCode::NO_CONTENT.into_response()
}

async fn msi_stats(State(sim): S) -> Response {
    Json(json!({"token_requests": sim.token_requests(), "issued_tokens": sim.issued_tokens()})).into_response()
}

/// `PUT /_sim/lro` `{"polls": n, "fail": bool, "retry_after"?: secs, "error_code"?,
/// "error_message"?, "error_status"?}`; missing fields take their defaults.
async fn put_lro(State(sim): S, body: Bytes) -> Response {
    let cfg: LroConfig = match parse(&body) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if !(100..=599).contains(&cfg.error_status) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("invalid error_status {}", cfg.error_status),
        );
    }
    sim.set_lro_config(cfg.clone());
    Json(cfg).into_response()
}

async fn get_lro(State(sim): S) -> Response {
    Json(sim.lro_config()).into_response()
}

async fn get_operations(State(sim): S) -> Response {
    Json(sim.operations()).into_response()
}

/// `POST /_sim/keys` with one key spec or an array; answers `{"kids": [...]}`.
async fn post_keys(State(sim): S, body: Bytes) -> Response {
    let specs = match parse::<Value>(&body) {
        Ok(v) => one_or_many(v),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let mut parsed = Vec::with_capacity(specs.len());
    for s in specs {
        match serde_json::from_value::<KeySpec>(s) {
            Ok(k) if !k.vault.trim().is_empty() && !k.name.trim().is_empty() && !k.name.contains('/') => {
                parsed.push(k);
            }
            Ok(_) => return error(StatusCode::BAD_REQUEST, "a key needs a non-empty `vault` and `name`"),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid key spec: {e}")),
        }
    }
    let kids = sim.seed_keys(parsed);
    Json(json!({"kids": kids})).into_response()
}

async fn get_keys(State(sim): S) -> Response {
    Json(sim.seeded_keys()).into_response()
}

async fn delete_keys(State(sim): S) -> Response {
    sim.clear_keys();
    StatusCode::NO_CONTENT.into_response()
}

async fn seed_bulk(State(sim): S, body: Bytes) -> Response {
    let spec: BulkSeed = match parse(&body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match sim.seed_bulk(&spec) {
        Ok(report) => Json(report).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

#[derive(Deserialize)]
struct ListingBody {
    page_size: Option<usize>,
    management_groups: Option<BTreeMap<String, Vec<String>>>,
}

async fn get_listing(State(sim): S) -> Response {
    Json(sim.listing_config()).into_response()
}

async fn put_listing(State(sim): S, body: Bytes) -> Response {
    let b: ListingBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if b.page_size == Some(0) {
        return error(StatusCode::BAD_REQUEST, "page_size must be at least 1");
    }
    let mut cfg = sim.listing_config();
    if let Some(n) = b.page_size {
        cfg.page_size = n;
    }
    if let Some(mgs) = b.management_groups {
        cfg.management_groups = mgs;
    }
    sim.set_listing_config(cfg);
    Json(sim.listing_config()).into_response()
}

#[derive(Deserialize)]
struct ThrottleBody {
    graph: Option<Quota>,
    arm_reads: Option<Quota>,
    arm_writes: Option<Quota>,
}

async fn get_throttle(State(sim): S) -> Response {
    Json(sim.throttle_config()).into_response()
}

async fn put_throttle(State(sim): S, body: Bytes) -> Response {
    let b: ThrottleBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if let Some(bad) = [b.graph, b.arm_reads, b.arm_writes]
        .into_iter()
        .flatten()
        .find(|q| q.window_ms == 0)
    {
        return error(StatusCode::BAD_REQUEST, format!("window_ms must be > 0: {bad:?}"));
    }
    let mut cfg = sim.throttle_config();
    cfg.graph = b.graph.unwrap_or(cfg.graph);
    cfg.arm_reads = b.arm_reads.unwrap_or(cfg.arm_reads);
    cfg.arm_writes = b.arm_writes.unwrap_or(cfg.arm_writes);
    sim.set_throttle_config(cfg);
    Json(cfg).into_response()
}
