use super::*;
use tidepool_io::MemDisk;

/// A valid v2 batch of `count` records with opaque bodies: the log never looks inside records.
fn batch(count: i32, max_timestamp: i64, body_bytes: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(61 + body_bytes);
    bytes.extend_from_slice(&0i64.to_be_bytes());
    bytes.extend_from_slice(&((49 + body_bytes) as i32).to_be_bytes());
    bytes.extend_from_slice(&0i32.to_be_bytes());
    bytes.push(2);
    bytes.extend_from_slice(&0u32.to_be_bytes());
    bytes.extend_from_slice(&0i16.to_be_bytes());
    bytes.extend_from_slice(&(count - 1).to_be_bytes());
    bytes.extend_from_slice(&max_timestamp.to_be_bytes());
    bytes.extend_from_slice(&max_timestamp.to_be_bytes());
    bytes.extend_from_slice(&(-1i64).to_be_bytes());
    bytes.extend_from_slice(&(-1i16).to_be_bytes());
    bytes.extend_from_slice(&(-1i32).to_be_bytes());
    bytes.extend_from_slice(&count.to_be_bytes());
    bytes.resize(61 + body_bytes, 0xab);
    let crc = batch::compute_crc(&bytes);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn read_log(
    log: &Log,
    offset: i64,
    bytes_max: usize,
    first_batch_always: bool,
) -> Result<Bytes, ReadError> {
    log.read(offset, bytes_max, first_batch_always, &mut BytesMut::new())
}

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        segment_ms: i64::MAX,
        index_interval_bytes: 256,
    }
}

fn new_log(segment_bytes: u64) -> Log {
    Log::create(
        Arc::new(MemDisk::new()),
        Path::new("/t-0"),
        config(segment_bytes),
    )
    .unwrap()
}

fn offsets_in(bytes: &[u8]) -> Vec<(i64, i64)> {
    batch::split(bytes)
        .unwrap()
        .into_iter()
        .map(|range| {
            let header = batch::validate(&bytes[range]).unwrap();
            (header.base_offset, header.last_offset())
        })
        .collect()
}

#[test]
fn appends_assign_consecutive_offsets_and_keep_batches_valid() {
    let mut log = new_log(1 << 20);
    let first = log.append(&batch(3, 10, 20), 0, None, 0).unwrap();
    let second = log.append(&batch(2, 20, 20), 0, None, 0).unwrap();
    assert_eq!(
        first,
        Appended {
            base_offset: 0,
            last_offset: 2
        }
    );
    assert_eq!(
        second,
        Appended {
            base_offset: 3,
            last_offset: 4
        }
    );
    assert_eq!(log.log_end_offset(), 5);
    let read = read_log(&log, 0, 1 << 20, true).unwrap();
    assert_eq!(offsets_in(&read), vec![(0, 2), (3, 4)]);
}

#[test]
fn a_read_from_inside_a_batch_starts_at_that_batch() {
    let mut log = new_log(1 << 20);
    for _ in 0..10 {
        log.append(&batch(5, 1, 100), 0, None, 0).unwrap();
    }
    let read = read_log(&log, 23, 1 << 20, true).unwrap();
    assert_eq!(offsets_in(&read).first(), Some(&(20, 24)));
}

#[test]
fn reads_stop_at_bytes_max_but_always_return_a_first_batch_when_asked() {
    let mut log = new_log(1 << 20);
    let big = batch(1, 1, 1000);
    log.append(&big, 0, None, 0).unwrap();
    log.append(&big, 0, None, 0).unwrap();
    assert_eq!(
        offsets_in(&read_log(&log, 0, 10, true).unwrap()),
        vec![(0, 0)]
    );
    assert!(read_log(&log, 0, 10, false).unwrap().is_empty());
    assert_eq!(
        offsets_in(&read_log(&log, 0, 2 * big.len(), false).unwrap()).len(),
        2
    );
}

#[test]
fn reading_at_the_end_is_empty_and_past_it_is_out_of_range() {
    let mut log = new_log(1 << 20);
    log.append(&batch(2, 1, 10), 0, None, 0).unwrap();
    assert!(read_log(&log, 2, 1 << 20, true).unwrap().is_empty());
    assert!(matches!(
        read_log(&log, 3, 1 << 20, true),
        Err(ReadError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        read_log(&log, -1, 1 << 20, true),
        Err(ReadError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn a_full_segment_rolls_and_reads_continue_across_segments() {
    let mut log = new_log(1_000);
    for _ in 0..10 {
        log.append(&batch(1, 1, 300), 0, None, 0).unwrap();
    }
    assert_eq!(
        log.segment_count(),
        5,
        "two 361-byte batches fit in 1000 bytes"
    );
    let mut offset = 0;
    while offset < log.log_end_offset() {
        let read = read_log(&log, offset, 1 << 20, true).unwrap();
        let batches = offsets_in(&read);
        assert_eq!(batches[0].0, offset);
        offset = batches.last().unwrap().1 + 1;
    }
    assert_eq!(offset, 10);
    let names = log.disk.list(Path::new("/t-0")).unwrap();
    assert!(names.contains(&"00000000000000000000.log".to_owned()));
    assert!(
        names.contains(&"00000000000000000002.timeindex".to_owned()),
        "{names:?}"
    );
}

#[test]
fn an_old_segment_rolls_by_time() {
    let mut log = new_log(1 << 20);
    log.set_config(LogConfig {
        segment_ms: 100,
        ..config(1 << 20)
    });
    log.append(&batch(1, 1, 10), 0, None, 1_000).unwrap();
    log.append(&batch(1, 1, 10), 0, None, 1_050).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append(&batch(1, 1, 10), 0, None, 1_100).unwrap();
    assert_eq!(log.segment_count(), 2);
}

#[test]
fn stored_batches_carry_the_leader_epoch_and_log_append_time() {
    let mut log = new_log(1 << 20);
    log.append(&batch(1, 5, 10), 7, Some(99), 0).unwrap();
    let read = read_log(&log, 0, 1 << 20, true).unwrap();
    let header = batch::validate(&read).unwrap();
    assert_eq!(header.partition_leader_epoch, 7);
    assert!(header.is_log_append_time());
    assert_eq!(header.max_timestamp, 99);
}

#[test]
fn timestamp_lookups_find_the_first_batch_at_or_after_the_time() {
    let mut log = new_log(2_000);
    for timestamp in [100, 200, 150, 300, 400, 500] {
        log.append(&batch(2, timestamp, 200), 0, None, 0).unwrap();
    }
    let found = |ts| {
        log.batch_by_timestamp(ts)
            .unwrap()
            .map(|bytes| batch::validate(&bytes).unwrap().base_offset)
    };
    assert_eq!(found(0), Some(0));
    assert_eq!(found(150), Some(2));
    assert_eq!(found(250), Some(6));
    assert_eq!(found(500), Some(10));
    assert_eq!(found(501), None);
    let max = log.batch_with_max_timestamp().unwrap().unwrap();
    assert_eq!(batch::validate(&max).unwrap().base_offset, 10);
}

#[test]
fn end_offsets_per_epoch_follow_kafka() {
    let mut log = new_log(1 << 20);
    log.assign_epoch(0, 0);
    log.append(&batch(3, 1, 10), 0, None, 0).unwrap();
    log.assign_epoch(2, 3);
    log.append(&batch(3, 1, 10), 2, None, 0).unwrap();
    assert_eq!(log.end_offset_for_epoch(0), (0, 3));
    assert_eq!(log.end_offset_for_epoch(1), (0, 3));
    assert_eq!(log.end_offset_for_epoch(2), (2, 6));
    assert_eq!(log.end_offset_for_epoch(3), (-1, -1));
    assert_eq!(log.end_offset_for_epoch(-1), (-1, -1));
}
