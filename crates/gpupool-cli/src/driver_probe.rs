//! `gpupool probe` (hidden): a tiny driver-API client used by `gpupool demo` and the tests. It
//! loads `libcuda.so.1` like any program would, allocates fixed-size chunks until refused and
//! prints one JSON line: what it was shown and what it got.

use anyhow::{anyhow, bail, Result};
use clap::Args;
use gpupool_config::parse_size;
use serde::{Deserialize, Serialize};
use std::ffi::{c_char, c_void, CString};

macro_rules! cu {
    ($f:expr, $name:literal) => {{
        let rc = $f;
        if rc != 0 {
            bail!("{} failed with CUDA error {}", $name, rc);
        }
    }};
}

/// Arguments of `gpupool probe`.
#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// Chunk size of each allocation.
    #[arg(long, default_value = "256MiB")]
    pub chunk: String,
    /// Stop after this many chunks.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_chunks: u64,
    /// Keep the memory this long before freeing it (ms).
    #[arg(long, default_value_t = 0)]
    pub hold_ms: u64,
    /// Device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: i32,
    /// Resolve driver functions through `cuGetProcAddress_v2` (as the runtime does) instead of
    /// `dlsym`.
    #[arg(long)]
    pub proc_address: bool,
    /// Only print the UUID of every device, one a line, in CUDA ordinal order.
    #[arg(long)]
    pub list_uuids: bool,
    /// Only measure the size of a context on every device, as NVML counts it for this process
    /// (a JSON object: UUID to bytes).
    #[arg(long)]
    pub context_sizes: bool,
}

/// The memory NVML shows for this process on each card once it holds a context on every one:
/// what a context costs, as the driver counts it. NVML may report pids of another pid namespace;
/// then the one process that appeared on a card is taken.
fn context_sizes(sym: &Lookup) -> Result<std::collections::BTreeMap<String, u64>> {
    let before = gpupool_observe::nvml::read_devices(None)?;
    let uuids = list_uuids(sym)?;
    // SAFETY: each symbol is the driver function with the signature it is transmuted to.
    unsafe {
        let get: unsafe extern "C" fn(*mut i32, i32) -> u32 =
            std::mem::transmute(sym("cuDeviceGet")?);
        let retain: unsafe extern "C" fn(*mut *mut c_void, i32) -> u32 =
            std::mem::transmute(sym("cuDevicePrimaryCtxRetain")?);
        let set_current: unsafe extern "C" fn(*mut c_void) -> u32 =
            std::mem::transmute(sym("cuCtxSetCurrent")?);
        let synchronize: unsafe extern "C" fn() -> u32 =
            std::mem::transmute(sym("cuCtxSynchronize")?);
        for i in 0..uuids.len() as i32 {
            let mut dev = 0;
            cu!(get(&mut dev, i), "cuDeviceGet");
            let mut ctx = std::ptr::null_mut();
            cu!(retain(&mut ctx, dev), "cuDevicePrimaryCtxRetain");
            cu!(set_current(ctx), "cuCtxSetCurrent");
            cu!(synchronize(), "cuCtxSynchronize");
        }
    }
    let me = std::process::id();
    let mut out = std::collections::BTreeMap::new();
    for d in gpupool_observe::nvml::read_devices(None)? {
        let earlier: Vec<u32> = before
            .iter()
            .filter(|b| b.uuid == d.uuid)
            .flat_map(|b| b.processes.iter().map(|p| p.pid))
            .collect();
        let mine = d.processes.iter().find(|p| p.pid == me);
        let new: Vec<_> = d
            .processes
            .iter()
            .filter(|p| !earlier.contains(&p.pid))
            .collect();
        let found = mine.or(match new.as_slice() {
            [only] => Some(*only),
            _ => None,
        });
        if let Some(p) = found {
            out.insert(d.uuid.clone(), p.used_bytes);
        }
    }
    Ok(out)
}

/// The UUIDs of the devices CUDA shows this process, by ordinal.
fn list_uuids(sym: &Lookup) -> Result<Vec<[u8; 16]>> {
    // SAFETY: each symbol is the driver function with the signature it is transmuted to.
    unsafe {
        let init: unsafe extern "C" fn(u32) -> u32 = std::mem::transmute(sym("cuInit")?);
        let count: unsafe extern "C" fn(*mut i32) -> u32 =
            std::mem::transmute(sym("cuDeviceGetCount")?);
        let get: unsafe extern "C" fn(*mut i32, i32) -> u32 =
            std::mem::transmute(sym("cuDeviceGet")?);
        let uuid: unsafe extern "C" fn(*mut [u8; 16], i32) -> u32 =
            std::mem::transmute(sym("cuDeviceGetUuid")?);
        cu!(init(0), "cuInit");
        let mut n = 0;
        cu!(count(&mut n), "cuDeviceGetCount");
        let mut out = Vec::new();
        for i in 0..n {
            let mut dev = 0;
            cu!(get(&mut dev, i), "cuDeviceGet");
            let mut u = [0u8; 16];
            cu!(uuid(&mut u, dev), "cuDeviceGetUuid");
            out.push(u);
        }
        Ok(out)
    }
}

/// What the probe saw.
#[derive(Serialize, Deserialize, Debug)]
pub struct ProbeReport {
    /// Pid of the probe.
    pub pid: u32,
    /// `cuDeviceTotalMem`.
    pub device_total: u64,
    /// `cuMemGetInfo` total before allocating.
    pub total: u64,
    /// `cuMemGetInfo` free before allocating.
    pub free_before: u64,
    /// Chunk size.
    pub chunk: u64,
    /// Chunks obtained.
    pub chunks: u64,
    /// Bytes obtained.
    pub allocated: u64,
    /// `cuMemGetInfo` free while holding them.
    pub free_holding: u64,
    /// The error that stopped allocation (0 if `max_chunks` was reached).
    pub stop_error: u32,
    /// `cuMemGetInfo` free after freeing everything.
    pub free_after: u64,
}

type Lookup = Box<dyn Fn(&str) -> Result<*mut c_void>>;

fn loader(proc_address: bool) -> Result<Lookup> {
    // SAFETY: dlopen by soname.
    let h = unsafe { libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW) };
    if h.is_null() {
        bail!(
            "cannot load libcuda.so.1 (no NVIDIA driver, and no simulated one on LD_LIBRARY_PATH)"
        );
    }
    let dlsym_lookup = move |name: &str| -> Result<*mut c_void> {
        let c = CString::new(name)?;
        // SAFETY: live handle, NUL-terminated name.
        let p = unsafe { libc::dlsym(h, c.as_ptr()) };
        if p.is_null() {
            Err(anyhow!("libcuda.so.1 has no {name}"))
        } else {
            Ok(p)
        }
    };
    if !proc_address {
        return Ok(Box::new(dlsym_lookup));
    }
    type Gpa = unsafe extern "C" fn(*const c_char, *mut *mut c_void, i32, u64, *mut i32) -> u32;
    // SAFETY: the symbol has this signature.
    let gpa: Gpa = unsafe { std::mem::transmute(dlsym_lookup("cuGetProcAddress_v2")?) };
    Ok(Box::new(move |name: &str| {
        let base = name.trim_end_matches("_v2");
        let c = CString::new(base)?;
        let mut p = std::ptr::null_mut();
        let mut status = 0;
        // SAFETY: valid pointers; version 12090 as a 12.9 runtime asks.
        let rc = unsafe { gpa(c.as_ptr(), &mut p, 12090, 0, &mut status) };
        if rc != 0 || p.is_null() {
            Err(anyhow!("cuGetProcAddress({base}) failed: {rc}"))
        } else {
            Ok(p)
        }
    }))
}

/// Runs the probe and prints its report.
pub fn run(a: ProbeArgs) -> Result<()> {
    let chunk = parse_size(&a.chunk)?;
    let sym = loader(a.proc_address)?;
    if a.context_sizes {
        println!("{}", serde_json::to_string(&context_sizes(&sym)?)?);
        return Ok(());
    }
    if a.list_uuids {
        for u in list_uuids(&sym)? {
            println!("{}", gpupool_cuda::uuid::format_gpu_uuid(&u));
        }
        return Ok(());
    }
    // SAFETY: each symbol is the driver function with the signature it is transmuted to.
    unsafe {
        let init: unsafe extern "C" fn(u32) -> u32 = std::mem::transmute(sym("cuInit")?);
        let total_mem: unsafe extern "C" fn(*mut usize, i32) -> u32 =
            std::mem::transmute(sym("cuDeviceTotalMem_v2")?);
        let retain: unsafe extern "C" fn(*mut *mut c_void, i32) -> u32 =
            std::mem::transmute(sym("cuDevicePrimaryCtxRetain")?);
        let set_current: unsafe extern "C" fn(*mut c_void) -> u32 =
            std::mem::transmute(sym("cuCtxSetCurrent")?);
        let info: unsafe extern "C" fn(*mut usize, *mut usize) -> u32 =
            std::mem::transmute(sym("cuMemGetInfo_v2")?);
        let alloc: unsafe extern "C" fn(*mut u64, usize) -> u32 =
            std::mem::transmute(sym("cuMemAlloc_v2")?);
        let free: unsafe extern "C" fn(u64) -> u32 = std::mem::transmute(sym("cuMemFree_v2")?);
        cu!(init(0), "cuInit");
        let mut device_total = 0usize;
        cu!(total_mem(&mut device_total, a.device), "cuDeviceTotalMem");
        let mut ctx = std::ptr::null_mut();
        cu!(retain(&mut ctx, a.device), "cuDevicePrimaryCtxRetain");
        cu!(set_current(ctx), "cuCtxSetCurrent");
        let (mut f, mut t) = (0usize, 0usize);
        cu!(info(&mut f, &mut t), "cuMemGetInfo");
        let (free_before, total) = (f as u64, t as u64);
        let mut ptrs = Vec::new();
        let mut stop_error = 0;
        while (ptrs.len() as u64) < a.max_chunks {
            let mut p = 0u64;
            let rc = alloc(&mut p, chunk as usize);
            if rc != 0 {
                stop_error = rc;
                break;
            }
            ptrs.push(p);
        }
        cu!(info(&mut f, &mut t), "cuMemGetInfo");
        let free_holding = f as u64;
        std::thread::sleep(std::time::Duration::from_millis(a.hold_ms));
        for p in &ptrs {
            cu!(free(*p), "cuMemFree");
        }
        cu!(info(&mut f, &mut t), "cuMemGetInfo");
        let report = ProbeReport {
            pid: std::process::id(),
            device_total: device_total as u64,
            total,
            free_before,
            chunk,
            chunks: ptrs.len() as u64,
            allocated: ptrs.len() as u64 * chunk,
            free_holding,
            stop_error,
            free_after: f as u64,
        };
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
