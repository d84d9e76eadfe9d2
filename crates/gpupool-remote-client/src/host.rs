//! Pinned and registered host memory: plain memory of this process (the GPU is elsewhere), kept
//! in the address map so copies and pointer queries know it.

use crate::memory_map::{self, Kind};
use gpupool_cuda::cu::CUdeviceptr;
use gpupool_cuda::result::*;
use std::ffi::c_void;

fn ready() -> Result<(), u32> {
    crate::conn::state().ready()
}

/// `cuMemHostAlloc`.
pub unsafe fn mem_host_alloc(pp: *mut *mut c_void, size: usize, flags: u32) -> u32 {
    if let Err(e) = ready() {
        return e;
    }
    if pp.is_null() || size == 0 {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: a fresh anonymous mapping.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    memory_map::insert(p as u64, size as u64, Kind::Pinned, flags);
    // SAFETY: non-null out pointer.
    unsafe { *pp = p };
    CUDA_SUCCESS
}

/// `cuMemAllocHost_v2`.
pub unsafe fn mem_alloc_host(pp: *mut *mut c_void, size: usize) -> u32 {
    // SAFETY: same contract.
    unsafe { mem_host_alloc(pp, size, 0) }
}

/// `cuMemFreeHost`.
pub unsafe fn mem_free_host(p: *mut c_void) -> u32 {
    match memory_map::at(p as u64) {
        Some(r) if r.kind == Kind::Pinned => {
            memory_map::remove(p as u64);
            // SAFETY: the mapping made by mem_host_alloc.
            unsafe { libc::munmap(p, r.size as usize) };
            CUDA_SUCCESS
        }
        _ => CUDA_ERROR_INVALID_VALUE,
    }
}

/// `cuMemHostGetFlags`.
pub unsafe fn mem_host_get_flags(out: *mut u32, p: *mut c_void) -> u32 {
    match memory_map::find(p as u64) {
        Some((_, r)) if matches!(r.kind, Kind::Pinned | Kind::Registered) => {
            crate::write(out, r.flags)
        }
        _ => CUDA_ERROR_INVALID_VALUE,
    }
}

/// `cuMemHostRegister_v2`.
pub unsafe fn mem_host_register(p: *mut c_void, size: usize, flags: u32) -> u32 {
    if let Err(e) = ready() {
        return e;
    }
    if p.is_null() || size == 0 {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if memory_map::find(p as u64).is_some() {
        return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
    }
    memory_map::insert(p as u64, size as u64, Kind::Registered, flags);
    CUDA_SUCCESS
}

/// `cuMemHostUnregister`.
pub unsafe fn mem_host_unregister(p: *mut c_void) -> u32 {
    match memory_map::at(p as u64) {
        Some(r) if r.kind == Kind::Registered => {
            memory_map::remove(p as u64);
            CUDA_SUCCESS
        }
        _ => CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED,
    }
}

/// `cuMemHostGetDevicePointer_v2`: the GPU cannot reach this machine's memory.
pub unsafe fn mem_host_get_device_pointer(_d: *mut CUdeviceptr, _p: *mut c_void, _f: u32) -> u32 {
    CUDA_ERROR_NOT_SUPPORTED
}
