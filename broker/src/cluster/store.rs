//! The controller's metadata on disk: one JSON document, `cluster.json`, in the data root,
//! replaced crash-safely (write a temporary file, fsync it, rename it over, fsync the
//! directory) on every change. Partition data lives beside it in `<topic>-<partition>/`.
//!
//! **Invariant:** the file on disk is always a whole document, the old one or the new one.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tidepool_io::{Disk, OpenMode, crash_point};
use uuid::Uuid;

pub const FILE_NAME: &str = "cluster.json";
const TEMPORARY_NAME: &str = "cluster.json.tmp";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCluster {
    pub version: u32,
    pub cluster_id: String,
    /// Producer ids below this may have been handed out; a restarted broker starts here.
    pub producer_ids_reserved_until: i64,
    pub topics: Vec<StoredTopic>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTopic {
    pub name: String,
    pub id: Uuid,
    /// Configs set on the topic, by Kafka name; defaults are not stored.
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<StoredPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPartition {
    pub replicas: Vec<i32>,
    /// -1 when no replica is alive.
    pub leader: i32,
    pub leader_epoch: i32,
    /// Moved by DeleteRecords (segments deleted whole need no record: the first one left
    /// starts the log).
    #[serde(default)]
    pub log_start_offset: i64,
}

impl StoredCluster {
    pub fn new(cluster_id: String) -> StoredCluster {
        StoredCluster {
            version: FORMAT_VERSION,
            cluster_id,
            producer_ids_reserved_until: 0,
            topics: Vec::new(),
        }
    }
}

/// Reads the stored metadata, if the data root has any.
pub fn load(disk: &dyn Disk, root: &Path) -> io::Result<Option<StoredCluster>> {
    let path = root.join(FILE_NAME);
    if !disk.exists(&path) {
        return Ok(None);
    }
    let file = disk.open(&path, OpenMode::Existing)?;
    let mut bytes = vec![0u8; file.len()? as usize];
    file.read_exact_at(0, &mut bytes)?;
    let stored: StoredCluster = serde_json::from_slice(&bytes).map_err(|error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {error}", path.display()),
        )
    })?;
    if stored.version != FORMAT_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} has format version {}, this broker reads {FORMAT_VERSION}",
                path.display(),
                stored.version
            ),
        ));
    }
    Ok(Some(stored))
}

/// Replaces the stored metadata with `stored`, durably.
pub fn save(disk: &dyn Disk, root: &Path, stored: &StoredCluster) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(stored).map_err(io::Error::other)?;
    let temporary = root.join(TEMPORARY_NAME);
    let file = disk.open(&temporary, OpenMode::CreateOrOpen)?;
    file.set_len(0)?;
    file.write_at(0, &bytes)?;
    file.sync()?;
    crash_point!(disk, "cluster.store.written");
    disk.rename(&temporary, &root.join(FILE_NAME))?;
    crash_point!(disk, "cluster.store.renamed");
    disk.sync_dir(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidepool_io::MemDisk;

    #[test]
    fn saved_metadata_loads_back_equal_and_replaces_the_old() {
        let disk = MemDisk::new();
        let root = Path::new("/data");
        disk.create_dir_all(root).unwrap();
        assert_eq!(load(&disk, root).unwrap(), None);
        let mut stored = StoredCluster::new("cluster".into());
        stored.topics.push(StoredTopic {
            name: "orders".into(),
            id: Uuid::from_u128(7),
            configs: BTreeMap::from([("segment.bytes".into(), "1024".into())]),
            partitions: vec![StoredPartition {
                replicas: vec![1, 2],
                leader: 2,
                leader_epoch: 4,
                log_start_offset: 9,
            }],
        });
        save(&disk, root, &stored).unwrap();
        stored.producer_ids_reserved_until = 2000;
        save(&disk, root, &stored).unwrap();
        assert_eq!(load(&disk, root).unwrap(), Some(stored));
        assert_eq!(disk.list(root).unwrap(), vec![FILE_NAME]);
    }

    #[test]
    fn a_garbled_file_is_an_error_not_an_empty_cluster() {
        let disk = MemDisk::new();
        let root = Path::new("/data");
        disk.create_dir_all(root).unwrap();
        let file = disk
            .open(&root.join(FILE_NAME), OpenMode::CreateNew)
            .unwrap();
        file.write_at(0, b"{\"version\": 1, \"clu").unwrap();
        assert_eq!(
            load(&disk, root).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
