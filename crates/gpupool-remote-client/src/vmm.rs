//! The virtual memory API's address calls: reservations are made on the server and recorded
//! here as device ranges (so `cuMemcpy` knows their addresses); access descriptors travel as
//! raw fields. Physical handles, mapping and queries go through the call table; physical
//! memory is never exported as a descriptor (it is the server's).

use crate::conn::state;
use crate::memory_map::{self, Kind};
use gpupool_cuda::cu::*;
use gpupool_cuda::result::*;
use gpupool_remote::calls::custom;
use std::ffi::c_void;

/// Most access descriptors one `cuMemSetAccess` carries (the server refuses more).
const MAX_ACCESS_DESCRIPTORS: usize = 64;

/// `cuMemAddressReserve`.
pub unsafe fn mem_address_reserve(
    out: *mut CUdeviceptr,
    size: usize,
    align: usize,
    hint: CUdeviceptr,
    flags: u64,
) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let mut s = state();
    let start = match s.begin(custom::MEM_ADDRESS_RESERVE, true, crate::context::current()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    for v in [size as u64, align as u64, hint, flags] {
        s.batch.put(&v);
    }
    let mut p = 0u64;
    let rc = s.finish_sync(start, |r| {
        p = r.get("address")?;
        Ok(())
    });
    // Recorded before the state is let go, as frees forget theirs (`memory::free`).
    if rc == CUDA_SUCCESS {
        memory_map::insert(p, (size as u64).max(1), Kind::Device, 0);
        // SAFETY: non-null out pointer from the caller.
        unsafe { *out = p };
    }
    drop(s);
    rc
}

/// `cuMemAddressFree`.
pub unsafe fn mem_address_free(p: CUdeviceptr, size: usize) -> u32 {
    let mut s = state();
    let start = match s.begin(custom::MEM_ADDRESS_FREE, true, crate::context::current()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    s.batch.put(&p);
    s.batch.put(&(size as u64));
    let rc = s.finish_sync(start, |_| Ok(()));
    if rc == CUDA_SUCCESS {
        memory_map::remove(p);
    }
    drop(s);
    rc
}

/// `cuMemSetAccess`.
pub unsafe fn mem_set_access(
    p: CUdeviceptr,
    size: usize,
    descs: *const CUmemAccessDesc,
    count: usize,
) -> u32 {
    // `CUmemAccessDesc`: location type, location id, flags; sent as three words.
    let descs = descs.cast::<[u32; 3]>();
    if count > MAX_ACCESS_DESCRIPTORS || (count > 0 && descs.is_null()) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let descs = if count == 0 {
        &[][..]
    } else {
        // SAFETY: the caller's array of `count` descriptors.
        unsafe { std::slice::from_raw_parts(descs, count) }
    };
    let mut s = state();
    let start = match s.begin(custom::MEM_SET_ACCESS, true, crate::context::current()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    s.batch.put(&p);
    s.batch.put(&(size as u64));
    s.batch.put(&(count as u32));
    for d in descs {
        s.batch.put(d);
    }
    s.finish_sync(start, |_| Ok(()))
}

/// `cuMemExportToShareableHandle`: a descriptor or fabric handle of the server's memory cannot
/// reach this process (the device attributes say so); interprocess handles can.
pub unsafe fn mem_export_to_shareable_handle(
    out: *mut c_void,
    _h: u64,
    _handle_type: u32,
    flags: u64,
) -> u32 {
    if out.is_null() || flags != 0 {
        return CUDA_ERROR_INVALID_VALUE;
    }
    CUDA_ERROR_NOT_SUPPORTED
}

/// `cuMemImportFromShareableHandle`: nothing here was exported by the server's driver.
pub unsafe fn mem_import_from_shareable_handle(
    out: *mut u64,
    _os_handle: *mut c_void,
    _handle_type: u32,
) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    CUDA_ERROR_NOT_SUPPORTED
}
