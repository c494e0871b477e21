//! Group commit (issue 14): concurrent events' writes share one redb transaction and one fsync.
//!
//! One writer thread makes every write of the embedded store. It takes the first write waiting,
//! adds every write queued meanwhile (at most [`MAX_BATCH`]), applies them in arrival order in one
//! transaction (each condition is checked against the writes before it, as if they had been
//! committed one by one), commits once, and only then answers each caller with its own result.
//! So a caller returns only when its write is durable, as before; a commit that fails fails every
//! write in it, and none of them is applied. Conflict semantics are those of one write at a time:
//! an insert-if-absent, a compare-and-swap replace or a lease whose condition fails writes nothing
//! and answers `Conflict`, and the rest of the batch goes on.
//!
//! No write waits for company: while one batch's fsync runs, the next one gathers. A lone write
//! commits at once (what one transaction per write cost), and under load a batch grows with the
//! queue, so what a write waits is at most the commit in progress when it arrived (about 1 ms).
//! A batch is durable when any write in it is to a table that is fsynced (see
//! [`Table::durable`]); a batch of only the others commits without fsync, as they did alone.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use redb::{Database, Durability, ReadableTable, WriteTransaction};
use serde_json::Value;
use tokio::sync::oneshot;

use super::{Stored, UNREADABLE_ETAG, compound, definition, new_etag, redb_error};
use crate::store::{RowGroup, StoreError, Table, Written};

/// Writes in one transaction at most: bounds what one commit holds up and holds in memory.
const MAX_BATCH: usize = 256;

/// A conditional write's rule: given the current entity, what to store (`Some(Some(data))`), to
/// delete (`Some(None)`), or that the condition failed (`None`).
pub(super) type Decide = Box<dyn FnOnce(Option<&Stored>) -> Option<Option<Value>> + Send>;

enum Op {
    Conditional {
        table: Table,
        key: String,
        decide: Decide,
    },
    InsertAbsent(Vec<RowGroup>),
    /// An empty durable commit: what earlier commits without fsync wrote becomes durable.
    Flush,
}

impl Op {
    fn durable(&self) -> bool {
        match self {
            Op::Conditional { table, .. } => table.durable(),
            Op::InsertAbsent(groups) => groups.iter().any(|g| g.table.durable()),
            Op::Flush => true,
        }
    }
}

enum Done {
    Written(Written),
    New(Vec<usize>),
    Flushed,
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Done, StoreError>>,
}

/// The handle callers write through; dropping it lets the thread finish its batch and close
/// the database, so the file can be opened again at once.
pub(super) struct Writer {
    queue: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the embedded store's writer has stopped".into())
}

impl Writer {
    pub(super) fn start(db: Arc<Database>) -> Result<Self, StoreError> {
        let (queue, requests) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("keyguard-store-writer".into())
            .spawn(move || write_batches(&db, &requests))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the store's writer: {e}")))?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    async fn submit(&self, op: Op) -> Result<Done, StoreError> {
        let (reply, answer) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or_else(stopped)?;
        queue.send(Request { op, reply }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    pub(super) async fn conditional(&self, table: Table, key: String, decide: Decide) -> Result<Written, StoreError> {
        match self.submit(Op::Conditional { table, key, decide }).await? {
            Done::Written(written) => Ok(written),
            Done::New(_) | Done::Flushed => Err(stopped()),
        }
    }

    pub(super) async fn insert_absent(&self, groups: Vec<RowGroup>) -> Result<Vec<usize>, StoreError> {
        match self.submit(Op::InsertAbsent(groups)).await? {
            Done::New(counts) => Ok(counts),
            Done::Written(_) | Done::Flushed => Err(stopped()),
        }
    }

    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        self.submit(Op::Flush).await.map(|_| ())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_batches(db: &Database, requests: &mpsc::Receiver<Request>) {
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH
            && let Ok(next) = requests.try_recv()
        {
            batch.push(next);
        }
        let durable = batch.iter().any(|r| r.op.durable());
        let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|r| (r.op, r.reply)).unzip();
        match commit(db, ops, durable) {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                tracing::warn!(%error, writes = replies.len(), "a group commit of the embedded store failed; none of its writes was applied");
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Each write's own result, once the one transaction holding them all is committed. `Err`: the
/// transaction failed and none of them was applied.
fn commit(db: &Database, ops: Vec<Op>, durable: bool) -> Result<Vec<Result<Done, StoreError>>, StoreError> {
    let mut txn = db.begin_write().map_err(redb_error)?;
    if !durable {
        txn.set_durability(Durability::None).map_err(redb_error)?;
    }
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        results.push(apply(&txn, op)?);
    }
    txn.commit().map_err(redb_error)?;
    Ok(results)
}

/// The row as stored: its new tag and data.
fn stored_text(data: Value) -> Result<(String, String), StoreError> {
    let stored = Stored { etag: new_etag(), data };
    let text = serde_json::to_string(&stored).map_err(StoreError::unwritable)?;
    Ok((stored.etag, text))
}

/// One write inside the batch's transaction. The outer error (redb's) fails the transaction; the
/// inner one is this write's own (a value that cannot be written as JSON, found before any row of
/// it is touched), which leaves the rest of the batch alone.
fn apply(txn: &WriteTransaction, op: Op) -> Result<Result<Done, StoreError>, StoreError> {
    match op {
        Op::Flush => Ok(Ok(Done::Flushed)),
        Op::Conditional { table, key, decide } => {
            let mut t = txn.open_table(definition(table)).map_err(redb_error)?;
            // A row that does not read is still there: an insert conflicts with it, no tag a
            // caller holds matches it, and an unconditional write replaces it, as Table
            // Storage's would (so the next write of the row heals it on both backends).
            let current: Option<Stored> = t.get(key.as_str()).map_err(redb_error)?.map(|v| {
                serde_json::from_str(v.value()).unwrap_or_else(|_| Stored {
                    etag: UNREADABLE_ETAG.to_string(),
                    data: Value::Null,
                })
            });
            let written = match decide(current.as_ref()) {
                None => Written::Conflict,
                Some(Some(data)) => {
                    let (etag, text) = match stored_text(data) {
                        Ok(stored) => stored,
                        Err(own) => return Ok(Err(own)),
                    };
                    t.insert(key.as_str(), text.as_str()).map_err(redb_error)?;
                    Written::Done { etag }
                }
                Some(None) => {
                    t.remove(key.as_str()).map_err(redb_error)?;
                    Written::Done { etag: String::new() }
                }
            };
            Ok(Ok(Done::Written(written)))
        }
        Op::InsertAbsent(groups) => {
            let mut prepared = Vec::with_capacity(groups.len());
            for group in groups {
                let mut rows = Vec::with_capacity(group.rows.len());
                for (row, data) in group.rows {
                    match stored_text(data) {
                        Ok((_, text)) => rows.push((compound(&group.partition, &row), text)),
                        Err(own) => return Ok(Err(own)),
                    }
                }
                prepared.push((group.table, rows));
            }
            let mut new = Vec::with_capacity(prepared.len());
            for (table, rows) in prepared {
                let mut t = txn.open_table(definition(table)).map_err(redb_error)?;
                let mut count = 0;
                for (key, text) in rows {
                    if t.get(key.as_str()).map_err(redb_error)?.is_none() {
                        t.insert(key.as_str(), text.as_str()).map_err(redb_error)?;
                        count += 1;
                    }
                }
                new.push(count);
            }
            Ok(Ok(Done::New(new)))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::EmbeddedBackend;
    use crate::store::{Table, TableBackend, Written};

    fn done(written: &Written) -> bool {
        matches!(written, Written::Done { .. })
    }

    /// Writes that arrive together share transactions, and each keeps the answer it would have
    /// had alone: of 64 inserts of one key exactly one wins, of 32 compare-and-swaps against one
    /// tag exactly one wins, and every write of a key of its own succeeds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writes_committed_together_keep_their_own_conditions() {
        let dir = crate::test_support::TempDir::new("keyguard-group-commit");
        let backend = std::sync::Arc::new(EmbeddedBackend::open(&dir.path().join("state.redb")).unwrap());
        backend.prepare().await.unwrap();
        let mut tasks = Vec::new();
        for n in 0..64 {
            let backend = backend.clone();
            tasks.push(tokio::spawn(async move {
                let contested = backend.insert(Table::Intents, "same", "", &json!({ "n": n })).await;
                let own = backend
                    .insert(Table::Intents, &format!("own{n}"), "", &json!({ "n": n }))
                    .await;
                (contested.unwrap(), own.unwrap())
            }));
        }
        let mut winners = 0;
        for task in tasks {
            let (contested, own) = task.await.unwrap();
            winners += usize::from(done(&contested));
            assert!(done(&own), "a key of its own is written");
        }
        assert_eq!(winners, 1, "one insert of a key wins");

        let etag = backend.get(Table::Intents, "same", "").await.unwrap().unwrap().etag;
        let mut swaps = Vec::new();
        for n in 0..32 {
            let (backend, etag) = (backend.clone(), etag.clone());
            swaps.push(tokio::spawn(async move {
                backend
                    .replace(Table::Intents, "same", "", &json!({ "swap": n }), Some(&etag))
                    .await
                    .unwrap()
            }));
        }
        let mut swapped = 0;
        for swap in swaps {
            swapped += usize::from(done(&swap.await.unwrap()));
        }
        assert_eq!(swapped, 1, "one compare-and-swap against a tag wins");
        let stored = backend.get(Table::Intents, "same", "").await.unwrap().unwrap();
        assert_ne!(stored.etag, etag, "the winner's write is what is stored");
        assert!(stored.data["swap"].is_number(), "{:?}", stored.data);
    }
}
