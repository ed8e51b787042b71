//! tidepool-client: a pure-Rust Kafka client over Tidepool's seams (DESIGN.md §4).
//!
//! Every byte goes through the [`tidepool_io::Transport`] seam, every wait through the Clock and
//! every random choice through Entropy, so the same code talks TCP to Tidepool or Apache Kafka
//! and runs inside the deterministic simulator.
//!
//! # Layout
//! - [`Client`]: bootstrap, metadata cache, one pipelined connection per broker, coordinators.
//! - [`partitioner`]: the Java client's murmur2 partitioner and the [`Partitioner`] trait.

mod admin;
mod client;
mod config;
mod conn;
mod consumer;
mod error;
// The client_response fuzz target's way in (fuzz/); not part of the API.
#[doc(hidden)]
pub mod fuzzing;
pub mod partitioner;
mod producer;
mod sasl;
mod types;
pub mod versions;

pub use admin::{
    Admin, AlterOp, ConfigEntry, ConfigResource, ConfigSource, GroupDescription, GroupListing,
    ListedOffset, MemberDescription, NewTopic, OffsetSpec, ResetTo,
};
pub use client::{Broker, Client, Metadata, PartitionMetadata, TopicMetadata};
pub use config::ClientConfig;
pub use consumer::{
    AssignorKind, BoxFuture, Consumer, ConsumerConfig, ConsumerRecord, OffsetAndMetadata,
    OffsetReset, RebalanceListener,
};
pub use error::{Error, KafkaCode, Result};
pub use partitioner::{DefaultPartitioner, Partitioner};
pub use producer::{
    Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata,
};
pub use sasl::{SaslCredentials, SaslMechanism};
pub use tidepool_protocol::compression::Compression;
pub use tidepool_protocol::records::Header;
pub use types::TopicPartition;
