//! tidepool-broker: a Kafka wire-protocol broker for tests, embeddable in a process.
//!
//! # Layout
//! - [`broker`]: `Broker::builder()…start()` and the running [`BrokerHandle`].
//! - [`server`], [`connection`]: accept loop with a connection bound; framing, ordered
//!   request handling and responses per connection.
//! - [`request`]: frame → checked, guarded, decoded request; response → frame.
//! - [`handler`]: one file per Kafka API, and the table of what we advertise.
//! - [`cluster`]: the controller — nodes, topics, partitions, leaders, producer ids.
//! - [`partition`], [`producer_state`]: one partition's log, leader and idempotence state.
//! - [`log`]: segments of record batches with sparse offset and time indexes, on the Disk seam.
//! - [`config`]: every bound and default in one place.
//!
//! Everything reaches sockets, files, time and randomness through `tidepool_io::Env`.
//!
//! ```no_run
//! # async fn example() -> Result<(), tidepool_broker::StartError> {
//! let broker = tidepool_broker::Broker::builder().memory().start().await?;
//! println!("bootstrap.servers={}", broker.bootstrap());
//! broker.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod admin;
pub mod broker;
pub mod cleaner;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod group;
pub mod handler;
pub mod log;
pub mod partition;
pub mod producer_state;
pub mod request;
pub mod server;

pub use broker::{Broker, BrokerBuilder, BrokerHandle, Control, ControlError, StartError};
pub use config::{Config, TopicConfig};
