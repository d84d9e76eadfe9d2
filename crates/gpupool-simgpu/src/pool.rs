//! Stream-ordered allocation: memory pools, `cuMemAllocAsync`, `cuMemAllocFromPoolAsync`,
//! `cuMemFreeAsync`. Pools hand freed memory straight back (no retention), so a pool's reserved
//! memory always equals its used memory.

use crate::ctx::{device, require_current};
use crate::mem::{alloc_charged, find, free_device, write, Kind};
use gpupool_cuda::cu::{CUdevice, CUdeviceptr, CUmemoryPool, CUstream};
use gpupool_cuda::props::RawPoolProps;
use gpupool_cuda::result::*;
use gpupool_cuda::spinlock::{ForkLock, SpinLock};
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// A pool.
pub struct Pool {
    ordinal: i32,
    used: AtomicU64,
    used_high: AtomicU64,
    release_threshold: AtomicU64,
}

static DEFAULT_POOLS: SpinLock<Vec<(i32, usize, usize)>> = SpinLock::new(Vec::new());

fn new_pool(ordinal: i32) -> usize {
    Box::into_raw(Box::new(Pool {
        ordinal,
        used: AtomicU64::new(0),
        used_high: AtomicU64::new(0),
        release_threshold: AtomicU64::new(0),
    })) as usize
}

fn pools() -> gpupool_cuda::spinlock::SpinGuard<'static, Vec<(i32, usize, usize)>> {
    DEFAULT_POOLS.lock()
}

/// (default pool, current pool) of a device.
fn device_pools(ordinal: i32) -> (usize, usize) {
    let mut all = pools();
    if let Some(&(_, d, c)) = all.iter().find(|(o, _, _)| *o == ordinal) {
        return (d, c);
    }
    let p = new_pool(ordinal);
    all.push((ordinal, p, p));
    (p, p)
}

fn pool_ref(p: CUmemoryPool) -> Result<&'static Pool, u32> {
    if p.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: pool handles are leaked Box<Pool>.
    Ok(unsafe { &*(p as *const Pool) })
}

/// `cuDeviceGetDefaultMemPool`.
pub unsafe fn device_get_default_mem_pool(out: *mut CUmemoryPool, dev: CUdevice) -> u32 {
    match device(dev) {
        Ok(_) => write(out, device_pools(dev).0 as CUmemoryPool),
        Err(e) => e,
    }
}

/// `cuDeviceGetMemPool`.
pub unsafe fn device_get_mem_pool(out: *mut CUmemoryPool, dev: CUdevice) -> u32 {
    match device(dev) {
        Ok(_) => write(out, device_pools(dev).1 as CUmemoryPool),
        Err(e) => e,
    }
}

/// `cuDeviceSetMemPool`.
pub unsafe fn device_set_mem_pool(dev: CUdevice, pool: CUmemoryPool) -> u32 {
    let p = match device(dev).and_then(|_| pool_ref(pool)) {
        Ok(p) => p,
        Err(e) => return e,
    };
    if p.ordinal != dev {
        return CUDA_ERROR_INVALID_DEVICE;
    }
    device_pools(dev);
    for e in pools().iter_mut().filter(|e| e.0 == dev) {
        e.2 = pool as usize;
    }
    CUDA_SUCCESS
}

/// `cuMemPoolCreate`.
pub unsafe fn mem_pool_create(out: *mut CUmemoryPool, props: *const RawPoolProps) -> u32 {
    if props.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: caller passes valid props.
    let p = unsafe { &*props };
    if p.loc_type != 1 {
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    match device(p.loc_id) {
        Ok(_) => write(out, new_pool(p.loc_id) as CUmemoryPool),
        Err(e) => e,
    }
}

/// `cuMemPoolDestroy`.
pub unsafe fn mem_pool_destroy(pool: CUmemoryPool) -> u32 {
    match pool_ref(pool) {
        Ok(_) => CUDA_SUCCESS,
        Err(e) => e,
    }
}

/// `cuMemPoolTrimTo`: nothing is retained.
pub unsafe fn mem_pool_trim_to(pool: CUmemoryPool, _keep: usize) -> u32 {
    match pool_ref(pool) {
        Ok(_) => CUDA_SUCCESS,
        Err(e) => e,
    }
}

/// `cuMemPoolGetAttribute`.
pub unsafe fn mem_pool_get_attribute(pool: CUmemoryPool, attr: u32, value: *mut c_void) -> u32 {
    let p = match pool_ref(pool) {
        Ok(p) => p,
        Err(e) => return e,
    };
    match attr {
        1..=3 => write(value as *mut i32, 1),
        4 => write(value as *mut u64, p.release_threshold.load(SeqCst)),
        5 | 7 => write(value as *mut u64, p.used.load(SeqCst)),
        6 | 8 => write(value as *mut u64, p.used_high.load(SeqCst)),
        _ => CUDA_ERROR_INVALID_VALUE,
    }
}

/// `cuMemPoolSetAttribute`.
pub unsafe fn mem_pool_set_attribute(pool: CUmemoryPool, attr: u32, value: *mut c_void) -> u32 {
    let p = match pool_ref(pool) {
        Ok(p) => p,
        Err(e) => return e,
    };
    if value.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    match attr {
        1..=3 => CUDA_SUCCESS,
        // SAFETY: value points at a cuuint64_t for these attributes.
        4 => {
            p.release_threshold
                .store(unsafe { *(value as *const u64) }, SeqCst);
            CUDA_SUCCESS
        }
        // High watermarks can only be reset to zero.
        6 | 8 => {
            p.used_high.store(p.used.load(SeqCst), SeqCst);
            CUDA_SUCCESS
        }
        _ => CUDA_ERROR_INVALID_VALUE,
    }
}

fn alloc_from(out: *mut CUdeviceptr, size: usize, pool: usize) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let ctx = match require_current() {
        Ok(c) => c,
        Err(e) => return e,
    };
    let p = match pool_ref(pool as CUmemoryPool) {
        Ok(p) => p,
        Err(e) => return e,
    };
    match alloc_charged(
        p.ordinal,
        ctx as *const _ as usize,
        size as u64,
        Kind::Pool(pool),
    ) {
        Ok(base) => {
            let (_, a) = find(base, 0).expect("just registered");
            let now = p.used.fetch_add(a.mapped, SeqCst) + a.mapped;
            p.used_high.fetch_max(now, SeqCst);
            write(out, base)
        }
        Err(e) => e,
    }
}

/// `cuMemAllocAsync`: from the current pool of the current device.
pub unsafe fn mem_alloc_async(out: *mut CUdeviceptr, size: usize, _s: CUstream) -> u32 {
    match require_current() {
        Ok(c) => alloc_from(out, size, device_pools(c.ordinal).1),
        Err(e) => e,
    }
}

/// `cuMemAllocFromPoolAsync`.
pub unsafe fn mem_alloc_from_pool_async(
    out: *mut CUdeviceptr,
    size: usize,
    pool: CUmemoryPool,
    _s: CUstream,
) -> u32 {
    alloc_from(out, size, pool as usize)
}

/// `cuMemFreeAsync`.
pub unsafe fn mem_free_async(ptr: CUdeviceptr, _s: CUstream) -> u32 {
    let Some((base, a)) = find(ptr, 0).filter(|(b, _)| *b == ptr) else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    let pool = match a.kind {
        Kind::Pool(p) => p,
        // cuMemFreeAsync also accepts cuMemAlloc memory.
        Kind::Device => 0,
        _ => return CUDA_ERROR_INVALID_VALUE,
    };
    match free_device(base, |k| matches!(k, Kind::Pool(_) | Kind::Device)) {
        Ok(()) => {
            if pool != 0 {
                // SAFETY: pool handles are leaked boxes.
                let p = unsafe { &*(pool as *const Pool) };
                let _ = p
                    .used
                    .fetch_update(SeqCst, SeqCst, |u| Some(u.saturating_sub(a.mapped)));
            }
            CUDA_SUCCESS
        }
        Err(e) => e,
    }
}

/// This module's locks (for fork handlers).
pub fn fork_locks() -> [&'static dyn ForkLock; 1] {
    [&DEFAULT_POOLS]
}
