//! Stream calls answered on the client from what the server carries.
//!
//! - Captures run on the server. The client counts the captures it began and has not ended:
//!   while there are none, no stream is being captured, and capture queries are answered here
//!   without a round trip (libraries ask before much of their work).
//! - Capture information (status, id, graph, dependencies) comes from the server, whose
//!   session then accepts the graph and nodes as the client's handles.
//! - Host functions and stream callbacks run on the calling thread once the stream's work
//!   queued so far is done (the caller waits for it), so they see the stream's results and
//!   the stream's later work follows them; they cannot be captured into a graph. Copies
//!   between host memory and the device are captured through staging buffers
//!   (`graph_host`): the server refuses them, as a graph would keep the address of the
//!   server's transfer buffer.
//! - GPUDirect RDMA flushes have nothing to flush on a client without a GPU.
//! - The thread's capture mode is kept on the client (`cuThreadExchangeStreamCaptureMode`).
//! - Stream attributes are set on the server when their values are plain numbers.

use crate::conn::state;
use crate::table_client::{self, cuStreamGetCtx, cuStreamSynchronize};
use gpupool_cuda::api::types::*;
use gpupool_cuda::result::*;
use gpupool_remote::calls::custom;
use std::cell::RefCell;
use std::ffi::c_void;

pub use gpupool_cuda::capture_mode::thread_exchange_stream_capture_mode;
use gpupool_cuda::capture_mode::{capture_status, CaptureNow, OpenCaptures, NOT_CAPTURING};

/// Captures this process began on the server and has not ended.
static CAPTURES: OpenCaptures = OpenCaptures::new();

/// Hook after a successful `cuStreamBeginCapture_v2`.
pub fn capture_begun(_s: CUstream, _mode: u32) {
    CAPTURES.begun(CUDA_SUCCESS);
}

/// `cuStreamEndCapture`: a capture ends with its graph, or invalidated without one.
pub unsafe fn stream_end_capture(s: CUstream, g: *mut CUgraph) -> u32 {
    // The graph being captured, if copies from or to host memory may have been staged in it.
    let staging = crate::graph_host::any_staged()
        .then(|| capture_graph(s).ok())
        .flatten();
    // SAFETY: the caller's out pointer.
    let rc = unsafe { table_client::cuStreamEndCapture(s, g) };
    if rc == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED && !g.is_null() {
        // SAFETY: the caller's out pointer; an invalidated capture gives no graph.
        unsafe { crate::write(g, std::ptr::null_mut()) };
    }
    if let (Some(graph), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED) = (staging, rc) {
        crate::graph_host::graph_destroyed(graph as usize as CUgraph);
    }
    CAPTURES.ended(rc)
}

/// `cuStreamIsCapturing` (and `_ptsz`): answered here while no capture is open.
pub unsafe fn stream_is_capturing(s: CUstream, status: *mut u32) -> u32 {
    if status.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if !CAPTURES.any() {
        // SAFETY: the caller's out pointer, checked above.
        return unsafe { crate::write(status, NOT_CAPTURING) };
    }
    // SAFETY: as above.
    unsafe { table_client::cuStreamIsCapturing(s, status) }
}

/// Whether stream `s` is being captured (an unknown stream counts as one: the caller refuses).
pub(crate) fn captured(s: CUstream) -> bool {
    // SAFETY: a valid out pointer; the stream is checked by the server.
    capture_status(|st| unsafe { stream_is_capturing(s, st) }) != Ok(NOT_CAPTURING)
}

thread_local! {
    /// The dependencies the last capture query on this thread answered (the driver's array is
    /// likewise valid until the stream's next call).
    static CAPTURE_DEPS: RefCell<Vec<CUgraphNode>> = const { RefCell::new(Vec::new()) };
}

/// What is known of `s`'s capture: everything, from the server, while a capture is open.
unsafe fn capture_now(s: CUstream) -> Result<CaptureNow, u32> {
    if !CAPTURES.any() {
        return Ok(CaptureNow::NONE);
    }
    let mut st = state();
    let start = st.begin(custom::CAPTURE_INFO, true, crate::context::current())?;
    st.batch.put_opt(Some(&(s as usize as u64)));
    let (mut status, mut id, mut graph) = (NOT_CAPTURING, 0u64, 0u64);
    let mut deps: Vec<CUgraphNode> = Vec::new();
    let rc = st.finish_sync(start, |r| {
        status = r.get("status")?;
        id = r.get("capture id")?;
        graph = r.get("graph")?;
        let n: u32 = r.get("dependency count")?;
        for _ in 0..n.min(custom::MAX_NODE_DEPENDENCIES) {
            deps.push(r.get::<u64>("dependency")? as usize as CUgraphNode);
        }
        Ok(())
    });
    drop(st);
    if rc != CUDA_SUCCESS {
        return Err(rc);
    }
    let (list, n) = CAPTURE_DEPS.with(|kept| {
        let mut kept = kept.borrow_mut();
        *kept = deps;
        let list = if kept.is_empty() {
            std::ptr::null()
        } else {
            kept.as_ptr()
        };
        (list, kept.len())
    });
    Ok(CaptureNow {
        status,
        id: Some(id),
        graph: Some(graph as usize as *mut c_void),
        deps: Some((list, n)),
    })
}

gpupool_cuda::capture_info_functions!(capture_now);

/// The graph stream `s` is being captured into.
pub(crate) fn capture_graph(s: CUstream) -> Result<u64, u32> {
    // SAFETY: the stream is checked by the server.
    match unsafe { capture_now(s) }?.graph {
        Some(g) if !g.is_null() => Ok(g as usize as u64),
        _ => Err(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED),
    }
}

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
    match capture_status(|st| unsafe { stream_is_capturing(s, st) }) {
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
