//! `cuGetProcAddress` / `_v2` and error strings.

use crate::machine::tracing;
use gpupool_cuda::result::*;
use gpupool_cuda::symbols::resolve;
use gpupool_cuda::*;
use std::ffi::{c_char, c_void, CStr};

/// Looks `name` up for `version` / `flags`; returns our function and the status code.
pub fn lookup(name: &str, version: i32, flags: u64) -> (Option<*mut c_void>, i32) {
    if name.is_empty() {
        return (None, CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);
    }
    let mut buf = [0u8; 128];
    let sym = resolve(name, version.max(0) as u32, flags, &mut buf);
    let found = crate::exported_symbol(sym);
    if tracing() {
        eprintln!(
            "gpupool simulated GPU: cuGetProcAddress({name}, {version}, {flags}) -> {sym}: {}",
            if found.is_some() {
                "found"
            } else {
                "not found"
            }
        );
    }
    match found {
        Some(f) => (Some(f), CU_GET_PROC_ADDRESS_SUCCESS),
        None => (None, CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND),
    }
}

fn answer(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: i32,
    flags: u64,
    status: *mut i32,
) -> u32 {
    if symbol.is_null() || pfn.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: caller passes a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(symbol) }.to_str().unwrap_or("");
    let (f, st) = lookup(name, version, flags);
    // SAFETY: non-null out pointers.
    unsafe {
        *pfn = f.unwrap_or(std::ptr::null_mut());
        if !status.is_null() {
            *status = st;
        }
    }
    // With a status to report it in (`_v2`), a missing symbol is not an error: driver 580 on an
    // H100 answers CUDA_SUCCESS, a null function and CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND.
    if f.is_some() || !status.is_null() {
        CUDA_SUCCESS
    } else {
        CUDA_ERROR_NOT_FOUND
    }
}

/// `cuGetProcAddress` (CUDA 11.x).
pub unsafe fn get_proc_address(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: i32,
    flags: u64,
) -> u32 {
    answer(symbol, pfn, version, flags, std::ptr::null_mut())
}

/// `cuGetProcAddress_v2` (CUDA 12+).
pub unsafe fn get_proc_address_v2(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: i32,
    flags: u64,
    status: *mut i32,
) -> u32 {
    answer(symbol, pfn, version, flags, status)
}

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
