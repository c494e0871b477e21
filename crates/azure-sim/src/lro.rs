//! Long-running ARM operations: `202 Accepted` with `Azure-AsyncOperation` and/or `Location`
//! (absolute on the simulator, or relative as Recovery Services returns them), `Retry-After`,
//! and the two polling protocols:
//!
//! * `Azure-AsyncOperation` (`…/operationStatuses/{id}`, relative style `…/operationStatus/{id}`):
//!   always `200` with `{"name", "status": "InProgress" | "Succeeded" | "Failed", "startTime",
//!   "endTime"?, "error"?: {code, message}}`;
//! * `Location` (`…/operationResults/{id}`): `202` (+ `Location`, `Retry-After`) while running,
//!   then `200` with the written resource, or the operation's error status and ARM error body.
//!
//! A type whose completion shows only in `provisioningState` (App Configuration) answers the
//! write `201` with the document in `Updating` and no polling header; GETs of the resource are
//! its polls, answering `Updating` until the operation ends.
//!
//! An operation answers `InProgress` to the first `polls` polls (either URL; default 1) and
//! finishes on the next one: only then is the write applied to the store (re-validated against
//! the current document) and the `ResourceWriteSuccess` event emitted. A failed operation
//! leaves the document unchanged and emits nothing. Configure with `PUT /_sim/lro`
//! (`{"polls": n, "fail": bool, "retry_after": secs, "error_code", "error_message",
//! "error_status"}`); the settings in force when a write is accepted apply to its operation.

use std::collections::HashMap;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::Sim;
use crate::arm::{ArmError, Reply, WriteInfo};
use crate::catalog_sim::{Lro, SimType};
use crate::generic::{self, PendingWrite};
use crate::util::{lock, now_string};

/// How new long-running operations behave.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LroConfig {
    /// Polls answered `InProgress` (202 on `Location`) before the operation finishes.
    #[serde(default = "one")]
    pub polls: u32,
    /// Finish with `Failed` instead of applying the write.
    #[serde(default)]
    pub fail: bool,
    /// `Retry-After` seconds on the 202 and on in-progress polls.
    #[serde(default)]
    pub retry_after: u64,
    /// Error of a failed operation.
    #[serde(default = "default_code")]
    pub error_code: String,
    #[serde(default = "default_message")]
    pub error_message: String,
    /// Status the `Location` URL answers for a failed operation.
    #[serde(default = "default_status")]
    pub error_status: u16,
}

fn one() -> u32 {
    1
}

fn default_code() -> String {
    "InternalServerError".into()
}

fn default_message() -> String {
    "An unexpected error occurred while processing the request (simulated long-running operation failure).".into()
}

fn default_status() -> u16 {
    500
}

impl Default for LroConfig {
    fn default() -> Self {
        LroConfig {
            polls: one(),
            fail: false,
            retry_after: 0,
            error_code: default_code(),
            error_message: default_message(),
            error_status: default_status(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpState {
    Running,
    Succeeded,
    Failed,
}

impl OpState {
    fn as_str(self) -> &'static str {
        match self {
            OpState::Running => "InProgress",
            OpState::Succeeded => "Succeeded",
            OpState::Failed => "Failed",
        }
    }
}

pub(crate) struct Op {
    id: String,
    started: String,
    ended: Option<String>,
    polls_left: u32,
    fail: Option<ArmError>,
    retry_after: u64,
    state: OpState,
    pending: PendingWrite,
    claims: Map<String, Value>,
    write: WriteInfo,
    result_url: String,
    error: Option<ArmError>,
    /// Completion shows only in the resource's `provisioningState` (no polling URL).
    by_provisioning_state: bool,
}

#[derive(Default)]
pub(crate) struct LroState {
    pub config: LroConfig,
    ops: HashMap<String, Op>,
}

impl Sim {
    pub fn lro_config(&self) -> LroConfig {
        lock(&self.lro).config.clone()
    }

    pub fn set_lro_config(&self, config: LroConfig) {
        lock(&self.lro).config = config;
    }

    /// Every operation so far: `{id, status, resource, error?}`.
    pub fn operations(&self) -> Vec<Value> {
        let lro = lock(&self.lro);
        let mut out: Vec<(String, Value)> = lro
            .ops
            .values()
            .map(|op| {
                let mut v = json!({
                    "id": op.id,
                    "status": op.state.as_str(),
                    "resource": generic::id_string(&op.pending.rid),
                    "startTime": op.started,
                });
                if let Some(e) = &op.error {
                    v["error"] = json!({"code": e.code, "message": e.message});
                }
                (op.started.clone(), v)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.into_iter().map(|(_, v)| v).collect()
    }
}

fn location_segment(doc_location: &str) -> String {
    let l: String = doc_location
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if l.is_empty() { "westeurope".into() } else { l }
}

/// Registers an operation for an accepted write and builds the `202` answer.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start(
    sim: &Sim,
    ty: &SimType,
    pending: PendingWrite,
    claims: Map<String, Value>,
    write: WriteInfo,
    base_url: &str,
    api_version: &str,
    doc_location: &str,
) -> Reply {
    let opid = uuid::Uuid::new_v4().to_string();
    let rid = &pending.rid;
    let loc = location_segment(doc_location);
    let abs = |kind: &str| {
        format!(
            "{base_url}/subscriptions/{}/providers/{}/locations/{loc}/{kind}/{opid}?api-version={api_version}",
            rid.subscription, rid.namespace
        )
    };
    let id = generic::id_string(rid);
    let rel = |kind: &str| format!("{id}/{kind}/{opid}?api-version={api_version}");
    let (status_url, result_url) = match ty.lro {
        Lro::Sync | Lro::AsyncAndLocation => (Some(abs("operationStatuses")), Some(abs("operationResults"))),
        Lro::AsyncOnly => (Some(abs("operationStatuses")), None),
        Lro::LocationOnly => (None, Some(abs("operationResults"))),
        Lro::RelativeLocation => (None, Some(rel("operationResults"))),
        Lro::RelativeBoth => (Some(rel("operationStatus")), Some(rel("operationResults"))),
        Lro::ProvisioningState => (None, None),
    };
    let by_provisioning_state = ty.lro == Lro::ProvisioningState;
    let resource_key = rid.key();
    let mut lro = lock(&sim.lro);
    let cfg = lro.config.clone();
    let fail = cfg.fail.then(|| {
        ArmError::new(
            StatusCode::from_u16(cfg.error_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &cfg.error_code,
            cfg.error_message.clone(),
        )
    });
    lro.ops.insert(
        opid.clone(),
        Op {
            id: opid,
            started: now_string(),
            ended: None,
            polls_left: cfg.polls,
            fail,
            retry_after: cfg.retry_after,
            state: OpState::Running,
            pending,
            claims,
            write,
            result_url: result_url.clone().unwrap_or_default(),
            error: None,
            by_provisioning_state,
        },
    );
    if by_provisioning_state {
        drop(lro);
        return Reply {
            status: StatusCode::CREATED,
            body: updating_document(sim, &resource_key),
            headers: Vec::new(),
        };
    }
    let mut headers = vec![("retry-after", cfg.retry_after.to_string())];
    if let Some(u) = status_url {
        headers.push(("azure-asyncoperation", u));
    }
    if let Some(u) = result_url {
        headers.push(("location", u));
    }
    Reply {
        status: StatusCode::ACCEPTED,
        body: None,
        headers,
    }
}

fn advance(sim: &Sim, op: &mut Op) {
    if op.state != OpState::Running {
        return;
    }
    if op.polls_left > 0 {
        op.polls_left -= 1;
        return;
    }
    op.ended = Some(now_string());
    if let Some(e) = op.fail.take() {
        op.state = OpState::Failed;
        op.error = Some(e);
        return;
    }
    match generic::commit(sim, &op.pending, &op.claims, &op.write) {
        Ok(_) => op.state = OpState::Succeeded,
        Err(e) => {
            op.state = OpState::Failed;
            op.error = Some(e);
        }
    }
}

/// The stored document as a GET shows it while a write is being applied: `Updating`.
fn updating_document(sim: &Sim, resource_key: &str) -> Option<Value> {
    let mut doc = lock(&sim.store).resources.get(resource_key).cloned()?;
    if let Some(Value::Object(props)) = doc.get_mut("properties") {
        props.insert("provisioningState".into(), json!("Updating"));
    }
    Some(doc)
}

/// A GET of a resource whose write completes through `provisioningState`: advances its running
/// operation like a poll would, and while it runs answers the document in `Updating`. `None`:
/// no such operation is running, and the GET reads the store as usual.
pub(crate) fn provisioning_view(sim: &Sim, resource_key: &str) -> Option<Value> {
    let mut lro = lock(&sim.lro);
    let op = lro
        .ops
        .values_mut()
        .find(|op| op.by_provisioning_state && op.state == OpState::Running && op.pending.rid.key() == resource_key)?;
    advance(sim, op);
    let running = op.state == OpState::Running;
    drop(lro);
    if running {
        updating_document(sim, resource_key)
    } else {
        None
    }
}

/// Answers a poll of `…/operationStatuses|operationStatus|operationResults/{id}` for a known
/// operation; `None` when the path is not one.
pub(crate) fn try_poll(sim: &Sim, segs: &[String]) -> Option<Result<Reply, ArmError>> {
    let n = segs.len();
    if n < 2 {
        return None;
    }
    let kind = segs[n - 2].to_ascii_lowercase();
    let status_poll = match kind.as_str() {
        "operationstatuses" | "operationstatus" | "azureasyncoperation" => true,
        "operationresults" => false,
        _ => return None,
    };
    let opid = segs[n - 1].to_ascii_lowercase();
    let mut lro = lock(&sim.lro);
    let op = lro.ops.get_mut(&opid)?;
    advance(sim, op);
    let retry = ("retry-after", op.retry_after.to_string());
    if status_poll {
        let mut body = json!({"name": op.id, "status": op.state.as_str(), "startTime": op.started});
        if let Some(end) = &op.ended {
            body["endTime"] = json!(end);
        }
        if let Some(e) = &op.error {
            body["error"] = json!({"code": e.code, "message": e.message});
        }
        let headers = if op.state == OpState::Running {
            vec![retry]
        } else {
            Vec::new()
        };
        return Some(Ok(Reply {
            status: StatusCode::OK,
            body: Some(body),
            headers,
        }));
    }
    Some(match op.state {
        OpState::Running => Ok(Reply {
            status: StatusCode::ACCEPTED,
            body: None,
            headers: vec![retry, ("location", op.result_url.clone())],
        }),
        OpState::Failed => Err(op.error.clone().unwrap_or_else(|| {
            ArmError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "The operation failed.",
            )
        })),
        OpState::Succeeded => {
            let key = op.pending.rid.key();
            drop(lro);
            let doc = lock(&sim.store).resources.get(&key).cloned();
            match doc {
                Some(doc) => Ok(Reply::ok(doc)),
                None => Ok(Reply {
                    status: StatusCode::NO_CONTENT,
                    body: None,
                    headers: Vec::new(),
                }),
            }
        }
    })
}
