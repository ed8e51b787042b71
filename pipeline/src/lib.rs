//! tidepool-pipeline (issue 9, DESIGN.md §5): the ingestion pipeline of "We replaced REST with
//! Kafka", as a library and runnable stages on tidepool-client, unchanged against Tidepool or
//! Apache Kafka.
//!
//! - `event`: the event shape and its validation.
//! - `store`: the embedded database (redb on the `Disk` seam): business rows, outbox, dedup keys.
//! - `collector`: `POST /v1/events` → `events.raw`, 202 once acknowledged.
