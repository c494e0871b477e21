//! The entity interface both backends implement ([`TableBackend`]), and the keys and tables the
//! store builds on it.

use std::fmt::Write as _;

use async_trait::async_trait;
use serde_json::Value;
use time::OffsetDateTime;

use super::StoreError;

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

/// Rows for one partition of one table: Table Storage's unit of atomic writes (an entity-group
/// transaction holds at most 100 entities of one partition).
#[derive(Clone, Debug, PartialEq)]
pub struct RowGroup {
    pub table: Table,
    pub partition: String,
    /// Row key and data of each entity.
    pub rows: Vec<(String, Value)>,
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
    /// Inserts every row of `groups` that does not exist yet and leaves the rows that do as they
    /// are, so a retry of the same write completes what is missing and duplicates nothing. The
    /// embedded store writes all groups in one transaction. Table Storage writes each group in one
    /// entity-group transaction, in the order given: a failure leaves a prefix of the groups
    /// written, never part of a group. Returns how many rows of each group were new.
    async fn insert_absent(&self, groups: &[RowGroup]) -> Result<Vec<usize>, StoreError>;
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
