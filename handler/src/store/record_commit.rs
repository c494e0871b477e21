//! An audit record, the alerts it raises and the event it answers, written as one store
//! operation (issue 13: no alert lost after a revert, nothing recorded or alerted twice on a retry).
//!
//! The embedded store writes it all in one transaction. Table Storage writes atomically only
//! within one partition of one table (an entity-group transaction), and the pieces live where
//! their readers look: the record in its resource's audit partition (a resource's trail is one
//! bounded read) and in its day of the timeline, the alerts in the outbox partition (the one place
//! the dispatcher reads). So there it is three transactions in a fixed order (timeline, the
//! record with its event marker, the alerts), each keyed by the record id. A failure leaves a
//! prefix written; the retry, which finds the record id again (the revert intent's id, or the
//! event marker's), inserts only what is missing. See ARCHITECTURE.md, "One record, its alerts".

use serde::Serialize;
use serde_json::json;

use super::audit::{Filed, filed, timeline_partition};
use super::{OUTBOX_PARTITION, OutboxEntry, RowGroup, StateStore, StoreError, Table, table_key, to_json};

/// Event markers sort after every record's row key (hex digits, or the earlier layouts' keys),
/// so a resource's trail is read up to (not including) them.
pub(super) const MARKERS_FROM: &str = "~";
const MARKER_PREFIX: &str = "~event~";

pub(super) fn resource_partition(resource: &str) -> String {
    table_key(&resource.to_ascii_lowercase())
}

fn event_marker(event_id: &str) -> String {
    format!("{MARKER_PREFIX}{}", table_key(event_id))
}

/// The row-key range of a partition's event markers.
pub(super) fn marker_range() -> (String, String) {
    (MARKER_PREFIX.to_string(), format!("{MARKER_PREFIX}\u{7f}"))
}

/// What one decision writes: its record, the event it answers (if any), its alerts.
pub struct RecordCommit<'a, T> {
    /// The resource the record concerns (its trail's partition).
    pub resource: &'a str,
    /// A UUID v7 (time order); the same on every retry of the decision.
    pub id: &'a str,
    /// Marks the event as recorded under `id`, so its redelivery finds the id again.
    pub event_id: Option<&'a str>,
    pub record: &'a T,
    /// Queued in the same write; their ids derive from `id`.
    pub alerts: &'a [OutboxEntry],
}

impl StateStore {
    /// The id an earlier attempt recorded this event's decision under: a redelivery records
    /// under it again, which writes nothing twice.
    pub async fn event_record_id(&self, resource: &str, event_id: &str) -> Result<Option<String>, StoreError> {
        let marker = self
            .backend
            .get(Table::Audit, &resource_partition(resource), &event_marker(event_id))
            .await?;
        Ok(marker.and_then(|m| m.data["recordId"].as_str().map(str::to_string)))
    }

    /// Appends the record (insert-only) and queues its alerts as one operation; what an earlier
    /// attempt under the same id wrote stays as it is. `false`: the record existed already.
    pub async fn commit_record<T: Serialize>(&self, commit: RecordCommit<'_, T>) -> Result<bool, StoreError> {
        let data = to_json(commit.record)?;
        let Filed { ms, row } = filed(commit.id);
        let mut by_resource = vec![(row.clone(), data.clone())];
        if let Some(event_id) = commit.event_id {
            let marker = json!({ "recordId": commit.id, "eventId": event_id, "ms": ms });
            by_resource.push((event_marker(event_id), marker));
        }
        let mut groups = vec![
            // The timeline first: a failure after it leaves a timeline entry whose record the
            // retry then writes, never a record missing from the timeline.
            RowGroup {
                table: Table::AuditTimeline,
                partition: timeline_partition(ms),
                rows: vec![(row, data)],
            },
            RowGroup {
                table: Table::Audit,
                partition: resource_partition(commit.resource),
                rows: by_resource,
            },
        ];
        if !commit.alerts.is_empty() {
            groups.push(outbox_group(commit.alerts)?);
        }
        let new = self.backend.insert_absent(&groups).await?;
        Ok(new.get(1).is_some_and(|n| *n > 0))
    }

    /// Alerts that belong to no audit record, queued together (one transaction).
    pub async fn outbox_add_all(&self, alerts: &[OutboxEntry]) -> Result<usize, StoreError> {
        if alerts.is_empty() {
            return Ok(0);
        }
        let new = self.backend.insert_absent(&[outbox_group(alerts)?]).await?;
        Ok(new.iter().sum())
    }
}

fn outbox_group(alerts: &[OutboxEntry]) -> Result<RowGroup, StoreError> {
    Ok(RowGroup {
        table: Table::Outbox,
        partition: OUTBOX_PARTITION.to_string(),
        rows: alerts
            .iter()
            .map(|a| Ok((a.id.clone(), to_json(a)?)))
            .collect::<Result<_, StoreError>>()?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use time::{Duration, OffsetDateTime};

    use super::super::tests::{id, stores, uuid_at};
    use super::*;
    use crate::store::{AuditQuery, RowRange};

    /// The event marker is found again by the event's id, is never read as a record, and goes
    /// with its records when they are pruned; a second commit under the same id writes nothing.
    #[tokio::test]
    async fn an_event_marker_names_the_record_is_not_a_record_and_is_pruned_with_it() {
        for (name, store) in stores().await {
            let resource = id("stmarked");
            let record_id = uuid_at(OffsetDateTime::now_utc() - Duration::days(40));
            let record = json!({ "id": record_id });
            let commit = || RecordCommit {
                resource: resource.as_str(),
                id: &record_id,
                event_id: Some("event-1"),
                record: &record,
                alerts: &[],
            };
            assert!(store.commit_record(commit()).await.unwrap(), "{name}");
            assert!(!store.commit_record(commit()).await.unwrap(), "{name}: written once");
            assert_eq!(
                store.event_record_id(resource.as_str(), "event-1").await.unwrap(),
                Some(record_id.clone()),
                "{name}"
            );
            let query = AuditQuery {
                resource: Some(resource.clone()),
                ..AuditQuery::default()
            };
            let records: Vec<Value> = store.audit_records(&query).await.unwrap();
            assert_eq!(records, vec![record.clone()], "{name}: the marker is no record");

            let pruned = store
                .prune_audit(OffsetDateTime::now_utc() - Duration::days(30))
                .await
                .unwrap();
            assert_eq!(pruned, 1, "{name}: one record, the marker not counted");
            let left = store.backend.query(Table::Audit, &RowRange::default()).await.unwrap();
            assert!(left.is_empty(), "{name}: the marker went with it: {left:?}");
            assert_eq!(
                store.event_record_id(resource.as_str(), "event-1").await.unwrap(),
                None,
                "{name}"
            );
        }
    }
}
