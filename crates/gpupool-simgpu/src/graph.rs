//! CUDA graphs: nodes added one by one (kernels, sets, copies, host functions, empty nodes,
//! child graphs), and the kernels, copies, sets and host functions a stream capture records
//! (`capture`). An instantiated graph runs its
//! nodes in the order they were added: consecutive kernels as one piece of device work whose
//! duration is the sum of theirs, the rest done at once on the host, as the simulator does
//! all copies. A node handle is its position in its graph (1, 2, …) with its type in bits
//! 48 and up; kernel parameters are not kept ([`gpupool_cuda::absent`] answers reading or
//! changing them).

use crate::copy;
use crate::launch::{duration, Shape};
use crate::mem::write;
use gpupool_cuda::cu::{
    CUDA_GRAPH_INSTANTIATE_PARAMS_st, CUDA_HOST_NODE_PARAMS_st, CUDA_KERNEL_NODE_PARAMS_st,
    CUDA_MEMSET_NODE_PARAMS_st, CUcontext, CUgraph, CUgraphExec, CUgraphNode, CUgraphNodeType,
    CUstream, CUDA_MEMCPY3D,
};
use gpupool_cuda::result::*;
use gpupool_cuda::spinlock::SpinLock;
use std::sync::Arc;

/// Host work a node does when its graph runs: a copy, a set or a host function, with the
/// arguments it was recorded with.
pub type HostWork = Box<dyn Fn() -> u32 + Send + Sync>;

/// Arguments a node keeps until its graph runs: numbers and addresses the caller vouches for
/// until then, as a driver's graph node keeps them, which the node may take to another thread.
pub(crate) struct Kept<T>(pub(crate) T);

// SAFETY: see the type; the node only reads them.
unsafe impl<T> Send for Kept<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Kept<T> {}

impl<T: Copy> Kept<T> {
    /// The kept arguments (a method, so that a closure takes the whole wrapper along).
    pub(crate) fn get(&self) -> T {
        self.0
    }
}

/// What a node does.
pub enum Node {
    /// A kernel of this duration (ns).
    Kernel(u64),
    /// Host work of this node type.
    Work(CUgraphNodeType, HostWork),
    /// The graph-memory allocation whose address is this (`graph_mem`).
    Allocation(u64),
    /// A child graph: the nodes its graph had when it was added.
    Child(Vec<Arc<Node>>),
}

impl Node {
    fn kind(&self) -> CUgraphNodeType {
        match self {
            Node::Kernel(_) => CUgraphNodeType::CU_GRAPH_NODE_TYPE_KERNEL,
            Node::Work(kind, _) => *kind,
            Node::Allocation(_) => CUgraphNodeType::CU_GRAPH_NODE_TYPE_MEM_ALLOC,
            Node::Child(_) => CUgraphNodeType::CU_GRAPH_NODE_TYPE_GRAPH,
        }
    }

    /// Appends the nodes that run for this one to `out`: itself, or a child graph's nodes.
    fn flatten_into(node: &Arc<Node>, out: &mut Vec<Arc<Node>>) {
        match &**node {
            Node::Child(nodes) => nodes.iter().for_each(|n| Node::flatten_into(n, out)),
            _ => out.push(node.clone()),
        }
    }
}

/// First bit of a node handle that holds the node's type.
const KIND_SHIFT: u32 = 48;

/// The handle of the node at `position` (from 1).
fn node_handle(position: usize, node: &Node) -> CUgraphNode {
    (position | (node.kind() as usize) << KIND_SHIFT) as CUgraphNode
}

/// A graph: its nodes, in the order added.
pub struct Graph {
    nodes: SpinLock<Vec<Arc<Node>>>,
}

impl Graph {
    /// A new graph without nodes, as a leaked handle.
    pub(crate) fn leaked() -> &'static Graph {
        Box::leak(Box::new(Graph {
            nodes: SpinLock::new(Vec::new()),
        }))
    }

    /// Adds `node`; its handle.
    pub(crate) fn add(&self, node: Node) -> CUgraphNode {
        let mut nodes = self.nodes.lock();
        nodes.push(Arc::new(node));
        node_handle(nodes.len(), &nodes[nodes.len() - 1])
    }

    /// Adds the nodes of `exec` in their order.
    fn add_all(&self, exec: &GraphExec) {
        self.nodes.lock().extend(exec.nodes.iter().cloned());
    }
}

/// An instantiated graph: its nodes when it was instantiated.
pub struct GraphExec {
    nodes: Vec<Arc<Node>>,
}

impl GraphExec {
    /// Runs the nodes on stream `s`: consecutive kernels as one piece of work, host work at
    /// once; the first error stops it.
    fn run(&self, s: CUstream) -> Result<(), u32> {
        let mut kernels = 0u64;
        for node in &self.nodes {
            match &**node {
                Node::Kernel(d) => kernels = kernels.saturating_add(*d),
                // Flattened at instantiation.
                Node::Child(_) => {}
                Node::Work(..) | Node::Allocation(_) => {
                    if kernels > 0 {
                        crate::work::launch(s, std::mem::take(&mut kernels))?;
                    }
                    let rc = match &**node {
                        Node::Work(_, work) => work(),
                        Node::Allocation(base) => crate::graph_mem::take(*base),
                        _ => CUDA_SUCCESS,
                    };
                    if rc != CUDA_SUCCESS {
                        return Err(rc);
                    }
                }
            }
        }
        if kernels > 0 || self.nodes.is_empty() {
            crate::work::launch(s, kernels)?;
        }
        Ok(())
    }
}

fn graph_ref(g: CUgraph) -> Result<&'static Graph, u32> {
    if g.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: graph handles are leaked Box<Graph>.
    Ok(unsafe { &*(g as *const Graph) })
}

fn exec_ref(e: CUgraphExec) -> Result<&'static GraphExec, u32> {
    if e.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: exec handles are leaked Box<GraphExec>.
    Ok(unsafe { &*(e as *const GraphExec) })
}

/// `cuGraphCreate`.
pub unsafe fn graph_create(out: *mut CUgraph, _flags: u32) -> u32 {
    write(out, Graph::leaked() as *const Graph as CUgraph)
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
        Ok(graph.add(Node::Kernel(d)))
    });
    match result {
        Ok(handle) => write(node, handle),
        Err(e) => e,
    }
}

/// Adds `make`'s node to graph `g` (dependencies are accepted; nodes run in the order added)
/// and writes its handle.
pub(crate) fn add_node(
    out: *mut CUgraphNode,
    g: CUgraph,
    make: impl FnOnce() -> Result<Node, u32>,
) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    match graph_ref(g).and_then(|graph| Ok(graph.add(make()?))) {
        Ok(handle) => write(out, handle),
        Err(e) => e,
    }
}

/// `cuGraphAddEmptyNode`: a node that does nothing.
pub unsafe fn graph_add_empty_node(
    out: *mut CUgraphNode,
    g: CUgraph,
    _deps: *const CUgraphNode,
    _ndeps: usize,
) -> u32 {
    let nothing = || Box::new(|| CUDA_SUCCESS) as HostWork;
    add_node(out, g, || {
        Ok(Node::Work(
            CUgraphNodeType::CU_GRAPH_NODE_TYPE_EMPTY,
            nothing(),
        ))
    })
}

/// `cuGraphAddMemsetNode`: a 1, 2 or 4-byte set of `width` elements in each of `height`
/// rows `pitch` bytes apart, done when the graph runs.
pub unsafe fn graph_add_memset_node(
    out: *mut CUgraphNode,
    g: CUgraph,
    _deps: *const CUgraphNode,
    _ndeps: usize,
    params: *const CUDA_MEMSET_NODE_PARAMS_st,
    _ctx: CUcontext,
) -> u32 {
    // SAFETY: null or the caller's parameters, copied now as a driver does.
    let Some(p) = (unsafe { params.as_ref() }).copied() else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    let set: fn(u64, usize, u32, usize, usize) -> u32 = match p.elementSize {
        // SAFETY (each): the set's bounds are checked against the simulator's memory.
        1 => |d, pitch, v, w, h| unsafe { copy::memset_d2d8(d, pitch, v as u8, w, h) },
        2 => |d, pitch, v, w, h| unsafe { copy::memset_d2d16(d, pitch, v as u16, w, h) },
        4 => |d, pitch, v, w, h| unsafe { copy::memset_d2d32(d, pitch, v, w, h) },
        _ => return CUDA_ERROR_INVALID_VALUE,
    };
    let pitch = if p.height <= 1 {
        p.width.saturating_mul(p.elementSize as usize)
    } else {
        p.pitch
    };
    let run = move || set(p.dst, pitch, p.value, p.width, p.height.max(1));
    add_node(out, g, || {
        Ok(Node::Work(
            CUgraphNodeType::CU_GRAPH_NODE_TYPE_MEMSET,
            Box::new(run),
        ))
    })
}

/// `cuGraphAddMemcpyNode`: the copy a `CUDA_MEMCPY3D` describes, done when the graph runs.
pub unsafe fn graph_add_memcpy_node(
    out: *mut CUgraphNode,
    g: CUgraph,
    _deps: *const CUgraphNode,
    _ndeps: usize,
    params: *const CUDA_MEMCPY3D,
    _ctx: CUcontext,
) -> u32 {
    // SAFETY: null or the caller's parameters, copied now as a driver does.
    let Some(p) = (unsafe { params.as_ref() }).copied() else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    let kept = Kept(p);
    // SAFETY: the kept parameters; the copy checks device ranges when it runs.
    let run = move || unsafe { copy::memcpy_3d(&kept.get()) };
    add_node(out, g, || {
        Ok(Node::Work(
            CUgraphNodeType::CU_GRAPH_NODE_TYPE_MEMCPY,
            Box::new(run),
        ))
    })
}

/// `cuGraphAddHostNode`: the function called with its data when the graph runs.
pub unsafe fn graph_add_host_node(
    out: *mut CUgraphNode,
    g: CUgraph,
    _deps: *const CUgraphNode,
    _ndeps: usize,
    params: *const CUDA_HOST_NODE_PARAMS_st,
) -> u32 {
    // SAFETY: null or the caller's parameters.
    let Some(p) = (unsafe { params.as_ref() }).copied() else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    let (Some(f), user) = (p.fn_, p.userData as usize) else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    let run = move || {
        // SAFETY: the user's function with the user's data, as given.
        unsafe { f(user as *mut std::ffi::c_void) };
        CUDA_SUCCESS
    };
    add_node(out, g, || {
        Ok(Node::Work(
            CUgraphNodeType::CU_GRAPH_NODE_TYPE_HOST,
            Box::new(run),
        ))
    })
}

/// `cuGraphAddChildGraphNode`: the child graph's nodes as they are now.
pub unsafe fn graph_add_child_graph_node(
    out: *mut CUgraphNode,
    g: CUgraph,
    _deps: *const CUgraphNode,
    _ndeps: usize,
    child: CUgraph,
) -> u32 {
    if child == g {
        return CUDA_ERROR_INVALID_VALUE;
    }
    add_node(out, g, || {
        Ok(Node::Child(graph_ref(child)?.nodes.lock().clone()))
    })
}

/// `cuGraphInstantiateWithFlags` (and `cuGraphInstantiate_v2`'s first two arguments).
pub unsafe fn graph_instantiate_with_flags(out: *mut CUgraphExec, g: CUgraph, _flags: u64) -> u32 {
    match graph_ref(g) {
        Ok(graph) => {
            let mut nodes = Vec::new();
            for node in graph.nodes.lock().iter() {
                Node::flatten_into(node, &mut nodes);
            }
            let e = Box::new(GraphExec { nodes });
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

/// `cuGraphLaunch` (and `_ptsz`): into a stream being captured, its nodes are added to the
/// capture's graph.
pub unsafe fn graph_launch(exec: CUgraphExec, stream: CUstream) -> u32 {
    let e = match exec_ref(exec) {
        Ok(e) => e,
        Err(err) => return err,
    };
    if let Some(rc) = crate::capture::add_graph(stream, |g| g.add_all(e)) {
        return rc;
    }
    match e.run(stream) {
        Ok(()) => CUDA_SUCCESS,
        Err(err) => err,
    }
}

/// `cuGraphUpload` (and `_ptsz`): the device's graph memory grows to what the graph's
/// allocation nodes will take (kernels need no upload here).
pub unsafe fn graph_upload(exec: CUgraphExec, stream: CUstream) -> u32 {
    let e = match exec_ref(exec).and_then(|e| crate::stream::stream_ref(stream).map(|_| e)) {
        Ok(e) => e,
        Err(e) => return e,
    };
    crate::graph_mem::reserve_for(e.nodes.iter().filter_map(|n| match **n {
        Node::Allocation(base) => Some(base),
        _ => None,
    }))
}

/// `cuGraphInstantiateWithParams` (and `_ptsz`): instantiates, uploads on the parameters'
/// stream when their flags ask, and reports the result in them.
pub unsafe fn graph_instantiate_with_params(
    out: *mut CUgraphExec,
    g: CUgraph,
    params: *mut CUDA_GRAPH_INSTANTIATE_PARAMS_st,
) -> u32 {
    // SAFETY: the caller's pointers; the instance is ours when uploaded.
    unsafe {
        gpupool_cuda::graph_params::instantiate_with_params(
            out,
            params,
            |flags| graph_instantiate_with_flags(out, g, flags),
            |e, s| graph_upload(e, s),
        )
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
    let graph = match graph_ref(g) {
        Ok(graph) => graph,
        Err(e) => return e,
    };
    let handles: Vec<CUgraphNode> = graph
        .nodes
        .lock()
        .iter()
        .enumerate()
        .map(|(i, node)| node_handle(i + 1, node))
        .collect();
    if nodes.is_null() {
        return write(n, handles.len());
    }
    // SAFETY: the caller's capacity, then room for that many nodes.
    let room = unsafe { *n };
    let written = handles.len().min(room);
    for (i, h) in handles.iter().take(written).enumerate() {
        // SAFETY: i < the caller's capacity.
        unsafe { *nodes.add(i) = *h };
    }
    write(n, written)
}

/// `cuGraphNodeGetType`: the type the node's handle carries.
pub unsafe fn graph_node_get_type(node: CUgraphNode, kind: *mut u32) -> u32 {
    if node.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    write(kind, (node as usize >> KIND_SHIFT) as u32)
}
