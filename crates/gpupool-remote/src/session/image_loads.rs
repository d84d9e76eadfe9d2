//! A session's module and library loads: images sent inline, kept on request or kept before
//! (pinned for the session when it lists them), and modules and libraries the client names
//! itself.

use super::Session;
use crate::calls::custom;
use crate::calls::Class;
use crate::image_cache::ImageKey;
use crate::wire::{DecodeError, Reader, Writer};
use gpupool_cuda::cu::*;
use gpupool_cuda::result::*;
use std::ffi::c_void;

impl Session {
    /// Answers which images the server keeps for the client, pinned for this session so
    /// that each stays loadable by key until the session ends.
    pub(super) fn image_index(&mut self, outs: &mut Writer) {
        if self.pinned.is_none() {
            self.pinned = self
                .images
                .as_ref()
                .and_then(|c| crate::image_pins::PinnedImages::pin(c.dir()));
        }
        // Unpinned images are listed without their lengths: never loaded without a reply.
        let listed: Vec<(ImageKey, u64)> = match (&self.pinned, &self.images) {
            (Some(p), _) => p.lengths().iter().map(|(&k, &len)| (k, len)).collect(),
            (None, Some(c)) => c.index().into_iter().map(|k| (k, 0)).collect(),
            (None, None) => Vec::new(),
        };
        outs.put(&u8::from(self.images.is_some()));
        outs.put(&u8::from(self.pinned.is_some()));
        outs.put(&(listed.len() as u32));
        for (h, len) in listed {
            outs.put(&h);
            outs.put(&len);
        }
    }

    /// The kept image of key `h`, if it has the `len` bytes the client expects.
    fn kept_image(&self, h: &ImageKey, len: u64) -> Option<Vec<u8>> {
        if len > crate::protocol::MAX_FRAME as u64 {
            return None;
        }
        let pinned = self.pinned.as_ref().and_then(|p| p.get(h, len));
        pinned.or_else(|| self.images.as_ref().and_then(|c| c.get(h, len)))
    }

    /// Forgets the kept image of `key` when the driver found it no image (`rc`): damaged
    /// on the server's disk, it is sent again; whether it was forgotten.
    fn forget_if_damaged(&self, rc: u32, key: Option<ImageKey>) -> bool {
        match (rc, &self.images, key) {
            (CUDA_ERROR_INVALID_IMAGE, Some(c), Some(h)) => {
                c.forget(&h);
                true
            }
            _ => false,
        }
    }

    /// Has the driver load `image` as a module (`custom::MODULE_LOAD`) or a library: its
    /// error, and the handle when it succeeds.
    fn load_with_driver(&self, id: u16, image: &[u8]) -> (u32, u64) {
        let aligned = aligned_image(image);
        let mut h: *mut c_void = std::ptr::null_mut();
        let code = aligned.as_ptr().cast();
        let none = std::ptr::null_mut();
        // SAFETY: an aligned copy of the image that outlives the call; a local out value; no
        // options.
        let rc = unsafe {
            match (
                id,
                self.extra.cuModuleLoadData,
                self.extra.cuLibraryLoadData,
            ) {
                (custom::MODULE_LOAD, Some(load), _) => {
                    load(&mut h as *mut _ as *mut CUmodule, code)
                }
                (custom::LIBRARY_LOAD, _, Some(load)) => load(
                    &mut h as *mut _ as *mut CUlibrary,
                    code,
                    none,
                    none.cast(),
                    0,
                    none,
                    none.cast(),
                    0,
                ),
                _ => CUDA_ERROR_NOT_FOUND,
            }
        };
        (rc, h as usize as u64)
    }

    /// Loads a module or library from an image sent inline, kept on request, or kept
    /// before. A library the client named itself is loaded without a reply: the name stands
    /// for the library, or for the driver's error wherever it is used.
    pub(super) fn load_image(
        &mut self,
        id: u16,
        r: &mut Reader<'_>,
        outs: &mut Writer,
    ) -> Result<u32, DecodeError> {
        let source: u8 = r.get("image source")?;
        let given: u64 = r.get("library name")?;
        let key: Option<ImageKey> = match source {
            custom::IMAGE_KEEP | custom::IMAGE_CACHED => Some(r.get("image key")?),
            custom::IMAGE_INLINE => None,
            _ => {
                return Err(DecodeError {
                    what: "image source",
                    at: 0,
                })
            }
        };
        let kept;
        let image = if source == custom::IMAGE_CACHED {
            let len: u64 = r.get("image length")?;
            r.end()?;
            kept = key.and_then(|h| self.kept_image(&h, len));
            kept.as_deref()
        } else {
            let image = r.get_bytes("image")?;
            r.end()?;
            Some(image)
        };
        let class = if id == custom::MODULE_LOAD {
            Class::Module
        } else {
            Class::Library
        };
        if given != 0 && !self.handles.name_free(class, given) {
            return Ok(CUDA_ERROR_INVALID_VALUE);
        }
        let (rc, h) = match image {
            Some(image) => self.load_with_driver(id, image),
            None => (CUDA_ERROR_NOT_FOUND, 0),
        };
        // A kept image that no longer loads is forgotten; a load that waits asks for it again.
        let damaged = source == custom::IMAGE_CACHED && self.forget_if_damaged(rc, key);
        if given != 0 {
            // The error, if any, is the module's or library's: returned where it is used.
            if rc == CUDA_SUCCESS {
                self.handles.name(class, given, h);
            } else {
                self.handles.refuse(class, given, rc);
            }
        } else if damaged {
            return Ok(CUDA_ERROR_NOT_FOUND);
        } else if rc == CUDA_SUCCESS {
            self.handles.insert(class, h);
            outs.put(&h);
        }
        if let (CUDA_SUCCESS, Some(c), Some(key), custom::IMAGE_KEEP, Some(image)) =
            (rc, &self.images, key, source, image)
        {
            if self.keeper.is_none() {
                self.keeper = crate::image_cache::Keeper::start(c.clone());
            }
            if let Some(k) = &self.keeper {
                k.keep(key, image.to_vec());
            }
        }
        Ok(if given != 0 { CUDA_SUCCESS } else { rc })
    }
}

/// A copy of a module image with 8-byte alignment, as fat binaries are read.
fn aligned_image(image: &[u8]) -> Vec<u64> {
    let mut aligned = vec![0u64; image.len().div_ceil(8) + 1];
    // SAFETY: `aligned` holds at least image.len() bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(image.as_ptr(), aligned.as_mut_ptr() as *mut u8, image.len())
    };
    aligned
}
