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
        0,
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
fn a_segment_rolls_once_its_records_span_more_than_segment_ms() {
    let mut log = new_log(1 << 20);
    log.set_config(LogConfig {
        segment_ms: 100,
        ..config(1 << 20)
    });
    // Record time decides, as in Kafka; the wall clock (last argument) does not.
    log.append(&batch(1, 1_000, 10), 0, None, 0).unwrap();
    log.append(&batch(1, 1_050, 10), 0, None, 9_999).unwrap();
    log.append(&batch(1, 1_100, 10), 0, None, 9_999).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append(&batch(1, 1_101, 10), 0, None, 0).unwrap();
    assert_eq!(log.segment_count(), 2);
}

#[test]
fn a_segment_without_record_timestamps_rolls_by_wall_clock() {
    let mut log = new_log(1 << 20);
    log.set_config(LogConfig {
        segment_ms: 100,
        ..config(1 << 20)
    });
    log.append(&batch(1, -1, 10), 0, None, 50).unwrap();
    log.append(&batch(1, -1, 10), 0, None, 100).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append(&batch(1, -1, 10), 0, None, 101).unwrap();
    assert_eq!(log.segment_count(), 2);
}

#[test]
fn batches_without_timestamps_are_indexed_by_offset_only() {
    let mut log = new_log(1 << 20);
    log.set_config(LogConfig {
        index_interval_bytes: 0,
        ..config(1 << 20)
    });
    for _ in 0..3 {
        log.append(&batch(2, -1, 10), 0, None, 0).unwrap();
    }
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    let read = read_log(&log, 4, 1 << 20, true).unwrap();
    assert_eq!(offsets_in(&read), vec![(4, 5)]);
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

mod recovery {
    use super::*;
    use tidepool_io::OpenMode;

    fn disk_and_log(segment_bytes: u64) -> (Arc<dyn Disk>, Log) {
        let disk: Arc<dyn Disk> = Arc::new(MemDisk::new());
        let log = Log::create(
            Arc::clone(&disk),
            Path::new("/t-0"),
            config(segment_bytes),
            0,
        )
        .unwrap();
        (disk, log)
    }

    fn reopen(disk: &Arc<dyn Disk>, segment_bytes: u64) -> (Recovered, Vec<BatchHeader>) {
        let mut seen = Vec::new();
        let recovered = Log::open(
            Arc::clone(disk),
            Path::new("/t-0"),
            config(segment_bytes),
            false,
            0,
            &mut |h| seen.push(*h),
        )
        .unwrap();
        (recovered, seen)
    }

    fn file(disk: &Arc<dyn Disk>, name: &str) -> Box<dyn tidepool_io::DiskFile> {
        disk.open(&Path::new("/t-0").join(name), OpenMode::Existing)
            .unwrap()
    }

    fn all_offsets(log: &Log) -> Vec<(i64, i64)> {
        let mut batches = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let read = read_log(log, offset, 1 << 20, true).unwrap();
            let found = offsets_in(&read);
            offset = found.last().unwrap().1 + 1;
            batches.extend(found);
        }
        batches
    }

    #[test]
    fn a_cleanly_written_log_reopens_whole_with_its_indexes_and_epochs() {
        let (disk, mut log) = disk_and_log(1_000);
        log.append(&batch(2, 10, 300), 0, None, 0).unwrap();
        log.append(&batch(2, 20, 300), 3, None, 0).unwrap();
        log.append(&batch(2, 30, 300), 3, None, 0).unwrap();
        log.append(&batch(2, 40, 300), 5, None, 0).unwrap();
        let before = all_offsets(&log);
        drop(log);
        let (recovered, seen) = reopen(&disk, 1_000);
        assert_eq!(recovered.removed_bytes, 0);
        assert!(recovered.reason.is_none());
        let log = recovered.log;
        assert_eq!(seen.len(), 4);
        assert_eq!(log.log_end_offset(), 8);
        assert_eq!(all_offsets(&log), before);
        assert_eq!(log.end_offset_for_epoch(0), (0, 2));
        assert_eq!(log.end_offset_for_epoch(3), (3, 6));
        assert_eq!(log.end_offset_for_epoch(5), (5, 8));
        let found = log.batch_by_timestamp(25).unwrap().unwrap();
        assert_eq!(batch::validate(&found).unwrap().base_offset, 4);
    }

    #[test]
    fn a_torn_last_batch_is_cut_and_appends_continue_after_the_last_whole_one() {
        let (disk, mut log) = disk_and_log(1 << 20);
        for _ in 0..3 {
            log.append(&batch(2, 1, 100), 0, None, 0).unwrap();
        }
        drop(log);
        let segment = file(&disk, "00000000000000000000.log");
        let whole = segment.len().unwrap();
        segment.set_len(whole - 7).unwrap();
        let (recovered, _) = reopen(&disk, 1 << 20);
        assert_eq!(recovered.removed_bytes, (whole - 7) - 2 * (whole / 3));
        assert!(recovered.reason.is_some());
        let mut log = recovered.log;
        assert_eq!(log.log_end_offset(), 4);
        assert_eq!(
            segment.len().unwrap(),
            2 * (whole / 3),
            "the file is cut too"
        );
        assert_eq!(
            log.append(&batch(1, 1, 10), 0, None, 0)
                .unwrap()
                .base_offset,
            4
        );
        assert_eq!(all_offsets(&log), vec![(0, 1), (2, 3), (4, 4)]);
    }

    #[test]
    fn garbage_after_the_last_batch_is_cut() {
        let (disk, mut log) = disk_and_log(1 << 20);
        log.append(&batch(3, 1, 50), 0, None, 0).unwrap();
        drop(log);
        let segment = file(&disk, "00000000000000000000.log");
        let end = segment.len().unwrap();
        segment.write_at(end, &[0xde; 200]).unwrap();
        let (recovered, _) = reopen(&disk, 1 << 20);
        assert_eq!(recovered.removed_bytes, 200);
        assert_eq!(recovered.log.log_end_offset(), 3);
    }

    #[test]
    fn a_crc_mismatch_in_the_last_segment_cuts_from_that_batch() {
        let (disk, mut log) = disk_and_log(1 << 20);
        for _ in 0..3 {
            log.append(&batch(1, 1, 100), 0, None, 0).unwrap();
        }
        drop(log);
        let segment = file(&disk, "00000000000000000000.log");
        let batch_bytes = segment.len().unwrap() / 3;
        segment.write_at(batch_bytes + 100, &[0xff]).unwrap();
        let (recovered, _) = reopen(&disk, 1 << 20);
        assert!(recovered.reason.unwrap().contains("CRC"));
        assert_eq!(recovered.log.log_end_offset(), 1);
    }

    #[test]
    fn corruption_in_an_earlier_segment_removes_every_later_segment() {
        let (disk, mut log) = disk_and_log(1_000);
        for _ in 0..8 {
            log.append(&batch(1, 1, 300), 0, None, 0).unwrap();
        }
        assert_eq!(log.segment_count(), 4);
        drop(log);
        let second = file(&disk, "00000000000000000002.log");
        second.write_at(361 + 8, &(-5i32).to_be_bytes()).unwrap();
        let mut seen = Vec::new();
        let recovered = Log::open(
            Arc::clone(&disk),
            Path::new("/t-0"),
            config(1_000),
            true,
            0,
            &mut |h| seen.push(*h),
        )
        .unwrap();
        assert_eq!(recovered.removed_segments, 2);
        assert_eq!(recovered.log.log_end_offset(), 3);
        assert_eq!(seen.len(), 3);
        let names = disk.list(Path::new("/t-0")).unwrap();
        assert!(
            !names
                .iter()
                .any(|name| name.starts_with("00000000000000000004")),
            "{names:?}"
        );
    }

    #[test]
    fn index_files_without_a_segment_are_removed() {
        let (disk, log) = disk_and_log(1 << 20);
        drop(log);
        disk.open(
            Path::new("/t-0/00000000000000000042.index"),
            OpenMode::CreateNew,
        )
        .unwrap();
        let (recovered, _) = reopen(&disk, 1 << 20);
        assert_eq!(recovered.log.log_end_offset(), 0);
        assert!(!disk.exists(Path::new("/t-0/00000000000000000042.index")));
    }
}
