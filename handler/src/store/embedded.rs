//! The embedded backend: one redb file. redb is pure Rust, maintained, and its commits are
//! atomic and durable (copy-on-write B-trees with a checksummed commit slot), so a `kill -9` at
//! any instant leaves the last committed state. One process opens the file at a time (redb locks
//! it), which is what the embedded store is for; many instances use Table Storage. Reads run on
//! the caller's thread; every write goes through one writer thread that commits concurrent
//! writes together ([`group_commit`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;

use super::{Entity, RowGroup, RowRange, StoreError, Table, TableBackend, Written};

mod group_commit;

/// Partition and row keys are joined with NUL, which an escaped key never contains, so a
/// partition's rows are one contiguous key range.
const SEPARATOR: char = '\0';

pub struct EmbeddedBackend {
    db: Arc<Database>,
    path: PathBuf,
    writer: group_commit::Writer,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    etag: String,
    data: Value,
}

fn definition(table: Table) -> TableDefinition<'static, &'static str, &'static str> {
    TableDefinition::new(table.name())
}

fn compound(partition: &str, row: &str) -> String {
    format!("{partition}{SEPARATOR}{row}")
}

/// The tag an unreadable row is treated as having: never one [`new_etag`] makes (those are hex).
const UNREADABLE_ETAG: &str = "unreadable";

fn new_etag() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl EmbeddedBackend {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Unavailable(format!("{}: {e}", parent.display())))?;
        }
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
                "{} is in use by another keyguard process (the embedded store serves one process; \
                 read a running instance's audit trail with GET /api/audit, or share state through Table Storage)",
                path.display()
            )),
            other => match redb_error(other) {
                StoreError::Corrupt(why) => StoreError::Corrupt(format!("{}: {why}", path.display())),
                other => StoreError::Unavailable(format!("{}: {other}", path.display())),
            },
        })?;
        let db = Arc::new(db);
        Ok(Self {
            writer: group_commit::Writer::start(db.clone())?,
            db,
            path: path.to_path_buf(),
        })
    }

    /// Work that can take long (creating the tables, a long query) runs off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }

    /// A point read takes microseconds: handing it to another thread would cost more than doing
    /// it here (a sweep makes tens of thousands).
    async fn quick<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        f(&self.db)
    }

    /// One read-check-write: `decide` sees the current entity and says what to store
    /// (`Some(Some(data))`), to delete (`Some(None)`) or that the condition failed (`None`).
    async fn conditional(
        &self,
        table: Table,
        partition: &str,
        row: &str,
        decide: impl FnOnce(Option<&Stored>) -> Option<Option<Value>> + Send + 'static,
    ) -> Result<Written, StoreError> {
        self.writer
            .conditional(table, compound(partition, row), Box::new(decide))
            .await
    }
}

/// redb's failures by what they mean to a caller: a damaged file, or one whose tables are not
/// keyguard's, reads the same next time; I/O and the rest may pass.
fn redb_error(error: impl Into<redb::Error>) -> StoreError {
    let error: redb::Error = error.into();
    let corrupt = match &error {
        redb::Error::Corrupted(_)
        | redb::Error::UpgradeRequired(_)
        | redb::Error::TableTypeMismatch { .. }
        | redb::Error::TypeDefinitionChanged { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TableIsNotMultimap(_) => true,
        // How redb says that a file does not hold a redb database at all.
        redb::Error::Io(io) => io.kind() == std::io::ErrorKind::InvalidData,
        _ => false,
    };
    if corrupt {
        StoreError::Corrupt(error.to_string())
    } else {
        StoreError::Unavailable(error.to_string())
    }
}

fn entity_from(key: &str, text: &str) -> Result<Entity, StoreError> {
    let (partition, row) = key.split_once(SEPARATOR).unwrap_or((key, ""));
    let stored: Stored = serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("stored row {partition}/{row} is not a stored entity: {e}")))?;
    Ok(Entity {
        partition: partition.to_string(),
        row: row.to_string(),
        etag: stored.etag,
        data: stored.data,
    })
}

#[async_trait]
impl TableBackend for EmbeddedBackend {
    fn describe(&self) -> String {
        format!("embedded {}", self.path.display())
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        self.blocking(|db| {
            let txn = db.begin_write().map_err(redb_error)?;
            for table in Table::ALL {
                txn.open_table(definition(table)).map_err(redb_error)?;
            }
            txn.commit().map_err(redb_error)
        })
        .await
    }

    async fn get(&self, table: Table, partition: &str, row: &str) -> Result<Option<Entity>, StoreError> {
        let key = compound(partition, row);
        self.quick(move |db| {
            let txn = db.begin_read().map_err(redb_error)?;
            let t = txn.open_table(definition(table)).map_err(redb_error)?;
            match t.get(key.as_str()).map_err(redb_error)? {
                Some(v) => entity_from(&key, v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn insert(&self, table: Table, partition: &str, row: &str, data: &Value) -> Result<Written, StoreError> {
        let data = data.clone();
        self.conditional(table, partition, row, move |current| match current {
            Some(_) => None,
            None => Some(Some(data)),
        })
        .await
    }

    async fn replace(
        &self,
        table: Table,
        partition: &str,
        row: &str,
        data: &Value,
        if_match: Option<&str>,
    ) -> Result<Written, StoreError> {
        let data = data.clone();
        let if_match = if_match.map(str::to_string);
        self.conditional(table, partition, row, move |current| match (&if_match, current) {
            (None, _) => Some(Some(data)),
            (Some(expected), Some(c)) if c.etag == *expected => Some(Some(data)),
            (Some(_), _) => None,
        })
        .await
    }

    async fn delete(
        &self,
        table: Table,
        partition: &str,
        row: &str,
        if_match: Option<&str>,
    ) -> Result<Written, StoreError> {
        let if_match = if_match.map(str::to_string);
        self.conditional(table, partition, row, move |current| match (&if_match, current) {
            (Some(expected), Some(c)) if c.etag != *expected => None,
            _ => Some(None),
        })
        .await
    }

    async fn insert_absent(&self, groups: &[RowGroup]) -> Result<Vec<usize>, StoreError> {
        self.writer.insert_absent(groups.to_vec()).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.writer.flush().await
    }

    async fn query_first(&self, table: Table, range: &RowRange<'_>, max: usize) -> Result<Vec<Entity>, StoreError> {
        let partition = range.partition.map(str::to_string);
        let row_from = range.row_from.map(str::to_string);
        let row_before = range.row_before.map(str::to_string);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(redb_error)?;
            let t = txn.open_table(definition(table)).map_err(redb_error)?;
            let range = RowRange {
                partition: partition.as_deref(),
                row_from: row_from.as_deref(),
                row_before: row_before.as_deref(),
            };
            let mut out = Vec::new();
            let iter = match &partition {
                // The partition's keys run from "p\0" up to (not including) "p\x01".
                Some(p) => {
                    let start = format!("{p}{SEPARATOR}{}", row_from.as_deref().unwrap_or(""));
                    let end = format!("{p}\u{1}");
                    t.range::<&str>(start.as_str()..end.as_str()).map_err(redb_error)?
                }
                None => t.iter().map_err(redb_error)?,
            };
            for item in iter {
                if out.len() >= max {
                    break;
                }
                let (key, value) = item.map_err(redb_error)?;
                // The keys decide before the value is parsed: skipped rows cost no JSON parsing.
                let (p, r) = key.value().split_once(SEPARATOR).unwrap_or((key.value(), ""));
                if range.contains(p, r) {
                    out.push(entity_from(key.value(), value.value())?);
                }
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
impl EmbeddedBackend {
    /// Stores `text` as the row's bytes, as a damaged or tampered file would hold them.
    pub(super) fn write_raw(&self, table: Table, partition: &str, row: &str, text: &str) {
        let txn = self.db.begin_write().unwrap();
        txn.open_table(definition(table))
            .unwrap()
            .insert(compound(partition, row).as_str(), text)
            .unwrap();
        txn.commit().unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that is not a redb database (a truncated copy, another program's file) is refused
    /// as corrupt: opening it again gives the same answer.
    #[test]
    fn a_file_that_is_not_a_store_is_corrupt_not_unavailable() {
        let dir = crate::test_support::TempDir::new("keyguard-embedded-foreign");
        let path = dir.path().join("state.redb");
        std::fs::write(&path, vec![0x5a_u8; 64 * 1024]).unwrap();
        let error = EmbeddedBackend::open(&path).err().expect("a foreign file is refused");
        assert!(matches!(error, StoreError::Corrupt(_)), "{error}");
        assert!(!error.retryable());
        assert!(error.to_string().contains("state.redb"), "names the file: {error}");
    }
}
