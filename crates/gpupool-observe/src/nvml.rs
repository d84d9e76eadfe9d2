//! A small NVML client (for `gpupool info`, `top`, `demo`, the exporter and the node agent): loads
//! `libnvidia-ml.so.1` — the real one, or the simulated driver — and reads devices, memory and processes.

use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use std::ffi::{c_char, c_uint, c_void, CStr, CString};
use std::path::Path;

/// One process on a device.
#[derive(Serialize, Debug, Clone)]
pub struct ProcessEntry {
    /// Host pid.
    pub pid: u32,
    /// Device memory used.
    pub used_bytes: u64,
    /// Percent of the device's time its kernels ran, over NVML's recent samples (null when
    /// NVML has no sample for it).
    pub sm_percent: Option<u32>,
}

/// What gpupool does with a card in MIG mode, for messages.
pub const MIG_NOT_SHARED: &str = "gpupool does not share MIG instances, so the node agent \
     does not advertise this card; disable MIG (nvidia-smi -i INDEX -mig 0, then reset the card) \
     to share it with gpupool, or leave it to NVIDIA's device plugin";

/// One device.
#[derive(Serialize, Debug, Clone)]
pub struct DeviceEntry {
    /// NVML index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// UUID text.
    pub uuid: String,
    /// Total memory.
    pub total_bytes: u64,
    /// Used memory (all processes).
    pub used_bytes: u64,
    /// Free memory.
    pub free_bytes: u64,
    /// Percent of the last sample period in which a kernel ran (null if NVML cannot say).
    pub utilization_percent: Option<u32>,
    /// Compute processes.
    pub processes: Vec<ProcessEntry>,
    /// MIG mode is enabled (the card is split into MIG instances; false where NVML cannot
    /// say, e.g. cards without MIG).
    pub mig: bool,
    /// Why the device could not be read (it is then unhealthy; the other fields are empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DeviceEntry {
    /// An entry for device `index` that NVML failed to read.
    fn failed(index: u32, error: String) -> DeviceEntry {
        DeviceEntry {
            index,
            name: String::new(),
            uuid: String::new(),
            total_bytes: 0,
            used_bytes: 0,
            free_bytes: 0,
            utilization_percent: None,
            processes: Vec::new(),
            mig: false,
            error: Some(error),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Utilization {
    gpu: c_uint,
    memory: c_uint,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ProcessSample {
    pid: c_uint,
    time_stamp: u64,
    sm: c_uint,
    mem: c_uint,
    enc: c_uint,
    dec: c_uint,
}

#[repr(C)]
struct Memory {
    total: u64,
    free: u64,
    used: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct ProcessInfo {
    pid: c_uint,
    used: u64,
    gi: c_uint,
    ci: c_uint,
}

/// A loaded NVML library (the real one, or the simulated driver).
pub struct NvmlLib {
    handle: *mut c_void,
}

impl NvmlLib {
    /// Loads the library at `path` (or `libnvidia-ml.so.1` by name).
    pub fn open(path: Option<&Path>) -> Result<NvmlLib> {
        let name = match path {
            Some(p) => CString::new(p.display().to_string())?,
            None => CString::new("libnvidia-ml.so.1")?,
        };
        // SAFETY: dlopen of a library path / soname.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW) };
        if handle.is_null() {
            bail!(
                "cannot load {} (no NVIDIA driver here; try --sim SPEC)",
                name.to_string_lossy()
            );
        }
        Ok(NvmlLib { handle })
    }

    /// The address of function `name`.
    pub fn sym(&self, name: &str) -> Result<*mut c_void> {
        let c = CString::new(name)?;
        // SAFETY: live handle (never closed) and NUL-terminated name.
        let p = unsafe { libc::dlsym(self.handle, c.as_ptr()) };
        if p.is_null() {
            Err(anyhow!("NVML has no {name}"))
        } else {
            Ok(p)
        }
    }
}

/// Reads every device from the NVML library at `path` (or `libnvidia-ml.so.1` by name).
pub fn read_devices(path: Option<&Path>) -> Result<Vec<DeviceEntry>> {
    let lib = NvmlLib::open(path)?;
    let sym = |n: &str| lib.sym(n);
    macro_rules! nv {
        ($e:expr, $what:literal) => {{
            let rc = $e;
            if rc != 0 {
                bail!("{} failed with NVML error {}", $what, rc);
            }
        }};
    }
    let mut out = Vec::new();
    // SAFETY: every symbol is transmuted to its documented NVML signature.
    unsafe {
        let init: unsafe extern "C" fn() -> u32 = std::mem::transmute(sym("nvmlInit_v2")?);
        let count: unsafe extern "C" fn(*mut c_uint) -> u32 =
            std::mem::transmute(sym("nvmlDeviceGetCount_v2")?);
        let by_index: unsafe extern "C" fn(c_uint, *mut *mut c_void) -> u32 =
            std::mem::transmute(sym("nvmlDeviceGetHandleByIndex_v2")?);
        let get_name: unsafe extern "C" fn(*mut c_void, *mut c_char, c_uint) -> u32 =
            std::mem::transmute(sym("nvmlDeviceGetName")?);
        let get_uuid: unsafe extern "C" fn(*mut c_void, *mut c_char, c_uint) -> u32 =
            std::mem::transmute(sym("nvmlDeviceGetUUID")?);
        let mem: unsafe extern "C" fn(*mut c_void, *mut Memory) -> u32 =
            std::mem::transmute(sym("nvmlDeviceGetMemoryInfo")?);
        let procs: unsafe extern "C" fn(*mut c_void, *mut c_uint, *mut ProcessInfo) -> u32 =
            std::mem::transmute(sym("nvmlDeviceGetComputeRunningProcesses_v3")?);
        // Optional: older drivers or restricted NVML may lack these.
        let utilization: Option<unsafe extern "C" fn(*mut c_void, *mut Utilization) -> u32> =
            sym("nvmlDeviceGetUtilizationRates")
                .ok()
                .map(|p| std::mem::transmute(p));
        type SamplesFn =
            unsafe extern "C" fn(*mut c_void, *mut ProcessSample, *mut c_uint, u64) -> u32;
        let samples: Option<SamplesFn> = sym("nvmlDeviceGetProcessUtilization")
            .ok()
            .map(|p| std::mem::transmute(p));
        type MigModeFn = unsafe extern "C" fn(*mut c_void, *mut c_uint, *mut c_uint) -> u32;
        let mig_mode: Option<MigModeFn> = sym("nvmlDeviceGetMigMode")
            .ok()
            .map(|p| std::mem::transmute(p));
        nv!(init(), "nvmlInit");
        let mut n = 0;
        nv!(count(&mut n), "nvmlDeviceGetCount");
        for i in 0..n {
            // A device NVML cannot read is reported as such; the others are still read.
            let read = || -> Result<DeviceEntry> {
                let mut d = std::ptr::null_mut();
                nv!(by_index(i, &mut d), "nvmlDeviceGetHandleByIndex");
                let mut buf = [0 as c_char; 96];
                nv!(get_name(d, buf.as_mut_ptr(), 96), "nvmlDeviceGetName");
                let dev_name = CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
                nv!(get_uuid(d, buf.as_mut_ptr(), 96), "nvmlDeviceGetUUID");
                let uuid = CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
                let mut m = Memory {
                    total: 0,
                    free: 0,
                    used: 0,
                };
                nv!(mem(d, &mut m), "nvmlDeviceGetMemoryInfo");
                let mut list = vec![
                    ProcessInfo {
                        pid: 0,
                        used: 0,
                        gi: 0,
                        ci: 0
                    };
                    256
                ];
                let mut pn: c_uint = 256;
                nv!(
                    procs(d, &mut pn, list.as_mut_ptr()),
                    "nvmlDeviceGetComputeRunningProcesses"
                );
                list.truncate(pn as usize);
                let utilization_percent = utilization.and_then(|f| {
                    let mut u = Utilization::default();
                    (f(d, &mut u) == 0).then_some(u.gpu)
                });
                let mut sm = vec![ProcessSample::default(); 256];
                let mut sn: c_uint = 256;
                let sm_of: Vec<ProcessSample> = match samples {
                    Some(f) if f(d, sm.as_mut_ptr(), &mut sn, 0) == 0 => {
                        sm.truncate(sn as usize);
                        sm
                    }
                    _ => Vec::new(),
                };
                let mig = mig_mode.is_some_and(|f| {
                    let (mut current, mut pending) = (0, 0);
                    f(d, &mut current, &mut pending) == 0 && current == 1
                });
                Ok(DeviceEntry {
                    index: i,
                    name: dev_name,
                    uuid,
                    total_bytes: m.total,
                    used_bytes: m.used,
                    free_bytes: m.free,
                    utilization_percent,
                    processes: list
                        .iter()
                        .map(|p| ProcessEntry {
                            pid: p.pid,
                            used_bytes: p.used,
                            sm_percent: sm_of.iter().find(|s| s.pid == p.pid).map(|s| s.sm),
                        })
                        .collect(),
                    mig,
                    error: None,
                })
            };
            out.push(read().unwrap_or_else(|e| DeviceEntry::failed(i, format!("{e:#}"))));
        }
    }
    Ok(out)
}
