//! Log recovery (`Log::open`) from arbitrary segment files, on the in-memory Disk seam.
//!
//! Input: `[flags, segments, bases…, bytes…]`. `segments` (1–3) picks how many `.log` files
//! the bytes are cut into (at 16-bit cut points read from the input); each file is named after
//! a base offset, by default that of its first batch (so the fuzzer controls it through the
//! batch header). Flags: bit 0 verifies every segment's CRCs (the last one's always are),
//! bits 1–3 repair batch headers as `tidepool_fuzz::repair_batches` describes (bits 0–2 of its
//! argument), bit 4 adds an interrupted compaction (a `.log.swap` and its manifest, from the
//! last cut) and bit 5 a stale `.index` of garbage.
//!
//! Checks: no panic; what recovery keeps is a prefix of each file it keeps; batches come back
//! in strictly increasing offsets, below the log end, and valid when CRCs were verified;
//! opening again cuts nothing and reads the same bytes; appending afterwards works and reads
//! back at the log end.

#![no_main]

use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tidepool_broker::log::{Log, LogConfig};
use tidepool_io::{Disk, MemDisk, OpenMode};
use tidepool_protocol::batch::{self, BatchHeader};
use tidepool_protocol::records::BatchBuilder;

const DIR: &str = "/data/topic-0";
const CONFIG: LogConfig = LogConfig {
    segment_bytes: 1 << 20,
    segment_ms: i64::MAX,
    index_interval_bytes: 64,
};
const NOW_MS: i64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&[flags, segments], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let segments = 1 + usize::from(segments % 3);
    let swap = flags & 0x10 != 0;
    let files = segments + usize::from(swap);
    let Some((cuts, body)) = rest.split_at_checked(2 * (files - 1)) else {
        return;
    };
    let mut body = body.to_vec();
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut from = 0;
    for cut in cuts.chunks_exact(2) {
        let to = (from + usize::from(u16::from_be_bytes([cut[0], cut[1]]))).min(body.len());
        chunks.push(body[from..to].to_vec());
        from = to;
    }
    chunks.push(body.split_off(from));
    let disk = Arc::new(MemDisk::new());
    let dir = Path::new(DIR);
    disk.create_dir_all(dir).unwrap();
    let mut written = Vec::new();
    for (index, chunk) in chunks.iter_mut().enumerate() {
        tidepool_fuzz::repair_batches(chunk, (flags >> 1) & 7);
        let base = name_base(chunk, index as i64);
        if swap && index == files - 1 {
            // A cleaned segment committed as `.swap` replacing the segments before it.
            let sources: Vec<String> = written.iter().map(|(base, _)| format!("{base}")).collect();
            let first = written.first().map_or(base, |(base, _)| *base);
            write(&*disk, &dir.join(format!("{first:020}.log.swap")), chunk);
            write(
                &*disk,
                &dir.join(format!("{first:020}.sources")),
                sources.join(",").as_bytes(),
            );
            continue;
        }
        if written.iter().any(|(existing, _)| *existing == base) {
            continue;
        }
        write(&*disk, &dir.join(format!("{base:020}.log")), chunk);
        written.push((base, chunk.clone()));
    }
    if flags & 0x20 != 0 {
        if let Some((base, chunk)) = written.first() {
            write(
                &*disk,
                &dir.join(format!("{base:020}.index")),
                &chunk[..chunk.len().min(40)],
            );
        }
    }
    let verify = flags & 1 != 0;
    let Ok(recovered) = Log::open(disk.clone(), dir, CONFIG, verify, NOW_MS, &mut |_| {}) else {
        return;
    };
    let log = recovered.log;
    if !swap {
        for (base, original) in &written {
            let path = dir.join(format!("{base:020}.log"));
            if disk.exists(&path) {
                let kept = read(&*disk, &path);
                assert!(original.starts_with(&kept), "segment {base} kept a prefix");
            }
        }
    }
    let first_read = read_all(&log, verify);
    let first_log_end = log.log_end_offset();
    let log_start = log.log_start_offset();
    drop(log);

    let again = Log::open(disk.clone(), dir, CONFIG, verify, NOW_MS, &mut |_| {})
        .expect("a recovered log opens again");
    // FUZZING.md finding 2 (fixed): a cut that leaves an earlier segment last must CRC-check
    // it, or this second recovery would cut it again.
    assert_eq!(
        again.removed_bytes, 0,
        "a second recovery cuts nothing: {:?}",
        again.reason
    );
    assert_eq!(again.removed_segments, 0);
    let mut log = again.log;
    let log_end = log.log_end_offset();
    assert_eq!(log_end, first_log_end);
    assert_eq!(log.log_start_offset(), log_start);
    assert_eq!(
        read_all(&log, verify),
        first_read,
        "a reopen reads the same batches"
    );

    // A log end within two billion of i64::MAX (only a crafted file has one) leaves no room
    // for the next batch's offsets; Kafka has no answer there either.
    if log_end > i64::MAX - i64::from(i32::MAX) {
        return;
    }
    let mut builder = BatchBuilder::new();
    builder.append(
        NOW_MS,
        Some(Bytes::from_static(b"k")),
        Some(Bytes::from_static(b"v")),
        vec![],
    );
    let appended_batch = builder.build().unwrap();
    let appended = log
        .append(&appended_batch, 5, None, NOW_MS)
        .expect("a recovered log takes appends");
    assert_eq!(appended.base_offset, log_end);
    assert_eq!(log.log_end_offset(), log_end + 1);
    let mut scratch = BytesMut::new();
    let read_back = log.read(log_end, usize::MAX, true, &mut scratch).unwrap();
    let header = BatchHeader::parse(&read_back).expect("the appended batch reads back");
    assert_eq!(header.base_offset, log_end);
    batch::validate(&read_back[..header.total_bytes()]).expect("the appended batch is valid");
});

/// The base offset a segment file is named after: its first batch's, when it has one that is
/// not negative; its position otherwise.
fn name_base(chunk: &[u8], index: i64) -> i64 {
    match chunk.first_chunk::<8>() {
        Some(first) if i64::from_be_bytes(*first) >= 0 => i64::from_be_bytes(*first),
        _ => index,
    }
}

fn write(disk: &dyn Disk, path: &Path, bytes: &[u8]) {
    let file = disk.open(path, OpenMode::CreateOrOpen).unwrap();
    file.set_len(0).unwrap();
    file.write_at(0, bytes).unwrap();
}

fn read(disk: &dyn Disk, path: &Path) -> Vec<u8> {
    let file = disk.open(path, OpenMode::Existing).unwrap();
    let mut bytes = vec![0; file.len().unwrap() as usize];
    file.read_exact_at(0, &mut bytes).unwrap();
    bytes
}

/// Every batch from the log start to the log end, checking the order of their offsets.
fn read_all(log: &Log, verify: bool) -> Vec<Bytes> {
    let mut batches = Vec::new();
    let mut scratch = BytesMut::new();
    let mut offset = log.log_start_offset();
    let mut previous_last = None;
    while offset < log.log_end_offset() {
        let bytes = log
            .read(offset, usize::MAX, true, &mut scratch)
            .expect("offsets between log start and end read");
        if bytes.is_empty() {
            break;
        }
        let ranges = batch::split(&bytes).expect("a read returns whole batches");
        for range in ranges {
            let stored = bytes.slice(range);
            let header = BatchHeader::parse(&stored).unwrap();
            assert!(
                previous_last.is_none_or(|last| header.base_offset > last),
                "offsets increase"
            );
            assert!(header.last_offset() >= header.base_offset);
            assert!(
                header.last_offset() < log.log_end_offset(),
                "batches end before the log end"
            );
            if verify {
                batch::validate(&stored).expect("recovery with CRC checks keeps valid batches");
            }
            previous_last = Some(header.last_offset());
            offset = header.last_offset() + 1;
            batches.push(stored);
        }
    }
    batches
}
