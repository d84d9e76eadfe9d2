//! How programs find our functions: `cuGetProcAddress` / `_v2` (honouring the requested version
//! and per-thread-stream flags), our `dlsym` export, and `cuInit`, which is where an invalid
//! configuration makes CUDA initialisation fail.

use crate::tenant;
use crate::{real, real_lib};
use gpupool_cuda::result::*;
use gpupool_cuda::symbols::resolve;
use std::ffi::{c_char, c_void, CStr};

/// Replaces the real function in `*pfn` with ours when we intercept the symbol that answers
/// `name` at `version` / `flags`, remembering the real one for forwarding.
unsafe fn substitute(name: *const c_char, pfn: *mut *mut c_void, version: i32, flags: u64) {
    if name.is_null() || pfn.is_null() {
        return;
    }
    // SAFETY: non-null pointers from the caller, filled by the driver.
    let (name, found) = unsafe { (CStr::from_ptr(name), *pfn) };
    let Ok(name) = name.to_str() else { return };
    if found.is_null() {
        return;
    }
    let mut buf = [0u8; 128];
    let sym = resolve(name, version.max(0) as u32, flags, &mut buf);
    if let Some(ours) = crate::exported_symbol(sym) {
        if ours != found {
            real::remember(sym, found);
        }
        // SAFETY: non-null out pointer.
        unsafe { *pfn = ours };
    }
}

/// Hook for `cuGetProcAddress` (CUDA 11.x runtimes).
pub unsafe fn get_proc_address(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: i32,
    flags: u64,
) -> u32 {
    // SAFETY: forwarding, then patching the answer.
    unsafe {
        let rc = real::cuGetProcAddress(symbol, pfn, version, flags);
        if rc == CUDA_SUCCESS {
            substitute(symbol, pfn, version, flags);
        }
        rc
    }
}

/// Hook for `cuGetProcAddress_v2` (CUDA 12+ runtimes).
pub unsafe fn get_proc_address_v2(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: i32,
    flags: u64,
    status: *mut i32,
) -> u32 {
    // SAFETY: forwarding, then patching the answer.
    unsafe {
        let rc = real::cuGetProcAddress_v2(symbol, pfn, version, flags, status);
        if rc == CUDA_SUCCESS {
            substitute(symbol, pfn, version, flags);
        }
        rc
    }
}

/// Hook for `cuInit`: loads the configuration first; an invalid one fails initialisation.
pub unsafe fn init(flags: u32) -> u32 {
    if let Err(e) = tenant::tenant() {
        return e;
    }
    // SAFETY: forwarding.
    unsafe { real::cuInit(flags) }
}

/// Our `dlsym`: symbols we intercept resolve to our functions even when looked up through a
/// handle of the driver library (which `LD_PRELOAD` alone does not cover).
///
/// # Safety
/// As `dlsym(3)`.
#[no_mangle]
pub unsafe extern "C" fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void {
    let Some(real_dlsym) = real_lib::real_dlsym() else {
        return std::ptr::null_mut();
    };
    // SAFETY: forwarding to glibc's dlsym with the caller's arguments.
    let found = unsafe { real_dlsym(handle, name) };
    if found.is_null() || name.is_null() || handle == libc::RTLD_NEXT {
        return found;
    }
    // SAFETY: non-null, NUL-terminated name from the caller.
    let Ok(sym) = (unsafe { CStr::from_ptr(name) }).to_str() else {
        return found;
    };
    if !(sym.starts_with("cu") || sym.starts_with("nvml")) {
        return found;
    }
    match crate::exported_symbol(sym) {
        Some(ours) if ours != found => {
            real::remember(sym, found);
            ours
        }
        _ => found,
    }
}
