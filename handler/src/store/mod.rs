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
mod backend;
pub mod bench;
mod connection;
mod embedded;
mod error;
mod location;
mod record_commit;
mod records;
mod table;

use std::sync::Arc;

use keyguard_core::safeguards::SafeguardState;
use keyguard_core::{KeyRef, ResourceId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use time::OffsetDateTime;

pub use audit::{AuditQuery, DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT};
pub use backend::{Entity, RowGroup, RowRange, Table, TableBackend, Written, table_key, v7_floor};
pub use connection::TableConnection;
pub use embedded::EmbeddedBackend;
pub use error::StoreError;
pub use location::StoreLocation;
pub use record_commit::RecordCommit;
pub use records::{
    Baseline, BaselineSource, BaselineWrite, Lease, OutboxEntry, OutboxStatus, PruneReport, Retention, RevertIntent,
    SuppressionState, Versioned,
};
use records::{KnownResource, LeaseData, RevertTimes};
pub use table::AzureTableBackend;

/// `value` as the JSON a backend stores.
fn to_json(value: &impl Serialize) -> Result<Value, StoreError> {
    serde_json::to_value(value).map_err(StoreError::unwritable)
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
                let previous = current.and_then(|(baseline, _)| baseline).map(Box::new);
                return Ok(BaselineWrite::Recorded { previous });
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
    /// with this id was queued already (a retry of the same decision). Decisions queue theirs
    /// with their audit record ([`StateStore::commit_record`]).
    #[cfg(test)]
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

#[cfg(test)]
mod corrupt_tests;
#[cfg(test)]
pub(crate) mod tapped;
#[cfg(test)]
pub(crate) mod tests;
