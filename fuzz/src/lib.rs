//! Helpers shared by the fuzz targets in `fuzz_targets/`.

use tidepool_protocol::batch::{self, HEADER_BYTES, LOG_OVERHEAD, MAGIC_V2};

/// Repairs the headers of the batches in `set` as `fixes` asks, walking them by their length
/// fields: bit 0 sets an impossible length field to the bytes left, bit 1 the magic to 2,
/// bit 2 the CRC-32C to the batch's. Random bytes almost never carry a valid CRC, so without
/// this a fuzzer would never get past the header checks.
pub fn repair_batches(set: &mut [u8], fixes: u8) {
    let mut at = 0;
    while set.len() - at >= HEADER_BYTES {
        let rest = &mut set[at..];
        if fixes & 1 != 0 && batch_bytes(rest).is_none() {
            let length = i32::try_from(rest.len() - LOG_OVERHEAD).unwrap_or(i32::MAX);
            rest[8..12].copy_from_slice(&length.to_be_bytes());
        }
        if fixes & 2 != 0 {
            rest[16] = MAGIC_V2 as u8;
        }
        let Some(total) = batch_bytes(rest) else {
            return;
        };
        if fixes & 4 != 0 {
            let crc = batch::compute_crc(&rest[..total]);
            rest[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        at += total;
    }
}

/// The size of the batch at the start of `rest` by its length field, if it is a possible one
/// and fits.
fn batch_bytes(rest: &[u8]) -> Option<usize> {
    let declared = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
    usize::try_from(declared)
        .ok()
        .filter(|length| *length >= HEADER_BYTES - LOG_OVERHEAD)
        .map(|length| length + LOG_OVERHEAD)
        .filter(|total| *total <= rest.len())
}
