//! Fault injection, the request log and the ARM response headers: everything that wraps an
//! ARM or MSI request from the outside, so the services themselves stay oblivious to it.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Sim;
use crate::throttle::{Bucket, Verdict};
use crate::util::{lock, now_string};

/// A fault rule, as posted to `/_sim/faults`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FaultSpec {
    /// HTTP method to match (any when absent), compared case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Substring of the request path (case-insensitive); any path when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_contains: Option<String>,
    /// Status to answer with instead of the real response; only a delay when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// A delay after the request was served (a write is applied) and before the answer leaves:
    /// the caller can die between "ARM did it" and "I know ARM did it".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_after_ms: Option<u64>,
    /// Applies to the next n matching requests, then disappears; forever when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
}

/// A stored fault with its id and remaining count.
#[derive(Clone, Debug, Serialize)]
pub struct Fault {
    pub id: String,
    #[serde(flatten)]
    pub spec: FaultSpec,
}

impl Fault {
    fn matches(&self, method: &Method, path: &str) -> bool {
        let m = self
            .spec
            .method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()));
        let p = self
            .spec
            .path_contains
            .as_deref()
            .is_none_or(|needle| path.to_ascii_lowercase().contains(&needle.to_ascii_lowercase()));
        m && p && self.spec.times != Some(0)
    }
}

/// One ARM or MSI request as seen by the simulator.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RequestLogEntry {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    pub principal_oid: Option<String>,
    pub correlation_id: String,
    pub at: String,
    /// What the request was, so tests can count calls by kind: `graph` (Resource Graph query),
    /// `list` (ARM collection GET), `read`, `write`, `poll` (long-running operation status),
    /// `msi`, `keyvault`.
    #[serde(default)]
    pub kind: String,
}

#[derive(Default)]
pub(crate) struct RequestLog {
    next_seq: u64,
    pub entries: Vec<RequestLogEntry>,
}

/// Per-request ids, decided before the handler runs so fault responses carry them too.
#[derive(Clone, Debug)]
pub(crate) struct ReqCtx {
    pub correlation_id: String,
    pub request_id: String,
}

/// Set by handlers on their response so the log can name the caller.
#[derive(Clone, Debug)]
pub(crate) struct PrincipalOid(pub String);

impl Sim {
    /// Adds a fault rule and returns its id.
    pub fn add_fault(&self, spec: FaultSpec) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        lock(&self.faults).push(Fault { id: id.clone(), spec });
        id
    }

    pub fn faults(&self) -> Vec<Fault> {
        lock(&self.faults).clone()
    }

    /// Removes one fault; false when it did not exist (or was used up).
    pub fn remove_fault(&self, id: &str) -> bool {
        let mut f = lock(&self.faults);
        let before = f.len();
        f.retain(|x| x.id != id);
        f.len() != before
    }

    pub fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    /// The request log: every ARM and MSI request, in completion order.
    pub fn requests(&self) -> Vec<RequestLogEntry> {
        lock(&self.log).entries.clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.log).entries.clear();
    }

    /// Picks the first matching fault and consumes one use of it atomically, so concurrent
    /// requests never get more faulted answers than `times`.
    fn take_fault(&self, method: &Method, path: &str) -> Option<FaultSpec> {
        let mut faults = lock(&self.faults);
        let idx = faults.iter().position(|f| f.matches(method, path))?;
        let spec = faults[idx].spec.clone();
        if let Some(t) = faults[idx].spec.times.as_mut() {
            *t = t.saturating_sub(1);
            if *t == 0 {
                faults.remove(idx);
            }
        }
        Some(spec)
    }

    fn log_request(&self, mut entry: RequestLogEntry) {
        let mut log = lock(&self.log);
        log.next_seq += 1;
        entry.seq = log.next_seq;
        log.entries.push(entry);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Surface {
    Arm,
    /// `POST /providers/Microsoft.ResourceGraph/resources`: ARM's front door, Resource Graph's
    /// per-user quota headers.
    Graph,
    Msi,
    /// The Key Vault data plane: ARM-shaped errors, no ARM quota headers.
    Vault,
}

fn fault_code(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "InvalidAuthenticationToken",
        403 => "AuthorizationFailed",
        404 => "ResourceNotFound",
        409 => "Conflict",
        412 => "PreconditionFailed",
        429 => "TooManyRequests",
        500 => "InternalServerError",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        _ => "SimulatedFault",
    }
}

fn fault_response(surface: Surface, spec: &FaultSpec, method: &Method) -> Response {
    let status_u16 = spec.status.unwrap_or(500);
    let status = StatusCode::from_u16(status_u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let retry_after = spec.retry_after_secs.or((status_u16 == 429).then_some(1));
    let message = if status_u16 == 429 {
        format!(
            "Number of '{}' requests for subscription exceeded the limit. Please try again after '{}' seconds.",
            if *method == Method::GET { "read" } else { "write" },
            retry_after.unwrap_or(1)
        )
    } else {
        format!("Simulated fault: the server answered {status_u16}.")
    };
    let body = match surface {
        Surface::Arm | Surface::Graph | Surface::Vault => {
            json!({"error": {"code": fault_code(status_u16), "message": message}})
        }
        Surface::Msi => json!({
            "statusCode": status_u16,
            "message": message,
            "correlationId": uuid::Uuid::new_v4().to_string(),
        }),
    };
    let mut resp = (status, Json(body)).into_response();
    if let Some(secs) = retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert("retry-after", v);
    }
    resp
}

/// Which quota a request counts against and under which key.
struct QuotaUse {
    bucket: Bucket,
    key: String,
    /// ARM: the subscription in the path; `None` for tenant-level calls.
    subscription: Option<String>,
}

fn quota_use(surface: Surface, method: &Method, path: &str, caller: &str) -> Option<QuotaUse> {
    match surface {
        Surface::Graph => Some(QuotaUse {
            bucket: Bucket::Graph,
            key: caller.to_owned(),
            subscription: None,
        }),
        Surface::Arm => {
            let mut segs = path.split('/').filter(|s| !s.is_empty());
            let subscription = match (segs.next(), segs.next()) {
                (Some(first), Some(sub)) if first.eq_ignore_ascii_case("subscriptions") => {
                    Some(sub.to_ascii_lowercase())
                }
                _ => None,
            };
            let bucket = if is_read(method) {
                Bucket::ArmRead
            } else {
                Bucket::ArmWrite
            };
            Some(QuotaUse {
                bucket,
                key: format!("{}|{caller}", subscription.as_deref().unwrap_or("")),
                subscription,
            })
        }
        Surface::Msi | Surface::Vault => None,
    }
}

fn is_read(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD
}

/// The 429 each service answers when its quota is spent.
fn throttled_response(surface: Surface, usage: &QuotaUse, verdict: &Verdict, caller: &str, ctx: &ReqCtx) -> Response {
    let body = if surface == Surface::Graph {
        json!({"error": {
            "code": "RateLimiting",
            "message": format!(
                "Please provide below info when asking for support: timestamp = {}, correlationId = {}.",
                now_string(),
                ctx.correlation_id
            ),
            "details": [{
                "code": "RateLimiting",
                "message": "Client application has been throttled and should not attempt to repeat the request until an amount of time has elapsed. Please see https://aka.ms/resourcegraph-throttling for help."
            }]
        }})
    } else {
        let op = if usage.bucket == Bucket::ArmRead {
            "read"
        } else {
            "write"
        };
        let (code, scope) = match &usage.subscription {
            Some(s) => ("SubscriptionRequestsThrottled", format!("subscription '{s}'")),
            None => ("TenantRequestsThrottled", "tenant".to_owned()),
        };
        json!({"error": {
            "code": code,
            "message": format!(
                "Number of '{op}' requests for {scope} actor '{caller}' exceeded. Please try again after '{}' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling",
                verdict.retry_after_secs()
            ),
        }})
    };
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&verdict.retry_after_secs().to_string()) {
        resp.headers_mut().insert("retry-after", v);
    }
    resp
}

fn quota_headers(surface: Surface, usage: &QuotaUse, verdict: &Verdict) -> Vec<(&'static str, String)> {
    if surface == Surface::Graph {
        return vec![
            ("x-ms-user-quota-remaining", verdict.remaining.to_string()),
            ("x-ms-user-quota-resets-after", verdict.resets_after_hms()),
        ];
    }
    let name = match (usage.subscription.is_some(), usage.bucket == Bucket::ArmRead) {
        (true, true) => "x-ms-ratelimit-remaining-subscription-reads",
        (true, false) => "x-ms-ratelimit-remaining-subscription-writes",
        (false, true) => "x-ms-ratelimit-remaining-tenant-reads",
        (false, false) => "x-ms-ratelimit-remaining-tenant-writes",
    };
    vec![(name, verdict.remaining.to_string())]
}

/// Middleware around every non-control request: assigns ids, injects faults, applies quotas,
/// adds ARM's response headers and writes the request log.
pub(crate) async fn observe(State(sim): State<Arc<Sim>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if path.starts_with("/_sim") {
        return next.run(req).await;
    }
    let surface = if path.eq_ignore_ascii_case("/msi/token") {
        Surface::Msi
    } else if path.starts_with("/keyvault/") {
        Surface::Vault
    } else if crate::graph::is_graph_path(&path) {
        Surface::Graph
    } else {
        Surface::Arm
    };
    let method = req.method().clone();
    let query = req.uri().query().map(str::to_owned);
    let at = now_string();
    let correlation_id = req
        .headers()
        .get("x-ms-correlation-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let ctx = ReqCtx {
        correlation_id: correlation_id.clone(),
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    req.extensions_mut().insert(ctx.clone());

    // Who called, read before the request is consumed: faulted answers never reach the ARM handler,
    // yet the request log must still say whose call was throttled.
    let caller_oid = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| crate::identity::decode_token(t.trim()).ok())
        .and_then(|claims| claims.get("oid").and_then(|o| o.as_str()).map(str::to_owned));
    let caller = caller_oid.clone().unwrap_or_default();
    let fault = sim.take_fault(&method, &path);
    if let Some(ms) = fault.as_ref().and_then(|f| f.latency_ms) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let faulted = fault.as_ref().is_some_and(|f| f.status.is_some());
    let quota = quota_use(surface, &method, &path, &caller)
        .filter(|_| !faulted)
        .map(|usage| {
            let verdict = lock(&sim.throttle).take(usage.bucket, &usage.key);
            (usage, verdict)
        });
    let mut resp = match (&fault, &quota) {
        (Some(spec), _) if spec.status.is_some() => fault_response(surface, spec, &method),
        (_, Some((usage, verdict))) if verdict.throttled => throttled_response(surface, usage, verdict, &caller, &ctx),
        _ => next.run(req).await,
    };

    if surface == Surface::Vault
        && let Ok(v) = HeaderValue::from_str(&ctx.request_id)
    {
        resp.headers_mut().insert("x-ms-request-id", v);
    }
    if matches!(surface, Surface::Arm | Surface::Graph) {
        let mut pairs = vec![
            ("x-ms-request-id", ctx.request_id.clone()),
            ("x-ms-correlation-request-id", ctx.correlation_id.clone()),
        ];
        if let Some((usage, verdict)) = &quota {
            pairs.extend(quota_headers(surface, usage, verdict));
        }
        let h = resp.headers_mut();
        for (name, value) in pairs {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
    }
    let principal_oid = resp
        .extensions()
        .get::<PrincipalOid>()
        .map(|p| p.0.clone())
        .or(caller_oid);
    let kind = match surface {
        Surface::Graph => "graph",
        Surface::Msi => "msi",
        Surface::Vault => "keyvault",
        Surface::Arm => crate::listing::request_kind(&method, &path),
    };
    sim.log_request(RequestLogEntry {
        seq: 0,
        method: method.to_string(),
        path,
        query,
        status: resp.status().as_u16(),
        principal_oid,
        correlation_id,
        at,
        kind: kind.to_owned(),
    });
    // Logged as served (the write is done); only the answer is late.
    if let Some(ms) = fault.as_ref().and_then(|f| f.latency_after_ms) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    resp
}
