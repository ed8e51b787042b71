//! Records inside v2 batches: build with `BatchBuilder`, read back with `records::decode` and
//! `records::timestamps`, and refuse every malformed shape with an error, never a panic.

use bytes::Bytes;
use proptest::prelude::*;
use tidepool_protocol::batch::{self, Compression, HEADER_BYTES};
use tidepool_protocol::compression::CompressionError;
use tidepool_protocol::records::{
    self, BatchBuilder, BuildError, DecodeLimits, Header, Record, RecordTimestamp, RecordsError,
    TimestampType,
};

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];
const CRC_AT: usize = 17;
const RECORDS_COUNT_AT: usize = 57;

fn bytes(text: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(text.as_bytes()))
}

fn header(key: &str, value: Option<&str>) -> Header {
    Header {
        key: key.to_string(),
        value: value.map(|value| Bytes::copy_from_slice(value.as_bytes())),
    }
}

/// Three records covering null keys and values, duplicate header keys and a timestamp before
/// the batch's first.
fn sample_records() -> Vec<Record> {
    vec![
        Record {
            offset: 0,
            timestamp: 1_700_000_000_000,
            key: bytes("tenant-1"),
            value: bytes(&"event ".repeat(50)),
            headers: vec![header("trace", Some("a")), header("trace", Some("b"))],
        },
        Record {
            offset: 1,
            timestamp: 1_699_999_999_000,
            key: None,
            value: bytes("no key"),
            headers: vec![header("empty", None)],
        },
        Record {
            offset: 2,
            timestamp: 1_700_000_000_900,
            key: bytes("tenant-1"),
            value: None,
            headers: vec![],
        },
    ]
}

fn build(records: &[Record], configure: impl FnOnce(&mut BatchBuilder)) -> Bytes {
    let mut builder = BatchBuilder::new();
    configure(&mut builder);
    for record in records {
        builder.push(record.clone());
    }
    builder.build().unwrap()
}

/// Rewrites a CRC-covered field and re-signs the batch, so only the records layer can object.
fn patch(batch: &[u8], at: usize, replacement: &[u8]) -> Vec<u8> {
    let mut patched = batch.to_vec();
    patched[at..at + replacement.len()].copy_from_slice(replacement);
    let crc = batch::compute_crc(&patched);
    patched[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    patched
}

/// An uncompressed batch whose records section is exactly `section`, claiming `records_count`.
fn batch_with_section(section: &[u8], records_count: i32) -> Vec<u8> {
    let template = build(&sample_records()[..1], |_| {});
    let mut raw = template[..HEADER_BYTES].to_vec();
    raw.extend_from_slice(section);
    let batch_length = (raw.len() - 12) as i32;
    raw[8..12].copy_from_slice(&batch_length.to_be_bytes());
    patch(&raw, RECORDS_COUNT_AT, &records_count.to_be_bytes())
}

fn limits() -> DecodeLimits {
    DecodeLimits::default()
}

#[test]
fn a_batch_built_with_every_codec_decodes_to_the_same_records() {
    let records = sample_records();
    for codec in CODECS {
        let batch = build(&records, |builder| {
            builder.compression(codec);
        });
        let header = batch::validate(&batch).unwrap();
        assert_eq!(header.compression(), Ok(codec));
        assert_eq!(
            records::decode(&batch, &limits()).unwrap(),
            records,
            "{codec:?}"
        );
    }
}

#[test]
fn the_builder_fills_in_the_header_from_the_records() {
    let batch = build(&sample_records(), |builder| {
        builder
            .producer(77, 3, 1_000)
            .transactional(true)
            .partition_leader_epoch(9);
    });
    let header = batch::validate(&batch).unwrap();
    assert_eq!(header.base_offset, 0);
    assert_eq!(header.records_count, 3);
    assert_eq!(header.last_offset_delta, 2);
    assert_eq!(
        header.base_timestamp, 1_700_000_000_000,
        "the first record's, as Kafka does"
    );
    assert_eq!(header.max_timestamp, 1_700_000_000_900);
    assert_eq!(
        (
            header.producer_id,
            header.producer_epoch,
            header.base_sequence
        ),
        (77, 3, 1_000)
    );
    assert_eq!(header.partition_leader_epoch, 9);
    assert!(header.is_transactional());
    assert!(!header.is_control());
    assert!(!header.is_log_append_time());
}

#[test]
fn a_default_builder_writes_a_non_idempotent_producers_batch() {
    let batch = build(&sample_records(), |_| {});
    let header = batch::validate(&batch).unwrap();
    assert_eq!(
        (
            header.producer_id,
            header.producer_epoch,
            header.base_sequence
        ),
        (-1, -1, -1)
    );
    assert_eq!(header.partition_leader_epoch, -1);
    assert_eq!(header.attributes, 0);
}

#[test]
fn offsets_are_absolute_after_the_broker_assigns_a_base_offset() {
    let mut batch = build(&sample_records(), |_| {}).to_vec();
    batch::set_base_offset(&mut batch, 5_000);
    let offsets: Vec<i64> = records::decode(&batch, &limits())
        .unwrap()
        .iter()
        .map(|record| record.offset)
        .collect();
    assert_eq!(offsets, vec![5_000, 5_001, 5_002]);
}

#[test]
fn compacted_batches_keep_their_offset_gaps() {
    let mut records = sample_records();
    records[0].offset = 100;
    records[1].offset = 140;
    records[2].offset = 141;
    let batch = build(&records, |builder| {
        builder.base_offset(100);
    });
    let header = batch::validate(&batch).unwrap();
    assert_eq!(header.last_offset_delta, 41);
    assert_eq!(records::decode(&batch, &limits()).unwrap(), records);
}

#[test]
fn log_append_time_batches_report_the_max_timestamp_for_every_record() {
    let built = build(&sample_records(), |builder| {
        builder.timestamp_type(TimestampType::LogAppendTime);
    });
    for record in records::decode(&built, &limits()).unwrap() {
        assert_eq!(record.timestamp, 1_700_000_000_900);
    }

    let mut stamped_by_broker = build(&sample_records(), |builder| {
        builder.compression(Compression::Zstd);
    })
    .to_vec();
    batch::set_log_append_time(&mut stamped_by_broker, 1_800_000_000_000);
    let timestamps: Vec<i64> = records::decode(&stamped_by_broker, &limits())
        .unwrap()
        .iter()
        .map(|record| record.timestamp)
        .collect();
    assert_eq!(timestamps, vec![1_800_000_000_000; 3]);
}

#[test]
fn duplicate_header_keys_and_null_header_values_survive_in_order() {
    let batch = build(&sample_records(), |_| {});
    let decoded = records::decode(&batch, &limits()).unwrap();
    assert_eq!(
        decoded[0].headers,
        vec![header("trace", Some("a")), header("trace", Some("b"))]
    );
    assert_eq!(decoded[1].headers, vec![header("empty", None)]);
}

#[test]
fn header_keys_that_are_not_utf8_are_replaced_as_the_java_consumer_does() {
    let batch = build(&sample_records()[..1], |_| {});
    let position = batch
        .windows(5)
        .position(|window| window == b"trace")
        .unwrap();
    let patched = patch(&batch, position, &[0xFF]);
    let decoded = records::decode(&patched, &limits()).unwrap();
    assert_eq!(decoded[0].headers[0].key, "\u{FFFD}race");
}

#[test]
fn timestamps_match_what_decode_reports_for_every_codec() {
    let mut records = sample_records();
    for record in &mut records {
        record.offset += 10;
    }
    for codec in CODECS {
        let batch = build(&records, |builder| {
            builder.compression(codec).base_offset(10);
        });
        let expected: Vec<RecordTimestamp> = records::decode(&batch, &limits())
            .unwrap()
            .iter()
            .map(|record| RecordTimestamp {
                offset: record.offset,
                timestamp: record.timestamp,
            })
            .collect();
        assert_eq!(
            records::timestamps(&batch, &limits()).unwrap(),
            expected,
            "{codec:?}"
        );
    }
}

#[test]
fn decode_checks_the_crc_before_reading_records() {
    let mut batch = build(&sample_records(), |_| {}).to_vec();
    let last = batch.len() - 1;
    batch[last] ^= 0x40;
    assert!(matches!(
        records::decode(&batch, &limits()),
        Err(RecordsError::Batch(batch::BatchError::CrcMismatch { .. }))
    ));
}

#[test]
fn a_batch_declaring_more_records_than_it_holds_is_refused() {
    let batch = build(&sample_records(), |_| {});
    let patched = patch(&batch, RECORDS_COUNT_AT, &4i32.to_be_bytes());
    assert_eq!(
        records::decode(&patched, &limits()),
        Err(RecordsError::RecordsCountMismatch {
            declared: 4,
            found: 3
        })
    );
}

#[test]
fn bytes_after_the_declared_records_are_refused() {
    let batch = build(&sample_records(), |_| {});
    let patched = patch(&batch, RECORDS_COUNT_AT, &2i32.to_be_bytes());
    assert!(matches!(
        records::decode(&patched, &limits()),
        Err(RecordsError::TrailingBytes {
            records_count: 2,
            ..
        })
    ));
}

#[test]
fn a_huge_records_count_is_refused_before_anything_is_allocated() {
    let batch = build(&sample_records(), |_| {});
    let patched = patch(&batch, RECORDS_COUNT_AT, &i32::MAX.to_be_bytes());
    assert_eq!(
        records::decode(&patched, &limits()),
        Err(RecordsError::TooManyRecords {
            records_count: i32::MAX as usize,
            records_count_max: 1_000_000
        })
    );
    // Within the limit but far beyond what the bytes can hold: found short, not allocated.
    let within_limit = patch(&batch, RECORDS_COUNT_AT, &999_999i32.to_be_bytes());
    assert!(matches!(
        records::decode(&within_limit, &limits()),
        Err(RecordsError::RecordsCountMismatch { found: 3, .. })
    ));
}

#[test]
fn a_record_whose_length_disagrees_with_its_fields_is_refused() {
    // One record: length 7, attributes, timestamp delta 0, offset delta 0, null key, null
    // value, no headers (6 bytes), plus one stray byte the length claims.
    let section = [0x0E, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00];
    assert_eq!(
        records::decode(&batch_with_section(&section, 1), &limits()),
        Err(RecordsError::RecordLengthMismatch {
            record_index: 0,
            declared: 7,
            read: 6
        })
    );
}

#[test]
fn a_key_that_runs_past_its_record_is_refused() {
    // Key length 50 inside a 6-byte record.
    let section = [0x0C, 0x00, 0x00, 0x00, 0x64, 0x01, 0x00];
    assert_eq!(
        records::decode(&batch_with_section(&section, 1), &limits()),
        Err(RecordsError::Truncated {
            record_index: 0,
            field: "key"
        })
    );
}

#[test]
fn a_malformed_varint_is_refused() {
    let section = [0x0C, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80];
    assert_eq!(
        records::decode(&batch_with_section(&section, 1), &limits()),
        Err(RecordsError::BadVarint {
            record_index: 0,
            field: "timestamp delta"
        })
    );
}

#[test]
fn a_null_header_key_and_negative_lengths_are_refused() {
    // One header whose key length is -1 (null).
    let null_key = [0x10, 0x00, 0x00, 0x00, 0x01, 0x01, 0x02, 0x01, 0x01];
    assert_eq!(
        records::decode(&batch_with_section(&null_key, 1), &limits()),
        Err(RecordsError::BadLength {
            record_index: 0,
            field: "header key",
            length: -1
        })
    );
    // A key length of -2.
    let negative_key = [0x0C, 0x00, 0x00, 0x00, 0x03, 0x01, 0x00];
    assert_eq!(
        records::decode(&batch_with_section(&negative_key, 1), &limits()),
        Err(RecordsError::BadLength {
            record_index: 0,
            field: "key",
            length: -2
        })
    );
}

#[test]
fn the_headers_limit_counts_across_the_whole_batch() {
    let mut records = sample_records();
    records[2].headers = vec![header("x", None); 3];
    let batch = build(&records, |_| {});
    let tight = DecodeLimits {
        headers_count_max: 5,
        ..limits()
    };
    assert_eq!(
        records::decode(&batch, &tight),
        Err(RecordsError::TooManyHeaders {
            headers_count_max: 5
        })
    );
    let enough = DecodeLimits {
        headers_count_max: 6,
        ..limits()
    };
    assert_eq!(records::decode(&batch, &enough).unwrap(), records);
}

#[test]
fn a_compressed_batch_that_inflates_past_the_limit_is_refused() {
    let records = vec![Record {
        offset: 0,
        timestamp: 0,
        key: None,
        value: Some(Bytes::from(vec![0u8; 4 * 1024 * 1024])),
        headers: vec![],
    }];
    let tight = DecodeLimits {
        records_bytes_max: 1024 * 1024,
        ..limits()
    };
    for codec in CODECS {
        let batch = build(&records, |builder| {
            builder.compression(codec);
        });
        assert_eq!(
            records::decode(&batch, &tight),
            Err(RecordsError::Compression(
                CompressionError::OutputTooLarge {
                    codec,
                    output_bytes_max: 1024 * 1024
                }
            )),
            "{codec:?}"
        );
    }
}

#[test]
fn the_builder_refuses_an_empty_batch_and_offsets_that_do_not_increase() {
    assert_eq!(BatchBuilder::new().build(), Err(BuildError::Empty));

    let mut records = sample_records();
    records[2].offset = 1;
    let mut builder = BatchBuilder::new();
    for record in records {
        builder.push(record);
    }
    assert_eq!(
        builder.build(),
        Err(BuildError::OffsetNotIncreasing {
            previous: 1,
            offset: 1
        })
    );

    let mut below_base = BatchBuilder::new();
    below_base.base_offset(10).push(sample_records().remove(0));
    assert_eq!(
        below_base.build(),
        Err(BuildError::OffsetOutOfRange {
            base_offset: 10,
            offset: 0
        })
    );
}

#[test]
fn append_assigns_consecutive_offsets_from_the_base_offset() {
    let mut builder = BatchBuilder::new();
    builder
        .base_offset(7)
        .append(1, None, bytes("a"), vec![])
        .append(2, None, bytes("b"), vec![]);
    assert_eq!(builder.len(), 2);
    let offsets: Vec<i64> = records::decode(&builder.build().unwrap(), &limits())
        .unwrap()
        .iter()
        .map(|record| record.offset)
        .collect();
    assert_eq!(offsets, vec![7, 8]);
}

#[test]
fn a_control_batch_keeps_its_flag_and_its_marker_record() {
    // A commit marker: key is version 0, type 1; value is version 0, coordinator epoch 4.
    let mut builder = BatchBuilder::new();
    builder
        .control(true)
        .transactional(true)
        .producer(9, 0, -1)
        .append(
            5,
            Some(Bytes::from_static(&[0, 0, 0, 1])),
            Some(Bytes::from_static(&[0, 0, 0, 0, 0, 4])),
            vec![],
        );
    let batch = builder.build().unwrap();
    assert!(batch::validate(&batch).unwrap().is_control());
    let decoded = records::decode(&batch, &limits()).unwrap();
    assert_eq!(decoded[0].key.as_deref(), Some(&[0, 0, 0, 1][..]));
}

fn any_codec() -> impl Strategy<Value = Compression> {
    proptest::sample::select(CODECS.to_vec())
}

fn any_bytes(length_max: usize) -> impl Strategy<Value = Option<Bytes>> {
    proptest::option::of(
        proptest::collection::vec(any::<u8>(), 0..length_max).prop_map(Bytes::from),
    )
}

fn any_record() -> impl Strategy<Value = (u16, i64, Option<Bytes>, Option<Bytes>, Vec<Header>)> {
    let header = ("[a-z]{0,8}", any_bytes(16)).prop_map(|(key, value)| Header { key, value });
    (
        1u16..1_000,
        -1_000_000i64..1_000_000,
        any_bytes(64),
        any_bytes(256),
        proptest::collection::vec(header, 0..4),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_records_round_trip_through_build_and_decode(
        codec in any_codec(),
        base_offset in 0i64..1 << 40,
        base_timestamp in 0i64..1 << 42,
        shapes in proptest::collection::vec(any_record(), 1..20),
    ) {
        let mut offset = base_offset;
        let records: Vec<Record> = shapes
            .into_iter()
            .map(|(gap, timestamp_delta, key, value, headers)| {
                offset += i64::from(gap);
                Record { offset, timestamp: base_timestamp + timestamp_delta, key, value, headers }
            })
            .collect();
        let batch = build(&records, |builder| {
            builder.compression(codec).base_offset(base_offset);
        });
        prop_assert_eq!(records::decode(&batch, &limits()).unwrap(), records);
    }

    #[test]
    fn any_records_section_in_a_valid_header_never_panics(
        section in proptest::collection::vec(any::<u8>(), 0..512),
        records_count in 0i32..64,
    ) {
        let batch = batch_with_section(&section, records_count);
        let tight = DecodeLimits { records_bytes_max: 4096, records_count_max: 32, headers_count_max: 64 };
        let decoded = records::decode(&batch, &tight);
        let timestamps = records::timestamps(&batch, &tight);
        prop_assert_eq!(decoded.is_ok(), timestamps.is_ok());
    }

    #[test]
    fn a_corrupted_but_re_signed_batch_never_panics(
        codec in any_codec(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut batch = build(&sample_records(), |builder| {
            builder.compression(codec);
        })
        .to_vec();
        // Corrupt only the CRC-covered part (from the attributes on), then re-sign it.
        for (index, byte) in flips {
            let at = 21 + index.index(batch.len() - 21);
            batch[at] ^= byte;
        }
        let crc = batch::compute_crc(&batch);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        let tight = DecodeLimits { records_bytes_max: 64 * 1024, records_count_max: 1_000, headers_count_max: 1_000 };
        let _ = records::decode(&batch, &tight);
        let _ = records::timestamps(&batch, &tight);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(
        garbage in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = records::decode(&garbage, &limits());
        let _ = records::timestamps(&garbage, &limits());
    }
}
