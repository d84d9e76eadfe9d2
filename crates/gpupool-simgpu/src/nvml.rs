//! NVML on the simulated machine: every device (NVML ignores `CUDA_VISIBLE_DEVICES`), memory
//! from the shared region, and each process's used memory.

use crate::device::pci_bus_id;
use crate::machine::{machine, Device, Machine};
use gpupool_cuda::nvml::{
    nvmlDevice_t, nvmlMemory_t, nvmlMemory_v2_t, nvmlPciInfo_t, nvmlProcessInfo_v1_t,
};
use gpupool_cuda::result::*;
use std::ffi::{c_char, c_uint, CStr};

/// Driver version string NVML reports.
pub const NVML_DRIVER_VERSION: &str = "580.65.06-gpupool-sim";

fn m() -> Result<&'static Machine, u32> {
    machine().map_err(|_| NVML_ERROR_UNINITIALIZED)
}

fn dev(h: nvmlDevice_t) -> Result<(&'static Machine, &'static Device), u32> {
    let m = m()?;
    let d = m
        .all
        .iter()
        .find(|d| std::ptr::eq(*d as *const Device as *const u8, h as *const u8))
        .ok_or(NVML_ERROR_INVALID_ARGUMENT)?;
    if d.faulted(&m.faults) {
        return Err(NVML_ERROR_GPU_IS_LOST);
    }
    Ok((m, d))
}

/// The device behind an NVML handle.
pub(crate) fn device_of(h: nvmlDevice_t) -> Result<&'static Device, u32> {
    dev(h).map(|(_, d)| d)
}

fn out<T>(p: *mut T, v: T) -> u32 {
    if p.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: non-null caller pointer.
    unsafe { p.write(v) };
    NVML_SUCCESS
}

unsafe fn cstr(buf: *mut c_char, len: c_uint, s: &str) -> u32 {
    // SAFETY: the caller's buffer of len bytes.
    unsafe { gpupool_cuda::nvml_list::fill_string(buf, len, s.as_bytes()) }
}

fn ok(r: Result<u32, u32>) -> u32 {
    r.unwrap_or_else(|e| e)
}

/// `nvmlInit_v2` / `nvmlInit` / `nvmlInitWithFlags`.
pub unsafe fn init() -> u32 {
    ok(m().map(|_| NVML_SUCCESS))
}
/// `nvmlInitWithFlags`.
pub unsafe fn init_with_flags(_flags: c_uint) -> u32 {
    // SAFETY: no preconditions.
    unsafe { init() }
}
/// `nvmlShutdown`.
pub unsafe fn shutdown() -> u32 {
    NVML_SUCCESS
}

/// `nvmlErrorString` returns a pointer, not a code: exported separately in `lib.rs`.
pub use gpupool_cuda::nvml_list::error_string;

/// `nvmlSystemGetDriverVersion`.
pub unsafe fn system_get_driver_version(buf: *mut c_char, len: c_uint) -> u32 {
    cstr(buf, len, NVML_DRIVER_VERSION)
}
/// `nvmlSystemGetNVMLVersion`.
pub unsafe fn system_get_nvml_version(buf: *mut c_char, len: c_uint) -> u32 {
    cstr(buf, len, "13.580.65.06")
}
/// `nvmlSystemGetCudaDriverVersion` (and `_v2`).
pub unsafe fn system_get_cuda_driver_version(v: *mut i32) -> u32 {
    out(v, crate::machine::DRIVER_VERSION)
}

/// `nvmlDeviceGetCount_v2`.
pub unsafe fn device_get_count(n: *mut c_uint) -> u32 {
    ok(m().map(|m| out(n, m.all.len() as c_uint)))
}

/// `nvmlDeviceGetHandleByIndex_v2`.
pub unsafe fn device_get_handle_by_index(i: c_uint, h: *mut nvmlDevice_t) -> u32 {
    ok(m()
        .and_then(|m| m.all.get(i as usize).ok_or(NVML_ERROR_INVALID_ARGUMENT))
        .map(|d| out(h, d as *const Device as nvmlDevice_t)))
}

/// `nvmlDeviceGetHandleByUUID`.
pub unsafe fn device_get_handle_by_uuid(uuid: *const c_char, h: *mut nvmlDevice_t) -> u32 {
    if uuid.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: NUL-terminated caller string.
    let want = unsafe { CStr::from_ptr(uuid) }
        .to_string_lossy()
        .to_string();
    ok(m()
        .and_then(|m| {
            m.all
                .iter()
                .find(|d| gpupool_cuda::uuid::format_gpu_uuid(&d.uuid) == want)
                .ok_or(NVML_ERROR_NOT_FOUND)
        })
        .map(|d| out(h, d as *const Device as nvmlDevice_t)))
}

/// `nvmlDeviceGetHandleByPciBusId_v2`.
pub unsafe fn device_get_handle_by_pci_bus_id(id: *const c_char, h: *mut nvmlDevice_t) -> u32 {
    if id.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: NUL-terminated caller string.
    let want = unsafe { CStr::from_ptr(id) }.to_string_lossy();
    ok(m()
        .and_then(|m| {
            m.all
                .iter()
                .find(|d| gpupool_cuda::nvml_list::same_pci_bus_id(&pci_bus_id(d), &want))
                .ok_or(NVML_ERROR_NOT_FOUND)
        })
        .map(|d| out(h, d as *const Device as nvmlDevice_t)))
}

/// `nvmlDeviceGetName`.
pub unsafe fn device_get_name(h: nvmlDevice_t, buf: *mut c_char, len: c_uint) -> u32 {
    ok(dev(h).map(|(_, d)| cstr(buf, len, &d.spec.name)))
}

/// `nvmlDeviceGetUUID`.
pub unsafe fn device_get_uuid(h: nvmlDevice_t, buf: *mut c_char, len: c_uint) -> u32 {
    ok(dev(h).map(|(_, d)| cstr(buf, len, &gpupool_cuda::uuid::format_gpu_uuid(&d.uuid))))
}

/// `nvmlDeviceGetIndex` / `nvmlDeviceGetMinorNumber`.
pub unsafe fn device_get_index(h: nvmlDevice_t, i: *mut c_uint) -> u32 {
    ok(dev(h).map(|(_, d)| out(i, d.physical as c_uint)))
}

/// `nvmlDeviceGetPciInfo_v3`.
pub unsafe fn device_get_pci_info(h: nvmlDevice_t, p: *mut nvmlPciInfo_t) -> u32 {
    ok(dev(h).map(|(_, d)| {
        // SAFETY: all-zero is a valid nvmlPciInfo_t.
        let mut info: nvmlPciInfo_t = unsafe { std::mem::zeroed() };
        let id = pci_bus_id(d);
        for (dst, src) in info.busId.iter_mut().zip(id.bytes()) {
            *dst = src as c_char;
        }
        for (dst, src) in info.busIdLegacy.iter_mut().zip(id[4..].bytes()) {
            *dst = src as c_char;
        }
        info.bus = crate::device::pci_bus(d);
        info.pciDeviceId = 0x2330_10de;
        out(p, info)
    }))
}

/// Total, free and used memory of a device, all processes counted.
fn memory(m: &Machine, d: &Device) -> (u64, u64, u64) {
    let total = d.spec.memory;
    let used = m.used(d).min(total);
    (total, total - used, used)
}

/// `nvmlDeviceGetMemoryInfo`.
pub unsafe fn device_get_memory_info(h: nvmlDevice_t, mem: *mut nvmlMemory_t) -> u32 {
    ok(dev(h).map(|(m, d)| {
        let (total, free, used) = memory(m, d);
        out(mem, nvmlMemory_t { total, free, used })
    }))
}

/// `nvmlMemory_v2` version tag.
pub const NVML_MEMORY_V2: u32 = std::mem::size_of::<nvmlMemory_v2_t>() as u32 | (2 << 24);

/// `nvmlDeviceGetMemoryInfo_v2`.
pub unsafe fn device_get_memory_info_v2(h: nvmlDevice_t, mem: *mut nvmlMemory_v2_t) -> u32 {
    if mem.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: non-null caller pointer.
    if unsafe { (*mem).version } != NVML_MEMORY_V2 {
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    }
    ok(dev(h).map(|(m, d)| {
        let (total, free, used) = memory(m, d);
        out(
            mem,
            nvmlMemory_v2_t {
                version: NVML_MEMORY_V2,
                total,
                reserved: 0,
                free,
                used,
            },
        )
    }))
}

/// One entry of a process list (v2/v3 layout).
pub use gpupool_cuda::nvml::nvmlProcessInfo_v2_t as ProcessInfo;

/// (host pid, bytes) of processes using device `d`.
fn processes(m: &Machine, d: &Device) -> Vec<(u32, u64)> {
    m.region.reap_dead();
    m.region
        .processes()
        .into_iter()
        .filter_map(|p| {
            p.used
                .get(d.region_index)
                .copied()
                .filter(|u| *u > 0)
                .map(|u| (p.host_pid, u))
        })
        .collect()
}

/// Returns a process list in the caller's entry layout.
///
/// # Safety
/// `count` must be null or valid; `infos` must be null or hold `*count` entries.
pub unsafe fn fill_processes<T: Copy>(
    list: &[(u32, u64)],
    count: *mut c_uint,
    infos: *mut T,
    make: impl Fn(u32, u64) -> T,
) -> u32 {
    let items: Vec<T> = list.iter().map(|&(pid, used)| make(pid, used)).collect();
    // SAFETY: the caller's count / array.
    unsafe { gpupool_cuda::nvml_list::fill_list(&items, count, infos) }
}

/// `nvmlDeviceGetComputeRunningProcesses_v3` / `_v2`.
pub unsafe fn device_get_compute_running_processes(
    h: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut ProcessInfo,
) -> u32 {
    ok(dev(h).map(|(m, d)| {
        fill_processes(&processes(m, d), count, infos, |pid, used| ProcessInfo {
            pid,
            usedGpuMemory: used,
            gpuInstanceId: u32::MAX,
            computeInstanceId: u32::MAX,
        })
    }))
}

/// `nvmlDeviceGetComputeRunningProcesses` (v1 layout: pid, used).
pub unsafe fn device_get_compute_running_processes_v1(
    h: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_v1_t,
) -> u32 {
    ok(dev(h).map(|(m, d)| {
        fill_processes(&processes(m, d), count, infos, |pid, used| {
            nvmlProcessInfo_v1_t {
                pid,
                usedGpuMemory: used,
            }
        })
    }))
}

/// `nvmlDeviceGetGraphicsRunningProcesses_v3`: none.
pub unsafe fn device_get_graphics_running_processes(
    h: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut ProcessInfo,
) -> u32 {
    ok(dev(h).map(|_| {
        fill_processes(&[], count, infos, |pid, used| ProcessInfo {
            pid,
            usedGpuMemory: used,
            gpuInstanceId: 0,
            computeInstanceId: 0,
        })
    }))
}

/// `nvmlDeviceGetCudaComputeCapability`.
pub unsafe fn device_get_cuda_compute_capability(
    h: nvmlDevice_t,
    major: *mut i32,
    minor: *mut i32,
) -> u32 {
    ok(dev(h).map(|(_, d)| {
        out(major, d.spec.compute_capability.0 as i32);
        out(minor, d.spec.compute_capability.1 as i32)
    }))
}

/// `nvmlDeviceGetTemperature`.
pub unsafe fn device_get_temperature(h: nvmlDevice_t, _sensor: c_uint, t: *mut c_uint) -> u32 {
    ok(dev(h).map(|_| out(t, 35)))
}

/// `nvmlDeviceGetMigMode`: 1 (`NVML_DEVICE_MIG_ENABLE`) for cards simulated with `mig=on`, the
/// same mode current and pending.
pub unsafe fn device_get_mig_mode(
    h: nvmlDevice_t,
    current: *mut c_uint,
    pending: *mut c_uint,
) -> u32 {
    ok(dev(h).map(|(_, d)| {
        out(current, d.spec.mig as c_uint);
        out(pending, d.spec.mig as c_uint)
    }))
}
