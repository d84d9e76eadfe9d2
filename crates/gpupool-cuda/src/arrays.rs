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

/// Bytes per channel of a `CUarray_format`.
pub fn format_bytes(format: u32) -> Option<u64> {
    Some(match format {
        0x01 | 0x08 => 1,
        0x02 | 0x09 | 0x10 => 2,
        0x03 | 0x0a | 0x20 => 4,
        _ => return None,
    })
}

/// Bytes an array of these dimensions needs, or `None` if malformed.
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
    let pitch = (width as u64).checked_mul(format_bytes(format)? * channels as u64)?;
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
