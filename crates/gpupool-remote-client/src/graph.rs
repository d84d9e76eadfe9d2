//! Graph calls answered here: the older `cuGraphInstantiate` through the forwarded
//! `cuGraphInstantiateWithFlags`, a graph's node list (`cuGraphGetNodes`), whose nodes the
//! server then accepts as the client's handles, empty, memset, child graph, copy (through
//! staging buffers for host memory: `graph_host`), memory allocation and free nodes (host
//! nodes are not forwarded), and `cuGraphInstantiateWithParams`.

use crate::conn::state;
use gpupool_cuda::cu::{
    CUDA_GRAPH_INSTANTIATE_PARAMS_st, CUDA_HOST_NODE_PARAMS_st, CUDA_MEMSET_NODE_PARAMS_st,
    CUDA_MEM_ALLOC_NODE_PARAMS_v1_st, CUcontext, CUdeviceptr, CUgraph, CUgraphExec, CUgraphNode,
    CUmemAllocationType, CUmemLocationType, CUDA_MEMCPY3D,
};
use gpupool_cuda::result::*;
use gpupool_remote::calls::custom;
use gpupool_remote::wire::{DecodeError, Reader};

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

/// Sends `call` adding a node to `graph` after `deps` (the graph and dependencies first, then
/// what `params` writes); writes the new node.
///
/// # Safety
/// `deps` holds `ndeps` nodes (or is null with none); `node` is null or writable.
pub(crate) unsafe fn send_node(
    call: u16,
    node: *mut CUgraphNode,
    graph: CUgraph,
    (deps, ndeps): (*const CUgraphNode, usize),
    params: impl FnOnce(&mut gpupool_remote::wire::Writer),
) -> u32 {
    // SAFETY: the caller's contract.
    unsafe { send_node_then(call, node, graph, (deps, ndeps), params, |_| Ok(())) }
}

/// [`send_node`], reading what the reply holds after the node with `more`.
///
/// # Safety
/// As [`send_node`].
unsafe fn send_node_then(
    call: u16,
    node: *mut CUgraphNode,
    graph: CUgraph,
    (deps, ndeps): (*const CUgraphNode, usize),
    params: impl FnOnce(&mut gpupool_remote::wire::Writer),
    more: impl FnOnce(&mut Reader<'_>) -> Result<(), DecodeError>,
) -> u32 {
    if node.is_null() || (ndeps > 0 && deps.is_null()) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if ndeps > custom::MAX_NODE_DEPENDENCIES as usize {
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    let deps = if ndeps == 0 {
        &[][..]
    } else {
        // SAFETY: the caller's array of ndeps nodes.
        unsafe { std::slice::from_raw_parts(deps, ndeps) }
    };
    let mut s = state();
    let start = match s.begin(call, true, crate::context::current()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let w = &mut s.batch;
    w.put(&(graph as usize as u64));
    w.put(&(deps.len() as u32));
    for d in deps {
        w.put(&(*d as usize as u64));
    }
    params(w);
    s.finish_sync(start, |r| {
        let n: u64 = r.get("node")?;
        // SAFETY: non-null out pointer.
        unsafe { *node = n as usize as CUgraphNode };
        more(r)
    })
}

/// [`custom::GRAPH_ADD_NODE`] of `kind`, its parameters written by `params`.
///
/// # Safety
/// As [`send_node`].
unsafe fn add_node(
    node: *mut CUgraphNode,
    graph: CUgraph,
    deps: *const CUgraphNode,
    ndeps: usize,
    kind: u8,
    params: impl FnOnce(&mut gpupool_remote::wire::Writer),
) -> u32 {
    // SAFETY: the caller's contract.
    unsafe { add_node_then(node, graph, deps, ndeps, kind, params, |_| Ok(())) }
}

/// [`add_node`], reading what the reply holds after the node with `more`.
///
/// # Safety
/// As [`send_node`].
unsafe fn add_node_then(
    node: *mut CUgraphNode,
    graph: CUgraph,
    deps: *const CUgraphNode,
    ndeps: usize,
    kind: u8,
    params: impl FnOnce(&mut gpupool_remote::wire::Writer),
    more: impl FnOnce(&mut Reader<'_>) -> Result<(), DecodeError>,
) -> u32 {
    let with_kind = |w: &mut gpupool_remote::wire::Writer| {
        w.put(&kind);
        params(w);
    };
    // SAFETY: the caller's contract.
    unsafe {
        send_node_then(
            custom::GRAPH_ADD_NODE,
            node,
            graph,
            (deps, ndeps),
            with_kind,
            more,
        )
    }
}

/// `cuGraphAddMemAllocNode`: device memory of the server's device the parameters name (other
/// memory kinds and access descriptors answer `CUDA_ERROR_NOT_SUPPORTED`); the node's address
/// goes to the parameters' `dptr`.
pub unsafe fn graph_add_mem_alloc_node(
    node: *mut CUgraphNode,
    graph: CUgraph,
    deps: *const CUgraphNode,
    ndeps: usize,
    params: *mut CUDA_MEM_ALLOC_NODE_PARAMS_v1_st,
) -> u32 {
    // SAFETY: null or the caller's parameters.
    let Some(p) = (unsafe { params.as_mut() }) else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    let props = &p.poolProps;
    if props.allocType != CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED
        || props.location.type_ != CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE
        || p.accessDescCount != 0
    {
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    let (ordinal, bytes) = (props.location.id, p.bytesize as u64);
    let write = |w: &mut gpupool_remote::wire::Writer| {
        w.put(&ordinal);
        w.put(&bytes);
    };
    let mut dptr = 0u64;
    let read = |r: &mut Reader<'_>| {
        dptr = r.get("address")?;
        Ok(())
    };
    // SAFETY: the caller's arguments.
    let rc = unsafe {
        add_node_then(
            node,
            graph,
            deps,
            ndeps,
            custom::NODE_MEM_ALLOC,
            write,
            read,
        )
    };
    if rc == CUDA_SUCCESS {
        p.dptr = dptr;
    }
    rc
}

/// `cuGraphAddMemFreeNode`: `ptr` must be an allocation node's address.
pub unsafe fn graph_add_mem_free_node(
    node: *mut CUgraphNode,
    graph: CUgraph,
    deps: *const CUgraphNode,
    ndeps: usize,
    ptr: CUdeviceptr,
) -> u32 {
    let write = |w: &mut gpupool_remote::wire::Writer| w.put(&ptr);
    // SAFETY: the caller's arguments.
    unsafe { add_node(node, graph, deps, ndeps, custom::NODE_MEM_FREE, write) }
}

/// `cuGraphInstantiateWithParams` (and `_ptsz`): the forwarded `cuGraphInstantiateWithFlags`,
/// then `cuGraphUpload` on the parameters' stream when their flags ask; the result goes to the
/// parameters (not the error node).
pub unsafe fn graph_instantiate_with_params(
    out: *mut CUgraphExec,
    g: CUgraph,
    params: *mut CUDA_GRAPH_INSTANTIATE_PARAMS_st,
) -> u32 {
    // SAFETY: the caller's pointers.
    unsafe {
        gpupool_cuda::graph_params::instantiate_with_params(
            out,
            params,
            |flags| crate::table_client::cuGraphInstantiateWithFlags(out, g, flags),
            |e, s| crate::table_client::cuGraphUpload(e, s),
        )
    }
}

/// `cuGraphAddEmptyNode`.
pub unsafe fn graph_add_empty_node(
    node: *mut CUgraphNode,
    graph: CUgraph,
    deps: *const CUgraphNode,
    ndeps: usize,
) -> u32 {
    // SAFETY: the caller's arguments.
    unsafe { add_node(node, graph, deps, ndeps, custom::NODE_EMPTY, |_| {}) }
}

/// `cuGraphAddMemsetNode` (in the session's current context on the server).
pub unsafe fn graph_add_memset_node(
    node: *mut CUgraphNode,
    graph: CUgraph,
    deps: *const CUgraphNode,
    ndeps: usize,
    params: *const CUDA_MEMSET_NODE_PARAMS_st,
    _ctx: CUcontext,
) -> u32 {
    // SAFETY: null or the caller's parameters.
    let Some(p) = (unsafe { params.as_ref() }).copied() else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    let write = |w: &mut gpupool_remote::wire::Writer| {
        w.put(&p.dst);
        w.put(&(p.pitch as u64));
        w.put(&p.value);
        w.put(&p.elementSize);
        w.put(&(p.width as u64));
        w.put(&(p.height as u64));
    };
    // SAFETY: the caller's arguments.
    unsafe { add_node(node, graph, deps, ndeps, custom::NODE_MEMSET, write) }
}

/// `cuGraphAddChildGraphNode`.
pub unsafe fn graph_add_child_graph_node(
    node: *mut CUgraphNode,
    graph: CUgraph,
    deps: *const CUgraphNode,
    ndeps: usize,
    child: CUgraph,
) -> u32 {
    let write = |w: &mut gpupool_remote::wire::Writer| w.put(&(child as usize as u64));
    // SAFETY: the caller's arguments.
    let rc = unsafe { add_node(node, graph, deps, ndeps, custom::NODE_CHILD, write) };
    if rc == CUDA_SUCCESS {
        crate::graph_host::child_added(graph, child);
    }
    rc
}

/// `cuGraphAddMemcpyNode` (in the session's current context on the server): copies between
/// device memory and arrays, and between host memory and either through a staging buffer
/// (`graph_host`), as the server cannot reach the client's memory; host to host answers
/// `CUDA_ERROR_NOT_SUPPORTED`.
pub unsafe fn graph_add_memcpy_node(
    node: *mut CUgraphNode,
    graph: CUgraph,
    deps: *const CUgraphNode,
    ndeps: usize,
    params: *const CUDA_MEMCPY3D,
    _ctx: CUcontext,
) -> u32 {
    if node.is_null() || graph.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let c = match crate::copies::node_copy(params, graph) {
        Ok(c) => c,
        Err(e) => return e,
    };
    // SAFETY: the caller's arguments.
    unsafe { add_node(node, graph, deps, ndeps, custom::NODE_MEMCPY, |w| w.put(&c)) }
}

/// `cuGraphAddHostNode`: not forwarded (the server cannot call the client's function).
pub unsafe fn graph_add_host_node(
    node: *mut CUgraphNode,
    graph: CUgraph,
    _deps: *const CUgraphNode,
    _ndeps: usize,
    params: *const CUDA_HOST_NODE_PARAMS_st,
) -> u32 {
    if node.is_null() || graph.is_null() || params.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    CUDA_ERROR_NOT_SUPPORTED
}
