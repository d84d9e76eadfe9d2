//! Images sent by key: over a network, the client asks once which module and library images
//! the server keeps for it, sends only the key of those, and asks the server to keep the
//! others. A program that starts again (PyTorch 2.15 sends 545 MB of images before its first
//! CUDA operation) then sends none.
//!
//! An image's key names where it lies: the shared object holding it (the loader's list of
//! loaded objects), that file's identity (device, inode, size, modification time) and the
//! image's place and length in it. Computing it reads nothing of the image; a file replaced
//! or rewritten gets new keys. An image in a writable segment of an object (a program may
//! build it there at run time) is named by its contents instead. Images outside any loaded
//! object (compiled at run time, in heap memory) travel whole, unkept.

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
    /// Its key, when it lies in a loaded object (compiled into the program or a library, as
    /// the images NVIDIA's runtime registers) rather than in heap memory (built at run
    /// time); sent only with `IMAGE_KEEP` and `IMAGE_CACHED`.
    pub key: Option<ImageKey>,
    /// Whether the server pinned it for this session (then its source is `IMAGE_CACHED`).
    pub pinned: bool,
}

impl Travel {
    /// Whether it lies in a loaded object (it has a key).
    pub fn in_file(&self) -> bool {
        self.key.is_some()
    }
}

/// How `image` travels.
pub fn travel_of(image: &[u8]) -> Travel {
    let key = key_of(image);
    let inline = Travel {
        source: custom::IMAGE_INLINE,
        key,
        pinned: false,
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
        },
        _ => inline,
    }
}

/// The key of `image`: where it lies in a shared object's file, or, in a writable segment
/// (where a program may build or change it at run time), its contents (`None`: in no
/// loaded object).
fn key_of(image: &[u8]) -> Option<ImageKey> {
    let place = place_of(image.as_ptr() as usize, image.len())?;
    if place.writable {
        let mut id = b"gpupool image contents v1\0".to_vec();
        id.extend_from_slice(&(image.len() as u64).to_le_bytes());
        id.extend_from_slice(image);
        return Some(image_cache::key_of(&id));
    }
    let path = match place.object {
        // The program itself: the loader names it as it was started (`""`, or a relative
        // path), which says nothing of its file.
        None => std::fs::read_link("/proc/self/exe").ok()?,
        Some(name) => std::path::PathBuf::from(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&name),
        ),
    };
    if !path.is_absolute() {
        return None;
    }
    let meta = std::fs::metadata(&path).ok()?;
    let name = path.as_os_str().as_encoded_bytes();
    let mut id = b"gpupool image v1\0".to_vec();
    id.extend_from_slice(name);
    for v in [
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
        place.offset as u64,
        image.len() as u64,
    ] {
        id.extend_from_slice(&v.to_le_bytes());
    }
    Some(image_cache::key_of(&id))
}

/// Where bytes of a loaded object lie.
#[derive(Debug, PartialEq, Eq)]
struct Place {
    /// The shared object's name as the loader gives it (`None`: the program itself).
    object: Option<Vec<u8>>,
    /// Their address in the object (as linked, whatever address it was loaded at).
    offset: usize,
    /// Whether the segment holding them is writable.
    writable: bool,
}

/// What [`place_of`] looks for and finds.
struct Search {
    start: usize,
    len: usize,
    found: Option<Place>,
}

/// The place of `[start, start + len)` when one loaded segment holds it all.
fn place_of(start: usize, len: usize) -> Option<Place> {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader's description of one object; `data` is the caller's Search.
        let (info, search) = unsafe { (&*info, &mut *(data as *mut Search)) };
        let headers: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
            &[]
        } else {
            // SAFETY: the loader's program headers of this object, dlpi_phnum of them.
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
        };
        for h in headers.iter().filter(|h| h.p_type == libc::PT_LOAD) {
            let begin = (info.dlpi_addr as usize).wrapping_add(h.p_vaddr as usize);
            let end = begin.saturating_add(h.p_memsz as usize);
            if (begin..end).contains(&search.start) {
                if search.start.saturating_add(search.len) > end {
                    return 1;
                }
                let name = if info.dlpi_name.is_null() {
                    &[][..]
                } else {
                    // SAFETY: the loader's NUL-terminated name of the object.
                    unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes()
                };
                search.found = Some(Place {
                    // The program itself comes first, unnamed.
                    object: (!name.is_empty()).then(|| name.to_vec()),
                    offset: search.start - info.dlpi_addr as usize,
                    writable: h.p_flags & libc::PF_W != 0,
                });
                return 1;
            }
        }
        0
    }
    let mut search = Search {
        start,
        len,
        found: None,
    };
    // SAFETY: `visit` only reads the loader's tables and writes `search`, which outlives the
    // call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut search as *mut Search).cast()) };
    search.found
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

    #[test]
    fn images_in_writable_segments_are_named_by_their_contents() {
        static WRITABLE: Mutex<[u8; 64]> = Mutex::new([7u8; 64]);
        let mut image = WRITABLE.lock().unwrap();
        let place = place_of(image.as_ptr() as usize, image.len()).unwrap();
        assert!(place.writable && place.object.is_none(), "{place:?}");
        let before = key_of(&image[..]);
        assert!(before.is_some());
        assert_eq!(
            key_of(&image[..]),
            before,
            "the same contents, the same key"
        );
        image[3] = 8;
        assert_ne!(key_of(&image[..]), before, "changed at run time");
        // Read-only data of this program: named by its place.
        static CONSTANT: [u8; 64] = [9u8; 64];
        let place = place_of(CONSTANT.as_ptr() as usize, 64).unwrap();
        assert!(!place.writable && place.object.is_none(), "{place:?}");
        assert!(key_of(&CONSTANT).is_some());
    }
}
