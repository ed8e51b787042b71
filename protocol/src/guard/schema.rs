//! The vocabulary the API tables are written in.
//!
//! A table describes a message the way `kafka-protocol` 0.18 decodes it: the fields in wire
//! order, the versions each field exists in, and the tagged fields each struct knows. It says
//! nothing about values; the guard only needs to know how many bytes each part occupies and
//! where the crate reads an array count.
//!
//! Whether a string, bytes or array uses the classic or the compact encoding is not written per
//! field: the crate switches every field at the message's first flexible version, so
//! [`Message::flexible`] decides it once. Nullability is recorded even though the walk treats
//! every length of -1 (classic) or 0 (compact) as null: the tests' encoder needs it to produce
//! bodies the crate accepts.

/// An inclusive range of message versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Versions {
    pub(crate) min: i16,
    pub(crate) max: i16,
}

impl Versions {
    pub(crate) const fn contains(self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }
}

/// Every version.
pub(crate) const ALL: Versions = Versions {
    min: 0,
    max: i16::MAX,
};
/// No version: a message that never uses the flexible encoding.
pub(crate) const NEVER: Versions = Versions { min: 1, max: 0 };

pub(crate) const fn since(min: i16) -> Versions {
    Versions { min, max: i16::MAX }
}

pub(crate) const fn until(max: i16) -> Versions {
    Versions { min: 0, max }
}

pub(crate) const fn between(min: i16, max: i16) -> Versions {
    Versions { min, max }
}

/// What a field is on the wire. `UInt16`, `Float64` and `Optional` occur only in APIs not
/// tabled yet (broker registration, client quotas, the KIP-848 group protocol); the walk
/// already handles them so that adding those tables is only writing tables.
#[derive(Debug)]
#[allow(
    dead_code,
    reason = "the variants above, and `nullable`, which only the tests' encoder reads"
)]
pub(crate) enum Kind {
    /// One byte; the crate reads any non-zero byte as true.
    Bool,
    Int8,
    Int16,
    UInt16,
    Int32,
    Int64,
    Float64,
    Uuid,
    /// Classic: i16 length. Compact: unsigned varint length plus one.
    String {
        nullable: bool,
    },
    /// Classic: i32 length. Compact: unsigned varint length plus one.
    Bytes {
        nullable: bool,
    },
    /// Classic: i32 count. Compact: unsigned varint count plus one. The count the crate
    /// pre-allocates from, so the one the guard exists to bound.
    Array {
        nullable: bool,
        element: &'static Kind,
    },
    Struct(&'static Struct),
    /// An i8 presence marker (1 means present) followed by the value.
    Optional(&'static Kind),
}

pub(crate) const BOOL: Kind = Kind::Bool;
pub(crate) const INT8: Kind = Kind::Int8;
pub(crate) const INT16: Kind = Kind::Int16;
pub(crate) const INT32: Kind = Kind::Int32;
pub(crate) const INT64: Kind = Kind::Int64;
pub(crate) const UUID: Kind = Kind::Uuid;
pub(crate) const STRING: Kind = Kind::String { nullable: false };
pub(crate) const NULLABLE_STRING: Kind = Kind::String { nullable: true };
pub(crate) const BYTES: Kind = Kind::Bytes { nullable: false };
pub(crate) const NULLABLE_BYTES: Kind = Kind::Bytes { nullable: true };
/// Kafka's `records` type: the crate decodes it as nullable bytes and leaves the batches to us.
pub(crate) const RECORDS: Kind = NULLABLE_BYTES;

pub(crate) const fn array(element: &'static Kind) -> Kind {
    Kind::Array {
        nullable: false,
        element,
    }
}

pub(crate) const fn nullable_array(element: &'static Kind) -> Kind {
    Kind::Array {
        nullable: true,
        element,
    }
}

/// A field read in every version of `versions`, in table order.
#[derive(Debug)]
pub(crate) struct Field {
    #[allow(
        dead_code,
        reason = "for people reading tables and for the tests' failure messages"
    )]
    pub(crate) name: &'static str,
    pub(crate) versions: Versions,
    pub(crate) kind: Kind,
}

pub(crate) const fn field(name: &'static str, versions: Versions, kind: Kind) -> Field {
    Field {
        name,
        versions,
        kind,
    }
}

/// A tagged field the crate knows. The crate decodes its value from the body itself, not from
/// the size-prefixed slice, so the walk does the same; a known tag outside `versions` makes
/// the crate fail.
#[derive(Debug)]
pub(crate) struct TaggedField {
    pub(crate) tag: u32,
    #[allow(
        dead_code,
        reason = "for people reading tables and for the tests' failure messages"
    )]
    pub(crate) name: &'static str,
    pub(crate) versions: Versions,
    pub(crate) kind: Kind,
}

pub(crate) const fn tagged(
    tag: u32,
    name: &'static str,
    versions: Versions,
    kind: Kind,
) -> TaggedField {
    TaggedField {
        tag,
        name,
        versions,
        kind,
    }
}

/// A struct: its fields, then (in flexible versions) its tagged-field section.
#[derive(Debug)]
pub(crate) struct Struct {
    /// The crate's type name, so tables can be checked against it and test failures name it.
    #[allow(
        dead_code,
        reason = "for people reading tables and for the tests' failure messages"
    )]
    pub(crate) name: &'static str,
    pub(crate) fields: &'static [Field],
    pub(crate) tagged_fields: &'static [TaggedField],
}

impl Struct {
    pub(crate) fn known_tag(&self, tag: u32) -> Option<&TaggedField> {
        self.tagged_fields
            .iter()
            .find(|tagged_field| tagged_field.tag == tag)
    }
}

/// One request or response of one API.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) api_key: i16,
    /// The versions the crate decodes; it refuses every other version before reading a byte.
    pub(crate) versions: Versions,
    /// The versions that use compact lengths and tagged-field sections.
    pub(crate) flexible: Versions,
    pub(crate) body: &'static Struct,
}
