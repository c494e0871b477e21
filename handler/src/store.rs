//! What keyguard must remember between invocations: handled event ids (dedupe), the last
//! known-good key of each resource (the revert target), recent reverts (the loop guard) and the
//! resources it has seen (what the periodic reconcile re-checks).
//!
//! One trait, so a scale-out store (Azure Table Storage) can sit beside the embedded one.

use std::path::Path;

use keyguard_core::{KeyRef, ResourceId};

use crate::arm::PendingOperation;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
#[error("state store: {0}")]
pub struct StoreError(String);

fn store_err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

pub trait StateStore: Send + Sync {
    /// True when the event id was handled before and its dedupe entry has not expired.
    fn event_seen(&self, event_id: &str, now: OffsetDateTime) -> Result<bool, StoreError>;
    fn mark_event(&self, event_id: &str, expires_at: OffsetDateTime) -> Result<(), StoreError>;
    /// Drops expired dedupe keys; run by the periodic reconcile so event handling stays O(1).
    fn prune_expired(&self, now: OffsetDateTime) -> Result<(), StoreError>;
    fn baseline(&self, resource: &ResourceId) -> Result<Option<KeyRef>, StoreError>;
    fn set_baseline(&self, resource: &ResourceId, key: &KeyRef) -> Result<(), StoreError>;
    fn reverts_since(&self, resource: &ResourceId, since: OffsetDateTime) -> Result<u32, StoreError>;
    fn record_revert(&self, resource: &ResourceId, at: OffsetDateTime) -> Result<(), StoreError>;
    fn remember_resource(&self, resource: &ResourceId) -> Result<(), StoreError>;
    fn known_resources(&self) -> Result<Vec<ResourceId>, StoreError>;

    /// The alert outbox: an alert is written here before any attempt to send it, so a crash
    /// between "decided" and "sent" loses nothing.
    fn outbox_put(&self, entry: &OutboxEntry) -> Result<(), StoreError>;
    fn outbox_get(&self, id: &str) -> Result<Option<OutboxEntry>, StoreError>;
    /// Every entry, oldest first (ids are time-ordered).
    fn outbox_entries(&self) -> Result<Vec<OutboxEntry>, StoreError>;
    /// When an alert with this key (resource + outcome) was last sent, and how many were folded since.
    fn alert_suppression(&self, key: &str) -> Result<Option<SuppressionState>, StoreError>;
    fn set_alert_suppression(&self, key: &str, state: &SuppressionState) -> Result<(), StoreError>;
    /// A revert ARM accepted but had not finished: the next reconcile of the resource follows it
    /// instead of writing again.
    fn pending_operation(&self, resource: &ResourceId) -> Result<Option<PendingOperation>, StoreError>;
    fn set_pending_operation(&self, resource: &ResourceId, op: Option<&PendingOperation>) -> Result<(), StoreError>;
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
    /// Unix seconds.
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    /// Part of the route's periodic digest: sent together with the other digest entries due then.
    #[serde(default)]
    pub digest: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuppressionState {
    /// Unix seconds of the last alert actually queued.
    pub last_sent: Option<i64>,
    pub folded: u32,
}

const EVENTS: TableDefinition<&str, i64> = TableDefinition::new("handled_events");
const BASELINES: TableDefinition<&str, &str> = TableDefinition::new("baselines");
const REVERTS: TableDefinition<&str, &str> = TableDefinition::new("reverts");
const RESOURCES: TableDefinition<&str, &str> = TableDefinition::new("resources");
const OUTBOX: TableDefinition<&str, &str> = TableDefinition::new("alert_outbox");
const SUPPRESSION: TableDefinition<&str, &str> = TableDefinition::new("alert_suppression");
const PENDING: TableDefinition<&str, &str> = TableDefinition::new("pending_operations");

/// Single-file embedded store (redb: pure Rust, ACID, crash-safe commits). One process at a time.
pub struct EmbeddedStore {
    db: Database,
}

impl EmbeddedStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(store_err)?;
        }
        let db = Database::create(path).map_err(store_err)?;
        let txn = db.begin_write().map_err(store_err)?;
        {
            txn.open_table(EVENTS).map_err(store_err)?;
            txn.open_table(BASELINES).map_err(store_err)?;
            txn.open_table(REVERTS).map_err(store_err)?;
            txn.open_table(RESOURCES).map_err(store_err)?;
            txn.open_table(OUTBOX).map_err(store_err)?;
            txn.open_table(SUPPRESSION).map_err(store_err)?;
            txn.open_table(PENDING).map_err(store_err)?;
        }
        txn.commit().map_err(store_err)?;
        Ok(Self { db })
    }

    fn read<T>(
        &self,
        table: TableDefinition<&str, &str>,
        key: &str,
        f: impl FnOnce(Option<&str>) -> T,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(table).map_err(store_err)?;
        let value = table.get(key).map_err(store_err)?;
        Ok(f(value.as_ref().map(|v| v.value())))
    }

    fn write(&self, table: TableDefinition<&str, &str>, key: &str, value: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut table = txn.open_table(table).map_err(store_err)?;
            table.insert(key, value).map_err(store_err)?;
        }
        txn.commit().map_err(store_err)
    }

    fn revert_times(&self, key: &str) -> Result<Vec<i64>, StoreError> {
        self.read(REVERTS, key, |v| {
            v.and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default()
        })
    }
}

impl StateStore for EmbeddedStore {
    fn event_seen(&self, event_id: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(EVENTS).map_err(store_err)?;
        let expires = table.get(event_id).map_err(store_err)?.map(|v| v.value());
        Ok(expires.is_some_and(|e| e > now.unix_timestamp()))
    }

    fn mark_event(&self, event_id: &str, expires_at: OffsetDateTime) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut table = txn.open_table(EVENTS).map_err(store_err)?;
            table.insert(event_id, expires_at.unix_timestamp()).map_err(store_err)?;
        }
        txn.commit().map_err(store_err)
    }

    fn prune_expired(&self, now: OffsetDateTime) -> Result<(), StoreError> {
        let now = now.unix_timestamp();
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut table = txn.open_table(EVENTS).map_err(store_err)?;
            table.retain(|_, expires| expires > now).map_err(store_err)?;
            // Sent alerts are kept a week for inspection; pending and parked ones until handled.
            let mut outbox = txn.open_table(OUTBOX).map_err(store_err)?;
            outbox
                .retain(|_, json| {
                    serde_json::from_str::<OutboxEntry>(json)
                        .map(|e| e.status != OutboxStatus::Sent || e.created_at > now - 7 * 24 * 3600)
                        .unwrap_or(true)
                })
                .map_err(store_err)?;
        }
        txn.commit().map_err(store_err)
    }

    fn baseline(&self, resource: &ResourceId) -> Result<Option<KeyRef>, StoreError> {
        self.read(BASELINES, &resource.key(), |v| {
            v.and_then(|s| serde_json::from_str(s).ok())
        })
    }

    fn set_baseline(&self, resource: &ResourceId, key: &KeyRef) -> Result<(), StoreError> {
        let json = serde_json::to_string(key).map_err(store_err)?;
        self.write(BASELINES, &resource.key(), &json)
    }

    fn reverts_since(&self, resource: &ResourceId, since: OffsetDateTime) -> Result<u32, StoreError> {
        let times = self.revert_times(&resource.key())?;
        Ok(times.iter().filter(|t| **t >= since.unix_timestamp()).count() as u32)
    }

    fn record_revert(&self, resource: &ResourceId, at: OffsetDateTime) -> Result<(), StoreError> {
        let key = resource.key();
        let horizon = at.unix_timestamp() - 24 * 3600;
        let mut times: Vec<i64> = self.revert_times(&key)?.into_iter().filter(|t| *t >= horizon).collect();
        times.push(at.unix_timestamp());
        let json = serde_json::to_string(&times).map_err(store_err)?;
        self.write(REVERTS, &key, &json)
    }

    fn remember_resource(&self, resource: &ResourceId) -> Result<(), StoreError> {
        let key = resource.key();
        // Most events are for resources seen before: a read avoids a durable commit per event.
        if self.read(RESOURCES, &key, |v| v.is_some())? {
            return Ok(());
        }
        self.write(RESOURCES, &key, resource.as_str())
    }

    fn outbox_put(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        let json = serde_json::to_string(entry).map_err(store_err)?;
        self.write(OUTBOX, &entry.id, &json)
    }

    fn outbox_get(&self, id: &str) -> Result<Option<OutboxEntry>, StoreError> {
        self.read(OUTBOX, id, |v| v.and_then(|s| serde_json::from_str(s).ok()))
    }

    fn outbox_entries(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(OUTBOX).map_err(store_err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(store_err)? {
            let (_, value) = entry.map_err(store_err)?;
            match serde_json::from_str(value.value()) {
                Ok(e) => out.push(e),
                Err(e) => tracing::warn!(error = %e, "unreadable outbox entry skipped"),
            }
        }
        Ok(out)
    }

    fn alert_suppression(&self, key: &str) -> Result<Option<SuppressionState>, StoreError> {
        self.read(SUPPRESSION, key, |v| v.and_then(|s| serde_json::from_str(s).ok()))
    }

    fn set_alert_suppression(&self, key: &str, state: &SuppressionState) -> Result<(), StoreError> {
        let json = serde_json::to_string(state).map_err(store_err)?;
        self.write(SUPPRESSION, key, &json)
    }

    fn pending_operation(&self, resource: &ResourceId) -> Result<Option<PendingOperation>, StoreError> {
        self.read(PENDING, &resource.key(), |v| {
            v.and_then(|s| serde_json::from_str(s).ok())
        })
    }

    fn set_pending_operation(&self, resource: &ResourceId, op: Option<&PendingOperation>) -> Result<(), StoreError> {
        match op {
            Some(op) => {
                let json = serde_json::to_string(op).map_err(store_err)?;
                self.write(PENDING, &resource.key(), &json)
            }
            None => {
                let txn = self.db.begin_write().map_err(store_err)?;
                {
                    let mut table = txn.open_table(PENDING).map_err(store_err)?;
                    table.remove(resource.key().as_str()).map_err(store_err)?;
                }
                txn.commit().map_err(store_err)
            }
        }
    }

    fn known_resources(&self) -> Result<Vec<ResourceId>, StoreError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(RESOURCES).map_err(store_err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(store_err)? {
            let (_, value) = entry.map_err(store_err)?;
            if let Ok(id) = ResourceId::parse(value.value()) {
                out.push(id);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn temp_store() -> (EmbeddedStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("keyguard-store-{}", uuid::Uuid::new_v4()));
        let store = EmbeddedStore::open(&dir.join("state.redb")).unwrap();
        (store, dir)
    }

    fn id(name: &str) -> ResourceId {
        ResourceId::parse(&format!(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/{name}"
        ))
        .unwrap()
    }

    #[test]
    fn dedupe_entries_expire() {
        let (store, dir) = temp_store();
        let now = OffsetDateTime::now_utc();
        assert!(!store.event_seen("e1", now).unwrap());
        store.mark_event("e1", now + Duration::hours(1)).unwrap();
        assert!(store.event_seen("e1", now).unwrap());
        assert!(!store.event_seen("e1", now + Duration::hours(2)).unwrap());
        store.prune_expired(now + Duration::hours(2)).unwrap();
        assert!(!store.event_seen("e1", now).unwrap(), "pruned entries are gone");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn baselines_are_per_resource_and_case_insensitive() {
        let (store, dir) = temp_store();
        let key = KeyRef {
            vault_uri: "https://kv.vault.azure.net".into(),
            key_name: "k".into(),
            key_version: None,
            user_assigned_identity: None,
        };
        store.set_baseline(&id("acct"), &key).unwrap();
        assert_eq!(store.baseline(&id("ACCT")).unwrap(), Some(key));
        assert_eq!(store.baseline(&id("other")).unwrap(), None);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn revert_counts_cover_the_window_only() {
        let (store, dir) = temp_store();
        let now = OffsetDateTime::now_utc();
        store.record_revert(&id("a"), now - Duration::hours(2)).unwrap();
        store.record_revert(&id("a"), now - Duration::minutes(10)).unwrap();
        store.record_revert(&id("a"), now).unwrap();
        assert_eq!(store.reverts_since(&id("a"), now - Duration::hours(1)).unwrap(), 2);
        assert_eq!(store.reverts_since(&id("b"), now - Duration::hours(1)).unwrap(), 0);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn pending_operations_are_kept_and_cleared() {
        let (store, dir) = temp_store();
        let op = PendingOperation {
            url: "https://management.azure.com/op/1".into(),
            is_async_operation: true,
        };
        store.set_pending_operation(&id("a"), Some(&op)).unwrap();
        assert_eq!(store.pending_operation(&id("A")).unwrap(), Some(op));
        store.set_pending_operation(&id("a"), None).unwrap();
        assert_eq!(store.pending_operation(&id("a")).unwrap(), None);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn the_store_survives_reopening() {
        let (store, dir) = temp_store();
        store.remember_resource(&id("kept")).unwrap();
        drop(store);
        let reopened = EmbeddedStore::open(&dir.join("state.redb")).unwrap();
        let known = reopened.known_resources().unwrap();
        assert_eq!(known, vec![id("kept")]);
        std::fs::remove_dir_all(dir).ok();
    }
}
