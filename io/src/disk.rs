//! Files: positional reads and writes, truncation, fsync, and the directory operations a log
//! needs for crash-safe swaps (write, sync, rename, sync the directory).
//!
//! Two implementations: [`StdDisk`] on the real file system and [`MemDisk`] in memory. The
//! simulator adds a third that keeps durable and pending bytes apart and can crash.

use std::collections::{BTreeMap, BTreeSet};

use bytes::BytesMut;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// How [`Disk::open`] treats a missing or an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist.
    Existing,
    /// Opens the file, creating it empty when missing.
    CreateOrOpen,
    /// Creates the file; fails with `AlreadyExists` when it exists.
    CreateNew,
}

/// An open file. Reads and writes are positional, so one handle serves many readers.
pub trait DiskFile: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `data` at `offset`, growing the file (zero-filled) when needed.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    /// Makes every write so far durable (data and size), like `fsync`.
    fn sync(&self) -> io::Result<()>;

    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Fills `buf` from `offset`, failing with `UnexpectedEof` if the file is too short.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let read = self.read_at(offset, buf)?;
        if read == buf.len() {
            Ok(())
        } else {
            Err(short_read(offset, buf.len(), read))
        }
    }

    /// Appends exactly `length` bytes from `offset` to `out`. The fetch path reads into a
    /// buffer it reuses across requests (fresh memory costs a page fault per 4 KiB), and
    /// implementations that can copy without zero-filling first override this.
    fn read_append(&self, offset: u64, length: usize, out: &mut BytesMut) -> io::Result<()> {
        let start = out.len();
        out.resize(start + length, 0);
        let read = self.read_exact_at(offset, &mut out[start..]);
        if read.is_err() {
            out.truncate(start);
        }
        read
    }
}

fn short_read(offset: u64, wanted: usize, read: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("wanted {wanted} bytes at offset {offset}, file has {read}"),
    )
}

/// The only way code that may run in the simulation touches files.
pub trait Disk: Send + Sync + 'static {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>>;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Atomically replaces `to` with `from` (durable only after [`Disk::sync_dir`]).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries directly inside `dir`, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn exists(&self, path: &Path) -> bool;
    /// Makes creations, renames and removals inside `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// A named step between two writes that must both land (a crash point, DESIGN.md §7):
    /// the simulator's disk may crash its host right here, to test what recovery makes of the
    /// state in between. Real disks do nothing. Call it through [`crate::crash_point!`].
    fn crash_point(&self, _site: &'static str) {}

    /// Whether to misbehave at the named site now: take a legal but unusual path a real Kafka
    /// broker can take too (a short fetch, a retriable refusal), so clients are tested against
    /// it. Only the simulator's disk ever answers yes, and only when its scenario enables
    /// buggify; real disks answer no. Call it through [`crate::buggify!`].
    fn buggify(&self, _site: &'static str) -> bool {
        false
    }
}

/// The real file system through `std::fs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdDisk;

#[derive(Debug)]
struct StdFile(std::fs::File);

impl Disk for StdDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>> {
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true);
        match mode {
            OpenMode::Existing => {}
            OpenMode::CreateOrOpen => {
                options.create(true);
            }
            OpenMode::CreateNew => {
                options.create_new(true);
            }
        }
        Ok(Box::new(StdFile(options.open(path)?)))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
}

impl DiskFile for StdFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut filled = 0;
        while filled < buf.len() {
            match self.0.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(filled)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.0.write_all_at(data, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn sync(&self) -> io::Result<()> {
        self.0.sync_all()
    }
}

/// Files in memory. Directories must exist before files are created in them, renames replace,
/// and open handles keep working after a rename or removal, as on a POSIX file system.
#[derive(Debug, Default)]
pub struct MemDisk {
    tree: RwLock<MemTree>,
}

#[derive(Debug, Default)]
struct MemTree {
    directories: BTreeSet<PathBuf>,
    files: BTreeMap<PathBuf, Arc<MemFile>>,
}

/// Bytes in chunks that double from 4 KiB up to 1 MiB, then stay at 1 MiB: a small file (an
/// index, a quiet partition) stays small, a large one grows without copying what it holds.
/// Chunks are filled by appending, so appended bytes are written once, never zero-filled first.
#[derive(Debug, Default)]
struct MemFile {
    data: RwLock<ChunkedBytes>,
}

/// **Invariant:** every chunk but the last is full, and the chunks hold exactly `len` bytes.
#[derive(Debug, Default)]
struct ChunkedBytes {
    chunks: Vec<Vec<u8>>,
    len: u64,
}

const FIRST_CHUNK_BYTES: u64 = 4096;
/// Chunks 0..DOUBLING_CHUNKS double in size (4 KiB … 512 KiB); later ones are all LARGE.
const DOUBLING_CHUNKS: usize = 8;
const LARGE_CHUNK_BYTES: u64 = 1 << 20;
/// Bytes held by the doubling chunks together.
const DOUBLING_BYTES: u64 = FIRST_CHUNK_BYTES * ((1 << DOUBLING_CHUNKS) - 1);

/// The handle returned by [`MemDisk::open`].
#[derive(Debug)]
struct MemHandle(Arc<MemFile>);

fn write_lock<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read_lock<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} does not exist", path.display()),
    )
}

impl MemDisk {
    pub fn new() -> MemDisk {
        let disk = MemDisk::default();
        write_lock(&disk.tree)
            .directories
            .insert(PathBuf::from("/"));
        disk
    }
}

impl MemTree {
    fn parent_exists(&self, path: &Path) -> bool {
        match path.parent() {
            None => true,
            Some(parent) if parent.as_os_str().is_empty() => true,
            Some(parent) => self.directories.contains(parent),
        }
    }
}

impl Disk for MemDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>> {
        let mut tree = write_lock(&self.tree);
        if let Some(file) = tree.files.get(path) {
            if mode == OpenMode::CreateNew {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} already exists", path.display()),
                ));
            }
            return Ok(Box::new(MemHandle(Arc::clone(file))));
        }
        if mode == OpenMode::Existing || !tree.parent_exists(path) {
            return Err(not_found(path));
        }
        let file = Arc::new(MemFile::default());
        tree.files.insert(path.to_path_buf(), Arc::clone(&file));
        Ok(Box::new(MemHandle(file)))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut tree = write_lock(&self.tree);
        for ancestor in path.ancestors() {
            if ancestor.as_os_str().is_empty() {
                continue;
            }
            if tree.files.contains_key(ancestor) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is a file", ancestor.display()),
                ));
            }
            tree.directories.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut tree = write_lock(&self.tree);
        if !tree.parent_exists(to) {
            return Err(not_found(to));
        }
        let file = tree.files.remove(from).ok_or_else(|| not_found(from))?;
        tree.files.insert(to.to_path_buf(), file);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut tree = write_lock(&self.tree);
        tree.files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut tree = write_lock(&self.tree);
        if !tree.directories.contains(path) {
            return Err(not_found(path));
        }
        tree.files.retain(|file, _| !file.starts_with(path));
        tree.directories
            .retain(|directory| !directory.starts_with(path));
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let tree = read_lock(&self.tree);
        if !tree.directories.contains(dir) {
            return Err(not_found(dir));
        }
        let in_dir = |path: &&PathBuf| path.parent() == Some(dir);
        let mut names: Vec<String> = tree
            .files
            .keys()
            .filter(in_dir)
            .chain(tree.directories.iter().filter(in_dir))
            .filter_map(|path| path.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        let tree = read_lock(&self.tree);
        tree.files.contains_key(path) || tree.directories.contains(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if read_lock(&self.tree).directories.contains(dir) {
            Ok(())
        } else {
            Err(not_found(dir))
        }
    }
}

impl ChunkedBytes {
    fn chunk_capacity(index: usize) -> usize {
        if index < DOUBLING_CHUNKS {
            (FIRST_CHUNK_BYTES << index) as usize
        } else {
            LARGE_CHUNK_BYTES as usize
        }
    }

    /// The chunk holding byte `position`, and where in it.
    fn locate(position: u64) -> (usize, usize) {
        if position < DOUBLING_BYTES {
            let index = (position / FIRST_CHUNK_BYTES + 1).ilog2() as usize;
            let start = FIRST_CHUNK_BYTES * ((1 << index) - 1);
            (index, (position - start) as usize)
        } else {
            let beyond = position - DOUBLING_BYTES;
            let index = DOUBLING_CHUNKS + (beyond / LARGE_CHUNK_BYTES) as usize;
            (index, (beyond % LARGE_CHUNK_BYTES) as usize)
        }
    }

    /// Calls `visit` with the stored slices covering `offset..offset + length`, in order.
    fn for_each_slice(&self, offset: u64, length: usize, mut visit: impl FnMut(&[u8])) {
        let mut position = offset;
        let end = offset + length as u64;
        while position < end {
            let (index, within) = ChunkedBytes::locate(position);
            let chunk = &self.chunks[index];
            let take = (chunk.len() - within).min((end - position) as usize);
            visit(&chunk[within..within + take]);
            position += take as u64;
        }
    }

    fn readable(&self, offset: u64, wanted: usize) -> usize {
        if offset >= self.len {
            0
        } else {
            wanted.min((self.len - offset) as usize)
        }
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> usize {
        let length = self.readable(offset, buf.len());
        let mut copied = 0;
        self.for_each_slice(offset, length, |slice| {
            buf[copied..copied + slice.len()].copy_from_slice(slice);
            copied += slice.len();
        });
        length
    }

    /// Appends `data`, or `zeros` zero bytes when `data` is empty.
    fn append(&mut self, data: &[u8], zeros: usize) {
        let total = if data.is_empty() { zeros } else { data.len() };
        let mut done = 0;
        while done < total {
            let index = self.chunks.len();
            let room = self
                .chunks
                .last()
                .map_or(0, |last| last.capacity() - last.len());
            if room == 0 {
                self.chunks
                    .push(Vec::with_capacity(ChunkedBytes::chunk_capacity(index)));
                continue;
            }
            let take = room.min(total - done);
            let last = self.chunks.last_mut().expect("a chunk with room");
            if data.is_empty() {
                last.resize(last.len() + take, 0);
            } else {
                last.extend_from_slice(&data[done..done + take]);
            }
            done += take;
        }
        self.len += total as u64;
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset > self.len {
            self.append(&[], (offset - self.len) as usize);
        }
        // Overwrite what exists, then append the rest.
        let overlap = self.readable(offset, data.len());
        let mut written = 0;
        while written < overlap {
            let (index, within) = ChunkedBytes::locate(offset + written as u64);
            let chunk = &mut self.chunks[index];
            let take = (chunk.len() - within).min(overlap - written);
            chunk[within..within + take].copy_from_slice(&data[written..written + take]);
            written += take;
        }
        if overlap < data.len() {
            self.append(&data[overlap..], 0);
        }
    }

    fn truncate_or_extend(&mut self, len: u64) {
        if len >= self.len {
            self.append(&[], (len - self.len) as usize);
            return;
        }
        let (index, within) = ChunkedBytes::locate(len);
        if within == 0 {
            self.chunks.truncate(index);
        } else {
            self.chunks.truncate(index + 1);
            self.chunks[index].truncate(within);
        }
        self.len = len;
    }
}

impl DiskFile for MemHandle {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        Ok(read_lock(&self.0.data).read(offset, buf))
    }

    fn read_append(&self, offset: u64, length: usize, out: &mut BytesMut) -> io::Result<()> {
        let data = read_lock(&self.0.data);
        let available = data.readable(offset, length);
        if available < length {
            return Err(short_read(offset, length, available));
        }
        out.reserve(length);
        data.for_each_slice(offset, length, |slice| out.extend_from_slice(slice));
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        write_lock(&self.0.data).write(offset, data);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        write_lock(&self.0.data).truncate_or_extend(len);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(read_lock(&self.0.data).len)
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_disks_never_crash_at_a_point_nor_misbehave() {
        let mem = MemDisk::new();
        crate::crash_point!(mem, "test.point");
        assert!(!crate::buggify!(mem, "test.site"));
        let shared: Arc<dyn Disk> = Arc::new(StdDisk);
        crate::crash_point!(shared, "test.point");
        assert!(!crate::buggify!(shared, "test.site"));
        let borrowed: &dyn Disk = &mem;
        assert!(!crate::buggify!(borrowed, "test.site"));
    }

    /// Every behaviour below must hold for both implementations.
    fn exercise(disk: &dyn Disk, root: &Path) {
        let dir = root.join("topic-0");
        disk.create_dir_all(&dir).unwrap();
        let path = dir.join("00000000000000000000.log");
        let file = disk.open(&path, OpenMode::CreateNew).unwrap();
        assert!(disk.open(&path, OpenMode::CreateNew).is_err());

        file.write_at(0, b"hello").unwrap();
        file.write_at(70_000, b"far").unwrap();
        assert_eq!(file.len().unwrap(), 70_003);
        let mut gap = [9u8; 4];
        file.read_exact_at(100, &mut gap).unwrap();
        assert_eq!(gap, [0; 4], "a gap reads as zeros");

        let mut across = vec![0u8; 70_003];
        file.read_exact_at(0, &mut across).unwrap();
        assert_eq!(&across[..5], b"hello");
        assert_eq!(&across[70_000..], b"far");

        file.set_len(3).unwrap();
        file.set_len(10).unwrap();
        let mut regrown = [1u8; 10];
        file.read_exact_at(0, &mut regrown).unwrap();
        assert_eq!(&regrown, b"hel\0\0\0\0\0\0\0", "bytes cut off stay gone");
        let mut past_end = [0u8; 4];
        assert_eq!(file.read_at(8, &mut past_end).unwrap(), 2);
        assert!(file.read_exact_at(8, &mut past_end).is_err());
        file.sync().unwrap();

        let renamed = dir.join("00000000000000000000.log.swap");
        disk.rename(&path, &renamed).unwrap();
        assert!(!disk.exists(&path));
        assert_eq!(
            disk.list(&dir).unwrap(),
            vec!["00000000000000000000.log.swap"]
        );
        assert_eq!(file.len().unwrap(), 10, "an open handle survives a rename");
        disk.sync_dir(&dir).unwrap();

        assert!(
            disk.open(&root.join("missing/file"), OpenMode::CreateOrOpen)
                .is_err()
        );
        assert!(disk.open(&path, OpenMode::Existing).is_err());
        disk.remove_file(&renamed).unwrap();
        assert!(disk.list(&dir).unwrap().is_empty());
        disk.remove_dir_all(&dir).unwrap();
        assert!(!disk.exists(&dir));
    }

    #[test]
    fn memory_disk_behaves_like_a_file_system() {
        exercise(&MemDisk::new(), Path::new("/data"));
    }

    #[test]
    fn real_disk_behaves_like_a_file_system() {
        let root = std::env::temp_dir().join(format!("tidepool-io-test-{}", std::process::id()));
        exercise(&StdDisk, &root);
        std::fs::remove_dir_all(&root).unwrap();
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Operation {
            Write {
                offset: u64,
                length: usize,
                fill: u8,
            },
            SetLen(u64),
            Read {
                offset: u64,
                length: usize,
            },
        }

        /// Offsets and lengths that cross the 4 KiB … 1 MiB chunk boundaries.
        fn operation() -> impl Strategy<Value = Operation> {
            let offset = prop_oneof![
                0..10_000u64,
                1_040_000..1_050_000u64,
                2_090_000..2_100_000u64
            ];
            prop_oneof![
                (offset.clone(), 0..70_000usize, any::<u8>()).prop_map(|(offset, length, fill)| {
                    Operation::Write {
                        offset,
                        length,
                        fill,
                    }
                }),
                offset.clone().prop_map(Operation::SetLen),
                (offset, 0..70_000usize)
                    .prop_map(|(offset, length)| Operation::Read { offset, length }),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn memory_files_read_back_what_a_plain_vector_would(operations in proptest::collection::vec(operation(), 1..24)) {
                let disk = MemDisk::new();
                let file = disk.open(Path::new("/f"), OpenMode::CreateNew).unwrap();
                let mut expected: Vec<u8> = Vec::new();
                for operation in operations {
                    match operation {
                        Operation::Write { offset, length, fill } => {
                            let data = vec![fill; length];
                            file.write_at(offset, &data).unwrap();
                            let end = offset as usize + length;
                            if expected.len() < end {
                                expected.resize(end, 0);
                            }
                            expected[offset as usize..end].copy_from_slice(&data);
                        }
                        Operation::SetLen(len) => {
                            file.set_len(len).unwrap();
                            expected.resize(len as usize, 0);
                        }
                        Operation::Read { offset, length } => {
                            let available = expected.len().saturating_sub(offset as usize).min(length);
                            let mut buf = vec![0xee; length];
                            prop_assert_eq!(file.read_at(offset, &mut buf).unwrap(), available);
                            let start = (offset as usize).min(expected.len());
                            prop_assert_eq!(&buf[..available], &expected[start..start + available]);
                            let mut appended = BytesMut::from(&b"prefix"[..]);
                            let result = file.read_append(offset, length, &mut appended);
                            prop_assert_eq!(result.is_ok(), available == length);
                            if available == length {
                                prop_assert_eq!(&appended[6..], &buf[..]);
                            } else {
                                prop_assert_eq!(&appended[..], b"prefix");
                            }
                        }
                    }
                    prop_assert_eq!(file.len().unwrap(), expected.len() as u64);
                }
            }
        }
    }
}
