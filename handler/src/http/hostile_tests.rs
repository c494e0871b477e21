//! The hostile and bad input table (issue 13, item 4): every row is one kind of bad input, sent to
//! each surface it applies to — `keyguard serve`'s `EncryptionDrift` and `Reconcile` functions
//! (the Functions envelope), `keyguard webhook`'s `/api/events`, and the `/api/*` routes under
//! either — through the real routers over an in-process azure-sim. The rows are in
//! [`super::hostile_rows`] and [`super::hostile_rows_ids`]; this file sends them and checks, for
//! every answer:
//!
//! - the status and a fragment of the message the row names;
//! - what the status makes the sender do ([`Fate`]): nothing is lost, a transient failure is
//!   redelivered, an event that can never be processed is refused for the dead-letter container;
//! - an error is the `{"error":{"code","message"}}` shape, short, with no stack trace;
//! - no configured key or token, nor the credential's error text, in any body or header;
//! - an event acknowledged with 200 is in the log (a logged skip, never a silent drop);
//! - and, over the whole table, no key in the log and no panic.

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::hostile_env::Table;
use super::test_env::{API_KEY, WEBHOOK_KEY};
use crate::test_support::CapturedLogs;

/// What the Functions host leaves in `?code=` of a forwarded `/api/*` request: a secret too.
pub(super) const FUNCTIONS_KEY: &str = "functions-host-key-0123456789abcdef";
/// An error answer longer than this is an amplification, not a message.
const MAX_ERROR_BYTES: usize = 16 * 1024;
/// Never in a body, a header or the log.
const SECRETS: [&str; 3] = [API_KEY, WEBHOOK_KEY, FUNCTIONS_KEY];
/// Never in a body or a header: a token (a JWT starts so), the failing credential's text.
const NEVER_ANSWERED: [&str; 4] = ["eyJ", "AADSTS", "login.internal.example", "client secret"];

/// Where an `/api/*` route is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ApiHost {
    /// Forwarded by the Functions host to `keyguard serve` (the host checked `?code=`).
    Serve,
    /// `keyguard webhook`, with `KEYGUARD_API_KEY` in `x-api-key`.
    Webhook,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Surface {
    /// `keyguard serve`: `POST /EncryptionDrift`, the Functions envelope around one event.
    Drift,
    /// `keyguard serve`: `POST /Reconcile`, the timer's envelope.
    Timer,
    /// `keyguard webhook`: `POST /api/events?code=…`, an Event Grid delivery.
    Events,
    Check(ApiHost),
    Scan(ApiHost),
    Audit(ApiHost),
    Findings(ApiHost),
}

use ApiHost::{Serve, Webhook};
use Surface::{Audit, Check, Drift, Events, Findings, Scan, Timer};

pub(super) const CHECK: [Surface; 2] = [Check(Serve), Check(Webhook)];
pub(super) const SCAN: [Surface; 2] = [Scan(Serve), Scan(Webhook)];
pub(super) const AUDIT: [Surface; 2] = [Audit(Serve), Audit(Webhook)];
pub(super) const FINDINGS: [Surface; 2] = [Findings(Serve), Findings(Webhook)];
/// The surfaces an event reaches.
pub(super) const EVENT: [Surface; 2] = [Drift, Events];
/// The Functions functions, which share the envelope.
pub(super) const FUNCTIONS: [Surface; 2] = [Drift, Timer];
/// The `/api/*` routes that need a credential under `keyguard webhook`.
pub(super) const WEBHOOK_API: [Surface; 4] = [Check(Webhook), Scan(Webhook), Audit(Webhook), Findings(Webhook)];

/// What the answer's status makes the sender do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fate {
    /// 2xx: done (a skip on purpose is logged).
    Handled,
    /// Sent again. Webhook: any status Event Grid retries (5xx, 408, 422, 429...). Functions:
    /// `InvocationError::Retryable`, a 500.
    Retried,
    /// Never processable: not retried. Webhook: 400, 401, 403 or 413, which Event Grid
    /// dead-letters at once. Functions: `InvocationError::Rejected`, a 4xx (the host fails the
    /// invocation, so Event Grid redelivers up to its limit and then dead-letters: still not lost).
    Refused,
    /// An `/api/*` caller reads the answer; nobody redelivers.
    Answered,
}

fn fate(surface: Surface, status: u16) -> Fate {
    match (surface, status) {
        (Drift | Timer, 200..=299) => Fate::Handled,
        (Drift | Timer, 500..=599) => Fate::Retried,
        (Drift | Timer, _) => Fate::Refused,
        (Events, 200..=204) => Fate::Handled,
        (Events, 400 | 401 | 403 | 413) => Fate::Refused,
        (Events, _) => Fate::Retried,
        _ => Fate::Answered,
    }
}

/// Which keyguard the row is sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Setting {
    /// The built-in profile (CMK required everywhere), everything working.
    Default,
    /// The state store does not answer.
    StoreDown,
    /// keyguard's credential issues no token (and says why in a message that must stay in the log).
    NoToken,
    /// One profile for the demo subscription only, and an expired exemption for `stmmklogs`.
    Scoped,
    /// Entra ID tokens accepted next to the keys (the forged-token rows send no key).
    Entra,
}

/// Makes a row's body for one surface, given a fresh event id.
pub(super) type MakeBody = Box<dyn Fn(Surface, &str) -> Vec<u8>>;
/// Makes a row's event or delivery, given a fresh event id.
pub(super) type MakeEvent = Box<dyn Fn(&str) -> Value>;

/// What a row sends.
pub(super) enum Input {
    /// These bytes with this media type (none: no `Content-Type`), to each surface as they are.
    Bytes(Option<&'static str>, Vec<u8>),
    /// A JSON body made for each surface, given a fresh event id.
    PerSurface(MakeBody),
    /// One event, given a fresh event id: in the Functions envelope to `Drift`, to `Events` in an
    /// array (or alone, as `application/cloudevents+json`, when it has a `specversion`).
    Event(MakeEvent),
    /// A whole webhook delivery, given a fresh event id.
    Delivery(MakeEvent),
    /// A resource id, where each surface takes one: `data.resourceUri` and `subject` of a write
    /// event, `resourceId` of `/api/check`, `resource=` of `/api/audit`.
    ResourceId(String),
    /// A JSON body for `/api/check` or `/api/scan`.
    Json(Value),
    /// A query string for `/api/audit` or `/api/findings`.
    Query(String),
}

pub(super) struct Expect {
    surface: Surface,
    status: u16,
    /// Found in the body, case-insensitively.
    says: &'static str,
    fate: Fate,
}

pub(super) type BodyCheck = Box<dyn Fn(Surface, &str) -> Result<(), String>>;

pub(super) struct Row {
    pub(super) name: &'static str,
    input: Input,
    expects: Vec<Expect>,
    setting: Setting,
    /// Send no key (the row is about what gets in without one).
    anonymous: bool,
    headers: Vec<(&'static str, String)>,
    /// Added to the query string of every request.
    query: Option<String>,
    check: Option<BodyCheck>,
}

impl Row {
    pub(super) fn new(name: &'static str, input: Input) -> Row {
        Row {
            name,
            input,
            expects: Vec::new(),
            setting: Setting::Default,
            anonymous: false,
            headers: Vec::new(),
            query: None,
            check: None,
        }
    }

    /// Event surfaces: the status, what the message says, and what Event Grid then does.
    pub(super) fn event(mut self, surfaces: &[Surface], status: u16, says: &'static str, fate: Fate) -> Row {
        for &surface in surfaces {
            self.expects.push(Expect {
                surface,
                status,
                says,
                fate,
            });
        }
        self
    }

    /// `/api/*` surfaces: the status and what the message says.
    pub(super) fn api(self, surfaces: &[Surface], status: u16, says: &'static str) -> Row {
        self.event(surfaces, status, says, Fate::Answered)
    }

    pub(super) fn setting(mut self, setting: Setting) -> Row {
        self.setting = setting;
        self
    }

    pub(super) fn anonymous(mut self) -> Row {
        self.anonymous = true;
        self
    }

    pub(super) fn header(mut self, name: &'static str, value: impl Into<String>) -> Row {
        self.headers.push((name, value.into()));
        self
    }

    pub(super) fn query(mut self, query: impl Into<String>) -> Row {
        self.query = Some(query.into());
        self
    }

    pub(super) fn check(mut self, check: impl Fn(Surface, &str) -> Result<(), String> + 'static) -> Row {
        self.check = Some(Box::new(check));
        self
    }
}

/// A `Microsoft.Resources.ResourceWriteSuccess` event for `resource`, by a person.
pub(super) fn write_event(event_id: &str, resource: &str) -> Value {
    json!({
        "id": event_id,
        "eventType": keyguard_core::event::RESOURCE_WRITE_SUCCESS,
        "subject": resource,
        "topic": format!("/subscriptions/{}", azure_sim::DEMO_SUBSCRIPTION),
        "eventTime": "2026-01-01T00:00:00Z",
        "dataVersion": "2", "metadataVersion": "1",
        "data": {
            "resourceUri": resource,
            "operationName": "Microsoft.Storage/storageAccounts/write",
            "status": "Succeeded",
            "correlationId": event_id,
            "claims": {"oid": "11111111-2222-3333-4444-555555555555", "name": "Test Admin"},
        }
    })
}

/// The Functions host's payload-mode envelope around a trigger value.
pub(super) fn envelope(binding: &str, trigger: Value) -> Value {
    json!({"Data": {binding: trigger}, "Metadata": {"sys": {"MethodName": "EncryptionDrift", "UtcNow": "2026-01-01T00:00:00Z"}}})
}

/// The request a row makes of one surface, and whether it carries `event_id`; `None` when the
/// row's input does not fit the surface.
fn request(row: &Row, surface: Surface, event_id: &str) -> Option<(Request<Body>, bool)> {
    let json_type = Some("application/json");
    let to_bytes = |v: &Value| v.to_string().into_bytes();
    let (content_type, body) = match (&row.input, surface) {
        (Input::Bytes(content_type, bytes), _) => (*content_type, bytes.clone()),
        (Input::PerSurface(make), _) => (json_type, make(surface, event_id)),
        (Input::Event(make), Drift) => (json_type, to_bytes(&envelope("eventGridEvent", make(event_id)))),
        (Input::Event(make), Events) => {
            let event = make(event_id);
            if event.get("specversion").is_some() {
                (Some("application/cloudevents+json"), to_bytes(&event))
            } else {
                (json_type, to_bytes(&json!([event])))
            }
        }
        (Input::Delivery(make), Events) => (json_type, to_bytes(&make(event_id))),
        (Input::ResourceId(id), Drift) => (
            json_type,
            to_bytes(&envelope("eventGridEvent", write_event(event_id, id))),
        ),
        (Input::ResourceId(id), Events) => (json_type, to_bytes(&json!([write_event(event_id, id)]))),
        (Input::ResourceId(id), Check(_)) => (json_type, to_bytes(&json!({"resourceId": id}))),
        (Input::ResourceId(_), Audit(_)) | (Input::Query(_), Audit(_) | Findings(_)) => (None, Vec::new()),
        (Input::Json(value), Check(_) | Scan(_)) => (json_type, to_bytes(value)),
        _ => return None,
    };
    let (method, path) = match surface {
        Drift => ("POST", "/EncryptionDrift"),
        Timer => ("POST", "/Reconcile"),
        Events => ("POST", "/api/events"),
        Check(_) => ("POST", "/api/check"),
        Scan(_) => ("POST", "/api/scan"),
        Audit(_) => ("GET", "/api/audit"),
        Findings(_) => ("GET", "/api/findings"),
    };
    let mut query: Vec<String> = Vec::new();
    match &row.input {
        Input::ResourceId(id) if matches!(surface, Audit(_)) => query.push(format!(
            "resource={}",
            url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
        )),
        Input::Query(q) if !q.is_empty() => query.push(q.clone()),
        _ => {}
    }
    query.extend(row.query.clone());
    let mut builder = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap());
    if !row.anonymous {
        match surface {
            Events => query.push(format!("code={WEBHOOK_KEY}")),
            Check(Serve) | Scan(Serve) | Audit(Serve) | Findings(Serve) => query.push(format!("code={FUNCTIONS_KEY}")),
            Check(Webhook) | Scan(Webhook) | Audit(Webhook) | Findings(Webhook) => {
                builder = builder.header(crate::http::auth::API_KEY_HEADER, API_KEY);
            }
            Drift | Timer => {}
        }
    }
    if matches!(surface, Drift | Timer) {
        builder = builder.header("x-azure-functions-invocationid", event_id);
    }
    let uri = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    };
    builder = builder.uri(uri);
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    for (name, value) in &row.headers {
        builder = builder.header(*name, value);
    }
    let carries_id = String::from_utf8_lossy(&body).contains(event_id);
    Some((builder.body(Body::from(body)).unwrap(), carries_id))
}

/// What came back for one case, and what the log holds about its event (if it sent one).
struct Answer<'a> {
    status: u16,
    headers: &'a axum::http::HeaderMap,
    body: &'a str,
    /// `None` when the request carried no event id to look for.
    logged: Option<bool>,
}

/// Everything a case's answer must be, besides its row's own check.
fn verify(expect: &Expect, answer: &Answer) -> Vec<String> {
    let Answer {
        status,
        headers,
        body,
        logged,
    } = *answer;
    let mut problems = Vec::new();
    if status != expect.status {
        problems.push(format!("status {status}, expected {}", expect.status));
    }
    let got = fate(expect.surface, status);
    if got != expect.fate {
        problems.push(format!(
            "{status} means {got:?} to the sender, expected {:?}",
            expect.fate
        ));
    }
    if !body.to_lowercase().contains(&expect.says.to_lowercase()) {
        problems.push(format!("the answer does not say {:?}", expect.says));
    }
    if status >= 400 {
        let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        if !(parsed["error"]["code"].is_string() && parsed["error"]["message"].is_string()) {
            problems.push("an error not in the {\"error\":{\"code\",\"message\"}} shape".into());
        }
        if body.len() > MAX_ERROR_BYTES {
            problems.push(format!("an error of {} bytes", body.len()));
        }
    }
    let lower = body.to_lowercase();
    if ["panicked", "backtrace", "rust_backtrace"]
        .iter()
        .any(|t| lower.contains(t))
        || lower
            .match_indices(".rs:")
            .any(|(i, _)| lower[i + 4..].starts_with(|c: char| c.is_ascii_digit()))
    {
        problems.push("a stack trace or panic in the answer".into());
    }
    let header_text: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {}\n", String::from_utf8_lossy(v.as_bytes())))
        .collect();
    for secret in SECRETS.iter().chain(NEVER_ANSWERED.iter()) {
        if body.contains(secret) || header_text.contains(secret) {
            problems.push(format!("the answer carries {secret:?}"));
        }
    }
    if got == Fate::Handled && logged == Some(false) {
        problems.push("acknowledged, but nothing about the event is in the log".into());
    }
    problems
}

#[tokio::test]
async fn every_hostile_input_gets_a_clear_answer_on_every_surface() {
    let logs = CapturedLogs::start();
    let table = Table::start().await;
    let rows: Vec<Row> = super::hostile_rows::rows()
        .into_iter()
        .chain(super::hostile_rows_ids::rows())
        .collect();
    let mut failures = Vec::new();
    let mut cases = 0;
    for (n, row) in rows.iter().enumerate() {
        assert!(!row.expects.is_empty(), "{}: no surface", row.name);
        for (m, expect) in row.expects.iter().enumerate() {
            let event_id = format!("hostile-{n}-{m}-{}", uuid::Uuid::new_v4());
            let Some((request, carries_id)) = request(row, expect.surface, &event_id) else {
                failures.push(format!(
                    "{} on {:?}: the input does not fit this surface",
                    row.name, expect.surface
                ));
                continue;
            };
            let routers = table.routers(row.setting);
            let router = match expect.surface {
                Drift | Timer | Check(Serve) | Scan(Serve) | Audit(Serve) | Findings(Serve) => &routers.functions,
                _ => &routers.webhook,
            };
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&bytes).into_owned();
            let answer = Answer {
                status,
                headers: &headers,
                body: &body,
                // keyguard's log, or the invocation log the Functions host keeps for an event it
                // delivered (`Logs`): either is a record an operator finds under the event id.
                logged: carries_id.then(|| logs.text().contains(&event_id) || invocation_logged(&body, &event_id)),
            };
            let mut problems = verify(expect, &answer);
            if let Some(check) = &row.check
                && let Err(problem) = check(expect.surface, &body)
            {
                problems.push(problem);
            }
            cases += 1;
            if !problems.is_empty() {
                let shown: String = body.chars().take(400).collect();
                failures.push(format!(
                    "{} on {:?}: {}\n    answer: {shown}",
                    row.name,
                    expect.surface,
                    problems.join("; ")
                ));
            }
        }
    }
    let log = logs.text();
    for secret in SECRETS {
        assert!(!log.contains(secret), "a key reached the log");
    }
    assert!(!log.contains("panicked"), "a handler panicked:\n{log}");
    assert!(rows.len() >= 40, "the table has {} rows", rows.len());
    assert!(
        failures.is_empty(),
        "{} of {cases} cases ({} rows) failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    table.env.sim.shutdown().await;
}

/// Whether a Functions invocation answer's `Logs` name the event.
fn invocation_logged(body: &str, event_id: &str) -> bool {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|answer| answer.get("Logs").map(|logs| logs.to_string().contains(event_id)))
        .unwrap_or(false)
}
