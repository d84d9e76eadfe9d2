//! CUDA graphs of kernel nodes: built with `cuGraphAddKernelNode`, instantiated, and launched
//! as one piece of work whose duration is the sum of its kernels (nodes run one after another).
//! A node is its position in its graph (1, 2, …); its parameters are not kept
//! ([`gpupool_cuda::absent`] answers reading or changing them).

use crate::launch::{duration, Shape};
use crate::mem::write;
use gpupool_cuda::cu::{
    CUDA_KERNEL_NODE_PARAMS_st, CUgraph, CUgraphExec, CUgraphNode, CUgraphNodeType, CUstream,
};
use gpupool_cuda::result::*;
use gpupool_cuda::spinlock::SpinLock;

/// A graph: the durations of its kernel nodes.
pub struct Graph {
    nodes: SpinLock<Vec<u64>>,
}

/// An instantiated graph: its total duration.
pub struct GraphExec {
    duration_ns: u64,
}

fn graph_ref(g: CUgraph) -> Result<&'static Graph, u32> {
    if g.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: graph handles are leaked Box<Graph>.
    Ok(unsafe { &*(g as *const Graph) })
}

/// `cuGraphCreate`.
pub unsafe fn graph_create(out: *mut CUgraph, _flags: u32) -> u32 {
    let g = Box::new(Graph {
        nodes: SpinLock::new(Vec::new()),
    });
    write(out, Box::into_raw(g) as CUgraph)
}

/// `cuGraphDestroy` (handles stay valid memory).
pub unsafe fn graph_destroy(g: CUgraph) -> u32 {
    graph_ref(g).map_or_else(|e| e, |_| CUDA_SUCCESS)
}

/// `cuGraphAddKernelNode` (and `_v2`, whose parameters start the same way). Dependencies are
/// accepted; nodes run in the order added.
pub unsafe fn graph_add_kernel_node(
    node: *mut CUgraphNode,
    g: CUgraph,
    _deps: *const CUgraphNode,
    _ndeps: usize,
    params: *const CUDA_KERNEL_NODE_PARAMS_st,
) -> u32 {
    // SAFETY: null or the caller's node parameters.
    let Some(p) = (unsafe { params.as_ref() }) else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    let shape = Shape {
        grid: [p.gridDimX, p.gridDimY, p.gridDimZ],
        block: [p.blockDimX, p.blockDimY, p.blockDimZ],
    };
    let result = graph_ref(g).and_then(|graph| {
        // SAFETY: the node's parameters, as the caller passes them.
        let d = unsafe { duration(p.func, shape, p.kernelParams) }?;
        let mut nodes = graph.nodes.lock();
        nodes.push(d);
        Ok(nodes.len())
    });
    match result {
        Ok(index) => write(node, index as CUgraphNode),
        Err(e) => e,
    }
}

/// `cuGraphInstantiateWithFlags` (and `cuGraphInstantiate_v2`'s first two arguments).
pub unsafe fn graph_instantiate_with_flags(out: *mut CUgraphExec, g: CUgraph, _flags: u64) -> u32 {
    match graph_ref(g) {
        Ok(graph) => {
            let total = graph.nodes.lock().iter().sum();
            let e = Box::new(GraphExec { duration_ns: total });
            write(out, Box::into_raw(e) as CUgraphExec)
        }
        Err(e) => e,
    }
}

/// `cuGraphInstantiate_v2` and the older `cuGraphInstantiate` (error-node and log arguments
/// are left untouched).
pub unsafe fn graph_instantiate(
    out: *mut CUgraphExec,
    g: CUgraph,
    _error_node: *mut CUgraphNode,
    _log: *mut i8,
    _log_size: usize,
) -> u32 {
    // SAFETY: same contract.
    unsafe { graph_instantiate_with_flags(out, g, 0) }
}

/// `cuGraphLaunch` (and `_ptsz`).
pub unsafe fn graph_launch(exec: CUgraphExec, stream: CUstream) -> u32 {
    if exec.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: exec handles are leaked Box<GraphExec>.
    let e = unsafe { &*(exec as *const GraphExec) };
    match crate::work::launch(stream, e.duration_ns) {
        Ok(()) => CUDA_SUCCESS,
        Err(err) => err,
    }
}

/// `cuGraphExecDestroy` (handles stay valid memory).
pub unsafe fn graph_exec_destroy(exec: CUgraphExec) -> u32 {
    if exec.is_null() {
        CUDA_ERROR_INVALID_VALUE
    } else {
        CUDA_SUCCESS
    }
}

/// `cuGraphGetNodes`: with `nodes` null, how many; else up to `*n` of them, `*n` set to how
/// many were written.
pub unsafe fn graph_get_nodes(g: CUgraph, nodes: *mut CUgraphNode, n: *mut usize) -> u32 {
    if n.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let count = match graph_ref(g) {
        Ok(graph) => graph.nodes.lock().len(),
        Err(e) => return e,
    };
    if nodes.is_null() {
        return write(n, count);
    }
    // SAFETY: the caller's capacity, then room for that many nodes.
    let room = unsafe { *n };
    let written = count.min(room);
    for i in 0..written {
        // SAFETY: i < the caller's capacity.
        unsafe { *nodes.add(i) = (i + 1) as CUgraphNode };
    }
    write(n, written)
}

/// `cuGraphNodeGetType`: every node is a kernel node.
pub unsafe fn graph_node_get_type(node: CUgraphNode, kind: *mut u32) -> u32 {
    if node.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    write(kind, CUgraphNodeType::CU_GRAPH_NODE_TYPE_KERNEL as u32)
}
