//! The walk: reads a body in the order the crate will, building nothing, and stops at the first
//! length or count that the bytes left cannot back.

use super::GuardError;
use super::schema::{Kind, Message, Struct};

/// The crate reads varints into a u32, so at most five bytes.
const VARINT_BYTES_MAX: usize = 5;

/// Walks `body` as `message` at `version`; the version must be one the message supports.
pub(crate) fn walk_message(message: &Message, version: i16, body: &[u8]) -> Result<(), GuardError> {
    let mut walker = Walker {
        body,
        position: 0,
        version,
        flexible: message.flexible.contains(version),
    };
    walker.walk_struct(message.body)
}

/// How a classic (non-flexible) length is written.
#[derive(Clone, Copy)]
enum ClassicLength {
    Int16,
    Int32,
}

struct Walker<'body> {
    body: &'body [u8],
    position: usize,
    version: i16,
    /// Flexible versions use compact lengths and end every struct with tagged fields.
    flexible: bool,
}

impl Walker<'_> {
    fn walk_struct(&mut self, schema: &Struct) -> Result<(), GuardError> {
        for field in schema.fields {
            if field.versions.contains(self.version) {
                self.walk_kind(&field.kind)?;
            }
        }
        if self.flexible {
            self.walk_tagged_fields(schema)?;
        }
        Ok(())
    }

    fn walk_kind(&mut self, kind: &Kind) -> Result<(), GuardError> {
        match kind {
            Kind::Bool | Kind::Int8 => self.skip(1),
            Kind::Int16 | Kind::UInt16 => self.skip(2),
            Kind::Int32 => self.skip(4),
            Kind::Int64 | Kind::Float64 => self.skip(8),
            Kind::Uuid => self.skip(16),
            Kind::String { .. } => self.walk_sized(ClassicLength::Int16),
            Kind::Bytes { .. } => self.walk_sized(ClassicLength::Int32),
            Kind::Array { element, .. } => self.walk_array(element),
            Kind::Struct(schema) => self.walk_struct(schema),
            Kind::Optional(value) => {
                // The crate reads the value only when the marker is exactly 1.
                let [marker] = self.read_array::<1>()?;
                if marker == 1 {
                    self.walk_kind(value)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// A string or bytes: a length, then that many bytes.
    fn walk_sized(&mut self, classic: ClassicLength) -> Result<(), GuardError> {
        match self.read_length(classic)? {
            Some(length) => self.skip(length),
            None => Ok(()),
        }
    }

    fn walk_array(&mut self, element: &Kind) -> Result<(), GuardError> {
        let Some(count) = self.read_length(ClassicLength::Int32)? else {
            return Ok(());
        };
        // The crate calls `Vec::with_capacity(count)` before it reads an element. Every element
        // occupies at least one byte (a test checks this over all tables), so a count above the
        // bytes left can never decode; refusing it bounds the allocation by the body's size.
        let remaining = self.remaining();
        if count > remaining {
            let count = u64::try_from(count).unwrap_or(u64::MAX);
            return Err(GuardError::ArrayTooLong { count, remaining });
        }
        for _ in 0..count {
            self.walk_kind(element)?;
        }
        Ok(())
    }

    fn walk_tagged_fields(&mut self, schema: &Struct) -> Result<(), GuardError> {
        let count = to_usize(self.read_unsigned_varint()?);
        // Each tagged field takes at least two bytes (its tag and its size), so a count above
        // the bytes left is a lie; refusing it keeps the loop below bounded by the body.
        let remaining = self.remaining();
        if count > remaining {
            let count = u64::try_from(count).unwrap_or(u64::MAX);
            return Err(GuardError::TooManyTaggedFields { count, remaining });
        }
        for _ in 0..count {
            let tag = self.read_unsigned_varint()?;
            let size = to_usize(self.read_unsigned_varint()?);
            match schema.known_tag(tag) {
                // The crate decodes a known tag's value from the body itself and ignores its
                // size, so a lying size cannot hide an array count from us.
                Some(known) if known.versions.contains(self.version) => {
                    self.walk_kind(&known.kind)?;
                }
                Some(_) => {
                    return Err(GuardError::Malformed(
                        "tagged field not valid in this version",
                    ));
                }
                None => self.skip(size)?,
            }
        }
        Ok(())
    }

    /// A length or count; `None` is null. The crate treats -1 (classic) and 0 (compact) as
    /// null and refuses other negative lengths; letting those through as null is harmless.
    fn read_length(&mut self, classic: ClassicLength) -> Result<Option<usize>, GuardError> {
        if self.flexible {
            let length_plus_one = self.read_unsigned_varint()?;
            return Ok(length_plus_one.checked_sub(1).map(to_usize));
        }
        let length = match classic {
            ClassicLength::Int16 => i32::from(i16::from_be_bytes(self.read_array()?)),
            ClassicLength::Int32 => i32::from_be_bytes(self.read_array()?),
        };
        Ok(usize::try_from(length).ok())
    }

    fn read_unsigned_varint(&mut self) -> Result<u32, GuardError> {
        let mut value: u32 = 0;
        for index in 0..VARINT_BYTES_MAX {
            let [byte] = self.read_array::<1>()?;
            // Bits beyond 32 fall off the fifth byte, exactly as in the crate.
            value |= u32::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        // The crate would stop after five bytes and read the next byte as the next field; no
        // encoder writes such a varint and Kafka refuses it, so we refuse it too.
        Err(GuardError::VarintTooLong)
    }

    fn read_array<const N: usize>(&mut self) -> Result<[u8; N], GuardError> {
        let start = self.position;
        self.skip(N)?;
        let mut bytes = [0; N];
        bytes.copy_from_slice(&self.body[start..self.position]);
        Ok(bytes)
    }

    fn skip(&mut self, needed: usize) -> Result<(), GuardError> {
        let remaining = self.remaining();
        if needed > remaining {
            return Err(GuardError::Truncated { needed, remaining });
        }
        self.position += needed;
        Ok(())
    }

    fn remaining(&self) -> usize {
        self.body.len() - self.position
    }
}

/// A u32 from the wire as a length. On targets narrower than 32 bits the value saturates,
/// which only makes it fail the bound checks sooner.
fn to_usize(value: u32) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}
