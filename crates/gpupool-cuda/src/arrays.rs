//! CUDA array descriptors (read with raw integers) and the device memory an array needs.

/// `CUDA_ARRAY_DESCRIPTOR`, read with the format as a raw integer.
#[repr(C)]
pub struct RawArrayDescriptor {
    /// Width in elements.
    pub width: usize,
    /// Height (0 = 1D).
    pub height: usize,
    /// `CUarray_format`.
    pub format: u32,
    /// Channels per element.
    pub channels: u32,
}

/// `CUDA_ARRAY3D_DESCRIPTOR`, read with the format as a raw integer.
#[repr(C)]
pub struct RawArray3dDescriptor {
    /// Width in elements.
    pub width: usize,
    /// Height (0 = 1D).
    pub height: usize,
    /// Depth (0 = 2D).
    pub depth: usize,
    /// `CUarray_format`.
    pub format: u32,
    /// Channels per element.
    pub channels: u32,
    /// Flags.
    pub flags: u32,
}

const _: () = assert!(
    std::mem::size_of::<RawArrayDescriptor>()
        == std::mem::size_of::<crate::cu::CUDA_ARRAY_DESCRIPTOR>()
);
const _: () = assert!(
    std::mem::size_of::<RawArray3dDescriptor>()
        == std::mem::size_of::<crate::cu::CUDA_ARRAY3D_DESCRIPTOR>()
);

/// Bytes per channel of the plain `CUarray_format`s (integers, half, float).
pub fn format_bytes(format: u32) -> Option<u64> {
    Some(match format {
        0x01 | 0x08 => 1,
        0x02 | 0x09 | 0x10 => 2,
        0x03 | 0x0a | 0x20 => 4,
        _ => return None,
    })
}

/// Bytes one element of an array of `format` with `channels` channels takes, at most: every
/// `CUarray_format` of CUDA 13 (plain, normalized, block-compressed, video); `None` for a code
/// no driver defines (such an array is refused, never left uncharged). Formats that pack less
/// than a byte per pixel (BC1, BC4, 4:2:0 video) are charged a little more than they take.
pub fn element_bytes(format: u32, channels: u32) -> Option<u64> {
    let channels = u64::from(channels);
    let fixed = match format {
        0x01..=0x03 | 0x08..=0x0a | 0x10 | 0x20 => return Some(format_bytes(format)? * channels),
        // UNORM / SNORM INT8 x1, x2, x4 and INT16 x1, x2, x4
        0xc0 | 0xc6 => 1,
        0xc1 | 0xc7 => 2,
        0xc2 | 0xc8 => 4,
        0xc3 | 0xc9 => 2,
        0xc4 | 0xca => 4,
        0xc5 | 0xcb => 8,
        // BC1 … BC7 (8 or 16 bytes per 4x4 block): a byte per pixel covers all of them
        0x91..=0x9e => 1,
        // 10-10-10-2
        0x50 => 4,
        // NV12 (1.5), NV16, YUY2
        0xb0 | 0xa2 | 0xa5 => 2,
        // P010 / P016 (3), Y444 planar 8 / YUV444 8-bit semi-planar (3)
        0x9f | 0xa1 | 0xb2 | 0xb4 => 3,
        // P210, P216, Y210, Y216, AYUV, Y410
        0xa3 | 0xa4 | 0xa6..=0xa9 => 4,
        // Y444 planar 10 / YUV444 16-bit semi-planar (6), Y416
        0xb3 | 0xb5 => 6,
        0xb1 => 8,
        _ => return None,
    };
    Some(fixed * channels.max(1))
}

/// Bytes an array of these dimensions needs, or `None` if malformed or of an unknown format.
pub fn array_bytes(
    width: usize,
    height: usize,
    depth: usize,
    format: u32,
    channels: u32,
) -> Option<(u64, u64)> {
    if width == 0 || !matches!(channels, 1 | 2 | 4) {
        return None;
    }
    let pitch = (width as u64).checked_mul(element_bytes(format, channels)?)?;
    let total = pitch
        .checked_mul(height.max(1) as u64)?
        .checked_mul(depth.max(1) as u64)?;
    Some((pitch, total))
}

/// Bytes of all `levels` of a mipmapped array, or `None` if malformed.
pub fn mipmapped_bytes(d: &RawArray3dDescriptor, levels: u32) -> Option<(u64, u64)> {
    if levels == 0 || levels > 32 {
        return None;
    }
    let mut total = 0u64;
    let mut first_pitch = 0;
    for l in 0..levels {
        let w = (d.width >> l).max(1);
        let h = if d.height == 0 {
            0
        } else {
            (d.height >> l).max(1)
        };
        let z = if d.depth == 0 {
            0
        } else {
            (d.depth >> l).max(1)
        };
        let (pitch, bytes) = array_bytes(w, h, z, d.format, d.channels)?;
        if l == 0 {
            first_pitch = pitch;
        }
        total = total.checked_add(bytes)?;
    }
    Some((first_pitch, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(array_bytes(100, 10, 0, 0x20, 4), Some((1600, 16000)));
        assert_eq!(array_bytes(100, 0, 0, 0x01, 1), Some((100, 100)));
        assert_eq!(array_bytes(100, 0, 0, 0x77, 1), None);
        assert_eq!(array_bytes(100, 0, 0, 0x12345, 1), None);
        // Every format of CUDA 13 is charged at least what it holds.
        assert_eq!(array_bytes(100, 10, 0, 0xb0, 1), Some((200, 2000)), "NV12");
        assert_eq!(array_bytes(100, 10, 0, 0x91, 4), Some((400, 4000)), "BC1");
        assert_eq!(
            array_bytes(100, 10, 0, 0xc5, 1),
            Some((800, 8000)),
            "UNORM16X4"
        );
        for f in [0x50, 0x91, 0x9e, 0x9f, 0xa1, 0xa9, 0xb0, 0xb5, 0xc0, 0xcb] {
            assert!(array_bytes(16, 16, 0, f, 1).is_some(), "{f:#x}");
        }
        // Sizes that overflow are malformed, not small.
        assert_eq!(array_bytes(usize::MAX, 2, 0, 0x20, 4), None);
        assert_eq!(array_bytes(1 << 40, 1 << 40, 1 << 40, 0x01, 1), None);
        assert_eq!(array_bytes(0, 1, 1, 0x01, 1), None);
        let d = RawArray3dDescriptor {
            width: 8,
            height: 8,
            depth: 0,
            format: 0x01,
            channels: 1,
            flags: 0,
        };
        assert_eq!(mipmapped_bytes(&d, 4), Some((8, 64 + 16 + 4 + 1)));
    }
}
