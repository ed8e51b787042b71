//! Kafka's variable-length integers: zigzag-encoded, then base-128 little-endian groups with a
//! continuation bit (protobuf's `sint32`/`sint64`).
//!
//! We are stricter than the Java client on one point: Java silently drops the unused high bits
//! of a varint's last byte, we call such a varint malformed. No real writer sets them.

/// The longest `i32` varint: 5 groups of 7 bits.
pub(crate) const VARINT_BYTES_MAX: usize = 5;
/// The longest `i64` varint: 10 groups of 7 bits.
pub(crate) const VARLONG_BYTES_MAX: usize = 10;

/// Reads a zigzag varint from the front of `bytes`: the value and the bytes it took, or `None`
/// when it runs past the end, is longer than 5 bytes, or overflows 32 bits.
pub(crate) fn read_varint(bytes: &[u8]) -> Option<(i32, usize)> {
    let (raw, length) = read_unsigned(bytes, VARINT_BYTES_MAX)?;
    let raw = u32::try_from(raw).ok()?;
    Some((((raw >> 1) as i32) ^ -((raw & 1) as i32), length))
}

/// Reads a zigzag varlong; as [`read_varint`] but up to 10 bytes and 64 bits.
pub(crate) fn read_varlong(bytes: &[u8]) -> Option<(i64, usize)> {
    let (raw, length) = read_unsigned(bytes, VARLONG_BYTES_MAX)?;
    Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), length))
}

fn read_unsigned(bytes: &[u8], length_max: usize) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (index, &byte) in bytes.iter().take(length_max).enumerate() {
        let shift = 7 * index as u32;
        let group = u64::from(byte & 0x7F);
        // The tenth group has room for one bit only; more would silently wrap.
        if shift == 63 && group > 1 {
            return None;
        }
        value |= group << shift;
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

pub(crate) fn write_varint(value: i32, output: &mut Vec<u8>) {
    write_unsigned(u64::from(((value << 1) ^ (value >> 31)) as u32), output);
}

pub(crate) fn write_varlong(value: i64, output: &mut Vec<u8>) {
    write_unsigned(((value << 1) ^ (value >> 63)) as u64, output);
}

fn write_unsigned(mut value: u64, output: &mut Vec<u8>) {
    while value >= 0x80 {
        output.push((value as u8 & 0x7F) | 0x80);
        value >>= 7;
    }
    output.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_values_match_kafkas_zigzag_examples() {
        for (value, expected) in [
            (0, vec![0x00]),
            (-1, vec![0x01]),
            (1, vec![0x02]),
            (-64, vec![0x7F]),
            (64, vec![0x80, 0x01]),
        ] {
            let mut bytes = Vec::new();
            write_varint(value, &mut bytes);
            assert_eq!(bytes, expected, "varint {value}");
        }
    }

    #[test]
    fn a_varint_that_never_ends_or_overflows_is_malformed() {
        assert_eq!(read_varint(&[0x80, 0x80]), None, "runs past the end");
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
            None,
            "six bytes"
        );
        assert_eq!(
            read_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0x1F]),
            None,
            "33 bits"
        );
        assert_eq!(
            read_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
            Some((i32::MIN, 5))
        );
        let eleven_bytes = [0x80; 10].iter().copied().chain([0x00]).collect::<Vec<_>>();
        assert_eq!(read_varlong(&eleven_bytes), None);
        let mut too_wide = vec![0xFF; 9];
        too_wide.push(0x02);
        assert_eq!(read_varlong(&too_wide), None, "65 bits");
    }

    proptest! {
        #[test]
        fn every_i32_round_trips(value: i32) {
            let mut bytes = Vec::new();
            write_varint(value, &mut bytes);
            prop_assert!(bytes.len() <= VARINT_BYTES_MAX);
            prop_assert_eq!(read_varint(&bytes), Some((value, bytes.len())));
        }

        #[test]
        fn every_i64_round_trips(value: i64) {
            let mut bytes = Vec::new();
            write_varlong(value, &mut bytes);
            prop_assert!(bytes.len() <= VARLONG_BYTES_MAX);
            prop_assert_eq!(read_varlong(&bytes), Some((value, bytes.len())));
        }
    }
}
