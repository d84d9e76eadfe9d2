//! Stream-ordered allocation: memory pools, `cuMemAllocAsync`, `cuMemAllocFromPoolAsync`,
//! `cuMemFreeAsync`. As on a real driver a pool keeps what is freed into it (still charged to
//! the card) and hands it out again; at the next stream, event or context synchronisation it
//! gives the card back whatever it holds past its release threshold (default 0), and
//! `cuMemPoolTrimTo` gives back down to what is asked. Kept memory is counted in bytes: an
//! allocation reuses it when the pool keeps at least its size (no fragmentation is modelled).
//! On a stream being captured both become graph nodes (`graph_mem`).

use crate::ctx::{device, require_current};
use crate::mem::{
    alloc_charged, alloc_precharged, find, free_keeping_charge, mapped_size, uncharge, write, Kind,
};
use gpupool_cuda::cu::{CUdevice, CUdeviceptr, CUmemoryPool, CUstream};
use gpupool_cuda::props::RawPoolProps;
use gpupool_cuda::result::*;
use gpupool_cuda::spinlock::{ForkLock, SpinLock};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

/// A pool.
pub struct Pool {
    ordinal: i32,
    /// Bytes of live allocations.
    used: AtomicU64,
    used_high: AtomicU64,
    /// Bytes freed into the pool and kept (charged to the card).
    kept: AtomicU64,
    reserved_high: AtomicU64,
    release_threshold: AtomicU64,
    destroyed: AtomicBool,
}

impl Pool {
    fn reserved(&self) -> u64 {
        self.used
            .load(SeqCst)
            .saturating_add(self.kept.load(SeqCst))
    }

    fn note_high_marks(&self) {
        self.used_high.fetch_max(self.used.load(SeqCst), SeqCst);
        self.reserved_high.fetch_max(self.reserved(), SeqCst);
    }

    /// Takes `bytes` out of what the pool keeps, if it keeps that much.
    fn take_kept(&self, bytes: u64) -> bool {
        self.kept
            .fetch_update(SeqCst, SeqCst, |k| k.checked_sub(bytes))
            .is_ok()
    }

    /// Gives the card back kept memory until the pool reserves at most `keep` bytes.
    fn release_down_to(&self, keep: u64) {
        let over = self.reserved().saturating_sub(keep);
        if over == 0 {
            return;
        }
        if let Ok(before) = self
            .kept
            .fetch_update(SeqCst, SeqCst, |k| Some(k.saturating_sub(over)))
        {
            uncharge(self.ordinal, before.min(over));
        }
    }
}

/// (ordinal, default pool, current pool) per device.
static DEFAULT_POOLS: SpinLock<Vec<(i32, usize, usize)>> = SpinLock::new(Vec::new());
/// Every pool of this process that was not destroyed (released at synchronisations).
static LIVE_POOLS: SpinLock<Vec<usize>> = SpinLock::new(Vec::new());

fn new_pool(ordinal: i32) -> usize {
    let p = Box::into_raw(Box::new(Pool {
        ordinal,
        used: AtomicU64::new(0),
        used_high: AtomicU64::new(0),
        kept: AtomicU64::new(0),
        reserved_high: AtomicU64::new(0),
        release_threshold: AtomicU64::new(0),
        destroyed: AtomicBool::new(false),
    })) as usize;
    LIVE_POOLS.lock().push(p);
    p
}

/// At a stream, event or context synchronisation: every pool gives the card back what it keeps
/// past its release threshold.
pub fn release_past_thresholds() {
    for &p in LIVE_POOLS.lock().iter() {
        // SAFETY: pool handles are leaked boxes.
        let pool = unsafe { &*(p as *const Pool) };
        pool.release_down_to(pool.release_threshold.load(SeqCst));
    }
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
    if p.destroyed.load(SeqCst) {
        return CUDA_ERROR_INVALID_VALUE;
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

/// `cuMemPoolDestroy`: what the pool keeps goes back to the card, and so does each of its
/// allocations when freed (a device's default pool cannot be destroyed).
pub unsafe fn mem_pool_destroy(pool: CUmemoryPool) -> u32 {
    let p = match pool_ref(pool) {
        Ok(p) => p,
        Err(e) => return e,
    };
    if pools().iter().any(|e| e.1 == pool as usize) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if p.destroyed.swap(true, SeqCst) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    LIVE_POOLS.lock().retain(|&q| q != pool as usize);
    for e in pools().iter_mut().filter(|e| e.2 == pool as usize) {
        e.2 = e.1;
    }
    p.release_down_to(0);
    CUDA_SUCCESS
}

/// `cuMemPoolTrimTo`: gives the card back kept memory until the pool reserves at most `keep`.
pub unsafe fn mem_pool_trim_to(pool: CUmemoryPool, keep: usize) -> u32 {
    match pool_ref(pool) {
        Ok(p) => {
            p.release_down_to(keep as u64);
            CUDA_SUCCESS
        }
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
        5 => write(value as *mut u64, p.reserved()),
        6 => write(value as *mut u64, p.reserved_high.load(SeqCst)),
        7 => write(value as *mut u64, p.used.load(SeqCst)),
        8 => write(value as *mut u64, p.used_high.load(SeqCst)),
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
        // High watermarks can only be reset (to the current value).
        6 => {
            p.reserved_high.store(p.reserved(), SeqCst);
            CUDA_SUCCESS
        }
        8 => {
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
        Ok(p) if !p.destroyed.load(SeqCst) => p,
        Ok(_) => return CUDA_ERROR_INVALID_VALUE,
        Err(e) => return e,
    };
    let (ctx, kind) = (ctx as *const _ as usize, Kind::Pool(pool));
    let mapped = match mapped_size(p.ordinal, size as u64) {
        Ok(m) if size > 0 => m,
        Ok(_) => return CUDA_ERROR_INVALID_VALUE,
        Err(e) => return e,
    };
    let placed = if p.take_kept(mapped) {
        alloc_precharged(p.ordinal, ctx, size as u64, kind).inspect_err(|_| {
            p.kept.fetch_add(mapped, SeqCst);
        })
    } else {
        alloc_charged(p.ordinal, ctx, size as u64, kind)
    };
    match placed {
        Ok(base) => {
            p.used.fetch_add(mapped, SeqCst);
            p.note_high_marks();
            write(out, base)
        }
        Err(e) => e,
    }
}

/// `cuMemAllocAsync`: from the current pool of the current device.
pub unsafe fn mem_alloc_async(out: *mut CUdeviceptr, size: usize, s: CUstream) -> u32 {
    if let Some(rc) = crate::graph_mem::capture_alloc(out, size, s) {
        return rc;
    }
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
    s: CUstream,
) -> u32 {
    if let Some(rc) = crate::graph_mem::capture_alloc(out, size, s) {
        return rc;
    }
    alloc_from(out, size, pool as usize)
}

/// `cuMemFreeAsync`: the pool keeps the memory (a destroyed pool gives it back).
pub unsafe fn mem_free_async(ptr: CUdeviceptr, s: CUstream) -> u32 {
    if let Some(rc) = crate::graph_mem::free(ptr, s) {
        return rc;
    }
    let Some((base, a)) = find(ptr, 0).filter(|(b, _)| *b == ptr) else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    match a.kind {
        Kind::Pool(_) => {}
        // cuMemFreeAsync also accepts cuMemAlloc memory.
        Kind::Device => {
            return crate::mem::result(
                crate::mem::free_device(base, |k| k == Kind::Device).map(|_| CUDA_SUCCESS),
            )
        }
        _ => return CUDA_ERROR_INVALID_VALUE,
    }
    let a = match free_keeping_charge(base, |k| matches!(k, Kind::Pool(_))) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let Kind::Pool(pool) = a.kind else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    // SAFETY: pool handles are leaked boxes.
    let p = unsafe { &*(pool as *const Pool) };
    let _ = p
        .used
        .fetch_update(SeqCst, SeqCst, |u| Some(u.saturating_sub(a.mapped)));
    if p.destroyed.load(SeqCst) {
        uncharge(a.ordinal, a.mapped);
    } else {
        p.kept.fetch_add(a.mapped, SeqCst);
    }
    CUDA_SUCCESS
}

/// This module's locks (for fork handlers).
pub fn fork_locks() -> [&'static dyn ForkLock; 2] {
    [&DEFAULT_POOLS, &LIVE_POOLS]
}
