//! NVML events on the simulated machine: XID critical errors, injected by appending XID
//! numbers, one per line, to `<state>/xid/<GPU-uuid>` (see `docs/simulator.md`). An event set
//! reports each line once, in order, for the devices registered with it; lines written before a
//! device was registered are not reported.

use crate::machine::{machine, Device};
use gpupool_cuda::nvml::{
    nvmlDevice_t, nvmlEventData_t, nvmlEventSet_t, nvmlEventTypeXidCriticalError,
};
use gpupool_cuda::result::*;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `NVML_ERROR_TIMEOUT`: no event within the wait.
const NVML_ERROR_TIMEOUT: u32 = 10;
const XID: u64 = nvmlEventTypeXidCriticalError as u64;

/// An event set: per registered device (physical index), the lines of its XID file reported.
struct EventSet {
    devices: Mutex<Vec<(usize, usize)>>,
}

fn xid_lines(d: &Device) -> Vec<u64> {
    let Ok(m) = machine() else {
        return Vec::new();
    };
    let file = m
        .faults
        .with_file_name("xid")
        .join(gpupool_cuda::uuid::format_gpu_uuid(&d.uuid));
    std::fs::read_to_string(file)
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// `nvmlEventSetCreate`.
pub unsafe fn event_set_create(set: *mut nvmlEventSet_t) -> u32 {
    if set.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    let boxed = Box::new(EventSet {
        devices: Mutex::new(Vec::new()),
    });
    // SAFETY: non-null caller pointer.
    unsafe { set.write(Box::into_raw(boxed).cast()) };
    NVML_SUCCESS
}

/// `nvmlDeviceGetSupportedEventTypes`: XID critical errors only.
pub unsafe fn device_get_supported_event_types(h: nvmlDevice_t, types: *mut u64) -> u32 {
    if let Err(e) = crate::nvml::device_of(h) {
        return e;
    }
    if types.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: non-null caller pointer.
    unsafe { types.write(XID) };
    NVML_SUCCESS
}

/// `nvmlDeviceRegisterEvents`: only XID critical errors can be registered.
pub unsafe fn device_register_events(h: nvmlDevice_t, types: u64, set: nvmlEventSet_t) -> u32 {
    let d = match crate::nvml::device_of(h) {
        Ok(d) => d,
        Err(e) => return e,
    };
    if set.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    if types & !XID != 0 {
        return NVML_ERROR_NOT_SUPPORTED;
    }
    // SAFETY: made by event_set_create and not freed (the caller's contract).
    let set = unsafe { &*(set as *const EventSet) };
    let seen = xid_lines(d).len();
    let mut devices = set.devices.lock().unwrap_or_else(|e| e.into_inner());
    if !devices.iter().any(|(p, _)| *p == d.physical) {
        devices.push((d.physical, seen));
    }
    NVML_SUCCESS
}

/// `nvmlEventSetWait_v2` (and `nvmlEventSetWait`): the next XID of a registered device, waiting
/// up to `timeout_ms`.
pub unsafe fn event_set_wait(
    set: nvmlEventSet_t,
    data: *mut nvmlEventData_t,
    timeout_ms: u32,
) -> u32 {
    if set.is_null() || data.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    let Ok(m) = machine() else {
        return NVML_ERROR_UNINITIALIZED;
    };
    // SAFETY: made by event_set_create and not freed (the caller's contract).
    let set = unsafe { &*(set as *const EventSet) };
    let deadline = Instant::now() + Duration::from_millis(timeout_ms as u64);
    loop {
        {
            let mut devices = set.devices.lock().unwrap_or_else(|e| e.into_inner());
            for (physical, seen) in devices.iter_mut() {
                let d = &m.all[*physical];
                let lines = xid_lines(d);
                if let Some(xid) = lines.get(*seen) {
                    *seen += 1;
                    let event = nvmlEventData_t {
                        device: d as *const Device as nvmlDevice_t,
                        eventType: XID,
                        eventData: *xid,
                        gpuInstanceId: u32::MAX,
                        computeInstanceId: u32::MAX,
                    };
                    // SAFETY: non-null caller pointer.
                    unsafe { data.write(event) };
                    return NVML_SUCCESS;
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return NVML_ERROR_TIMEOUT;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

/// `nvmlEventSetFree`.
pub unsafe fn event_set_free(set: nvmlEventSet_t) -> u32 {
    if set.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: made by event_set_create; the caller frees it once.
    drop(unsafe { Box::from_raw(set as *mut EventSet) });
    NVML_SUCCESS
}
