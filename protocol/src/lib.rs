//! tidepool-protocol: the Kafka wire pieces shared by Tidepool's broker and client.
//!
//! # Layout
//! - [`batch`]: v2 record batches as bytes: header, CRC-32C, the fields a broker rewrites.
//! - [`records`]: the records inside a batch: decompression and decoding, and a batch builder.
//! - [`compression`]: gzip, snappy (raw and xerial-framed), lz4 (frame) and zstd, pure Rust.
//! - [`guard`]: a bound check run before `kafka-protocol` decodes a message, because its array
//!   decoder pre-allocates from the wire count and a tiny frame can make the process abort.
//!
//! Message structs and their encoding come from the `kafka-protocol` crate; this crate adds what
//! it lacks or gets wrong for a broker (DESIGN.md §8).

pub mod batch;
pub mod compression;
pub mod guard;
pub mod records;
