//! Opening a store: creating its file crash-safely, and keeping one open database per file.
//!
//! **Creation.** redb writes a new database's header, syncs, and only then its magic number;
//! a crash in between leaves a non-empty file without the magic number, which redb refuses to
//! open ever after ("not a redb database"). So a new database is built under a temporary name
//! (`<name>.init`), synced, renamed into place and its directory synced: the real name only
//! ever refers to a complete database, and a leftover `.init` file is discarded.
//!
//! **One database per file.** redb without backend locks (ours has none) trusts its caller to
//! open a file once; two `Database`s on one file would overwrite each other's pages. Within a
//! process the registry below hands a second `Store::open` of the same disk and path the store
//! already open. A store whose file handle fails (a simulated disk crashed under it: the
//! process that held it is gone) no longer counts as open, so a restarted host opens afresh.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

use redb::{Database, ReadableDatabase};
use tidepool_io::{Disk, DiskFile, OpenMode};

use super::backend::DiskBackend;
use super::{FORMAT_VERSION, Inner, META, META_FORMAT, StoreConfig, StoreError};

/// Open stores, by disk identity and path.
struct Registry {
    next_id: u64,
    entries: Vec<Entry>,
}

struct Entry {
    id: u64,
    disk: usize,
    path: PathBuf,
    store: Weak<Inner>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next_id: 0,
    entries: Vec::new(),
});
/// Signalled whenever a claim is released, for an open waiting on a store still closing.
static RELEASED: Condvar = Condvar::new();

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A disk's identity: the address of what the `Arc` points to. The claim holds the `Arc`, so
/// the address cannot be reused by another disk while the entry exists.
fn disk_identity(disk: &Arc<dyn Disk>) -> usize {
    Arc::as_ptr(disk).cast::<()>() as usize
}

/// A store's place in the registry. Declared after the database in `Inner`, so it is released
/// only once the database has closed.
pub(super) struct Claim {
    id: u64,
    pub(super) disk: Arc<dyn Disk>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        registry().entries.retain(|entry| entry.id != self.id);
        RELEASED.notify_all();
    }
}

/// The store open on `path` of `disk`, or a newly opened one.
pub(super) fn open_shared(
    disk: Arc<dyn Disk>,
    path: &Path,
    config: StoreConfig,
) -> Result<Arc<Inner>, StoreError> {
    let identity = disk_identity(&disk);
    // Dropped only after the registry guard: dropping the last reference to a store runs its
    // claim's drop, which takes the registry lock.
    let mut held: Option<Arc<Inner>> = None;
    let mut registry = registry();
    while let Some(entry) = registry
        .entries
        .iter()
        .find(|entry| entry.disk == identity && entry.path == path)
    {
        match entry.store.upgrade() {
            Some(open) if open.is_alive() => {
                drop(registry);
                if open.config != config {
                    drop(open);
                    return Err(StoreError::ConfigMismatch(path.to_path_buf()));
                }
                return Ok(open);
            }
            Some(dead) => {
                let id = entry.id;
                registry.entries.retain(|entry| entry.id != id);
                held = Some(dead);
                break;
            }
            // Its last reference is gone and it is closing on another thread.
            None => {
                registry = RELEASED
                    .wait(registry)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        }
    }
    let (db, file) = open_database(disk.as_ref(), path, &config)?;
    let id = registry.next_id;
    registry.next_id += 1;
    let inner = Arc::new(Inner {
        db,
        file,
        config,
        path: path.to_path_buf(),
        outbox_written: tokio::sync::Notify::new(),
        writers: tokio::sync::Semaphore::new(1),
        _claim: Claim { id, disk },
    });
    registry.entries.push(Entry {
        id,
        disk: identity,
        path: path.to_path_buf(),
        store: Arc::downgrade(&inner),
    });
    drop(registry);
    drop(held);
    Ok(inner)
}

fn builder(config: &StoreConfig) -> redb::Builder {
    let mut builder = redb::Builder::new();
    builder.set_cache_size(config.cache_bytes);
    builder
}

fn open_database(
    disk: &dyn Disk,
    path: &Path,
    config: &StoreConfig,
) -> Result<(Database, Arc<dyn DiskFile>), StoreError> {
    let invalid = || StoreError::InvalidPath(path.to_path_buf());
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .ok_or_else(invalid)?;
    let name = path.file_name().ok_or_else(invalid)?.to_string_lossy();
    prepare_parent(disk, parent)?;
    if !disk.exists(path) {
        create(
            disk,
            parent,
            &parent.join(format!("{name}.init")),
            path,
            config,
        )?;
    }
    let backend = DiskBackend::open(disk, path, OpenMode::Existing)?;
    let file = backend.file();
    let db = builder(config).create_with_backend(backend)?;
    let format = db
        .begin_read()?
        .open_table(META)?
        .get(META_FORMAT)?
        .map(|version| version.value());
    if format != Some(FORMAT_VERSION) {
        return Err(StoreError::Format {
            path: path.to_path_buf(),
            found: format,
        });
    }
    Ok((db, file))
}

/// Creates `parent` and makes every directory entry on the way durable: a file is reachable
/// after a crash only if each directory above it was synced after the entry appeared.
fn prepare_parent(disk: &dyn Disk, parent: &Path) -> Result<(), StoreError> {
    let missing: Vec<&Path> = parent
        .ancestors()
        .take_while(|dir| !dir.as_os_str().is_empty() && !disk.exists(dir))
        .collect();
    disk.create_dir_all(parent)?;
    for dir in missing.iter().rev() {
        if let Some(above) = dir.parent().filter(|above| !above.as_os_str().is_empty()) {
            disk.sync_dir(above)?;
        }
    }
    // Also when nothing was created: an earlier process may have created the file and been
    // killed before syncing its entry.
    disk.sync_dir(parent)?;
    Ok(())
}

fn create(
    disk: &dyn Disk,
    parent: &Path,
    temp: &Path,
    path: &Path,
    config: &StoreConfig,
) -> Result<(), StoreError> {
    if disk.exists(temp) {
        disk.remove_file(temp)?;
    }
    let backend = DiskBackend::open(disk, temp, OpenMode::CreateNew)?;
    let file = backend.file();
    let db = builder(config).create_with_backend(backend)?;
    super::create_tables(&db)?;
    // Closing writes the header once more; the sync below makes that durable before the
    // rename can expose the file under its real name.
    drop(db);
    file.sync()?;
    disk.rename(temp, path)?;
    disk.sync_dir(parent)?;
    Ok(())
}
