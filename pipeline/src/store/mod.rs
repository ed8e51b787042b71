//! The pipeline's embedded database (DESIGN.md §5, §8): business rows, the transactional
//! outbox, idempotent-consumer keys and the analytics rollups, in one redb database that sits on
//! the `Disk` seam through [`DiskBackend`].
//!
//! Every write method is one redb write transaction committed with `Durability::Immediate`: when
//! it returns `Ok`, the commit has been fsynced, so a crash of the machine keeps it. The batch
//! methods ([`Store::persist_events`], [`Store::apply_rollups`], [`Store::publish_effects`]) apply
//! many events in that one transaction, each with its own dedup check, so a stage pays one commit
//! per poll rather than one per event. A method that
//! fails, or a crash before the commit's sync returned, leaves no trace of it. All methods are
//! synchronous (the `Disk` seam is); each write blocks for one fsync.
//!
//! # Tables
//!
//! Names are stable: they are the file format. Format version 1.
//!
//! | table | key | value |
//! |---|---|---|
//! | `events` | event id (`&str`) | the persisted event, bytes as the caller gave them (JSON) |
//! | `outbox` | sequence (`u64`, from 1) | an unsent [`OutboxRow`], fixed binary encoding (`codec.rs`) |
//! | `dedup` | (stage, event id) | applied-at, epoch ms (`i64`) |
//! | `rollups` | (tenant, minute start ms) | events counted (`u64`) |
//! | `effects` | (stage, key bytes) | value bytes, written by [`Store::apply_effect`] |
//! | `stages` | stage | which derived tables the stage wrote (bit flags) |
//! | `meta` | name | `u64`: `format`, `outbox.next_seq`, `outbox.sent_through` |
//!
//! # Outbox
//!
//! Rows get consecutive sequence numbers in commit order. [`Store::mark_sent`] *deletes* every
//! row up to the given sequence (a sent row is of no further use, and deleting keeps the file
//! bounded), so the table only ever holds unsent rows, in order, and their number is
//! `outbox.next_seq - 1 - outbox.sent_through`. When that reaches
//! [`StoreConfig::outbox_rows_max`], writes that would add a row fail with
//! [`StoreError::OutboxFull`]: the relay has fallen behind and the stage must wait, not grow the
//! outbox without bound.
//!
//! # Idempotent consumers
//!
//! A write that applies an event checks `(stage, event id)` in `dedup` and writes its effect and
//! that key in the same transaction, so redelivery (at-least-once) applies it once.

mod backend;
mod codec;
mod open;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, WriteTransaction,
};
use tidepool_io::{Disk, DiskFile, MemDisk};
use tokio::sync::{Notify, Semaphore, SemaphorePermit};

pub use backend::DiskBackend;

const EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("events");
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
const DEDUP: TableDefinition<(&str, &str), i64> = TableDefinition::new("dedup");
const ROLLUPS: TableDefinition<(&str, i64), u64> = TableDefinition::new("rollups");
const EFFECTS: TableDefinition<(&str, &[u8]), &[u8]> = TableDefinition::new("effects");
const STAGES: TableDefinition<&str, u64> = TableDefinition::new("stages");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const FORMAT_VERSION: u64 = 1;
const META_FORMAT: &str = "format";
const META_NEXT_SEQ: &str = "outbox.next_seq";
const META_SENT_THROUGH: &str = "outbox.sent_through";

/// `stages` flags: the derived tables a stage wrote, which [`Store::clear_stage`] clears.
const WROTE_EVENTS: u64 = 1;
const WROTE_ROLLUPS: u64 = 2;
const WROTE_EFFECTS: u64 = 4;

/// Where [`Store::memory`] keeps its database on its private `MemDisk`.
const MEMORY_PATH: &str = "/pipeline/store.redb";

/// Bounds and tuning of a [`Store`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Unsent outbox rows the store holds before refusing new ones with
    /// [`StoreError::OutboxFull`].
    pub outbox_rows_max: u64,
    /// Memory redb may use to cache pages (its own default is 1 GiB).
    pub cache_bytes: usize,
    /// Known-bad, for the simulator only (`non-idempotent-consumer`): apply effects without
    /// looking at the dedup keys, so a redelivered event is applied again. Nothing outside the
    /// simulator sets it.
    pub sabotage_skip_dedup: bool,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            outbox_rows_max: 100_000,
            cache_bytes: 16 << 20,
            sabotage_skip_dedup: false,
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The disk refused a file or directory operation (opening, creating, syncing).
    #[error("store i/o: {0}")]
    Io(#[from] io::Error),
    /// redb failed, including the disk's errors during a transaction (see the source).
    #[error("store database: {0}")]
    Database(#[from] redb::Error),
    /// The outbox holds `pending` unsent rows, its bound: publish and mark some sent first.
    #[error("outbox full: {pending} unsent rows, bound {max}")]
    OutboxFull { pending: u64, max: u64 },
    /// A stored value cannot be decoded.
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// The file holds a database of another format version, or none at all.
    #[error("{path}: store format {found:?}, expected {FORMAT_VERSION}")]
    Format { path: PathBuf, found: Option<u64> },
    /// The path has no parent directory or no file name.
    #[error("{0}: a store needs a file path inside a directory")]
    InvalidPath(PathBuf),
    /// The store is already open in this process with a different configuration.
    #[error("{0} is already open with another configuration")]
    ConfigMismatch(PathBuf),
    /// A value the caller passed cannot be stored.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The effect of [`Store::apply_effect`] failed; nothing was written.
    #[error("effect failed: {0}")]
    Effect(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Wraps an effect's own error, for returning it from [`Store::apply_effect`]'s closure.
    pub fn effect(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
        StoreError::Effect(error.into())
    }
}

macro_rules! redb_errors {
    ($($error:ty),*) => {$(
        impl From<$error> for StoreError {
            fn from(error: $error) -> StoreError {
                StoreError::Database(error.into())
            }
        }
    )*};
}

redb_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// What an idempotent write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// First delivery: the effect and the dedup key were committed together. `outbox_seq` is
    /// the sequence of the outbox row written ([`Store::persist_event`]; the last one published
    /// by an effect), `None` when no row was written.
    New { outbox_seq: Option<u64> },
    /// Already applied by this stage: nothing was written.
    Duplicate,
}

impl Applied {
    pub fn is_new(self) -> bool {
        matches!(self, Applied::New { .. })
    }
}

/// A message to publish, as handed to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxRow {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// An unsent outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Position in the outbox: rows are published in ascending `seq`.
    pub seq: u64,
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The `now_ms` of the transaction that wrote it.
    pub created_ms: i64,
}

/// The pipeline's database. Cheap to clone: clones share one open redb database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// **Invariant:** `db` is the only open `Database` on `path` of the claimed disk (see
/// `open.rs`). Fields drop in order: the database closes before the claim is released.
struct Inner {
    db: Database,
    file: Arc<dyn DiskFile>,
    config: StoreConfig,
    path: PathBuf,
    /// Signalled after a commit that appended outbox rows, so the relay publishes them at once
    /// instead of finding them on its next idle poll.
    outbox_written: Notify,
    /// Turns at writing for async callers ([`Store::write_turn`]).
    writers: Semaphore,
    _claim: open::Claim,
}

impl Inner {
    /// Whether the file handle still works: a crashed simulated disk fails the handles opened
    /// before the crash, as the process that held them is gone.
    fn is_alive(&self) -> bool {
        self.file.len().is_ok()
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// What a transaction body decided.
enum Outcome<R> {
    Commit(R),
    /// Nothing to write (a duplicate, a no-op): abort rather than commit an empty transaction,
    /// which would still cost a sync.
    Abort(R),
}

fn create_tables(db: &Database) -> Result<(), StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    txn.open_table(EVENTS)?;
    txn.open_table(OUTBOX)?;
    txn.open_table(DEDUP)?;
    txn.open_table(ROLLUPS)?;
    txn.open_table(EFFECTS)?;
    txn.open_table(STAGES)?;
    txn.open_table(META)?.insert(META_FORMAT, FORMAT_VERSION)?;
    txn.commit()?;
    Ok(())
}

fn meta_value(
    table: &impl ReadableTable<&'static str, u64>,
    name: &str,
) -> Result<u64, StoreError> {
    Ok(table.get(name)?.map_or(0, |value| value.value()))
}

/// The outbox's tables inside one write transaction.
struct Outbox<'t> {
    rows: Table<'t, u64, &'static [u8]>,
    meta: Table<'t, &'static str, u64>,
}

impl<'t> Outbox<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Outbox<'t>, StoreError> {
        Ok(Outbox {
            rows: txn.open_table(OUTBOX)?,
            meta: txn.open_table(META)?,
        })
    }

    /// The last sequence handed out (0 before the first row).
    fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(meta_value(&self.meta, META_NEXT_SEQ)?.max(1) - 1)
    }

    fn append(&mut self, row: &NewOutboxRow, now_ms: i64, max: u64) -> Result<u64, StoreError> {
        let last = self.last_seq()?;
        let pending = last - meta_value(&self.meta, META_SENT_THROUGH)?;
        if pending >= max {
            return Err(StoreError::OutboxFull { pending, max });
        }
        let seq = last + 1;
        self.rows
            .insert(seq, codec::encode(row, now_ms)?.as_slice())?;
        self.meta.insert(META_NEXT_SEQ, seq + 1)?;
        Ok(seq)
    }
}

/// Records that `stage` wrote a derived table, for [`Store::clear_stage`].
fn note_stage(txn: &WriteTransaction, stage: &str, wrote: u64) -> Result<(), StoreError> {
    let mut stages = txn.open_table(STAGES)?;
    let flags = stages.get(stage)?.map_or(0, |flags| flags.value());
    if flags & wrote != wrote {
        stages.insert(stage, flags | wrote)?;
    }
    Ok(())
}

/// A batch body's end: commit when an item was applied, else abort (nothing to sync).
fn commit_if<R>(
    txn: &WriteTransaction,
    any_new: bool,
    stage: &str,
    wrote: u64,
    value: R,
) -> Result<Outcome<R>, StoreError> {
    if !any_new {
        return Ok(Outcome::Abort(value));
    }
    note_stage(txn, stage, wrote)?;
    Ok(Outcome::Commit(value))
}

/// Splits an outbox append's failure: a full outbox refuses one event of a batch (nothing of
/// it was written), anything else fails the transaction.
fn refusable(appended: Result<u64, StoreError>) -> Result<Result<u64, StoreError>, StoreError> {
    match appended {
        Ok(seq) => Ok(Ok(seq)),
        Err(full @ StoreError::OutboxFull { .. }) => Ok(Err(full)),
        Err(error) => Err(error),
    }
}

/// A turn at writing to the store ([`Store::write_turn`]); dropping it ends the turn.
pub struct WriteTurn<'a> {
    _permit: SemaphorePermit<'a>,
}

/// One event of [`Store::persist_events`]: its business row and the outbox row announcing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventToPersist {
    pub event_id: String,
    pub row: Vec<u8>,
    pub outbox: NewOutboxRow,
}

/// One event of [`Store::apply_rollups`]: the tenant and minute it counts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventToCount {
    pub event_id: String,
    pub tenant: String,
    pub minute_ms: i64,
}

/// One event of [`Store::publish_effects`]: the outbox row it publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventToPublish {
    pub event_id: String,
    pub row: NewOutboxRow,
}

/// The handle an effect of [`Store::apply_effect`] writes through: the stage's own slice of the
/// `effects` table, and the outbox, inside the transaction that also records the dedup key.
pub struct Effects<'t> {
    stage: &'t str,
    now_ms: i64,
    outbox_rows_max: u64,
    txn: &'t WriteTransaction,
    table: Table<'t, (&'static str, &'static [u8]), &'static [u8]>,
    outbox: Option<Outbox<'t>>,
    last_seq: Option<u64>,
}

impl Effects<'_> {
    /// The stage applying the effect; keys are private to it.
    pub fn stage(&self) -> &str {
        self.stage
    }

    /// The value under `key`, as written by this stage (this transaction's writes included).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .table
            .get((self.stage, key))?
            .map(|value| value.value().to_vec()))
    }

    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.table.insert((self.stage, key), value)?;
        Ok(())
    }

    /// Removes `key`; whether it was there.
    pub fn remove(&mut self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.table.remove((self.stage, key))?.is_some())
    }

    /// Appends a row to the outbox in the same transaction (published in order by the relay);
    /// its sequence. Fails with [`StoreError::OutboxFull`] at the outbox bound, which aborts the
    /// whole effect.
    pub fn publish(&mut self, row: NewOutboxRow) -> Result<u64, StoreError> {
        let outbox = match &mut self.outbox {
            Some(outbox) => outbox,
            empty => empty.insert(Outbox::open(self.txn)?),
        };
        let seq = outbox.append(&row, self.now_ms, self.outbox_rows_max)?;
        self.last_seq = Some(seq);
        Ok(seq)
    }
}

impl Store {
    /// Opens the database at `path` on `disk`, creating it (and its directory, durably) when
    /// missing, with the default [`StoreConfig`]. After a crash redb recovers the last commit
    /// whose sync completed. Opening a path this process already has open returns that store.
    pub fn open(disk: Arc<dyn Disk>, path: &Path) -> Result<Store, StoreError> {
        Store::open_with(disk, path, StoreConfig::default())
    }

    /// [`Store::open`] with a configuration; fails with [`StoreError::ConfigMismatch`] if the
    /// store is already open with another.
    pub fn open_with(
        disk: Arc<dyn Disk>,
        path: &Path,
        config: StoreConfig,
    ) -> Result<Store, StoreError> {
        Ok(Store {
            inner: open::open_shared(disk, path, config)?,
        })
    }

    /// A store on a fresh, private `MemDisk`: for tests and memory-only embedding.
    pub fn memory() -> Result<Store, StoreError> {
        Store::memory_with(StoreConfig::default())
    }

    pub fn memory_with(config: StoreConfig) -> Result<Store, StoreError> {
        Store::open_with(Arc::new(MemDisk::new()), Path::new(MEMORY_PATH), config)
    }

    /// A named step between the store's commit and what must follow it (a publish, a Kafka
    /// commit): the simulator's disk may crash the host here (`tidepool_io::crash_point!`).
    pub fn crash_point(&self, site: &'static str) {
        self.inner._claim.disk.crash_point(site);
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    fn write<R>(
        &self,
        body: impl FnOnce(&WriteTransaction) -> Result<Outcome<R>, StoreError>,
    ) -> Result<R, StoreError> {
        let mut txn = self.inner.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        match body(&txn) {
            Ok(Outcome::Commit(value)) => {
                txn.commit()?;
                // Committed and synced, nothing that follows (a publish, a Kafka commit) done yet.
                self.crash_point("store.committed");
                Ok(value)
            }
            Ok(Outcome::Abort(value)) => {
                txn.abort()?;
                Ok(value)
            }
            Err(error) => {
                // The body's error says what went wrong; an abort failing after it (the disk
                // is gone) adds nothing, and nothing of the transaction is committed either way.
                let _ = txn.abort();
                Err(error)
            }
        }
    }

    /// Whether `(stage, event_id)` was applied before (never, under the `skip_dedup` sabotage).
    fn seen(
        &self,
        dedup: &Table<'_, (&'static str, &'static str), i64>,
        stage: &str,
        event_id: &str,
    ) -> Result<bool, StoreError> {
        if self.inner.config.sabotage_skip_dedup {
            return Ok(false);
        }
        Ok(dedup.get((stage, event_id))?.is_some())
    }

    fn read(&self) -> Result<redb::ReadTransaction, StoreError> {
        Ok(self.inner.db.begin_read()?)
    }

    /// The persister's write: unless `(stage, event_id)` was applied before, stores `row` as the
    /// event's business row, appends `outbox` to the outbox and records the dedup key, all in
    /// one transaction. A duplicate writes nothing, whatever `row` holds now.
    pub fn persist_event(
        &self,
        stage: &str,
        event_id: &str,
        row: &[u8],
        outbox: NewOutboxRow,
        now_ms: i64,
    ) -> Result<Applied, StoreError> {
        let max = self.inner.config.outbox_rows_max;
        let applied = self.write(|txn| {
            let mut dedup = txn.open_table(DEDUP)?;
            if self.seen(&dedup, stage, event_id)? {
                return Ok(Outcome::Abort(Applied::Duplicate));
            }
            let seq = Outbox::open(txn)?.append(&outbox, now_ms, max)?;
            txn.open_table(EVENTS)?.insert(event_id, row)?;
            dedup.insert((stage, event_id), now_ms)?;
            note_stage(txn, stage, WROTE_EVENTS)?;
            Ok(Outcome::Commit(Applied::New {
                outbox_seq: Some(seq),
            }))
        })?;
        self.wake_relay(applied.is_new());
        Ok(applied)
    }

    /// The analytics stage's write: unless `(stage, event_id)` was applied before, counts one
    /// event for `tenant` in the minute starting at `minute_ms`, and records the dedup key.
    pub fn apply_rollup(
        &self,
        stage: &str,
        event_id: &str,
        tenant: &str,
        minute_ms: i64,
        now_ms: i64,
    ) -> Result<Applied, StoreError> {
        self.write(|txn| {
            let mut dedup = txn.open_table(DEDUP)?;
            if self.seen(&dedup, stage, event_id)? {
                return Ok(Outcome::Abort(Applied::Duplicate));
            }
            let mut rollups = txn.open_table(ROLLUPS)?;
            let count = rollups
                .get((tenant, minute_ms))?
                .map_or(0, |count| count.value());
            rollups.insert((tenant, minute_ms), count + 1)?;
            dedup.insert((stage, event_id), now_ms)?;
            note_stage(txn, stage, WROTE_ROLLUPS)?;
            Ok(Outcome::Commit(Applied::New { outbox_seq: None }))
        })
    }

    /// The idempotent-consumer primitive for any stage: unless `(stage, event_id)` was applied
    /// before, runs `effect` and commits what it wrote together with the dedup key. If `effect`
    /// fails, nothing is written and its error is returned (so the event can be retried).
    ///
    /// ```
    /// use tidepool_pipeline::store::{Applied, NewOutboxRow, Store, StoreError};
    ///
    /// let store = Store::memory()?;
    /// let credit = |store: &Store, event_id: &str| {
    ///     store.apply_effect("billing", event_id, 1_700_000_000_000, |effects| {
    ///         let balance = effects
    ///             .get(b"acme")?
    ///             .map_or(0, |bytes| u64::from_be_bytes(bytes.try_into().unwrap()));
    ///         effects.put(b"acme", &(balance + 10).to_be_bytes())?;
    ///         effects.publish(NewOutboxRow {
    ///             topic: "billing.credited".to_owned(),
    ///             key: Some(b"acme".to_vec()),
    ///             value: format!("credited {event_id}").into_bytes(),
    ///             headers: Vec::new(),
    ///         })?;
    ///         Ok(())
    ///     })
    /// };
    /// assert_eq!(credit(&store, "e1")?, Applied::New { outbox_seq: Some(1) });
    /// // Redelivered: no second credit, no second message.
    /// assert_eq!(credit(&store, "e1")?, Applied::Duplicate);
    /// assert_eq!(store.effect("billing", b"acme")?, Some(10u64.to_be_bytes().to_vec()));
    /// assert_eq!(store.outbox_pending()?, 1);
    /// # Ok::<(), StoreError>(())
    /// ```
    pub fn apply_effect<F>(
        &self,
        stage: &str,
        event_id: &str,
        now_ms: i64,
        effect: F,
    ) -> Result<Applied, StoreError>
    where
        F: FnOnce(&mut Effects<'_>) -> Result<(), StoreError>,
    {
        let outbox_rows_max = self.inner.config.outbox_rows_max;
        let applied = self.write(|txn| {
            let mut dedup = txn.open_table(DEDUP)?;
            if self.seen(&dedup, stage, event_id)? {
                return Ok(Outcome::Abort(Applied::Duplicate));
            }
            let mut effects = Effects {
                stage,
                now_ms,
                outbox_rows_max,
                txn,
                table: txn.open_table(EFFECTS)?,
                outbox: None,
                last_seq: None,
            };
            effect(&mut effects)?;
            let outbox_seq = effects.last_seq;
            drop(effects);
            dedup.insert((stage, event_id), now_ms)?;
            note_stage(txn, stage, WROTE_EFFECTS)?;
            Ok(Outcome::Commit(Applied::New { outbox_seq }))
        })?;
        self.wake_relay(matches!(
            applied,
            Applied::New {
                outbox_seq: Some(_)
            }
        ));
        Ok(applied)
    }

    /// Waits for this caller's turn to write, without blocking its thread. redb admits one
    /// write transaction at a time and makes the others wait in `begin_write`, blocking their
    /// thread: on an async runtime, a worker that could run other tasks meanwhile. A task that
    /// holds the turn while it calls a write method (the stages, the relay) leaves the others
    /// waiting here, as tasks. Writes without a turn stay correct, redb still serialises them.
    pub async fn write_turn(&self) -> WriteTurn<'_> {
        WriteTurn {
            _permit: self
                .inner
                .writers
                .acquire()
                .await
                .expect("the store never closes its writers' semaphore"),
        }
    }

    /// Completes when a commit appended outbox rows since the last time this completed (at
    /// once if one did): the relay waits on it between polls. One waiter is woken per signal.
    pub async fn outbox_written(&self) {
        self.inner.outbox_written.notified().await;
    }

    /// Called after a commit: `appended` says whether it added outbox rows. The permit is kept
    /// until the relay next waits, so a row committed while it was publishing is not missed.
    fn wake_relay(&self, appended: bool) {
        if appended {
            self.inner.outbox_written.notify_one();
        }
    }

    /// Runs `apply` for each item not applied by `stage` before, recording its dedup key when
    /// it succeeds. `apply` returns `Ok(Err(_))` to refuse one item, having written nothing
    /// for it, and `Err(_)` to fail the whole transaction. Also returns whether any item was
    /// applied and whether any wrote an outbox row.
    #[allow(clippy::type_complexity)]
    fn apply_each<T>(
        &self,
        dedup: &mut Table<'_, (&'static str, &'static str), i64>,
        stage: &str,
        items: &[T],
        now_ms: i64,
        event_id: impl Fn(&T) -> &str,
        mut apply: impl FnMut(&T) -> Result<Result<Option<u64>, StoreError>, StoreError>,
    ) -> Result<(Vec<Result<Applied, StoreError>>, bool, bool), StoreError> {
        let mut results = Vec::with_capacity(items.len());
        let (mut any_new, mut appended) = (false, false);
        for item in items {
            let id = event_id(item);
            // Reads this transaction's own keys too: an event twice in one batch applies once.
            if self.seen(dedup, stage, id)? {
                results.push(Ok(Applied::Duplicate));
                continue;
            }
            match apply(item)? {
                Ok(outbox_seq) => {
                    dedup.insert((stage, id), now_ms)?;
                    any_new = true;
                    appended |= outbox_seq.is_some();
                    results.push(Ok(Applied::New { outbox_seq }));
                }
                Err(refused) => results.push(Err(refused)),
            }
        }
        Ok((results, any_new, appended))
    }

    /// [`Store::persist_event`] for many events in one transaction (one commit, one sync): each
    /// event is checked against its dedup key and, if new, stored with its outbox row and key,
    /// as one call per event would. The outer `Err` means the transaction failed and nothing
    /// was written; an inner `Err` ([`StoreError::OutboxFull`]) refuses that event alone, with
    /// nothing of it written, and the others still commit.
    pub fn persist_events(
        &self,
        stage: &str,
        events: &[EventToPersist],
        now_ms: i64,
    ) -> Result<Vec<Result<Applied, StoreError>>, StoreError> {
        let max = self.inner.config.outbox_rows_max;
        let (results, appended) = self.write(|txn| {
            let mut dedup = txn.open_table(DEDUP)?;
            let mut outbox = Outbox::open(txn)?;
            let mut rows = txn.open_table(EVENTS)?;
            let (results, any_new, appended) = self.apply_each(
                &mut dedup,
                stage,
                events,
                now_ms,
                |event| event.event_id.as_str(),
                |event| {
                    let seq = match refusable(outbox.append(&event.outbox, now_ms, max))? {
                        Ok(seq) => seq,
                        Err(refused) => return Ok(Err(refused)),
                    };
                    rows.insert(event.event_id.as_str(), event.row.as_slice())?;
                    Ok(Ok(Some(seq)))
                },
            )?;
            drop((outbox, rows));
            commit_if(txn, any_new, stage, WROTE_EVENTS, (results, appended))
        })?;
        self.wake_relay(appended);
        Ok(results)
    }

    /// [`Store::apply_rollup`] for many events in one transaction: each new event counted once
    /// for its tenant and minute, with its dedup key. The outer `Err` means nothing was
    /// written.
    pub fn apply_rollups(
        &self,
        stage: &str,
        events: &[EventToCount],
        now_ms: i64,
    ) -> Result<Vec<Result<Applied, StoreError>>, StoreError> {
        self.write(|txn| {
            let mut dedup = txn.open_table(DEDUP)?;
            let mut rollups = txn.open_table(ROLLUPS)?;
            let (results, any_new, _) = self.apply_each(
                &mut dedup,
                stage,
                events,
                now_ms,
                |event| event.event_id.as_str(),
                |event| {
                    let key = (event.tenant.as_str(), event.minute_ms);
                    let count = rollups.get(key)?.map_or(0, |count| count.value());
                    rollups.insert(key, count + 1)?;
                    Ok(Ok(None))
                },
            )?;
            drop(rollups);
            commit_if(txn, any_new, stage, WROTE_ROLLUPS, results)
        })
    }

    /// For many events in one transaction, what [`Store::apply_effect`] does with an effect
    /// that only publishes one outbox row: each new event's row appended, with its dedup key.
    /// The outer `Err` means nothing was written; an inner `Err` ([`StoreError::OutboxFull`])
    /// refuses that event alone.
    pub fn publish_effects(
        &self,
        stage: &str,
        events: &[EventToPublish],
        now_ms: i64,
    ) -> Result<Vec<Result<Applied, StoreError>>, StoreError> {
        let max = self.inner.config.outbox_rows_max;
        let (results, appended) = self.write(|txn| {
            let mut dedup = txn.open_table(DEDUP)?;
            let mut outbox = Outbox::open(txn)?;
            let (results, any_new, appended) = self.apply_each(
                &mut dedup,
                stage,
                events,
                now_ms,
                |event| event.event_id.as_str(),
                |event| Ok(refusable(outbox.append(&event.row, now_ms, max))?.map(Some)),
            )?;
            drop(outbox);
            commit_if(txn, any_new, stage, WROTE_EFFECTS, (results, appended))
        })?;
        self.wake_relay(appended);
        Ok(results)
    }

    /// Up to `limit` unsent outbox rows, in ascending sequence: the order to publish them in.
    pub fn unsent_outbox(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let table = self.read()?.open_table(OUTBOX)?;
        let mut rows = Vec::new();
        for entry in table.iter()?.take(limit) {
            let (seq, bytes) = entry?;
            rows.push(codec::decode(seq.value(), bytes.value())?);
        }
        Ok(rows)
    }

    /// Records that every row up to `up_to_seq` was published, by deleting them. Idempotent, and
    /// a sequence below what was already marked changes nothing; one above the last row written
    /// marks them all.
    pub fn mark_sent(&self, up_to_seq: u64) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut outbox = Outbox::open(txn)?;
            let sent_through = meta_value(&outbox.meta, META_SENT_THROUGH)?;
            let up_to = up_to_seq.min(outbox.last_seq()?);
            if up_to <= sent_through {
                return Ok(Outcome::Abort(()));
            }
            outbox
                .rows
                .retain_in::<u64, _>(sent_through + 1..=up_to, |_, _| false)?;
            outbox.meta.insert(META_SENT_THROUGH, up_to)?;
            Ok(Outcome::Commit(()))
        })
    }

    /// Unsent outbox rows.
    pub fn outbox_pending(&self) -> Result<u64, StoreError> {
        let meta = self.read()?.open_table(META)?;
        let last = meta_value(&meta, META_NEXT_SEQ)?.max(1) - 1;
        Ok(last - meta_value(&meta, META_SENT_THROUGH)?)
    }

    /// The business row of a persisted event.
    pub fn event(&self, event_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let table = self.read()?.open_table(EVENTS)?;
        Ok(table.get(event_id)?.map(|row| row.value().to_vec()))
    }

    pub fn event_count(&self) -> Result<u64, StoreError> {
        Ok(self.read()?.open_table(EVENTS)?.len()?)
    }

    /// A tenant's event counts by minute start.
    pub fn rollups(&self, tenant: &str) -> Result<BTreeMap<i64, u64>, StoreError> {
        let table = self.read()?.open_table(ROLLUPS)?;
        let mut counts = BTreeMap::new();
        for entry in table.range::<(&str, i64)>((tenant, i64::MIN)..=(tenant, i64::MAX))? {
            let (key, count) = entry?;
            counts.insert(key.value().1, count.value());
        }
        Ok(counts)
    }

    /// Every tenant's event counts by minute start.
    pub fn all_rollups(&self) -> Result<BTreeMap<String, BTreeMap<i64, u64>>, StoreError> {
        let table = self.read()?.open_table(ROLLUPS)?;
        let mut counts: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
        for entry in table.iter()? {
            let (key, count) = entry?;
            let (tenant, minute) = key.value();
            counts
                .entry(tenant.to_owned())
                .or_default()
                .insert(minute, count.value());
        }
        Ok(counts)
    }

    /// Whether `stage` has applied `event_id`.
    pub fn is_applied(&self, stage: &str, event_id: &str) -> Result<bool, StoreError> {
        let table = self.read()?.open_table(DEDUP)?;
        Ok(table.get((stage, event_id))?.is_some())
    }

    /// How many events `stage` has applied (a scan of its dedup keys).
    pub fn applied_count(&self, stage: &str) -> Result<u64, StoreError> {
        let table = self.read()?.open_table(DEDUP)?;
        let mut count = 0;
        for entry in table.range::<(&str, &str)>((stage, "")..)? {
            if entry?.0.value().0 != stage {
                break;
            }
            count += 1;
        }
        Ok(count)
    }

    /// A value `stage` wrote through [`Effects::put`].
    pub fn effect(&self, stage: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let table = self.read()?.open_table(EFFECTS)?;
        Ok(table.get((stage, key))?.map(|value| value.value().to_vec()))
    }

    /// Prepares a replay of `stage` (its group reset to an earlier offset), in one transaction:
    /// removes its dedup keys and what it derived, so reprocessing rebuilds it exactly — its
    /// `effects` entries and, if it wrote rollups, *all* rollups (they are one stage's table).
    ///
    /// Business rows (`events`) stay: they are the system of record, and a topic whose
    /// retention dropped old events could not rebuild them. Replaying the persister overwrites
    /// each row with the same event and appends a fresh outbox row, a duplicate the consumers
    /// downstream absorb. Unsent outbox rows stay too: they still have to be published.
    pub fn clear_stage(&self, stage: &str) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut dedup = txn.open_table(DEDUP)?;
            let mut applied = Vec::new();
            for entry in dedup.range::<(&str, &str)>((stage, "")..)? {
                let (key, _) = entry?;
                let (owner, event_id) = key.value();
                if owner != stage {
                    break;
                }
                applied.push(event_id.to_owned());
            }
            for event_id in &applied {
                dedup.remove((stage, event_id.as_str()))?;
            }

            let mut effects = txn.open_table(EFFECTS)?;
            let mut keys = Vec::new();
            for entry in effects.range::<(&str, &[u8])>((stage, &[][..])..)? {
                let (key, _) = entry?;
                let (owner, key) = key.value();
                if owner != stage {
                    break;
                }
                keys.push(key.to_vec());
            }
            for key in &keys {
                effects.remove((stage, key.as_slice()))?;
            }

            let wrote = txn
                .open_table(STAGES)?
                .get(stage)?
                .map_or(0, |flags| flags.value());
            if wrote & WROTE_ROLLUPS != 0 {
                txn.open_table(ROLLUPS)?.retain(|_, _| false)?;
            }
            Ok(Outcome::Commit(()))
        })
    }
}
