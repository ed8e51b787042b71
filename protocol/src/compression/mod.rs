//! The four codecs Kafka uses inside v2 record batches, all pure Rust, with bounded output.
//!
//! A batch's attributes name its codec ([`Compression`]); everything after the 61-byte header is
//! then one compressed stream holding the records. This module turns that stream back into
//! record bytes and produces streams that librdkafka, the Java client and Kafka itself read.
//!
//! # Layout
//! - `gzip`: RFC 1952 members through `flate2` (miniz_oxide backend).
//! - `snappy`: raw snappy (what librdkafka writes) and the xerial framing (what the Java client
//!   and kafka-python write); we write xerial framing because every client reads it.
//! - `lz4`: the standard LZ4 frame format, independent 64 KiB blocks, as Kafka's own
//!   `KafkaLZ4BlockOutputStream` writes it.
//! - `zstd`: zstd frames through `ruzstd`, with a window bound of our own (see `zstd.rs`).
//!
//! # Bounds
//! Every decompressor stops once the output would pass `output_bytes_max` and returns
//! [`CompressionError::OutputTooLarge`]: a few kilobytes of wire bytes can claim gigabytes of
//! output, and a broker must answer such a batch with an error code, not with its memory.
//! The transient memory is the output plus, for lz4, one block (at most 8 MiB) and, for zstd,
//! one window (at most `max(output_bytes_max, 8 MiB)`).
//!
//! ```
//! use tidepool_protocol::batch::Compression;
//! use tidepool_protocol::compression::{compress, decompress};
//!
//! let compressed = compress(Compression::Zstd, b"tide tide tide tide").unwrap();
//! let restored = decompress(Compression::Zstd, &compressed, 1024).unwrap();
//! assert_eq!(restored, b"tide tide tide tide");
//! ```

mod gzip;
mod lz4;
mod snappy;
mod zstd;

use std::io::Read;

use thiserror::Error;

pub use crate::batch::Compression;

/// Why a compressed stream could not be turned into bytes, or bytes into a stream.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CompressionError {
    /// The stream decompresses to more than the caller allowed: a decompression bomb, or a batch
    /// bigger than this broker accepts.
    #[error("{codec:?} output exceeds the limit of {output_bytes_max} bytes")]
    OutputTooLarge {
        codec: Compression,
        output_bytes_max: usize,
    },
    /// A zstd frame asks for a history window larger than we are willing to hold.
    #[error("zstd frame window of {window_bytes} bytes exceeds the limit of {window_bytes_max}")]
    WindowTooLarge {
        window_bytes: u64,
        window_bytes_max: u64,
    },
    /// The stream is not valid for its codec. `reason` comes from the codec library.
    #[error("{codec:?} stream is corrupt: {reason}")]
    Corrupt { codec: Compression, reason: String },
    /// The codec library refused to compress; not expected for in-memory data.
    #[error("{codec:?} compression failed: {reason}")]
    CompressFailed { codec: Compression, reason: String },
}

/// Decompresses one batch's records section, refusing output beyond `output_bytes_max` bytes.
///
/// `Compression::None` copies the input (after the same bound check), so callers need not
/// special-case uncompressed batches.
pub fn decompress(
    codec: Compression,
    data: &[u8],
    output_bytes_max: usize,
) -> Result<Vec<u8>, CompressionError> {
    // Every codec frames even empty input with a header, so empty input is never a stream.
    if data.is_empty() && codec != Compression::None {
        return Err(corrupt(codec, "empty input"));
    }
    match codec {
        Compression::None => {
            if data.len() > output_bytes_max {
                return Err(too_large(codec, output_bytes_max));
            }
            Ok(data.to_vec())
        }
        Compression::Gzip => gzip::decompress(data, output_bytes_max),
        Compression::Snappy => snappy::decompress(data, output_bytes_max),
        Compression::Lz4 => lz4::decompress(data, output_bytes_max),
        Compression::Zstd => zstd::decompress(data, output_bytes_max),
    }
}

/// Compresses `data` the way Kafka clients do for `codec`: gzip at the default level, snappy in
/// xerial framing, lz4 frames with independent 64 KiB blocks, zstd at ruzstd's fastest level.
pub fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, CompressionError> {
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => gzip::compress(data),
        Compression::Snappy => snappy::compress(data),
        Compression::Lz4 => lz4::compress(data),
        Compression::Zstd => Ok(zstd::compress(data)),
    }
}

/// Drains a streaming decoder into memory, reading at most one byte past the limit so a bomb
/// is detected without being inflated.
fn read_bounded(
    codec: Compression,
    reader: impl Read,
    output_bytes_max: usize,
) -> Result<Vec<u8>, CompressionError> {
    let read_bytes_max = (output_bytes_max as u64).saturating_add(1);
    let mut output = Vec::new();
    reader
        .take(read_bytes_max)
        .read_to_end(&mut output)
        .map_err(|error| corrupt(codec, error))?;
    if output.len() > output_bytes_max {
        return Err(too_large(codec, output_bytes_max));
    }
    Ok(output)
}

fn corrupt(codec: Compression, reason: impl std::fmt::Display) -> CompressionError {
    CompressionError::Corrupt {
        codec,
        reason: reason.to_string(),
    }
}

fn too_large(codec: Compression, output_bytes_max: usize) -> CompressionError {
    CompressionError::OutputTooLarge {
        codec,
        output_bytes_max,
    }
}

fn compress_failed(codec: Compression, reason: impl std::fmt::Display) -> CompressionError {
    CompressionError::CompressFailed {
        codec,
        reason: reason.to_string(),
    }
}
