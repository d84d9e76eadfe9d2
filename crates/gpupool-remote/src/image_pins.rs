//! The images a session listed to its client, held until the session ends. A client that was
//! told an image is kept loads libraries from it without waiting for the server, so the image
//! must still be there when the load arrives, though another process of the same client may
//! trim the cache meanwhile. Each listed image gets a hard link in a folder of the session's
//! own: trimming removes the cache's name, never the session's. The folder holds an owner file
//! the session keeps locked; a folder whose owner file nobody locks (its session died) is
//! removed the next time images are pinned.

use crate::image_cache::{hex, read_used, unhex, ImageKey, MAX_INDEX};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Prefix of a session's folder inside a client's cache folder (never a key's name).
const PREFIX: &str = ".session-";
/// The file a live session keeps locked inside its folder.
const OWNER: &str = "owner";
/// A folder without a readable owner file is taken as abandoned once it is this old.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// One session's pinned images.
#[derive(Debug)]
pub struct PinnedImages {
    dir: PathBuf,
    /// Each pinned image's length.
    lengths: HashMap<ImageKey, u64>,
    /// Locked while the session lives (the lock goes with the process).
    _owner: File,
}

/// Takes `file`'s exclusive lock without waiting; whether it got it.
fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a file this process holds open.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Removes the folders of sessions that ended without removing theirs.
fn remove_abandoned(cache: &Path) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_str().is_some_and(|n| n.starts_with(PREFIX)) {
            continue;
        }
        let dir = e.path();
        let abandoned = match File::open(dir.join(OWNER)) {
            Ok(owner) => try_lock(&owner),
            Err(_) => e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > ABANDONED_AFTER),
        };
        if abandoned {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

impl PinnedImages {
    /// Pins every image of the cache folder `cache` for this session (`None`: the folder
    /// cannot be written, or holds no hard links).
    pub fn pin(cache: &Path) -> Option<PinnedImages> {
        remove_abandoned(cache);
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = cache.join(format!("{PREFIX}{}-{stamp}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        // Locked before it takes its name: an owner file nobody locks is a dead session's.
        let unnamed = dir.join(".owner");
        let owner = File::create(&unnamed)
            .ok()
            .filter(try_lock)
            .filter(|_| std::fs::rename(&unnamed, dir.join(OWNER)).is_ok());
        let Some(owner) = owner else {
            let _ = std::fs::remove_dir_all(&dir);
            return None;
        };
        let mut lengths = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(cache) {
            for e in entries.flatten() {
                if lengths.len() >= MAX_INDEX {
                    break;
                }
                let Some(key) = e.file_name().to_str().and_then(unhex) else {
                    continue;
                };
                let link = dir.join(hex(&key));
                match std::fs::hard_link(e.path(), &link) {
                    Ok(()) => {
                        if let Ok(m) = std::fs::symlink_metadata(&link) {
                            lengths.insert(key, m.len());
                        }
                    }
                    // Trimmed meanwhile: not listed.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    // A file system without hard links: nothing is pinned.
                    Err(_) => {
                        let _ = std::fs::remove_dir_all(&dir);
                        return None;
                    }
                }
            }
        }
        Some(PinnedImages {
            dir,
            lengths,
            _owner: owner,
        })
    }

    /// The pinned images' keys and lengths.
    pub fn lengths(&self) -> &HashMap<ImageKey, u64> {
        &self.lengths
    }

    /// The pinned image of key `h`, if it is pinned and has the `len` bytes the client
    /// expects.
    pub fn get(&self, h: &ImageKey, len: u64) -> Option<Vec<u8>> {
        if self.lengths.get(h) != Some(&len) {
            return None;
        }
        // The link shares the cache's file, so its use counts for the cache too.
        read_used(&self.dir.join(hex(h)), len)
    }
}

impl Drop for PinnedImages {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_cache::{key_of, ImageCache};

    fn cache(name: &str) -> (PathBuf, ImageCache) {
        let root = std::env::temp_dir().join(format!("gpupool-pins-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let c = ImageCache::for_client(&root, "alpha", 10_000).unwrap();
        (root, c)
    }

    #[test]
    fn a_pinned_image_outlives_the_trim_of_another_process() {
        let (root, c) = cache("trim");
        let (a, b) = (key_of(b"a"), key_of(b"b"));
        c.put(&a, &[1u8; 6000]);
        let pins = PinnedImages::pin(c.dir()).unwrap();
        assert_eq!(pins.lengths(), &HashMap::from([(a, 6000)]));
        // Another process keeps a new image: the old one goes past the limit.
        c.put(&b, &[2u8; 6000]);
        assert_eq!(c.index(), vec![b], "trimmed from the cache");
        assert_eq!(pins.get(&a, 6000), Some(vec![1u8; 6000]), "still pinned");
        assert_eq!(pins.get(&a, 5999), None, "another length");
        assert_eq!(pins.get(&b, 6000), None, "kept after the pin: not listed");
        drop(pins);
        let left: Vec<_> = std::fs::read_dir(c.dir()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "the session's folder is gone: {left:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_folder_of_a_dead_session_is_removed_and_a_live_one_kept() {
        let (root, c) = cache("abandoned");
        c.put(&key_of(b"a"), &[1u8; 100]);
        let live = PinnedImages::pin(c.dir()).unwrap();
        // A session that died: its owner file is locked by nobody.
        let dead = c.dir().join(format!("{PREFIX}1-2"));
        std::fs::create_dir(&dead).unwrap();
        File::create(dead.join(OWNER)).unwrap();
        let other = PinnedImages::pin(c.dir()).unwrap();
        assert!(!dead.exists(), "the dead session's folder");
        assert!(live.dir.exists(), "the live session's folder");
        assert_eq!(other.lengths().len(), 1);
        drop((live, other));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
