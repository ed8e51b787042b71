//! The four batch codecs: round trips, the shapes other clients write and read, bounds on
//! output, and garbage that must give an error rather than a panic.

use proptest::prelude::*;
use tidepool_protocol::batch::Compression;
use tidepool_protocol::compression::{CompressionError, compress, decompress};

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];
const COMPRESSED_CODECS: [Compression; 4] = [
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// Deterministic bytes that do not compress (xorshift), so blocks hold little repetition.
fn noise(length: usize, mut state: u64) -> Vec<u8> {
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn text(length: usize) -> Vec<u8> {
    b"the tide comes in, the tide goes out; "
        .iter()
        .copied()
        .cycle()
        .take(length)
        .collect()
}

#[test]
fn every_codec_round_trips_empty_small_large_and_incompressible_input() {
    let inputs = [
        Vec::new(),
        b"x".to_vec(),
        text(1_000),
        text(300 * 1024),
        noise(200 * 1024, 7),
    ];
    for codec in CODECS {
        for input in &inputs {
            let compressed = compress(codec, input).unwrap();
            let restored = decompress(codec, &compressed, input.len()).unwrap();
            assert_eq!(&restored, input, "{codec:?}, {} bytes", input.len());
        }
    }
}

#[test]
fn compression_shrinks_repetitive_records() {
    let input = text(64 * 1024);
    for codec in COMPRESSED_CODECS {
        let compressed = compress(codec, &input).unwrap();
        assert!(
            compressed.len() < input.len() / 4,
            "{codec:?} took {} bytes",
            compressed.len()
        );
    }
}

#[test]
fn output_exactly_at_the_limit_is_accepted_and_one_byte_over_is_refused() {
    let input = text(100_000);
    for codec in CODECS {
        let compressed = compress(codec, &input).unwrap();
        assert_eq!(decompress(codec, &compressed, input.len()).unwrap(), input);
        assert_eq!(
            decompress(codec, &compressed, input.len() - 1),
            Err(CompressionError::OutputTooLarge {
                codec,
                output_bytes_max: input.len() - 1
            }),
            "{codec:?}"
        );
    }
}

#[test]
fn a_decompression_bomb_is_refused_with_an_error_not_inflated() {
    let zeros = vec![0u8; 16 * 1024 * 1024];
    for codec in COMPRESSED_CODECS {
        let bomb = compress(codec, &zeros).unwrap();
        assert!(
            bomb.len() < zeros.len() / 20,
            "{codec:?} bomb is {} bytes",
            bomb.len()
        );
        let result = decompress(codec, &bomb, 1024 * 1024);
        assert_eq!(
            result,
            Err(CompressionError::OutputTooLarge {
                codec,
                output_bytes_max: 1024 * 1024
            }),
            "{codec:?}"
        );
    }
}

#[test]
fn a_raw_snappy_block_as_librdkafka_writes_it_decodes() {
    let input = text(10_000);
    let raw = snap::raw::Encoder::new().compress_vec(&input).unwrap();
    assert_eq!(
        decompress(Compression::Snappy, &raw, input.len()).unwrap(),
        input
    );
}

#[test]
fn a_raw_snappy_block_that_claims_more_than_the_limit_is_refused_before_allocating() {
    // A varint claiming about 4 GiB followed by nothing: the claim alone must be refused.
    let claim = [0xFF, 0xFF, 0xFF, 0xFF, 0x0F];
    assert_eq!(
        decompress(Compression::Snappy, &claim, 1024),
        Err(CompressionError::OutputTooLarge {
            codec: Compression::Snappy,
            output_bytes_max: 1024
        })
    );
}

#[test]
fn snappy_is_written_in_xerial_framing_with_32_kib_blocks_like_the_java_client() {
    let input = text(100 * 1024);
    let framed = compress(Compression::Snappy, &input).unwrap();
    assert_eq!(&framed[..8], b"\x82SNAPPY\x00");
    assert_eq!(
        &framed[8..16],
        &[0, 0, 0, 1, 0, 0, 0, 1],
        "version 1, compatible with 1"
    );
    let mut position = 16;
    let mut block_inputs = Vec::new();
    while position < framed.len() {
        let length = i32::from_be_bytes(framed[position..position + 4].try_into().unwrap());
        let block = &framed[position + 4..position + 4 + length as usize];
        block_inputs.push(snap::raw::decompress_len(block).unwrap());
        position += 4 + length as usize;
    }
    assert_eq!(
        block_inputs,
        vec![32 * 1024, 32 * 1024, 32 * 1024, 4 * 1024]
    );
}

#[test]
fn concatenated_xerial_streams_decode_as_one() {
    let first = compress(Compression::Snappy, b"first half, ").unwrap();
    let second = compress(Compression::Snappy, b"second half").unwrap();
    let both = [first, second].concat();
    assert_eq!(
        decompress(Compression::Snappy, &both, 100).unwrap(),
        b"first half, second half"
    );
}

#[test]
fn a_xerial_block_length_past_the_end_is_corrupt() {
    let mut framed = compress(Compression::Snappy, &text(100)).unwrap();
    framed[16..20].copy_from_slice(&1_000i32.to_be_bytes());
    assert!(matches!(
        decompress(Compression::Snappy, &framed, 1_000),
        Err(CompressionError::Corrupt { .. })
    ));
}

#[test]
fn lz4_is_written_as_a_standard_frame_with_independent_64_kib_blocks() {
    let frame = compress(Compression::Lz4, &text(1_000)).unwrap();
    assert_eq!(&frame[..4], &[0x04, 0x22, 0x4D, 0x18], "lz4 frame magic");
    let flags = frame[4];
    assert_eq!(flags >> 6, 0b01, "frame version 1");
    assert_ne!(
        flags & 0x20,
        0,
        "independent blocks: Java's reader refuses linked ones"
    );
    assert_eq!(flags & 0x10, 0, "no block checksums");
    assert_eq!(flags & 0x08, 0, "no content size");
    assert_eq!(frame[5], 0x40, "64 KiB blocks");
}

#[test]
fn gzip_reads_concatenated_members() {
    let first = compress(Compression::Gzip, b"one ").unwrap();
    let second = compress(Compression::Gzip, b"two").unwrap();
    let both = [first, second].concat();
    assert_eq!(
        decompress(Compression::Gzip, &both, 100).unwrap(),
        b"one two"
    );
}

#[test]
fn a_zstd_frame_declaring_a_huge_window_is_refused_before_decoding() {
    // Magic, a descriptor without single-segment, then a window descriptor of 2^40 bytes.
    let frame = [0x28, 0xB5, 0x2F, 0xFD, 0x00, 30 << 3, 0x00, 0x00, 0x00];
    assert_eq!(
        decompress(Compression::Zstd, &frame, 1024 * 1024),
        Err(CompressionError::WindowTooLarge {
            window_bytes: 1 << 40,
            window_bytes_max: 8 * 1024 * 1024
        })
    );
}

#[test]
fn a_zstd_frame_declaring_more_content_than_the_limit_is_refused_before_decoding() {
    // Magic, a single-segment descriptor with an 8-byte content size of 2^40, then no blocks.
    let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD, 0xE0];
    frame.extend_from_slice(&(1u64 << 40).to_le_bytes());
    assert_eq!(
        decompress(Compression::Zstd, &frame, 1024 * 1024),
        Err(CompressionError::OutputTooLarge {
            codec: Compression::Zstd,
            output_bytes_max: 1024 * 1024
        })
    );
}

#[test]
fn a_hand_made_zstd_bomb_of_run_length_blocks_stops_at_the_limit() {
    // An 8 MiB window (the largest we accept under small limits) and a thousand run-length
    // blocks of 128 KiB each: 125 MiB of output from 4 KB.
    let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, 13 << 3];
    let rle_block: u32 = (128 * 1024) << 3 | 1 << 1;
    for index in 0..1000 {
        let last = u32::from(index == 999);
        frame.extend_from_slice(&(rle_block | last).to_le_bytes()[..3]);
        frame.push(0x41);
    }
    assert_eq!(
        decompress(Compression::Zstd, &frame, 1024 * 1024),
        Err(CompressionError::OutputTooLarge {
            codec: Compression::Zstd,
            output_bytes_max: 1024 * 1024
        })
    );
    let output = decompress(Compression::Zstd, &frame, 1000 * 128 * 1024).unwrap();
    assert!(output.len() == 1000 * 128 * 1024 && output.iter().all(|&byte| byte == 0x41));
}

#[test]
fn zstd_skips_skippable_frames_and_joins_concatenated_frames() {
    let skippable = [0x50, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 9, 9, 9];
    let first = compress(Compression::Zstd, b"left ").unwrap();
    let second = compress(Compression::Zstd, b"right").unwrap();
    let stream = [&skippable[..], &first, &skippable, &second].concat();
    assert_eq!(
        decompress(Compression::Zstd, &stream, 100).unwrap(),
        b"left right"
    );
}

#[test]
fn empty_input_is_corrupt_for_every_compressed_codec() {
    for codec in COMPRESSED_CODECS {
        assert!(
            matches!(
                decompress(codec, &[], 100),
                Err(CompressionError::Corrupt { .. })
            ),
            "{codec:?}"
        );
    }
}

/// lz4_flex treats the end of input at a block boundary as the end of the frame, end mark or
/// not, so a cut there yields a prefix; the records layer then finds records missing.
#[test]
fn a_truncated_stream_is_an_error_or_for_lz4_at_a_block_boundary_a_prefix() {
    let input = text(50_000);
    for codec in COMPRESSED_CODECS {
        let compressed = compress(codec, &input).unwrap();
        for cut in [1, compressed.len() / 2, compressed.len() - 1] {
            match decompress(codec, &compressed[..cut], input.len()) {
                Err(_) => {}
                Ok(output) => assert!(
                    codec == Compression::Lz4 && input.starts_with(&output),
                    "{codec:?} cut at {cut} gave {} bytes",
                    output.len()
                ),
            }
        }
    }
}

/// Valid magic numbers and headers, so garbage reaches the decoders' inner loops.
fn codec_prefix(codec: Compression) -> &'static [u8] {
    match codec {
        Compression::None => b"",
        Compression::Gzip => &[0x1F, 0x8B, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03],
        Compression::Snappy => b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01",
        Compression::Lz4 => &[0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x82],
        Compression::Zstd => &[0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x58],
    }
}

fn any_codec() -> impl Strategy<Value = Compression> {
    proptest::sample::select(CODECS.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_round_trip_through_every_codec(
        codec in any_codec(),
        input in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let compressed = compress(codec, &input).unwrap();
        prop_assert_eq!(decompress(codec, &compressed, input.len()).unwrap(), input);
    }

    #[test]
    fn garbage_never_panics_and_never_passes_the_limit(
        codec in any_codec(),
        with_prefix: bool,
        garbage in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let input = if with_prefix { [codec_prefix(codec), &garbage].concat() } else { garbage };
        if let Ok(output) = decompress(codec, &input, 64 * 1024) {
            prop_assert!(output.len() <= 64 * 1024);
        }
    }

    #[test]
    fn a_corrupted_stream_never_panics(
        codec in any_codec(),
        input in proptest::collection::vec(any::<u8>(), 1..2048),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut compressed = compress(codec, &input).unwrap();
        for (index, byte) in flips {
            let at = index.index(compressed.len());
            compressed[at] ^= byte;
        }
        if let Ok(output) = decompress(codec, &compressed, 64 * 1024) {
            prop_assert!(output.len() <= 64 * 1024);
        }
    }
}
