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
//! - Stream attributes are set on the server when their values are plain numbers.

use crate::conn::state;
use crate::table_client::{cuStreamGetCtx, cuStreamIsCapturing, cuStreamSynchronize};
use gpupool_cuda::api::types::*;
use gpupool_cuda::result::*;
use gpupool_remote::calls::custom;
use std::ffi::c_void;

pub use gpupool_cuda::capture_mode::thread_exchange_stream_capture_mode;
use gpupool_cuda::capture_mode::{capture_status, NOT_CAPTURING};

gpupool_cuda::capture_info_functions!(cuStreamIsCapturing);

/// `cuStreamGetCtx_v2`: the stream's context; never a green context.
pub unsafe fn stream_get_ctx_v2(s: CUstream, ctx: *mut CUcontext, green: *mut *mut c_void) -> u32 {
    // SAFETY: the caller's pointers.
    let rc = unsafe { cuStreamGetCtx(s, ctx) };
    if rc == CUDA_SUCCESS && !green.is_null() {
        // SAFETY: the caller's out pointer.
        unsafe { crate::write(green, std::ptr::null_mut()) };
    }
    rc
}

/// Waits for the work queued on `s` so far, then runs `run` (a host function or callback);
/// refused on a stream being captured.
unsafe fn after_stream(s: CUstream, run: impl FnOnce(u32)) -> u32 {
    // SAFETY: a valid out pointer; the stream is checked by the server.
    match capture_status(|st| unsafe { cuStreamIsCapturing(s, st) }) {
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

/// `cuStreamSetAttribute`: attributes whose values are plain numbers travel (those carrying
/// an event are `CUDA_ERROR_NOT_SUPPORTED`, as in launches).
pub unsafe fn stream_set_attribute(s: CUstream, attr: u32, v: *const c_void) -> u32 {
    if v.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if !gpupool_remote::launch_ex::attribute_travels(attr) {
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    // SAFETY: the caller's `CUstreamAttrValue`, 64 bytes.
    let value = unsafe { *(v as *const [u8; 64]) };
    let mut st = state();
    let start = match st.begin(
        custom::STREAM_SET_ATTRIBUTE,
        true,
        crate::context::current(),
    ) {
        Ok(p) => p,
        Err(e) => return e,
    };
    st.batch.put_opt(Some(&(s as usize as u64)));
    st.batch.put(&attr);
    st.batch.put(&value);
    st.finish_sync(start, |_| Ok(()))
}
