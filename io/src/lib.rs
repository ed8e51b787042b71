//! tidepool-io: the four seams through which every byte of I/O, every reading of time and every
//! random number passes (DESIGN.md §2).
//!
//! # Layout
//! - [`transport`]: bind, accept and connect byte streams ([`TokioTransport`] is real TCP).
//! - [`clock`]: monotonic time, wall-clock milliseconds and sleeping ([`SystemClock`]).
//! - [`entropy`]: random `u64`s, seeded or from the OS ([`SeededEntropy`]).
//! - [`disk`]: files with positional reads and writes ([`StdDisk`] on `std::fs`, [`MemDisk`] in memory).
//!
//! Code above this crate never names `std::fs`, `tokio::net`, `SystemTime` or a random number
//! generator; it is handed an [`Env`] and goes through it. That is what lets the simulator swap in
//! turmoil sockets, virtual time, a seeded stream and a crashable disk without a cargo feature.
//!
//! ```
//! # async fn example() -> std::io::Result<()> {
//! let env = tidepool_io::Env::memory();
//! let millis = env.clock.wall_ms();
//! let token = env.entropy.next_u64();
//! # let _ = (millis, token);
//! # Ok(())
//! # }
//! ```

pub mod clock;
pub mod disk;
pub mod entropy;
pub mod transport;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use clock::{Clock, SystemClock};
pub use disk::{Disk, DiskFile, MemDisk, OpenMode, StdDisk};
pub use entropy::{Entropy, SeededEntropy};
pub use transport::{BoxStream, ByteStream, Listener, TokioTransport, Transport};

/// A boxed, sendable future: the seams are object-safe so one `Env` can hold any implementation.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The seams handed to every component. Cloning is cheap (four `Arc`s).
#[derive(Clone)]
pub struct Env {
    pub transport: Arc<dyn Transport>,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    pub disk: Arc<dyn Disk>,
}

impl Env {
    /// Real TCP, the system clock, OS-seeded randomness and the real file system.
    pub fn real() -> Env {
        Env {
            transport: Arc::new(TokioTransport),
            clock: Arc::new(SystemClock::new()),
            entropy: Arc::new(SeededEntropy::from_os()),
            disk: Arc::new(StdDisk),
        }
    }

    /// Like [`Env::real`], but files live in memory and vanish with the process.
    pub fn memory() -> Env {
        Env {
            disk: Arc::new(MemDisk::new()),
            ..Env::real()
        }
    }

    /// Replaces the disk, keeping the other seams.
    pub fn with_disk(self, disk: Arc<dyn Disk>) -> Env {
        Env { disk, ..self }
    }

    /// Replaces the entropy source, keeping the other seams (e.g. a fixed seed for a test).
    pub fn with_entropy(self, entropy: Arc<dyn Entropy>) -> Env {
        Env { entropy, ..self }
    }
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").finish_non_exhaustive()
    }
}
