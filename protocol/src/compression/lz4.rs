//! LZ4 frames (the lz4 frame format, magic `04 22 4D 18`), as every v2-batch writer uses.
//!
//! Kafka's magic v0/v1 messages used a frame with a miscomputed header checksum (KAFKA-3160);
//! v2 batches, the only ones we read, use the correct format, so no workaround lives here.
//! We write what Java's `KafkaLZ4BlockOutputStream` writes: independent 64 KiB blocks, no block
//! checksums, no content size. Java's reader refuses linked blocks, so we must not emit them.

use std::io::Write;

use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};

use super::{Compression, CompressionError, compress_failed, read_bounded};

/// The decoder reads concatenated frames one after another and holds at most one block
/// (8 MiB for the largest legacy block size) besides the output. It takes the end of input at
/// a block boundary for the end of the frame even without the end mark, so a stream cut there
/// decodes to a prefix; inside a batch the records count check catches the missing records.
pub(super) fn decompress(
    data: &[u8],
    output_bytes_max: usize,
) -> Result<Vec<u8>, CompressionError> {
    read_bounded(Compression::Lz4, FrameDecoder::new(data), output_bytes_max)
}

pub(super) fn compress(data: &[u8]) -> Result<Vec<u8>, CompressionError> {
    let frame_info = FrameInfo::new()
        .block_size(BlockSize::Max64KB)
        .block_mode(BlockMode::Independent)
        .block_checksums(false)
        .content_checksum(false)
        .content_size(None);
    let mut encoder = FrameEncoder::with_frame_info(frame_info, Vec::new());
    encoder
        .write_all(data)
        .map_err(|error| compress_failed(Compression::Lz4, error))?;
    encoder
        .finish()
        .map_err(|error| compress_failed(Compression::Lz4, error))
}
