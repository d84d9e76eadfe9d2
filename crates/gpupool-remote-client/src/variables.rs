//! Device variables of modules and libraries (`cuModuleGetGlobal_v2`, `cuLibraryGetGlobal`):
//! their addresses are recorded as device memory, so `cuMemcpy` sends copies to them to the
//! server, until their module or library is unloaded.

use crate::conn::state;
use crate::memory_map::{self, Kind};
use gpupool_cuda::cu::*;
use gpupool_cuda::result::*;
use gpupool_remote::calls::custom;
use std::ffi::{c_char, CStr};
use std::sync::Mutex;

/// Each recorded variable: (module or library handle, base address).
pub(crate) static VARIABLES: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

/// Asks the server for variable `name` of `owner` (a module or a library, as `of` says).
///
/// # Safety
/// `name` is null or NUL-terminated; `dptr` and `bytes` are null or writable.
unsafe fn get_global(
    of: u8,
    dptr: *mut CUdeviceptr,
    bytes: *mut usize,
    owner: u64,
    name: *const c_char,
) -> u32 {
    if name.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: NUL-terminated name from the caller.
    let name = unsafe { CStr::from_ptr(name) }.to_bytes();
    let mut s = state();
    let start = match s.begin(custom::GET_GLOBAL, true, crate::context::current()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    s.batch.put(&of);
    s.batch.put(&owner);
    s.batch.put_bytes(name);
    s.finish_sync(start, |r| {
        let (base, size): (u64, u64) = (r.get("address")?, r.get("size")?);
        memory_map::insert(base, size, Kind::Device, 0);
        VARIABLES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((owner, base));
        // SAFETY: the caller's out pointers, each null (not wanted) or writable.
        unsafe {
            if !dptr.is_null() {
                *dptr = base;
            }
            if !bytes.is_null() {
                *bytes = size as usize;
            }
        }
        Ok(())
    })
}

/// `cuModuleGetGlobal_v2` (either out pointer may be null).
pub unsafe fn module_get_global(
    dptr: *mut CUdeviceptr,
    bytes: *mut usize,
    m: CUmodule,
    name: *const c_char,
) -> u32 {
    // SAFETY: the caller's arguments.
    unsafe {
        get_global(
            custom::GLOBAL_OF_MODULE,
            dptr,
            bytes,
            m as usize as u64,
            name,
        )
    }
}

/// `cuLibraryGetGlobal` (either out pointer may be null).
pub unsafe fn library_get_global(
    dptr: *mut CUdeviceptr,
    bytes: *mut usize,
    lib: CUlibrary,
    name: *const c_char,
) -> u32 {
    // SAFETY: the caller's arguments.
    unsafe {
        get_global(
            custom::GLOBAL_OF_LIBRARY,
            dptr,
            bytes,
            lib as usize as u64,
            name,
        )
    }
}

/// Forgets the variables of `owner` after its unload.
fn unloaded(owner: u64) {
    VARIABLES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|&(o, base)| {
            if o == owner {
                memory_map::remove(base);
            }
            o != owner
        });
}

/// Hook after `cuModuleUnload` (the module's functions are forgotten too).
pub fn module_unloaded(m: CUmodule) {
    unloaded(m as usize as u64);
    crate::kernel_cache::unloaded(m as usize as u64);
}

/// Hook after `cuLibraryUnload` (the library's kernels are forgotten too).
pub fn library_unloaded(l: CUlibrary) {
    unloaded(l as usize as u64);
    crate::kernel_cache::unloaded(l as usize as u64);
}
