//! Calls into the real driver for the few functions we need but do not intercept.

use gpupool_cuda::cu::CUuuid;
use gpupool_cuda::props::RawAllocationProp;
use gpupool_cuda::result::*;
use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, Ordering::Relaxed};
use std::sync::OnceLock;

/// What a call site remembers when the driver lacks its function: the lookup is not repeated
/// on every call (a failing `dlsym` costs more than the rest of a launch).
const MISSING: *mut c_void = std::ptr::dangling_mut();

/// Calls the real driver function `$name` of type `$ty` (resolved once per call site; a
/// driver without it answers `CUDA_ERROR_NOT_FOUND` without being asked again).
macro_rules! call_real {
    ($name:literal, $ty:ty, $($arg:expr),*) => {{
        static P: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
        let mut p = P.load(Relaxed);
        if p.is_null() {
            p = crate::real_lib::resolve(concat!($name, "\0"));
            if p.is_null() {
                p = MISSING;
            }
            P.store(p, Relaxed);
        }
        if p == MISSING {
            CUDA_ERROR_NOT_FOUND
        } else {
            // SAFETY: p is the real driver's function of that name and type.
            unsafe { std::mem::transmute::<*mut c_void, $ty>(p)($($arg),*) }
        }
    }};
}

/// UUID of ordinal `ord`.
pub fn device_uuid(ord: i32) -> Result<[u8; 16], u32> {
    let mut u = CUuuid { bytes: [0; 16] };
    let rc = call_real!(
        "cuDeviceGetUuid",
        unsafe extern "C" fn(*mut CUuuid, i32) -> u32,
        &mut u,
        ord
    );
    if rc != CUDA_SUCCESS {
        return Err(rc);
    }
    Ok(u.bytes.map(|b| b as u8))
}

/// Device of the current context.
pub fn current_device() -> Result<i32, u32> {
    let mut d = 0i32;
    let rc = call_real!(
        "cuCtxGetDevice",
        unsafe extern "C" fn(*mut i32) -> u32,
        &mut d
    );
    if rc == CUDA_SUCCESS {
        Ok(d)
    } else {
        Err(rc)
    }
}

/// Minimum allocation granularity of ordinal `ord`.
pub fn allocation_granularity(ord: i32) -> Option<u64> {
    let prop = RawAllocationProp::device(ord);
    let mut g = 0usize;
    let rc = call_real!(
        "cuMemGetAllocationGranularity",
        unsafe extern "C" fn(*mut usize, *const RawAllocationProp, u32) -> u32,
        &mut g,
        &prop,
        0
    );
    (rc == CUDA_SUCCESS && g > 0).then_some(g as u64)
}

/// UUIDs of the CUDA devices this process sees, by ordinal (initialising the real driver if
/// needed; NVML calls use this to show the same devices in the same order as CUDA).
pub fn cuda_device_uuids() -> &'static [[u8; 16]] {
    static UUIDS: OnceLock<Vec<[u8; 16]>> = OnceLock::new();
    UUIDS.get_or_init(|| {
        if call_real!("cuInit", unsafe extern "C" fn(u32) -> u32, 0) != CUDA_SUCCESS {
            return Vec::new();
        }
        let mut n = 0i32;
        if call_real!(
            "cuDeviceGetCount",
            unsafe extern "C" fn(*mut i32) -> u32,
            &mut n
        ) != CUDA_SUCCESS
        {
            return Vec::new();
        }
        (0..n).filter_map(|i| device_uuid(i).ok()).collect()
    })
}

/// NVML's UUID text of device handle `h`.
///
/// # Safety
/// `h` must be an NVML device handle.
pub unsafe fn nvml_device_uuid(h: gpupool_cuda::nvml::nvmlDevice_t) -> Option<String> {
    let mut buf = [0 as std::ffi::c_char; 96];
    let rc = call_real!(
        "nvmlDeviceGetUUID",
        unsafe extern "C" fn(gpupool_cuda::nvml::nvmlDevice_t, *mut std::ffi::c_char, u32) -> u32,
        h,
        buf.as_mut_ptr(),
        buf.len() as u32
    );
    if rc != NVML_SUCCESS {
        return None;
    }
    // SAFETY: NVML wrote a NUL-terminated string into buf.
    Some(
        unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// NVML's handle of the device with UUID `uuid`.
///
/// # Safety
/// `h` must be null or writable.
pub unsafe fn nvml_handle_by_uuid(
    uuid: &[u8; 16],
    h: *mut gpupool_cuda::nvml::nvmlDevice_t,
) -> u32 {
    let text = format!("{}\0", gpupool_cuda::uuid::format_gpu_uuid(uuid));
    call_real!(
        "nvmlDeviceGetHandleByUUID",
        unsafe extern "C" fn(*const std::ffi::c_char, *mut gpupool_cuda::nvml::nvmlDevice_t) -> u32,
        text.as_ptr().cast(),
        h
    )
}

/// Timing events through the real driver (for `cost`).
pub mod events {
    use super::*;
    use gpupool_cuda::cu::{CUcontext, CUevent, CUstream};

    /// The calling thread's current context, if any.
    pub fn current_context() -> Option<CUcontext> {
        let mut c: CUcontext = std::ptr::null_mut();
        let rc = call_real!(
            "cuCtxGetCurrent",
            unsafe extern "C" fn(*mut CUcontext) -> u32,
            &mut c
        );
        (rc == CUDA_SUCCESS && !c.is_null()).then_some(c)
    }

    /// Whether stream `s` is being captured into a graph (events cannot be timed there).
    ///
    /// # Safety
    /// `s` must be a stream handle of this process (or a special handle).
    pub unsafe fn capturing(s: CUstream) -> bool {
        let mut status = 0u32;
        let rc = call_real!(
            "cuStreamIsCapturing",
            unsafe extern "C" fn(CUstream, *mut u32) -> u32,
            s,
            &mut status
        );
        rc != CUDA_SUCCESS || status != 0
    }

    /// A new timing event in the current context.
    pub fn create() -> Option<CUevent> {
        let mut e: CUevent = std::ptr::null_mut();
        let rc = call_real!(
            "cuEventCreate",
            unsafe extern "C" fn(*mut CUevent, u32) -> u32,
            &mut e,
            0
        );
        (rc == CUDA_SUCCESS && !e.is_null()).then_some(e)
    }

    /// Destroys an event.
    ///
    /// # Safety
    /// Handles must be the driver's (events / streams / contexts of this process).
    pub unsafe fn destroy(e: CUevent) {
        call_real!("cuEventDestroy_v2", unsafe extern "C" fn(CUevent) -> u32, e);
    }

    /// Records `e` on stream `s` (`s` as the caller's launch used it).
    ///
    /// # Safety
    /// Handles must be the driver's (events / streams / contexts of this process).
    pub unsafe fn record(e: CUevent, s: CUstream) -> bool {
        call_real!(
            "cuEventRecord",
            unsafe extern "C" fn(CUevent, CUstream) -> u32,
            e,
            s
        ) == CUDA_SUCCESS
    }

    /// Waits for `e`.
    ///
    /// # Safety
    /// Handles must be the driver's (events / streams / contexts of this process).
    pub unsafe fn synchronize(e: CUevent) -> bool {
        call_real!(
            "cuEventSynchronize",
            unsafe extern "C" fn(CUevent) -> u32,
            e
        ) == CUDA_SUCCESS
    }

    /// Whether `e` completed (`None` on an error), with `ctx` made current first.
    ///
    /// # Safety
    /// Handles must be the driver's (events / streams / contexts of this process).
    pub unsafe fn query(ctx: CUcontext, e: CUevent) -> Option<bool> {
        call_real!(
            "cuCtxSetCurrent",
            unsafe extern "C" fn(CUcontext) -> u32,
            ctx
        );
        match call_real!("cuEventQuery", unsafe extern "C" fn(CUevent) -> u32, e) {
            CUDA_SUCCESS => Some(true),
            CUDA_ERROR_NOT_READY => Some(false),
            _ => None,
        }
    }

    /// Nanoseconds between two completed events.
    ///
    /// # Safety
    /// Handles must be the driver's (events / streams / contexts of this process).
    pub unsafe fn elapsed_ns(a: CUevent, b: CUevent) -> Option<u64> {
        let mut ms = 0f32;
        let rc = call_real!(
            "cuEventElapsedTime",
            unsafe extern "C" fn(*mut f32, CUevent, CUevent) -> u32,
            &mut ms,
            a,
            b
        );
        (rc == CUDA_SUCCESS && ms >= 0.0).then_some((ms as f64 * 1e6) as u64)
    }
}

/// Memory pools: what a pool reserves, trimming it, a device's current pool.
pub mod pool {
    use super::*;
    use gpupool_cuda::cu::{CUmemoryPool, CUstream};

    /// `CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT`.
    const RESERVED_MEM_CURRENT: u32 = 5;

    /// Bytes of device memory `pool` holds (live allocations and what it keeps).
    ///
    /// # Safety
    /// `pool` must be a pool handle of this process that was not destroyed.
    pub unsafe fn reserved(pool: CUmemoryPool) -> Option<u64> {
        let mut v = 0u64;
        let rc = call_real!(
            "cuMemPoolGetAttribute",
            unsafe extern "C" fn(CUmemoryPool, u32, *mut c_void) -> u32,
            pool,
            RESERVED_MEM_CURRENT,
            (&mut v as *mut u64).cast()
        );
        (rc == CUDA_SUCCESS).then_some(v)
    }

    /// Lets `pool` give back what it keeps, as far as the driver can.
    ///
    /// # Safety
    /// `pool` must be a pool handle of this process that was not destroyed.
    pub unsafe fn trim(pool: CUmemoryPool) {
        call_real!(
            "cuMemPoolTrimTo",
            unsafe extern "C" fn(CUmemoryPool, usize) -> u32,
            pool,
            0
        );
    }

    /// `CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT`.
    const GRAPH_USED: u32 = 0;
    /// `CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT`.
    const GRAPH_RESERVED: u32 = 2;

    fn graph_attribute(ord: i32, attr: u32) -> Option<u64> {
        let mut v = 0u64;
        let rc = call_real!(
            "cuDeviceGetGraphMemAttribute",
            unsafe extern "C" fn(i32, u32, *mut c_void) -> u32,
            ord,
            attr,
            (&mut v as *mut u64).cast()
        );
        (rc == CUDA_SUCCESS).then_some(v)
    }

    /// Bytes of device memory ordinal `ord` holds for graphs' allocation nodes.
    pub fn graph_reserved(ord: i32) -> Option<u64> {
        graph_attribute(ord, GRAPH_RESERVED)
    }

    /// Bytes of ordinal `ord`'s graph memory that no launched allocation holds.
    pub fn graph_spare(ord: i32) -> u64 {
        match (
            graph_attribute(ord, GRAPH_RESERVED),
            graph_attribute(ord, GRAPH_USED),
        ) {
            (Some(r), Some(u)) => r.saturating_sub(u),
            _ => 0,
        }
    }

    /// Lets ordinal `ord`'s graph memory not in use go back.
    pub fn graph_trim(ord: i32) {
        call_real!(
            "cuDeviceGraphMemTrim",
            unsafe extern "C" fn(i32) -> u32,
            ord
        );
    }

    /// The graph stream `s` is being captured into.
    ///
    /// # Safety
    /// `s` must be a stream handle of this process (or a special handle).
    pub unsafe fn capture_graph(s: CUstream) -> Option<u64> {
        let (mut status, mut id, mut graph) = (0u32, 0u64, std::ptr::null_mut::<c_void>());
        let rc = call_real!(
            "cuStreamGetCaptureInfo_v2",
            unsafe extern "C" fn(
                CUstream,
                *mut u32,
                *mut u64,
                *mut *mut c_void,
                *mut *const c_void,
                *mut usize,
            ) -> u32,
            s,
            &mut status,
            &mut id,
            &mut graph,
            std::ptr::null_mut(),
            std::ptr::null_mut()
        );
        (rc == CUDA_SUCCESS && status == 1 && !graph.is_null()).then_some(graph as u64)
    }

    /// The pool `cuMemAllocAsync` takes from on ordinal `ord`.
    pub fn current(ord: i32) -> Option<CUmemoryPool> {
        let mut p: CUmemoryPool = std::ptr::null_mut();
        let rc = call_real!(
            "cuDeviceGetMemPool",
            unsafe extern "C" fn(*mut CUmemoryPool, i32) -> u32,
            &mut p,
            ord
        );
        (rc == CUDA_SUCCESS && !p.is_null()).then_some(p)
    }
}

/// Managed memory kept on the host for the device (spill that can move back).
pub mod managed_host {
    use super::*;

    /// `CU_MEM_ATTACH_GLOBAL`.
    const ATTACH_GLOBAL: u32 = 1;
    /// `CU_MEM_ADVISE_SET_PREFERRED_LOCATION`.
    const PREFERRED_LOCATION: u32 = 3;
    /// `CU_MEM_ADVISE_SET_ACCESSED_BY`.
    const ACCESSED_BY: u32 = 5;
    /// `CU_DEVICE_CPU`.
    const CPU: i32 = -1;

    fn advise(p: u64, size: usize, advice: u32, dev: i32) -> u32 {
        call_real!(
            "cuMemAdvise",
            unsafe extern "C" fn(u64, usize, u32, i32) -> u32,
            p,
            size,
            advice,
            dev
        )
    }

    /// Allocates `size` bytes of managed memory that prefers the host and is mapped for
    /// device `ord` (its kernels read it over the bus without migrating it).
    pub fn alloc(size: usize, ord: i32) -> Result<u64, u32> {
        let mut p = 0u64;
        let rc = call_real!(
            "cuMemAllocManaged",
            unsafe extern "C" fn(*mut u64, usize, u32) -> u32,
            &mut p,
            size,
            ATTACH_GLOBAL
        );
        if rc != CUDA_SUCCESS {
            return Err(rc);
        }
        let rc = match advise(p, size, PREFERRED_LOCATION, CPU) {
            CUDA_SUCCESS => advise(p, size, ACCESSED_BY, ord),
            rc => rc,
        };
        if rc != CUDA_SUCCESS {
            // SAFETY: freeing what was just allocated.
            unsafe { crate::real::cuMemFree_v2(p) };
            return Err(rc);
        }
        Ok(p)
    }

    /// Moves memory from [`alloc`] onto device `ord` (preferring it from then on); on failure
    /// it stays on the host.
    pub fn move_to_device(p: u64, size: usize, ord: i32) -> u32 {
        let rc = match advise(p, size, PREFERRED_LOCATION, ord) {
            CUDA_SUCCESS => call_real!(
                "cuMemPrefetchAsync",
                unsafe extern "C" fn(u64, usize, i32, *mut c_void) -> u32,
                p,
                size,
                ord,
                std::ptr::null_mut()
            ),
            rc => rc,
        };
        if rc != CUDA_SUCCESS {
            advise(p, size, PREFERRED_LOCATION, CPU);
        }
        rc
    }
}

/// Pinned host memory mapped into the device's address space (spill).
pub mod mapped_host {
    use super::*;

    /// `CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP`.
    const FLAGS: u32 = 0x1 | 0x2;

    /// Allocates `size` bytes; returns their address, the same on the host and the device
    /// (unified addressing). Memory whose device address differs is given back and refused.
    pub fn alloc(size: usize) -> Result<u64, u32> {
        let mut host: *mut c_void = std::ptr::null_mut();
        let rc = call_real!(
            "cuMemHostAlloc",
            unsafe extern "C" fn(*mut *mut c_void, usize, u32) -> u32,
            &mut host,
            size,
            FLAGS
        );
        if rc != CUDA_SUCCESS {
            return Err(rc);
        }
        let mut dev = 0u64;
        let rc = call_real!(
            "cuMemHostGetDevicePointer_v2",
            unsafe extern "C" fn(*mut u64, *mut c_void, u32) -> u32,
            &mut dev,
            host,
            0
        );
        if rc != CUDA_SUCCESS || dev != host as u64 {
            free(host as u64);
            return Err(if rc != CUDA_SUCCESS {
                rc
            } else {
                CUDA_ERROR_NOT_SUPPORTED
            });
        }
        Ok(dev)
    }

    /// Frees memory from [`alloc`].
    pub fn free(p: u64) -> u32 {
        call_real!(
            "cuMemFreeHost",
            unsafe extern "C" fn(*mut c_void) -> u32,
            p as usize as *mut c_void
        )
    }
}
