//! Graph calls answered here: the older `cuGraphInstantiate` through the forwarded
//! `cuGraphInstantiateWithFlags`, and a graph's node list (`cuGraphGetNodes`), whose nodes the
//! server then accepts as the client's handles.

use crate::conn::state;
use gpupool_cuda::cu::{CUgraph, CUgraphExec, CUgraphNode};
use gpupool_cuda::result::*;
use gpupool_remote::calls::custom;

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

/// `cuGraphGetNodes`: how many nodes (with `nodes` null), or up to `*n` of them (at most
/// [`custom::MAX_LISTED_NODES`] per call), from the server.
pub unsafe fn graph_get_nodes(g: CUgraph, nodes: *mut CUgraphNode, n: *mut usize) -> u32 {
    if g.is_null() || n.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let room = if nodes.is_null() {
        0
    } else {
        // SAFETY: the caller's capacity.
        let asked = unsafe { *n };
        if asked == 0 {
            return CUDA_SUCCESS;
        }
        asked.min(custom::MAX_LISTED_NODES as usize) as u32
    };
    let mut st = state();
    let start = match st.begin(custom::GRAPH_GET_NODES, true, crate::context::current()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    st.batch.put(&(g as usize as u64));
    st.batch.put(&room);
    let (mut count, mut listed) = (0u64, Vec::new());
    let rc = st.finish_sync(start, |r| {
        count = r.get("node count")?;
        for _ in 0..count.min(room as u64) {
            listed.push(r.get::<u64>("node")? as usize as CUgraphNode);
        }
        Ok(())
    });
    drop(st);
    if rc != CUDA_SUCCESS {
        return rc;
    }
    for (i, &node) in listed.iter().enumerate() {
        // SAFETY: i < room <= the caller's capacity.
        unsafe { *nodes.add(i) = node };
    }
    let written = if nodes.is_null() {
        count as usize
    } else {
        listed.len()
    };
    // SAFETY: the caller's count pointer, checked above.
    unsafe { crate::write(n, written) }
}
