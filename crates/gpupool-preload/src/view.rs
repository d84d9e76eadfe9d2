//! The tenant's virtual view of memory and devices: `cuMemGetInfo`, `cuDeviceTotalMem` and NVML
//! report the limit as total and limit − used as free (never underflowing); NVML lists only the
//! tenant's devices, in CUDA's order, and only the tenant's processes.

use crate::driver::cuda_device_uuids;
use crate::real;
use crate::tenant::{self, Account};
use gpupool_cuda::cu::CUdevice;
use gpupool_cuda::nvml::{
    nvmlDevice_t, nvmlMemory_t, nvmlMemory_v2_t, nvmlProcessInfo_v1_t, nvmlProcessInfo_v2_t,
};
use gpupool_cuda::result::*;
use gpupool_cuda::uuid::parse_gpu_uuid;
use std::ffi::{c_char, c_uint};

/// What the tenant may use of one device: its limit (`u64::MAX`: none) and what it uses, and
/// its spill allowance past the limit and what it spilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Device memory limit.
    pub limit: u64,
    /// Device memory in use by the tenant.
    pub used: u64,
    /// Host memory usable past the limit.
    pub spill: u64,
    /// Host memory in use past the limit.
    pub spilled: u64,
}

impl Budget {
    /// The budget of an account, read now.
    pub fn of(a: &Account) -> Budget {
        Budget {
            limit: a.limit,
            used: a.used(),
            spill: a.spill,
            spilled: if a.spill > 0 { a.spilled() } else { 0 },
        }
    }
}

/// (total, free, used) as the tenant sees a device whose real figures are given: the limit
/// (at most the card) plus the spill allowance as total.
pub fn virtual_memory(b: Budget, real_total: u64, real_free: u64) -> (u64, u64, u64) {
    if b.limit == u64::MAX {
        return (real_total, real_free, real_total.saturating_sub(real_free));
    }
    let device = b.limit.min(real_total);
    let used = b.used.min(device);
    let device_free = (device - used).min(real_free);
    let spilled = b.spilled.min(b.spill);
    (
        device.saturating_add(b.spill),
        device_free.saturating_add(b.spill - spilled),
        used.saturating_add(spilled),
    )
}

/// Hook for `cuMemGetInfo_v2`.
pub unsafe fn mem_get_info(free: *mut usize, total: *mut usize) -> u32 {
    crate::idle_gate::enter();
    // SAFETY: forwarding.
    let rc = unsafe { real::cuMemGetInfo_v2(free, total) };
    if rc != CUDA_SUCCESS || free.is_null() || total.is_null() {
        return rc;
    }
    let Ok(ord) = crate::driver::current_device() else {
        return rc;
    };
    crate::pools::refresh(ord);
    match tenant::lookup_account(ord) {
        Ok(Some(a)) => {
            // While this process's context does not fit, it can allocate nothing: free is 0.
            let context_fits = tenant::charge_context(&a, ord).is_ok();
            // SAFETY: the driver filled both.
            let (real_total, real_free) = unsafe { (*total as u64, *free as u64) };
            let (t, mut f, _) = virtual_memory(Budget::of(&a), real_total, real_free);
            if !context_fits {
                f = 0;
            }
            // SAFETY: non-null out pointers.
            unsafe {
                *total = t as usize;
                *free = f as usize;
            }
            rc
        }
        Ok(None) => rc,
        Err(e) => e,
    }
}

/// Hook for `cuDeviceTotalMem_v2`.
pub unsafe fn device_total_mem(bytes: *mut usize, dev: CUdevice) -> u32 {
    // SAFETY: forwarding.
    let rc = unsafe { real::cuDeviceTotalMem_v2(bytes, dev) };
    if rc != CUDA_SUCCESS || bytes.is_null() {
        return rc;
    }
    match tenant::tenant() {
        Ok(Some(t)) => {
            let l = tenant::limit(t, dev);
            // SAFETY: filled by the driver.
            unsafe { *bytes = (*bytes as u64).min(l) as usize };
            rc
        }
        Ok(None) => rc,
        Err(e) => e,
    }
}

fn nvml_err(e: u32) -> u32 {
    if e == CUDA_ERROR_NOT_INITIALIZED {
        NVML_ERROR_UNINITIALIZED
    } else {
        NVML_ERROR_UNKNOWN
    }
}

/// CUDA ordinal of an NVML device handle, through its UUID.
fn ordinal_of(h: nvmlDevice_t) -> Option<i32> {
    // SAFETY: h came from NVML through the caller.
    let uuid = parse_gpu_uuid(&unsafe { crate::driver::nvml_device_uuid(h) }?)?;
    cuda_device_uuids()
        .iter()
        .position(|u| *u == uuid)
        .map(|i| i as i32)
}

/// The account of an NVML device, if the tenant is configured and the device is one of its own.
fn nvml_account(h: nvmlDevice_t) -> Result<Option<Account>, u32> {
    if tenant::tenant().map_err(nvml_err)?.is_none() {
        return Ok(None);
    }
    match ordinal_of(h) {
        Some(ord) => tenant::lookup_account(ord).map_err(nvml_err),
        None => Ok(None),
    }
}

/// The tenant's (total, free, used) of an NVML device whose real total and free are given;
/// `None` when the device is not limited for this tenant.
fn nvml_view(h: nvmlDevice_t, total: u64, free: u64) -> Result<Option<(u64, u64, u64)>, u32> {
    Ok(nvml_account(h)?.map(|a| virtual_memory(Budget::of(&a), total, free)))
}

/// Hook for `nvmlDeviceGetMemoryInfo`.
pub unsafe fn nvml_memory_info(h: nvmlDevice_t, mem: *mut nvmlMemory_t) -> u32 {
    // SAFETY: forwarding.
    let rc = unsafe { real::nvmlDeviceGetMemoryInfo(h, mem) };
    // SAFETY: filled by NVML when it succeeded.
    let Some(m) = (unsafe { mem.as_mut() }).filter(|_| rc == NVML_SUCCESS) else {
        return rc;
    };
    match nvml_view(h, m.total, m.free) {
        Ok(Some((total, free, used))) => {
            *m = nvmlMemory_t { total, free, used };
            rc
        }
        Ok(None) => rc,
        Err(e) => e,
    }
}

/// Hook for `nvmlDeviceGetMemoryInfo_v2`.
pub unsafe fn nvml_memory_info_v2(h: nvmlDevice_t, mem: *mut nvmlMemory_v2_t) -> u32 {
    // SAFETY: forwarding.
    let rc = unsafe { real::nvmlDeviceGetMemoryInfo_v2(h, mem) };
    // SAFETY: filled by NVML when it succeeded.
    let Some(m) = (unsafe { mem.as_mut() }).filter(|_| rc == NVML_SUCCESS) else {
        return rc;
    };
    match nvml_view(h, m.total, m.free) {
        Ok(Some((total, free, used))) => {
            (m.total, m.free, m.used, m.reserved) = (total, free, used, 0);
            rc
        }
        Ok(None) => rc,
        Err(e) => e,
    }
}

/// Whether the tenant's device list replaces NVML's (a tenant is configured and CUDA sees
/// devices).
fn virtual_devices() -> Option<&'static [[u8; 16]]> {
    match tenant::tenant() {
        Ok(Some(_)) => Some(cuda_device_uuids()).filter(|u| !u.is_empty()),
        _ => None,
    }
}

/// The tenant's device count, or `None` to ask NVML.
unsafe fn virtual_count(n: *mut c_uint) -> Option<u32> {
    match virtual_devices() {
        Some(u) if !n.is_null() => {
            // SAFETY: non-null out pointer.
            unsafe { *n = u.len() as c_uint };
            Some(NVML_SUCCESS)
        }
        _ => None,
    }
}

/// Hook for `nvmlDeviceGetCount_v2`: the tenant's devices.
pub unsafe fn nvml_device_count(n: *mut c_uint) -> u32 {
    // SAFETY: the caller's pointer; forwarding.
    unsafe { virtual_count(n).unwrap_or_else(|| real::nvmlDeviceGetCount_v2(n)) }
}

/// Hook for `nvmlDeviceGetCount` (NVML 1): the tenant's devices.
pub unsafe fn nvml_device_count_v1(n: *mut c_uint) -> u32 {
    // SAFETY: the caller's pointer; forwarding.
    unsafe { virtual_count(n).unwrap_or_else(|| real::nvmlDeviceGetCount(n)) }
}

/// The handle of the tenant's device `i`, or `None` to ask NVML.
unsafe fn virtual_handle(i: c_uint, h: *mut nvmlDevice_t) -> Option<u32> {
    let u = virtual_devices()?;
    Some(match u.get(i as usize) {
        // SAFETY: h is the caller's out pointer.
        Some(uuid) => unsafe { crate::driver::nvml_handle_by_uuid(uuid, h) },
        None => NVML_ERROR_INVALID_ARGUMENT,
    })
}

/// Hook for `nvmlDeviceGetHandleByIndex_v2`: index = the tenant's CUDA ordinal.
pub unsafe fn nvml_handle_by_index(i: c_uint, h: *mut nvmlDevice_t) -> u32 {
    // SAFETY: the caller's pointer; forwarding.
    unsafe { virtual_handle(i, h).unwrap_or_else(|| real::nvmlDeviceGetHandleByIndex_v2(i, h)) }
}

/// Hook for `nvmlDeviceGetHandleByIndex` (NVML 1): index = the tenant's CUDA ordinal.
pub unsafe fn nvml_handle_by_index_v1(i: c_uint, h: *mut nvmlDevice_t) -> u32 {
    // SAFETY: the caller's pointer; forwarding.
    unsafe { virtual_handle(i, h).unwrap_or_else(|| real::nvmlDeviceGetHandleByIndex(i, h)) }
}

/// A handle NVML returned by some other key (UUID, PCI bus id), kept only when it is one of the
/// tenant's devices: the others are not found, as if absent from the machine.
unsafe fn only_visible(rc: u32, h: *mut nvmlDevice_t) -> u32 {
    if rc != NVML_SUCCESS || h.is_null() || virtual_devices().is_none() {
        return rc;
    }
    // SAFETY: NVML filled the caller's out pointer.
    if ordinal_of(unsafe { *h }).is_some() {
        rc
    } else {
        NVML_ERROR_NOT_FOUND
    }
}

/// Hook for `nvmlDeviceGetHandleByUUID`: the tenant's devices only.
pub unsafe fn nvml_handle_by_uuid(uuid: *const c_char, h: *mut nvmlDevice_t) -> u32 {
    // SAFETY: forwarding; then the out pointer NVML filled.
    unsafe { only_visible(real::nvmlDeviceGetHandleByUUID(uuid, h), h) }
}

/// Hook for `nvmlDeviceGetHandleByPciBusId_v2`: the tenant's devices only.
pub unsafe fn nvml_handle_by_pci_bus_id(bus: *const c_char, h: *mut nvmlDevice_t) -> u32 {
    // SAFETY: forwarding; then the out pointer NVML filled.
    unsafe { only_visible(real::nvmlDeviceGetHandleByPciBusId_v2(bus, h), h) }
}

/// An entry of an NVML process list.
trait ProcessEntry: Copy {
    fn empty() -> Self;
    fn pid(&self) -> u32;
}

impl ProcessEntry for nvmlProcessInfo_v1_t {
    fn empty() -> Self {
        nvmlProcessInfo_v1_t {
            pid: 0,
            usedGpuMemory: 0,
        }
    }
    fn pid(&self) -> u32 {
        self.pid
    }
}

impl ProcessEntry for nvmlProcessInfo_v2_t {
    fn empty() -> Self {
        nvmlProcessInfo_v2_t {
            pid: 0,
            usedGpuMemory: 0,
            gpuInstanceId: 0,
            computeInstanceId: 0,
        }
    }
    fn pid(&self) -> u32 {
        self.pid
    }
}

/// Keeps only the tenant's processes in an NVML process list.
unsafe fn filter_processes<T: ProcessEntry>(
    h: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut T,
    call: impl Fn(*mut c_uint, *mut T) -> u32,
) -> u32 {
    let t = match tenant::tenant() {
        Ok(Some(t)) => t,
        Ok(None) => return call(count, infos),
        Err(e) => return nvml_err(e),
    };
    let _ = h;
    let mut cap: c_uint = 64;
    let mut all = Vec::new();
    for _ in 0..4 {
        all = vec![T::empty(); cap as usize];
        let mut n = cap;
        match call(&mut n, all.as_mut_ptr()) {
            NVML_SUCCESS => {
                all.truncate(n as usize);
                break;
            }
            NVML_ERROR_INSUFFICIENT_SIZE => cap = n.max(cap) + 16,
            other => return other,
        }
    }
    t.region.reap_dead();
    let ours: Vec<(u32, u32)> = t
        .region
        .processes()
        .iter()
        .map(|p| (p.pid, p.host_pid))
        .collect();
    all.retain(|p| {
        ours.iter()
            .any(|(pid, host)| *pid == p.pid() || *host == p.pid())
    });
    // SAFETY: the caller's count / array, per NVML's contract.
    unsafe { gpupool_cuda::nvml_list::fill_list(&all, count, infos) }
}

/// A process-list hook with the C signature declared for `NAME`: the real list, filtered to
/// the tenant's processes.
macro_rules! filtered_process_list {
    ({ $hook:ident } ; $name:ident ( $h:ident : $ht:ty, $n:ident : $nt:ty, $p:ident : $pt:ty )) => {
        #[doc = concat!("Hook for `", stringify!($name), "`.")]
        pub unsafe fn $hook($h: $ht, $n: $nt, $p: $pt) -> u32 {
            // SAFETY: forwarding inside the filter.
            unsafe { filter_processes($h, $n, $p, |n, p| real::$name($h, n, p)) }
        }
    };
}

/// `NAME => HOOK;`: process-list hooks (NVML 1's list is `nvmlProcessInfo_v1_t`).
macro_rules! filtered_process_lists {
    ($( $name:ident => $hook:ident ; )*) => {$(
        gpupool_cuda::signature_of!{ $name adapt filtered_process_list { $hook } }
    )*};
}

filtered_process_lists! {
    nvmlDeviceGetComputeRunningProcesses_v3 => nvml_compute_processes_v3;
    nvmlDeviceGetComputeRunningProcesses_v2 => nvml_compute_processes_v2;
    nvmlDeviceGetComputeRunningProcesses => nvml_compute_processes_v1;
    nvmlDeviceGetGraphicsRunningProcesses_v3 => nvml_graphics_processes_v3;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: u64, used: u64) -> Budget {
        Budget {
            limit,
            used,
            spill: 0,
            spilled: 0,
        }
    }

    #[test]
    fn virtual_view_never_underflows() {
        let g = 1u64 << 30;
        assert_eq!(
            virtual_memory(budget(4 * g, g), 80 * g, 70 * g),
            (4 * g, 3 * g, g)
        );
        assert_eq!(
            virtual_memory(budget(g, 5 * g), 80 * g, 70 * g),
            (g, 0, g),
            "over-used: free is 0, not 17 TB"
        );
        assert_eq!(
            virtual_memory(budget(4 * g, g), 80 * g, g),
            (4 * g, g, g),
            "physically scarce: free follows the card"
        );
        assert_eq!(
            virtual_memory(budget(u64::MAX, 7), 80 * g, 70 * g),
            (80 * g, 70 * g, 10 * g)
        );
        assert_eq!(
            virtual_memory(budget(100 * g, 0), 80 * g, 80 * g),
            (80 * g, 80 * g, 0),
            "limit above the card"
        );
    }

    #[test]
    fn the_spill_allowance_adds_to_the_view() {
        let g = 1u64 << 30;
        let b = |used, spilled| Budget {
            limit: 4 * g,
            used,
            spill: 2 * g,
            spilled,
        };
        assert_eq!(virtual_memory(b(0, 0), 80 * g, 80 * g), (6 * g, 6 * g, 0));
        assert_eq!(
            virtual_memory(b(4 * g, g), 80 * g, 70 * g),
            (6 * g, g, 5 * g),
            "device full, half the spill used"
        );
        assert_eq!(
            virtual_memory(b(g, 0), 80 * g, 0),
            (6 * g, 2 * g, g),
            "a full card leaves the spill free"
        );
        assert_eq!(
            virtual_memory(b(4 * g, 3 * g), 80 * g, 0),
            (6 * g, 0, 6 * g),
            "over-spilled: free is 0"
        );
    }
}
