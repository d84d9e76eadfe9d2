//! `cuGetProcAddress` / `_v2` and error strings.

use crate::machine::tracing;
use gpupool_cuda::proc_address::find_traced;
use std::ffi::{c_char, c_void};

/// Our function for `name` at `version` / `flags`.
pub fn lookup(name: &str, version: i32, flags: u64) -> Option<*mut c_void> {
    let label = "gpupool simulated GPU";
    find_traced(
        label,
        tracing(),
        name,
        version,
        flags,
        crate::exported_symbol,
    )
}

gpupool_cuda::proc_address_entry_points!(lookup);

/// `cuGetErrorName`.
pub unsafe fn get_error_name(e: u32, out: *mut *const c_char) -> u32 {
    // SAFETY: same contract.
    unsafe { gpupool_cuda::result::get_error_name(e, out) }
}

/// `cuGetErrorString`.
pub unsafe fn get_error_string(e: u32, out: *mut *const c_char) -> u32 {
    // SAFETY: same contract.
    unsafe { gpupool_cuda::result::get_error_string(e, out) }
}

/// `cuModuleGetLoadingMode`: eager.
pub unsafe fn module_get_loading_mode(out: *mut u32) -> u32 {
    crate::mem::write(out, 1)
}
