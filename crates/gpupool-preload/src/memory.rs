//! Hard device-memory limits on every allocation path. Each hook reserves the bytes the driver
//! will really consume (rounded to the allocation granularity) before calling the driver, and
//! gives them back if the driver fails; frees give back after the driver succeeds. Nothing is
//! ever allocated past the limit.

use crate::captures;
use crate::pools;
use crate::real;
use crate::tenant::{self, granularity};
use crate::tracking::{self, Charge, Kind};
use gpupool_cuda::arrays::{
    array_bytes, mipmapped_bytes, RawArray3dDescriptor, RawArrayDescriptor,
};
use gpupool_cuda::cu::{
    CUarray, CUcontext, CUdevice, CUdeviceptr, CUmemoryPool, CUmipmappedArray, CUstream,
};
use gpupool_cuda::props::{RawAllocationProp, RawPoolProps};
use gpupool_cuda::result::*;
use std::ffi::c_void;

/// Rounds up to a multiple of `g`.
pub fn round_up(n: u64, g: u64) -> u64 {
    n.div_ceil(g.max(1)).saturating_mul(g.max(1))
}

/// Reserves `bytes` on `ord`, runs the driver call, records the charge under `key()` on success.
fn with_charge(
    ord: i32,
    bytes: u64,
    kind: Kind,
    call: impl FnMut() -> u32,
    key: impl FnOnce() -> u64,
) -> u32 {
    with_reservation(ord, bytes, call, |_| {
        tracking::insert(
            kind,
            key(),
            Charge {
                ordinal: ord,
                bytes,
            },
        )
    })
}

/// Reserves `bytes` on `ord` and runs the driver call; on success `keep` records what the
/// reservation became, otherwise it is given back.
fn with_reservation(
    ord: i32,
    bytes: u64,
    mut call: impl FnMut() -> u32,
    keep: impl FnOnce(&tenant::Account),
) -> u32 {
    crate::idle_gate::enter();
    let acct = match tenant::account(ord) {
        Ok(Some(a)) => a,
        Ok(None) => return call(),
        Err(e) => return e,
    };
    if let Err(e) = acct.reserve(bytes) {
        return e;
    }
    let mut rc = call();
    if rc == CUDA_ERROR_OUT_OF_MEMORY {
        rc = crate::room::wait_for_room(&acct, bytes, call);
    }
    if rc == CUDA_SUCCESS {
        keep(&acct);
    } else {
        acct.release(bytes);
    }
    rc
}

/// Runs the driver's free, then gives back what was charged for `key`.
///
/// The record is taken out *before* the driver call: once the driver has freed the address,
/// another thread may get the same address from its next allocation and record its own charge
/// under it. If the driver refuses the free, the record is put back.
fn with_uncharge(kind: Kind, key: u64, call: impl FnOnce() -> u32) -> u32 {
    crate::idle_gate::enter();
    let charge = tracking::remove(kind, key);
    let rc = call();
    match charge {
        Some(c) if rc == CUDA_SUCCESS => {
            give_back(c);
        }
        Some(c) => tracking::insert(kind, key, c),
        None => {}
    }
    rc
}

/// The current device, or `None` when there is no context (the driver then reports the error).
fn current() -> Option<i32> {
    crate::driver::current_device().ok()
}

fn read_ptr(p: *mut CUdeviceptr) -> u64 {
    // SAFETY: only called after the driver succeeded, so p was a valid out pointer.
    if p.is_null() {
        0
    } else {
        unsafe { *p }
    }
}

/// Hook for `cuMemAlloc_v2`: past the limit, served from the tenant's spill allowance.
pub unsafe fn mem_alloc(dptr: *mut CUdeviceptr, size: usize) -> u32 {
    let Some(ord) = current().filter(|_| size > 0) else {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { real::cuMemAlloc_v2(dptr, size) };
    };
    let bytes = round_up(size as u64, granularity(ord));
    // SAFETY: forwarding the caller's arguments.
    let rc = with_charge(
        ord,
        bytes,
        Kind::Pointer,
        || unsafe { real::cuMemAlloc_v2(dptr, size) },
        || read_ptr(dptr),
    );
    if rc == CUDA_ERROR_OUT_OF_MEMORY && !dptr.is_null() {
        if let Ok(Some(acct)) = tenant::lookup_account(ord) {
            if let Some(p) = crate::spill::allocate(&acct, ord, size, bytes) {
                // SAFETY: the caller's non-null out pointer.
                unsafe { *dptr = p };
                return CUDA_SUCCESS;
            }
        }
    }
    rc
}

/// Hook for `cuMemAllocManaged` (managed memory is charged as device memory).
pub unsafe fn mem_alloc_managed(dptr: *mut CUdeviceptr, size: usize, flags: u32) -> u32 {
    let Some(ord) = current().filter(|_| size > 0) else {
        // SAFETY: forwarding.
        return unsafe { real::cuMemAllocManaged(dptr, size, flags) };
    };
    // SAFETY: forwarding.
    with_charge(
        ord,
        round_up(size as u64, granularity(ord)),
        Kind::Pointer,
        || unsafe { real::cuMemAllocManaged(dptr, size, flags) },
        || read_ptr(dptr),
    )
}

/// Largest pitch alignment a driver uses; the reservation is corrected once the real pitch is
/// known.
const MAX_PITCH_ALIGNMENT: u64 = 512;

/// Hook for `cuMemAllocPitch_v2`: charged as the real pitch × height.
pub unsafe fn mem_alloc_pitch(
    dptr: *mut CUdeviceptr,
    pitch: *mut usize,
    width: usize,
    height: usize,
    elem: u32,
) -> u32 {
    // SAFETY (all calls below): forwarding the caller's arguments.
    let forward = || unsafe { real::cuMemAllocPitch_v2(dptr, pitch, width, height, elem) };
    let Some(ord) = current().filter(|_| width > 0 && height > 0 && !pitch.is_null()) else {
        return forward();
    };
    let acct = match tenant::account(ord) {
        Ok(Some(a)) => a,
        Ok(None) => return forward(),
        Err(e) => return e,
    };
    let g = granularity(ord);
    let estimate = round_up(
        round_up(width as u64, MAX_PITCH_ALIGNMENT).saturating_mul(height as u64),
        g,
    );
    if let Err(e) = acct.reserve(estimate) {
        return spill_pitched(&acct, ord, dptr, pitch, width, height, elem).unwrap_or(e);
    }
    let rc = forward();
    if rc != CUDA_SUCCESS {
        acct.release(estimate);
        if rc == CUDA_ERROR_OUT_OF_MEMORY {
            return spill_pitched(&acct, ord, dptr, pitch, width, height, elem).unwrap_or(rc);
        }
        return rc;
    }
    // SAFETY: the driver succeeded, so pitch holds the real pitch.
    let actual = round_up((unsafe { *pitch } as u64).saturating_mul(height as u64), g);
    if actual < estimate {
        acct.release(estimate - actual);
    } else if actual > estimate && acct.reserve(actual - estimate).is_err() {
        // SAFETY: freeing what the driver just gave us.
        unsafe { real::cuMemFree_v2(read_ptr(dptr)) };
        acct.release(estimate);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    tracking::insert(
        Kind::Pointer,
        read_ptr(dptr),
        Charge {
            ordinal: ord,
            bytes: actual,
        },
    );
    CUDA_SUCCESS
}

/// A pitched allocation past the device limit served from the spill allowance, rows at the
/// largest pitch alignment a driver uses: `None` when arguments a driver refuses, no
/// allowance left or a null out pointer leave the refusal as it was.
fn spill_pitched(
    acct: &tenant::Account,
    ord: i32,
    dptr: *mut CUdeviceptr,
    pitch: *mut usize,
    width: usize,
    height: usize,
    elem: u32,
) -> Option<u32> {
    if dptr.is_null() || ![4, 8, 16].contains(&elem) {
        return None;
    }
    let row = round_up(width as u64, MAX_PITCH_ALIGNMENT);
    let size = usize::try_from(row.checked_mul(height as u64)?).ok()?;
    let p = crate::spill::allocate(acct, ord, size, round_up(size as u64, granularity(ord)))?;
    // SAFETY: the caller's out pointers (pitch checked non-null by the hook, dptr above).
    unsafe {
        *dptr = p;
        *pitch = row as usize;
    }
    Some(CUDA_SUCCESS)
}

/// Hook for `cuMemFree_v2` (spilled memory goes back to the host).
pub unsafe fn mem_free(dptr: CUdeviceptr) -> u32 {
    if let Some(rc) = crate::spill::free(dptr) {
        return rc;
    }
    // SAFETY: forwarding.
    free_any(dptr, || unsafe { real::cuMemFree_v2(dptr) })
}

/// Allocates `size` bytes from `pool` on `ord` with `call`: reserved at the granularity, then
/// the pool is charged what it holds (see `pools`).
fn pool_alloc(
    dptr: *mut CUdeviceptr,
    size: usize,
    ord: i32,
    pool: u64,
    call: impl FnMut() -> u32,
) -> u32 {
    let bytes = round_up(size as u64, granularity(ord));
    with_reservation(ord, bytes, call, |acct| {
        pools::allocated(acct, pool, read_ptr(dptr), bytes)
    })
}

/// A stream-ordered allocation on stream `s`, which is being captured: the driver records an
/// allocation node (no memory is taken until the graph is launched: `graph_memory`).
fn record_node(size: usize, ord: i32, s: CUstream, call: impl FnOnce() -> u32) -> u32 {
    let rc = call();
    if rc == CUDA_SUCCESS {
        let bytes = round_up(size as u64, granularity(ord));
        // SAFETY: the caller's stream.
        unsafe { crate::graph_memory::recorded_allocation(s, ord, bytes) };
    }
    rc
}

macro_rules! async_alloc_hooks {
    ($($hook:ident => $real:ident;)*) => {$(
        /// Hook for the stream-ordered allocation of the same name, from the device's current
        /// pool.
        pub unsafe fn $hook(dptr: *mut CUdeviceptr, size: usize, s: CUstream) -> u32 {
            // SAFETY (both calls): forwarding the caller's arguments.
            let forward = || unsafe { real::$real(dptr, size, s) };
            match current().filter(|_| size > 0 && !dptr.is_null()) {
                // SAFETY: the caller's stream.
                Some(ord) if unsafe { captures::recorded(s) } => record_node(size, ord, s, forward),
                Some(ord) => match pools::current(ord) {
                    Some(pool) => pool_alloc(dptr, size, ord, pool, forward),
                    None => forward(),
                },
                None => forward(),
            }
        }
    )*};
}

async_alloc_hooks! {
    mem_alloc_async => cuMemAllocAsync;
    mem_alloc_async_ptsz => cuMemAllocAsync_ptsz;
}

/// The device a pool allocates on (recorded when the pool was created or looked up), else the
/// current device.
fn pool_device(pool: CUmemoryPool) -> Option<i32> {
    pools::device(pool as u64).or_else(current)
}

macro_rules! pool_alloc_hooks {
    ($($hook:ident => $real:ident;)*) => {$(
        /// Hook for the pool allocation of the same name: charged on the pool's device.
        pub unsafe fn $hook(dptr: *mut CUdeviceptr, size: usize, pool: CUmemoryPool, s: CUstream) -> u32 {
            // SAFETY (both calls): forwarding the caller's arguments.
            let forward = || unsafe { real::$real(dptr, size, pool, s) };
            match pool_device(pool).filter(|_| size > 0 && !dptr.is_null() && !pool.is_null()) {
                // SAFETY: the caller's stream.
                Some(ord) if unsafe { captures::recorded(s) } => record_node(size, ord, s, forward),
                Some(ord) => pool_alloc(dptr, size, ord, pool as u64, forward),
                None => forward(),
            }
        }
    )*};
}

pool_alloc_hooks! {
    mem_alloc_from_pool_async => cuMemAllocFromPoolAsync;
    mem_alloc_from_pool_async_ptsz => cuMemAllocFromPoolAsync_ptsz;
}

fn remember_pool(rc: u32, pool: *mut CUmemoryPool, ordinal: i32) -> u32 {
    if rc == CUDA_SUCCESS && !pool.is_null() {
        // SAFETY: the driver filled the caller's out pointer.
        pools::remember(unsafe { *pool } as u64, ordinal);
    }
    rc
}

/// Hook for `cuMemPoolCreate`: remembers the pool's device.
pub unsafe fn mem_pool_create(pool: *mut CUmemoryPool, props: *const RawPoolProps) -> u32 {
    // SAFETY: forwarding.
    let rc = unsafe { real::cuMemPoolCreate(pool, props) };
    // SAFETY: props is null or the caller's valid struct.
    match unsafe { props.as_ref() } {
        Some(p) if p.loc_type == 1 => remember_pool(rc, pool, p.loc_id),
        _ => rc,
    }
}

/// Hook for `cuMemPoolDestroy`: what the pool kept is no longer charged.
pub unsafe fn mem_pool_destroy(pool: CUmemoryPool) -> u32 {
    // SAFETY: forwarding.
    let rc = unsafe { real::cuMemPoolDestroy(pool) };
    if rc == CUDA_SUCCESS {
        pools::destroyed(pool as u64);
    }
    rc
}

/// Hook for `cuDeviceGetDefaultMemPool`: remembers the pool's device.
pub unsafe fn device_get_default_mem_pool(pool: *mut CUmemoryPool, dev: CUdevice) -> u32 {
    // SAFETY: forwarding.
    remember_pool(
        unsafe { real::cuDeviceGetDefaultMemPool(pool, dev) },
        pool,
        dev,
    )
}

/// Hook for `cuDeviceGetMemPool`: remembers the pool's device.
pub unsafe fn device_get_mem_pool(pool: *mut CUmemoryPool, dev: CUdevice) -> u32 {
    // SAFETY: forwarding.
    remember_pool(unsafe { real::cuDeviceGetMemPool(pool, dev) }, pool, dev)
}

/// Frees `dptr` with `call`: a pool's block leaves its pool holding the memory (still
/// charged), anything else is given back.
fn free_any(dptr: CUdeviceptr, call: impl FnOnce() -> u32) -> u32 {
    match pools::free(dptr, call) {
        Ok(rc) => rc,
        Err(call) => with_uncharge(Kind::Pointer, dptr, call),
    }
}

/// Hook for `cuMemFreeAsync`.
pub unsafe fn mem_free_async(dptr: CUdeviceptr, s: CUstream) -> u32 {
    // SAFETY: forwarding.
    free_any(dptr, || unsafe { real::cuMemFreeAsync(dptr, s) })
}

/// Hook for `cuMemFreeAsync_ptsz`.
pub unsafe fn mem_free_async_ptsz(dptr: CUdeviceptr, s: CUstream) -> u32 {
    // SAFETY: forwarding.
    free_any(dptr, || unsafe { real::cuMemFreeAsync_ptsz(dptr, s) })
}

/// Hook for `cuMemCreate`: physical memory is charged when created (device locations only).
pub unsafe fn mem_create(
    handle: *mut u64,
    size: usize,
    prop: *const RawAllocationProp,
    flags: u64,
) -> u32 {
    // SAFETY: forwarding.
    let forward = || unsafe { real::cuMemCreate(handle, size, prop, flags) };
    // SAFETY: prop is null or the caller's valid struct.
    let Some(p) =
        (unsafe { prop.as_ref() }).filter(|p| p.loc_type == 1 && size > 0 && !handle.is_null())
    else {
        return forward();
    };
    let ord = p.loc_id;
    // SAFETY: the driver succeeded, so handle holds the new handle.
    with_charge(
        ord,
        round_up(size as u64, granularity(ord)),
        Kind::Handle,
        forward,
        || unsafe { *handle },
    )
}

/// Hook for `cuMemRelease`: the charge goes back now, or at the last unmap of a handle that is
/// still mapped (when the driver really frees it).
pub unsafe fn mem_release(handle: u64) -> u32 {
    let charge = tracking::remove(Kind::Handle, handle);
    // SAFETY: forwarding.
    let rc = unsafe { real::cuMemRelease(handle) };
    match charge {
        Some(c) if rc == CUDA_SUCCESS => {
            if let Some(now) = crate::vmm::released(handle, c) {
                give_back(now);
            }
        }
        Some(c) => tracking::insert(Kind::Handle, handle, c),
        None => {}
    }
    rc
}

fn give_back(c: Charge) {
    if let Ok(Some(acct)) = tenant::lookup_account(c.ordinal) {
        acct.release(c.bytes);
    }
    crate::spill::move_back(c.ordinal);
}

/// Hook for `cuMemMap`: remembers which handle backs the range.
pub unsafe fn mem_map(va: CUdeviceptr, size: usize, offset: usize, handle: u64, flags: u64) -> u32 {
    // SAFETY: forwarding.
    let rc = unsafe { real::cuMemMap(va, size, offset, handle, flags) };
    if rc == CUDA_SUCCESS {
        crate::vmm::mapped(va, size as u64, handle);
    }
    rc
}

/// Hook for `cuMemUnmap`: gives back the charge of handles released earlier whose last mapping
/// this was.
pub unsafe fn mem_unmap(va: CUdeviceptr, size: usize) -> u32 {
    // SAFETY: forwarding.
    let rc = unsafe { real::cuMemUnmap(va, size) };
    if rc == CUDA_SUCCESS {
        crate::vmm::unmapped(va, size as u64)
            .into_iter()
            .for_each(give_back);
    }
    rc
}

/// Charges an array of `bytes` (`None`: an unknown format or impossible dimensions) around the
/// driver's `create`. An array whose size cannot be known is refused, never left uncharged.
fn charge_array(bytes: Option<u64>, out: *mut *mut c_void, mut call: impl FnMut() -> u32) -> u32 {
    match (current(), bytes) {
        (Some(ord), None) if !out.is_null() => match tenant::account(ord) {
            Ok(Some(_)) => {
                crate::log!(Info, "array of an unknown format or size refused");
                CUDA_ERROR_INVALID_VALUE
            }
            Ok(None) => call(),
            Err(e) => e,
        },
        (Some(ord), Some(b)) if !out.is_null() => {
            // SAFETY: the driver succeeded, so out holds the new handle.
            with_charge(
                ord,
                round_up(b, granularity(ord)),
                Kind::Array,
                call,
                || unsafe { *out as u64 },
            )
        }
        _ => call(),
    }
}

/// Hook for `cuArrayCreate_v2`.
pub unsafe fn array_create(out: *mut CUarray, desc: *const RawArrayDescriptor) -> u32 {
    // SAFETY: desc is null or the caller's valid descriptor.
    let bytes = unsafe { desc.as_ref() }
        .and_then(|d| array_bytes(d.width, d.height, 0, d.format, d.channels))
        .map(|(_, b)| b);
    // SAFETY: forwarding.
    charge_array(bytes, out.cast(), || unsafe {
        real::cuArrayCreate_v2(out, desc)
    })
}

/// Hook for `cuArray3DCreate_v2`.
pub unsafe fn array_3d_create(out: *mut CUarray, desc: *const RawArray3dDescriptor) -> u32 {
    // SAFETY: desc is null or the caller's valid descriptor.
    let bytes = unsafe { desc.as_ref() }
        .and_then(|d| array_bytes(d.width, d.height, d.depth, d.format, d.channels))
        .map(|(_, b)| b);
    // SAFETY: forwarding.
    charge_array(bytes, out.cast(), || unsafe {
        real::cuArray3DCreate_v2(out, desc)
    })
}

/// Hook for `cuMipmappedArrayCreate`.
pub unsafe fn mipmapped_array_create(
    out: *mut CUmipmappedArray,
    desc: *const RawArray3dDescriptor,
    levels: u32,
) -> u32 {
    // SAFETY: desc is null or the caller's valid descriptor.
    let bytes = unsafe { desc.as_ref() }
        .and_then(|d| mipmapped_bytes(d, levels))
        .map(|(_, b)| b);
    // SAFETY: forwarding.
    charge_array(bytes, out.cast(), || unsafe {
        real::cuMipmappedArrayCreate(out, desc, levels)
    })
}

/// Hook for `cuArrayDestroy`.
pub unsafe fn array_destroy(a: CUarray) -> u32 {
    // SAFETY: forwarding.
    with_uncharge(Kind::Array, a as u64, || unsafe { real::cuArrayDestroy(a) })
}

/// Hook for `cuMipmappedArrayDestroy`.
pub unsafe fn mipmapped_array_destroy(a: CUmipmappedArray) -> u32 {
    // SAFETY: forwarding.
    with_uncharge(Kind::Array, a as u64, || unsafe {
        real::cuMipmappedArrayDestroy(a)
    })
}

fn context_memory() -> u64 {
    match tenant::tenant() {
        Ok(Some(t)) => t.config.context_memory,
        _ => 0,
    }
}

/// Charges an extra context on `dev` around the driver's `create`, recording it under the new
/// context handle.
fn charged_context(ctx: *mut CUcontext, dev: CUdevice, create: impl FnMut() -> u32) -> u32 {
    // SAFETY: ctx holds the new context once the driver succeeded.
    with_charge(dev, context_memory(), Kind::Context, create, || unsafe {
        *ctx as u64
    })
}

/// Hook for `cuCtxCreate_v2`: an extra context costs device memory too.
pub unsafe fn ctx_create(ctx: *mut CUcontext, flags: u32, dev: CUdevice) -> u32 {
    // SAFETY: forwarding.
    charged_context(ctx, dev, || unsafe {
        real::cuCtxCreate_v2(ctx, flags, dev)
    })
}

/// Hook for `cuCtxCreate_v3`.
pub unsafe fn ctx_create_v3(
    ctx: *mut CUcontext,
    params: *mut c_void,
    n: i32,
    flags: u32,
    dev: CUdevice,
) -> u32 {
    // SAFETY: forwarding.
    charged_context(ctx, dev, || unsafe {
        real::cuCtxCreate_v3(ctx, params, n, flags, dev)
    })
}

/// Hook for `cuCtxCreate_v4`.
pub unsafe fn ctx_create_v4(
    ctx: *mut CUcontext,
    params: *mut c_void,
    flags: u32,
    dev: CUdevice,
) -> u32 {
    // SAFETY: forwarding.
    charged_context(ctx, dev, || unsafe {
        real::cuCtxCreate_v4(ctx, params, flags, dev)
    })
}

/// Hook for `cuCtxDestroy_v2`.
pub unsafe fn ctx_destroy(ctx: CUcontext) -> u32 {
    // SAFETY: forwarding.
    with_uncharge(Kind::Context, ctx as u64, || unsafe {
        real::cuCtxDestroy_v2(ctx)
    })
}
