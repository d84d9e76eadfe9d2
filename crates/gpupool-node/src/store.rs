//! Allocation records on disk: one JSON file per container the agent allocated for, written
//! atomically, read back at start so that a restarted agent knows everything it gave out.

use crate::error::{NodeError, Result};
use gpupool_sched::protocol::AssignedDevice;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What one container was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    /// The pod's UID.
    pub pod_uid: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub pod: String,
    /// The container's name.
    pub container: String,
    /// The kubelet device IDs of the `Allocate` call it answered.
    pub device_ids: Vec<String>,
    /// The cards with their limits, in the container's CUDA order.
    pub devices: Vec<AssignedDevice>,
    /// The tenant's folder on the host (its region).
    pub tenant_dir: PathBuf,
    /// The limits file on the host (mounted read-only).
    pub limits_file: PathBuf,
}

impl Allocation {
    /// The record's key: one per container of a pod.
    pub fn key(&self) -> String {
        key(&self.pod_uid, &self.container)
    }
}

/// The key of a container's record.
pub fn key(pod_uid: &str, container: &str) -> String {
    format!("{pod_uid}_{container}")
}

/// The records, in memory and in their folder.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    records: BTreeMap<String, Allocation>,
}

impl Store {
    /// Opens the folder (created if missing) and reads every record. A record that cannot be
    /// parsed is an error naming the file: the agent must not forget an allocation silently.
    pub fn open(dir: &Path) -> Result<Store> {
        let folder = |e| NodeError::file("allocations folder", dir, e);
        std::fs::create_dir_all(dir).map_err(folder)?;
        let mut records = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(folder)?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| NodeError::file("allocation record", &path, e))?;
            let a: Allocation =
                serde_json::from_str(&text).map_err(|source| NodeError::Record {
                    path: path.display().to_string(),
                    source,
                })?;
            records.insert(a.key(), a);
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            records,
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// Writes a record (temporary file, then rename) and keeps it.
    pub fn insert(&mut self, a: Allocation) -> Result<()> {
        let key = a.key();
        let path = self.path(&key);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&a).expect("plain data");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| NodeError::file("allocation record", &path, e))?;
        self.records.insert(key, a);
        Ok(())
    }

    /// The record of a container, if it was allocated.
    pub fn get(&self, pod_uid: &str, container: &str) -> Option<&Allocation> {
        self.records.get(&key(pod_uid, container))
    }

    /// Every record.
    pub fn all(&self) -> impl Iterator<Item = &Allocation> {
        self.records.values()
    }

    /// Removes a record and its file.
    pub fn remove(&mut self, key: &str) -> Result<Option<Allocation>> {
        let path = self.path(key);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(NodeError::file("allocation record", &path, e)),
        }
        Ok(self.records.remove(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(uid: &str, container: &str) -> Allocation {
        Allocation {
            pod_uid: uid.into(),
            namespace: "ns".into(),
            pod: "p".into(),
            container: container.into(),
            device_ids: vec!["GPU-a::0".into()],
            devices: vec![AssignedDevice {
                uuid: "GPU-a".into(),
                memory_mib: 1024,
                cores: 30,
                priority: 0,
                spill_mib: 0,
            }],
            tenant_dir: "/t".into(),
            limits_file: "/l".into(),
        }
    }

    #[test]
    fn records_survive_a_reopen_and_bad_ones_are_named() {
        let dir = std::env::temp_dir().join(format!("gpupool-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = Store::open(&dir).unwrap();
        s.insert(record("u1", "main")).unwrap();
        s.insert(record("u1", "side")).unwrap();
        s.insert(record("u2", "main")).unwrap();
        s.remove(&key("u2", "main")).unwrap();
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.all().count(), 2);
        assert_eq!(s.get("u1", "side").unwrap().devices[0].memory_mib, 1024);
        assert!(s.get("u2", "main").is_none());
        std::fs::write(dir.join("broken.json"), "{").unwrap();
        let e = Store::open(&dir).unwrap_err().to_string();
        assert!(e.contains("broken.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
