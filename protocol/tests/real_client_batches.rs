//! Known answers from clients nobody here wrote: batches produced by kafka-python's own batch
//! builder and by librdkafka (through librdkafka's mock cluster), one per codec, stored as hex
//! under `tests/fixtures/` by `tests/fixtures/make_fixtures.py`. Both wrote the same records,
//! listed in `expected_records` as in the script's `RECORDS`.

use bytes::Bytes;
use tidepool_protocol::batch::{self, Compression, HEADER_BYTES};
use tidepool_protocol::records::{
    self, BatchBuilder, DecodeLimits, Header, Record, RecordTimestamp,
};

const CODECS: [(&str, Compression); 5] = [
    ("none", Compression::None),
    ("gzip", Compression::Gzip),
    ("snappy", Compression::Snappy),
    ("lz4", Compression::Lz4),
    ("zstd", Compression::Zstd),
];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    let digits: Vec<u8> = text
        .bytes()
        .filter(|byte| !byte.is_ascii_whitespace())
        .collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn record(
    offset: i64,
    timestamp: i64,
    key: Option<&[u8]>,
    value: Option<Vec<u8>>,
    headers: &[(&str, Option<&[u8]>)],
) -> Record {
    Record {
        offset,
        timestamp,
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::from),
        headers: headers
            .iter()
            .map(|(key, value)| Header {
                key: key.to_string(),
                value: value.map(Bytes::copy_from_slice),
            })
            .collect(),
    }
}

fn expected_records() -> Vec<Record> {
    vec![
        record(
            0,
            1_700_000_000_000,
            Some(b"key-0"),
            Some(b"value-0 ".repeat(40)),
            &[("trace", Some(b"a")), ("trace", Some(b"b"))],
        ),
        record(
            1,
            1_700_000_000_250,
            None,
            Some(b"no key ".repeat(40)),
            &[("empty", None)],
        ),
        record(2, 1_699_999_999_000, Some(b"key-2"), None, &[]),
        record(
            3,
            1_700_000_000_500,
            Some(b"key-3"),
            Some(vec![b'x'; 1000]),
            &[("binary", Some(&[0, 1, 2, 3, 4, 5, 6, 7]))],
        ),
    ]
}

fn assert_client_batches_decode(client: &str) {
    for (codec_name, codec) in CODECS {
        let name = format!("{client}-{codec_name}");
        let batch = fixture(&name);
        let header = batch::validate(&batch).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(
            header.compression(),
            Ok(codec),
            "{name} is really compressed"
        );
        assert_eq!(header.records_count, 4, "{name}");
        assert_eq!(header.max_timestamp, 1_700_000_000_500, "{name}");

        let decoded = records::decode(&batch, &DecodeLimits::default())
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(decoded, expected_records(), "{name}");

        let timestamps = records::timestamps(&batch, &DecodeLimits::default()).unwrap();
        let expected_timestamps: Vec<RecordTimestamp> = expected_records()
            .iter()
            .map(|record| RecordTimestamp {
                offset: record.offset,
                timestamp: record.timestamp,
            })
            .collect();
        assert_eq!(timestamps, expected_timestamps, "{name}");
    }
}

#[test]
fn batches_written_by_kafka_python_decode_for_every_codec() {
    assert_client_batches_decode("kafka-python");
}

#[test]
fn batches_written_by_librdkafka_decode_for_every_codec() {
    assert_client_batches_decode("librdkafka");
}

#[test]
fn kafka_python_frames_snappy_like_java_and_librdkafka_writes_it_raw() {
    let framed = fixture("kafka-python-snappy");
    assert!(framed[HEADER_BYTES..].starts_with(b"\x82SNAPPY\x00"));
    let raw = fixture("librdkafka-snappy");
    assert!(!raw[HEADER_BYTES..].starts_with(b"\x82SNAPPY\x00"));
}

#[test]
fn producer_state_from_both_clients_is_read_from_the_header() {
    let kafka_python = batch::validate(&fixture("kafka-python-gzip")).unwrap();
    assert_eq!(
        (
            kafka_python.producer_id,
            kafka_python.producer_epoch,
            kafka_python.base_sequence
        ),
        (1234, 5, 42)
    );
    // librdkafka was idempotent against the mock cluster, which chose the producer id.
    let librdkafka = batch::validate(&fixture("librdkafka-gzip")).unwrap();
    assert!(librdkafka.has_producer_id());
    assert_eq!(
        (librdkafka.producer_epoch, librdkafka.base_sequence),
        (0, 0)
    );
}

#[test]
fn our_uncompressed_records_are_byte_identical_to_both_clients() {
    let mut builder = BatchBuilder::new();
    for record in expected_records() {
        builder.push(record);
    }
    let ours = builder.build().unwrap();
    for client in ["kafka-python", "librdkafka"] {
        let theirs = fixture(&format!("{client}-none"));
        assert_eq!(&ours[HEADER_BYTES..], &theirs[HEADER_BYTES..], "{client}");
        // Same fields from last_offset_delta through max_timestamp too.
        assert_eq!(&ours[23..43], &theirs[23..43], "{client}");
    }
}

/// The other direction: kafka-python and librdkafka read what `BatchBuilder` writes, for every
/// codec (our xerial snappy, lz4_flex frames, ruzstd output). Needs Python with
/// confluent-kafka, kafka-python and its codec extras, so it runs only when `TIDEPOOL_PYTHON`
/// names that interpreter (`.ci/run` sets it to the project venv).
#[test]
fn kafka_python_and_librdkafka_read_batches_we_build_for_every_codec() {
    let Some(python) = std::env::var_os("TIDEPOOL_PYTHON") else {
        eprintln!(
            "skipped: set TIDEPOOL_PYTHON=.venv/bin/python to run real clients on our batches"
        );
        return;
    };
    let directory =
        std::env::temp_dir().join(format!("tidepool-our-batches-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    for (codec_name, codec) in CODECS {
        let mut builder = BatchBuilder::new();
        builder.compression(codec);
        for record in expected_records() {
            builder.push(record);
        }
        let batch = builder.build().unwrap();
        let hex: String = batch.iter().map(|byte| format!("{byte:02x}")).collect();
        std::fs::write(directory.join(format!("ours-{codec_name}.hex")), hex).unwrap();
    }
    let script = format!(
        "{}/tests/fixtures/read_with_clients.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let output = std::process::Command::new(python)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg(script)
        .arg(&directory)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&directory).unwrap();
    assert!(
        output.status.success(),
        "real clients could not read our batches:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
