//! zstd frames (RFC 8878) through ruzstd, with a window bound of our own.
//!
//! ruzstd keeps the last `window` bytes of output in memory until a frame ends, and a frame
//! header may declare a window of terabytes; ruzstd only caps it for the second and later
//! frames it decodes. So we read each frame's header first, refuse a declared content size
//! beyond the output bound and a window larger than `max(output_bytes_max, WINDOW_BYTES_FLOOR)`,
//! then decode block by block, checking the output bound as we go. Skippable frames are
//! skipped; concatenated frames are concatenated output.

use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
use ruzstd::encoding::{CompressionLevel, compress_to_vec};

use super::{Compression, CompressionError, corrupt, too_large};

/// 8 MiB is the largest window zstd levels 1 to 19 choose (level 3, the usual default, uses
/// 2 MiB), so only the "ultra" levels 20 to 22 can produce frames we refuse under small limits.
const WINDOW_BYTES_FLOOR: u64 = 8 * 1024 * 1024;

const FRAME_MAGIC: u32 = 0xFD2F_B528;
const SKIPPABLE_MAGIC_FIRST: u32 = 0x184D_2A50;
const SKIPPABLE_MAGIC_LAST: u32 = 0x184D_2A5F;

pub(super) fn decompress(
    data: &[u8],
    output_bytes_max: usize,
) -> Result<Vec<u8>, CompressionError> {
    let window_bytes_max = WINDOW_BYTES_FLOOR.max(output_bytes_max as u64);
    let mut output = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some((magic_bytes, after_magic)) = rest.split_first_chunk::<4>() else {
            return Err(corrupt(Compression::Zstd, "truncated frame magic"));
        };
        let magic = u32::from_le_bytes(*magic_bytes);
        if (SKIPPABLE_MAGIC_FIRST..=SKIPPABLE_MAGIC_LAST).contains(&magic) {
            rest = skip_skippable_frame(after_magic)?;
            continue;
        }
        if magic != FRAME_MAGIC {
            return Err(corrupt(
                Compression::Zstd,
                format!("bad frame magic {magic:#010x}"),
            ));
        }
        let frame = FrameHeader::parse(after_magic)?;
        let output_bytes_left = (output_bytes_max - output.len()) as u64;
        if frame
            .content_bytes
            .is_some_and(|content_bytes| content_bytes > output_bytes_left)
        {
            return Err(too_large(Compression::Zstd, output_bytes_max));
        }
        if frame.window_bytes > window_bytes_max {
            return Err(CompressionError::WindowTooLarge {
                window_bytes: frame.window_bytes,
                window_bytes_max,
            });
        }
        decompress_frame(&mut rest, &mut output, output_bytes_max)?;
    }
    Ok(output)
}

fn skip_skippable_frame(after_magic: &[u8]) -> Result<&[u8], CompressionError> {
    let Some((length_bytes, body)) = after_magic.split_first_chunk::<4>() else {
        return Err(corrupt(Compression::Zstd, "truncated skippable frame"));
    };
    let length = u32::from_le_bytes(*length_bytes) as usize;
    body.get(length..)
        .ok_or_else(|| corrupt(Compression::Zstd, "skippable frame runs past the end"))
}

/// What a frame header (RFC 8878 section 3.1.1.1) tells us before any block is decoded.
struct FrameHeader {
    /// How much history the decoder must keep; a single-segment frame's is its content size.
    window_bytes: u64,
    /// The frame's declared output size, when the writer knew it.
    content_bytes: Option<u64>,
}

impl FrameHeader {
    /// Parses the header from the bytes after the magic number.
    fn parse(header: &[u8]) -> Result<FrameHeader, CompressionError> {
        let truncated = || corrupt(Compression::Zstd, "truncated frame header");
        let descriptor = *header.first().ok_or_else(truncated)?;
        let single_segment = descriptor & 0x20 != 0;
        let window_descriptor_bytes = if single_segment { 0 } else { 1 };
        let dictionary_id_bytes = [0, 1, 2, 4][usize::from(descriptor & 0x03)];
        let content_size_bytes = match descriptor >> 6 {
            0 if single_segment => 1,
            0 => 0,
            1 => 2,
            2 => 4,
            _ => 8,
        };
        let content_size_at = 1 + window_descriptor_bytes + dictionary_id_bytes;
        let content_size_field = header
            .get(content_size_at..content_size_at + content_size_bytes)
            .ok_or_else(truncated)?;
        let mut content_size_le = [0u8; 8];
        content_size_le[..content_size_bytes].copy_from_slice(content_size_field);
        let content_bytes = match content_size_bytes {
            0 => None,
            // The two-byte form is offset by 256 so that it does not overlap the one-byte form.
            2 => Some(u64::from_le_bytes(content_size_le) + 256),
            _ => Some(u64::from_le_bytes(content_size_le)),
        };
        let window_bytes = if single_segment {
            content_bytes.unwrap_or(0)
        } else {
            let window_descriptor = *header.get(1).ok_or_else(truncated)?;
            let exponent = u64::from(window_descriptor >> 3);
            let mantissa = u64::from(window_descriptor & 0x07);
            let window_base = 1u64 << (10 + exponent);
            window_base + (window_base / 8) * mantissa
        };
        Ok(FrameHeader {
            window_bytes,
            content_bytes,
        })
    }
}

/// Decodes one frame from the front of `rest`, advancing it past the frame. A fresh decoder per
/// frame, because ruzstd reserves a reused decoder's whole window up front.
fn decompress_frame(
    rest: &mut &[u8],
    output: &mut Vec<u8>,
    output_bytes_max: usize,
) -> Result<(), CompressionError> {
    let mut decoder = FrameDecoder::new();
    decoder
        .init(&mut *rest)
        .map_err(|error| corrupt(Compression::Zstd, error))?;
    loop {
        // One block at a time: a block is at most 128 KiB, so we overshoot the bound by little.
        decoder
            .decode_blocks(&mut *rest, BlockDecodingStrategy::UptoBlocks(1))
            .map_err(|error| corrupt(Compression::Zstd, error))?;
        if decoder.can_collect() > output_bytes_max - output.len() {
            return Err(too_large(Compression::Zstd, output_bytes_max));
        }
        decoder
            .collect_to_writer(&mut *output)
            .map_err(|error| corrupt(Compression::Zstd, error))?;
        if decoder.is_finished() {
            break;
        }
    }
    match (
        decoder.get_checksum_from_data(),
        decoder.get_calculated_checksum(),
    ) {
        (Some(stored), Some(computed)) if stored != computed => Err(corrupt(
            Compression::Zstd,
            format!("content checksum {stored:#010x}, computed {computed:#010x}"),
        )),
        _ => Ok(()),
    }
}

/// ruzstd's fastest level is the only one it implements besides storing uncompressed.
pub(super) fn compress(data: &[u8]) -> Vec<u8> {
    compress_to_vec(data, CompressionLevel::Fastest)
}
