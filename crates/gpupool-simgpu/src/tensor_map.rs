//! `cuTensorMapEncode*` and `cuTensorMapReplaceAddress`: the documented argument rules are
//! checked ([`TensorMapRequest::check`]) and the request packed into the 128 bytes in a layout
//! of the simulator's own (kernels here read no descriptor): a tag, the global address alone in
//! its word, then the other fields. Replacing the address therefore gives exactly the bytes
//! an encode with the new address gives.

use crate::ctx::initialised;
use gpupool_cuda::result::*;
use gpupool_cuda::tensor_map::{address_fits, map_fits, RawTensorMap, TensorMapRequest};
use std::ffi::c_void;

/// First word of a simulated descriptor (the kind in its low byte).
const TAG: u64 = 0x6770_7470_6d61_7000;

/// Packs `values` of `bits` bits each, low first.
fn pack<T: Copy + Into<i64>>(values: &[T], bits: u32) -> u64 {
    let mask = (1u64 << bits) - 1;
    values.iter().enumerate().fold(0, |w, (i, &v)| {
        w | ((v.into() as u64 & mask) << (bits * i as u32))
    })
}

/// The simulator's descriptor of a checked request.
pub fn encode(r: &TensorMapRequest) -> RawTensorMap {
    let mut m = [0u64; 16];
    m[0] = TAG | u64::from(r.kind);
    m[1] = r.address;
    m[2] = pack(
        &[
            r.data_type,
            r.rank,
            r.interleave,
            r.swizzle,
            r.l2_promotion,
            r.oob_fill,
            r.wide_mode,
        ],
        8,
    );
    m[3..8].copy_from_slice(&r.dims);
    m[8..12].copy_from_slice(&r.strides);
    m[12] = pack(&r.box_dims, 12);
    m[13] = pack(&r.element_strides, 4) | u64::from(r.channels) << 20 | u64::from(r.pixels) << 32;
    m[14] = pack(&r.lower, 16);
    m[15] = pack(&r.upper, 16);
    m
}

/// Checks and encodes `request` into `map` (64-byte aligned).
///
/// # Safety
/// `map` is null or valid for 128 bytes of writes.
unsafe fn encode_into(map: *mut RawTensorMap, request: Result<TensorMapRequest, u32>) -> u32 {
    if let Err(e) = initialised() {
        return e;
    }
    if !map_fits(map) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let r = match request.and_then(|r| r.check().map(|()| r)) {
        Ok(r) => r,
        Err(e) => return e,
    };
    // SAFETY: checked non-null and aligned; the caller's 128 bytes.
    unsafe { *map = encode(&r) };
    CUDA_SUCCESS
}

gpupool_cuda::tensor_map_entry_points!(encode_into);

/// `cuTensorMapReplaceAddress`: a descriptor this driver wrote, and an address aligned as its
/// data type and interleave require.
pub unsafe fn replace_address(map: *mut RawTensorMap, address: *mut c_void) -> u32 {
    if let Err(e) = initialised() {
        return e;
    }
    if !map_fits(map) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: checked non-null and aligned; the caller's 128 bytes.
    let m = unsafe { &mut *map };
    let (data_type, interleave) = (m[2] as u32 & 0xff, (m[2] >> 16) as u32 & 0xff);
    if m[0] & !0xff != TAG || !address_fits(address as u64, data_type, interleave) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    m[1] = address as u64;
    CUDA_SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_one_word_and_the_fields_do_not_overlap() {
        let r = TensorMapRequest {
            data_type: 7,
            rank: 3,
            address: 0x1000,
            dims: [256, 256, 4, 0, 0],
            strides: [1024, 262144, 0, 0],
            element_strides: [1, 1, 1, 0, 0],
            box_dims: [32, 256, 1, 0, 0],
            lower: [-3, 0, 0],
            upper: [2, 0, 0],
            ..TensorMapRequest::default()
        };
        let m = encode(&r);
        assert_eq!(m[1], 0x1000);
        let moved = encode(&TensorMapRequest {
            address: 0x2000,
            ..r
        });
        assert_eq!(
            (0..16).filter(|&i| m[i] != moved[i]).collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(m[12], 32 | 256 << 12 | 1 << 24);
        assert_eq!(
            m[14] & 0xffff,
            0xfffd,
            "negative corners kept in their 16 bits"
        );
        assert_eq!((m[14] >> 16) & 0xffff, 0);
    }
}
