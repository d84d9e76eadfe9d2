//! Virtual memory management: physical handles (`cuMemCreate`, backed by a sealed memfd so one
//! handle can be mapped at several addresses and shared with other processes as a file
//! descriptor), address reservations and mappings.

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
    /// `CUmemAllocationHandleType` bits it may be exported as.
    handle_types: u32,
    /// Charged to this process's device (not when imported: the exporter's memory).
    charged: bool,
}

/// `CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR`, the one shareable handle type simulated.
const POSIX_FILE_DESCRIPTOR: u32 = 0x1;
/// `CU_MEM_HANDLE_TYPE_FABRIC` (needs a fabric the simulated machine does not have).
const FABRIC: u32 = 0x8;
/// Name of the files holding physical memory, followed by the physical device index.
const FILE_NAME: &str = "gpupool-sim-vmm-";

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
    // SAFETY: checked non-null by prop_device.
    let handle_types = unsafe { (*prop).handle_types };
    if out.is_null()
        || flags != 0
        || size == 0
        || !(size as u64).is_multiple_of(dev.spec.granularity)
        || handle_types & !(POSIX_FILE_DESCRIPTOR | FABRIC) != 0
    {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if handle_types & FABRIC != 0 {
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    if let Err(e) = m.reserve(dev, size as u64) {
        return e;
    }
    let Some(fd) = physical_file(dev.physical, size as u64) else {
        m.unreserve(dev, size as u64);
        return CUDA_ERROR_OUT_OF_MEMORY;
    };
    let h = new_handle(Physical {
        fd,
        size: size as u64,
        ordinal,
        mappings: 0,
        released: false,
        handle_types,
        charged: true,
    });
    write(out, h)
}

fn new_handle(p: Physical) -> u64 {
    let h = NEXT_HANDLE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    with_handles(|t| t.insert(h, p));
    h
}

/// A sealed file of `size` bytes named after physical device `physical`.
fn physical_file(physical: usize, size: u64) -> Option<i32> {
    let name = std::ffi::CString::new(format!("{FILE_NAME}{physical}")).ok()?;
    crate::sealed_file::create(&name, size)
}

/// The physical device index and size of a file [`physical_file`] made (`None` for any
/// other descriptor).
fn physical_file_facts(fd: i32) -> Option<(usize, u64)> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let link = link.to_str()?;
    let rest = link.strip_prefix("/memfd:")?.strip_prefix(FILE_NAME)?;
    let physical = rest
        .strip_suffix(" (deleted)")
        .unwrap_or(rest)
        .parse()
        .ok()?;
    let size = crate::sealed_file::sealed_size(fd).filter(|&s| s > 0)?;
    Some((physical, size))
}

/// `cuMemExportToShareableHandle`: a new descriptor of the handle's memory (the caller's to
/// close), for handles created asking for `CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR`.
pub unsafe fn mem_export_to_shareable_handle(
    out: *mut c_void,
    h: u64,
    handle_type: u32,
    flags: u64,
) -> u32 {
    if out.is_null() || flags != 0 {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if handle_type != POSIX_FILE_DESCRIPTOR {
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    let fd = with_handles(|t| match t.get(&h) {
        Some(p) if p.handle_types & POSIX_FILE_DESCRIPTOR != 0 => Ok(p.fd),
        Some(_) => Err(CUDA_ERROR_INVALID_VALUE),
        None => Err(CUDA_ERROR_INVALID_HANDLE),
    });
    match fd {
        // SAFETY: duplicating our descriptor.
        Ok(fd) => match unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) } {
            -1 => CUDA_ERROR_OPERATING_SYSTEM,
            copy => write(out as *mut i32, copy),
        },
        Err(e) => e,
    }
}

/// `cuMemImportFromShareableHandle`: a handle for the memory behind a descriptor another
/// process (or this one) exported; the descriptor stays the caller's. Anything but such a
/// descriptor is `CUDA_ERROR_INVALID_VALUE`. Imported memory is charged to its exporter.
pub unsafe fn mem_import_from_shareable_handle(
    out: *mut u64,
    os_handle: *mut c_void,
    handle_type: u32,
) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if handle_type != POSIX_FILE_DESCRIPTOR {
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    let Ok(fd) = i32::try_from(os_handle as usize) else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    let Some((physical, size)) = physical_file_facts(fd) else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    let Some(ordinal) = crate::ctx::initialised()
        .ok()
        .and_then(|m| m.visible.iter().position(|&p| p == physical))
    else {
        return CUDA_ERROR_INVALID_DEVICE;
    };
    // SAFETY: duplicating the caller's descriptor, checked above.
    let own = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if own < 0 {
        return CUDA_ERROR_OPERATING_SYSTEM;
    }
    let h = new_handle(Physical {
        fd: own,
        size,
        ordinal: ordinal as i32,
        mappings: 0,
        released: false,
        handle_types: POSIX_FILE_DESCRIPTOR,
        charged: false,
    });
    write(out, h)
}

fn drop_physical(p: Physical) {
    // SAFETY: closing the memfd we created.
    unsafe { libc::close(p.fd) };
    if !p.charged {
        return;
    }
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
    match with_handles(|t| t.get(&h).map(|p| (p.ordinal, p.handle_types))) {
        Some((ordinal, handle_types)) => write(
            prop,
            RawAllocationProp {
                handle_types,
                ..RawAllocationProp::device(ordinal)
            },
        ),
        None => CUDA_ERROR_INVALID_VALUE,
    }
}

/// This module's locks, in the order they nest (for fork handlers).
pub fn fork_locks() -> [&'static dyn ForkLock; 2] {
    [&HANDLES, &MAPPINGS]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memfd(name: &std::ffi::CStr, size: i64, sealed: bool) -> i32 {
        // SAFETY: a NUL-terminated name; descriptors of this test.
        unsafe {
            let fd = libc::memfd_create(name.as_ptr(), libc::MFD_ALLOW_SEALING);
            assert!(fd >= 0 && libc::ftruncate(fd, size) == 0);
            if sealed {
                assert_eq!(
                    libc::fcntl(
                        fd,
                        libc::F_ADD_SEALS,
                        libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL
                    ),
                    0
                );
            }
            fd
        }
    }

    #[test]
    fn only_sealed_files_of_physical_memory_import() {
        let ours = physical_file(3, 2 << 20).unwrap();
        assert_eq!(physical_file_facts(ours), Some((3, 2 << 20)));
        let unsealed = memfd(c"gpupool-sim-vmm-0", 4096, false);
        assert_eq!(
            physical_file_facts(unsealed),
            None,
            "could shrink under a mapping"
        );
        let other = memfd(c"something-else", 4096, true);
        assert_eq!(physical_file_facts(other), None);
        let no_index = memfd(c"gpupool-sim-vmm-x", 4096, true);
        assert_eq!(physical_file_facts(no_index), None);
        let empty = memfd(c"gpupool-sim-vmm-0", 0, true);
        assert_eq!(physical_file_facts(empty), None);
        assert_eq!(physical_file_facts(-1), None);
        for fd in [ours, unsealed, other, no_index, empty] {
            // SAFETY: closing this test's descriptors.
            unsafe { libc::close(fd) };
        }
    }
}
