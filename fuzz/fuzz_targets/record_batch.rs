//! Record batches as the broker and client check them: `batch::split` of a record set,
//! `batch::validate` of each batch (length, magic, codec, count, CRC-32C), and
//! `records::decode` / `records::timestamps` of the records inside (every codec).
//!
//! Input: `[fixes, record set…]`. Random bytes almost never carry a valid CRC, so the low
//! bits of `fixes` let the harness repair each batch's header before the checks (bit 0: its
//! length field to the bytes present, bit 1: the magic, bit 2: the CRC), so that the fuzzer
//! spends its time in the records and the codecs.
//!
//! Checks: no panic and bounded memory; `split` covers the input exactly; a batch `validate`
//! accepts has the CRC it declares and its declared size; records that decode number exactly
//! `records_count`, agree with what `timestamps` reports, carry the batch's max timestamp when
//! it is LogAppendTime, and survive `BatchBuilder` re-encoding in the batch's codec.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidepool_protocol::batch::{self, MAGIC_V2};
use tidepool_protocol::records::{self, BatchBuilder, DecodeLimits, TimestampType};

/// Tighter than the default so one input cannot hold the fuzzer for long.
const LIMITS: DecodeLimits = DecodeLimits {
    records_bytes_max: 1 << 20,
    records_count_max: 10_000,
    headers_count_max: 10_000,
};

fuzz_target!(|data: &[u8]| {
    let Some((&fixes, set)) = data.split_first() else {
        return;
    };
    let mut set = set.to_vec();
    tidepool_fuzz::repair_batches(&mut set, fixes);
    let ranges = match batch::split(&set) {
        Ok(ranges) => ranges,
        // Still read the whole input as one batch: that is how a stored batch is read.
        Err(_) => vec![0..set.len()],
    };
    let mut end = 0;
    for range in &ranges {
        assert_eq!(range.start, end, "split leaves no gap");
        end = range.end;
        check_batch(&set[range.clone()]);
    }
    assert_eq!(end, set.len(), "split covers the whole input");
});

fn check_batch(bytes: &[u8]) {
    let validated = batch::validate(bytes);
    if let Ok(header) = &validated {
        assert_eq!(batch::compute_crc(bytes), header.crc);
        assert_eq!(header.total_bytes(), bytes.len());
        assert_eq!(header.magic, MAGIC_V2);
        assert!(header.records_count >= 0);
        assert!(header.compression().is_ok());
    }
    let decoded = records::decode(bytes, &LIMITS);
    let timestamps = records::timestamps(bytes, &LIMITS);
    assert_eq!(
        decoded.is_ok(),
        timestamps.is_ok(),
        "decode and timestamps accept the same batches: {decoded:?} / {timestamps:?}"
    );
    let (Ok(decoded), Ok(timestamps)) = (decoded, timestamps) else {
        return;
    };
    let header = validated.expect("records decode only from a valid batch");
    assert_eq!(decoded.len(), header.records_count as usize);
    assert_eq!(decoded.len(), timestamps.len());
    for (record, timestamp) in decoded.iter().zip(&timestamps) {
        assert_eq!(
            (record.offset, record.timestamp),
            (timestamp.offset, timestamp.timestamp)
        );
        if header.is_log_append_time() {
            assert_eq!(record.timestamp, header.max_timestamp);
        }
    }
    if decoded.is_empty() || header.is_log_append_time() {
        return;
    }
    let mut builder = BatchBuilder::new();
    builder
        .base_offset(header.base_offset)
        .compression(header.compression().expect("validated"))
        .timestamp_type(TimestampType::CreateTime);
    for record in &decoded {
        builder.push(record.clone());
    }
    // Offsets out of order or out of the batch's range are legal to read, not to build.
    let Ok(rebuilt) = builder.build() else {
        return;
    };
    let again = records::decode(&rebuilt, &DecodeLimits::default()).expect("a built batch decodes");
    assert_eq!(again, decoded, "records survive re-encoding");
}
