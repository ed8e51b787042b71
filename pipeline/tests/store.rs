//! The pipeline store: business rows, outbox and dedup keys written together; the outbox drained
//! in order and bounded; replay by clearing a stage; and durability on the simulator's disk —
//! what a commit acknowledged survives any crash, and what it did not is whole or absent.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tidepool_io::{Disk, DiskFile, MemDisk, OpenMode};
use tidepool_pipeline::store::{Applied, NewOutboxRow, OutboxRow, Store, StoreConfig, StoreError};
use tidepool_sim::env::{CrashMode, CrashPolicy, CrashReport, RunSeed, SimDisk, SimEntropy};

const PERSISTER: &str = "persister";
const ANALYTICS: &str = "analytics";
const BILLING: &str = "billing";
const PATH: &str = "/data/pipeline/store.redb";
const MINUTE: i64 = 60_000;
const T0: i64 = 1_700_000_000_000;

fn row(event_id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{event_id}","tenant":"acme"}}"#).into_bytes()
}

fn message(event_id: &str) -> NewOutboxRow {
    NewOutboxRow {
        topic: "events.persisted".to_owned(),
        key: Some(b"acme".to_vec()),
        value: row(event_id),
        headers: vec![("event-id".to_owned(), event_id.as_bytes().to_vec())],
    }
}

fn persist(store: &Store, event_id: &str, now_ms: i64) -> Result<Applied, StoreError> {
    store.persist_event(
        PERSISTER,
        event_id,
        &row(event_id),
        message(event_id),
        now_ms,
    )
}

fn seqs(rows: &[OutboxRow]) -> Vec<u64> {
    rows.iter().map(|row| row.seq).collect()
}

#[test]
fn a_persisted_event_writes_its_row_its_outbox_row_and_its_dedup_key_together() {
    let store = Store::memory().unwrap();
    assert!(!store.is_applied(PERSISTER, "e1").unwrap());

    let applied = persist(&store, "e1", T0).unwrap();

    assert_eq!(
        applied,
        Applied::New {
            outbox_seq: Some(1)
        }
    );
    assert_eq!(store.event("e1").unwrap(), Some(row("e1")));
    assert_eq!(store.event_count().unwrap(), 1);
    assert!(store.is_applied(PERSISTER, "e1").unwrap());
    assert_eq!(store.applied_count(PERSISTER).unwrap(), 1);
    assert_eq!(
        store.unsent_outbox(10).unwrap(),
        vec![OutboxRow {
            seq: 1,
            topic: "events.persisted".to_owned(),
            key: Some(b"acme".to_vec()),
            value: row("e1"),
            headers: vec![("event-id".to_owned(), b"e1".to_vec())],
            created_ms: T0,
        }]
    );
    assert_eq!(store.outbox_pending().unwrap(), 1);
}

#[test]
fn persisting_the_same_event_again_is_a_duplicate_and_writes_nothing() {
    let store = Store::memory().unwrap();
    persist(&store, "e1", T0).unwrap();

    let again = store
        .persist_event(PERSISTER, "e1", b"changed", message("changed"), T0 + 5)
        .unwrap();

    assert_eq!(again, Applied::Duplicate);
    assert_eq!(
        store.event("e1").unwrap(),
        Some(row("e1")),
        "the row is untouched"
    );
    let outbox = store.unsent_outbox(10).unwrap();
    assert_eq!(seqs(&outbox), vec![1], "no second outbox row");
    assert_eq!(outbox[0].created_ms, T0);
    assert_eq!(store.applied_count(PERSISTER).unwrap(), 1);
}

#[test]
fn rollups_count_each_event_once_however_often_it_is_applied() {
    let store = Store::memory().unwrap();
    let events = [
        ("e1", "acme", T0),
        ("e2", "acme", T0),
        ("e3", "acme", T0 + MINUTE),
        ("e4", "globex", T0),
    ];
    for round in 0..3 {
        for (event_id, tenant, minute) in events {
            let applied = store
                .apply_rollup(ANALYTICS, event_id, tenant, minute, T0 + round)
                .unwrap();
            assert_eq!(applied.is_new(), round == 0, "{event_id} in round {round}");
        }
    }

    assert_eq!(
        store.rollups("acme").unwrap(),
        BTreeMap::from([(T0, 2), (T0 + MINUTE, 1)])
    );
    assert_eq!(store.rollups("globex").unwrap(), BTreeMap::from([(T0, 1)]));
    assert_eq!(store.rollups("initech").unwrap(), BTreeMap::new());
    assert_eq!(store.all_rollups().unwrap().len(), 2);
    assert_eq!(store.applied_count(ANALYTICS).unwrap(), 4);
    assert_eq!(
        store.applied_count(PERSISTER).unwrap(),
        0,
        "dedup keys are per stage"
    );
}

#[test]
fn outbox_rows_come_out_in_order_and_mark_sent_removes_them() {
    let store = Store::memory().unwrap();
    for n in 1..=5 {
        persist(&store, &format!("e{n}"), T0 + n).unwrap();
    }

    assert_eq!(seqs(&store.unsent_outbox(3).unwrap()), vec![1, 2, 3]);
    store.mark_sent(2).unwrap();
    assert_eq!(seqs(&store.unsent_outbox(10).unwrap()), vec![3, 4, 5]);
    assert_eq!(store.outbox_pending().unwrap(), 3);

    store.mark_sent(1).unwrap();
    assert_eq!(
        store.outbox_pending().unwrap(),
        3,
        "marking an older seq changes nothing"
    );

    store.mark_sent(u64::MAX).unwrap();
    assert_eq!(store.outbox_pending().unwrap(), 0);
    assert!(store.unsent_outbox(10).unwrap().is_empty());

    let next = persist(&store, "e6", T0 + 6).unwrap();
    assert_eq!(
        next,
        Applied::New {
            outbox_seq: Some(6)
        },
        "sequences are never reused"
    );
    assert_eq!(
        store.event_count().unwrap(),
        6,
        "sending keeps the business rows"
    );
}

#[test]
fn a_full_outbox_refuses_new_events_until_rows_are_sent() {
    let store = Store::memory_with(StoreConfig {
        outbox_rows_max: 3,
        ..StoreConfig::default()
    })
    .unwrap();
    for n in 1..=3 {
        persist(&store, &format!("e{n}"), T0).unwrap();
    }

    let refused = persist(&store, "e4", T0);

    assert!(
        matches!(refused, Err(StoreError::OutboxFull { pending: 3, max: 3 })),
        "{refused:?}"
    );
    assert_eq!(
        store.event("e4").unwrap(),
        None,
        "no row without its outbox row"
    );
    assert!(
        !store.is_applied(PERSISTER, "e4").unwrap(),
        "nor a dedup key"
    );
    assert_eq!(
        persist(&store, "e1", T0).unwrap(),
        Applied::Duplicate,
        "a duplicate writes nothing, so it is answered even when full"
    );

    store.mark_sent(1).unwrap();
    assert_eq!(
        persist(&store, "e4", T0).unwrap(),
        Applied::New {
            outbox_seq: Some(4)
        }
    );
}

fn credit(store: &Store, event_id: &str, amount: u64) -> Result<Applied, StoreError> {
    store.apply_effect(BILLING, event_id, T0, |effects| {
        let balance = effects
            .get(b"acme")?
            .map_or(0, |bytes| u64::from_be_bytes(bytes.try_into().unwrap()));
        effects.put(b"acme", &(balance + amount).to_be_bytes())?;
        effects.publish(NewOutboxRow {
            topic: "billing.credited".to_owned(),
            key: None,
            value: event_id.as_bytes().to_vec(),
            headers: Vec::new(),
        })?;
        Ok(())
    })
}

fn balance(store: &Store) -> Option<u64> {
    store
        .effect(BILLING, b"acme")
        .unwrap()
        .map(|bytes| u64::from_be_bytes(bytes.try_into().unwrap()))
}

#[test]
fn an_effect_commits_with_its_dedup_key_and_a_failed_effect_leaves_nothing() {
    let store = Store::memory().unwrap();
    assert_eq!(
        credit(&store, "e1", 10).unwrap(),
        Applied::New {
            outbox_seq: Some(1)
        }
    );
    assert_eq!(credit(&store, "e1", 10).unwrap(), Applied::Duplicate);
    assert_eq!(balance(&store), Some(10));

    let failed = store.apply_effect(BILLING, "e2", T0, |effects| {
        effects.put(b"acme", &999u64.to_be_bytes())?;
        Err(StoreError::effect("the ledger said no"))
    });

    assert!(matches!(failed, Err(StoreError::Effect(_))), "{failed:?}");
    assert_eq!(
        balance(&store),
        Some(10),
        "the failed effect's write is gone"
    );
    assert!(!store.is_applied(BILLING, "e2").unwrap());
    assert!(
        credit(&store, "e2", 5).unwrap().is_new(),
        "so it can be retried"
    );
    assert_eq!(balance(&store), Some(15));
    assert_eq!(
        store.effect("other-stage", b"acme").unwrap(),
        None,
        "keys are per stage"
    );
}

#[test]
fn clearing_a_stage_and_reapplying_rebuilds_identical_rollups() {
    let store = Store::memory().unwrap();
    let events: Vec<(String, &str, i64)> = (0..20)
        .map(|n| {
            let tenant = ["acme", "globex", "initech"][n % 3];
            (format!("e{n}"), tenant, T0 + (n as i64 % 4) * MINUTE)
        })
        .collect();
    for (event_id, tenant, minute) in &events {
        store
            .apply_rollup(ANALYTICS, event_id, tenant, *minute, T0)
            .unwrap();
        persist(&store, event_id, T0).unwrap();
    }
    credit(&store, "e0", 7).unwrap();
    let built = store.all_rollups().unwrap();

    store.clear_stage(ANALYTICS).unwrap();

    assert!(store.all_rollups().unwrap().is_empty());
    assert_eq!(store.applied_count(ANALYTICS).unwrap(), 0);
    assert_eq!(
        store.applied_count(PERSISTER).unwrap(),
        20,
        "other stages keep theirs"
    );
    assert_eq!(balance(&store), Some(7));

    // The replay delivers everything again, some of it twice, in another order.
    for (event_id, tenant, minute) in events.iter().rev().chain(&events) {
        store
            .apply_rollup(ANALYTICS, event_id, tenant, *minute, T0 + 1)
            .unwrap();
    }
    assert_eq!(store.all_rollups().unwrap(), built);

    store.clear_stage(BILLING).unwrap();
    assert_eq!(
        balance(&store),
        None,
        "an effect stage's entries go with its keys"
    );
    store.clear_stage(PERSISTER).unwrap();
    assert_eq!(store.event_count().unwrap(), 20, "business rows are kept");
    assert_eq!(store.applied_count(PERSISTER).unwrap(), 0);
}

#[test]
fn opening_one_path_twice_sees_the_same_data() {
    let disk: Arc<dyn Disk> = Arc::new(MemDisk::new());
    let first = Store::open(disk.clone(), Path::new(PATH)).unwrap();
    persist(&first, "e1", T0).unwrap();

    let second = Store::open(disk.clone(), Path::new(PATH)).unwrap();
    assert_eq!(second.event("e1").unwrap(), Some(row("e1")));
    persist(&second, "e2", T0).unwrap();
    assert_eq!(first.event("e2").unwrap(), Some(row("e2")));

    let other = Store::open_with(
        disk.clone(),
        Path::new(PATH),
        StoreConfig {
            outbox_rows_max: 1,
            ..StoreConfig::default()
        },
    );
    assert!(
        matches!(other, Err(StoreError::ConfigMismatch(_))),
        "{other:?}"
    );

    drop((first, second));
    let reopened = Store::open(disk, Path::new(PATH)).unwrap();
    assert_eq!(reopened.event_count().unwrap(), 2);
    assert_eq!(seqs(&reopened.unsent_outbox(10).unwrap()), vec![1, 2]);
}

#[test]
fn a_store_can_be_shared_across_tasks_and_threads() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Store>();
}

// ---- Durability on the simulator's disk ----

/// Everything the store answers about a fixed set of ids, stages and keys.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    events: Vec<Option<Vec<u8>>>,
    event_count: u64,
    outbox: Vec<OutboxRow>,
    outbox_pending: u64,
    rollups: BTreeMap<String, BTreeMap<i64, u64>>,
    applied: Vec<(bool, bool, bool)>,
    applied_counts: (u64, u64, u64),
    balance: Option<u64>,
}

const EVENTS: usize = 6;

fn event_id(n: usize) -> String {
    format!("e{n}")
}

fn snapshot(store: &Store) -> Snapshot {
    let ids: Vec<String> = (0..EVENTS).map(event_id).collect();
    Snapshot {
        events: ids.iter().map(|id| store.event(id).unwrap()).collect(),
        event_count: store.event_count().unwrap(),
        outbox: store.unsent_outbox(usize::MAX).unwrap(),
        outbox_pending: store.outbox_pending().unwrap(),
        rollups: store.all_rollups().unwrap(),
        applied: ids
            .iter()
            .map(|id| {
                (
                    store.is_applied(PERSISTER, id).unwrap(),
                    store.is_applied(ANALYTICS, id).unwrap(),
                    store.is_applied(BILLING, id).unwrap(),
                )
            })
            .collect(),
        applied_counts: (
            store.applied_count(PERSISTER).unwrap(),
            store.applied_count(ANALYTICS).unwrap(),
            store.applied_count(BILLING).unwrap(),
        ),
        balance: balance(store),
    }
}

/// One write of the workload, each its own transaction.
#[derive(Debug, Clone, Copy)]
enum Op {
    Persist(usize),
    Rollup(usize),
    Credit(usize),
    MarkSent(u64),
    ClearAnalytics,
}

/// Every kind of write, including redeliveries, a relay catching up and a replay.
fn workload() -> Vec<Op> {
    let mut ops = Vec::new();
    for n in 0..EVENTS {
        ops.push(Op::Persist(n));
        ops.push(Op::Rollup(n));
        ops.push(Op::Credit(n));
        if n % 2 == 1 {
            ops.push(Op::MarkSent(n as u64));
            ops.push(Op::Persist(n - 1));
        }
        if n == 3 {
            ops.push(Op::ClearAnalytics);
            ops.push(Op::Rollup(0));
        }
    }
    ops
}

fn apply(store: &Store, op: Op) -> Result<(), StoreError> {
    let now = T0 + 1;
    match op {
        Op::Persist(n) => persist(store, &event_id(n), now).map(drop),
        Op::Rollup(n) => store
            .apply_rollup(
                ANALYTICS,
                &event_id(n),
                ["acme", "globex"][n % 2],
                T0 + (n as i64 % 3) * MINUTE,
                now,
            )
            .map(drop),
        Op::Credit(n) => credit(store, &event_id(n), n as u64 + 1).map(drop),
        Op::MarkSent(seq) => store.mark_sent(seq),
        Op::ClearAnalytics => store.clear_stage(ANALYTICS),
    }
}

/// The state after each prefix of the workload: `states[k]` after its first k writes.
fn reference_states() -> Vec<Snapshot> {
    let store = Store::memory().unwrap();
    let mut states = vec![snapshot(&store)];
    for op in workload() {
        apply(&store, op).unwrap();
        states.push(snapshot(&store));
    }
    states
}

/// Small enough that a large transaction spills dirty pages to the file before it commits.
fn small_cache() -> StoreConfig {
    StoreConfig {
        cache_bytes: 128 << 10,
        ..StoreConfig::default()
    }
}

fn open_sim(disk: &Arc<SimDisk>) -> Result<Store, StoreError> {
    let disk: Arc<dyn Disk> = disk.clone();
    Store::open_with(disk, Path::new(PATH), small_cache())
}

/// The crash policies every durability test goes through: random per file for several seeds,
/// and each mode forced, for a couple of seeds (a mode's parameters are still drawn).
fn crash_cases() -> Vec<(CrashPolicy, u64)> {
    let mut cases: Vec<(CrashPolicy, u64)> =
        (0..6).map(|seed| (CrashPolicy::Random, seed)).collect();
    for mode in CrashMode::ALL {
        for seed in 0..2 {
            cases.push((CrashPolicy::Always(mode), seed));
        }
    }
    cases
}

fn crash_entropy(seed: u64) -> SimEntropy {
    RunSeed::new(seed).stream("disk")
}

#[test]
fn every_committed_transaction_survives_a_crash() {
    let states = reference_states();
    for (policy, seed) in crash_cases() {
        let entropy = crash_entropy(seed);
        let disk = Arc::new(SimDisk::new());
        let store = open_sim(&disk).unwrap();
        for op in workload() {
            apply(&store, op).unwrap();
        }
        assert_eq!(snapshot(&store), *states.last().unwrap());

        disk.crash_with(policy, &entropy);

        // Reopened while the crashed process's store is still referenced: its file handle
        // is dead, so it no longer counts as open, and nothing its database does on close
        // (after the new one opened) may land.
        let reopened = open_sim(&disk)
            .unwrap_or_else(|error| panic!("{policy:?} seed {seed}: reopen failed: {error}"));
        drop(store);
        assert_eq!(
            snapshot(&reopened),
            *states.last().unwrap(),
            "{policy:?} seed {seed}"
        );
        // And the recovered database takes new commits that survive the next crash.
        persist(&reopened, "after", T0 + 9).unwrap();
        disk.crash_with(policy, &entropy);
        drop(reopened);
        let again = open_sim(&disk).unwrap();
        assert_eq!(again.event("after").unwrap(), Some(row("after")));
    }
}

#[test]
fn a_transaction_in_progress_at_a_crash_leaves_no_trace() {
    let states = reference_states();
    let mut spilled = 0;
    for (policy, seed) in crash_cases() {
        let entropy = crash_entropy(seed);
        let disk = Arc::new(SimDisk::new());
        let store = open_sim(&disk).unwrap();
        for op in workload() {
            apply(&store, op).unwrap();
        }
        let report: Mutex<Option<CrashReport>> = Mutex::new(None);

        let interrupted = store.apply_effect(BILLING, "big", T0, |effects| {
            // About 2 MiB in one transaction, far over the cache, so redb writes pages of it
            // to the file before the commit: those are what the crash has to keep or drop.
            for n in 0u32..512 {
                effects.put(&n.to_be_bytes(), &[n as u8; 4096])?;
            }
            *report.lock().unwrap() = Some(disk.crash_with(policy, &entropy));
            Ok(())
        });

        assert!(
            interrupted.is_err(),
            "{policy:?} seed {seed}: committed on a crashed disk"
        );
        let report = report.into_inner().unwrap().unwrap();
        spilled += report.files.iter().map(|file| file.pending).sum::<usize>();
        drop(store);
        let reopened = open_sim(&disk)
            .unwrap_or_else(|error| panic!("{policy:?} seed {seed}: reopen failed: {error}"));
        assert_eq!(
            snapshot(&reopened),
            *states.last().unwrap(),
            "{policy:?} seed {seed}: {report:?}"
        );
        assert!(!reopened.is_applied(BILLING, "big").unwrap());
        assert_eq!(reopened.effect(BILLING, &0u32.to_be_bytes()).unwrap(), None);
    }
    assert!(spilled > 0, "no crash found uncommitted pages on the disk");
}

/// A `SimDisk` that crashes itself at the n-th sync (of a file or a directory) instead of
/// performing it: a crash in the middle of whatever was being made durable.
struct CrashingDisk {
    sim: Arc<SimDisk>,
    state: Arc<CrashAt>,
}

struct CrashAt {
    sim: Arc<SimDisk>,
    syncs_left: AtomicU64,
    crashed: AtomicBool,
    policy: CrashPolicy,
    entropy: SimEntropy,
}

impl CrashAt {
    fn sync_point(&self) -> io::Result<()> {
        if self.crashed.load(Ordering::SeqCst) {
            return Err(io::Error::other("crashed"));
        }
        if self.syncs_left.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.crashed.store(true, Ordering::SeqCst);
            self.sim.crash_with(self.policy, &self.entropy);
            return Err(io::Error::other("crashed during sync"));
        }
        Ok(())
    }
}

struct CrashingFile {
    file: Box<dyn DiskFile>,
    state: Arc<CrashAt>,
}

impl DiskFile for CrashingFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_at(offset, data)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }
    fn sync(&self) -> io::Result<()> {
        self.state.sync_point()?;
        self.file.sync()
    }
}

impl Disk for CrashingDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(CrashingFile {
            file: self.sim.open(path, mode)?,
            state: Arc::clone(&self.state),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.sim.create_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.sim.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.sim.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.sim.remove_dir_all(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.sim.list(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        self.sim.exists(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.state.sync_point()?;
        self.sim.sync_dir(dir)
    }
}

#[test]
fn a_crash_at_any_sync_keeps_every_acknowledged_write_and_the_interrupted_one_whole_or_not_at_all()
{
    let states = reference_states();
    let ops = workload();
    for (policy, seed) in crash_cases() {
        for crash_at in 1.. {
            let sim = Arc::new(SimDisk::new());
            let state = Arc::new(CrashAt {
                sim: Arc::clone(&sim),
                syncs_left: AtomicU64::new(crash_at),
                crashed: AtomicBool::new(false),
                policy,
                entropy: crash_entropy(seed),
            });
            let disk: Arc<dyn Disk> = Arc::new(CrashingDisk {
                sim: Arc::clone(&sim),
                state: Arc::clone(&state),
            });
            // How many writes were acknowledged before the crash.
            let mut acked = 0;
            let opened = Store::open_with(disk, Path::new(PATH), small_cache());
            if let Ok(store) = &opened {
                for op in &ops {
                    if apply(store, *op).is_err() {
                        break;
                    }
                    acked += 1;
                }
            }
            if !state.crashed.load(Ordering::SeqCst) {
                assert_eq!(acked, ops.len());
                assert!(crash_at > 10, "the workload syncs more often than that");
                break;
            }

            let case = format!("{policy:?} seed {seed}, crash at sync {crash_at}, {acked} acked");
            let open_succeeded = opened.is_ok();
            drop(opened);
            let reopened =
                open_sim(&sim).unwrap_or_else(|error| panic!("{case}: reopen failed: {error}"));
            let recovered = snapshot(&reopened);
            // The write the crash interrupted may have landed (its commit record reached the
            // disk before the sync that failed), but only whole; a failed open wrote nothing.
            let interrupted_landed = open_succeeded && states.get(acked + 1) == Some(&recovered);
            assert!(
                recovered == states[acked] || interrupted_landed,
                "{case}: recovered a state no prefix of the workload produces: {recovered:#?}"
            );
        }
    }
}
