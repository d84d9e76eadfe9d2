//! Graph calls answered here: the older `cuGraphInstantiate` through the forwarded
//! `cuGraphInstantiateWithFlags`; inspecting a graph's nodes is not forwarded.

use gpupool_cuda::cu::{CUgraph, CUgraphExec, CUgraphNode};
use gpupool_cuda::result::*;

/// `cuGraphInstantiate` (the error-node and log arguments are left untouched).
pub unsafe fn graph_instantiate(
    out: *mut CUgraphExec,
    g: CUgraph,
    _error_node: *mut CUgraphNode,
    _log: *mut i8,
    _log_size: usize,
) -> u32 {
    // SAFETY: the caller's arguments.
    unsafe { crate::table_client::cuGraphInstantiateWithFlags(out, g, 0) }
}

/// `cuGraphGetNodes`: not forwarded.
pub unsafe fn graph_get_nodes(g: CUgraph, _nodes: *mut CUgraphNode, n: *mut usize) -> u32 {
    if g.is_null() || n.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    CUDA_ERROR_NOT_SUPPORTED
}

/// `cuGraphNodeGetType`: not forwarded.
pub unsafe fn graph_node_get_type(node: CUgraphNode, kind: *mut u32) -> u32 {
    if node.is_null() || kind.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    CUDA_ERROR_NOT_SUPPORTED
}
