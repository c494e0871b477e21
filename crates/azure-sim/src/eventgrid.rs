//! Event Grid push delivery: either straight to a webhook, or the way the Functions host's
//! Event Grid extension hands an event to a custom handler.
//!
//! Every event gets its own task so one failing endpoint answer never holds up the rest of
//! the queue, mirroring Event Grid's lack of ordering guarantees.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::runtime::Handle;
use tokio::task::JoinSet;

use crate::util::{lock, now_string};

/// How events reach the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    /// Like the Functions host: `POST {url}/{function_name}` with a `Data`/`Metadata` envelope.
    Functions,
    /// Like Event Grid to a plain webhook: `POST {url}` with the event (array for Event Grid schema).
    Webhook,
}

/// The event schema of the (simulated) event subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OutputSchema {
    #[value(name = "eventgrid")]
    EventGrid,
    #[value(name = "cloudevents")]
    CloudEvents,
}

/// Where and how to deliver.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryConfig {
    pub mode: DeliveryMode,
    pub url: String,
    pub function_name: String,
    pub schema: OutputSchema,
    pub max_attempts: u32,
    /// Scales the retry schedule only (0.001 turns 10 s into 10 ms).
    pub time_factor: f64,
    /// Per-attempt HTTP timeout; not scaled, like Event Grid's fixed 30 s.
    pub timeout: Duration,
}

/// The function name keyguard's Event Grid-triggered function uses.
pub const DEFAULT_FUNCTION_NAME: &str = "EncryptionDrift";
/// Sent as `aeg-subscription-name`; Event Grid upper-cases subscription names.
pub const SUBSCRIPTION_NAME: &str = "KEYGUARD-SIM";

impl DeliveryConfig {
    pub fn functions(base_url: impl Into<String>) -> Self {
        DeliveryConfig {
            mode: DeliveryMode::Functions,
            url: base_url.into(),
            function_name: DEFAULT_FUNCTION_NAME.into(),
            schema: OutputSchema::EventGrid,
            max_attempts: 30,
            time_factor: 1.0,
            timeout: Duration::from_secs(30),
        }
    }

    pub fn webhook(url: impl Into<String>) -> Self {
        DeliveryConfig {
            mode: DeliveryMode::Webhook,
            ..DeliveryConfig::functions(url)
        }
    }

    /// JSON view used by the control API.
    pub fn to_json(&self) -> Value {
        json!({
            "mode": self.mode,
            "url": self.url,
            "function_name": self.function_name,
            "schema": self.schema,
            "max_attempts": self.max_attempts,
            "time_factor": self.time_factor,
            "timeout_ms": u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// One delivery attempt.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DeliveryAttempt {
    pub event_id: String,
    pub attempt: u32,
    /// HTTP status, or `None` for transport errors and timeouts.
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub at: String,
}

/// Event Grid's documented retry schedule; after the list, every 12 h.
const SCHEDULE_SECS: [u64; 9] = [10, 30, 60, 300, 600, 1800, 3600, 10_800, 21_600];

fn retry_delay(attempt: u32, time_factor: f64) -> Duration {
    let idx = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
    let secs = SCHEDULE_SECS.get(idx).copied().unwrap_or(43_200);
    let factor = if time_factor.is_finite() && time_factor >= 0.0 {
        time_factor
    } else {
        1.0
    };
    Duration::try_from_secs_f64(secs as f64 * factor).unwrap_or(Duration::from_secs(43_200))
}

/// An event waiting for a target.
struct Parked {
    event: Value,
    publish_time: String,
    attempts: u32,
}

pub(crate) struct Bus {
    runtime: Handle,
    http: reqwest::Client,
    config: Mutex<Option<DeliveryConfig>>,
    events: Mutex<Vec<Value>>,
    parked: Mutex<Vec<Parked>>,
    deliveries: Mutex<Vec<DeliveryAttempt>>,
    deadletters: Mutex<Vec<Value>>,
    deadletter_path: Option<PathBuf>,
    tasks: Mutex<JoinSet<()>>,
}

enum Outcome {
    Delivered,
    Retry,
    DeadLetterNow,
}

impl Bus {
    pub(crate) fn new(runtime: Handle, config: Option<DeliveryConfig>, deadletter_path: Option<PathBuf>) -> Arc<Bus> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Arc::new(Bus {
            runtime,
            http,
            config: Mutex::new(config),
            events: Mutex::new(Vec::new()),
            parked: Mutex::new(Vec::new()),
            deliveries: Mutex::new(Vec::new()),
            deadletters: Mutex::new(Vec::new()),
            deadletter_path,
            tasks: Mutex::new(JoinSet::new()),
        })
    }

    pub(crate) fn config(&self) -> Option<DeliveryConfig> {
        lock(&self.config).clone()
    }

    /// Replaces the target; events parked while there was none start delivering now.
    pub(crate) fn set_config(self: &Arc<Self>, cfg: Option<DeliveryConfig>) {
        let has = cfg.is_some();
        *lock(&self.config) = cfg;
        if has {
            let parked: Vec<Parked> = std::mem::take(&mut *lock(&self.parked));
            for p in parked {
                self.spawn(p);
            }
        }
    }

    pub(crate) fn enqueue(self: &Arc<Self>, event: Value) {
        lock(&self.events).push(event.clone());
        self.spawn(Parked {
            event,
            publish_time: now_string(),
            attempts: 0,
        });
    }

    fn spawn(self: &Arc<Self>, p: Parked) {
        let bus = Arc::clone(self);
        let mut tasks = lock(&self.tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn_on(deliver(bus, p), &self.runtime);
    }

    pub(crate) fn shutdown(&self) {
        lock(&self.tasks).abort_all();
    }

    pub(crate) fn events(&self) -> Vec<Value> {
        lock(&self.events).clone()
    }

    pub(crate) fn deliveries(&self) -> Vec<DeliveryAttempt> {
        lock(&self.deliveries).clone()
    }

    pub(crate) fn deadletters(&self) -> Vec<Value> {
        lock(&self.deadletters).clone()
    }

    /// Number of events accepted but waiting for a target to be configured.
    pub(crate) fn parked(&self) -> usize {
        lock(&self.parked).len()
    }

    async fn deadletter(&self, record: Value) {
        if let Some(path) = &self.deadletter_path {
            let line = format!("{record}\n");
            let res = async {
                let mut f = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await?;
                f.write_all(line.as_bytes()).await?;
                f.flush().await
            }
            .await;
            if let Err(e) = res {
                tracing::warn!(path = %path.display(), error = %e, "could not write dead-letter file");
            }
        }
        lock(&self.deadletters).push(record);
    }
}

fn event_id(event: &Value) -> String {
    event.get("id").and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// Event Grid schema -> CloudEvents 1.0 (the fields Event Grid maps for system topics).
pub fn to_cloud_event(event: &Value) -> Value {
    if event.get("specversion").is_some() {
        return event.clone();
    }
    let f = |k: &str| event.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "id": f("id"),
        "source": f("topic"),
        "subject": f("subject"),
        "type": f("eventType"),
        "time": f("eventTime"),
        "specversion": "1.0",
        "data": f("data"),
    })
}

/// The event in the subscription's output schema.
fn shape(event: &Value, schema: OutputSchema) -> Value {
    match schema {
        OutputSchema::EventGrid => event.clone(),
        OutputSchema::CloudEvents => to_cloud_event(event),
    }
}

/// `lastDeliveryOutcome` wording after Event Grid's metrics/dead-letter vocabulary.
fn outcome_name(status: Option<u16>, timed_out: bool) -> &'static str {
    match status {
        _ if timed_out => "TimedOut",
        None => "Aborted",
        Some(200..=204) => "Succeeded",
        Some(400) => "BadRequest",
        Some(401) => "Unauthorized",
        Some(403) => "Forbidden",
        Some(404) => "NotFound",
        Some(413) => "PayloadTooLarge",
        Some(429 | 503) => "Busy",
        Some(_) => "GenericError",
    }
}

struct AttemptResult {
    status: Option<u16>,
    error: Option<String>,
    timed_out: bool,
    outcome: Outcome,
}

async fn send_once(http: &reqwest::Client, cfg: &DeliveryConfig, event: &Value, attempt: u32) -> AttemptResult {
    let shaped = shape(event, cfg.schema);
    let req = match cfg.mode {
        DeliveryMode::Functions => {
            let url = format!(
                "{}/{}",
                cfg.url.trim_end_matches('/'),
                cfg.function_name.trim_start_matches('/')
            );
            let body = json!({
                "Data": {"eventGridEvent": shaped},
                "Metadata": {
                    "data": shaped.get("data").cloned().unwrap_or(Value::Null),
                    "sys": {
                        "MethodName": cfg.function_name,
                        "UtcNow": now_string(),
                        "RandGuid": uuid::Uuid::new_v4().to_string(),
                    }
                }
            });
            http.post(url)
                .header("content-type", "application/json; charset=utf-8")
                .header("x-azure-functions-invocationid", uuid::Uuid::new_v4().to_string())
                .header("user-agent", "Azure-Functions-Host/4.1037.0")
                .body(body.to_string())
        }
        DeliveryMode::Webhook => {
            let mut r = http
                .post(&cfg.url)
                .header("aeg-event-type", "Notification")
                .header("aeg-subscription-name", SUBSCRIPTION_NAME)
                .header("aeg-delivery-count", (attempt - 1).to_string())
                .header("aeg-output-event-id", event_id(event));
            match cfg.schema {
                OutputSchema::EventGrid => {
                    let dv = event
                        .get("dataVersion")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    let mv = event
                        .get("metadataVersion")
                        .and_then(Value::as_str)
                        .unwrap_or("1")
                        .to_owned();
                    r = r
                        .header("aeg-data-version", dv)
                        .header("aeg-metadata-version", mv)
                        .header("content-type", "application/json; charset=utf-8")
                        .body(Value::Array(vec![shaped]).to_string());
                }
                OutputSchema::CloudEvents => {
                    r = r
                        .header("aeg-metadata-version", "1.0")
                        .header("content-type", "application/cloudevents+json; charset=utf-8")
                        .body(shaped.to_string());
                }
            }
            r
        }
    };
    match req.timeout(cfg.timeout).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            match cfg.mode {
                DeliveryMode::Webhook => {
                    let outcome = match status {
                        200..=204 => Outcome::Delivered,
                        400 | 401 | 403 | 413 => Outcome::DeadLetterNow,
                        _ => Outcome::Retry,
                    };
                    AttemptResult {
                        status: Some(status),
                        error: None,
                        timed_out: false,
                        outcome,
                    }
                }
                DeliveryMode::Functions => {
                    // The host fails the invocation (and so answers Event Grid with 500)
                    // unless the handler returns 2xx with a JSON object body.
                    let ok = resp.status().is_success();
                    let body = resp.bytes().await.unwrap_or_default();
                    let is_object = serde_json::from_slice::<Value>(&body)
                        .map(|v| v.is_object())
                        .unwrap_or(false);
                    let (outcome, error) = match (ok, is_object) {
                        (true, true) => (Outcome::Delivered, None),
                        (true, false) => (
                            Outcome::Retry,
                            Some(
                                "handler reply is not a JSON object; the Functions host would fail the invocation"
                                    .to_owned(),
                            ),
                        ),
                        (false, _) => (Outcome::Retry, None),
                    };
                    AttemptResult {
                        status: Some(status),
                        error,
                        timed_out: false,
                        outcome,
                    }
                }
            }
        }
        Err(e) => AttemptResult {
            status: None,
            error: Some(e.to_string()),
            timed_out: e.is_timeout(),
            outcome: Outcome::Retry,
        },
    }
}

async fn deliver(bus: Arc<Bus>, mut p: Parked) {
    let id = event_id(&p.event);
    loop {
        let Some(cfg) = bus.config() else {
            lock(&bus.parked).push(p);
            return;
        };
        p.attempts += 1;
        let res = send_once(&bus.http, &cfg, &p.event, p.attempts).await;
        let at = now_string();
        lock(&bus.deliveries).push(DeliveryAttempt {
            event_id: id.clone(),
            attempt: p.attempts,
            status: res.status,
            error: res.error.clone(),
            at: at.clone(),
        });
        let reason = match res.outcome {
            Outcome::Delivered => return,
            Outcome::DeadLetterNow => Some("NonRetriableError"),
            Outcome::Retry if p.attempts >= cfg.max_attempts.max(1) => Some("MaxDeliveryAttemptsExceeded"),
            Outcome::Retry => None,
        };
        if let Some(reason) = reason {
            let mut record = shape(&p.event, cfg.schema);
            if let Some(obj) = record.as_object_mut() {
                obj.insert("deadLetterReason".into(), json!(reason));
                obj.insert("deliveryAttempts".into(), json!(p.attempts));
                obj.insert(
                    "lastDeliveryOutcome".into(),
                    json!(outcome_name(res.status, res.timed_out)),
                );
                obj.insert("lastHttpCode".into(), json!(res.status));
                obj.insert("publishTime".into(), json!(p.publish_time));
                obj.insert("lastDeliveryAttemptTime".into(), json!(at));
            }
            tracing::info!(event_id = %id, reason, attempts = p.attempts, "event dead-lettered");
            bus.deadletter(record).await;
            return;
        }
        tokio::time::sleep(retry_delay(p.attempts, cfg.time_factor)).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn schedule() {
        assert_eq!(retry_delay(1, 1.0), Duration::from_secs(10));
        assert_eq!(retry_delay(9, 1.0), Duration::from_secs(21_600));
        assert_eq!(retry_delay(10, 1.0), Duration::from_secs(43_200));
        assert_eq!(retry_delay(30, 1.0), Duration::from_secs(43_200));
        assert_eq!(retry_delay(2, 0.001), Duration::from_millis(30));
    }
}
