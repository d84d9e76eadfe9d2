//! CUDA arrays and mipmapped arrays: linear backing store charged as device memory.

use crate::ctx::{require_current, Context};
use crate::mem::{alloc_on, free_device, Kind};
use gpupool_cuda::arrays::{array_bytes, RawArray3dDescriptor, RawArrayDescriptor};
use gpupool_cuda::cu::{CUarray, CUmipmappedArray};
use gpupool_cuda::result::*;

/// An array: its backing store.
pub struct Array {
    base: u64,
    pitch: u64,
    height: u64,
}

/// Largest array extents of a compute-capability 9.0 card (what `cuDeviceGetAttribute` reports
/// for the texture and surface limits there): 1D, 2D width × height, 3D side; mipmapped arrays
/// are limited to 32768 texels per side in 1D / 2D.
const MAX_1D: usize = 131_072;
const MAX_2D: (usize, usize) = (131_072, 65_536);
const MAX_3D: usize = 16_384;
const MAX_MIPMAPPED_2D: usize = 32_768;

/// Whether an array of these extents (height / depth 0 for fewer dimensions) can exist.
fn extent_ok(width: usize, height: usize, depth: usize, mipmapped: bool) -> bool {
    match (height, depth) {
        _ if depth > 0 => width <= MAX_3D && height <= MAX_3D && depth <= MAX_3D,
        (0, _) if mipmapped => width <= MAX_MIPMAPPED_2D,
        (0, _) => width <= MAX_1D,
        _ if mipmapped => width <= MAX_MIPMAPPED_2D && height <= MAX_MIPMAPPED_2D,
        _ => width <= MAX_2D.0 && height <= MAX_2D.1,
    }
}

fn create(ctx: &Context, pitch: u64, height: u64, bytes: u64) -> Result<*mut Array, u32> {
    let base = alloc_on(ctx, bytes, Kind::Array)?;
    Ok(Box::into_raw(Box::new(Array {
        base,
        pitch,
        height,
    })))
}

/// `cuArrayCreate_v2`.
pub unsafe fn array_create(out: *mut CUarray, desc: *const RawArrayDescriptor) -> u32 {
    if out.is_null() || desc.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: caller passes a valid descriptor.
    let d = unsafe { &*desc };
    if !extent_ok(d.width, d.height, 0, false) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let Some((pitch, bytes)) = array_bytes(d.width, d.height, 0, d.format, d.channels) else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    match require_current().and_then(|c| create(c, pitch, d.height.max(1) as u64, bytes)) {
        // SAFETY: out is non-null.
        Ok(a) => unsafe {
            *out = a as CUarray;
            CUDA_SUCCESS
        },
        Err(e) => e,
    }
}

/// `cuArray3DCreate_v2`.
pub unsafe fn array_3d_create(out: *mut CUarray, desc: *const RawArray3dDescriptor) -> u32 {
    if out.is_null() || desc.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: caller passes a valid descriptor.
    let d = unsafe { &*desc };
    if !extent_ok(d.width, d.height, d.depth, false) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let Some((pitch, bytes)) = array_bytes(d.width, d.height, d.depth, d.format, d.channels) else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    match require_current().and_then(|c| create(c, pitch, d.height.max(1) as u64, bytes)) {
        // SAFETY: out is non-null.
        Ok(a) => unsafe {
            *out = a as CUarray;
            CUDA_SUCCESS
        },
        Err(e) => e,
    }
}

/// `cuArrayDestroy`.
pub unsafe fn array_destroy(a: CUarray) -> u32 {
    if a.is_null() {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    // SAFETY: handles are boxes we leaked in create.
    let arr = unsafe { Box::from_raw(a as *mut Array) };
    match free_device(arr.base, |k| k == Kind::Array) {
        Ok(()) => CUDA_SUCCESS,
        Err(e) => {
            std::mem::forget(arr);
            e
        }
    }
}

/// Base address of an array's store (for copies).
pub fn array_base(a: CUarray) -> Result<u64, u32> {
    if a.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: array handles point at our Array.
    Ok(unsafe { (*(a as *const Array)).base })
}

/// Row pitch of an array.
pub fn array_pitch(a: CUarray) -> u64 {
    // SAFETY: array handles point at our Array (validated by array_base first in copies).
    if a.is_null() {
        0
    } else {
        unsafe { (*(a as *const Array)).pitch }
    }
}

/// Rows per slice of an array.
pub fn array_height(a: CUarray) -> u64 {
    // SAFETY: as above.
    if a.is_null() {
        0
    } else {
        unsafe { (*(a as *const Array)).height }
    }
}

/// `cuMipmappedArrayCreate`: all levels in one charged store.
pub unsafe fn mipmapped_array_create(
    out: *mut CUmipmappedArray,
    desc: *const RawArray3dDescriptor,
    levels: u32,
) -> u32 {
    if out.is_null() || desc.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: caller passes a valid descriptor.
    let d = unsafe { &*desc };
    if !extent_ok(d.width, d.height, d.depth, true) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let Some((first_pitch, total)) = gpupool_cuda::arrays::mipmapped_bytes(d, levels) else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    match require_current().and_then(|c| create(c, first_pitch, d.height.max(1) as u64, total)) {
        // SAFETY: out is non-null.
        Ok(a) => unsafe {
            *out = a as CUmipmappedArray;
            CUDA_SUCCESS
        },
        Err(e) => e,
    }
}

/// `cuMipmappedArrayDestroy`.
pub unsafe fn mipmapped_array_destroy(a: CUmipmappedArray) -> u32 {
    // SAFETY: mipmapped handles are the same boxes as arrays.
    unsafe { array_destroy(a as CUarray) }
}
