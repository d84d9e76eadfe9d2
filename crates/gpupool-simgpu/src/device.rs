//! Device queries: count, handles, names, UUIDs, PCI ids, memory, attributes.

use crate::ctx::{device, initialised};
use crate::machine::{Device, DRIVER_VERSION};
use gpupool_cuda::cu::{CUcontext, CUdevice, CUuuid};
use gpupool_cuda::result::*;
use std::ffi::c_char;

fn write<T>(out: *mut T, v: T) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: non-null out pointer supplied by the caller.
    unsafe { out.write(v) };
    CUDA_SUCCESS
}

/// Copies `s` NUL-terminated into a caller buffer of `len` bytes (truncating).
///
/// # Safety
/// `buf` must be null or hold `len` writable bytes.
pub unsafe fn write_cstr(buf: *mut c_char, len: i32, s: &str) -> u32 {
    if buf.is_null() || len <= 0 {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let n = s.len().min(len as usize - 1);
    // SAFETY: buf has len bytes; we write n + 1 <= len.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast(), n);
        *buf.add(n) = 0;
    }
    CUDA_SUCCESS
}

/// PCI bus number of a simulated device.
pub fn pci_bus(d: &Device) -> u32 {
    0x10 + d.physical as u32
}

/// `0000:BB:00.0` PCI id.
pub fn pci_bus_id(d: &Device) -> String {
    format!("00000000:{:02X}:00.0", pci_bus(d))
}

/// `cuDriverGetVersion` (works before `cuInit`).
pub unsafe fn driver_get_version(out: *mut i32) -> u32 {
    write(out, DRIVER_VERSION)
}

/// `cuDeviceGetCount`.
pub unsafe fn device_get_count(out: *mut i32) -> u32 {
    match initialised() {
        Ok(m) => write(out, m.visible.len() as i32),
        Err(e) => e,
    }
}

/// `cuDeviceGet`.
pub unsafe fn device_get(out: *mut CUdevice, ordinal: i32) -> u32 {
    match device(ordinal) {
        Ok(_) => write(out, ordinal),
        Err(e) => e,
    }
}

/// `cuDeviceGetName`.
pub unsafe fn device_get_name(name: *mut c_char, len: i32, dev: CUdevice) -> u32 {
    match device(dev) {
        Ok((_, d)) => write_cstr(name, len, &d.spec.name),
        Err(e) => e,
    }
}

/// `cuDeviceGetUuid` / `_v2`.
pub unsafe fn device_get_uuid(out: *mut CUuuid, dev: CUdevice) -> u32 {
    match device(dev) {
        Ok((_, d)) => write(
            out,
            CUuuid {
                bytes: d.uuid.map(|b| b as c_char),
            },
        ),
        Err(e) => e,
    }
}

/// `cuDeviceGetLuid`: not on Linux.
pub unsafe fn device_get_luid(_luid: *mut c_char, _mask: *mut u32, dev: CUdevice) -> u32 {
    match device(dev) {
        Ok(_) => CUDA_ERROR_NOT_SUPPORTED,
        Err(e) => e,
    }
}

/// `cuDeviceTotalMem_v2`.
pub unsafe fn device_total_mem(out: *mut usize, dev: CUdevice) -> u32 {
    match device(dev) {
        Ok((_, d)) => write(out, d.spec.memory as usize),
        Err(e) => e,
    }
}

/// `cuDeviceComputeCapability`.
pub unsafe fn device_compute_capability(major: *mut i32, minor: *mut i32, dev: CUdevice) -> u32 {
    match device(dev) {
        Ok((_, d)) => {
            write(major, d.spec.compute_capability.0 as i32);
            write(minor, d.spec.compute_capability.1 as i32)
        }
        Err(e) => e,
    }
}

/// `cuDeviceGetPCIBusId`.
pub unsafe fn device_get_pci_bus_id(buf: *mut c_char, len: i32, dev: CUdevice) -> u32 {
    match device(dev) {
        Ok((_, d)) => write_cstr(buf, len, &pci_bus_id(d)[4..]),
        Err(e) => e,
    }
}

/// `cuDeviceGetByPCIBusId`.
pub unsafe fn device_get_by_pci_bus_id(out: *mut CUdevice, id: *const c_char) -> u32 {
    let m = match initialised() {
        Ok(m) => m,
        Err(e) => return e,
    };
    if id.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: caller passes a NUL-terminated string.
    let wanted = unsafe { std::ffi::CStr::from_ptr(id) }
        .to_string_lossy()
        .to_ascii_uppercase();
    for (ordinal, &phys) in m.visible.iter().enumerate() {
        let full = pci_bus_id(&m.all[phys]);
        if full.ends_with(wanted.trim_start_matches('0')) || full[4..] == wanted {
            return write(out, ordinal as i32);
        }
    }
    CUDA_ERROR_INVALID_DEVICE
}

/// `cuDeviceGetAttribute`: values of the spec's card; plausible data-centre values elsewhere;
/// `CUDA_ERROR_INVALID_VALUE` for a number no attribute has.
pub unsafe fn device_get_attribute(out: *mut i32, attrib: i32, dev: CUdevice) -> u32 {
    let d = match device(dev) {
        Ok((_, d)) => d,
        Err(e) => return e,
    };
    let (major, minor) = d.spec.compute_capability;
    let v: i32 = match attrib {
        1 => 1024,
        2 | 3 => 1024,
        4 => 64,
        5 => i32::MAX,
        6 | 7 => 65535,
        8 => 49152,
        9 => 65536,
        10 => 32,
        11 => i32::MAX,
        12 => 65536,
        13 => 1_755_000,
        14 => 512,
        15 => 1,
        16 => d.spec.sms as i32,
        17 | 18 => 0,
        19 => 1,
        20 => 0,
        21..=29 => 16384,
        30 => 512,
        31 | 32 => 1,
        33 => pci_bus(d) as i32,
        34 | 35 => 0,
        36 => 2_619_000,
        37 => 5120,
        38 => 50 << 20,
        39 => 2048,
        40 => 3,
        41 => 1,
        50 => 0,
        51 => 32,
        75 => major as i32,
        76 => minor as i32,
        78..=80 => 1,
        81 => 233_472,
        82 => 65536,
        83 => 1,
        84 | 85 => 0,
        86 => 0,
        87 => 2,
        88 => 0,
        // 92, 93: stream memory operations (wait / write value) are not simulated.
        89 | 90 | 91 | 95 | 96 => 1,
        92 | 93 => 0,
        97 => crate::module::MAX_SHARED_PER_BLOCK,
        98 | 99 => 1,
        100 | 101 => 0,
        102 | 103 => 1,
        104 | 105 => 0,
        106 => 32,
        107 => 0,
        108 => 0,
        109 => 0,
        110 => 1,
        111 => 1024,
        112 | 113 => 1,
        114 | 115 => 1,
        116 => 0,
        117 | 118 => 0,
        119 => 1,
        // Attributes CUDA 13.0 knows (below `CU_DEVICE_ATTRIBUTE_MAX`, 148) that a data-centre
        // card lacks.
        120..=147 | 42..=49 | 52..=74 | 77 | 94 => 0,
        // Any other number, as a driver answers one it does not know.
        _ => return CUDA_ERROR_INVALID_VALUE,
    };
    write(out, v)
}

/// `cuDeviceGetP2PAttribute`: no peer access between simulated cards.
pub unsafe fn device_get_p2p_attribute(
    out: *mut i32,
    _attrib: i32,
    src: CUdevice,
    dst: CUdevice,
) -> u32 {
    if let Err(e) = device(src).and(device(dst)) {
        return e;
    }
    write(out, 0)
}

/// `cuDeviceCanAccessPeer`.
pub unsafe fn device_can_access_peer(out: *mut i32, dev: CUdevice, peer: CUdevice) -> u32 {
    if let Err(e) = device(dev).and(device(peer)) {
        return e;
    }
    write(out, 0)
}

/// `cuDeviceGetTexture1DLinearMaxWidth`.
pub unsafe fn device_get_texture_1d_linear_max_width(
    out: *mut usize,
    _fmt: u32,
    _chans: u32,
    dev: CUdevice,
) -> u32 {
    match device(dev) {
        Ok(_) => write(out, 1 << 28),
        Err(e) => e,
    }
}

/// `cuFlushGPUDirectRDMAWrites`.
pub unsafe fn flush_gpu_direct_rdma_writes(_target: u32, _scope: u32) -> u32 {
    CUDA_SUCCESS
}

/// How the shared export tables reach the simulator's contexts and devices.
static EXPORT_TABLE_HOST: gpupool_cuda::export_tables::Host = gpupool_cuda::export_tables::Host {
    label: "gpupool simulated GPU",
    tracing: crate::machine::tracing,
    current_context: || {
        crate::ctx::current().map_or(std::ptr::null_mut(), |c| c as *const _ as CUcontext)
    },
    primary_retain: crate::ctx::primary_retain,
    driver_version: || DRIVER_VERSION,
    devices: || {
        let m = initialised().ok()?;
        Some(
            m.visible
                .iter()
                .map(|&phys| {
                    let d = &m.all[phys];
                    gpupool_cuda::export_tables::DeviceFacts {
                        uuid: d.uuid,
                        pci: [0, pci_bus(d) as i32, 0],
                    }
                })
                .collect(),
        )
    },
    load_module: crate::module::module_load_data,
    context_id: crate::ctx::ctx_get_id,
};

/// `cuGetExportTable`: the private tables NVIDIA's runtime needs.
pub unsafe fn get_export_table(out: *mut *const std::ffi::c_void, id: *const CUuuid) -> u32 {
    // SAFETY: the caller's pointers, passed on.
    unsafe { gpupool_cuda::export_tables::get_export_table(&EXPORT_TABLE_HOST, out, id) }
}
