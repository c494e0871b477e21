//! What the store keeps, as the rows look: leases, baselines, revert intents, outbox entries,
//! suppression windows, and what pruning keeps.

use keyguard_core::KeyRef;
use keyguard_core::operation::PendingOperation;
use keyguard_core::safeguards::SafeguardState;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A held lease: proof that this instance, and only it, reconciles the resource until `expires_at`.
#[derive(Clone, Debug)]
pub struct Lease {
    pub resource_key: String,
    pub(super) resource_id: String,
    pub(super) holder: String,
    pub(super) etag: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LeaseData {
    pub(super) resource_id: String,
    pub(super) holder: String,
    #[serde(with = "time::serde::rfc3339")]
    pub(super) expires_at: OffsetDateTime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BaselineSource {
    /// Read from the resource while it was compliant.
    Observed,
    /// Set by a person (`keyguard baseline set`), e.g. for a resource first seen already drifted.
    Manual,
}

/// The last known-good key of a resource: what a revert goes back to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Baseline {
    pub resource_id: String,
    pub key: KeyRef,
    pub source: BaselineSource,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    /// Who set a manual baseline (the operator's name, from the CLI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_by: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum BaselineWrite {
    /// Written; `previous` is the baseline it replaced (none for a resource's first).
    Recorded {
        previous: Option<Box<Baseline>>,
    },
    Unchanged,
}

/// A revert started: written before the first write to ARM and cleared once the result is
/// recorded, so a crash in between is finished (or re-decided on a fresh read) by the next
/// reconcile of the resource, never repeated blindly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevertIntent {
    pub id: String,
    pub resource_id: String,
    pub correlation_id: String,
    pub event_id: Option<String>,
    pub holder: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// What the revert goes back to, for people.
    pub target: String,
    pub writes: Vec<String>,
    pub caller: Option<String>,
    /// Set once ARM accepted a long-running write that had not finished within the budget.
    pub operation: Option<PendingOperation>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OutboxStatus {
    Pending,
    /// Gave up: a permanent refusal or too many failures. Visible and re-sendable by a person.
    Parked,
    Sent,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    /// UUID v7: time-ordered, so the table iterates oldest first.
    pub id: String,
    pub route: String,
    #[serde(default)]
    pub extra_recipients: Vec<String>,
    pub alert: keyguard_notify::Alert,
    pub status: OutboxStatus,
    pub attempts: u32,
    /// Unix seconds. While an instance sends the entry it is pushed ahead (a claim), so another
    /// instance does not send it too, and a crashed sender's claim simply runs out.
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    /// Part of the route's periodic digest: sent together with the other digest entries due then.
    #[serde(default)]
    pub digest: bool,
    /// The instance (`host/boot/pidns/pid/nonce`) sending it right now, while `next_attempt_at` is pushed ahead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
}

/// A stored value with the tag a conditional write must match.
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub etag: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuppressionState {
    /// Unix seconds of the last alert actually queued.
    pub last_sent: Option<i64>,
    pub folded: u32,
}

/// How long things are kept. Handled-event keys expire with their own TTL.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub audit: time::Duration,
    pub sent_alerts: time::Duration,
}

#[derive(Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub events: usize,
    pub audit_records: usize,
    pub sent_alerts: usize,
    pub leases: usize,
}

/// A resource keyguard has seen, with its safeguards as the last real look saw them.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct KnownResource {
    pub(super) resource_id: String,
    /// Absent in rows written before safeguards were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) safeguards: Option<SafeguardState>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RevertTimes {
    pub(super) resource_id: String,
    pub(super) times: Vec<i64>,
}
