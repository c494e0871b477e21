//! A test double over a real backend: it forwards every call and lets a test observe or act at
//! three points, so tests that need "count what was read" or "do this when that is written" do
//! not each restate the whole `TableBackend`.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{Entity, RowGroup, RowRange, StoreError, Table, TableBackend, Written};

/// What a test does around the forwarded calls; both default to nothing.
#[async_trait]
pub trait Tap: Send + Sync {
    /// Before a `replace` is forwarded (the inner backend is at hand to act on).
    async fn before_replace(
        &self,
        _inner: &dyn TableBackend,
        _table: Table,
        _partition: &str,
        _row: &str,
        _data: &Value,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    /// Before an `insert` is forwarded; an error here is the insert's answer.
    async fn before_insert(&self, _table: Table, _partition: &str, _row: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// After a bounded query answered, with the rows it handed out.
    fn rows_read(&self, _rows: usize) {}
    /// In place of an `insert_absent`: by default each row passes [`Tap::before_insert`] (one
    /// refusal fails the whole write, which then writes nothing), then it is forwarded. A test may
    /// instead fail it before, after, or halfway (the first groups written, as Table Storage can
    /// leave it).
    async fn insert_absent(&self, inner: &dyn TableBackend, groups: &[RowGroup]) -> Result<Vec<usize>, StoreError> {
        for group in groups {
            for (row, _) in &group.rows {
                self.before_insert(group.table, &group.partition, row).await?;
            }
        }
        inner.insert_absent(groups).await
    }
}

pub struct Tapped<T> {
    pub inner: Arc<dyn TableBackend>,
    pub tap: T,
}

#[async_trait]
impl<T: Tap> TableBackend for Tapped<T> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn prepare(&self) -> Result<(), StoreError> {
        self.inner.prepare().await
    }
    async fn get(&self, table: Table, partition: &str, row: &str) -> Result<Option<Entity>, StoreError> {
        self.inner.get(table, partition, row).await
    }
    async fn insert(&self, table: Table, partition: &str, row: &str, data: &Value) -> Result<Written, StoreError> {
        self.tap.before_insert(table, partition, row).await?;
        self.inner.insert(table, partition, row, data).await
    }
    async fn replace(
        &self,
        table: Table,
        partition: &str,
        row: &str,
        data: &Value,
        if_match: Option<&str>,
    ) -> Result<Written, StoreError> {
        self.tap
            .before_replace(self.inner.as_ref(), table, partition, row, data)
            .await?;
        self.inner.replace(table, partition, row, data, if_match).await
    }
    async fn delete(
        &self,
        table: Table,
        partition: &str,
        row: &str,
        if_match: Option<&str>,
    ) -> Result<Written, StoreError> {
        self.inner.delete(table, partition, row, if_match).await
    }
    async fn query_first(&self, table: Table, range: &RowRange<'_>, max: usize) -> Result<Vec<Entity>, StoreError> {
        let rows = self.inner.query_first(table, range, max).await?;
        self.tap.rows_read(rows.len());
        Ok(rows)
    }
    async fn query(&self, table: Table, range: &RowRange<'_>) -> Result<Vec<Entity>, StoreError> {
        self.inner.query(table, range).await
    }
    async fn insert_absent(&self, groups: &[RowGroup]) -> Result<Vec<usize>, StoreError> {
        self.tap.insert_absent(self.inner.as_ref(), groups).await
    }
    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }
}
