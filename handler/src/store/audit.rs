//! The audit trail: what keyguard saw, decided and did, insert-only, read back newest first with
//! a bound that the store's query applies, so no read loads the whole trail.
//!
//! # Layout
//!
//! Table Storage (and the embedded store, which mirrors its key order) returns rows in ascending
//! key order only. To read "the newest N" without reading everything older, every row key is
//! newest first: the record id (a UUID v7: time, then a counter) with every bit inverted, as 32 hex
//! digits. Its first 12 digits are the inverted millisecond, so a time is a key prefix. Each
//! record is written twice:
//!
//! - [`Table::Audit`], one partition per resource: a resource's trail is one partition's prefix;
//! - [`Table::AuditTimeline`], one partition per day (also newest first): the whole trail in time
//!   order, across resources.
//!
//! A time window is a row-key range in both. Records written before this layout (plain v7 row
//! keys, which sort below every newest-first key) are no longer read, and are pruned by age.

use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::record_commit::{MARKERS_FROM, RecordCommit, marker_range};
use super::{RowRange, StateStore, StoreError, Table, table_key, v7_floor};
use keyguard_core::ResourceId;

/// Records per query unless the caller asks for another number.
pub const DEFAULT_AUDIT_LIMIT: usize = 1_000;
/// The most one API or CLI query may ask for.
pub const MAX_AUDIT_LIMIT: usize = 10_000;

/// UUID v7 timestamps are 48-bit milliseconds.
const MAX_MS: u64 = (1 << 48) - 1;
const DAY_MS: u64 = 86_400_000;

/// Which audit records to read: the newest `limit` of those in the window, returned oldest first.
#[derive(Clone, Debug)]
pub struct AuditQuery {
    pub resource: Option<ResourceId>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// Applied in the store's query: no more rows than this are read.
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self {
            resource: None,
            since: None,
            until: None,
            limit: DEFAULT_AUDIT_LIMIT,
        }
    }
}

fn ms_of(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(0)
        .min(MAX_MS)
}

/// Where a record is filed: its millisecond and its newest-first row key.
pub(super) struct Filed {
    pub(super) ms: u64,
    pub(super) row: String,
}

/// A UUID v7 by its bits inverted (the time in its top 48 bits, so newer ids sort first, and in
/// the order they were made within a millisecond); any other id under the time of writing.
pub(super) fn filed(id: &str) -> Filed {
    match uuid::Uuid::parse_str(id) {
        Ok(u) if u.get_version_num() == 7 => Filed {
            ms: (u.as_u128() >> 80) as u64,
            row: format!("{:032x}", !u.as_u128()),
        },
        _ => {
            let ms = ms_of(OffsetDateTime::now_utc());
            Filed {
                ms,
                row: format!("{}-{}", at_or_before(ms), table_key(id)),
            }
        }
    }
}

pub(super) fn timeline_partition(ms: u64) -> String {
    format!("{:06x}", MAX_MS / DAY_MS - ms / DAY_MS)
}

/// A row-key bound: every row of a record at `ms` or earlier sorts at or after it.
fn at_or_before(ms: u64) -> String {
    format!("{:012x}", MAX_MS - ms)
}

/// `None`: the window holds nothing (it ends before the epoch).
fn window(query: &AuditQuery) -> Option<(Option<String>, Option<String>)> {
    // [since, until) in time is (until - 1 ms, since] backwards: rows from "at or before until - 1"
    // up to (excluding) "at or before since - 1".
    let row_from = match query.until.map(ms_of) {
        Some(0) => return None,
        Some(until) => Some(at_or_before(until - 1)),
        None => None,
    };
    let row_before = match query.since.map(ms_of) {
        Some(since) if since > 0 => Some(at_or_before(since - 1)),
        _ => None,
    };
    Some((row_from, row_before))
}

impl StateStore {
    /// Appends one record under the resource it concerns; `id` is a UUID v7 (time order).
    /// Insert-only: a record is never rewritten. `false`: a record with this id exists already.
    pub async fn append_audit<T: Serialize>(&self, resource: &str, id: &str, record: &T) -> Result<bool, StoreError> {
        self.commit_record(RecordCommit {
            resource,
            id,
            event_id: None,
            record,
            alerts: &[],
        })
        .await
    }

    /// The newest `query.limit` records in the window, oldest first. Reads at most that many rows:
    /// one resource's partition, or the timeline across resources.
    pub async fn audit_records<T: DeserializeOwned>(&self, query: &AuditQuery) -> Result<Vec<T>, StoreError> {
        let Some((row_from, row_before)) = window(query) else {
            return Ok(Vec::new());
        };
        let partition = query.resource.as_ref().map(|r| table_key(&r.key()));
        let range = RowRange {
            partition: partition.as_deref(),
            row_from: row_from.as_deref(),
            // Never past the records into a partition's event markers.
            row_before: Some(row_before.as_deref().unwrap_or(MARKERS_FROM)),
        };
        let table = match partition {
            Some(_) => Table::Audit,
            None => Table::AuditTimeline,
        };
        let mut rows = self.backend.query_first(table, &range, query.limit).await?;
        rows.reverse();
        rows.into_iter()
            .map(|e| {
                serde_json::from_value(e.data)
                    .map_err(|err| StoreError::Corrupt(format!("audit record {} is unreadable: {err}", e.row)))
            })
            .collect()
    }

    /// Deletes the records from before `horizon` (both copies; also rows of the earlier layout).
    /// Returns how many records went.
    pub(super) async fn prune_audit(&self, horizon: OffsetDateTime) -> Result<usize, StoreError> {
        let before_horizon = at_or_before(ms_of(horizon).saturating_sub(1));
        let old = RowRange {
            row_from: Some(&before_horizon),
            row_before: Some(MARKERS_FROM),
            ..RowRange::default()
        };
        let legacy_horizon = v7_floor(horizon);
        let legacy = RowRange {
            row_before: Some(&legacy_horizon),
            ..RowRange::default()
        };
        let mut records = 0;
        for range in [&old, &legacy] {
            for entity in self.backend.query(Table::Audit, range).await? {
                if self
                    .delete_if_unchanged(Table::Audit, &entity.partition, &entity.row, &entity.etag)
                    .await?
                {
                    records += 1;
                }
            }
        }
        for entity in self.backend.query(Table::AuditTimeline, &old).await? {
            self.delete_if_unchanged(Table::AuditTimeline, &entity.partition, &entity.row, &entity.etag)
                .await?;
        }
        // An event's marker goes with the records of its time: Event Grid stops redelivering
        // after a day, long before any retention.
        let (markers_from, markers_before) = marker_range();
        let markers = RowRange {
            row_from: Some(&markers_from),
            row_before: Some(&markers_before),
            ..RowRange::default()
        };
        for entity in self.backend.query(Table::Audit, &markers).await? {
            if entity.data["ms"].as_u64().is_none_or(|ms| ms < ms_of(horizon)) {
                self.delete_if_unchanged(Table::Audit, &entity.partition, &entity.row, &entity.etag)
                    .await?;
            }
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::{Value, json};
    use time::Duration;
    use time::macros::datetime;

    use super::super::tapped::{Tap, Tapped};
    use super::super::tests::{id, stores, uuid_at as v7_at};
    use super::*;

    /// Counts the rows the backend's queries hand out: what the store actually read.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl Tap for Counting {
        fn rows_read(&self, rows: usize) {
            self.0.fetch_add(rows, Ordering::SeqCst);
        }
    }

    /// Finding 7: an unfiltered `GET /api/audit` loaded the whole table and kept the last 1,000.
    /// Now the backend's query itself stops at the limit, on both backends.
    #[tokio::test]
    async fn a_query_reads_no_more_rows_than_its_limit_and_gets_the_newest() {
        for (name, store) in stores().await {
            let counting = Arc::new(Tapped {
                inner: store.backend.clone(),
                tap: Counting::default(),
            });
            let store = StateStore {
                backend: counting.clone(),
            };
            // 30 records, 3 resources, one every 5 hours: they span several day partitions.
            let t0 = OffsetDateTime::now_utc() - Duration::days(7);
            for n in 0..30i64 {
                let resource = id(&format!("st{}", n % 3));
                let record = json!({"n": n});
                let record_id = v7_at(t0 + Duration::hours(5 * n));
                assert!(
                    store
                        .append_audit(resource.as_str(), &record_id, &record)
                        .await
                        .unwrap()
                );
            }
            let numbers = |records: Vec<Value>| records.iter().map(|r| r["n"].as_i64().unwrap()).collect::<Vec<_>>();
            let cases = [
                (
                    AuditQuery {
                        limit: 7,
                        ..AuditQuery::default()
                    },
                    (23..30).collect::<Vec<_>>(),
                ),
                (
                    AuditQuery {
                        resource: Some(id("st1")),
                        limit: 4,
                        ..AuditQuery::default()
                    },
                    vec![16, 19, 22, 25, 28][1..].to_vec(),
                ),
                (
                    AuditQuery {
                        since: Some(t0 + Duration::hours(5 * 10)),
                        until: Some(t0 + Duration::hours(5 * 20)),
                        limit: 3,
                        ..AuditQuery::default()
                    },
                    vec![17, 18, 19],
                ),
                (
                    AuditQuery {
                        since: Some(t0 + Duration::hours(5 * 10)),
                        until: Some(t0 + Duration::hours(5 * 12)),
                        ..AuditQuery::default()
                    },
                    vec![10, 11],
                ),
            ];
            for (query, expected) in cases {
                counting.tap.0.store(0, Ordering::SeqCst);
                let records: Vec<Value> = store.audit_records(&query).await.unwrap();
                let read = counting.tap.0.load(Ordering::SeqCst);
                assert_eq!(numbers(records), expected, "{name}: {query:?}");
                assert!(
                    read <= query.limit,
                    "{name}: {read} rows read for a limit of {}",
                    query.limit
                );
            }
        }
    }

    #[tokio::test]
    async fn pruning_drops_both_copies_and_rows_of_the_earlier_layout() {
        for (name, store) in stores().await {
            let now = OffsetDateTime::now_utc();
            let old = v7_at(now - Duration::days(40));
            let new = v7_at(now - Duration::days(1));
            for record_id in [&old, &new] {
                store
                    .append_audit(id("st").as_str(), record_id, &json!({"id": record_id}))
                    .await
                    .unwrap();
            }
            // A row as the earlier layout wrote it: the plain v7 id as the row key.
            let legacy = v7_at(now - Duration::days(50));
            store
                .backend
                .insert(
                    Table::Audit,
                    &table_key(&id("st").key()),
                    &legacy,
                    &json!({"id": legacy}),
                )
                .await
                .unwrap();
            assert_eq!(store.prune_audit(now - Duration::days(30)).await.unwrap(), 2, "{name}");
            let all = RowRange::default();
            for table in [Table::Audit, Table::AuditTimeline] {
                let rows = store.backend.query(table, &all).await.unwrap();
                let ids: Vec<&Value> = rows.iter().map(|e| &e.data["id"]).collect();
                assert_eq!(ids, vec![&json!(new)], "{name}: {table:?}");
            }
        }
    }

    #[test]
    fn newer_records_sort_first_and_a_window_is_a_row_range() {
        let t = datetime!(2026-11-23 12:00 UTC);
        let rows: Vec<String> = [t - Duration::milliseconds(1), t, t + Duration::milliseconds(1)]
            .iter()
            .map(|at| filed(&v7_at(*at)).row)
            .collect();
        assert!(rows[2] < rows[1] && rows[1] < rows[0], "{rows:?}");
        // Within one millisecond too, the later id first.
        let (first, second) = (uuid::Uuid::now_v7().to_string(), uuid::Uuid::now_v7().to_string());
        assert!(first < second && filed(&second).row < filed(&first).row);
        assert_eq!(filed(&first).ms, ms_of(OffsetDateTime::now_utc()).min(filed(&first).ms));
        let query = AuditQuery {
            since: Some(t),
            until: Some(t + Duration::milliseconds(1)),
            ..AuditQuery::default()
        };
        let (from, before) = window(&query).unwrap();
        let range = RowRange {
            partition: None,
            row_from: from.as_deref(),
            row_before: before.as_deref(),
        };
        // Exactly the record at `t`: `since` inclusive, `until` exclusive.
        let inside: Vec<bool> = rows.iter().map(|r| range.contains("p", r)).collect();
        assert_eq!(inside, vec![false, true, false], "{rows:?} in {range:?}");
        let later_days = timeline_partition(ms_of(t + Duration::days(1)));
        assert!(later_days < timeline_partition(ms_of(t)), "newer days first");
    }

    #[test]
    fn windows_at_the_ends_of_time_neither_panic_nor_wrap() {
        let epoch = OffsetDateTime::UNIX_EPOCH;
        let before_epoch = AuditQuery {
            until: Some(epoch),
            ..AuditQuery::default()
        };
        assert_eq!(window(&before_epoch), None);
        let from_epoch = AuditQuery {
            since: Some(epoch - Duration::days(1)),
            until: Some(datetime!(9999-12-31 23:59 UTC)),
            ..AuditQuery::default()
        };
        let (from, before) = window(&from_epoch).unwrap();
        assert_eq!(before, None, "since at or before the epoch bounds nothing");
        assert_eq!(from.map(|f| f.len()), Some(12));
        // An id without a v7 time is filed under now, not rejected.
        let other = filed("not-a-uuid");
        assert!(other.ms > ms_of(datetime!(2026-01-01 0:00 UTC)), "{}", other.row);
        assert!(other.row.ends_with("-not-a-uuid"));
        let v4 = filed(&uuid::Uuid::new_v4().to_string());
        assert_eq!(v4.row.len(), 12 + 1 + 36, "a v4 id carries no time: filed under now");
    }
}
