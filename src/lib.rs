//! Tidepool: an embedded, pure-Rust, Kafka-wire-compatible stack for testing.
//!
//! This facade re-exports the crates for embedding:
//!
//! ```no_run
//! # async fn example() -> Result<(), tidepool::StartError> {
//! let broker = tidepool::Broker::builder().memory().start().await?;
//! // point any Kafka client at broker.bootstrap()
//! broker.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub use tidepool_broker::{
    self as broker, Broker, BrokerBuilder, BrokerHandle, Config, StartError,
};
pub use tidepool_io::{self as io, Env};

pub mod control;
