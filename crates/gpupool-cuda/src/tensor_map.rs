//! Tensor-memory-access descriptors (`cuTensorMapEncodeTiled`, `…Im2col`, `…Im2colWide`): the
//! request the caller's C arrays describe, read by rank into one fixed-size plain structure
//! (so it can travel and be compared as bytes), and the rules NVIDIA documents for each
//! encode. The descriptor itself is 128 opaque bytes only a driver can write.

use crate::result::*;

/// Most dimensions of a tensor map.
pub const MAX_RANK: usize = 5;

/// A `CUtensorMap`: 128 opaque bytes, 64-byte aligned where the caller puts it.
pub type RawTensorMap = [u64; 16];

/// Which encode a [`TensorMapRequest`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum TensorMapKind {
    /// `cuTensorMapEncodeTiled`.
    Tiled = 0,
    /// `cuTensorMapEncodeIm2col`.
    Im2col = 1,
    /// `cuTensorMapEncodeIm2colWide`.
    Im2colWide = 2,
}

/// The arguments of one encode, arrays padded with zeros past the rank. Plain data without
/// padding bytes: equal requests are equal bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TensorMapRequest {
    /// `CUtensorMapDataType`.
    pub data_type: u32,
    /// Dimensions (1 to 5; 3 to 5 for the im2col encodes).
    pub rank: u32,
    /// `globalAddress`.
    pub address: u64,
    /// `globalDim`: elements along each dimension.
    pub dims: [u64; MAX_RANK],
    /// `globalStrides`: bytes between the starts of consecutive rows of dimensions 1 up.
    pub strides: [u64; MAX_RANK - 1],
    /// `elementStrides`.
    pub element_strides: [u32; MAX_RANK],
    /// `CUtensorMapInterleave`.
    pub interleave: u32,
    /// `CUtensorMapSwizzle`.
    pub swizzle: u32,
    /// `CUtensorMapL2promotion`.
    pub l2_promotion: u32,
    /// `CUtensorMapFloatOOBfill`.
    pub oob_fill: u32,
    /// A [`TensorMapKind`] as its number.
    pub kind: u32,
    /// `boxDim` (tiled).
    pub box_dims: [u32; MAX_RANK],
    /// `pixelBoxLowerCorner` (im2col: rank − 2 values; im2col wide: the width offset first).
    pub lower: [i32; 3],
    /// `pixelBoxUpperCorner`, as `lower`.
    pub upper: [i32; 3],
    /// `channelsPerPixel` (im2col encodes).
    pub channels: u32,
    /// `pixelsPerColumn` (im2col encodes).
    pub pixels: u32,
    /// `CUtensorMapIm2ColWideMode` (im2col wide).
    pub wide_mode: u32,
}

const _: () = assert!(std::mem::size_of::<TensorMapRequest>() == 184);

/// The arguments every encode shares, as the caller passed them.
#[derive(Debug, Clone, Copy)]
pub struct RawShape {
    /// `tensorDataType`.
    pub data_type: u32,
    /// `tensorRank`.
    pub rank: u32,
    /// `globalAddress`.
    pub address: u64,
    /// `globalDim` (`rank` values).
    pub dims: *const u64,
    /// `globalStrides` (`rank − 1` values).
    pub strides: *const u64,
    /// `elementStrides` (`rank` values).
    pub element_strides: *const u32,
    /// `interleave`.
    pub interleave: u32,
    /// `swizzle`.
    pub swizzle: u32,
    /// `l2Promotion`.
    pub l2_promotion: u32,
    /// `oobFill`.
    pub oob_fill: u32,
}

impl RawShape {
    /// The shape of an encode's arguments; `modes` are interleave, swizzle, L2 promotion and
    /// out-of-bounds fill.
    pub fn of(
        data_type: u32,
        rank: u32,
        address: *mut std::ffi::c_void,
        dims: *const u64,
        strides: *const u64,
        element_strides: *const u32,
        modes: [u32; 4],
    ) -> RawShape {
        let [interleave, swizzle, l2_promotion, oob_fill] = modes;
        RawShape {
            data_type,
            rank,
            address: address as u64,
            dims,
            strides,
            element_strides,
            interleave,
            swizzle,
            l2_promotion,
            oob_fill,
        }
    }
}

/// Copies `n` values from `p` into the front of `out`.
///
/// # Safety
/// `p` is valid for `n` reads, `n <= out.len()`.
unsafe fn copy_in<T: Copy>(p: *const T, n: usize, out: &mut [T]) {
    // SAFETY: the caller's contract.
    out[..n].copy_from_slice(unsafe { std::slice::from_raw_parts(p, n) });
}

impl TensorMapRequest {
    /// The common part of a request of `kind`, reading exactly the values `shape`'s rank says
    /// (nothing when the rank is out of `ranks` or a needed array is null:
    /// `CUDA_ERROR_INVALID_VALUE`).
    ///
    /// # Safety
    /// `shape`'s arrays hold at least the values its rank implies, or are null.
    unsafe fn from_shape(
        kind: TensorMapKind,
        shape: &RawShape,
        ranks: std::ops::RangeInclusive<u32>,
    ) -> Result<TensorMapRequest, u32> {
        let rank = shape.rank;
        if !ranks.contains(&rank)
            || shape.dims.is_null()
            || shape.element_strides.is_null()
            || (rank > 1 && shape.strides.is_null())
        {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let n = rank as usize;
        let mut r = TensorMapRequest {
            data_type: shape.data_type,
            rank,
            address: shape.address,
            interleave: shape.interleave,
            swizzle: shape.swizzle,
            l2_promotion: shape.l2_promotion,
            oob_fill: shape.oob_fill,
            kind: kind as u32,
            ..TensorMapRequest::default()
        };
        // SAFETY: the caller's arrays hold `rank` (strides: `rank − 1`) values.
        unsafe {
            copy_in(shape.dims, n, &mut r.dims);
            copy_in(shape.element_strides, n, &mut r.element_strides);
            if n > 1 {
                copy_in(shape.strides, n - 1, &mut r.strides);
            }
        }
        Ok(r)
    }

    /// `cuTensorMapEncodeTiled`'s arguments.
    ///
    /// # Safety
    /// As [`TensorMapRequest::from_shape`]; `box_dims` holds `rank` values or is null.
    pub unsafe fn tiled(shape: &RawShape, box_dims: *const u32) -> Result<Self, u32> {
        if box_dims.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: the caller's contract.
        let mut r = unsafe { Self::from_shape(TensorMapKind::Tiled, shape, 1..=5)? };
        // SAFETY: `rank` values, the rank checked above.
        unsafe { copy_in(box_dims, r.rank as usize, &mut r.box_dims) };
        Ok(r)
    }

    /// `cuTensorMapEncodeIm2col`'s arguments (`lower` / `upper`: `rank − 2` values).
    ///
    /// # Safety
    /// As [`TensorMapRequest::from_shape`]; the corners hold `rank − 2` values or are null.
    pub unsafe fn im2col(
        shape: &RawShape,
        lower: *const i32,
        upper: *const i32,
        channels: u32,
        pixels: u32,
    ) -> Result<Self, u32> {
        if lower.is_null() || upper.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: the caller's contract.
        let mut r = unsafe { Self::from_shape(TensorMapKind::Im2col, shape, 3..=5)? };
        let corners = r.rank as usize - 2;
        // SAFETY: `rank − 2` values, the rank checked above.
        unsafe {
            copy_in(lower, corners, &mut r.lower);
            copy_in(upper, corners, &mut r.upper);
        }
        r.channels = channels;
        r.pixels = pixels;
        Ok(r)
    }

    /// `cuTensorMapEncodeIm2colWide`'s arguments.
    ///
    /// # Safety
    /// As [`TensorMapRequest::from_shape`].
    pub unsafe fn im2col_wide(
        shape: &RawShape,
        lower_width: i32,
        upper_width: i32,
        channels: u32,
        pixels: u32,
        mode: u32,
    ) -> Result<Self, u32> {
        // SAFETY: the caller's contract.
        let mut r = unsafe { Self::from_shape(TensorMapKind::Im2colWide, shape, 3..=5)? };
        r.lower[0] = lower_width;
        r.upper[0] = upper_width;
        r.channels = channels;
        r.pixels = pixels;
        r.wide_mode = mode;
        Ok(r)
    }

    /// Which encode this is (`None`: an unknown number, from a hostile message).
    pub fn kind(&self) -> Option<TensorMapKind> {
        match self.kind {
            0 => Some(TensorMapKind::Tiled),
            1 => Some(TensorMapKind::Im2col),
            2 => Some(TensorMapKind::Im2colWide),
            _ => None,
        }
    }

    /// Whether the request meets the rules NVIDIA documents for its encode
    /// (`CUDA_ERROR_INVALID_VALUE` otherwise).
    pub fn check(&self) -> Result<(), u32> {
        rules::check(self).map_err(|_| CUDA_ERROR_INVALID_VALUE)
    }
}

/// Whether `map` may receive a descriptor: non-null and 64-byte aligned, as the driver
/// requires (`CUDA_ERROR_INVALID_VALUE` otherwise).
pub fn map_fits(map: *const RawTensorMap) -> bool {
    !map.is_null() && (map as usize).is_multiple_of(64)
}

/// Whether `address` may hold a tensor map's global memory start for `data_type` and
/// `interleave` (`cuTensorMapReplaceAddress` checks the same).
pub fn address_fits(address: u64, data_type: u32, interleave: u32) -> bool {
    address != 0 && address.is_multiple_of(rules::address_alignment(data_type, interleave))
}

/// The documented rules, one function each, so a unit test can name the one a request breaks.
mod rules {
    use super::{TensorMapKind, TensorMapRequest};

    /// A broken rule.
    #[derive(Debug, PartialEq, Eq)]
    pub struct Broken(pub &'static str);

    /// `CU_TENSOR_MAP_INTERLEAVE_32B`.
    const INTERLEAVE_32B: u32 = 2;
    /// `CU_TENSOR_MAP_DATA_TYPE_16U4_ALIGN8B`, `…16U4_ALIGN16B`, `…16U6_ALIGN16B`.
    const U4_ALIGN8: u32 = 13;
    const U4_ALIGN16: u32 = 14;
    const U6_ALIGN16: u32 = 15;

    /// Half-bytes one element of `data_type` takes in memory (`None`: no such type).
    pub fn nibbles(data_type: u32) -> Option<u64> {
        Some(match data_type {
            0 => 2,
            1 | 6 | 9 => 4,
            2 | 3 | 7 | 10..=12 => 8,
            4 | 5 | 8 => 16,
            U4_ALIGN8 => 1,
            U4_ALIGN16 | U6_ALIGN16 => 2,
            _ => return None,
        })
    }

    fn packed16(data_type: u32) -> bool {
        matches!(data_type, U4_ALIGN16 | U6_ALIGN16)
    }

    /// Bytes the global address (and every stride) must be a multiple of.
    pub fn address_alignment(data_type: u32, interleave: u32) -> u64 {
        if interleave == INTERLEAVE_32B || packed16(data_type) {
            32
        } else {
            16
        }
    }

    fn rule(ok: bool, what: &'static str) -> Result<(), Broken> {
        if ok {
            Ok(())
        } else {
            Err(Broken(what))
        }
    }

    /// Every rule of `r`'s encode.
    pub fn check(r: &TensorMapRequest) -> Result<(), Broken> {
        let kind = r.kind().ok_or(Broken("kind"))?;
        let elem = nibbles(r.data_type).ok_or(Broken("data type"))?;
        let n = r.rank as usize;
        let ranks = if kind == TensorMapKind::Tiled {
            1..=5
        } else {
            3..=5
        };
        rule(ranks.contains(&r.rank), "rank")?;
        rule(r.interleave <= INTERLEAVE_32B, "interleave")?;
        rule(r.interleave == 0 || r.rank >= 3, "interleaved rank")?;
        rule(r.swizzle <= 6, "swizzle")?;
        rule(r.l2_promotion <= 3, "L2 promotion")?;
        rule(r.oob_fill <= 1, "out-of-bounds fill")?;
        rule(
            r.oob_fill == 0 || (6..=12).contains(&r.data_type),
            "NaN fill of a non-float type",
        )?;
        rule(
            r.interleave != INTERLEAVE_32B || r.swizzle == 1,
            "32-byte interleave without 32-byte swizzle",
        )?;
        rule(
            super::address_fits(r.address, r.data_type, r.interleave),
            "global address alignment",
        )?;
        let dims = &r.dims[..n];
        rule(
            dims.iter().all(|&d| (1..=1 << 32).contains(&d)),
            "dimension size",
        )?;
        rule(
            !packed16(r.data_type) || dims[0].is_multiple_of(128),
            "packed inner dimension",
        )?;
        rule(
            r.data_type != U4_ALIGN8 || dims[0].is_multiple_of(2),
            "packed inner dimension",
        )?;
        let align = address_alignment(r.data_type, r.interleave);
        rule(
            r.strides[..n - 1]
                .iter()
                .all(|&s| s.is_multiple_of(align) && s < 1 << 40 && s > 0),
            "stride",
        )?;
        rule(
            r.element_strides[..n].iter().all(|&s| (1..=8).contains(&s)),
            "element stride",
        )?;
        // Bytes of the box's inner dimension, for the swizzle rule.
        let inner_nibbles = match kind {
            TensorMapKind::Tiled => {
                let b = &r.box_dims[..n];
                rule(b.iter().all(|&d| (1..=256).contains(&d)), "box size")?;
                rule(
                    !packed16(r.data_type) || b[0] == 128,
                    "packed box inner dimension",
                )?;
                let inner = u64::from(b[0]) * elem;
                rule(
                    r.interleave != 0 || inner.is_multiple_of(32),
                    "box inner dimension not a multiple of 16 bytes",
                )?;
                inner
            }
            TensorMapKind::Im2col | TensorMapKind::Im2colWide => {
                rule((1..=256).contains(&r.channels), "channels per pixel")?;
                let wide_w128 = kind == TensorMapKind::Im2colWide && r.wide_mode == 1;
                rule(
                    wide_w128 || (1..=1024).contains(&r.pixels),
                    "pixels per column",
                )?;
                corners(r, kind)?;
                u64::from(r.channels) * elem
            }
        };
        let span = match r.swizzle {
            0 => u64::MAX,
            1 => 32,
            2 => 64,
            _ => 128,
        };
        rule(
            r.interleave != 0 || inner_nibbles <= span * 2,
            "inner dimension wider than the swizzle",
        )
    }

    /// The im2col bounding box: offsets in the rank's range and a non-empty box.
    fn corners(r: &TensorMapRequest, kind: TensorMapKind) -> Result<(), Broken> {
        if kind == TensorMapKind::Im2colWide {
            rule(r.wide_mode <= 1, "im2col wide mode")?;
            let ok = |v: i32| i16::try_from(v).is_ok();
            return rule(ok(r.lower[0]) && ok(r.upper[0]), "corner offset");
        }
        let (count, limit) = match r.rank {
            3 => (1, 1 << 15),
            4 => (2, 1 << 7),
            _ => (3, 1 << 4),
        };
        let within = |v: &i32| (-limit..limit).contains(v);
        rule(
            r.lower[..count].iter().all(within) && r.upper[..count].iter().all(within),
            "corner offset",
        )
    }
}

/// Writes `encode_tiled`, `encode_im2col` and `encode_im2col_wide` with the driver's
/// signatures (`cuTensorMapEncodeTiled`, `…Im2col`, `…Im2colWide`), each reading the caller's
/// arrays into a [`TensorMapRequest`] (or the error reading them gives) and calling
/// `$imp(*mut RawTensorMap, Result<TensorMapRequest, u32>) -> u32`.
#[macro_export]
macro_rules! tensor_map_entry_points {
    ($imp:path) => {
        /// `cuTensorMapEncodeTiled`.
        #[allow(clippy::too_many_arguments)]
        pub unsafe fn encode_tiled(
            map: *mut $crate::tensor_map::RawTensorMap,
            data_type: u32,
            rank: u32,
            address: *mut ::std::ffi::c_void,
            dims: *const u64,
            strides: *const u64,
            box_dims: *const u32,
            element_strides: *const u32,
            interleave: u32,
            swizzle: u32,
            l2_promotion: u32,
            oob_fill: u32,
        ) -> u32 {
            let shape = $crate::tensor_map::RawShape::of(
                data_type,
                rank,
                address,
                dims,
                strides,
                element_strides,
                [interleave, swizzle, l2_promotion, oob_fill],
            );
            // SAFETY: the caller's arrays, read by rank, and map.
            unsafe {
                $imp(
                    map,
                    $crate::tensor_map::TensorMapRequest::tiled(&shape, box_dims),
                )
            }
        }

        /// `cuTensorMapEncodeIm2col`.
        #[allow(clippy::too_many_arguments)]
        pub unsafe fn encode_im2col(
            map: *mut $crate::tensor_map::RawTensorMap,
            data_type: u32,
            rank: u32,
            address: *mut ::std::ffi::c_void,
            dims: *const u64,
            strides: *const u64,
            lower: *const i32,
            upper: *const i32,
            channels: u32,
            pixels: u32,
            element_strides: *const u32,
            interleave: u32,
            swizzle: u32,
            l2_promotion: u32,
            oob_fill: u32,
        ) -> u32 {
            let shape = $crate::tensor_map::RawShape::of(
                data_type,
                rank,
                address,
                dims,
                strides,
                element_strides,
                [interleave, swizzle, l2_promotion, oob_fill],
            );
            // SAFETY: the caller's arrays, read by rank, and map.
            unsafe {
                let request = $crate::tensor_map::TensorMapRequest::im2col(
                    &shape, lower, upper, channels, pixels,
                );
                $imp(map, request)
            }
        }

        /// `cuTensorMapEncodeIm2colWide`.
        #[allow(clippy::too_many_arguments)]
        pub unsafe fn encode_im2col_wide(
            map: *mut $crate::tensor_map::RawTensorMap,
            data_type: u32,
            rank: u32,
            address: *mut ::std::ffi::c_void,
            dims: *const u64,
            strides: *const u64,
            lower_width: i32,
            upper_width: i32,
            channels: u32,
            pixels: u32,
            element_strides: *const u32,
            interleave: u32,
            mode: u32,
            swizzle: u32,
            l2_promotion: u32,
            oob_fill: u32,
        ) -> u32 {
            let shape = $crate::tensor_map::RawShape::of(
                data_type,
                rank,
                address,
                dims,
                strides,
                element_strides,
                [interleave, swizzle, l2_promotion, oob_fill],
            );
            // SAFETY: the caller's arrays, read by rank, and map.
            unsafe {
                let request = $crate::tensor_map::TensorMapRequest::im2col_wide(
                    &shape,
                    lower_width,
                    upper_width,
                    channels,
                    pixels,
                    mode,
                );
                $imp(map, request)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::rules::check;
    use super::*;

    /// A valid tiled request: a 1024 x 512 float matrix, 64 x 32 boxes, 128-byte swizzle.
    fn matrix() -> TensorMapRequest {
        let (dims, strides, estrides, boxes) = ([1024u64, 512], [4096u64], [1u32, 1], [32u32, 32]);
        let shape = RawShape {
            data_type: 7,
            rank: 2,
            address: 0x7000_0000_0000,
            dims: dims.as_ptr(),
            strides: strides.as_ptr(),
            element_strides: estrides.as_ptr(),
            interleave: 0,
            swizzle: 3,
            l2_promotion: 2,
            oob_fill: 0,
        };
        // SAFETY: arrays of the rank's length.
        unsafe { TensorMapRequest::tiled(&shape, boxes.as_ptr()) }.unwrap()
    }

    #[test]
    fn a_valid_tiled_request_passes_and_reads_only_its_rank() {
        let r = matrix();
        assert_eq!(check(&r), Ok(()));
        assert_eq!(r.dims, [1024, 512, 0, 0, 0]);
        assert_eq!(r.strides, [4096, 0, 0, 0]);
        assert_eq!(r.box_dims, [32, 32, 0, 0, 0]);
    }

    #[test]
    fn each_documented_rule_refuses_what_it_names() {
        let broken = |f: &dyn Fn(&mut TensorMapRequest)| {
            let mut r = matrix();
            f(&mut r);
            check(&r).unwrap_err().0
        };
        assert_eq!(broken(&|r| r.address += 8), "global address alignment");
        assert_eq!(broken(&|r| r.address = 0), "global address alignment");
        assert_eq!(broken(&|r| r.strides[0] = 4100), "stride");
        assert_eq!(broken(&|r| r.box_dims[1] = 257), "box size");
        assert_eq!(
            broken(&|r| r.box_dims[0] = 36),
            "inner dimension wider than the swizzle"
        );
        assert_eq!(
            broken(&|r| {
                r.box_dims[0] = 6;
                r.swizzle = 0
            }),
            "box inner dimension not a multiple of 16 bytes"
        );
        assert_eq!(broken(&|r| r.element_strides[1] = 9), "element stride");
        assert_eq!(broken(&|r| r.dims[1] = 0), "dimension size");
        assert_eq!(broken(&|r| r.data_type = 16), "data type");
        assert_eq!(broken(&|r| r.rank = 6), "rank");
        assert_eq!(broken(&|r| r.interleave = 1), "interleaved rank");
        assert_eq!(broken(&|r| r.oob_fill = 2), "out-of-bounds fill");
    }

    #[test]
    fn a_nan_fill_needs_a_float_type() {
        let mut r = matrix();
        r.oob_fill = 1;
        assert_eq!(check(&r), Ok(()), "float32 may be NaN-filled");
        r.data_type = 3;
        assert_eq!(check(&r).unwrap_err().0, "NaN fill of a non-float type");
    }

    #[test]
    fn the_rank_is_checked_before_any_array_is_read() {
        let shape = RawShape {
            data_type: 7,
            rank: 6,
            address: 0x1000,
            // Arrays too short for rank 6: reading them would be out of bounds.
            dims: [1u64].as_ptr(),
            strides: [16u64].as_ptr(),
            element_strides: [1u32].as_ptr(),
            interleave: 0,
            swizzle: 0,
            l2_promotion: 0,
            oob_fill: 0,
        };
        // SAFETY: the rank is refused before the arrays are read.
        let r = unsafe { TensorMapRequest::tiled(&shape, [4u32].as_ptr()) };
        assert_eq!(r, Err(CUDA_ERROR_INVALID_VALUE));
        let im2col_rank_2 = RawShape { rank: 2, ..shape };
        // SAFETY: as above.
        let r =
            unsafe { TensorMapRequest::im2col(&im2col_rank_2, [0].as_ptr(), [0].as_ptr(), 8, 8) };
        assert_eq!(r, Err(CUDA_ERROR_INVALID_VALUE));
    }

    #[test]
    fn im2col_corners_follow_the_rank_s_range() {
        let dims = [64u64, 32, 32, 8];
        let strides = [128u64, 4096, 131072];
        let estrides = [1u32; 4];
        let shape = RawShape {
            data_type: 6,
            rank: 4,
            address: 0x2000,
            dims: dims.as_ptr(),
            strides: strides.as_ptr(),
            element_strides: estrides.as_ptr(),
            interleave: 0,
            swizzle: 3,
            l2_promotion: 0,
            oob_fill: 0,
        };
        let request = |lower: [i32; 2], channels| {
            // SAFETY: arrays of the rank's lengths.
            unsafe {
                TensorMapRequest::im2col(&shape, lower.as_ptr(), [0, 0].as_ptr(), channels, 64)
            }
            .unwrap()
        };
        assert_eq!(check(&request([-1, -1], 64)), Ok(()));
        assert_eq!(
            check(&request([-129, 0], 64)).unwrap_err().0,
            "corner offset"
        );
        assert_eq!(
            check(&request([0, 0], 0)).unwrap_err().0,
            "channels per pixel"
        );
        assert_eq!(
            check(&request([0, 0], 128)).unwrap_err().0,
            "inner dimension wider than the swizzle"
        );
        assert_eq!(request([0, 0], 64).upper, [0, 0, 0]);
    }

    #[test]
    fn replacement_addresses_follow_the_same_alignment() {
        assert!(address_fits(0x1010, 7, 0));
        assert!(!address_fits(0x1010, 7, 2), "32-byte interleave");
        assert!(!address_fits(0x1010, 14, 0), "packed 16-byte types");
        assert!(!address_fits(0, 7, 0));
    }
}
