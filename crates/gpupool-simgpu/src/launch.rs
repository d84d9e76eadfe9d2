//! Kernel launches. The simulator does not execute kernels yet (simulated kernel durations are
//! future work): a launch checks its arguments and completes at once.

use crate::ctx::require_current;
use gpupool_cuda::cu::{CUfunction, CUstream};
use gpupool_cuda::result::*;
use std::ffi::c_void;

/// `cuLaunchKernel` (and `_ptsz`).
#[allow(clippy::too_many_arguments)]
pub unsafe fn launch_kernel(
    f: CUfunction,
    gx: u32,
    gy: u32,
    gz: u32,
    bx: u32,
    by: u32,
    bz: u32,
    _shared: u32,
    _stream: CUstream,
    _params: *mut *mut c_void,
    _extra: *mut *mut c_void,
) -> u32 {
    if let Err(e) = require_current() {
        return e;
    }
    if f.is_null() {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    if gx == 0
        || gy == 0
        || gz == 0
        || bx == 0
        || by == 0
        || bz == 0
        || (bx as u64 * by as u64 * bz as u64) > 1024
    {
        return CUDA_ERROR_INVALID_VALUE;
    }
    CUDA_SUCCESS
}
