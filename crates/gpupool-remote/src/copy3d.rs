//! How a 2D / 3D copy travels: each side is device memory, an array, or host memory packed
//! densely into the message (rows of `width` bytes, `height` rows per slice, `depth` slices).

use crate::wire::{DecodeError, Pod, Reader, Writer};

/// Side kind: host memory, packed in the message.
pub const HOST: u64 = 1;
/// Side kind: device memory (`ptr` is a device address).
pub const DEVICE: u64 = 2;
/// Side kind: a CUDA array (`ptr` is the handle).
pub const ARRAY: u64 = 3;

/// One side of a copy.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Side {
    /// [`HOST`], [`DEVICE`] or [`ARRAY`].
    pub kind: u64,
    /// Byte offset in a row.
    pub x: u64,
    /// Row.
    pub y: u64,
    /// Slice.
    pub z: u64,
    /// Device address or array handle.
    pub ptr: u64,
    /// Bytes between rows.
    pub pitch: u64,
    /// Rows between slices.
    pub height: u64,
}

// SAFETY: u64 fields only.
unsafe impl Pod for Side {}

/// A copy's shape and sides.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Copy3d {
    /// Source.
    pub src: Side,
    /// Destination.
    pub dst: Side,
    /// Bytes per row.
    pub width: u64,
    /// Rows.
    pub height: u64,
    /// Slices (1 for a 2D copy).
    pub depth: u64,
    /// 1 for `cuMemcpy3D`, 0 for `cuMemcpy2D`.
    pub three_d: u64,
}

// SAFETY: u64 fields and structs of them only.
unsafe impl Pod for Copy3d {}

impl Copy3d {
    /// Bytes of a densely packed host side, if it fits in `usize`.
    pub fn packed_len(&self) -> Option<usize> {
        let n = self
            .width
            .checked_mul(self.height)?
            .checked_mul(self.depth)?;
        usize::try_from(n).ok()
    }

    /// The byte range `[start, end)` a device side touches, relative to its base address.
    pub fn extent(&self, side: &Side) -> Option<(u64, u64)> {
        if self.width == 0 || self.height == 0 || self.depth == 0 {
            return Some((0, 0));
        }
        if self.height > 1 && side.pitch < self.width {
            return None;
        }
        // A 3D copy steps `side.height` rows from slice to slice, from its first slice `z` on
        // (a driver refuses fewer rows per slice than the copy's height); a 2D copy has no
        // slices (its depth, if a message sets one, is counted at the larger stride).
        let slice_rows = if self.three_d != 0 && (self.depth > 1 || side.z > 0) {
            if side.height < self.height {
                return None;
            }
            side.height
        } else if self.depth > 1 {
            side.height.max(self.height)
        } else {
            0
        };
        let start = side
            .z
            .checked_mul(slice_rows)?
            .checked_add(side.y)?
            .checked_mul(side.pitch)?
            .checked_add(side.x)?;
        let last_row = (self.depth - 1)
            .checked_mul(slice_rows)?
            .checked_add(self.height - 1)?;
        let end = start
            .checked_add(last_row.checked_mul(side.pitch)?)?
            .checked_add(self.width)?;
        Some((start, end))
    }

    /// Appends the copy.
    pub fn put(&self, w: &mut Writer) {
        w.put(self);
    }

    /// Reads a copy, checking its kinds.
    pub fn get(r: &mut Reader<'_>) -> Result<Copy3d, DecodeError> {
        let c: Copy3d = r.get("copy descriptor")?;
        for s in [&c.src, &c.dst] {
            if !(HOST..=ARRAY).contains(&s.kind) {
                return Err(DecodeError {
                    what: "copy side kind",
                    at: 0,
                });
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_cover_the_rows_touched() {
        let side = Side {
            kind: DEVICE,
            x: 4,
            y: 1,
            pitch: 512,
            ..Side::default()
        };
        let c = Copy3d {
            width: 100,
            height: 3,
            depth: 1,
            ..Copy3d::default()
        };
        assert_eq!(c.extent(&side), Some((516, 516 + 2 * 512 + 100)));
        let narrow = Side { pitch: 50, ..side };
        assert_eq!(c.extent(&narrow), None, "pitch below width");
        let huge = Side {
            y: u64::MAX,
            ..side
        };
        assert_eq!(c.extent(&huge), None, "overflow");
        assert_eq!(c.packed_len(), Some(300));
        // A 3D copy's first slice counts, even for one slice.
        let sliced = Side {
            z: 2,
            height: 4,
            ..side
        };
        let c3 = Copy3d { three_d: 1, ..c };
        let start = 4 + (2 * 4 + 1) * 512;
        assert_eq!(c3.extent(&sliced), Some((start, start + 2 * 512 + 100)));
        assert_eq!(
            c3.extent(&Side {
                height: 2,
                ..sliced
            }),
            None,
            "fewer rows per slice than the copy's height"
        );
        assert_eq!(
            c.extent(&sliced),
            Some((516, 516 + 2 * 512 + 100)),
            "2D: no slices"
        );
    }
}
