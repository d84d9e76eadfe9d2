//! What is answered without a round trip: initialisation, the driver version and device list
//! from the server's welcome, the private export tables, and symbol lookup.

use crate::conn::state;
use gpupool_cuda::cu::*;
use gpupool_cuda::export_tables::{DeviceFacts, Host};
use gpupool_cuda::proc_address::find_traced;
use gpupool_cuda::result::*;
use std::ffi::c_void;

/// `cuInit`: connects to the server named by `GPUPOOL_REMOTE` (flags must be 0).
pub unsafe fn cu_init(flags: u32) -> u32 {
    if flags != 0 {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let rc = state().init();
    if rc == CUDA_SUCCESS {
        static AT_EXIT: std::sync::Once = std::sync::Once::new();
        AT_EXIT.call_once(|| {
            extern "C" fn flush() {
                crate::conn::flush_at_exit();
            }
            // SAFETY: registering a plain function.
            unsafe { libc::atexit(flush) };
        });
    }
    rc
}

/// `cuDriverGetVersion`: the server's (before `cuInit`, the version this client speaks).
pub unsafe fn driver_get_version(out: *mut i32) -> u32 {
    let s = state();
    let v = if s.ready().is_ok() {
        s.driver_version
    } else {
        13000
    };
    crate::write(out, v)
}

/// `cuDeviceGetCount`.
pub unsafe fn device_get_count(out: *mut i32) -> u32 {
    let s = state();
    if let Err(e) = s.ready() {
        return e;
    }
    crate::write(out, s.devices.len() as i32)
}

/// `cuDeviceGet`.
pub unsafe fn device_get(out: *mut CUdevice, ordinal: i32) -> u32 {
    let s = state();
    if let Err(e) = s.ready() {
        return e;
    }
    if ordinal < 0 || ordinal as usize >= s.devices.len() {
        return CUDA_ERROR_INVALID_DEVICE;
    }
    crate::write(out, ordinal)
}

fn tracing() -> bool {
    static T: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *T.get_or_init(|| std::env::var_os("GPUPOOL_REMOTE_TRACE").is_some())
}

static EXPORT_TABLE_HOST: Host = Host {
    label: "gpupool remote GPU",
    tracing,
    current_context: || crate::context::current() as usize as CUcontext,
    primary_retain: |dev| {
        let mut c: CUcontext = std::ptr::null_mut();
        // SAFETY: a valid out pointer.
        match unsafe { crate::table_client::cuDevicePrimaryCtxRetain(&mut c, dev) } {
            CUDA_SUCCESS => Ok(c),
            e => Err(e),
        }
    },
    driver_version: || state().driver_version,
    devices: || {
        let s = state();
        s.ready().ok().map(|_| s.devices.clone())
    },
    load_module: crate::module::module_load_registered,
    // SAFETY: the caller's pointers, passed on.
    context_id: |ctx, out| unsafe { crate::local_answers::ctx_get_id(ctx, out) },
};

/// `cuGetExportTable`: answered here.
pub unsafe fn get_export_table(out: *mut *const c_void, id: *const CUuuid) -> u32 {
    // SAFETY: the caller's pointers, passed on.
    unsafe { gpupool_cuda::export_tables::get_export_table(&EXPORT_TABLE_HOST, out, id) }
}

/// The function this library exports for `name` at `version` / `flags`; a per-thread-stream
/// variant falls back to its plain function (the server runs one stream order per client).
pub fn lookup(name: &str, version: i32, flags: u64) -> Option<*mut c_void> {
    let find = |s: &str| crate::exported_symbol(s).or_else(|| crate::table_client::table_symbol(s));
    let label = "gpupool remote GPU";
    find_traced(label, tracing(), name, version, flags, |sym| {
        find(sym).or_else(|| {
            let base = sym
                .strip_suffix("_ptsz")
                .or_else(|| sym.strip_suffix("_ptds"))?;
            find(base)
        })
    })
}

gpupool_cuda::proc_address_entry_points!(lookup);

/// `cuModuleGetLoadingMode`: eager.
pub unsafe fn module_get_loading_mode(out: *mut u32) -> u32 {
    crate::write(out, 1)
}

/// Facts of the server's devices (for tests of the welcome).
pub fn devices() -> Vec<DeviceFacts> {
    state().devices.clone()
}
