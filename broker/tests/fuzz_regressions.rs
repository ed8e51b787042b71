//! Inputs found by the fuzz targets in `fuzz/` (FUZZING.md), replayed as ordinary tests.

mod common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tidepool_broker::log::{Log, LogConfig};
use tidepool_io::{Disk, MemDisk, OpenMode};
use tidepool_protocol::batch;
use tidepool_protocol::records::BatchBuilder;

const DIR: &str = "/data/topic-0";
const CONFIG: LogConfig = LogConfig {
    segment_bytes: 1 << 20,
    segment_ms: i64::MAX,
    index_interval_bytes: 4096,
};

fn write(disk: &dyn Disk, path: &Path, bytes: &[u8]) {
    let file = disk.open(path, OpenMode::CreateNew).unwrap();
    file.write_at(0, bytes).unwrap();
    file.sync().unwrap();
}

fn one_record_batch() -> Bytes {
    let mut builder = BatchBuilder::new();
    builder.append(
        1_000,
        Some(Bytes::from_static(b"k")),
        Some(Bytes::from_static(b"v")),
        vec![],
    );
    builder.build().unwrap()
}

/// log_recovery, FUZZING.md finding 2 (reduced by hand from the fuzzer's input). Segment 0
/// holds a batch whose header scans fine but which `batch::validate` refuses (here a negative
/// record count under a correct CRC; bit rot under a stale CRC does the same), and a later
/// segment overlaps it. Recovery without `verify_all_crcs` checks segment 0 by headers only (it
/// is not the last), removes the overlapping segment, and leaves segment 0 last and active.
/// An append was then acknowledged into it, and the next recovery, which checks the last
/// segment's CRCs, cut segment 0 at the old batch and the acknowledged append with it. Now the
/// first recovery checks a segment that a cut leaves last.
#[test]
fn a_second_recovery_keeps_what_was_appended_after_the_first() {
    let disk: Arc<dyn Disk> = Arc::new(MemDisk::new());
    let dir = Path::new(DIR);
    disk.create_dir_all(dir).unwrap();
    let mut builder = BatchBuilder::new();
    for value in 0..5u8 {
        builder.append(
            1_000,
            Some(Bytes::from_static(b"k")),
            Some(Bytes::from(vec![value])),
            vec![],
        );
    }
    let mut damaged = builder.build().unwrap().to_vec();
    damaged[57..61].copy_from_slice(&(-1i32).to_be_bytes());
    let crc = batch::compute_crc(&damaged);
    damaged[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(batch::validate(&damaged).is_err());
    write(&*disk, &dir.join(format!("{:020}.log", 0)), &damaged);
    write(&*disk, &dir.join(format!("{:020}.log", 1)), &[]);

    let first = Log::open(disk.clone(), dir, CONFIG, false, 0, &mut |_| {}).unwrap();
    assert_eq!(first.removed_segments, 1, "the overlapping segment goes");
    let mut log = first.log;
    let appended = log.append(&one_record_batch(), 0, None, 0).unwrap();
    log.sync().unwrap();
    drop(log);

    let second = Log::open(disk.clone(), dir, CONFIG, false, 0, &mut |_| {}).unwrap();
    assert_eq!(second.removed_bytes, 0, "cut again: {:?}", second.reason);
    assert_eq!(second.log.log_end_offset(), appended.last_offset + 1);
}

/// Segment 0 holding a batch at 0 and, after it, `second` (re-based to `second_base`, which
/// leaves its CRC valid: the base offset is outside the CRC).
fn segment_with_second_batch_at(second_base: i64, second_delta: Option<i32>) -> Vec<u8> {
    let mut first = BatchBuilder::new();
    first.append(
        1_000,
        Some(Bytes::from_static(b"a")),
        Some(Bytes::from_static(b"1")),
        vec![],
    );
    first.append(
        1_000,
        Some(Bytes::from_static(b"b")),
        Some(Bytes::from_static(b"2")),
        vec![],
    );
    let mut segment = first.build().unwrap().to_vec();
    let mut second = one_record_batch().to_vec();
    batch::set_base_offset(&mut second, second_base);
    if let Some(delta) = second_delta {
        batch::set_last_offset_delta(&mut second, delta);
    }
    segment.extend_from_slice(&second);
    segment
}

fn recover(segment: &[u8]) -> tidepool_broker::log::Recovered {
    let disk: Arc<dyn Disk> = Arc::new(MemDisk::new());
    let dir = Path::new(DIR);
    disk.create_dir_all(dir).unwrap();
    write(&*disk, &dir.join(format!("{:020}.log", 0)), segment);
    // An index entry per batch, so the second batch's offset goes into the index.
    let config = LogConfig {
        index_interval_bytes: 1,
        ..CONFIG
    };
    Log::open(disk, dir, config, true, 0, &mut |_| {}).unwrap()
}

/// log_recovery, FUZZING.md finding 4: a stored batch 2^33 offsets past its segment's base.
/// The indexes hold offsets relative to the base in 32 bits, and recovery panicked on
/// `expect("a segment spans under 2^32 offsets")`. Now recovery cuts the log before it.
#[test]
fn recovery_cuts_a_batch_too_far_from_its_segment_base() {
    let recovered = recover(&segment_with_second_batch_at(1 << 33, None));
    assert_eq!(recovered.log.log_end_offset(), 2);
    assert!(recovered.removed_bytes > 0, "the far batch is cut");
}

/// The same check's other edge: a batch whose last offset overflows an i64 (base offset near
/// i64::MAX and a positive delta) panicked on overflow before. Now it is cut too.
#[test]
fn recovery_cuts_a_batch_whose_offsets_overflow() {
    let recovered = recover(&segment_with_second_batch_at(i64::MAX - 1, Some(5)));
    assert_eq!(recovered.log.log_end_offset(), 2);
    assert!(recovered.reason.is_some());
}

/// FUZZING.md finding 5 (from reading the code behind finding 4): Produce did not check a
/// batch's last offset delta against its record count, as Kafka does ("Inconsistent batch
/// offset range"). A batch of one record claiming a delta of i32::MAX took 2^31 offsets, and
/// the third such batch put an offset more than 2^32 past its segment's base into the index,
/// where `expect("a segment spans under 2^32 offsets")` panicked in the produce handler.
#[tokio::test]
async fn a_batch_whose_offset_range_disagrees_with_its_count_is_refused() {
    let broker = common::start_default().await;
    let mut client = common::Client::connect(&broker).await;
    common::create_topic(&mut client, "hostile", 1).await;
    // Larger than index.interval.bytes, so every append writes an index entry.
    let value = Bytes::from(vec![7u8; 5_000]);
    let mut builder = BatchBuilder::new();
    builder.append(1_000, Some(Bytes::from_static(b"k")), Some(value), vec![]);
    let honest = builder.build().unwrap();
    for delta in [i32::MAX, i32::MAX, i32::MAX, -1, 1] {
        let mut claimed = honest.to_vec();
        batch::set_last_offset_delta(&mut claimed, delta);
        let answer = common::produce(&mut client, "hostile", 0, Bytes::from(claimed)).await;
        assert_eq!(
            answer.error_code,
            kafka_protocol::ResponseError::InvalidRecord.code(),
            "delta {delta}"
        );
    }
    let answer = common::produce(&mut client, "hostile", 0, honest).await;
    assert_eq!((answer.error_code, answer.base_offset), (0, 0));
    broker.shutdown().await;
}

/// log_recovery, FUZZING.md finding 6: a segment recovered with offsets up to 2^32 − 1 past its
/// base (legal for its indexes) took an append at the next offset, which the index could not
/// hold: `expect("a segment spans under 2^32 offsets")` panicked in `Log::append`. Produce can
/// do the same without recovery: a batch's record count is not checked against its records, so
/// two batches claiming two billion records each fill a segment's offset range. Now the log
/// rolls before a batch whose last offset its active segment cannot index, as Kafka does.
#[test]
fn appends_roll_before_the_segment_offset_range_is_exhausted() {
    let disk: Arc<dyn Disk> = Arc::new(MemDisk::new());
    let config = LogConfig {
        index_interval_bytes: 1,
        ..CONFIG
    };
    let mut log = Log::create(disk, Path::new(DIR), config, 0).unwrap();
    let mut claimed = one_record_batch().to_vec();
    batch::set_last_offset_delta(&mut claimed, i32::MAX);
    for _ in 0..3 {
        log.append(&claimed, 0, None, 0).unwrap();
    }
    assert_eq!(log.log_end_offset(), 3 * (1i64 << 31));
    assert_eq!(log.segment_count(), 2, "rolled before the third batch");
}

/// log_recovery, FUZZING.md finding 7: a batch header with a negative length in a segment
/// before the last. The header scan compared the length as a `usize`, so a negative one wrapped
/// and passed, and the batch was kept as 12 bytes (`total_bytes` counts a negative length as
/// 0); the scan then cut the file right after those 12 bytes, and every read of the segment
/// failed (`wanted 61 bytes at offset …`). Now the batch is refused and the log cut before it.
#[test]
fn recovery_cuts_a_batch_with_a_negative_length() {
    let disk: Arc<dyn Disk> = Arc::new(MemDisk::new());
    let dir = Path::new(DIR);
    disk.create_dir_all(dir).unwrap();
    let good = one_record_batch().to_vec();
    let mut bogus = one_record_batch().to_vec();
    batch::set_base_offset(&mut bogus, 1);
    bogus[8..12].copy_from_slice(&(-5i32).to_be_bytes());
    let mut segment = good.clone();
    segment.extend_from_slice(&bogus);
    write(&*disk, &dir.join(format!("{:020}.log", 0)), &segment);
    let mut later = good;
    batch::set_base_offset(&mut later, 10);
    write(&*disk, &dir.join(format!("{:020}.log", 10)), &later);

    let recovered = Log::open(disk, dir, CONFIG, false, 0, &mut |_| {}).unwrap();
    let log = recovered.log;
    assert_eq!(log.log_end_offset(), 1);
    let mut scratch = bytes::BytesMut::new();
    let read = log.read(0, usize::MAX, true, &mut scratch).unwrap();
    batch::validate(&read).unwrap();
}
