//! tidepool-pipeline (issue 9, DESIGN.md §5): the ingestion pipeline of "We replaced REST with
//! Kafka", as a library and runnable stages on tidepool-client, unchanged against Tidepool or
//! Apache Kafka.
//!
//! - `event`: the event shape and its validation.
//! - `store`: the embedded database (redb on the `Disk` seam): business rows, outbox, dedup keys.
//! - `collector`: `POST /v1/events` → `events.raw`, 202 once acknowledged.
//! - `metrics`: Prometheus metrics of the collector and the stages (lag per group/partition).
//! - `runtime`: the consumer runtime: a `Handler` per stage, commit after success, retry and
//!   dead-letter topics.
//! - `stages`: the shipped stages (enrichment, analytics, persister) and the outbox relay.
//! - `topics`: topic names and creation. `app`: everything in one process (`tidepool up`).
//! - `replay`: reset one stage's consumer group (earliest, timestamp, offset) to reprocess.
//! - `erasure`: delete single messages: unique key suffixes, compaction and tombstones.

pub mod app;
pub mod collector;
pub mod erasure;
pub mod event;
pub mod metrics;
pub mod replay;
pub mod runtime;
pub mod stages;
pub mod store;
pub mod topics;
