//! `SimDisk`: files in memory that remember what is durable and what is only written, and a
//! crash that keeps a seed-chosen part of what was not made durable.
//!
//! # The model
//!
//! - **File contents.** Every `write_at` and `set_len` is a *pending* operation of its file
//!   until the file's `sync()`. Reads see every operation, pending or not (the page cache).
//! - **Directory entries.** Creating a file (an `open` that creates), `create_dir_all`,
//!   `rename`, `remove_file` and `remove_dir_all` change a directory's *live* entries at once;
//!   its *durable* entries catch up only at `sync_dir` of that directory. As on a POSIX file
//!   system a file needs both: its bytes synced and its name in a synced directory, all the
//!   way up to the root.
//! - **A crash** ([`SimDisk::crash`]) rebuilds the tree from the durable entries alone, from
//!   the root down: a file created but never dir-synced disappears, an unsynced rename
//!   reverts, an unsynced removal comes back. Each surviving file with pending operations
//!   then gets one [`CrashMode`], drawn from the entropy stream handed to the crash: all
//!   pending operations lost, a prefix of them kept, a random subset kept (writes reaching
//!   the platter out of order), or all kept but the last write torn. What survives becomes
//!   durable, and every handle opened before the crash fails from then on (the process that
//!   held it is gone).
//!
//! Directories have identities, as inodes do: a directory removed and created again under
//! the same name starts empty, and never gets the old one's durable entries back.
//!
//! - **Crash points.** With [`FaultSites`] attached ([`SimDisk::attach_fault_sites`]), each
//!   `crash_point!` the code under test reaches is counted; when it fires an armed point, the
//!   disk crashes itself right there (a random policy, from the crash stream given at
//!   attachment; the report waits in [`SimDisk::take_point_crash`]) and *halts*: every
//!   operation fails, as the process is gone, until [`SimDisk::resume`] (called before the
//!   host restarts). `buggify!` sites are answered by the attached [`FaultSites`] too.
//!
//! What is not modelled: a sync that fails, a full disk, data lost *after* a sync, and
//! renaming a directory (the broker never does; `rename` takes files only).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use tidepool_io::{Disk, DiskFile, Entropy, OpenMode};

use super::entropy::{below, coin};
use super::points::FaultSites;

#[cfg(test)]
mod tests;

/// What a crash does to one file's pending (written, not yet synced) operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrashMode {
    /// Every pending operation is lost.
    DropAll,
    /// The first k pending operations survive, k drawn from 0..=n.
    KeepPrefix,
    /// Each pending operation survives or not by a coin flip, independently: later writes
    /// can survive earlier ones.
    KeepSubset,
    /// Every pending operation survives but the last, of which a random prefix of its bytes
    /// survives (a truncation or extension cannot tear: it survives or not).
    TearLast,
}

impl CrashMode {
    pub const ALL: [CrashMode; 4] = [
        CrashMode::DropAll,
        CrashMode::KeepPrefix,
        CrashMode::KeepSubset,
        CrashMode::TearLast,
    ];
}

/// How a crash picks each file's [`CrashMode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPolicy {
    /// Drawn per file from the crash's entropy stream.
    Random,
    /// The same mode for every file (its parameters, such as the prefix length, still drawn).
    Always(CrashMode),
}

/// What a crash did, for the run's history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashReport {
    /// Files that survived with pending operations, in path order.
    pub files: Vec<FileCrash>,
    /// Paths whose entry the crash changed back: created and gone, renamed and back,
    /// removed and returned, or naming another file than before.
    pub reverted: Vec<PathBuf>,
}

/// What a crash did to one file with pending operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCrash {
    pub path: PathBuf,
    pub mode: CrashMode,
    /// Pending operations at the crash.
    pub pending: usize,
    /// Operations applied whole.
    pub kept: usize,
    /// The torn last write, if one was torn.
    pub torn: Option<TornWrite>,
}

/// A write of which only the first `kept_bytes` of `len` reached the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TornWrite {
    pub offset: u64,
    pub len: usize,
    pub kept_bytes: usize,
}

/// An in-memory disk with durability and crashes. Cheap to share: wrap it in an `Arc`, hand
/// one clone to the host's `Env` and keep one to crash it with.
#[derive(Debug)]
pub struct SimDisk {
    tree: Mutex<Tree>,
    /// Bumped by every crash; a handle opened in an earlier generation fails.
    generation: Arc<AtomicU64>,
    /// Crash points and buggify sites, once attached.
    faults: Mutex<Option<Attached>>,
    /// The crash point the disk crashed at, until `resume`: every operation fails meanwhile.
    halted: Mutex<Option<&'static str>>,
    /// What the crash at a crash point did, until taken.
    point_crash: Mutex<Option<CrashReport>>,
}

/// What [`SimDisk::attach_fault_sites`] attached.
#[derive(Clone)]
struct Attached {
    host: String,
    sites: Arc<FaultSites>,
    crash_entropy: Arc<dyn Entropy>,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

type DirId = u64;
type FileId = u64;
const ROOT: DirId = 0;

#[derive(Debug)]
struct Tree {
    dirs: BTreeMap<DirId, Directory>,
    next_id: u64,
}

#[derive(Debug, Default, Clone)]
struct Directory {
    /// What `list` and path lookups see.
    live: BTreeMap<String, Node>,
    /// What a crash keeps: `live` as of the last `sync_dir`.
    durable: BTreeMap<String, Node>,
}

#[derive(Debug, Clone)]
enum Node {
    File(Arc<Inode>),
    Dir(DirId),
}

impl Node {
    /// Identity, for telling whether a crash changed what a name points to.
    fn key(&self) -> (bool, u64) {
        match self {
            Node::File(inode) => (false, inode.id),
            Node::Dir(id) => (true, *id),
        }
    }
}

#[derive(Debug)]
struct Inode {
    id: FileId,
    contents: Mutex<Contents>,
}

#[derive(Debug, Default)]
struct Contents {
    /// What reads see: `durable` with every pending operation applied.
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Debug, Clone)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl Pending {
    fn apply(&self, bytes: &mut Vec<u8>) {
        match self {
            Pending::Write { offset, data } => write_into(bytes, *offset, data),
            Pending::SetLen(len) => bytes.resize(to_index(*len), 0),
        }
    }
}

fn to_index(position: u64) -> usize {
    usize::try_from(position).unwrap_or(usize::MAX)
}

/// Writes `data` at `offset`, zero-filling any gap before it.
fn write_into(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = to_index(offset);
    let end = start.saturating_add(data.len());
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[start..end].copy_from_slice(data);
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} does not exist", path.display()),
    )
}

fn already_exists(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{} {what}", path.display()),
    )
}

/// The names along `path` from the root. Relative paths count from the root, as on
/// `MemDisk`; `..` is refused rather than resolved.
fn components(path: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => names.push(name.to_string_lossy().into_owned()),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a plain absolute path", path.display()),
                ));
            }
        }
    }
    Ok(names)
}

impl Default for SimDisk {
    fn default() -> SimDisk {
        SimDisk::new()
    }
}

impl SimDisk {
    /// An empty disk: only the root directory, which always exists.
    pub fn new() -> SimDisk {
        SimDisk {
            tree: Mutex::new(Tree {
                dirs: BTreeMap::from([(ROOT, Directory::default())]),
                next_id: ROOT + 1,
            }),
            generation: Arc::new(AtomicU64::new(0)),
            faults: Mutex::new(None),
            halted: Mutex::new(None),
            point_crash: Mutex::new(None),
        }
    }

    /// Sends this disk's crash points and buggify sites to `sites`, as host `host`'s. A crash
    /// point that fires crashes the disk with a random policy drawn from `crash_entropy` and
    /// halts it (see the module docs). Attaching again replaces the earlier attachment.
    pub fn attach_fault_sites(
        &self,
        host: &str,
        sites: Arc<FaultSites>,
        crash_entropy: Arc<dyn Entropy>,
    ) {
        *lock(&self.faults) = Some(Attached {
            host: host.to_owned(),
            sites,
            crash_entropy,
        });
    }

    /// What the crash at a crash point did, once (None if no point fired since last taken).
    pub fn take_point_crash(&self) -> Option<CrashReport> {
        lock(&self.point_crash).take()
    }

    /// The crash point the disk crashed and halted at, if it is halted.
    pub fn halted_at(&self) -> Option<&'static str> {
        *lock(&self.halted)
    }

    /// Ends the halt after a crash point fired: the restarted host may use the disk again
    /// (handles opened before the crash still fail).
    pub fn resume(&self) {
        *lock(&self.halted) = None;
    }

    /// Fails while the disk is halted at a crash point.
    fn check_running(&self) -> io::Result<()> {
        match self.halted_at() {
            None => Ok(()),
            Some(site) => Err(io::Error::other(format!(
                "host crashed at crash point {site}"
            ))),
        }
    }

    /// Creates `path` and its missing ancestors and makes all of them durable, as an operator
    /// prepares a data directory before the first start.
    pub fn prepare_dir(&self, path: &Path) -> io::Result<()> {
        self.create_dir_all(path)?;
        let mut tree = lock(&self.tree);
        let mut dir = ROOT;
        for name in components(path)? {
            let directory = tree.dir_mut(dir);
            directory.durable = directory.live.clone();
            dir = match directory.live.get(&name) {
                Some(Node::Dir(child)) => *child,
                _ => return Err(not_found(path)),
            };
        }
        let directory = tree.dir_mut(dir);
        directory.durable = directory.live.clone();
        Ok(())
    }

    /// How many crashes this disk has been through.
    pub fn crashes(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Crashes the disk, each file's fate drawn from `entropy` (see the module docs).
    pub fn crash(&self, entropy: &dyn Entropy) -> CrashReport {
        self.crash_with(CrashPolicy::Random, entropy)
    }

    /// Crashes the disk with a chosen policy. Open handles stop working; reopen files after.
    pub fn crash_with(&self, policy: CrashPolicy, entropy: &dyn Entropy) -> CrashReport {
        let mut tree = lock(&self.tree);
        // Bumped under the tree lock and before any file is touched: a handle checks the
        // generation under its file's lock, so an operation either lands before the crash
        // resolves that file or fails.
        self.generation.fetch_add(1, Ordering::SeqCst);
        let before = tree.flatten(|directory| &directory.live);

        // Walk the durable tree from the root: only what is reachable survives.
        let mut reachable_dirs = BTreeSet::new();
        let mut files: BTreeMap<FileId, (PathBuf, Arc<Inode>)> = BTreeMap::new();
        let mut stack = vec![(ROOT, PathBuf::from("/"))];
        while let Some((dir, path)) = stack.pop() {
            reachable_dirs.insert(dir);
            for (name, node) in &tree.dir(dir).durable {
                match node {
                    Node::Dir(child) => stack.push((*child, path.join(name))),
                    Node::File(inode) => {
                        files
                            .entry(inode.id)
                            .or_insert_with(|| (path.join(name), Arc::clone(inode)));
                    }
                }
            }
        }
        tree.dirs.retain(|id, _| reachable_dirs.contains(id));
        for directory in tree.dirs.values_mut() {
            directory.live = directory.durable.clone();
        }

        // Files in path order, so the entropy stream is consumed the same way every replay.
        let mut by_path: Vec<(PathBuf, Arc<Inode>)> = files.into_values().collect();
        by_path.sort_by(|a, b| a.0.cmp(&b.0));
        let mut report = CrashReport::default();
        for (path, inode) in by_path {
            let mut contents = lock(&inode.contents);
            if let Some(outcome) = contents.crash(policy, entropy) {
                report.files.push(FileCrash { path, ..outcome });
            }
        }

        let after = tree.flatten(|directory| &directory.live);
        let paths: BTreeSet<&PathBuf> = before.keys().chain(after.keys()).collect();
        report.reverted = paths
            .into_iter()
            .filter(|path| before.get(*path) != after.get(*path))
            .cloned()
            .collect();
        report
    }
}

impl Tree {
    // Every DirId reachable through `live` or `durable` entries is in the arena: an id leaves
    // it only when a crash, a removal or a directory sync finds it unreachable from both. So
    // the lookups below cannot miss for an id read from the tree.

    fn dir(&self, id: DirId) -> &Directory {
        &self.dirs[&id]
    }

    fn dir_mut(&mut self, id: DirId) -> &mut Directory {
        self.dirs
            .get_mut(&id)
            .expect("a directory id read from the tree is in the arena")
    }

    fn allocate(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The live directory at `path`.
    fn find_dir(&self, path: &Path) -> io::Result<DirId> {
        let mut dir = ROOT;
        for name in components(path)? {
            dir = match self.dir(dir).live.get(&name) {
                Some(Node::Dir(child)) => *child,
                _ => return Err(not_found(path)),
            };
        }
        Ok(dir)
    }

    /// The live directory holding `path`, and the last name of `path`.
    fn find_parent(&self, path: &Path) -> io::Result<(DirId, String)> {
        let mut names = components(path)?;
        let name = names.pop().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} names no entry", path.display()),
            )
        })?;
        let mut dir = ROOT;
        for parent in names {
            dir = match self.dir(dir).live.get(&parent) {
                Some(Node::Dir(child)) => *child,
                _ => return Err(not_found(path)),
            };
        }
        Ok((dir, name))
    }

    fn lookup(&self, path: &Path) -> Option<Node> {
        let names = components(path).ok()?;
        let mut node = Node::Dir(ROOT);
        for name in names {
            let Node::Dir(dir) = node else {
                return None;
            };
            node = self.dir(dir).live.get(&name)?.clone();
        }
        Some(node)
    }

    /// Every path and what it names, following `entries` from the root.
    fn flatten(
        &self,
        entries: impl Fn(&Directory) -> &BTreeMap<String, Node>,
    ) -> BTreeMap<PathBuf, (bool, u64)> {
        let mut out = BTreeMap::new();
        let mut stack = vec![(ROOT, PathBuf::from("/"))];
        while let Some((dir, path)) = stack.pop() {
            let Some(directory) = self.dirs.get(&dir) else {
                continue;
            };
            for (name, node) in entries(directory) {
                let child = path.join(name);
                out.insert(child.clone(), node.key());
                if let Node::Dir(id) = node {
                    stack.push((*id, child));
                }
            }
        }
        out
    }

    /// Drops directories that neither the live nor the durable tree can reach any more.
    fn collect_garbage(&mut self) {
        let mut reachable = BTreeSet::new();
        let mut stack = vec![ROOT];
        while let Some(dir) = stack.pop() {
            if !reachable.insert(dir) {
                continue;
            }
            if let Some(directory) = self.dirs.get(&dir) {
                for node in directory.live.values().chain(directory.durable.values()) {
                    if let Node::Dir(child) = node {
                        stack.push(*child);
                    }
                }
            }
        }
        self.dirs.retain(|id, _| reachable.contains(id));
    }
}

impl Contents {
    fn apply(&mut self, operation: Pending) {
        operation.apply(&mut self.live);
        self.pending.push(operation);
    }

    fn sync(&mut self) {
        for operation in self.pending.drain(..) {
            operation.apply(&mut self.durable);
        }
        debug_assert_eq!(self.durable, self.live);
    }

    /// Resolves the pending operations as a crash would; `None` when there were none.
    fn crash(&mut self, policy: CrashPolicy, entropy: &dyn Entropy) -> Option<FileCrash> {
        let pending = std::mem::take(&mut self.pending);
        // No pending operation: nothing to lose (and `live` already equals `durable`).
        let (last, whole) = pending.split_last()?;
        let mode = match policy {
            CrashPolicy::Always(mode) => mode,
            CrashPolicy::Random => CrashMode::ALL[below(entropy, 4) as usize],
        };
        let count = pending.len();
        let mut kept = 0;
        let mut torn = None;
        match mode {
            CrashMode::DropAll => {}
            CrashMode::KeepPrefix => {
                kept = below(entropy, count as u64 + 1) as usize;
                pending[..kept]
                    .iter()
                    .for_each(|operation| operation.apply(&mut self.durable));
            }
            CrashMode::KeepSubset => {
                for operation in &pending {
                    if coin(entropy) {
                        operation.apply(&mut self.durable);
                        kept += 1;
                    }
                }
            }
            CrashMode::TearLast => {
                whole
                    .iter()
                    .for_each(|operation| operation.apply(&mut self.durable));
                kept = whole.len();
                match last {
                    Pending::Write { offset, data } => {
                        // At least one byte is lost: a tear that keeps everything is no tear.
                        let kept_bytes = below(entropy, data.len() as u64) as usize;
                        if kept_bytes > 0 {
                            write_into(&mut self.durable, *offset, &data[..kept_bytes]);
                        }
                        torn = Some(TornWrite {
                            offset: *offset,
                            len: data.len(),
                            kept_bytes,
                        });
                    }
                    Pending::SetLen(_) => {
                        if coin(entropy) {
                            last.apply(&mut self.durable);
                            kept += 1;
                        }
                    }
                }
            }
        }
        self.live.clone_from(&self.durable);
        Some(FileCrash {
            path: PathBuf::new(),
            mode,
            pending: count,
            kept,
            torn,
        })
    }
}

impl Disk for SimDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>> {
        self.check_running()?;
        let mut tree = lock(&self.tree);
        let (dir, name) = tree.find_parent(path)?;
        let inode = match tree.dir(dir).live.get(&name) {
            Some(Node::File(_)) if mode == OpenMode::CreateNew => {
                return Err(already_exists(path, "already exists"));
            }
            Some(Node::File(inode)) => Arc::clone(inode),
            Some(Node::Dir(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("{} is a directory", path.display()),
                ));
            }
            None if mode == OpenMode::Existing => return Err(not_found(path)),
            None => {
                let inode = Arc::new(Inode {
                    id: tree.allocate(),
                    contents: Mutex::new(Contents::default()),
                });
                tree.dir_mut(dir)
                    .live
                    .insert(name, Node::File(Arc::clone(&inode)));
                inode
            }
        };
        Ok(Box::new(SimFile {
            inode,
            generation: self.generation.load(Ordering::SeqCst),
            current_generation: Arc::clone(&self.generation),
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check_running()?;
        let mut tree = lock(&self.tree);
        let mut dir = ROOT;
        let mut walked = PathBuf::from("/");
        for name in components(path)? {
            walked.push(&name);
            dir = match tree.dir(dir).live.get(&name) {
                Some(Node::Dir(child)) => *child,
                Some(Node::File(_)) => return Err(already_exists(&walked, "is a file")),
                None => {
                    let child = tree.allocate();
                    tree.dirs.insert(child, Directory::default());
                    tree.dir_mut(dir).live.insert(name, Node::Dir(child));
                    child
                }
            };
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check_running()?;
        let mut tree = lock(&self.tree);
        let (from_dir, from_name) = tree.find_parent(from)?;
        let (to_dir, to_name) = tree.find_parent(to)?;
        match tree.dir(from_dir).live.get(&from_name) {
            Some(Node::File(_)) => {}
            Some(Node::Dir(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("{}: SimDisk renames files only", from.display()),
                ));
            }
            None => return Err(not_found(from)),
        }
        if let Some(Node::Dir(_)) = tree.dir(to_dir).live.get(&to_name) {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a directory", to.display()),
            ));
        }
        let node = tree
            .dir_mut(from_dir)
            .live
            .remove(&from_name)
            .ok_or_else(|| not_found(from))?;
        tree.dir_mut(to_dir).live.insert(to_name, node);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check_running()?;
        let mut tree = lock(&self.tree);
        let (dir, name) = tree.find_parent(path)?;
        match tree.dir(dir).live.get(&name) {
            Some(Node::File(_)) => {
                tree.dir_mut(dir).live.remove(&name);
                Ok(())
            }
            Some(Node::Dir(_)) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a directory", path.display()),
            )),
            None => Err(not_found(path)),
        }
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check_running()?;
        let mut tree = lock(&self.tree);
        let (dir, name) = tree.find_parent(path)?;
        match tree.dir(dir).live.get(&name) {
            Some(Node::Dir(_)) => {
                tree.dir_mut(dir).live.remove(&name);
                tree.collect_garbage();
                Ok(())
            }
            _ => Err(not_found(path)),
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.check_running()?;
        let tree = lock(&self.tree);
        let found = tree.find_dir(dir)?;
        // BTreeMap keys: already sorted.
        Ok(tree.dir(found).live.keys().cloned().collect())
    }

    fn exists(&self, path: &Path) -> bool {
        self.check_running().is_ok() && lock(&self.tree).lookup(path).is_some()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check_running()?;
        let mut tree = lock(&self.tree);
        let found = tree.find_dir(dir)?;
        let directory = tree.dir_mut(found);
        directory.durable = directory.live.clone();
        // Directories that only the old durable entries reached are unreachable now.
        tree.collect_garbage();
        Ok(())
    }

    /// Counts the hit; if it fires an armed point, crashes the disk now and halts it. A halted
    /// disk's hits are not counted: they belong to an incarnation that is already gone.
    fn crash_point(&self, site: &'static str) {
        let Some(attached) = lock(&self.faults).clone() else {
            return;
        };
        if self.halted_at().is_some() || !attached.sites.hit(&attached.host, site) {
            return;
        }
        *lock(&self.halted) = Some(site);
        let report = self.crash_with(CrashPolicy::Random, attached.crash_entropy.as_ref());
        *lock(&self.point_crash) = Some(report);
    }

    fn buggify(&self, site: &'static str) -> bool {
        let Some(attached) = lock(&self.faults).clone() else {
            return false;
        };
        self.halted_at().is_none() && attached.sites.buggify(&attached.host, site)
    }
}

/// A handle from [`SimDisk::open`]. Positional, so one handle serves many readers; it keeps
/// working after its file is renamed or removed, until the disk crashes.
struct SimFile {
    inode: Arc<Inode>,
    generation: u64,
    current_generation: Arc<AtomicU64>,
}

impl SimFile {
    /// The file's contents, unless the disk crashed since this handle was opened.
    fn contents(&self) -> io::Result<MutexGuard<'_, Contents>> {
        let contents = lock(&self.inode.contents);
        if self.current_generation.load(Ordering::SeqCst) == self.generation {
            Ok(contents)
        } else {
            Err(io::Error::other(
                "the disk crashed since this file was opened",
            ))
        }
    }
}

impl DiskFile for SimFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let contents = self.contents()?;
        let start = to_index(offset).min(contents.live.len());
        let available = (contents.live.len() - start).min(buf.len());
        buf[..available].copy_from_slice(&contents.live[start..start + available]);
        Ok(available)
    }

    fn read_append(&self, offset: u64, length: usize, out: &mut BytesMut) -> io::Result<()> {
        let contents = self.contents()?;
        let start = to_index(offset);
        match start.checked_add(length) {
            Some(end) if end <= contents.live.len() => {
                out.extend_from_slice(&contents.live[start..end]);
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "wanted {length} bytes at offset {offset}, file has {}",
                    contents.live.len().saturating_sub(start)
                ),
            )),
        }
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.contents()?.apply(Pending::Write {
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.contents()?.apply(Pending::SetLen(len));
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.contents()?.live.len() as u64)
    }

    fn sync(&self) -> io::Result<()> {
        self.contents()?.sync();
        Ok(())
    }
}
