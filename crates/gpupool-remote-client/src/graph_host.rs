//! Copies between host memory and the device inside graphs. The server runs a graph, out of
//! reach of the client's memory, so such a copy goes through a staging buffer of device
//! memory (the tenant's, counted against its limit): the graph copies between the staging
//! buffer and the device, and each launch of the graph copies the host memory to the staging
//! buffer on the launch's stream before the graph runs, or the staging buffer to the host
//! memory after it has run. A graph captured from a stream (`cuMemcpyHtoDAsync`,
//! `cuMemcpyDtoHAsync`, `cuMemcpyAsync`, `cuMemcpy2DAsync`, `cuMemcpy3DAsync`) and a graph
//! built node by node (`cuGraphAddMemcpyNode`) work alike. A copy of several rows is staged
//! packed (rows of its width, without the host side's pitch); each launch moves it in
//! requests of at most 32 MiB of rows.
//!
//! Host memory is therefore read when the launch is called, not when the copy node runs, and
//! written before the launch returns (a launch with such copies waits for its graph). The
//! staging buffers live as long as the graph, or an executable graph, or a graph that holds
//! it as a child, uses them.

use crate::memory::{dtoh, htod};
use gpupool_cuda::cu::{CUdeviceptr, CUgraph, CUgraphExec, CUstream};
use gpupool_cuda::result::*;
use gpupool_remote::copy3d::Copy3d;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One copy between host memory and a staging buffer, made at each launch.
#[derive(Debug)]
pub(crate) struct Staged {
    /// The staging buffer (device memory of the server).
    staging: u64,
    /// The host memory: the copy's source (`to_device`) or destination.
    host: usize,
    /// What is copied.
    shape: Shape,
    /// Host to device (before the graph runs), else device to host (after).
    to_device: bool,
}

/// What a staged copy moves.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    /// Bytes in a row.
    Linear(usize),
    /// Rows: the copy between the host side (its geometry kept) and the packed staging
    /// buffer.
    Rows(Copy3d),
}

impl Shape {
    /// The bytes the staging buffer holds.
    fn len(&self) -> Option<usize> {
        match self {
            Shape::Linear(n) => Some(*n),
            Shape::Rows(c) => c.packed_len(),
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // SAFETY: a buffer this module allocated; freeing is sent without waiting.
        unsafe { crate::memory::mem_free(self.staging) };
    }
}

/// What holds staged copies: a graph or an executable graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Holder {
    Graph(u64),
    Exec(u64),
}

/// The staged copies of each graph and executable graph that has any.
pub(crate) static STAGED: Mutex<Option<HashMap<Holder, Vec<Arc<Staged>>>>> = Mutex::new(None);

/// Whether this process ever staged a copy: until it does, a graph launch looks up nothing.
static EVER_STAGED: AtomicBool = AtomicBool::new(false);

fn with<R>(f: impl FnOnce(&mut HashMap<Holder, Vec<Arc<Staged>>>) -> R) -> R {
    f(STAGED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new))
}

/// Allocates a staging buffer for a copy of `shape` between host memory at `host` and the
/// device in `graph`; its address.
pub(crate) fn stage(graph: u64, host: usize, shape: Shape, to_device: bool) -> Result<u64, u32> {
    let len = shape.len().ok_or(CUDA_ERROR_INVALID_VALUE)?;
    if host == 0 || len == 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let mut staging: CUdeviceptr = 0;
    // SAFETY: a local out value.
    let rc = unsafe { crate::memory::mem_alloc(&mut staging, len) };
    if rc != CUDA_SUCCESS {
        return Err(rc);
    }
    let staged = Arc::new(Staged {
        staging,
        host,
        shape,
        to_device,
    });
    with(|m| m.entry(Holder::Graph(graph)).or_default().push(staged));
    EVER_STAGED.store(true, Ordering::Relaxed);
    Ok(staging)
}

/// A copy between host memory `host` and device address `device` (`to_device`: from the
/// host) of `n` bytes on stream `s`, being captured into a graph: captured as a copy between
/// the device and a staging buffer, which each launch fills from `host` first or copies to
/// `host` once the graph has run.
pub(crate) fn captured_copy(
    device: u64,
    host: usize,
    n: usize,
    to_device: bool,
    s: CUstream,
) -> u32 {
    if n == 0 {
        return CUDA_SUCCESS;
    }
    let staged =
        crate::stream::capture_graph(s).and_then(|g| stage(g, host, Shape::Linear(n), to_device));
    let staging = match staged {
        Ok(p) => p,
        Err(e) => return e,
    };
    let (dst, src) = if to_device {
        (device, staging)
    } else {
        (staging, device)
    };
    crate::memory::dtod(dst, src, n, Some(s))
}

/// Hook after `cuGraphInstantiateWithFlags`: the executable graph copies as its graph does.
///
/// # Safety
/// `exec` is null or the out pointer the successful call wrote.
pub unsafe fn instantiated(exec: *mut CUgraphExec, g: CUgraph, _flags: u64) {
    if exec.is_null() {
        return;
    }
    // SAFETY: the out value the successful call wrote.
    let e = unsafe { *exec } as usize as u64;
    inherit(Holder::Graph(g as usize as u64), Holder::Exec(e));
}

/// After `cuGraphAddChildGraphNode`: `parent` copies as its new child does.
pub(crate) fn child_added(parent: CUgraph, child: CUgraph) {
    inherit(
        Holder::Graph(child as usize as u64),
        Holder::Graph(parent as usize as u64),
    );
}

/// `to` also makes the staged copies of `from`.
fn inherit(from: Holder, to: Holder) {
    with(|m| {
        if let Some(list) = m.get(&from).cloned() {
            m.entry(to).or_default().extend(list);
        }
    });
}

/// Forgets `h`'s staged copies (their buffers are freed when nothing uses them).
fn forget(h: Holder) {
    let gone = with(|m| m.remove(&h));
    drop(gone);
}

/// Whether any graph holds staged copies.
pub(crate) fn any_staged() -> bool {
    EVER_STAGED.load(Ordering::Relaxed) && with(|m| !m.is_empty())
}

/// Hook after `cuGraphDestroy` (and for the graph of a capture that ended invalidated).
pub fn graph_destroyed(g: CUgraph) {
    forget(Holder::Graph(g as usize as u64));
}

/// Hook after `cuGraphExecDestroy`.
pub fn exec_destroyed(e: CUgraphExec) {
    forget(Holder::Exec(e as usize as u64));
}

/// `cuGraphLaunch` (and `_ptsz`): the graph's host memory copied to its staging buffers
/// first, the staging buffers to host memory once it has run.
pub unsafe fn graph_launch(e: CUgraphExec, s: CUstream) -> u32 {
    let staged = EVER_STAGED
        .load(Ordering::Relaxed)
        .then(|| with(|m| m.get(&Holder::Exec(e as usize as u64)).cloned()))
        .flatten();
    let Some(staged) = staged else {
        // SAFETY: the caller's arguments.
        return unsafe { crate::table_client::cuGraphLaunch(e, s) };
    };
    for c in staged.iter().filter(|c| c.to_device) {
        let rc = c.transfer(s);
        if rc != CUDA_SUCCESS {
            return rc;
        }
    }
    // SAFETY: the caller's arguments.
    let rc = unsafe { crate::table_client::cuGraphLaunch(e, s) };
    if rc != CUDA_SUCCESS {
        return rc;
    }
    for c in staged.iter().filter(|c| !c.to_device) {
        let rc = c.transfer(s);
        if rc != CUDA_SUCCESS {
            return rc;
        }
    }
    CUDA_SUCCESS
}

impl Staged {
    /// The launch's copy between the host memory and the staging buffer, on stream `s`.
    fn transfer(&self, s: CUstream) -> u32 {
        // SAFETY: the host memory the program gave the copy, `n` bytes (the program keeps it
        // valid while the graph may run, as it must for a local driver).
        match (self.shape, self.to_device) {
            (Shape::Linear(n), true) => unsafe {
                htod(self.staging, self.host as *const u8, n, Some(s))
            },
            (Shape::Linear(n), false) => unsafe {
                dtoh(self.host as *mut u8, self.staging, n, Some(s))
            },
            (Shape::Rows(c), to_device) => {
                crate::copies::staged_rows(c, self.host, self.staging, to_device, Some(s))
            }
        }
    }
}
