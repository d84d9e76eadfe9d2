//! Module and library images a GPU server keeps for each client, by a key the client gives:
//! a program loads the same images at every start (PyTorch 2.15: 1 046 distinct ones, 545 MB,
//! at its first CUDA operation), so a client that loaded an image before sends only its key.
//! The client's key names where the image lies (a file's identity and the place in it, see
//! the client's `images`), so it costs no pass over the image. One folder per client name
//! (what one client keeps never answers another), files named by the key and checked against
//! the image's length, the least recently used removed past the size limit.

use std::path::{Path, PathBuf};

/// The key of an image (a SHA-256 the client computes over where the image comes from).
pub type ImageKey = [u8; 32];

/// Variable naming a session's cache folder (set by `gpupool serve`; absent: no cache).
pub const ENV_DIR: &str = "GPUPOOL_REMOTE_IMAGE_CACHE";
/// Variable holding the folder's size limit in bytes.
pub const ENV_LIMIT: &str = "GPUPOOL_REMOTE_IMAGE_CACHE_LIMIT";

/// Most hashes an index answer lists.
pub const MAX_INDEX: usize = 1 << 16;

/// The SHA-256 of `bytes`, as an image key.
pub fn key_of(bytes: &[u8]) -> ImageKey {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut h = [0u8; 32];
    h.copy_from_slice(d.as_ref());
    h
}

/// `h` as the name of its file.
pub(crate) fn hex(h: &ImageKey) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key a file's name stands for (`None`: not an image's name).
pub(crate) fn unhex(name: &str) -> Option<ImageKey> {
    if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut h = [0u8; 32];
    for (i, byte) in h.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&name[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(h)
}

/// The image in the file at `path` if it holds `len` bytes, marked as just used (the least
/// recently used go first).
pub(crate) fn read_used(path: &Path, len: u64) -> Option<Vec<u8>> {
    let image = std::fs::read(path).ok()?;
    if image.len() as u64 != len {
        return None;
    }
    let _ = std::fs::File::open(path).and_then(|f| f.set_modified(std::time::SystemTime::now()));
    Some(image)
}

/// Writes images into a cache on a thread of its own, so that a load's reply never waits
/// for the disk; [`Keeper::finish`] waits for what is still to be written.
pub struct Keeper {
    to_write: Option<std::sync::mpsc::Sender<(ImageKey, Vec<u8>)>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Keeper {
    /// Starts the writer of `cache` (`None` if no thread can be started).
    pub fn start(cache: ImageCache) -> Option<Keeper> {
        let (tx, rx) = std::sync::mpsc::channel::<(ImageKey, Vec<u8>)>();
        let writer = std::thread::Builder::new()
            .name("gpupool-images".into())
            .spawn(move || {
                for (key, image) in rx {
                    cache.put(&key, &image);
                }
            })
            .ok()?;
        Some(Keeper {
            to_write: Some(tx),
            writer: Some(writer),
        })
    }

    /// Queues `image` to be kept under `key`.
    pub fn keep(&self, key: ImageKey, image: Vec<u8>) {
        if let Some(tx) = &self.to_write {
            let _ = tx.send((key, image));
        }
    }

    /// Waits until every queued image is written.
    pub fn finish(&mut self) {
        drop(self.to_write.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.finish();
    }
}

/// One client's cached images.
#[derive(Debug, Clone)]
pub struct ImageCache {
    dir: PathBuf,
    limit: u64,
}

impl ImageCache {
    /// The folder of client `name`'s images under `root` (the prefix keeps names such as `..`
    /// inside it).
    pub fn client_dir(root: &Path, name: &str) -> PathBuf {
        root.join(format!("client-{name}"))
    }

    /// The session's cache, as `gpupool serve` set it in the environment.
    pub fn from_env() -> Option<ImageCache> {
        let dir = PathBuf::from(std::env::var_os(ENV_DIR).filter(|d| !d.is_empty())?);
        let limit = std::env::var(ENV_LIMIT).ok()?.parse().ok()?;
        dir.is_dir().then_some(ImageCache { dir, limit })
    }

    /// The folder holding the images.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cache of client `name` under `root` (folders created), keeping at most `limit`.
    #[cfg(test)]
    pub(crate) fn for_client(root: &Path, name: &str, limit: u64) -> std::io::Result<ImageCache> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = Self::client_dir(root, name);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        Ok(ImageCache { dir, limit })
    }

    /// The cached images' hashes (at most [`MAX_INDEX`]).
    pub fn index(&self) -> Vec<ImageKey> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| unhex(e.ok()?.file_name().to_str()?))
            .take(MAX_INDEX)
            .collect()
    }

    /// The image kept under `h`, if it has the `len` bytes the client expects (a file of
    /// another length is removed).
    pub fn get(&self, h: &ImageKey, len: u64) -> Option<Vec<u8>> {
        let path = self.dir.join(hex(h));
        let meta = std::fs::symlink_metadata(&path).ok()?;
        if !meta.is_file() {
            return None;
        }
        if meta.len() != len {
            let _ = std::fs::remove_file(&path);
            return None;
        }
        read_used(&path, len)
    }

    /// Removes the image kept under `h` (it no longer loads): the client sends it again.
    pub fn forget(&self, h: &ImageKey) {
        let _ = std::fs::remove_file(self.dir.join(hex(h)));
    }

    /// Keeps `image` under `h`, then removes the least recently used images past the limit.
    /// Failures only mean the image is sent again next time.
    pub fn put(&self, h: &ImageKey, image: &[u8]) {
        if image.len() as u64 > self.limit {
            return;
        }
        let name = hex(h);
        let path = self.dir.join(&name);
        if path.is_file() {
            return;
        }
        let tmp = self.dir.join(format!(".{name}.{}", std::process::id()));
        if std::fs::write(&tmp, image).is_err() || std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        self.trim();
    }

    /// Removes the least recently used images until the folder holds at most the limit.
    fn trim(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                unhex(e.file_name().to_str()?)?;
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.limit {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gpupool-images-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn images_come_back_by_key_for_their_client_only() {
        let r = root("clients");
        let a = ImageCache::for_client(&r, "alpha", 1 << 20).unwrap();
        let b = ImageCache::for_client(&r, "beta", 1 << 20).unwrap();
        let image = b"\x7fELF an image".to_vec();
        let (h, len) = (key_of(b"where it lies"), image.len() as u64);
        assert_eq!(a.get(&h, len), None);
        a.put(&h, &image);
        assert_eq!(a.get(&h, len), Some(image.clone()));
        assert_eq!(a.index(), vec![h]);
        assert_eq!(b.get(&h, len), None, "another client's");
        assert!(b.index().is_empty());
        let dots = ImageCache::for_client(&r, "..", 1 << 20).unwrap();
        assert!(dots.dir.starts_with(&r), "{:?}", dots.dir);
        std::fs::remove_dir_all(&r).unwrap();
    }

    #[test]
    fn an_image_of_another_length_is_never_answered() {
        let r = root("damaged");
        let a = ImageCache::for_client(&r, "alpha", 1 << 20).unwrap();
        let image = vec![7u8; 4096];
        let h = key_of(b"an image");
        a.put(&h, &image);
        std::fs::write(a.dir.join(hex(&h)), &image[..100]).unwrap();
        assert_eq!(a.get(&h, 4096), None);
        assert!(a.index().is_empty(), "the damaged file is gone");
        std::fs::remove_dir_all(&r).unwrap();
    }

    #[test]
    fn the_least_recently_used_images_go_past_the_limit() {
        let r = root("limit");
        let a = ImageCache::for_client(&r, "alpha", 10_000).unwrap();
        let images: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 4000]).collect();
        let keys: Vec<ImageKey> = (0..4u8).map(|i| key_of(&[i])).collect();
        a.put(&keys[0], &images[0]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        a.put(&keys[1], &images[1]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(a.get(&keys[0], 4000).is_some(), "used again");
        std::thread::sleep(std::time::Duration::from_millis(20));
        a.put(&keys[2], &images[2]);
        let kept = a.index();
        assert_eq!(kept.len(), 2, "12 000 bytes > 10 000");
        assert!(!kept.contains(&keys[1]), "the least recently used went");
        a.put(&keys[3], &vec![9u8; 20_000]);
        assert_eq!(a.index().len(), 2, "an image over the limit is not kept");
        std::fs::remove_dir_all(&r).unwrap();
    }
}
