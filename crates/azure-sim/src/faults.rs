//! Fault injection, the request log and the ARM response headers: everything that wraps an
//! ARM or MSI request from the outside, so the services themselves stay oblivious to it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Sim;
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

/// ARM's hourly per-subscription quotas as the older docs describe them; only reported
/// (advisory headers), never enforced: throttling is what faults are for.
pub(crate) struct RateLimit {
    window_start: Instant,
    reads: u32,
    writes: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            window_start: Instant::now(),
            reads: 0,
            writes: 0,
        }
    }
}

const READS_PER_HOUR: u32 = 12_000;
const WRITES_PER_HOUR: u32 = 1_200;

impl RateLimit {
    fn take(&mut self, write: bool) -> u32 {
        if self.window_start.elapsed() >= Duration::from_secs(3600) {
            *self = RateLimit::default();
        }
        if write {
            self.writes = self.writes.saturating_add(1);
            WRITES_PER_HOUR.saturating_sub(self.writes)
        } else {
            self.reads = self.reads.saturating_add(1);
            READS_PER_HOUR.saturating_sub(self.reads)
        }
    }
}

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
        Surface::Arm | Surface::Vault => json!({"error": {"code": fault_code(status_u16), "message": message}}),
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

/// Middleware around every non-control request: assigns ids, injects faults, adds ARM's
/// response headers and writes the request log.
pub(crate) async fn observe(State(sim): State<Arc<Sim>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if path.starts_with("/_sim") {
        return next.run(req).await;
    }
    let surface = if path.eq_ignore_ascii_case("/msi/token") {
        Surface::Msi
    } else if path.starts_with("/keyvault/") {
        Surface::Vault
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
    let fault = sim.take_fault(&method, &path);
    if let Some(ms) = fault.as_ref().and_then(|f| f.latency_ms) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut resp = match &fault {
        Some(spec) if spec.status.is_some() => fault_response(surface, spec, &method),
        _ => next.run(req).await,
    };

    if surface == Surface::Vault
        && let Ok(v) = HeaderValue::from_str(&ctx.request_id)
    {
        resp.headers_mut().insert("x-ms-request-id", v);
    }
    if surface == Surface::Arm {
        let write = method != Method::GET && method != Method::HEAD;
        let remaining = lock(&sim.ratelimit).take(write);
        let h = resp.headers_mut();
        let pairs = [
            ("x-ms-request-id", ctx.request_id.clone()),
            ("x-ms-correlation-request-id", ctx.correlation_id.clone()),
            (
                if write {
                    "x-ms-ratelimit-remaining-subscription-writes"
                } else {
                    "x-ms-ratelimit-remaining-subscription-reads"
                },
                remaining.to_string(),
            ),
        ];
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
    sim.log_request(RequestLogEntry {
        seq: 0,
        method: method.to_string(),
        path,
        query,
        status: resp.status().as_u16(),
        principal_oid,
        correlation_id,
        at,
    });
    // Logged as served (the write is done); only the answer is late.
    if let Some(ms) = fault.as_ref().and_then(|f| f.latency_after_ms) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    resp
}
