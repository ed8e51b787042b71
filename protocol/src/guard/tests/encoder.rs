//! An encoder driven by the tables. It writes random valid bodies, or bodies in which one chosen
//! array claims a huge count. It is how the tables are tested: the crate must read what it writes.

use super::Rng;
use crate::guard::schema::{Kind, Message, Struct, TaggedField};

/// An array field, named by the struct that holds it and the field's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ArrayField {
    pub(super) struct_name: &'static str,
    pub(super) field_name: &'static str,
}

pub(super) struct Generated {
    pub(super) body: Vec<u8>,
    /// The crate leaves out a known tagged field whose value is the default when it
    /// re-encodes, so such a body may legitimately re-encode to different bytes.
    pub(super) has_known_tagged_field: bool,
}

/// Bytes written after a bomb's count, so the guard sees a small, non-zero remainder.
pub(super) const BOMB_FILLER_BYTES: usize = 64;
/// Random arrays hold at most this many elements; the truncation test relies on counts staying
/// this small.
pub(super) const ARRAY_ELEMENTS_MAX: usize = 3;

/// The count a bomb claims, as the crate will read it.
pub(super) fn bomb_count(flexible: bool) -> u64 {
    if flexible {
        u64::from(u32::MAX) - 1
    } else {
        i32::MAX as u64
    }
}

pub(super) fn random_body(message: &Message, version: i16, rng: &mut Rng) -> Generated {
    let mut encoder = Encoder::new(message, version, rng, None);
    let mut body = Vec::new();
    encoder.write_struct(&mut body, message.body);
    Generated {
        body,
        has_known_tagged_field: encoder.has_known_tagged_field,
    }
}

/// A valid body up to `target`'s first occurrence, which claims [`bomb_count`] elements and is
/// followed by [`BOMB_FILLER_BYTES`] zeros. Every array on the way holds one element and every
/// known tagged field is present, so each array field in [`array_fields`] is reached.
pub(super) fn bomb_body(message: &Message, version: i16, target: ArrayField) -> Vec<u8> {
    let mut rng = Rng::new(7);
    let mut encoder = Encoder::new(message, version, &mut rng, Some(target));
    let mut body = Vec::new();
    encoder.write_struct(&mut body, message.body);
    assert!(encoder.exploded, "{target:?} was never reached");
    body
}

/// Every array field a body of this message and version can hold, found from the table alone.
pub(super) fn array_fields(message: &Message, version: i16) -> Vec<ArrayField> {
    let mut found = Vec::new();
    collect_struct(
        message.body,
        version,
        message.flexible.contains(version),
        &mut found,
    );
    found
}

fn collect_struct(schema: &Struct, version: i16, flexible: bool, found: &mut Vec<ArrayField>) {
    for field in schema
        .fields
        .iter()
        .filter(|field| field.versions.contains(version))
    {
        let here = ArrayField {
            struct_name: schema.name,
            field_name: field.name,
        };
        collect_kind(&field.kind, here, version, flexible, found);
    }
    if flexible {
        for tagged in schema
            .tagged_fields
            .iter()
            .filter(|tagged| tagged.versions.contains(version))
        {
            let here = ArrayField {
                struct_name: schema.name,
                field_name: tagged.name,
            };
            collect_kind(&tagged.kind, here, version, flexible, found);
        }
    }
}

fn collect_kind(
    kind: &Kind,
    here: ArrayField,
    version: i16,
    flexible: bool,
    found: &mut Vec<ArrayField>,
) {
    match kind {
        Kind::Array { element, .. } => {
            if !found.contains(&here) {
                found.push(here);
            }
            collect_kind(element, here, version, flexible, found);
        }
        Kind::Struct(schema) => collect_struct(schema, version, flexible, found),
        Kind::Optional(value) => collect_kind(value, here, version, flexible, found),
        _ => {}
    }
}

struct Encoder<'rng> {
    rng: &'rng mut Rng,
    version: i16,
    flexible: bool,
    bomb: Option<ArrayField>,
    /// Set once the bomb's count is written; nothing is written after it.
    exploded: bool,
    has_known_tagged_field: bool,
}

impl<'rng> Encoder<'rng> {
    fn new(message: &Message, version: i16, rng: &'rng mut Rng, bomb: Option<ArrayField>) -> Self {
        let flexible = message.flexible.contains(version);
        Encoder {
            rng,
            version,
            flexible,
            bomb,
            exploded: false,
            has_known_tagged_field: false,
        }
    }

    fn write_struct(&mut self, out: &mut Vec<u8>, schema: &Struct) {
        let version = self.version;
        for field in schema
            .fields
            .iter()
            .filter(|field| field.versions.contains(version))
        {
            if self.exploded {
                return;
            }
            let here = ArrayField {
                struct_name: schema.name,
                field_name: field.name,
            };
            self.write_kind(out, &field.kind, here);
        }
        if self.flexible && !self.exploded {
            self.write_tagged_fields(out, schema);
        }
    }

    fn write_kind(&mut self, out: &mut Vec<u8>, kind: &Kind, here: ArrayField) {
        match kind {
            Kind::Bool => out.push(self.rng.below(2) as u8),
            Kind::Int8 => out.extend(self.rng.bytes(1)),
            Kind::Int16 | Kind::UInt16 => out.extend(self.rng.bytes(2)),
            Kind::Int32 => out.extend(self.rng.bytes(4)),
            Kind::Int64 => out.extend(self.rng.bytes(8)),
            // A finite value: NaN would not compare equal after a round trip.
            Kind::Float64 => out.extend(f64::from(self.rng.next_u64() as i32).to_be_bytes()),
            Kind::Uuid => out.extend(self.rng.bytes(16)),
            Kind::String { nullable } => self.write_string(out, *nullable),
            Kind::Bytes { nullable } => self.write_bytes(out, *nullable),
            Kind::Array { nullable, element } => self.write_array(out, *nullable, element, here),
            Kind::Struct(schema) => self.write_struct(out, schema),
            Kind::Optional(value) => {
                if self.bomb.is_some() || self.rng.percent(50) {
                    out.push(1);
                    self.write_kind(out, value, here);
                } else {
                    out.push(0xff);
                }
            }
        }
    }

    fn write_string(&mut self, out: &mut Vec<u8>, nullable: bool) {
        if nullable && self.rng.percent(15) {
            return self.write_null(out, LengthWidth::Int16);
        }
        // Multi-byte characters, so a length in characters would be caught.
        const PIECES: [&str; 8] = ["a", "b", "z", "0", "-", "é", "語", "🦀"];
        let characters = self.rng.below(7);
        let text: String = (0..characters)
            .map(|_| PIECES[self.rng.below(PIECES.len())])
            .collect();
        self.write_length(out, text.len(), LengthWidth::Int16);
        out.extend(text.as_bytes());
    }

    fn write_bytes(&mut self, out: &mut Vec<u8>, nullable: bool) {
        if nullable && self.rng.percent(15) {
            return self.write_null(out, LengthWidth::Int32);
        }
        let length = self.rng.below(9);
        self.write_length(out, length, LengthWidth::Int32);
        out.extend(self.rng.bytes(length));
    }

    fn write_array(&mut self, out: &mut Vec<u8>, nullable: bool, element: &Kind, here: ArrayField) {
        if self.bomb == Some(here) {
            self.write_bomb(out);
            return;
        }
        if self.bomb.is_none() && nullable && self.rng.percent(10) {
            return self.write_null(out, LengthWidth::Int32);
        }
        let count = if self.bomb.is_some() {
            1
        } else {
            self.rng.below(ARRAY_ELEMENTS_MAX + 1)
        };
        self.write_length(out, count, LengthWidth::Int32);
        for _ in 0..count {
            if self.exploded {
                return;
            }
            self.write_kind(out, element, here);
        }
    }

    fn write_bomb(&mut self, out: &mut Vec<u8>) {
        if self.flexible {
            write_unsigned_varint(out, u32::MAX);
        } else {
            out.extend(i32::MAX.to_be_bytes());
        }
        out.extend([0; BOMB_FILLER_BYTES]);
        self.exploded = true;
    }

    fn write_tagged_fields(&mut self, out: &mut Vec<u8>, schema: &Struct) {
        let version = self.version;
        let every_known = self.bomb.is_some();
        let mut tags: Vec<(u32, Option<&TaggedField>)> = schema
            .tagged_fields
            .iter()
            .filter(|tagged| tagged.versions.contains(version))
            .filter(|_| every_known || self.rng.percent(35))
            .map(|tagged| (tagged.tag, Some(tagged)))
            .collect();
        tags.extend(self.unknown_tags(schema).into_iter().map(|tag| (tag, None)));
        // The crate writes tagged fields in tag order: the known ones (numbered from 0 without
        // gaps in every struct it has), then the unknown ones, which it keeps in a sorted map.
        tags.sort_by_key(|(tag, _)| *tag);
        write_unsigned_varint(out, tags.len() as u32);
        for (tag, known) in tags {
            let value = self.tagged_value(schema, known);
            write_unsigned_varint(out, tag);
            write_unsigned_varint(out, value.len() as u32);
            out.extend(value);
            if self.exploded {
                return;
            }
        }
    }

    /// A known field's value from its table entry, or random bytes for an unknown one.
    fn tagged_value(&mut self, schema: &Struct, known: Option<&TaggedField>) -> Vec<u8> {
        let mut value = Vec::new();
        match known {
            Some(tagged) => {
                self.has_known_tagged_field = true;
                let here = ArrayField {
                    struct_name: schema.name,
                    field_name: tagged.name,
                };
                self.write_kind(&mut value, &tagged.kind, here);
            }
            None => {
                let length = self.rng.below(5);
                value.extend(self.rng.bytes(length));
            }
        }
        value
    }

    /// Up to two distinct tags the table does not know, ascending. Mostly small ones among and
    /// next to the known tags, so that a tag missing from a table (which the crate would decode
    /// from the body rather than skip) is soon generated and caught; sometimes a multi-byte one.
    fn unknown_tags(&mut self, schema: &Struct) -> Vec<u32> {
        if self.bomb.is_some() {
            return Vec::new();
        }
        let first_free = schema
            .tagged_fields
            .iter()
            .map(|tagged| tagged.tag + 1)
            .max()
            .unwrap_or(0);
        let count = self.rng.below(3);
        let mut tags: Vec<u32> = (0..count)
            .map(|_| match self.rng.percent(90) {
                true => self.rng.below(first_free as usize + 6) as u32,
                false => first_free + 128 + self.rng.below(20_000) as u32,
            })
            .filter(|&tag| schema.known_tag(tag).is_none())
            .collect();
        tags.sort_unstable();
        tags.dedup();
        tags
    }

    fn write_null(&mut self, out: &mut Vec<u8>, width: LengthWidth) {
        match (self.flexible, width) {
            (true, _) => write_unsigned_varint(out, 0),
            (false, LengthWidth::Int16) => out.extend((-1_i16).to_be_bytes()),
            (false, LengthWidth::Int32) => out.extend((-1_i32).to_be_bytes()),
        }
    }

    fn write_length(&mut self, out: &mut Vec<u8>, length: usize, width: LengthWidth) {
        match (self.flexible, width) {
            (true, _) => write_unsigned_varint(out, length as u32 + 1),
            (false, LengthWidth::Int16) => out.extend((length as i16).to_be_bytes()),
            (false, LengthWidth::Int32) => out.extend((length as i32).to_be_bytes()),
        }
    }
}

#[derive(Clone, Copy)]
enum LengthWidth {
    Int16,
    Int32,
}

pub(super) fn write_unsigned_varint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}
