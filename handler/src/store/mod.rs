//! What keyguard must remember between invocations and across instances: handled event ids
//! (dedupe), a lease per resource (one instance reconciles a resource at a time), the last
//! known-good key of each resource (the revert target), revert intents (a write started but not
//! yet recorded as finished), recent reverts (the loop guard), the audit trail, the alert outbox,
//! and the resources it has seen.
//!
//! The semantics live once, in [`StateStore`], over a small entity interface ([`TableBackend`])
//! that has two implementations: an embedded redb file for one instance, and Azure Table Storage
//! for many. Every conditional write is an ETag compare-and-swap, so two instances can never both
//! take a lease or overwrite a baseline they did not read.

mod audit;
pub mod bench;
mod connection;
mod embedded;
mod error;
mod table;

use std::fmt::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use keyguard_core::operation::PendingOperation;
use keyguard_core::safeguards::SafeguardState;
use keyguard_core::{KeyRef, ResourceId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

pub use audit::{AuditQuery, DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT};
pub use connection::TableConnection;
pub use embedded::EmbeddedBackend;
pub use error::StoreError;
pub use table::AzureTableBackend;

/// `value` as the JSON a backend stores.
fn to_json(value: &impl Serialize) -> Result<Value, StoreError> {
    serde_json::to_value(value).map_err(StoreError::unwritable)
}

/// The kinds of entity keyguard keeps; each is one table (one Azure table, one redb table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    Events,
    Leases,
    Baselines,
    Reverts,
    Resources,
    Intents,
    /// The audit trail by resource (one partition each).
    Audit,
    /// The same records by time, newest first, so the latest records of all resources are read
    /// without reading the rest (see `audit.rs`).
    AuditTimeline,
    Outbox,
    Suppression,
    Findings,
    Checkpoints,
}

impl Table {
    pub const ALL: [Table; 12] = [
        Table::Events,
        Table::Leases,
        Table::Baselines,
        Table::Reverts,
        Table::Resources,
        Table::Intents,
        Table::Audit,
        Table::AuditTimeline,
        Table::Outbox,
        Table::Suppression,
        Table::Findings,
        Table::Checkpoints,
    ];

    /// Letters only: Azure table names are alphanumeric and start with a letter.
    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Leases => "leases",
            Table::Baselines => "baselines",
            Table::Reverts => "reverts",
            Table::Resources => "resources",
            Table::Intents => "intents",
            Table::Audit => "audit",
            Table::AuditTimeline => "audittimeline",
            Table::Outbox => "outbox",
            Table::Suppression => "suppression",
            Table::Findings => "findings",
            Table::Checkpoints => "checkpoints",
        }
    }

    /// Whether an embedded commit must reach the disk before the call returns. Leases matter only
    /// while their holder lives; findings, known resources and observed baselines are re-derived
    /// by the next look at the resource, and every decision that acts on them also writes a
    /// durable record (intent, audit, checkpoint) whose commit persists them. Skipping their fsync
    /// is what lets a sweep of 10,000 resources take seconds; the cost of a power cut is at most a
    /// baseline observed since the last durable commit, re-observed next time. A timeline entry
    /// is written just before its record's durable commit, which persists it too: one fsync per
    /// record, not two.
    pub fn durable(self) -> bool {
        !matches!(
            self,
            Table::Leases | Table::Findings | Table::Resources | Table::Baselines | Table::AuditTimeline
        )
    }
}

/// One stored entity: its keys, its version tag and its data.
#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    pub partition: String,
    pub row: String,
    pub etag: String,
    pub data: Value,
}

/// The result of a conditional write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    Done {
        etag: String,
    },
    /// The entity exists already (insert) or has changed since it was read (replace, delete).
    Conflict,
}

/// Which rows a query returns: one partition or all, and a half-open row-key range.
#[derive(Clone, Debug, Default)]
pub struct RowRange<'a> {
    pub partition: Option<&'a str>,
    pub row_from: Option<&'a str>,
    pub row_before: Option<&'a str>,
}

impl RowRange<'_> {
    pub fn contains(&self, partition: &str, row: &str) -> bool {
        self.partition.is_none_or(|p| p == partition)
            && self.row_from.is_none_or(|from| row >= from)
            && self.row_before.is_none_or(|before| row < before)
    }
}

/// The entity interface both backends implement. Keys are already Table-Storage-safe
/// ([`table_key`]); data is any JSON object.
#[async_trait]
pub trait TableBackend: Send + Sync {
    fn describe(&self) -> String;
    /// Creates the tables if they do not exist.
    async fn prepare(&self) -> Result<(), StoreError>;
    async fn get(&self, table: Table, partition: &str, row: &str) -> Result<Option<Entity>, StoreError>;
    /// Writes only if no entity has these keys.
    async fn insert(&self, table: Table, partition: &str, row: &str, data: &Value) -> Result<Written, StoreError>;
    /// Replaces the entity if its tag is still `if_match`; `None` writes whatever is there (upsert).
    async fn replace(
        &self,
        table: Table,
        partition: &str,
        row: &str,
        data: &Value,
        if_match: Option<&str>,
    ) -> Result<Written, StoreError>;
    /// Deletes if the tag is still `if_match` (`None`: whatever is there). Absent counts as done.
    async fn delete(
        &self,
        table: Table,
        partition: &str,
        row: &str,
        if_match: Option<&str>,
    ) -> Result<Written, StoreError>;
    /// Rows in key order within a partition (across partitions, partition order first).
    async fn query(&self, table: Table, range: &RowRange<'_>) -> Result<Vec<Entity>, StoreError> {
        self.query_first(table, range, usize::MAX).await
    }
    /// The first `max` rows of [`query`](Self::query), reading no further: its cost is bounded by
    /// `max`, not by the size of the table.
    async fn query_first(&self, table: Table, range: &RowRange<'_>, max: usize) -> Result<Vec<Entity>, StoreError>;
    /// Makes every write so far durable (the embedded store's non-durable tables).
    async fn flush(&self) -> Result<(), StoreError>;
}

/// Table Storage keys forbid `/`, `\`, `#`, `?` and control characters and hold at most 1 KiB;
/// ARM ids are full of `/`. Every byte outside `[A-Za-z0-9._-]` becomes `~xx`, which keeps keys
/// readable in Storage Explorer, URL-safe and injective; a key that would grow past 512 bytes is a
/// SHA-256 instead (`~~` never occurs in an escaped key, so the two forms cannot collide).
pub fn table_key(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 16);
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
            out.push(b as char);
        } else {
            let _ = write!(out, "~{b:02x}");
        }
    }
    if out.len() <= 512 {
        return out;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, raw.as_bytes());
    let mut hashed = String::from("~~");
    for b in digest.as_ref() {
        let _ = write!(hashed, "{b:02x}");
    }
    hashed
}

/// The smallest UUID v7 text of the given instant: audit row keys (UUID v7) at or after `t`
/// sort at or after it, so a time range is a row-key range.
pub fn v7_floor(t: OffsetDateTime) -> String {
    let ms = (t.unix_timestamp_nanos() / 1_000_000).clamp(0, (1 << 48) - 1) as u64;
    let hex = format!("{ms:012x}");
    format!("{}-{}-7000-8000-000000000000", &hex[..8], &hex[8..])
}

/// A held lease: proof that this instance, and only it, reconciles the resource until `expires_at`.
#[derive(Clone, Debug)]
pub struct Lease {
    pub resource_key: String,
    resource_id: String,
    holder: String,
    etag: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeaseData {
    resource_id: String,
    holder: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BaselineWrite {
    Recorded,
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

const OUTBOX_PARTITION: &str = "outbox";
const SINGLE_ROW: &str = "";

/// keyguard's memory, over either backend.
#[derive(Clone)]
pub struct StateStore {
    backend: Arc<dyn TableBackend>,
}

impl StateStore {
    pub async fn new(backend: Arc<dyn TableBackend>) -> Result<Self, StoreError> {
        backend.prepare().await?;
        Ok(Self { backend })
    }

    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Everything written so far survives a power cut once this returns.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.backend.flush().await
    }

    /// A point read: proves the store answers without scanning anything.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.backend.get(Table::Events, "~health", SINGLE_ROW).await.map(|_| ())
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        table: Table,
        partition: &str,
        row: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        let Some(entity) = self.backend.get(table, partition, row).await? else {
            return Ok(None);
        };
        let value = serde_json::from_value(entity.data).map_err(|e| {
            StoreError::Corrupt(format!("{} entity {partition}/{row} is unreadable: {e}", table.name()))
        })?;
        Ok(Some(Versioned {
            value,
            etag: entity.etag,
        }))
    }

    async fn upsert_json<T: Serialize>(&self, table: Table, partition: &str, value: &T) -> Result<(), StoreError> {
        let data = to_json(value)?;
        self.backend
            .replace(table, partition, SINGLE_ROW, &data, None)
            .await
            .map(|_| ())
    }

    // --- handled events -------------------------------------------------------------------

    /// True when the event id was handled (by any instance) and its dedupe entry has not expired.
    pub async fn event_seen(&self, event_id: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        let entry = self
            .backend
            .get(Table::Events, &table_key(event_id), SINGLE_ROW)
            .await?;
        Ok(entry
            .and_then(|e| e.data["expiresAt"].as_i64())
            .is_some_and(|expires| expires > now.unix_timestamp()))
    }

    pub async fn mark_event(&self, event_id: &str, expires_at: OffsetDateTime) -> Result<(), StoreError> {
        let data = serde_json::json!({ "eventId": event_id, "expiresAt": expires_at.unix_timestamp() });
        self.backend
            .replace(Table::Events, &table_key(event_id), SINGLE_ROW, &data, None)
            .await
            .map(|_| ())
    }

    /// Drops expired dedupe keys, audit records past retention, old sent alerts and stale leases;
    /// run by the periodic reconcile so event handling stays O(1).
    pub async fn prune(&self, now: OffsetDateTime, retention: Retention) -> Result<PruneReport, StoreError> {
        let mut report = PruneReport::default();
        for entity in self.backend.query(Table::Events, &RowRange::default()).await? {
            if entity.data["expiresAt"]
                .as_i64()
                .is_some_and(|e| e <= now.unix_timestamp())
                && self
                    .delete_if_unchanged(Table::Events, &entity.partition, &entity.row, &entity.etag)
                    .await?
            {
                report.events += 1;
            }
        }
        report.audit_records = self.prune_audit(now - retention.audit).await?;
        let alert_horizon = (now - retention.sent_alerts).unix_timestamp();
        for stored in self.outbox_entries().await? {
            if stored.value.status == OutboxStatus::Sent
                && stored.value.created_at < alert_horizon
                && self
                    .delete_if_unchanged(Table::Outbox, OUTBOX_PARTITION, &stored.value.id, &stored.etag)
                    .await?
            {
                report.sent_alerts += 1;
            }
        }
        for entity in self.backend.query(Table::Leases, &RowRange::default()).await? {
            let expired = serde_json::from_value::<LeaseData>(entity.data.clone())
                .map(|l| l.expires_at <= now)
                .unwrap_or(true);
            if expired
                && self
                    .delete_if_unchanged(Table::Leases, &entity.partition, &entity.row, &entity.etag)
                    .await?
            {
                report.leases += 1;
            }
        }
        Ok(report)
    }

    async fn delete_if_unchanged(
        &self,
        table: Table,
        partition: &str,
        row: &str,
        etag: &str,
    ) -> Result<bool, StoreError> {
        let result = self.backend.delete(table, partition, row, Some(etag)).await?;
        Ok(matches!(result, Written::Done { .. }))
    }

    // --- leases ---------------------------------------------------------------------------

    /// Takes the resource's lease if nobody holds it, its holder's lease ran out (a crashed
    /// instance blocks a resource for at most `ttl`), or its holder was a process of this machine
    /// (same boot and pid namespace) that is gone: a restart takes over at once. `None`: another
    /// instance holds it.
    pub async fn try_lease(
        &self,
        resource: &ResourceId,
        holder: &str,
        ttl: time::Duration,
        now: OffsetDateTime,
    ) -> Result<Option<Lease>, StoreError> {
        let key = table_key(&resource.key());
        let data = LeaseData {
            resource_id: resource.as_str().to_string(),
            holder: holder.to_string(),
            expires_at: now + ttl,
        };
        let value = to_json(&data)?;
        let written = match self.get_json::<LeaseData>(Table::Leases, &key, SINGLE_ROW).await? {
            None => self.backend.insert(Table::Leases, &key, SINGLE_ROW, &value).await?,
            Some(current)
                if current.value.expires_at <= now
                    || current.value.holder == holder
                    || crate::instance::held_by_dead_local_process(&current.value.holder, holder) =>
            {
                self.backend
                    .replace(Table::Leases, &key, SINGLE_ROW, &value, Some(&current.etag))
                    .await?
            }
            Some(_) => return Ok(None),
        };
        Ok(match written {
            Written::Done { etag } => Some(Lease {
                resource_key: key,
                resource_id: data.resource_id,
                holder: data.holder,
                etag,
            }),
            Written::Conflict => None,
        })
    }

    /// Confirms that `lease` is still held, unchanged since it was taken or last renewed, and
    /// extends it by `ttl`. `None`: it was lost (it ran out and another instance took it, or it
    /// was pruned), so whatever the holder planned must not be written.
    pub async fn renew_lease(
        &self,
        lease: &Lease,
        ttl: time::Duration,
        now: OffsetDateTime,
    ) -> Result<Option<Lease>, StoreError> {
        let data = LeaseData {
            resource_id: lease.resource_id.clone(),
            holder: lease.holder.clone(),
            expires_at: now + ttl,
        };
        let value = to_json(&data)?;
        let written = self
            .backend
            .replace(
                Table::Leases,
                &lease.resource_key,
                SINGLE_ROW,
                &value,
                Some(&lease.etag),
            )
            .await?;
        Ok(match written {
            Written::Done { etag } => Some(Lease { etag, ..lease.clone() }),
            Written::Conflict => None,
        })
    }

    /// Gives the lease back; if it ran out and someone else took it, theirs is left alone.
    pub async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        self.backend
            .delete(Table::Leases, &lease.resource_key, SINGLE_ROW, Some(&lease.etag))
            .await
            .map(|_| ())
    }

    // --- baselines ------------------------------------------------------------------------

    pub async fn baseline(&self, resource: &ResourceId) -> Result<Option<Baseline>, StoreError> {
        Ok(self
            .stored_baseline(resource, &table_key(&resource.key()))
            .await?
            .and_then(|(baseline, _)| baseline))
    }

    /// The baseline entity and its etag. A record whose key is not a Key Vault key (tampered
    /// with, or written by an older and laxer build) reads as `None` and is logged as a security
    /// event: it is never a revert target, and the next good baseline replaces it.
    async fn stored_baseline(
        &self,
        resource: &ResourceId,
        partition: &str,
    ) -> Result<Option<(Option<Baseline>, String)>, StoreError> {
        let Some(entity) = self.backend.get(Table::Baselines, partition, SINGLE_ROW).await? else {
            return Ok(None);
        };
        match serde_json::from_value::<Baseline>(entity.data) {
            Ok(baseline) => Ok(Some((Some(baseline), entity.etag))),
            Err(problem) => {
                tracing::warn!(
                    target: "keyguard::security",
                    security_event = "baseline-refused",
                    resource = %resource,
                    %problem,
                    "a stored baseline does not name a Key Vault key; it is ignored"
                );
                Ok(Some((None, entity.etag)))
            }
        }
    }

    /// Records `key` as the resource's known-good key unless it already is. The write is
    /// conditional on what was read, so a concurrent change (another instance, a person) is
    /// re-read and decided again rather than overwritten blindly.
    pub async fn record_baseline(
        &self,
        resource: &ResourceId,
        key: &KeyRef,
        source: BaselineSource,
        set_by: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<BaselineWrite, StoreError> {
        let partition = table_key(&resource.key());
        let baseline = Baseline {
            resource_id: resource.as_str().to_string(),
            key: key.clone(),
            source,
            recorded_at: now,
            set_by: set_by.map(str::to_string),
        };
        let data = to_json(&baseline)?;
        // Every round of a race has a winner, so a few rounds settle any realistic contention.
        for attempt in 0..16u64 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(rand::random_range(1..=5 * attempt))).await;
            }
            let current = self.stored_baseline(resource, &partition).await?;
            let written = match &current {
                // A manual baseline is a person's decision: an observation of the same key keeps it.
                Some((Some(c), _)) if c.key == *key && (source == BaselineSource::Observed || c.source == source) => {
                    return Ok(BaselineWrite::Unchanged);
                }
                Some((_, etag)) => {
                    self.backend
                        .replace(Table::Baselines, &partition, SINGLE_ROW, &data, Some(etag))
                        .await?
                }
                None => {
                    self.backend
                        .insert(Table::Baselines, &partition, SINGLE_ROW, &data)
                        .await?
                }
            };
            if let Written::Done { .. } = written {
                // A person's decision is durable before the command says it is done.
                if source == BaselineSource::Manual {
                    self.flush().await?;
                }
                return Ok(BaselineWrite::Recorded);
            }
        }
        Err(StoreError::Conflict(format!(
            "the baseline of {resource} kept changing while it was being written"
        )))
    }

    // --- revert counts --------------------------------------------------------------------

    pub async fn reverts_since(&self, resource: &ResourceId, since: OffsetDateTime) -> Result<u32, StoreError> {
        let times = self.revert_times(resource).await?;
        Ok(times.iter().filter(|t| **t >= since.unix_timestamp()).count() as u32)
    }

    async fn revert_times(&self, resource: &ResourceId) -> Result<Vec<i64>, StoreError> {
        Ok(self
            .get_json::<RevertTimes>(Table::Reverts, &table_key(&resource.key()), SINGLE_ROW)
            .await?
            .map(|v| v.value.times)
            .unwrap_or_default())
    }

    /// Called under the resource's lease, so the read-modify-write has no competitor.
    pub async fn record_revert(&self, resource: &ResourceId, at: OffsetDateTime) -> Result<(), StoreError> {
        let horizon = at.unix_timestamp() - 24 * 3600;
        let mut times: Vec<i64> = self
            .revert_times(resource)
            .await?
            .into_iter()
            .filter(|t| *t >= horizon)
            .collect();
        times.push(at.unix_timestamp());
        let value = RevertTimes {
            resource_id: resource.as_str().to_string(),
            times,
        };
        self.upsert_json(Table::Reverts, &table_key(&resource.key()), &value)
            .await
    }

    // --- known resources ------------------------------------------------------------------

    /// Records the resource as one keyguard has seen and returns the safeguards recorded at the
    /// last look that recorded them (`None`: none did yet). `safeguards`: what this look saw,
    /// written when it differs (a dry run passes `None` and changes nothing recorded).
    pub async fn remember_resource(
        &self,
        resource: &ResourceId,
        safeguards: Option<&SafeguardState>,
    ) -> Result<Option<SafeguardState>, StoreError> {
        let key = table_key(&resource.key());
        // Most looks are at resources seen before, unchanged: a read avoids a write per event.
        let current = self
            .get_json::<KnownResource>(Table::Resources, &key, SINGLE_ROW)
            .await?;
        let previous = current.as_ref().and_then(|c| c.value.safeguards.clone());
        let wanted = KnownResource {
            resource_id: resource.as_str().to_string(),
            safeguards: safeguards.cloned().or_else(|| previous.clone()),
        };
        let data = to_json(&wanted)?;
        let written = match &current {
            None => self.backend.insert(Table::Resources, &key, SINGLE_ROW, &data).await?,
            Some(c) if c.value.safeguards != wanted.safeguards => {
                self.backend
                    .replace(Table::Resources, &key, SINGLE_ROW, &data, Some(&c.etag))
                    .await?
            }
            Some(_) => return Ok(previous),
        };
        if written == Written::Conflict {
            // Another look wrote first (they run under the resource's lease, so only a dry run's
            // first sighting races a real one): theirs stands, and is as recent as ours.
            tracing::debug!(resource = %resource, "known resource written concurrently; the other write stands");
        }
        Ok(previous)
    }

    pub async fn known_resources(&self) -> Result<Vec<ResourceId>, StoreError> {
        let rows = self.backend.query(Table::Resources, &RowRange::default()).await?;
        Ok(rows
            .iter()
            .filter_map(|e| e.data["resourceId"].as_str())
            .filter_map(|id| ResourceId::parse(id).ok())
            .collect())
    }

    // --- revert intents -------------------------------------------------------------------

    pub async fn revert_intent(&self, resource: &ResourceId) -> Result<Option<RevertIntent>, StoreError> {
        Ok(self
            .get_json::<RevertIntent>(Table::Intents, &table_key(&resource.key()), SINGLE_ROW)
            .await?
            .map(|v| v.value))
    }

    /// Written and cleared under the resource's lease.
    pub async fn set_revert_intent(
        &self,
        resource: &ResourceId,
        intent: Option<&RevertIntent>,
    ) -> Result<(), StoreError> {
        let key = table_key(&resource.key());
        match intent {
            Some(intent) => self.upsert_json(Table::Intents, &key, intent).await,
            None => self
                .backend
                .delete(Table::Intents, &key, SINGLE_ROW, None)
                .await
                .map(|_| ()),
        }
    }

    // --- alert outbox ---------------------------------------------------------------------

    /// A new entry; an alert is written here before any attempt to send it. `false`: an entry
    /// with this id was queued already (a retry of the same decision).
    pub async fn outbox_add(&self, entry: &OutboxEntry) -> Result<bool, StoreError> {
        let data = to_json(entry)?;
        let written = self
            .backend
            .insert(Table::Outbox, OUTBOX_PARTITION, &entry.id, &data)
            .await?;
        Ok(matches!(written, Written::Done { .. }))
    }

    pub async fn outbox_get(&self, id: &str) -> Result<Option<Versioned<OutboxEntry>>, StoreError> {
        self.get_json(Table::Outbox, OUTBOX_PARTITION, id).await
    }

    /// Replaces an entry if nobody changed it since it was read; `None` when someone did.
    pub async fn outbox_replace(&self, entry: &OutboxEntry, etag: &str) -> Result<Option<String>, StoreError> {
        let data = to_json(entry)?;
        Ok(
            match self
                .backend
                .replace(Table::Outbox, OUTBOX_PARTITION, &entry.id, &data, Some(etag))
                .await?
            {
                Written::Done { etag } => Some(etag),
                Written::Conflict => None,
            },
        )
    }

    /// Every entry, oldest first (ids are time-ordered).
    pub async fn outbox_entries(&self) -> Result<Vec<Versioned<OutboxEntry>>, StoreError> {
        let range = RowRange {
            partition: Some(OUTBOX_PARTITION),
            ..RowRange::default()
        };
        let mut out = Vec::new();
        for entity in self.backend.query(Table::Outbox, &range).await? {
            match serde_json::from_value(entity.data) {
                Ok(value) => out.push(Versioned {
                    value,
                    etag: entity.etag,
                }),
                Err(e) => tracing::warn!(error = %e, id = %entity.row, "unreadable outbox entry skipped"),
            }
        }
        Ok(out)
    }

    // --- findings -------------------------------------------------------------------------

    /// The latest finding of a resource; written only when it says something new, so a sweep
    /// over an unchanged estate costs reads, not writes.
    pub async fn put_finding(&self, finding: &keyguard_report::Finding) -> Result<(), StoreError> {
        let partition = table_key(&finding.resource_id.to_ascii_lowercase());
        let current = self
            .get_json::<keyguard_report::Finding>(Table::Findings, &partition, SINGLE_ROW)
            .await
            .ok()
            .flatten();
        let unchanged = current.is_some_and(|c| {
            keyguard_report::Finding {
                checked_at: finding.checked_at,
                ..c.value
            } == *finding
        });
        if unchanged {
            return Ok(());
        }
        self.upsert_json(Table::Findings, &partition, finding).await
    }

    pub async fn remove_finding(&self, resource: &ResourceId) -> Result<(), StoreError> {
        self.backend
            .delete(Table::Findings, &table_key(&resource.key()), SINGLE_ROW, None)
            .await
            .map(|_| ())
    }

    /// Every resource's latest finding, in resource-id order.
    pub async fn findings(&self) -> Result<Vec<keyguard_report::Finding>, StoreError> {
        let mut out: Vec<keyguard_report::Finding> = Vec::new();
        for entity in self.backend.query(Table::Findings, &RowRange::default()).await? {
            match serde_json::from_value(entity.data) {
                Ok(finding) => out.push(finding),
                Err(e) => tracing::warn!(error = %e, key = %entity.partition, "unreadable finding skipped"),
            }
        }
        out.sort_by_key(|f| f.resource_id.to_ascii_lowercase());
        Ok(out)
    }

    // --- sweep checkpoints ----------------------------------------------------------------

    /// Where an unfinished sweep of a scope stopped, so the next run resumes there.
    pub async fn checkpoint<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        Ok(self
            .get_json(Table::Checkpoints, &table_key(key), SINGLE_ROW)
            .await?
            .map(|v| v.value))
    }

    pub async fn set_checkpoint<T: Serialize>(&self, key: &str, checkpoint: Option<&T>) -> Result<(), StoreError> {
        match checkpoint {
            Some(c) => self.upsert_json(Table::Checkpoints, &table_key(key), c).await,
            None => self
                .backend
                .delete(Table::Checkpoints, &table_key(key), SINGLE_ROW, None)
                .await
                .map(|_| ()),
        }
    }

    // --- alert suppression ----------------------------------------------------------------

    /// When an alert with this key (resource + outcome) was last sent, and how many were folded since.
    pub async fn alert_suppression(&self, key: &str) -> Result<Option<SuppressionState>, StoreError> {
        Ok(self
            .get_json(Table::Suppression, &table_key(key), SINGLE_ROW)
            .await?
            .map(|v| v.value))
    }

    pub async fn set_alert_suppression(&self, key: &str, state: &SuppressionState) -> Result<(), StoreError> {
        self.upsert_json(Table::Suppression, &table_key(key), state).await
    }
}

/// A resource keyguard has seen, with its safeguards as the last real look saw them.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KnownResource {
    resource_id: String,
    /// Absent in rows written before safeguards were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    safeguards: Option<SafeguardState>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevertTimes {
    resource_id: String,
    times: Vec<i64>,
}

/// Where the state lives, from configuration.
#[derive(Clone, Debug)]
pub enum StoreLocation {
    Embedded(std::path::PathBuf),
    Table(TableConnection),
}

impl StoreLocation {
    /// `KEYGUARD_STATE_STORE` = `embedded` | `table` | unset (auto). Table Storage comes from
    /// `KEYGUARD_STORAGE` (a connection string or an account's table URL), else the Functions
    /// host's own `AzureWebJobsStorage` (connection string, or identity-based
    /// `AzureWebJobsStorage__accountName` / `__tableServiceUri`): on a scaled-out Functions app
    /// every instance then shares one store. Without any of these: the embedded file.
    pub fn from_lookup(
        get: &impl Fn(&str) -> Option<String>,
        embedded_path: std::path::PathBuf,
    ) -> anyhow::Result<Self> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mode = get("KEYGUARD_STATE_STORE").map(|m| m.trim().to_ascii_lowercase());
        let table_prefix = get("KEYGUARD_TABLE_PREFIX").unwrap_or_else(|| "keyguard".into());
        let connection = if let Some(value) = get("KEYGUARD_STORAGE") {
            Some(TableConnection::parse(&value, &table_prefix).map_err(|e| anyhow::anyhow!("KEYGUARD_STORAGE: {e}"))?)
        } else if let Some(value) = get("AzureWebJobsStorage") {
            Some(
                TableConnection::parse(&value, &table_prefix)
                    .map_err(|e| anyhow::anyhow!("AzureWebJobsStorage: {e}"))?,
            )
        } else if let Some(uri) = get("AzureWebJobsStorage__tableServiceUri") {
            Some(TableConnection::parse(&uri, &table_prefix).map_err(|e| anyhow::anyhow!("{e}"))?)
        } else {
            get("AzureWebJobsStorage__accountName").map(|account| TableConnection::for_account(&account, &table_prefix))
        };
        match (mode.as_deref(), connection) {
            (Some("embedded"), _) | (None, None) => Ok(StoreLocation::Embedded(embedded_path)),
            (Some("table") | None, Some(connection)) => Ok(StoreLocation::Table(connection)),
            (Some("table"), None) => anyhow::bail!(
                "KEYGUARD_STATE_STORE=table needs KEYGUARD_STORAGE (a connection string or https://<account>.table.core.windows.net)"
            ),
            (Some(other), _) => anyhow::bail!("KEYGUARD_STATE_STORE={other:?} is not one of embedded, table"),
        }
    }

    /// For messages: the file, or the table endpoint (never a key).
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Embedded(path) => format!("embedded {}", path.display()),
            StoreLocation::Table(c) => format!("azure-table {}", c.endpoint),
        }
    }

    /// The table service's base URL, the one origin the storage credential may go to.
    pub fn table_endpoint(&self) -> Option<&url::Url> {
        match self {
            StoreLocation::Embedded(_) => None,
            StoreLocation::Table(c) => Some(&c.endpoint),
        }
    }

    pub async fn open(&self, egress: Arc<crate::egress::Egress>) -> Result<StateStore, StoreError> {
        let backend: Arc<dyn TableBackend> = match self {
            StoreLocation::Embedded(path) => Arc::new(EmbeddedBackend::open(path)?),
            StoreLocation::Table(connection) => Arc::new(AzureTableBackend::new(egress, connection.clone())),
        };
        StateStore::new(backend).await
    }
}

#[cfg(test)]
mod corrupt_tests;
#[cfg(test)]
pub(crate) mod tapped;
#[cfg(test)]
mod tests;
