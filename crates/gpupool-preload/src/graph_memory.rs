//! Graph memory: `cuMemAllocAsync` on a stream being captured records an allocation node, whose
//! memory the driver takes when the graph is launched (and keeps for later launches, until
//! trimmed). Recording charges nothing; each instantiated graph remembers how much its
//! allocation nodes ask for, a launch first reserves what the device's spare graph memory does
//! not cover (refused with `CUDA_ERROR_OUT_OF_MEMORY` past the limit, before the driver is
//! asked), and after it the device's graph memory is charged what it holds (`pools`).
//! Allocation nodes added one by one (`cuGraphAddMemAllocNode`) count the same way.

use crate::driver::pool as drv;
use crate::memory::round_up;
use crate::spinlock::{ForgetAfterFork, PerProcess};
use crate::tenant;
use crate::tenant::granularity;
use crate::tracking::AddressHasher;
use gpupool_cuda::cu::{
    CUDA_GRAPH_INSTANTIATE_PARAMS_st, CUDA_MEM_ALLOC_NODE_PARAMS_v1_st, CUgraph, CUgraphExec,
    CUgraphInstantiate_flags, CUgraphNode, CUstream,
};
use gpupool_cuda::result::*;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// What a graph's allocation nodes ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    /// CUDA ordinal of the device.
    pub ordinal: i32,
    /// Bytes, each allocation rounded to the granularity.
    pub bytes: u64,
}

type Map = HashMap<u64, Need, BuildHasherDefault<AddressHasher>>;

#[derive(Default)]
struct State {
    /// Graphs being captured or captured, by `CUgraph`.
    graphs: Map,
    /// Instantiated graphs, by `CUgraphExec`.
    execs: Map,
}

static STATE: PerProcess<State> = PerProcess::new();

/// This module's state, which a forked child forgets (`lifecycle`).
pub fn fork_state() -> &'static dyn ForgetAfterFork {
    &STATE
}
/// Whether any allocation node was recorded (graph launches look no further otherwise).
static ANY: AtomicBool = AtomicBool::new(false);

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(f)
}

/// After the driver recorded an allocation node of `bytes` on `ord` for stream `s`.
///
/// # Safety
/// `s` is a stream handle of this process.
pub unsafe fn recorded_allocation(s: CUstream, ord: i32, bytes: u64) {
    // SAFETY: the caller's contract.
    if let Some(graph) = unsafe { drv::capture_graph(s) } {
        added(graph, ord, bytes);
    }
}

/// Hook for `cuGraphAddMemAllocNode`: the graph asks for the node's bytes on the device its
/// parameters name.
pub unsafe fn add_mem_alloc_node(
    n: *mut CUgraphNode,
    g: CUgraph,
    deps: *const CUgraphNode,
    ndeps: usize,
    params: *mut CUDA_MEM_ALLOC_NODE_PARAMS_v1_st,
) -> u32 {
    // SAFETY: forwarding.
    let rc = unsafe { crate::real::cuGraphAddMemAllocNode(n, g, deps, ndeps, params) };
    // SAFETY: null or the caller's parameters, which the driver accepted.
    if let Some(p) = unsafe { params.as_ref() }.filter(|_| rc == CUDA_SUCCESS) {
        let ord = p.poolProps.location.id;
        added(g as u64, ord, round_up(p.bytesize as u64, granularity(ord)));
    }
    rc
}

/// Graph `graph` has one more allocation node, of `bytes` on `ord`.
fn added(graph: u64, ord: i32, bytes: u64) {
    ANY.store(true, Relaxed);
    with(|st| {
        let need = st.graphs.entry(graph).or_insert(Need {
            ordinal: ord,
            bytes: 0,
        });
        need.bytes = need.bytes.saturating_add(bytes);
    });
}

/// After the driver instantiated `graph` as `exec` (`rc`): the instance asks for what the
/// graph's allocation nodes ask for.
fn instantiated(rc: u32, exec: *mut CUgraphExec, graph: CUgraph) -> u32 {
    if rc == CUDA_SUCCESS && !exec.is_null() && ANY.load(Relaxed) {
        // SAFETY: the driver filled the caller's out pointer.
        let e = unsafe { *exec } as u64;
        with(|s| match s.graphs.get(&(graph as u64)).copied() {
            Some(need) => s.execs.insert(e, need),
            None => s.execs.remove(&e),
        });
    }
    rc
}

/// Hook for `cuGraphInstantiateWithFlags`.
pub unsafe fn instantiate_with_flags(e: *mut CUgraphExec, g: CUgraph, flags: u64) -> u32 {
    // SAFETY: forwarding.
    instantiated(
        unsafe { crate::real::cuGraphInstantiateWithFlags(e, g, flags) },
        e,
        g,
    )
}

macro_rules! instantiate_hooks {
    ($($hook:ident => $real:ident;)*) => {$(
        /// Hook for the instantiation of the same name.
        pub unsafe fn $hook(
            e: *mut CUgraphExec,
            g: CUgraph,
            node: *mut CUgraphNode,
            log: *mut i8,
            size: usize,
        ) -> u32 {
            // SAFETY: forwarding.
            instantiated(unsafe { crate::real::$real(e, g, node, log, size) }, e, g)
        }
    )*};
}

instantiate_hooks! {
    instantiate => cuGraphInstantiate;
    instantiate_v2 => cuGraphInstantiate_v2;
}

/// Hook for `cuGraphExecDestroy`.
pub unsafe fn exec_destroy(e: CUgraphExec) -> u32 {
    // SAFETY: forwarding.
    let rc = unsafe { crate::real::cuGraphExecDestroy(e) };
    if rc == CUDA_SUCCESS && ANY.load(Relaxed) {
        with(|s| s.execs.remove(&(e as u64)));
    }
    rc
}

/// Hook for `cuGraphDestroy`.
pub unsafe fn graph_destroy(g: CUgraph) -> u32 {
    // SAFETY: forwarding.
    let rc = unsafe { crate::real::cuGraphDestroy(g) };
    if rc == CUDA_SUCCESS && ANY.load(Relaxed) {
        with(|s| s.graphs.remove(&(g as u64)));
    }
    rc
}

macro_rules! instantiate_with_params_hooks {
    ($($hook:ident => $real:ident;)*) => {$(
        /// Hook for the instantiation of the same name: with the upload flag, the graph's
        /// memory is taken now, so it is reserved first as for a launch.
        pub unsafe fn $hook(
            e: *mut CUgraphExec,
            g: CUgraph,
            p: *mut CUDA_GRAPH_INSTANTIATE_PARAMS_st,
        ) -> u32 {
            // SAFETY: forwarding.
            let call = || instantiated(unsafe { crate::real::$real(e, g, p) }, e, g);
            // SAFETY: null or the caller's parameters.
            match unsafe { p.as_ref() } {
                Some(p) if p.flags & UPLOAD != 0 => {
                    take_graph_memory(|s| s.graphs.get(&(g as u64)).copied(), call)
                }
                _ => call(),
            }
        }
    )*};
}

instantiate_with_params_hooks! {
    instantiate_with_params => cuGraphInstantiateWithParams;
    instantiate_with_params_ptsz => cuGraphInstantiateWithParams_ptsz;
}

/// The instantiation flag that uploads the instance at once.
const UPLOAD: u64 = CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD.0 as u64;

/// Launches (or uploads) `exec` with `call`: what its allocation nodes need beyond the device's
/// spare graph memory is reserved first, and the device's graph memory is charged after.
pub fn launch(exec: CUgraphExec, call: impl FnOnce() -> u32) -> u32 {
    take_graph_memory(|s| s.execs.get(&(exec as u64)).copied(), call)
}

/// Runs `call`, which takes the graph memory of the graph or instance whose need `lookup`
/// finds: see [`launch`].
fn take_graph_memory(
    lookup: impl FnOnce(&State) -> Option<Need>,
    call: impl FnOnce() -> u32,
) -> u32 {
    if !ANY.load(Relaxed) {
        return call();
    }
    let known = with(|s| lookup(s));
    // Unknown (it allocates nothing, or was made by a function not hooked): charged after.
    let Some(need) = known.or_else(|| {
        crate::driver::current_device()
            .ok()
            .map(|ordinal| Need { ordinal, bytes: 0 })
    }) else {
        return call();
    };
    let acct = match tenant::account(need.ordinal) {
        Ok(Some(a)) => a,
        Ok(None) => return call(),
        Err(e) => return e,
    };
    let provisional = need.bytes.saturating_sub(drv::graph_spare(need.ordinal));
    if provisional > 0 {
        if let Err(e) = acct.reserve(provisional) {
            return e;
        }
    }
    let rc = call();
    crate::pools::graph_launched(&acct, provisional);
    rc
}

/// Hook for `cuGraphLaunch`: graph memory, then the compute limit's pacing.
pub unsafe fn graph_launch(e: CUgraphExec, s: CUstream) -> u32 {
    // SAFETY: forwarding.
    launch(e, || unsafe { crate::compute::graph_launch(e, s) })
}

/// Hook for `cuGraphLaunch_ptsz`.
pub unsafe fn graph_launch_ptsz(e: CUgraphExec, s: CUstream) -> u32 {
    // SAFETY: forwarding.
    launch(e, || unsafe { crate::compute::graph_launch_ptsz(e, s) })
}

/// Hook for `cuGraphUpload` (an upload takes the graph's memory too).
pub unsafe fn graph_upload(e: CUgraphExec, s: CUstream) -> u32 {
    // SAFETY: forwarding.
    launch(e, || unsafe { crate::real::cuGraphUpload(e, s) })
}
