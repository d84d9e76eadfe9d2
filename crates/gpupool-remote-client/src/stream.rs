//! Stream calls answered on the client from what the server carries.
//!
//! - Capture information: the status comes from the server (`cuStreamIsCapturing`); outside a
//!   capture the other answers are empty, as the driver gives them. A capture's id, graph and
//!   dependencies are not carried: asked for during a capture they are
//!   `CUDA_ERROR_NOT_SUPPORTED`.
//! - Host functions and stream callbacks run on the calling thread once the stream's work
//!   queued so far is done (the caller waits for it), so they see the stream's results and
//!   the stream's later work follows them; they cannot be captured into a graph.
//! - GPUDirect RDMA flushes have nothing to flush on a client without a GPU.
//! - The thread's capture mode is kept on the client (`cuThreadExchangeStreamCaptureMode`).

use crate::table_client::{cuStreamGetCtx, cuStreamIsCapturing, cuStreamSynchronize};
use gpupool_cuda::api::types::*;
use gpupool_cuda::result::*;
use std::ffi::c_void;

pub use gpupool_cuda::capture_mode::thread_exchange_stream_capture_mode;

/// `CU_STREAM_CAPTURE_STATUS_NONE`.
const NOT_CAPTURING: u32 = 0;

/// Writes `v` through `p` unless it is null.
unsafe fn put<T>(p: *mut T, v: T) {
    if !p.is_null() {
        // SAFETY: the caller's out pointer, non-null.
        unsafe { p.write(v) };
    }
}

/// The capture status of `s`, from the server.
unsafe fn capture_status(s: CUstream) -> Result<u32, u32> {
    let mut status = NOT_CAPTURING;
    // SAFETY: a valid out pointer.
    match unsafe { cuStreamIsCapturing(s, &mut status) } {
        CUDA_SUCCESS => Ok(status),
        e => Err(e),
    }
}

/// `cuStreamGetCaptureInfo_v3`, which the older versions call with fewer answers asked: the
/// status, and empty answers outside a capture.
pub unsafe fn stream_get_capture_info_v3(
    s: CUstream,
    status: *mut u32,
    id: *mut u64,
    graph: *mut *mut c_void,
    deps: *mut *const CUgraphNode,
    edges: *mut *const c_void,
    n: *mut usize,
) -> u32 {
    if status.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: the stream is checked by the server.
    let st = match unsafe { capture_status(s) } {
        Ok(st) => st,
        Err(e) => return e,
    };
    let details_asked =
        !id.is_null() || !graph.is_null() || !deps.is_null() || !edges.is_null() || !n.is_null();
    if st != NOT_CAPTURING && details_asked {
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    // SAFETY: the caller's out pointers, each null or valid.
    unsafe {
        put(status, st);
        put(id, 0);
        put(graph, std::ptr::null_mut());
        put(deps, std::ptr::null());
        put(edges, std::ptr::null());
        put(n, 0);
    }
    CUDA_SUCCESS
}

/// `cuStreamGetCaptureInfo`.
pub unsafe fn stream_get_capture_info(s: CUstream, status: *mut u32, id: *mut u64) -> u32 {
    let none = std::ptr::null_mut();
    // SAFETY: the caller's pointers.
    unsafe {
        stream_get_capture_info_v3(s, status, id, none, none.cast(), none.cast(), none.cast())
    }
}

/// `cuStreamGetCaptureInfo_v2`.
pub unsafe fn stream_get_capture_info_v2(
    s: CUstream,
    status: *mut u32,
    id: *mut u64,
    graph: *mut *mut c_void,
    deps: *mut *const CUgraphNode,
    n: *mut usize,
) -> u32 {
    let no_edges = std::ptr::null_mut();
    // SAFETY: the caller's pointers.
    unsafe { stream_get_capture_info_v3(s, status, id, graph, deps, no_edges, n) }
}

/// `cuStreamGetCtx_v2`: the stream's context; never a green context.
pub unsafe fn stream_get_ctx_v2(s: CUstream, ctx: *mut CUcontext, green: *mut *mut c_void) -> u32 {
    // SAFETY: the caller's pointers.
    let rc = unsafe { cuStreamGetCtx(s, ctx) };
    if rc == CUDA_SUCCESS {
        // SAFETY: null or the caller's out pointer.
        unsafe { put(green, std::ptr::null_mut()) };
    }
    rc
}

/// Waits for the work queued on `s` so far, then runs `run` (a host function or callback);
/// refused on a stream being captured.
unsafe fn after_stream(s: CUstream, run: impl FnOnce(u32)) -> u32 {
    // SAFETY: the stream is checked by the server.
    match unsafe { capture_status(s) } {
        Ok(NOT_CAPTURING) => {}
        Ok(_) => return CUDA_ERROR_NOT_SUPPORTED,
        Err(e) => return e,
    }
    // SAFETY: as above.
    let rc = unsafe { cuStreamSynchronize(s) };
    run(rc);
    CUDA_SUCCESS
}

/// `cuLaunchHostFunc`.
pub unsafe fn launch_host_func(s: CUstream, f: HostFn, user: *mut c_void) -> u32 {
    let Some(f) = f else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    // SAFETY: the caller's function with the caller's data, as the driver would call it.
    unsafe { after_stream(s, |_| f(user)) }
}

/// `cuStreamAddCallback` (the callback gets the stream's status).
pub unsafe fn stream_add_callback(
    s: CUstream,
    cb: HostCallback,
    user: *mut c_void,
    _flags: u32,
) -> u32 {
    let Some(cb) = cb else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    // SAFETY: the caller's callback with the caller's data, as the driver would call it.
    unsafe { after_stream(s, |status| cb(s, status, user)) }
}

/// `cuFlushGPUDirectRDMAWrites`: nothing to flush.
pub unsafe fn flush_gpu_direct_rdma_writes(_target: u32, _scope: u32) -> u32 {
    CUDA_SUCCESS
}
