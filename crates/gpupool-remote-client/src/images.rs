//! Images sent by key: over a network, the client asks once which module and library images
//! the server keeps for it, sends only the key of those, and asks the server to keep the
//! others. A program that starts again (PyTorch 2.15 sends 545 MB of images before its first
//! CUDA operation) then sends none.
//!
//! An image's key names where it lies: the shared object holding it (`dladdr`), that file's
//! identity (device, inode, size, modification time) and the image's place and length in it.
//! Computing it reads nothing of the image; a file replaced or rewritten gets new keys. Images
//! outside any shared object (compiled at run time, in heap memory) travel whole, unkept.

use crate::conn::state;
use gpupool_cuda::result::*;
use gpupool_remote::calls::custom;
use gpupool_remote::image_cache::{self, ImageKey};
use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

/// What the server keeps for this client.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Keys of the images it keeps.
    kept: HashSet<ImageKey>,
    /// Images pinned for this session (key → length): loadable by key without a reply.
    pinned: HashMap<ImageKey, u64>,
}

/// What the server keeps for this client: `None` until asked; `Some(None)`: nothing (it keeps
/// no images, or cannot say).
pub(crate) static KEPT: Mutex<Option<Option<Index>>> = Mutex::new(None);

/// How an image travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Travel {
    /// Its source (`custom::IMAGE_*`).
    pub source: u8,
    /// Its key, when it has one.
    pub key: Option<ImageKey>,
    /// Whether the server pinned it for this session (then its source is `IMAGE_CACHED`).
    pub pinned: bool,
    /// Whether it lies in a shared object's file (compiled into the program or a library,
    /// as the images NVIDIA's runtime registers), rather than built at run time.
    pub in_file: bool,
}

/// How `image` travels.
pub fn travel_of(image: &[u8]) -> Travel {
    let key = key_of(image);
    let inline = Travel {
        source: custom::IMAGE_INLINE,
        key: None,
        pinned: false,
        in_file: key.is_some(),
    };
    if !crate::conn::over_network() {
        return inline;
    }
    let Some(key) = key else {
        return inline;
    };
    // Asked without holding the list: the client's state is always taken first.
    let asked = KEPT.lock().unwrap_or_else(|e| e.into_inner()).is_some();
    if !asked {
        let index = ask_index();
        KEPT.lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(index);
    }
    match KEPT.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(Some(index)) => Travel {
            source: if index.kept.contains(&key) {
                custom::IMAGE_CACHED
            } else {
                custom::IMAGE_KEEP
            },
            key: Some(key),
            pinned: index.pinned.get(&key) == Some(&(image.len() as u64)),
            in_file: true,
        },
        _ => inline,
    }
}

/// The key of `image`: where it lies in a shared object's file (`None`: in no file).
fn key_of(image: &[u8]) -> Option<ImageKey> {
    // SAFETY: Dl_info is plain data, all zeroes a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables and writes `info`.
    if unsafe { libc::dladdr(image.as_ptr().cast(), &mut info) } == 0
        || info.dli_fname.is_null()
        || info.dli_fbase.is_null()
    {
        return None;
    }
    // SAFETY: the loader's NUL-terminated file name.
    let name = unsafe { CStr::from_ptr(info.dli_fname) }.to_bytes();
    let path = if name.is_empty() {
        // The program itself (the loader gives it no name).
        std::fs::read_link("/proc/self/exe").ok()?
    } else {
        std::path::PathBuf::from(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name),
        )
    };
    if !path.is_absolute() {
        return None;
    }
    let meta = std::fs::metadata(&path).ok()?;
    let name = path.as_os_str().as_encoded_bytes();
    let offset = (image.as_ptr() as usize).checked_sub(info.dli_fbase as usize)?;
    let mut id = b"gpupool image v1\0".to_vec();
    id.extend_from_slice(name);
    for v in [
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
        offset as u64,
        image.len() as u64,
    ] {
        id.extend_from_slice(&v.to_le_bytes());
    }
    Some(image_cache::key_of(&id))
}

/// Records that the server now keeps the image of key `h`, or no longer does.
pub fn kept(h: ImageKey, now: bool) {
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(Some(index)) = kept.as_mut() {
        if now {
            index.kept.insert(h);
        } else {
            index.kept.remove(&h);
            index.pinned.remove(&h);
        }
    }
}

/// The server's index for this client (`None`: it keeps no images, or cannot say).
fn ask_index() -> Option<Index> {
    let mut s = state();
    let start = s
        .begin(custom::IMAGE_INDEX, true, crate::context::current())
        .ok()?;
    let mut known = None;
    let rc = s.finish_sync(start, |r| {
        let keeps: u8 = r.get("keeps images")?;
        let pinned: u8 = r.get("images pinned")?;
        let n: u32 = r.get("image count")?;
        let mut index = Index::default();
        for _ in 0..(n as usize).min(image_cache::MAX_INDEX) {
            let (key, len): (ImageKey, u64) = (r.get("image key")?, r.get("image length")?);
            index.kept.insert(key);
            if pinned == 1 && len > 0 {
                index.pinned.insert(key, len);
            }
        }
        known = (keeps == 1).then_some(index);
        Ok(())
    });
    (rc == CUDA_SUCCESS).then_some(known).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_in_a_shared_object_have_a_key_and_heap_images_none() {
        // A constant of libc (a shared object with an absolute path) and a heap buffer.
        // SAFETY: libc's own string; only its address and a few bytes are used.
        let in_libc = unsafe { CStr::from_ptr(libc::gnu_get_libc_version()) }.to_bytes();
        let a = key_of(in_libc);
        assert!(a.is_some());
        assert_eq!(key_of(in_libc), a, "the same place, the same key");
        assert_ne!(key_of(&in_libc[1..]), a, "another place");
        let heap: Box<[u8]> = vec![1u8; 64].into_boxed_slice();
        assert_eq!(key_of(&heap), None);
    }
}
