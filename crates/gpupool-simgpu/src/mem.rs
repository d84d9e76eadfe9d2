//! Memory: the registry of every allocation in this process, device / managed / pinned-host
//! allocation, `cuMemGetInfo`, address ranges and pointer attributes.
//!
//! Device pointers are addresses in this process's own address space (unified addressing), backed
//! lazily by `mmap(MAP_NORESERVE)`: an 80 GiB simulated card costs RAM only for bytes touched.
//! Physical device memory is charged, rounded to the device's granularity, in the region shared
//! with every process of the simulated machine.

use crate::ctx::{device, require_current, Context};
use gpupool_cuda::cu::{CUcontext, CUdeviceptr};
use gpupool_cuda::result::*;
use gpupool_cuda::spinlock::{ForkLock, SpinLock};
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// Bandwidth of host memory mapped into the device, read by a kernel or copied over the bus
/// (GB/s, PCIe 4.0 x16).
pub const HOST_MAPPED_GBPS: u64 = 25;

/// What an allocation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `cuMemAlloc` / `cuMemAllocPitch`.
    Device,
    /// `cuMemAllocManaged`, resident on the device (charged there).
    Managed,
    /// `cuMemAllocManaged`, resident on the host (not charged to the device; kernels read it
    /// over the bus): allocated when the card had no room, advised to prefer the CPU, or
    /// prefetched there.
    ManagedOnHost,
    /// `cuMemAllocHost` / `cuMemHostAlloc`.
    Host,
    /// `cuMemHostRegister`ed user memory (not ours to unmap).
    Registered,
    /// From a memory pool (`cuMemAllocAsync`), with the pool's handle.
    Pool(usize),
    /// A virtual range from `cuMemAddressReserve`.
    Reserved,
    /// Backing store of a CUDA array.
    Array,
    /// The address of a graph's allocation node (charged while a launch holds it).
    Graph,
    /// Another process's allocation mapped by `cuIpcOpenMemHandle` (charged to that one).
    Imported,
}

/// One allocation.
#[derive(Debug, Clone, Copy)]
pub struct Alloc {
    /// Bytes asked for.
    pub size: u64,
    /// Bytes mapped (and, for device kinds, charged).
    pub mapped: u64,
    /// CUDA ordinal it belongs to (-1 for host memory).
    pub ordinal: i32,
    /// Context handle.
    pub ctx: usize,
    /// Kind.
    pub kind: Kind,
    /// Unique id.
    pub id: u64,
}

static ALLOCS: SpinLock<BTreeMap<u64, Alloc>> = SpinLock::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn allocs() -> gpupool_cuda::spinlock::SpinGuard<'static, BTreeMap<u64, Alloc>> {
    ALLOCS.lock()
}

/// Finds the allocation containing `[ptr, ptr + len)`.
pub fn find(ptr: u64, len: u64) -> Option<(u64, Alloc)> {
    let map = allocs();
    let (&base, &a) = map.range(..=ptr).next_back()?;
    let end = base.checked_add(a.size.max(1))?;
    (ptr.checked_add(len)? <= end.max(base + a.mapped)).then_some((base, a))
}

/// Records an allocation made elsewhere (pools, VMM, arrays).
pub fn register(base: u64, mut a: Alloc) {
    a.id = NEXT_ID.fetch_add(1, SeqCst);
    allocs().insert(base, a);
}

/// Removes the allocation at `base` only if `keep(alloc)` is false.
pub fn unregister_if(base: u64, matches: impl Fn(&Alloc) -> bool) -> Result<Alloc, u32> {
    let mut map = allocs();
    match map.get(&base) {
        Some(a) if matches(a) => Ok(map.remove(&base).expect("present")),
        _ => Err(CUDA_ERROR_INVALID_VALUE),
    }
}

/// Maps `len` bytes of lazily backed, zero-filled memory.
pub fn map_anonymous(len: u64) -> Result<u64, u32> {
    // SAFETY: anonymous private mapping; result checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(CUDA_ERROR_OUT_OF_MEMORY)
    } else {
        Ok(p as u64)
    }
}

/// Unmaps what [`map_anonymous`] mapped.
pub fn unmap(base: u64, len: u64) {
    // SAFETY: base/len come from a mapping we made and recorded.
    unsafe { libc::munmap(base as *mut c_void, len as usize) };
}

/// Freed device mappings kept for reuse, like a driver's sub-allocator: (length, address).
/// Bounded in count and bytes; contents are not cleared (neither are real `cuMemAlloc`'s).
static SPARE: SpinLock<Vec<(u64, u64)>> = SpinLock::new(Vec::new());
const SPARE_MAX_ENTRIES: usize = 32;
const SPARE_MAX_LEN: u64 = 16 << 20;

fn reuse_or_map(len: u64) -> Result<u64, u32> {
    let reused = {
        let mut spare = SPARE.lock();
        spare
            .iter()
            .position(|(l, _)| *l == len)
            .map(|i| spare.swap_remove(i).1)
    };
    match reused {
        Some(base) => Ok(base),
        None => map_anonymous(len),
    }
}

fn keep_or_unmap(base: u64, len: u64) {
    if len <= SPARE_MAX_LEN {
        let mut spare = SPARE.lock();
        if spare.len() < SPARE_MAX_ENTRIES {
            spare.push((len, base));
            return;
        }
    }
    unmap(base, len);
}

/// Rounds `n` up to a multiple of `g` (a power of two).
pub fn round_up(n: u64, g: u64) -> u64 {
    n.div_ceil(g).saturating_mul(g)
}

pub(crate) fn write<T>(out: *mut T, v: T) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: non-null out pointer supplied by the caller.
    unsafe { out.write(v) };
    CUDA_SUCCESS
}

pub(crate) fn result(r: Result<u32, u32>) -> u32 {
    r.unwrap_or_else(|e| e)
}

/// Allocates charged device memory on the current context's device.
pub fn alloc_device(size: u64, kind: Kind) -> Result<u64, u32> {
    if size == 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let ctx = require_current()?;
    alloc_on(ctx, size, kind)
}

/// Allocates charged device memory on `ctx`'s device.
pub fn alloc_on(ctx: &Context, size: u64, kind: Kind) -> Result<u64, u32> {
    alloc_charged(ctx.ordinal, ctx as *const Context as usize, size, kind)
}

/// Allocates `size` bytes charged to device `ordinal`, recorded as belonging to `ctx`.
pub fn alloc_charged(ordinal: i32, ctx: usize, size: u64, kind: Kind) -> Result<u64, u32> {
    if size == 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let (m, dev) = device(ordinal)?;
    let mapped = round_up(size, dev.spec.granularity);
    m.reserve(dev, mapped)?;
    alloc_precharged(ordinal, ctx, size, kind).inspect_err(|_| m.unreserve(dev, mapped))
}

/// Allocates `size` bytes on device `ordinal` whose device memory is already charged (memory
/// a pool kept), recorded as belonging to `ctx`.
pub fn alloc_precharged(ordinal: i32, ctx: usize, size: u64, kind: Kind) -> Result<u64, u32> {
    let (_, dev) = device(ordinal)?;
    let mapped = round_up(size, dev.spec.granularity);
    let base = reuse_or_map(mapped)?;
    register(
        base,
        Alloc {
            size,
            mapped,
            ordinal,
            ctx,
            kind,
            id: 0,
        },
    );
    Ok(base)
}

/// Bytes `size` maps to on device `ordinal` (its granularity).
pub fn mapped_size(ordinal: i32, size: u64) -> Result<u64, u32> {
    Ok(round_up(size, device(ordinal)?.1.spec.granularity))
}

/// Gives `bytes` of device `ordinal`'s memory back to the card.
pub fn uncharge(ordinal: i32, bytes: u64) {
    if let Ok((m, dev)) = device(ordinal) {
        m.unreserve(dev, bytes);
    }
}

/// Frees charged device memory allocated by [`alloc_on`] (managed memory on the host was not
/// charged).
pub fn free_device(base: u64, accept: impl Fn(Kind) -> bool) -> Result<(), u32> {
    let a = free_keeping_charge(base, accept)?;
    if a.kind != Kind::ManagedOnHost {
        uncharge(a.ordinal, a.mapped);
    }
    Ok(())
}

/// Unmaps the allocation at `base` (if `accept` takes its kind) but leaves its device memory
/// charged (a pool keeps it); returns what it was.
pub fn free_keeping_charge(base: u64, accept: impl Fn(Kind) -> bool) -> Result<Alloc, u32> {
    let a = unregister_if(base, |a| accept(a.kind))?;
    if crate::ipc::forget_export(base) {
        // Importers still map its file: the range is not reused.
        unmap(base, a.mapped);
    } else {
        keep_or_unmap(base, a.mapped);
    }
    Ok(a)
}

/// `cuMemAlloc_v2`.
pub unsafe fn mem_alloc(dptr: *mut CUdeviceptr, size: usize) -> u32 {
    if dptr.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    result(alloc_device(size as u64, Kind::Device).map(|p| write(dptr, p)))
}

/// Pitch alignment of `cuMemAllocPitch`.
pub const PITCH_ALIGNMENT: u64 = 512;

/// `cuMemAllocPitch_v2`.
pub unsafe fn mem_alloc_pitch(
    dptr: *mut CUdeviceptr,
    pitch: *mut usize,
    width: usize,
    height: usize,
    elem: u32,
) -> u32 {
    if dptr.is_null() || pitch.is_null() || width == 0 || height == 0 || ![4, 8, 16].contains(&elem)
    {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let p = round_up(width as u64, PITCH_ALIGNMENT);
    let Some(size) = p.checked_mul(height as u64) else {
        return CUDA_ERROR_OUT_OF_MEMORY;
    };
    result(alloc_device(size, Kind::Device).map(|base| {
        write(pitch, p as usize);
        write(dptr, base)
    }))
}

/// `cuMemAllocManaged`: on the current device (charged there) while the card has room, else
/// on the host (as the driver leaves pages that do not fit).
pub unsafe fn mem_alloc_managed(dptr: *mut CUdeviceptr, size: usize, flags: u32) -> u32 {
    if dptr.is_null() || !(flags == 1 || flags == 2) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let placed = match alloc_device(size as u64, Kind::Managed) {
        Err(CUDA_ERROR_OUT_OF_MEMORY) => alloc_on_host(size as u64),
        other => other,
    };
    result(placed.map(|p| write(dptr, p)))
}

/// A managed allocation resident on the host from the start.
fn alloc_on_host(size: u64) -> Result<u64, u32> {
    let ctx = require_current()?;
    let (_, dev) = device(ctx.ordinal)?;
    let mapped = round_up(size, dev.spec.granularity);
    let base = map_anonymous(mapped)?;
    register(
        base,
        Alloc {
            size,
            mapped,
            ordinal: ctx.ordinal,
            ctx: ctx as *const Context as usize,
            kind: Kind::ManagedOnHost,
            id: 0,
        },
    );
    Ok(base)
}

/// Moves the whole managed allocation at `ptr` (`count` bytes from its start) to the device
/// (`to_device`) or the host: charged to or given back to the card, the bytes copied over the
/// simulated bus. Ranges that are not a whole managed allocation, and moves to where it
/// already is, change nothing. A card without room: `CUDA_ERROR_OUT_OF_MEMORY`.
fn move_managed(ptr: u64, count: u64, to_device: bool) -> Result<(), u32> {
    let (base, a) = find(ptr, count).ok_or(CUDA_ERROR_INVALID_VALUE)?;
    let whole = base == ptr && count >= a.size;
    let on_device = match a.kind {
        Kind::Managed => true,
        Kind::ManagedOnHost => false,
        _ => return Ok(()),
    };
    if !whole || on_device == to_device {
        return Ok(());
    }
    let (m, dev) = device(a.ordinal)?;
    if to_device {
        m.reserve(dev, a.mapped)?;
    }
    std::thread::sleep(std::time::Duration::from_nanos(a.mapped / HOST_MAPPED_GBPS));
    if !to_device {
        m.unreserve(dev, a.mapped);
    }
    if let Some(entry) = allocs().get_mut(&base) {
        entry.kind = if to_device {
            Kind::Managed
        } else {
            Kind::ManagedOnHost
        };
    }
    Ok(())
}

/// `cuMemFree_v2` (freeing 0 is a no-op, as `cudaFree(NULL)` relies on).
pub unsafe fn mem_free(dptr: CUdeviceptr) -> u32 {
    if let Err(e) = crate::ctx::require_current() {
        return e;
    }
    if dptr == 0 {
        return CUDA_SUCCESS;
    }
    result(
        free_device(dptr, |k| {
            matches!(k, Kind::Device | Kind::Managed | Kind::ManagedOnHost)
        })
        .map(|_| CUDA_SUCCESS),
    )
}

/// `cuMemGetInfo_v2`: free and total memory of the current device, all processes counted.
pub unsafe fn mem_get_info(free: *mut usize, total: *mut usize) -> u32 {
    result((|| {
        let ctx = require_current()?;
        let (m, dev) = device(ctx.ordinal)?;
        let t = dev.spec.memory;
        let used = m.used(dev).min(t);
        if free.is_null() || total.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        write(free, (t - used) as usize);
        Ok(write(total, t as usize))
    })())
}

/// `cuMemGetAddressRange_v2`.
pub unsafe fn mem_get_address_range(
    base: *mut CUdeviceptr,
    size: *mut usize,
    dptr: CUdeviceptr,
) -> u32 {
    if let Err(e) = require_current() {
        return e;
    }
    match find(dptr, 0) {
        Some((b, a)) if a.kind != Kind::Host && a.kind != Kind::Registered => {
            if !base.is_null() {
                write(base, b);
            }
            if !size.is_null() {
                write(size, a.size as usize);
            }
            CUDA_SUCCESS
        }
        _ => CUDA_ERROR_NOT_FOUND,
    }
}

/// `cuMemHostAlloc`: pinned host memory, not charged to any device.
pub unsafe fn mem_host_alloc(pp: *mut *mut c_void, size: usize, _flags: u32) -> u32 {
    result((|| {
        let ctx = require_current()?;
        if pp.is_null() || size == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mapped = round_up(size as u64, 4096);
        let base = map_anonymous(mapped)?;
        register(
            base,
            Alloc {
                size: size as u64,
                mapped,
                ordinal: ctx.ordinal,
                ctx: ctx as *const Context as usize,
                kind: Kind::Host,
                id: 0,
            },
        );
        Ok(write(pp, base as *mut c_void))
    })())
}

/// `cuMemAllocHost_v2`.
pub unsafe fn mem_alloc_host(pp: *mut *mut c_void, size: usize) -> u32 {
    // SAFETY: same contract.
    unsafe { mem_host_alloc(pp, size, 0) }
}

/// `cuMemFreeHost`.
pub unsafe fn mem_free_host(p: *mut c_void) -> u32 {
    match unregister_if(p as u64, |a| a.kind == Kind::Host) {
        Ok(a) => {
            unmap(p as u64, a.mapped);
            CUDA_SUCCESS
        }
        Err(e) => e,
    }
}

/// `cuMemHostGetDevicePointer_v2`: unified addressing, same address.
pub unsafe fn mem_host_get_device_pointer(
    out: *mut CUdeviceptr,
    p: *mut c_void,
    _flags: u32,
) -> u32 {
    match find(p as u64, 0) {
        Some((_, a)) if matches!(a.kind, Kind::Host | Kind::Registered) => write(out, p as u64),
        _ => CUDA_ERROR_INVALID_VALUE,
    }
}

/// `cuMemHostGetFlags`.
pub unsafe fn mem_host_get_flags(out: *mut u32, p: *mut c_void) -> u32 {
    match find(p as u64, 0) {
        Some((_, a)) if matches!(a.kind, Kind::Host | Kind::Registered) => write(out, 0),
        _ => CUDA_ERROR_INVALID_VALUE,
    }
}

/// `cuMemHostRegister_v2`.
pub unsafe fn mem_host_register(p: *mut c_void, size: usize, _flags: u32) -> u32 {
    result((|| {
        let ctx = require_current()?;
        if p.is_null() || size == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        if find(p as u64, 0).is_some() {
            return Err(CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
        }
        register(
            p as u64,
            Alloc {
                size: size as u64,
                mapped: size as u64,
                ordinal: ctx.ordinal,
                ctx: ctx as *const Context as usize,
                kind: Kind::Registered,
                id: 0,
            },
        );
        Ok(CUDA_SUCCESS)
    })())
}

/// `cuMemHostUnregister`.
pub unsafe fn mem_host_unregister(p: *mut c_void) -> u32 {
    match unregister_if(p as u64, |a| a.kind == Kind::Registered) {
        Ok(_) => CUDA_SUCCESS,
        Err(_) => CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED,
    }
}

const MEMORYTYPE_HOST: u32 = 1;
const MEMORYTYPE_DEVICE: u32 = 2;

/// Writes one pointer attribute for `ptr` into `data`. `known` is the allocation, if any.
unsafe fn pointer_attribute(
    data: *mut c_void,
    attr: i32,
    ptr: u64,
    known: Option<(u64, Alloc)>,
) -> u32 {
    let Some((base, a)) = known else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    let host = matches!(a.kind, Kind::Host | Kind::Registered);
    // Boolean attributes are 32-bit integers, as callers (and NVIDIA's runtime) read them.
    let boolean = |v: bool| write(data as *mut u32, v as u32);
    match attr {
        1 => write(data as *mut CUcontext, a.ctx as CUcontext),
        2 => write(
            data as *mut u32,
            if host {
                MEMORYTYPE_HOST
            } else {
                MEMORYTYPE_DEVICE
            },
        ),
        3 => write(data as *mut u64, ptr),
        4 => {
            if host || matches!(a.kind, Kind::Managed | Kind::ManagedOnHost) {
                write(data as *mut *mut c_void, ptr as *mut c_void)
            } else {
                CUDA_ERROR_INVALID_VALUE
            }
        }
        6 => boolean(true),
        7 => write(data as *mut u64, a.id),
        8 => boolean(matches!(a.kind, Kind::Managed | Kind::ManagedOnHost)),
        9 => write(data as *mut i32, a.ordinal),
        10 => boolean(a.kind == Kind::Device),
        11 => write(data as *mut u64, base),
        12 => write(data as *mut usize, a.size as usize),
        13 => boolean(true),
        14 => write(data as *mut u64, 0),
        15 => boolean(false),
        16 => write(data as *mut u32, 3),
        17 => match a.kind {
            Kind::Pool(p) => write(data as *mut usize, p),
            _ => write(data as *mut usize, 0),
        },
        18 => write(data as *mut usize, a.mapped as usize),
        19 => write(data as *mut u64, base),
        20 => write(data as *mut u64, a.id),
        _ => CUDA_ERROR_INVALID_VALUE,
    }
}

/// `cuPointerGetAttribute`.
pub unsafe fn pointer_get_attribute(data: *mut c_void, attr: i32, ptr: CUdeviceptr) -> u32 {
    if let Err(e) = crate::ctx::initialised() {
        return e;
    }
    if data.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: data is non-null and sized by the caller for attr.
    unsafe { pointer_attribute(data, attr, ptr, find(ptr, 0)) }
}

/// `cuPointerGetAttributes`: unknown pointers are reported as unregistered host memory.
pub unsafe fn pointer_get_attributes(
    n: u32,
    attrs: *mut i32,
    data: *mut *mut c_void,
    ptr: CUdeviceptr,
) -> u32 {
    if let Err(e) = crate::ctx::initialised() {
        return e;
    }
    if attrs.is_null() || data.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let known = find(ptr, 0);
    for i in 0..n as usize {
        // SAFETY: the caller passes arrays of n entries.
        let (attr, out) = unsafe { (*attrs.add(i), *data.add(i)) };
        if out.is_null() {
            continue;
        }
        // SAFETY: out is sized by the caller for attr.
        let rc = unsafe { pointer_attribute(out, attr, ptr, known) };
        if rc != CUDA_SUCCESS {
            // Not ours: zero-fill like the driver does for unregistered memory.
            // SAFETY: every attribute value is at least 1 byte; fields the runtime reads for
            // unknown pointers (type, ordinal, pointers) are written with their full width.
            {
                match attr {
                    1 | 4 | 17 => write(out as *mut usize, 0),
                    3 | 7 | 11 | 14 | 19 | 20 => write(out as *mut u64, 0),
                    2 | 6 | 8 | 10 | 13 | 15 | 16 => write(out as *mut u32, 0),
                    9 => write(out as *mut i32, -2),
                    12 | 18 => write(out as *mut usize, 0),
                    _ => write(out as *mut u8, 0),
                };
            }
        }
    }
    CUDA_SUCCESS
}

/// `cuPointerSetAttribute`: only `SYNC_MEMOPS`, accepted.
pub unsafe fn pointer_set_attribute(_value: *const c_void, attr: i32, ptr: CUdeviceptr) -> u32 {
    if attr == 6 && find(ptr, 0).is_some() {
        CUDA_SUCCESS
    } else {
        CUDA_ERROR_INVALID_VALUE
    }
}

/// `cuMemAdvise` / `_v2` and `cuMemPrefetchAsync`: hints, accepted for managed memory.
pub unsafe fn mem_hint(ptr: CUdeviceptr, count: usize) -> u32 {
    match find(ptr, count as u64) {
        Some(_) => CUDA_SUCCESS,
        None => CUDA_ERROR_INVALID_VALUE,
    }
}

/// `CU_MEM_ADVISE_SET_PREFERRED_LOCATION`.
const ADVISE_SET_PREFERRED_LOCATION: u32 = 3;
/// `CU_DEVICE_CPU`.
const DEVICE_CPU: i32 = -1;

/// `cuMemAdvise`: preferring the CPU for a whole managed allocation moves it to the host
/// (other advice is accepted as a hint).
pub unsafe fn mem_advise(ptr: CUdeviceptr, count: usize, advice: u32, dev: i32) -> u32 {
    if advice == ADVISE_SET_PREFERRED_LOCATION && dev == DEVICE_CPU {
        return result(move_managed(ptr, count as u64, false).map(|_| CUDA_SUCCESS));
    }
    // SAFETY: same contract.
    unsafe { mem_hint(ptr, count) }
}

/// `cuMemAdvise_v2`.
pub unsafe fn mem_advise_v2(ptr: CUdeviceptr, count: usize, _advice: u32, _loc: u64) -> u32 {
    // SAFETY: same contract.
    unsafe { mem_hint(ptr, count) }
}

/// `cuMemPrefetchAsync`: a whole managed allocation moves to device `dst` or to the host
/// (`CU_DEVICE_CPU`), at once (the copy's time is spent in the call).
pub unsafe fn mem_prefetch_async(
    ptr: CUdeviceptr,
    count: usize,
    dst: i32,
    _stream: *mut c_void,
) -> u32 {
    result(move_managed(ptr, count as u64, dst != DEVICE_CPU).map(|_| CUDA_SUCCESS))
}

/// `cuMemPrefetchAsync_v2` (location passed by value as two ints).
pub unsafe fn mem_prefetch_async_v2(
    ptr: CUdeviceptr,
    count: usize,
    _loc: u64,
    _flags: u32,
    _stream: *mut c_void,
) -> u32 {
    // SAFETY: same contract.
    unsafe { mem_hint(ptr, count) }
}

/// This module's locks, in the order they nest (for fork handlers).
pub fn fork_locks() -> [&'static dyn ForkLock; 2] {
    [&ALLOCS, &SPARE]
}
