use super::*;
use crate::env::entropy::{RunSeed, SimEntropy};

fn entropy(seed: u64) -> SimEntropy {
    RunSeed::new(seed).stream("disk-test")
}

fn read_all(disk: &SimDisk, path: &str) -> Vec<u8> {
    let file = disk.open(Path::new(path), OpenMode::Existing).unwrap();
    let mut buf = vec![0; file.len().unwrap() as usize];
    file.read_exact_at(0, &mut buf).unwrap();
    buf
}

/// A disk with a durable `/data` directory, as an operator would prepare it.
fn prepared() -> SimDisk {
    let disk = SimDisk::new();
    disk.prepare_dir(Path::new("/data")).unwrap();
    disk
}

/// `/data/f` created, its entry durable, holding `durable` synced; returns its handle.
fn durable_file(disk: &SimDisk, durable: &[u8]) -> Box<dyn DiskFile> {
    let file = disk
        .open(Path::new("/data/f"), OpenMode::CreateNew)
        .unwrap();
    file.write_at(0, durable).unwrap();
    file.sync().unwrap();
    disk.sync_dir(Path::new("/data")).unwrap();
    file
}

#[test]
fn behaves_like_a_file_system_before_any_crash() {
    let disk = SimDisk::new();
    let dir = Path::new("/data/topic-0");
    disk.create_dir_all(dir).unwrap();
    let path = dir.join("00000000000000000000.log");
    let file = disk.open(&path, OpenMode::CreateNew).unwrap();
    assert_eq!(
        disk.open(&path, OpenMode::CreateNew).err().unwrap().kind(),
        io::ErrorKind::AlreadyExists
    );

    file.write_at(0, b"hello").unwrap();
    file.write_at(70_000, b"far").unwrap();
    assert_eq!(file.len().unwrap(), 70_003);
    let mut gap = [9u8; 4];
    file.read_exact_at(100, &mut gap).unwrap();
    assert_eq!(gap, [0; 4], "a gap reads as zeros");

    file.set_len(3).unwrap();
    file.set_len(10).unwrap();
    let mut regrown = [1u8; 10];
    file.read_exact_at(0, &mut regrown).unwrap();
    assert_eq!(&regrown, b"hel\0\0\0\0\0\0\0", "bytes cut off stay gone");
    let mut past_end = [0u8; 4];
    assert_eq!(file.read_at(8, &mut past_end).unwrap(), 2);
    assert!(file.read_exact_at(8, &mut past_end).is_err());
    let mut appended = BytesMut::from(&b">"[..]);
    file.read_append(1, 2, &mut appended).unwrap();
    assert_eq!(&appended[..], b">el");
    assert!(file.read_append(8, 4, &mut appended).is_err());
    assert_eq!(
        &appended[..],
        b">el",
        "a failed append leaves the buffer alone"
    );

    let renamed = dir.join("00000000000000000000.log.swap");
    disk.rename(&path, &renamed).unwrap();
    assert!(!disk.exists(&path));
    assert_eq!(
        disk.list(dir).unwrap(),
        vec!["00000000000000000000.log.swap"]
    );
    assert_eq!(file.len().unwrap(), 10, "an open handle survives a rename");
    assert_eq!(disk.list(Path::new("/data")).unwrap(), vec!["topic-0"]);

    assert!(
        disk.open(Path::new("/data/missing/file"), OpenMode::CreateOrOpen)
            .is_err()
    );
    assert!(disk.open(&path, OpenMode::Existing).is_err());
    assert!(
        disk.open(dir, OpenMode::CreateOrOpen).is_err(),
        "a directory"
    );
    assert!(disk.create_dir_all(&renamed.join("below")).is_err());
    disk.remove_file(&renamed).unwrap();
    assert!(disk.list(dir).unwrap().is_empty());
    assert!(disk.remove_file(&renamed).is_err());
    disk.remove_dir_all(dir).unwrap();
    assert!(!disk.exists(dir));
    assert!(disk.list(dir).is_err());
    assert!(disk.sync_dir(dir).is_err());
    assert!(disk.exists(Path::new("/")));
}

#[test]
fn reads_see_pending_writes_and_a_sync_makes_them_survive_any_crash() {
    for mode in CrashMode::ALL {
        let disk = prepared();
        let file = durable_file(&disk, b"");
        file.write_at(0, b"abc").unwrap();
        file.write_at(3, b"def").unwrap();
        assert_eq!(read_all(&disk, "/data/f"), b"abcdef", "the page cache");
        file.sync().unwrap();
        let report = disk.crash_with(CrashPolicy::Always(mode), &entropy(1));
        assert_eq!(read_all(&disk, "/data/f"), b"abcdef", "{mode:?}");
        assert!(report.files.is_empty() && report.reverted.is_empty());
    }
}

#[test]
fn drop_all_loses_every_pending_write() {
    let disk = prepared();
    let file = durable_file(&disk, b"synced");
    file.write_at(6, b"-lost").unwrap();
    file.set_len(2).unwrap();
    let report = disk.crash_with(CrashPolicy::Always(CrashMode::DropAll), &entropy(1));
    assert_eq!(read_all(&disk, "/data/f"), b"synced");
    assert_eq!(
        report.files,
        vec![FileCrash {
            path: PathBuf::from("/data/f"),
            mode: CrashMode::DropAll,
            pending: 2,
            kept: 0,
            torn: None,
        }]
    );
}

/// The file's contents after applying the first k of `writes` to `base`, for every k.
fn prefix_states(base: &[u8], writes: &[(u64, &[u8])]) -> Vec<Vec<u8>> {
    let mut state = base.to_vec();
    let mut states = vec![state.clone()];
    for (offset, data) in writes {
        write_into(&mut state, *offset, data);
        states.push(state.clone());
    }
    states
}

#[test]
fn keep_prefix_keeps_the_first_k_writes_in_order() {
    let writes: [(u64, &[u8]); 4] = [(0, b"AAAA"), (2, b"BBBB"), (4, b"CCCC"), (1, b"D")];
    let states = prefix_states(b"base", &writes);
    let mut kept_counts = BTreeSet::new();
    for seed in 0..64 {
        let disk = prepared();
        let file = durable_file(&disk, b"base");
        for (offset, data) in writes {
            file.write_at(offset, data).unwrap();
        }
        let report = disk.crash_with(CrashPolicy::Always(CrashMode::KeepPrefix), &entropy(seed));
        let kept = report.files[0].kept;
        assert_eq!(read_all(&disk, "/data/f"), states[kept], "seed {seed}");
        kept_counts.insert(kept);
    }
    assert_eq!(
        kept_counts,
        (0..=4).collect(),
        "every prefix length comes up"
    );
}

#[test]
fn keep_subset_can_keep_a_later_write_without_an_earlier_one() {
    // Four writes to disjoint places: each one is either wholly there or wholly zero.
    let writes: [(u64, &[u8]); 4] = [(0, b"aa"), (2, b"bb"), (4, b"cc"), (6, b"dd")];
    let mut reordered = false;
    for seed in 0..64 {
        let disk = prepared();
        let file = durable_file(&disk, b"");
        for (offset, data) in writes {
            file.write_at(offset, data).unwrap();
        }
        let report = disk.crash_with(CrashPolicy::Always(CrashMode::KeepSubset), &entropy(seed));
        let contents = read_all(&disk, "/data/f");
        let survived: Vec<bool> = writes
            .iter()
            .map(|(offset, data)| {
                let at = *offset as usize;
                let slice = contents.get(at..at + 2);
                assert!(
                    slice == Some(*data) || slice == Some(b"\0\0") || slice.is_none(),
                    "seed {seed}: {contents:?}"
                );
                slice == Some(*data)
            })
            .collect();
        assert_eq!(
            survived.iter().filter(|kept| **kept).count(),
            report.files[0].kept
        );
        reordered |= survived.windows(2).any(|pair| !pair[0] && pair[1]);
    }
    assert!(
        reordered,
        "some seed keeps a write whose predecessor was lost"
    );
}

#[test]
fn tear_last_keeps_all_but_a_strict_prefix_of_the_last_write() {
    let mut kept_sizes = BTreeSet::new();
    for seed in 0..64 {
        let disk = prepared();
        let file = durable_file(&disk, b"");
        file.write_at(0, b"whole").unwrap();
        file.write_at(5, b"0123456789").unwrap();
        let report = disk.crash_with(CrashPolicy::Always(CrashMode::TearLast), &entropy(seed));
        let torn = report.files[0].torn.unwrap();
        assert_eq!((torn.offset, torn.len), (5, 10));
        assert!(torn.kept_bytes < 10);
        let mut expected = b"whole".to_vec();
        expected.extend_from_slice(&b"0123456789"[..torn.kept_bytes]);
        assert_eq!(read_all(&disk, "/data/f"), expected, "seed {seed}");
        assert_eq!(report.files[0].kept, 1);
        kept_sizes.insert(torn.kept_bytes);
    }
    assert!(
        kept_sizes.len() > 5,
        "tears land at many places: {kept_sizes:?}"
    );
}

#[test]
fn a_random_crash_draws_every_mode_and_replays_from_its_seed() {
    let run = |seed: u64| {
        let disk = prepared();
        for index in 0..40 {
            let path = PathBuf::from(format!("/data/{index:02}"));
            let file = disk.open(&path, OpenMode::CreateNew).unwrap();
            file.write_at(0, b"durable").unwrap();
            file.sync().unwrap();
            file.write_at(7, b"-pending-1").unwrap();
            file.write_at(17, b"-pending-2").unwrap();
        }
        disk.sync_dir(Path::new("/data")).unwrap();
        let report = disk.crash(&entropy(seed));
        let contents: Vec<Vec<u8>> = (0..40)
            .map(|index| read_all(&disk, &format!("/data/{index:02}")))
            .collect();
        (report, contents)
    };
    let (report, contents) = run(11);
    assert_eq!(run(11), (report.clone(), contents), "same seed, same crash");
    assert_ne!(run(12).0, report, "another seed, another crash");
    let modes: BTreeSet<CrashMode> = report.files.iter().map(|file| file.mode).collect();
    assert_eq!(modes, CrashMode::ALL.into_iter().collect());
    let paths: Vec<&PathBuf> = report.files.iter().map(|file| &file.path).collect();
    assert!(paths.is_sorted(), "files are reported in path order");
}

#[test]
fn write_sync_rename_sync_dir_survives_a_crash() {
    for seed in 0..16 {
        let disk = prepared();
        let old = disk
            .open(Path::new("/data/meta"), OpenMode::CreateNew)
            .unwrap();
        old.write_at(0, b"version 1").unwrap();
        old.sync().unwrap();
        disk.sync_dir(Path::new("/data")).unwrap();

        // The broker's metadata swap: write a temporary file, sync it, rename it over, sync
        // the directory.
        let temporary = disk
            .open(Path::new("/data/meta.tmp"), OpenMode::CreateOrOpen)
            .unwrap();
        temporary.set_len(0).unwrap();
        temporary.write_at(0, b"version 2").unwrap();
        temporary.sync().unwrap();
        disk.rename(Path::new("/data/meta.tmp"), Path::new("/data/meta"))
            .unwrap();
        disk.sync_dir(Path::new("/data")).unwrap();

        disk.crash(&entropy(seed));
        assert_eq!(read_all(&disk, "/data/meta"), b"version 2");
        assert_eq!(disk.list(Path::new("/data")).unwrap(), vec!["meta"]);
    }
}

#[test]
fn a_rename_without_sync_dir_reverts() {
    let disk = prepared();
    let old = disk
        .open(Path::new("/data/meta"), OpenMode::CreateNew)
        .unwrap();
    old.write_at(0, b"version 1").unwrap();
    old.sync().unwrap();
    let temporary = disk
        .open(Path::new("/data/meta.tmp"), OpenMode::CreateNew)
        .unwrap();
    temporary.write_at(0, b"version 2").unwrap();
    temporary.sync().unwrap();
    disk.sync_dir(Path::new("/data")).unwrap();

    disk.rename(Path::new("/data/meta.tmp"), Path::new("/data/meta"))
        .unwrap();
    assert_eq!(read_all(&disk, "/data/meta"), b"version 2");
    let report = disk.crash(&entropy(1));
    assert_eq!(
        read_all(&disk, "/data/meta"),
        b"version 1",
        "the rename is undone"
    );
    assert_eq!(read_all(&disk, "/data/meta.tmp"), b"version 2");
    assert_eq!(
        report.reverted,
        vec![PathBuf::from("/data/meta"), PathBuf::from("/data/meta.tmp")]
    );
}

#[test]
fn a_synced_file_whose_entry_was_never_synced_disappears() {
    let disk = prepared();
    let file = disk
        .open(Path::new("/data/new"), OpenMode::CreateNew)
        .unwrap();
    file.write_at(0, b"synced bytes").unwrap();
    file.sync().unwrap();
    let report = disk.crash(&entropy(1));
    assert!(!disk.exists(Path::new("/data/new")));
    assert_eq!(report.reverted, vec![PathBuf::from("/data/new")]);
}

#[test]
fn an_unsynced_removal_comes_back_and_a_synced_one_does_not() {
    let disk = prepared();
    durable_file(&disk, b"still here");
    disk.remove_file(Path::new("/data/f")).unwrap();
    assert!(!disk.exists(Path::new("/data/f")));
    disk.crash(&entropy(1));
    assert_eq!(read_all(&disk, "/data/f"), b"still here");

    disk.remove_file(Path::new("/data/f")).unwrap();
    disk.sync_dir(Path::new("/data")).unwrap();
    disk.crash(&entropy(1));
    assert!(!disk.exists(Path::new("/data/f")));
}

#[test]
fn a_directory_needs_its_parent_synced_too() {
    let disk = prepared();
    disk.create_dir_all(Path::new("/data/topic-0")).unwrap();
    let file = disk
        .open(Path::new("/data/topic-0/0.log"), OpenMode::CreateNew)
        .unwrap();
    file.write_at(0, b"batch").unwrap();
    file.sync().unwrap();
    disk.sync_dir(Path::new("/data/topic-0")).unwrap();
    // /data was never synced after topic-0 appeared in it: the whole directory is lost.
    disk.crash(&entropy(1));
    assert!(!disk.exists(Path::new("/data/topic-0")));

    // Done right, as the broker's Log::create does it.
    disk.create_dir_all(Path::new("/data/topic-0")).unwrap();
    let file = disk
        .open(Path::new("/data/topic-0/0.log"), OpenMode::CreateNew)
        .unwrap();
    file.write_at(0, b"batch").unwrap();
    file.sync().unwrap();
    disk.sync_dir(Path::new("/data/topic-0")).unwrap();
    disk.sync_dir(Path::new("/data")).unwrap();
    disk.crash(&entropy(1));
    assert_eq!(read_all(&disk, "/data/topic-0/0.log"), b"batch");
}

#[test]
fn a_directory_removed_and_made_again_does_not_get_old_files_back() {
    let disk = prepared();
    disk.create_dir_all(Path::new("/data/t")).unwrap();
    disk.open(Path::new("/data/t/old"), OpenMode::CreateNew)
        .unwrap()
        .sync()
        .unwrap();
    disk.sync_dir(Path::new("/data/t")).unwrap();
    disk.sync_dir(Path::new("/data")).unwrap();

    disk.remove_dir_all(Path::new("/data/t")).unwrap();
    disk.create_dir_all(Path::new("/data/t")).unwrap();
    disk.open(Path::new("/data/t/new"), OpenMode::CreateNew)
        .unwrap()
        .sync()
        .unwrap();
    disk.sync_dir(Path::new("/data/t")).unwrap();
    disk.sync_dir(Path::new("/data")).unwrap();
    disk.crash(&entropy(1));
    assert_eq!(disk.list(Path::new("/data/t")).unwrap(), vec!["new"]);
}

#[test]
fn a_removed_directory_comes_back_whole_until_its_parent_is_synced() {
    let disk = prepared();
    disk.create_dir_all(Path::new("/data/t")).unwrap();
    let file = disk
        .open(Path::new("/data/t/0.log"), OpenMode::CreateNew)
        .unwrap();
    file.write_at(0, b"kept").unwrap();
    file.sync().unwrap();
    disk.sync_dir(Path::new("/data/t")).unwrap();
    disk.sync_dir(Path::new("/data")).unwrap();
    disk.remove_dir_all(Path::new("/data/t")).unwrap();
    disk.crash(&entropy(1));
    assert_eq!(read_all(&disk, "/data/t/0.log"), b"kept");
}

#[test]
fn handles_from_before_a_crash_fail() {
    let disk = prepared();
    let file = durable_file(&disk, b"x");
    disk.crash(&entropy(1));
    assert_eq!(disk.crashes(), 1);
    assert!(file.write_at(0, b"late").is_err());
    assert!(file.len().is_err());
    assert!(file.sync().is_err());
    assert_eq!(
        read_all(&disk, "/data/f"),
        b"x",
        "a late write changes nothing"
    );
    let reopened = disk.open(Path::new("/data/f"), OpenMode::Existing).unwrap();
    reopened.write_at(1, b"y").unwrap();
    assert_eq!(read_all(&disk, "/data/f"), b"xy");
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Operation {
        Write { offset: u64, data: Vec<u8> },
        SetLen(u64),
        Sync,
    }

    fn operation() -> impl Strategy<Value = Operation> {
        prop_oneof![
            4 => (0..64u64, proptest::collection::vec(any::<u8>(), 0..24))
                .prop_map(|(offset, data)| Operation::Write { offset, data }),
            1 => (0..80u64).prop_map(Operation::SetLen),
            1 => Just(Operation::Sync),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Reads match a plain vector; after a prefix-keeping crash the file holds the
        /// state at its last sync plus some prefix of the operations after it.
        #[test]
        fn a_crash_keeps_the_last_sync_plus_a_prefix(
            operations in proptest::collection::vec(operation(), 0..24),
            seed in any::<u64>(),
        ) {
            let disk = prepared();
            let file = durable_file(&disk, b"");
            let mut expected: Vec<u8> = Vec::new();
            let mut states_since_sync = vec![Vec::new()];
            for operation in operations {
                match operation {
                    Operation::Write { offset, data } => {
                        file.write_at(offset, &data).unwrap();
                        write_into(&mut expected, offset, &data);
                        states_since_sync.push(expected.clone());
                    }
                    Operation::SetLen(len) => {
                        file.set_len(len).unwrap();
                        expected.resize(len as usize, 0);
                        states_since_sync.push(expected.clone());
                    }
                    Operation::Sync => {
                        file.sync().unwrap();
                        states_since_sync = vec![expected.clone()];
                    }
                }
                prop_assert_eq!(read_all(&disk, "/data/f"), expected.clone());
            }
            disk.crash_with(CrashPolicy::Always(CrashMode::KeepPrefix), &entropy(seed));
            let after = read_all(&disk, "/data/f");
            prop_assert!(states_since_sync.contains(&after), "{:?}", after);
        }
    }
}
