//! Snappy in the two shapes Kafka clients write.
//!
//! - librdkafka writes one raw snappy block (a varint of the uncompressed length, then the
//!   compressed body).
//! - The Java client (through snappy-java's `SnappyOutputStream`) and kafka-python write the
//!   xerial framing: the 8-byte magic `82 'S' 'N' 'A' 'P' 'P' 'Y' 00`, a big-endian version and
//!   minimum-compatible version (both 1), then blocks of `i32` big-endian length + raw snappy,
//!   each holding up to 32 KiB of input.
//!
//! We tell them apart by the magic, as librdkafka and snappy-java do. We write the xerial
//! framing because both Java and librdkafka read it, while older Java clients cannot read raw.
//! This is not the official snappy "framing format" (`sNaPpY`); Kafka never used that one.

use super::{Compression, CompressionError, compress_failed, corrupt, too_large};

const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic, version and minimum compatible version.
const XERIAL_HEADER_BYTES: usize = 16;
const XERIAL_VERSION: i32 = 1;
const XERIAL_COMPATIBLE_VERSION: i32 = 1;
/// snappy-java's default block size, which the Java client keeps.
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;
const BLOCK_LENGTH_BYTES: usize = 4;

pub(super) fn decompress(
    data: &[u8],
    output_bytes_max: usize,
) -> Result<Vec<u8>, CompressionError> {
    let mut output = Vec::new();
    if is_xerial(data) {
        decompress_xerial(&data[XERIAL_HEADER_BYTES..], &mut output, output_bytes_max)?;
    } else {
        decompress_raw_block(data, &mut output, output_bytes_max)?;
    }
    Ok(output)
}

fn is_xerial(data: &[u8]) -> bool {
    data.len() >= XERIAL_HEADER_BYTES && data.starts_with(&XERIAL_MAGIC)
}

/// The version fields are not checked: snappy-java itself only warns about them, and no other
/// framing version was ever released.
fn decompress_xerial(
    mut rest: &[u8],
    output: &mut Vec<u8>,
    output_bytes_max: usize,
) -> Result<(), CompressionError> {
    while !rest.is_empty() {
        // snappy-java reads streams concatenated byte for byte, so a header may recur.
        if is_xerial(rest) {
            rest = &rest[XERIAL_HEADER_BYTES..];
            continue;
        }
        let Some((length_bytes, after_length)) = rest.split_first_chunk::<BLOCK_LENGTH_BYTES>()
        else {
            return Err(corrupt(
                Compression::Snappy,
                "xerial block length is truncated",
            ));
        };
        let block_length = i32::from_be_bytes(*length_bytes);
        let block_length = usize::try_from(block_length)
            .ok()
            .filter(|&length| length <= after_length.len())
            .ok_or_else(|| {
                corrupt(
                    Compression::Snappy,
                    format!(
                        "xerial block length {block_length} with {} bytes left",
                        after_length.len()
                    ),
                )
            })?;
        let (block, after_block) = after_length.split_at(block_length);
        decompress_raw_block(block, output, output_bytes_max)?;
        rest = after_block;
    }
    Ok(())
}

/// Appends one raw block to `output`. The block states its uncompressed length up front, so the
/// bound is checked before any allocation.
fn decompress_raw_block(
    block: &[u8],
    output: &mut Vec<u8>,
    output_bytes_max: usize,
) -> Result<(), CompressionError> {
    if block.is_empty() {
        return Err(corrupt(Compression::Snappy, "empty snappy block"));
    }
    let block_output_bytes =
        snap::raw::decompress_len(block).map_err(|error| corrupt(Compression::Snappy, error))?;
    let output_bytes_left = output_bytes_max - output.len();
    if block_output_bytes > output_bytes_left {
        return Err(too_large(Compression::Snappy, output_bytes_max));
    }
    let start = output.len();
    output.resize(start + block_output_bytes, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut output[start..])
        .map_err(|error| corrupt(Compression::Snappy, error))?;
    if written != block_output_bytes {
        return Err(corrupt(
            Compression::Snappy,
            format!("block declared {block_output_bytes} bytes but held {written}"),
        ));
    }
    Ok(())
}

pub(super) fn compress(data: &[u8]) -> Result<Vec<u8>, CompressionError> {
    let mut output =
        Vec::with_capacity(XERIAL_HEADER_BYTES + snap::raw::max_compress_len(data.len()));
    output.extend_from_slice(&XERIAL_MAGIC);
    output.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
    output.extend_from_slice(&XERIAL_COMPATIBLE_VERSION.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for chunk in data.chunks(XERIAL_BLOCK_BYTES) {
        let block = encoder
            .compress_vec(chunk)
            .map_err(|error| compress_failed(Compression::Snappy, error))?;
        // A 32 KiB chunk compresses to well under 2 GiB, so the length always fits.
        let block_length = i32::try_from(block.len())
            .map_err(|_| compress_failed(Compression::Snappy, "block length overflows i32"))?;
        output.extend_from_slice(&block_length.to_be_bytes());
        output.extend_from_slice(&block);
    }
    Ok(output)
}
