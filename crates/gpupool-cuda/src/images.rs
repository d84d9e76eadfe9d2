//! Module images as programs hand them to the driver: a fat-binary wrapper (what
//! `__cudaRegisterFatBinary` takes), a fat binary, an ELF cubin, or NUL-terminated text (PTX,
//! or a simulated module). Their lengths come from their headers, checked, never past
//! [`MAX_IMAGE`].

use crate::result::CUDA_ERROR_INVALID_IMAGE;
use std::ffi::{c_char, CStr};

/// Magic number of a fat binary.
pub const FATBIN_MAGIC: u32 = 0xBA55_ED50;
/// Magic number of the wrapper a program registers with the runtime (`__cudaRegisterFatBinary`).
pub const FATBIN_WRAPPER_MAGIC: u32 = 0x4662_43B1;
/// Magic number of an ELF file (a cubin).
pub const ELF_MAGIC: u32 = 0x464C_457F;
/// Largest fat binary or cubin accepted.
pub const MAX_IMAGE: usize = 64 << 20;

/// What an image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// A fat binary whose entries start `header` bytes in.
    FatBinary {
        /// Length of its header.
        header: usize,
    },
    /// An ELF cubin.
    Elf,
    /// NUL-terminated text (its bytes end with the NUL).
    Text,
}

/// The image at `image`: its kind and bytes (for a wrapper, the fat binary it points at).
/// `CUDA_ERROR_INVALID_IMAGE` when a wrapper points nowhere, at itself or at no fat binary,
/// or a header gives a length past [`MAX_IMAGE`].
///
/// # Safety
/// `image` points at a fat-binary wrapper, a fat binary, a cubin or NUL-terminated bytes,
/// whose headers tell the truth about the memory that follows them.
pub unsafe fn image_at<'a>(image: *const u8) -> Result<(ImageKind, &'a [u8]), u32> {
    // SAFETY (whole function): headers are read as their formats define them; lengths come
    // from those headers, checked and bounded.
    unsafe {
        let read_u32 = |at: usize| std::ptr::read_unaligned(image.add(at) as *const u32);
        let magic = read_u32(0);
        if magic == FATBIN_WRAPPER_MAGIC {
            let data = std::ptr::read_unaligned(image.add(8) as *const *const u8);
            if data.is_null()
                || data == image
                || std::ptr::read_unaligned(data as *const u32) != FATBIN_MAGIC
            {
                return Err(CUDA_ERROR_INVALID_IMAGE);
            }
            return image_at(data);
        }
        if magic == FATBIN_MAGIC {
            let header = std::ptr::read_unaligned(image.add(6) as *const u16) as usize;
            let size = std::ptr::read_unaligned(image.add(8) as *const u64);
            let len = usize::try_from(size)
                .ok()
                .and_then(|s| s.checked_add(header))
                .filter(|&len| len <= MAX_IMAGE)
                .ok_or(CUDA_ERROR_INVALID_IMAGE)?;
            let bytes = std::slice::from_raw_parts(image, len);
            return Ok((ImageKind::FatBinary { header }, bytes));
        }
        if magic == ELF_MAGIC {
            let shoff = std::ptr::read_unaligned(image.add(0x28) as *const u64);
            let shentsize = std::ptr::read_unaligned(image.add(0x3A) as *const u16) as u64;
            let shnum = std::ptr::read_unaligned(image.add(0x3C) as *const u16) as u64;
            let len = shentsize
                .checked_mul(shnum)
                .and_then(|t| t.checked_add(shoff))
                .and_then(|len| usize::try_from(len).ok())
                .filter(|&len| (0x40..=MAX_IMAGE).contains(&len))
                .ok_or(CUDA_ERROR_INVALID_IMAGE)?;
            return Ok((ImageKind::Elf, std::slice::from_raw_parts(image, len)));
        }
        let text = CStr::from_ptr(image as *const c_char).to_bytes_with_nul();
        Ok((ImageKind::Text, text))
    }
}

/// A fat binary of a 16-byte header and `payload`, 8-byte aligned as a runtime registers it
/// (for tests and tools that make images).
pub fn fat_binary(payload: &[u8]) -> Vec<u64> {
    let mut bytes = FATBIN_MAGIC.to_le_bytes().to_vec();
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(payload);
    let mut aligned = vec![0u64; bytes.len().div_ceil(8)];
    // SAFETY: `aligned` holds at least bytes.len() bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), aligned.as_mut_ptr().cast(), bytes.len())
    };
    aligned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapper_leads_to_its_fat_binary_and_lengths_come_from_headers() {
        let fb = fat_binary(b"payload!");
        // SAFETY: a fat binary built above.
        let (kind, bytes) = unsafe { image_at(fb.as_ptr().cast()) }.unwrap();
        assert_eq!(kind, ImageKind::FatBinary { header: 16 });
        assert_eq!(bytes.len(), 24);
        let wrapper: [u64; 3] = [
            (FATBIN_WRAPPER_MAGIC as u64) | (1 << 32),
            fb.as_ptr() as u64,
            0,
        ];
        // SAFETY: a wrapper pointing at the fat binary above.
        let (_, through) = unsafe { image_at(wrapper.as_ptr().cast()) }.unwrap();
        assert_eq!(through, bytes);
        let mut cubin = [0u8; 64];
        cubin[..4].copy_from_slice(b"\x7fELF");
        cubin[0x28] = 64;
        // SAFETY: an ELF header whose section table ends the 64 bytes.
        let (kind, bytes) = unsafe { image_at(cubin.as_ptr()) }.unwrap();
        assert_eq!((kind, bytes.len()), (ImageKind::Elf, 64));
        // SAFETY: a NUL-terminated string.
        let (kind, text) = unsafe { image_at(c"ptx".as_ptr().cast()) }.unwrap();
        assert_eq!((kind, text), (ImageKind::Text, &b"ptx\0"[..]));
    }

    #[test]
    fn wrappers_pointing_nowhere_and_oversized_headers_are_refused() {
        let null: [u64; 3] = [(FATBIN_WRAPPER_MAGIC as u64) | (1 << 32), 0, 0];
        let mut itself: [u64; 3] = null;
        itself[1] = itself.as_ptr() as u64;
        let text = b"not a fat binary\0";
        let mut elsewhere = null;
        elsewhere[1] = text.as_ptr() as u64;
        for (w, why) in [(&null, "null"), (&itself, "itself"), (&elsewhere, "text")] {
            // SAFETY: wrappers whose data pointer is checked before it is followed.
            let got = unsafe { image_at(w.as_ptr().cast()) };
            assert_eq!(got.err(), Some(CUDA_ERROR_INVALID_IMAGE), "{why}");
        }
        let mut huge = fat_binary(b"x");
        huge[1] = (MAX_IMAGE as u64) + 1;
        // SAFETY: the header is read, its length refused before any slice is made.
        let got = unsafe { image_at(huge.as_ptr().cast()) };
        assert_eq!(got.err(), Some(CUDA_ERROR_INVALID_IMAGE));
        let mut cubin = [0u8; 64];
        cubin[..4].copy_from_slice(b"\x7fELF");
        cubin[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        cubin[0x3C] = 1;
        cubin[0x3A] = 64;
        // SAFETY: as above.
        let got = unsafe { image_at(cubin.as_ptr()) };
        assert_eq!(got.err(), Some(CUDA_ERROR_INVALID_IMAGE), "overflowing ELF");
    }
}
