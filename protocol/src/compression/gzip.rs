//! gzip (RFC 1952) through flate2's pure-Rust backend.
//!
//! We read concatenated members, as Java's `GZIPInputStream` does, because the format allows a
//! writer to flush a member and start another; Kafka's own writers emit exactly one.

use std::io::Write;

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use super::{Compression, CompressionError, compress_failed, read_bounded};

pub(super) fn decompress(
    data: &[u8],
    output_bytes_max: usize,
) -> Result<Vec<u8>, CompressionError> {
    read_bounded(
        Compression::Gzip,
        MultiGzDecoder::new(data),
        output_bytes_max,
    )
}

/// The default level (6) is what Kafka's `compression.gzip.level=-1` means.
pub(super) fn compress(data: &[u8]) -> Result<Vec<u8>, CompressionError> {
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(data)
        .map_err(|error| compress_failed(Compression::Gzip, error))?;
    encoder
        .finish()
        .map_err(|error| compress_failed(Compression::Gzip, error))
}
