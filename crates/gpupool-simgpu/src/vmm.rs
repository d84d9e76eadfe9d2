//! Virtual memory management: physical handles (`cuMemCreate`, backed by a memfd so one handle
//! can be mapped at several addresses), address reservations and mappings.

use crate::ctx::device;
use crate::mem::{find, register, unregister_if, write, Alloc, Kind};
use gpupool_cuda::cu::{CUdeviceptr, CUmemAccessDesc};
use gpupool_cuda::props::RawAllocationProp;
use gpupool_cuda::result::*;
use gpupool_cuda::spinlock::{ForkLock, SpinLock};
use std::collections::HashMap;
use std::ffi::c_void;

pub(crate) struct Physical {
    fd: i32,
    size: u64,
    ordinal: i32,
    mappings: u32,
    released: bool,
}

static HANDLES: SpinLock<Option<HashMap<u64, Physical>>> = SpinLock::new(None);
/// Mapped ranges: start -> (handle, size).
static MAPPINGS: SpinLock<Option<HashMap<u64, (u64, u64)>>> = SpinLock::new(None);
static NEXT_HANDLE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0x1000);

fn with_handles<R>(f: impl FnOnce(&mut HashMap<u64, Physical>) -> R) -> R {
    f(HANDLES.lock().get_or_insert_with(HashMap::new))
}

fn with_mappings<R>(f: impl FnOnce(&mut HashMap<u64, (u64, u64)>) -> R) -> R {
    f(MAPPINGS.lock().get_or_insert_with(HashMap::new))
}

fn prop_device(prop: *const RawAllocationProp) -> Result<i32, u32> {
    if prop.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: caller passes a valid prop.
    let p = unsafe { &*prop };
    if p.alloc_type != 1 || p.loc_type != 1 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    device(p.loc_id)?;
    Ok(p.loc_id)
}

/// `cuMemGetAllocationGranularity`.
pub unsafe fn mem_get_allocation_granularity(
    out: *mut usize,
    prop: *const RawAllocationProp,
    _option: u32,
) -> u32 {
    match prop_device(prop).and_then(device) {
        Ok((_, d)) => write(out, d.spec.granularity as usize),
        Err(e) => e,
    }
}

/// `cuMemCreate`: charges the physical memory at once.
pub unsafe fn mem_create(
    out: *mut u64,
    size: usize,
    prop: *const RawAllocationProp,
    flags: u64,
) -> u32 {
    let ordinal = match prop_device(prop) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let (m, dev) = match device(ordinal) {
        Ok(x) => x,
        Err(e) => return e,
    };
    if out.is_null()
        || flags != 0
        || size == 0
        || !(size as u64).is_multiple_of(dev.spec.granularity)
    {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if let Err(e) = m.reserve(dev, size as u64) {
        return e;
    }
    // SAFETY: memfd_create with a static name; result checked.
    let fd = unsafe { libc::memfd_create(c"gpupool-sim-vmm".as_ptr(), libc::MFD_CLOEXEC) };
    // SAFETY: ftruncate on our fd.
    if fd < 0 || unsafe { libc::ftruncate(fd, size as i64) } != 0 {
        if fd >= 0 {
            // SAFETY: closing our fd.
            unsafe { libc::close(fd) };
        }
        m.unreserve(dev, size as u64);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    let h = NEXT_HANDLE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    with_handles(|t| {
        t.insert(
            h,
            Physical {
                fd,
                size: size as u64,
                ordinal,
                mappings: 0,
                released: false,
            },
        )
    });
    write(out, h)
}

fn drop_physical(p: Physical) {
    // SAFETY: closing the memfd we created.
    unsafe { libc::close(p.fd) };
    if let Ok((m, dev)) = device(p.ordinal) {
        m.unreserve(dev, p.size);
    }
}

/// `cuMemRelease`: the memory goes when the last mapping is gone.
pub unsafe fn mem_release(h: u64) -> u32 {
    let gone = with_handles(|t| match t.get_mut(&h) {
        None | Some(Physical { released: true, .. }) => Err(CUDA_ERROR_INVALID_VALUE),
        Some(p) if p.mappings == 0 => Ok(t.remove(&h)),
        Some(p) => {
            p.released = true;
            Ok(None)
        }
    });
    match gone {
        Ok(Some(p)) => {
            drop_physical(p);
            CUDA_SUCCESS
        }
        Ok(None) => CUDA_SUCCESS,
        Err(e) => e,
    }
}

/// `cuMemAddressReserve`.
pub unsafe fn mem_address_reserve(
    out: *mut CUdeviceptr,
    size: usize,
    _align: usize,
    addr: CUdeviceptr,
    _flags: u64,
) -> u32 {
    if out.is_null() || size == 0 {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: reserving address space only (PROT_NONE); result checked.
    let p = unsafe {
        libc::mmap(
            addr as *mut c_void,
            size,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    register(
        p as u64,
        Alloc {
            size: size as u64,
            mapped: size as u64,
            ordinal: -1,
            ctx: 0,
            kind: Kind::Reserved,
            id: 0,
        },
    );
    write(out, p as u64)
}

/// `cuMemAddressFree`.
pub unsafe fn mem_address_free(ptr: CUdeviceptr, size: usize) -> u32 {
    match unregister_if(ptr, |a| a.kind == Kind::Reserved && a.size == size as u64) {
        Ok(_) => {
            // SAFETY: unmapping the reservation we made.
            unsafe { libc::munmap(ptr as *mut c_void, size) };
            CUDA_SUCCESS
        }
        Err(e) => e,
    }
}

/// `cuMemMap`.
pub unsafe fn mem_map(ptr: CUdeviceptr, size: usize, offset: usize, h: u64, flags: u64) -> u32 {
    if flags != 0 || find(ptr, size as u64).is_none_or(|(_, a)| a.kind != Kind::Reserved) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let fd = with_handles(|t| match t.get_mut(&h) {
        Some(p) if !p.released && (offset + size) as u64 <= p.size => {
            p.mappings += 1;
            Ok(p.fd)
        }
        _ => Err(CUDA_ERROR_INVALID_HANDLE),
    });
    let fd = match fd {
        Ok(fd) => fd,
        Err(e) => return e,
    };
    // SAFETY: replacing part of our own PROT_NONE reservation with the handle's memory.
    let p = unsafe {
        libc::mmap(
            ptr as *mut c_void,
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED,
            fd,
            offset as i64,
        )
    };
    if p == libc::MAP_FAILED {
        with_handles(|t| t.get_mut(&h).map(|p| p.mappings -= 1));
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    with_mappings(|m| m.insert(ptr, (h, size as u64)));
    CUDA_SUCCESS
}

/// `cuMemUnmap`.
pub unsafe fn mem_unmap(ptr: CUdeviceptr, size: usize) -> u32 {
    let Some((h, _)) = with_mappings(|m| m.remove(&ptr)) else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    // SAFETY: turning the range back into a PROT_NONE reservation.
    unsafe {
        libc::mmap(
            ptr as *mut c_void,
            size,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    let gone = with_handles(|t| {
        let p = t.get_mut(&h)?;
        p.mappings = p.mappings.saturating_sub(1);
        (p.released && p.mappings == 0)
            .then(|| t.remove(&h))
            .flatten()
    });
    if let Some(p) = gone {
        drop_physical(p);
    }
    CUDA_SUCCESS
}

/// `cuMemSetAccess`: mappings are always read-write in the simulator.
pub unsafe fn mem_set_access(
    ptr: CUdeviceptr,
    size: usize,
    _desc: *const CUmemAccessDesc,
    count: usize,
) -> u32 {
    if count == 0 || find(ptr, size as u64).is_none() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    CUDA_SUCCESS
}

/// `cuMemGetAccess`.
pub unsafe fn mem_get_access(flags: *mut u64, _loc: *const c_void, ptr: CUdeviceptr) -> u32 {
    if with_mappings(|m| m.contains_key(&ptr)) {
        write(flags, 3)
    } else {
        CUDA_ERROR_INVALID_VALUE
    }
}

/// `cuMemRetainAllocationHandle`.
pub unsafe fn mem_retain_allocation_handle(out: *mut u64, addr: *mut c_void) -> u32 {
    match with_mappings(|m| m.get(&(addr as u64)).copied()) {
        Some((h, _)) => write(out, h),
        None => CUDA_ERROR_INVALID_VALUE,
    }
}

/// `cuMemGetAllocationPropertiesFromHandle`.
pub unsafe fn mem_get_allocation_properties_from_handle(
    prop: *mut RawAllocationProp,
    h: u64,
) -> u32 {
    match with_handles(|t| t.get(&h).map(|p| p.ordinal)) {
        Some(ordinal) => write(prop, RawAllocationProp::device(ordinal)),
        None => CUDA_ERROR_INVALID_VALUE,
    }
}

/// This module's locks, in the order they nest (for fork handlers).
pub fn fork_locks() -> [&'static dyn ForkLock; 2] {
    [&HANDLES, &MAPPINGS]
}
