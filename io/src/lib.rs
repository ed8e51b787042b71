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

/// Marks a crash point: a named step between two writes that must both land. Expands to
/// `$disk.crash_point($name)` (see [`Disk::crash_point`]).
///
/// A macro rather than a bare call so that every site has one greppable spelling
/// (`crash_point!(`), which is how the simulator's list of sites is checked against the code.
/// Outside the simulation it is a no-op virtual call on the disk: no behaviour, no feature
/// flag (DESIGN.md §2 forbids swapping seams by cargo feature).
///
/// ```
/// use tidepool_io::{MemDisk, crash_point};
/// let disk = MemDisk::new();
/// crash_point!(disk, "example.between_writes");
/// ```
#[macro_export]
macro_rules! crash_point {
    ($disk:expr, $name:literal) => {{
        #[allow(unused_imports)]
        use $crate::Disk as _;
        $disk.crash_point($name)
    }};
}

/// Asks whether to misbehave at a named site now; expands to `$disk.buggify($name)` (see
/// [`Disk::buggify`]).
///
/// A macro for the same reason as [`crash_point!`]: one greppable spelling for every site.
/// Outside the simulation it is a virtual call that answers `false`, so the code behind it
/// never runs in production.
///
/// ```
/// use tidepool_io::{MemDisk, buggify};
/// let disk = MemDisk::new();
/// assert!(!buggify!(disk, "example.short_answer"));
/// ```
#[macro_export]
macro_rules! buggify {
    ($disk:expr, $name:literal) => {{
        #[allow(unused_imports)]
        use $crate::Disk as _;
        $disk.buggify($name)
    }};
}

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
