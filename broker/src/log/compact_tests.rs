use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tidepool_io::{Disk, MemDisk, OpenMode};
use tidepool_protocol::batch;
use tidepool_protocol::records::{self, BatchBuilder, DecodeLimits, Record};

use super::*;
use crate::log::{Log, LogConfig, ReadError};

const DIR: &str = "/c-0";

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        segment_ms: i64::MAX,
        index_interval_bytes: 128,
    }
}

fn params(now_ms: i64) -> CompactionParams {
    CompactionParams {
        now_ms,
        segment_bytes: 1 << 20,
        min_compaction_lag_ms: 0,
        max_compaction_lag_ms: i64::MAX,
        min_cleanable_dirty_ratio: 0.5,
        delete_retention_ms: 1_000,
        force: true,
        keys_max: usize::MAX,
    }
}

fn new_log() -> (Arc<dyn Disk>, Log) {
    let disk: Arc<dyn Disk> = Arc::new(MemDisk::new());
    let log = Log::create(Arc::clone(&disk), Path::new(DIR), config(), 0).unwrap();
    (disk, log)
}

/// A batch of (key, value) records; a None value is a tombstone.
fn keyed(entries: &[(&str, Option<&str>)], timestamp: i64) -> Bytes {
    let mut builder = BatchBuilder::new();
    for (key, value) in entries {
        builder.append(
            timestamp,
            Some(Bytes::from(key.to_string())),
            value.map(|v| Bytes::from(v.to_string())),
            Vec::new(),
        );
    }
    builder.build().unwrap()
}

fn append(log: &mut Log, entries: &[(&str, Option<&str>)], timestamp: i64) {
    log.append(&keyed(entries, timestamp), 0, None, timestamp)
        .unwrap();
}

/// Every record in the log, as (offset, key, value).
fn contents(log: &Log) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log
            .read(offset, 1 << 20, true, &mut BytesMut::new())
            .unwrap();
        if read.is_empty() {
            break;
        }
        for range in batch::split(&read).unwrap() {
            let header = batch::BatchHeader::parse(&read[range.clone()]).unwrap();
            offset = header.last_offset() + 1;
            for record in records::decode(&read[range], &DecodeLimits::default()).unwrap() {
                let text = |b: &Bytes| String::from_utf8(b.to_vec()).unwrap();
                out.push((
                    record.offset,
                    text(record.key.as_ref().unwrap()),
                    record.value.as_ref().map(text),
                ));
            }
        }
    }
    out
}

#[test]
fn compaction_keeps_the_latest_record_per_key_at_its_offset() {
    let (_, mut log) = new_log();
    append(&mut log, &[("a", Some("1")), ("b", Some("1"))], 10);
    append(&mut log, &[("a", Some("2")), ("c", Some("1"))], 20);
    log.roll(0).unwrap();
    append(&mut log, &[("b", Some("3"))], 30);
    let stats = log.compact(params(100)).unwrap().unwrap();
    assert_eq!(
        stats.records_removed, 1,
        "only a=1 is superseded within the cleanable range"
    );
    assert_eq!(stats.cleaned_up_to, 4);
    assert_eq!(
        contents(&log),
        vec![
            (1, "b".into(), Some("1".into())),
            (2, "a".into(), Some("2".into())),
            (3, "c".into(), Some("1".into())),
            (4, "b".into(), Some("3".into())),
        ],
        "offsets kept; the active segment untouched (b=1 stays until b=3 is cleanable)"
    );
    assert_eq!(log.log_end_offset(), 5);
    log.roll(0).unwrap();
    log.compact(params(200)).unwrap().unwrap();
    let keys: Vec<(i64, String)> = contents(&log).into_iter().map(|(o, k, _)| (o, k)).collect();
    assert_eq!(
        keys,
        vec![(2, "a".into()), (3, "c".into()), (4, "b".into())]
    );
}

#[test]
fn reads_and_timestamp_lookups_skip_the_gaps_compaction_leaves() {
    let (_, mut log) = new_log();
    append(&mut log, &[("a", Some("1"))], 10);
    append(&mut log, &[("a", Some("2"))], 20);
    append(&mut log, &[("b", Some("1"))], 30);
    log.roll(0).unwrap();
    log.compact(params(100)).unwrap();
    let from_gap = log.read(0, 1 << 20, true, &mut BytesMut::new()).unwrap();
    let first = batch::BatchHeader::parse(&from_gap).unwrap();
    assert_eq!(
        first.base_offset, 1,
        "a fetch at a removed offset gets the next batch"
    );
    assert_eq!(log.offset_for_timestamp(5).unwrap().unwrap().offset, 1);
}

#[test]
fn tombstones_stay_for_delete_retention_ms_after_the_cleaner_first_keeps_them() {
    let (_, mut log) = new_log();
    append(&mut log, &[("a", Some("1")), ("b", Some("1"))], 10);
    append(&mut log, &[("a", None)], 20);
    log.roll(0).unwrap();
    let first = log.compact(params(1_000)).unwrap().unwrap();
    assert_eq!((first.records_removed, first.tombstones_removed), (1, 0));
    assert_eq!(
        contents(&log),
        vec![(1, "b".into(), Some("1".into())), (2, "a".into(), None)]
    );
    let early = log.compact(params(1_999)).unwrap().unwrap();
    assert_eq!(early.tombstones_removed, 0, "not yet delete.retention.ms");
    let late = log.compact(params(2_000)).unwrap().unwrap();
    assert_eq!(late.tombstones_removed, 1);
    assert_eq!(contents(&log), vec![(1, "b".into(), Some("1".into()))]);
}

#[test]
fn records_younger_than_the_compaction_lag_are_not_cleaned() {
    let (_, mut log) = new_log();
    append(&mut log, &[("a", Some("1"))], 1_000);
    log.roll(0).unwrap();
    append(&mut log, &[("a", Some("2"))], 5_000);
    log.roll(0).unwrap();
    let lagged = CompactionParams {
        min_compaction_lag_ms: 2_000,
        ..params(6_000)
    };
    let stats = log.compact(lagged).unwrap().unwrap();
    assert_eq!(stats.cleaned_up_to, 1, "the second segment is too young");
    assert_eq!(
        stats.records_removed, 0,
        "a=1's successor is outside the cleanable range"
    );
}

#[test]
fn below_the_dirty_ratio_nothing_runs_unless_forced() {
    let (_, mut log) = new_log();
    append(&mut log, &[("a", Some("1"))], 10);
    log.roll(0).unwrap();
    log.compact(params(100)).unwrap().unwrap();
    append(&mut log, &[("a", Some("2"))], 10);
    log.roll(0).unwrap();
    for _ in 0..5 {
        append(&mut log, &[("x", Some("pad"))], 10);
    }
    let relaxed = CompactionParams {
        force: false,
        min_cleanable_dirty_ratio: 0.9,
        ..params(100)
    };
    assert_eq!(
        log.compact(relaxed).unwrap(),
        None,
        "one dirty segment of two is below 0.9"
    );
    let eager = CompactionParams {
        min_cleanable_dirty_ratio: 0.4,
        ..relaxed
    };
    assert!(log.compact(eager).unwrap().is_some());
}

#[test]
fn small_cleaned_segments_merge_within_segment_bytes() {
    let (disk, mut log) = new_log();
    for round in 0..6 {
        append(&mut log, &[("k", Some(&round.to_string()))], 10);
        log.roll(0).unwrap();
    }
    assert_eq!(log.segment_count(), 7);
    let stats = log.compact(params(100)).unwrap().unwrap();
    assert_eq!((stats.segments_before, stats.segments_after), (6, 1));
    assert_eq!(log.segment_count(), 2);
    let names = disk.list(Path::new(DIR)).unwrap();
    assert!(
        names
            .iter()
            .all(|name| !name.ends_with(".swap") && !name.ends_with(".sources")),
        "{names:?}"
    );
    assert_eq!(contents(&log).last().unwrap().0, 5);
}

#[test]
fn an_idempotent_producers_last_batch_survives_as_an_empty_batch() {
    let (_, mut log) = new_log();
    let mut builder = BatchBuilder::new();
    builder.producer(77, 0, 0);
    builder.append(
        10,
        Some(Bytes::from("a")),
        Some(Bytes::from("1")),
        Vec::new(),
    );
    builder.append(
        10,
        Some(Bytes::from("b")),
        Some(Bytes::from("1")),
        Vec::new(),
    );
    log.append(&builder.build().unwrap(), 0, None, 0).unwrap();
    append(&mut log, &[("a", Some("2")), ("b", Some("2"))], 20);
    log.roll(0).unwrap();
    log.compact(params(100)).unwrap().unwrap();
    let read = log.read(0, 1 << 20, true, &mut BytesMut::new()).unwrap();
    let first = batch::validate(&read[batch::split(&read).unwrap()[0].clone()]).unwrap();
    assert_eq!((first.producer_id, first.records_count), (77, 0));
    assert_eq!(
        (first.base_sequence, first.last_sequence()),
        (0, 1),
        "the sequence range survives"
    );
}

#[test]
fn an_interrupted_swap_is_discarded_before_its_commit_point_and_finished_after() {
    let (disk, mut log) = new_log();
    append(&mut log, &[("a", Some("1"))], 10);
    log.roll(0).unwrap();
    append(&mut log, &[("a", Some("2"))], 10);
    log.roll(0).unwrap();
    drop(log);
    let dir = Path::new(DIR);
    // Before the commit point: a half-written cleaned segment and its manifest.
    disk.open(
        &dir.join("00000000000000000000.log.cleaned"),
        OpenMode::CreateNew,
    )
    .unwrap()
    .write_at(0, b"junk")
    .unwrap();
    disk.open(
        &dir.join("00000000000000000000.sources"),
        OpenMode::CreateNew,
    )
    .unwrap()
    .write_at(0, b"0,1")
    .unwrap();
    let recovered = Log::open(Arc::clone(&disk), dir, config(), false, 0, &mut |_| {}).unwrap();
    assert_eq!(contents(&recovered.log).len(), 2, "the old segments stand");
    assert!(!disk.exists(&dir.join("00000000000000000000.log.cleaned")));

    // After the commit point: the swap holds the cleaned data; the sources must go.
    let cleaned = keyed(&[("a", Some("2"))], 10);
    let mut moved = cleaned.to_vec();
    batch::set_base_offset(&mut moved, 1);
    disk.open(
        &dir.join("00000000000000000000.log.swap"),
        OpenMode::CreateNew,
    )
    .unwrap()
    .write_at(0, &moved)
    .unwrap();
    disk.open(
        &dir.join("00000000000000000000.sources"),
        OpenMode::CreateNew,
    )
    .unwrap()
    .write_at(0, b"0,1")
    .unwrap();
    drop(recovered);
    let recovered = Log::open(Arc::clone(&disk), dir, config(), false, 0, &mut |_| {}).unwrap();
    assert_eq!(
        contents(&recovered.log),
        vec![(1, "a".into(), Some("2".into()))]
    );
    let names = disk.list(dir).unwrap();
    assert!(
        !names.iter().any(|n| n.contains("00000000000000000001.log")),
        "{names:?}"
    );
    assert_eq!(recovered.log.log_end_offset(), 2);
}

#[test]
fn retention_removes_old_and_excess_segments_but_never_the_active_one() {
    let (_, mut log) = new_log();
    for (index, timestamp) in [1_000, 2_000, 3_000].into_iter().enumerate() {
        append(&mut log, &[("k", Some(&index.to_string()))], timestamp);
        log.roll(0).unwrap();
    }
    append(&mut log, &[("k", Some("active"))], 4_000);
    let by_time = log.apply_retention(3_500, 1_000, -1).unwrap();
    assert_eq!((by_time.segments_removed, by_time.log_start_offset), (2, 2));
    let by_size = log.apply_retention(3_500, -1, 1).unwrap();
    assert_eq!((by_size.segments_removed, log.log_start_offset()), (1, 3));
    let nothing_more = log.apply_retention(99_999, 0, 0).unwrap();
    assert_eq!(nothing_more.segments_removed, 0, "the active segment stays");
    assert!(matches!(
        log.read(0, 10, true, &mut BytesMut::new()),
        Err(ReadError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn delete_records_moves_the_log_start_and_drops_whole_segments_below_it() {
    let (_, mut log) = new_log();
    append(&mut log, &[("a", Some("1")), ("b", Some("1"))], 10);
    log.roll(0).unwrap();
    append(&mut log, &[("c", Some("1")), ("d", Some("1"))], 10);
    log.advance_log_start(3).unwrap();
    assert_eq!((log.log_start_offset(), log.segment_count()), (3, 1));
    log.advance_log_start(1).unwrap();
    assert_eq!(log.log_start_offset(), 3, "never backwards");
    log.advance_log_start(99).unwrap();
    assert_eq!(log.log_start_offset(), 4, "never past the high watermark");
}

#[test]
fn a_full_key_map_cleans_a_prefix_and_leaves_the_rest_for_later() {
    let (_, mut log) = new_log();
    for round in 0..3 {
        append(&mut log, &[("a", Some("1")), ("b", Some("1"))], 10);
        append(&mut log, &[(&format!("k{round}"), Some("x"))], 10);
        log.roll(0).unwrap();
    }
    let bounded = CompactionParams {
        keys_max: 2,
        ..params(100)
    };
    let stats = log.compact(bounded).unwrap().unwrap();
    assert_eq!(
        stats.segments_before, 1,
        "the map filled after the first segment"
    );
    assert_eq!(stats.cleaned_up_to, 3);
    let unbounded = log.compact(params(100)).unwrap().unwrap();
    assert!(unbounded.records_removed >= 4);
}

#[test]
fn records_without_keys_are_dropped_by_compaction() {
    let (_, mut log) = new_log();
    let mut builder = BatchBuilder::new();
    builder.push(Record {
        offset: 0,
        timestamp: 10,
        key: None,
        value: Some(Bytes::from("keyless")),
        headers: Vec::new(),
    });
    log.append(&builder.build().unwrap(), 0, None, 0).unwrap();
    append(&mut log, &[("a", Some("1"))], 10);
    log.roll(0).unwrap();
    let stats = log.compact(params(100)).unwrap().unwrap();
    assert_eq!(stats.records_removed, 1);
}
