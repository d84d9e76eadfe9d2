//! NVML for programs on the client: `libnvidia-ml.so.1` is this same library. Device handles
//! are addresses in a local table, one per device index of the server; every answer comes from
//! the server's NVML, which shows the tenant's view (its limit as the total, its own usage and
//! processes; process ids are the server's).

use crate::conn::state;
use gpupool_cuda::nvml::{
    nvmlDevice_t, nvmlMemory_t, nvmlMemory_v2_t, nvmlPciInfo_t, nvmlProcessInfo_v1_t,
    nvmlProcessInfo_v2_t, nvmlUtilization_t,
};
use gpupool_cuda::nvml_list::{fill_list, fill_string};
use gpupool_cuda::result::*;
use gpupool_remote::calls::custom::{self, NvmlString, NvmlValues};
use gpupool_remote::wire::{DecodeError, Reader, Writer};
use std::ffi::{c_char, c_uint, CStr};

/// Most devices a handle can name.
const MAX_DEVICES: usize = 64;

/// The addresses handed out as device handles.
static HANDLES: [u8; MAX_DEVICES] = [0; MAX_DEVICES];

/// `nvmlMemory_v2`: the version NVML expects in `nvmlMemory_v2_t`.
const NVML_MEMORY_V2: u32 = std::mem::size_of::<nvmlMemory_v2_t>() as u32 | (2 << 24);

fn handle(index: u32) -> nvmlDevice_t {
    HANDLES[index as usize..].as_ptr() as nvmlDevice_t
}

fn index(h: nvmlDevice_t) -> Result<u32, u32> {
    let offset = (h as usize).wrapping_sub(HANDLES.as_ptr() as usize);
    if offset < MAX_DEVICES {
        Ok(offset as u32)
    } else {
        Err(NVML_ERROR_INVALID_ARGUMENT)
    }
}

/// One NVML call to the server: its arguments, then its results read on success.
fn request(
    call: u16,
    args: impl FnOnce(&mut Writer),
    outs: impl FnOnce(&mut Reader<'_>) -> Result<(), DecodeError>,
) -> u32 {
    let mut s = state();
    let Ok(start) = s.begin(call, true, 0) else {
        return NVML_ERROR_UNINITIALIZED;
    };
    args(&mut s.batch);
    match s.finish_sync(start, outs) {
        crate::conn::CUDA_ERROR_DEVICE_UNAVAILABLE => NVML_ERROR_GPU_IS_LOST,
        rc => rc,
    }
}

fn device_request(
    call: u16,
    h: nvmlDevice_t,
    outs: impl FnOnce(&mut Reader<'_>) -> Result<(), DecodeError>,
) -> u32 {
    match index(h) {
        Ok(i) => request(call, |w| w.put(&i), outs),
        Err(e) => e,
    }
}

fn string(what: NvmlString, index: u32, buf: *mut c_char, len: c_uint) -> u32 {
    let mut text = Vec::new();
    let rc = request(
        custom::NVML_STRING,
        |w| {
            w.put(&(what as u32));
            w.put(&index);
        },
        |r| {
            text = r.get_bytes("string")?.to_vec();
            Ok(())
        },
    );
    if rc != NVML_SUCCESS {
        return rc;
    }
    // SAFETY: the caller's buffer of len bytes.
    unsafe { fill_string(buf, len, &text) }
}

fn values(what: NvmlValues, index: u32) -> Result<(i32, i32), u32> {
    let mut v = (0, 0);
    let rc = request(
        custom::NVML_VALUES,
        |w| {
            w.put(&(what as u32));
            w.put(&index);
        },
        |r| {
            v = (r.get("first")?, r.get("second")?);
            Ok(())
        },
    );
    if rc == NVML_SUCCESS {
        Ok(v)
    } else {
        Err(rc)
    }
}

fn out<T>(p: *mut T, v: T) -> u32 {
    if p.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: non-null caller pointer.
    unsafe { p.write(v) };
    NVML_SUCCESS
}

/// `nvmlInit_v2`: connects to the GPU server (as `cuInit` does).
pub unsafe fn init() -> u32 {
    match state().init() {
        gpupool_cuda::result::CUDA_SUCCESS => NVML_SUCCESS,
        crate::conn::CUDA_ERROR_NOT_PERMITTED => NVML_ERROR_NO_PERMISSION,
        _ => NVML_ERROR_DRIVER_NOT_LOADED,
    }
}

/// `nvmlInitWithFlags`.
pub unsafe fn init_with_flags(_flags: c_uint) -> u32 {
    // SAFETY: no preconditions.
    unsafe { init() }
}

/// `nvmlShutdown`: the connection stays for CUDA.
pub unsafe fn shutdown() -> u32 {
    NVML_SUCCESS
}

/// `nvmlDeviceGetCount_v2`.
pub unsafe fn device_get_count(n: *mut c_uint) -> u32 {
    if n.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    let mut count = 0u32;
    let rc = request(
        custom::NVML_COUNT,
        |_| {},
        |r| {
            count = r.get("count")?;
            Ok(())
        },
    );
    if rc == NVML_SUCCESS {
        out(n, count.min(MAX_DEVICES as u32))
    } else {
        rc
    }
}

/// `nvmlDeviceGetHandleByIndex_v2`.
pub unsafe fn device_get_handle_by_index(i: c_uint, h: *mut nvmlDevice_t) -> u32 {
    let mut n = 0;
    // SAFETY: a valid out pointer.
    let rc = unsafe { device_get_count(&mut n) };
    if rc != NVML_SUCCESS {
        return rc;
    }
    if i >= n {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    out(h, handle(i))
}

/// `nvmlDeviceGetHandleByUUID`.
pub unsafe fn device_get_handle_by_uuid(uuid: *const c_char, h: *mut nvmlDevice_t) -> u32 {
    if uuid.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: a NUL-terminated string from the caller.
    let wanted = unsafe { CStr::from_ptr(uuid) };
    let mut n = 0;
    // SAFETY: a valid out pointer.
    let rc = unsafe { device_get_count(&mut n) };
    if rc != NVML_SUCCESS {
        return rc;
    }
    for i in 0..n {
        let mut buf = [0 as c_char; 96];
        if string(NvmlString::Uuid, i, buf.as_mut_ptr(), buf.len() as c_uint) == NVML_SUCCESS
            // SAFETY: filled with a NUL.
            && unsafe { CStr::from_ptr(buf.as_ptr()) } == wanted
        {
            return out(h, handle(i));
        }
    }
    NVML_ERROR_NOT_FOUND
}

/// `nvmlDeviceGetHandleByPciBusId_v2`: the device whose PCI information names that bus id.
pub unsafe fn device_get_handle_by_pci_bus_id(id: *const c_char, h: *mut nvmlDevice_t) -> u32 {
    if id.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: a NUL-terminated string from the caller.
    let wanted = unsafe { CStr::from_ptr(id) }.to_string_lossy();
    let mut n = 0;
    // SAFETY: a valid out pointer.
    let rc = unsafe { device_get_count(&mut n) };
    if rc != NVML_SUCCESS {
        return rc;
    }
    for i in 0..n {
        let mut info = std::mem::MaybeUninit::<nvmlPciInfo_t>::zeroed();
        // SAFETY: a structure of the right size.
        if unsafe { device_get_pci_info(handle(i), info.as_mut_ptr()) } != NVML_SUCCESS {
            continue;
        }
        // SAFETY: zeroed, then filled by the server's driver.
        let info = unsafe { info.assume_init() };
        let bus = info.busId.map(|c| c as u8);
        let end = bus.iter().position(|&b| b == 0).unwrap_or(bus.len());
        let bus = String::from_utf8_lossy(&bus[..end]);
        if gpupool_cuda::nvml_list::same_pci_bus_id(&bus, &wanted) {
            return out(h, handle(i));
        }
    }
    NVML_ERROR_NOT_FOUND
}

/// `nvmlDeviceGetName`.
pub unsafe fn device_get_name(h: nvmlDevice_t, buf: *mut c_char, len: c_uint) -> u32 {
    index(h).map_or_else(|e| e, |i| string(NvmlString::Name, i, buf, len))
}

/// `nvmlDeviceGetUUID`.
pub unsafe fn device_get_uuid(h: nvmlDevice_t, buf: *mut c_char, len: c_uint) -> u32 {
    index(h).map_or_else(|e| e, |i| string(NvmlString::Uuid, i, buf, len))
}

/// `nvmlSystemGetDriverVersion`: the server's.
pub unsafe fn system_get_driver_version(buf: *mut c_char, len: c_uint) -> u32 {
    string(NvmlString::DriverVersion, 0, buf, len)
}

/// `nvmlSystemGetNVMLVersion`: the server's.
pub unsafe fn system_get_nvml_version(buf: *mut c_char, len: c_uint) -> u32 {
    string(NvmlString::NvmlVersion, 0, buf, len)
}

/// `nvmlSystemGetCudaDriverVersion` (and `_v2`): the server's.
pub unsafe fn system_get_cuda_driver_version(v: *mut i32) -> u32 {
    values(NvmlValues::CudaDriverVersion, 0).map_or_else(|e| e, |(a, _)| out(v, a))
}

/// `nvmlDeviceGetIndex` (and `nvmlDeviceGetMinorNumber`).
pub unsafe fn device_get_index(h: nvmlDevice_t, i: *mut c_uint) -> u32 {
    index(h).map_or_else(|e| e, |idx| out(i, idx))
}

/// `nvmlDeviceGetPciInfo_v3`.
pub unsafe fn device_get_pci_info(h: nvmlDevice_t, p: *mut nvmlPciInfo_t) -> u32 {
    if p.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    device_request(custom::NVML_PCI, h, |r| {
        let bytes = r.get_bytes("PCI information")?;
        if bytes.len() != std::mem::size_of::<nvmlPciInfo_t>() {
            return Err(DecodeError {
                what: "PCI information",
                at: 0,
            });
        }
        // SAFETY: the caller's structure, of exactly this many bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.cast::<u8>(), bytes.len()) };
        Ok(())
    })
}

/// The seven memory figures: v1 total, free, used; v2 total, reserved, free, used.
fn memory(h: nvmlDevice_t) -> Result<[u64; 7], u32> {
    let mut m = [0u64; 7];
    let rc = device_request(custom::NVML_MEMORY, h, |r| {
        for v in &mut m {
            *v = r.get("memory")?;
        }
        Ok(())
    });
    if rc == NVML_SUCCESS {
        Ok(m)
    } else {
        Err(rc)
    }
}

/// `nvmlDeviceGetMemoryInfo`.
pub unsafe fn device_get_memory_info(h: nvmlDevice_t, m: *mut nvmlMemory_t) -> u32 {
    if m.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    memory(h).map_or_else(
        |e| e,
        |v| {
            out(
                m,
                nvmlMemory_t {
                    total: v[0],
                    free: v[1],
                    used: v[2],
                },
            )
        },
    )
}

/// `nvmlDeviceGetMemoryInfo_v2`.
pub unsafe fn device_get_memory_info_v2(h: nvmlDevice_t, m: *mut nvmlMemory_v2_t) -> u32 {
    if m.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: non-null caller pointer.
    if unsafe { (*m).version } != NVML_MEMORY_V2 {
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    }
    memory(h).map_or_else(
        |e| e,
        |v| {
            out(
                m,
                nvmlMemory_v2_t {
                    version: NVML_MEMORY_V2,
                    total: v[3],
                    reserved: v[4],
                    free: v[5],
                    used: v[6],
                },
            )
        },
    )
}

/// (pid on the server, bytes) of the compute processes on a device.
fn processes(h: nvmlDevice_t) -> Result<Vec<(u32, u64)>, u32> {
    let mut list = Vec::new();
    let rc = device_request(custom::NVML_PROCESSES, h, |r| {
        let n: u32 = r.get("process count")?;
        for _ in 0..n.min(custom::NVML_MAX_PROCESSES) {
            list.push((r.get("pid")?, r.get("used memory")?));
        }
        Ok(())
    });
    if rc == NVML_SUCCESS {
        Ok(list)
    } else {
        Err(rc)
    }
}

/// `nvmlDeviceGetComputeRunningProcesses_v3` (and `_v2`).
pub unsafe fn device_get_compute_running_processes(
    h: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_v2_t,
) -> u32 {
    processes(h).map_or_else(
        |e| e,
        |list| {
            let items: Vec<nvmlProcessInfo_v2_t> = list
                .iter()
                .map(|&(pid, used)| nvmlProcessInfo_v2_t {
                    pid,
                    usedGpuMemory: used,
                    gpuInstanceId: u32::MAX,
                    computeInstanceId: u32::MAX,
                })
                .collect();
            // SAFETY: the caller's count and array.
            unsafe { fill_list(&items, count, infos) }
        },
    )
}

/// `nvmlDeviceGetComputeRunningProcesses` (v1 entries: pid, used).
pub unsafe fn device_get_compute_running_processes_v1(
    h: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_v1_t,
) -> u32 {
    processes(h).map_or_else(
        |e| e,
        |list| {
            let items: Vec<nvmlProcessInfo_v1_t> = list
                .iter()
                .map(|&(pid, used)| nvmlProcessInfo_v1_t {
                    pid,
                    usedGpuMemory: used,
                })
                .collect();
            // SAFETY: the caller's count and array.
            unsafe { fill_list(&items, count, infos) }
        },
    )
}

/// `nvmlDeviceGetUtilizationRates`.
pub unsafe fn device_get_utilization_rates(h: nvmlDevice_t, u: *mut nvmlUtilization_t) -> u32 {
    if u.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    match index(h).and_then(|i| values(NvmlValues::Utilization, i)) {
        Ok((gpu, memory)) => out(
            u,
            nvmlUtilization_t {
                gpu: gpu as c_uint,
                memory: memory as c_uint,
            },
        ),
        Err(e) => e,
    }
}

/// `nvmlDeviceGetCudaComputeCapability`.
pub unsafe fn device_get_cuda_compute_capability(
    h: nvmlDevice_t,
    major: *mut i32,
    minor: *mut i32,
) -> u32 {
    if major.is_null() || minor.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    match index(h).and_then(|i| values(NvmlValues::ComputeCapability, i)) {
        Ok((a, b)) => {
            out(major, a);
            out(minor, b)
        }
        Err(e) => e,
    }
}

/// `nvmlDeviceGetTemperature` (the GPU sensor only).
pub unsafe fn device_get_temperature(h: nvmlDevice_t, sensor: c_uint, t: *mut c_uint) -> u32 {
    if sensor != 0 {
        return NVML_ERROR_NOT_SUPPORTED;
    }
    match index(h).and_then(|i| values(NvmlValues::Temperature, i)) {
        Ok((degrees, _)) => out(t, degrees as c_uint),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_name_their_index_and_nothing_else() {
        for i in [0, 1, MAX_DEVICES as u32 - 1] {
            assert_eq!(index(handle(i)), Ok(i));
        }
        let past = (HANDLES.as_ptr() as usize + MAX_DEVICES) as nvmlDevice_t;
        assert_eq!(index(past), Err(NVML_ERROR_INVALID_ARGUMENT));
        assert_eq!(
            index(std::ptr::null_mut()),
            Err(NVML_ERROR_INVALID_ARGUMENT)
        );
    }

    #[test]
    fn without_a_connection_nvml_is_uninitialized() {
        let mut n = 0;
        // SAFETY: a valid out pointer.
        assert_eq!(
            unsafe { device_get_count(&mut n) },
            NVML_ERROR_UNINITIALIZED
        );
    }
}
