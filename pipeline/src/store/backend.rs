//! redb's [`StorageBackend`] over the `Disk` seam, so the database lives on whatever disk the
//! environment hands in: the real file system, `MemDisk`, or the simulator's `SimDisk`, where a
//! crash loses exactly the writes redb had not yet made durable.
//!
//! # What redb needs from a backend
//!
//! - `read` must fill the whole buffer or fail: redb never asks past the end on purpose, and a
//!   short read after a crash must surface as an error rather than as zeros.
//! - `set_len` must zero-fill growth: redb allocates pages by growing the file and trusts them
//!   to read as zeros.
//! - `sync_data` is redb's only ordering barrier. A commit with `Durability::Immediate` writes
//!   the pages, then the header naming them, then calls `sync_data` once (its default
//!   one-phase commit, with checksums); recovery after a crash verifies the checksums of the
//!   newest commit slot and falls back to the previous slot when they fail. So every write
//!   before a `sync_data` must be durable when it returns, and nothing written after it may be
//!   assumed durable until the next one. [`DiskFile::sync`] (fsync of data and size) gives
//!   exactly that; writes between two syncs may reach the disk in any subset and torn, which
//!   is what `SimDisk` crashes model and what redb's checksums are there to catch.
//! - No locking: the lock methods keep their `Unsupported` default, so redb runs in
//!   `ConcurrencyMode::ExclusiveWriter` and relies on its caller to open a file once. The
//!   `Store` enforces that within a process (see `store::open`).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::StorageBackend;
use tidepool_io::{Disk, DiskFile, OpenMode};

/// A redb storage backend on one file of a [`Disk`].
pub struct DiskBackend {
    file: Arc<dyn DiskFile>,
    path: PathBuf,
}

impl DiskBackend {
    /// Opens `path` on `disk` with `mode`. The caller makes the file's directory entry durable
    /// (`Disk::sync_dir`): redb only ever syncs the file's contents.
    pub fn open(disk: &dyn Disk, path: &Path, mode: OpenMode) -> io::Result<DiskBackend> {
        let file: Arc<dyn DiskFile> = Arc::from(disk.open(path, mode)?);
        Ok(DiskBackend::from_file(file, path))
    }

    /// A backend on an already open file; `path` only names it in `Debug` output.
    pub fn from_file(file: Arc<dyn DiskFile>, path: &Path) -> DiskBackend {
        DiskBackend {
            file,
            path: path.to_path_buf(),
        }
    }

    /// Another handle on the same open file. The store keeps one to sync the file itself and
    /// to tell whether the handle still works (a crashed simulated disk fails old handles).
    pub fn file(&self) -> Arc<dyn DiskFile> {
        Arc::clone(&self.file)
    }
}

impl fmt::Debug for DiskBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskBackend")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl StorageBackend for DiskBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.file.read_exact_at(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.file.sync()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.file.write_at(offset, data)
    }
}
