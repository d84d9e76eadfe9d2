//! A session's graph nodes added by hand: empty, memset, child-graph, memory and kernel
//! nodes, each checked against the session's graphs, nodes and memory.

use super::Session;
use crate::calls::custom;
use crate::calls::Class;
use crate::kernel_args::KernelArgs;
use crate::launch_ex::RawKernelNodeParams;
use crate::wire::{DecodeError, Reader, Writer};
use gpupool_cuda::cu::*;
use gpupool_cuda::result::*;

impl Session {
    /// Whether `graph` and every node of `deps` are the session's.
    fn graph_and_dependencies_valid(&self, graph: u64, deps: &[u64]) -> bool {
        graph != 0
            && self.valid(Class::Graph, graph)
            && deps
                .iter()
                .all(|&d| d != 0 && self.valid(Class::GraphNode, d))
    }

    /// [`custom::GRAPH_ADD_NODE`]: an empty, memset, device-to-device copy, child graph,
    /// memory allocation or memory free node.
    pub(super) fn graph_add_node(
        &mut self,
        r: &mut Reader<'_>,
        outs: &mut Writer,
    ) -> Result<u32, DecodeError> {
        let graph: u64 = r.get("graph")?;
        let deps = read_dependencies(r)?;
        let kind: u8 = r.get("node kind")?;
        let (mut memset, mut copy, mut child) = (None, None, 0u64);
        let (mut ordinal, mut bytes, mut address) = (0i32, 0u64, 0u64);
        match kind {
            custom::NODE_EMPTY => {}
            custom::NODE_MEM_ALLOC => {
                ordinal = r.get("device")?;
                bytes = r.get("size")?;
            }
            custom::NODE_MEM_FREE => address = r.get("address")?,
            custom::NODE_MEMSET => {
                memset = Some(CUDA_MEMSET_NODE_PARAMS_st {
                    dst: r.get("destination")?,
                    pitch: r.get::<u64>("pitch")? as usize,
                    value: r.get("value")?,
                    elementSize: r.get("element size")?,
                    width: r.get::<u64>("width")? as usize,
                    height: r.get::<u64>("height")? as usize,
                })
            }
            custom::NODE_CHILD => child = r.get("child graph")?,
            custom::NODE_MEMCPY => copy = Some(crate::copy3d::Copy3d::get(r)?),
            _ => {
                return Err(DecodeError {
                    what: "node kind",
                    at: 0,
                })
            }
        }
        r.end()?;
        if !self.graph_and_dependencies_valid(graph, &deps) {
            return Ok(CUDA_ERROR_INVALID_HANDLE);
        }
        if let Some(p) = &memset {
            match memset_extent(p) {
                Some(len) if self.owns(p.dst, len) => {}
                _ => return Ok(CUDA_ERROR_INVALID_VALUE),
            }
        }
        if let Some(c) = &copy {
            if c.src.kind == crate::copy3d::HOST || c.dst.kind == crate::copy3d::HOST {
                return Ok(CUDA_ERROR_NOT_SUPPORTED);
            }
            if !self.sides_owned(c) {
                return Ok(CUDA_ERROR_INVALID_VALUE);
            }
        }
        if kind == custom::NODE_MEM_FREE && !self.owns(address, 1) {
            return Ok(CUDA_ERROR_INVALID_VALUE);
        }
        if kind == custom::NODE_MEM_ALLOC && (bytes == 0 || usize::try_from(bytes).is_err()) {
            return Ok(CUDA_ERROR_INVALID_VALUE);
        }
        if kind == custom::NODE_CHILD {
            if child == graph {
                return Ok(CUDA_ERROR_INVALID_VALUE);
            }
            if !self.valid(Class::Graph, child) {
                return Ok(CUDA_ERROR_INVALID_HANDLE);
            }
        }
        let e = &self.extra;
        let deps: Vec<CUgraphNode> = deps.iter().map(|&d| d as usize as CUgraphNode).collect();
        let (g, n) = (graph as usize as CUgraph, deps.len());
        let mut node: CUgraphNode = std::ptr::null_mut();
        let current = || {
            let mut ctx: CUcontext = std::ptr::null_mut();
            match e.cuCtxGetCurrent {
                // SAFETY: a local out value.
                Some(get) => match unsafe { get(&mut ctx) } {
                    CUDA_SUCCESS => Ok(ctx),
                    err => Err(err),
                },
                None => Err(CUDA_ERROR_NOT_FOUND),
            }
        };
        // SAFETY (each): a graph and nodes of this session, a set or copy of its own memory,
        // a child graph of its own; the driver copies the parameters.
        let rc = match (kind, memset, copy) {
            (custom::NODE_MEMSET, Some(p), _) => match (e.cuGraphAddMemsetNode, current()) {
                (Some(add), Ok(ctx)) => unsafe { add(&mut node, g, deps.as_ptr(), n, &p, ctx) },
                (None, _) => CUDA_ERROR_NOT_FOUND,
                (_, Err(err)) => err,
            },
            (custom::NODE_MEMCPY, _, Some(c)) => match (e.cuGraphAddMemcpyNode, current()) {
                (Some(add), Ok(ctx)) => {
                    let none = std::ptr::null_mut();
                    let p = super::copies::memcpy_3d_params(&c, none, none);
                    unsafe { add(&mut node, g, deps.as_ptr(), n, &p, ctx) }
                }
                (None, _) => CUDA_ERROR_NOT_FOUND,
                (_, Err(err)) => err,
            },
            (custom::NODE_CHILD, ..) => match e.cuGraphAddChildGraphNode {
                Some(add) => unsafe {
                    add(&mut node, g, deps.as_ptr(), n, child as usize as CUgraph)
                },
                None => CUDA_ERROR_NOT_FOUND,
            },
            (custom::NODE_MEM_ALLOC, ..) => match e.cuGraphAddMemAllocNode {
                Some(add) => {
                    let mut p = mem_alloc_node_params(ordinal, bytes as usize);
                    let rc = unsafe { add(&mut node, g, deps.as_ptr(), n, &mut p) };
                    address = p.dptr;
                    rc
                }
                None => CUDA_ERROR_NOT_FOUND,
            },
            (custom::NODE_MEM_FREE, ..) => match e.cuGraphAddMemFreeNode {
                Some(add) => unsafe { add(&mut node, g, deps.as_ptr(), n, address) },
                None => CUDA_ERROR_NOT_FOUND,
            },
            _ => match e.cuGraphAddEmptyNode {
                Some(add) => unsafe { add(&mut node, g, deps.as_ptr(), n) },
                None => CUDA_ERROR_NOT_FOUND,
            },
        };
        if rc == CUDA_SUCCESS {
            self.handles.insert(Class::GraphNode, node as usize as u64);
            outs.put(&(node as usize as u64));
            if kind == custom::NODE_MEM_ALLOC {
                // The graph's memory at this address is the session's when the graph runs.
                self.allocated(rc, address, bytes, outs);
            }
        }
        Ok(rc)
    }

    /// [`custom::GRAPH_ADD_KERNEL_NODE`]: a kernel node whose function, shape and arguments
    /// are checked as a launch's.
    pub(super) fn graph_add_kernel_node(
        &mut self,
        r: &mut Reader<'_>,
        outs: &mut Writer,
    ) -> Result<u32, DecodeError> {
        let graph: u64 = r.get("graph")?;
        let deps = read_dependencies(r)?;
        let f: u64 = r.get("function")?;
        let grid: [u32; 3] = r.get("grid")?;
        let block: [u32; 3] = r.get("block")?;
        let shared: u32 = r.get("shared memory")?;
        let mut args = KernelArgs::read(r)?;
        r.end()?;
        if !self.graph_and_dependencies_valid(graph, &deps) {
            return Ok(CUDA_ERROR_INVALID_HANDLE);
        }
        let f = match self.function(f) {
            Ok(f) => f,
            Err(e) => return Ok(e),
        };
        let Some(add) = self.extra.cuGraphAddKernelNode_v2 else {
            return Ok(CUDA_ERROR_NOT_FOUND);
        };
        let (params, extra) = args.pointers();
        let p = RawKernelNodeParams {
            func: f as usize as CUfunction,
            grid,
            block,
            shared,
            params,
            extra,
            kern: std::ptr::null_mut(),
            ctx: std::ptr::null_mut(),
        };
        let deps: Vec<CUgraphNode> = deps.iter().map(|&d| d as usize as CUgraphNode).collect();
        let mut node: CUgraphNode = std::ptr::null_mut();
        // SAFETY: a graph and function of this session, its own nodes as dependencies; the
        // driver copies the arguments while adding the node.
        let rc = unsafe {
            add(
                &mut node,
                graph as usize as CUgraph,
                deps.as_ptr(),
                deps.len(),
                &p,
            )
        };
        if rc == CUDA_SUCCESS {
            self.handles.insert(Class::GraphNode, node as usize as u64);
            outs.put(&(node as usize as u64));
        }
        Ok(rc)
    }
}

/// A node's dependencies as they travel: a count (at most
/// [`custom::MAX_NODE_DEPENDENCIES`]), then the nodes.
fn read_dependencies(r: &mut Reader<'_>) -> Result<Vec<u64>, DecodeError> {
    let n: u32 = r.get("dependency count")?;
    if n > custom::MAX_NODE_DEPENDENCIES {
        return Err(DecodeError {
            what: "dependency count",
            at: 0,
        });
    }
    (0..n).map(|_| r.get("dependency")).collect()
}

/// Parameters of an allocation node of `bytes` of device memory on device `ordinal`.
fn mem_alloc_node_params(ordinal: i32, bytes: usize) -> CUDA_MEM_ALLOC_NODE_PARAMS_v1_st {
    // SAFETY: a plain C struct, all zeroes a valid value.
    let mut p: CUDA_MEM_ALLOC_NODE_PARAMS_v1_st = unsafe { std::mem::zeroed() };
    p.poolProps.allocType = CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED;
    p.poolProps.location.type_ = CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE;
    p.poolProps.location.id = ordinal;
    p.bytesize = bytes;
    p
}

/// Bytes from a memset node's destination to the end of its last element (`None`: an element
/// size other than 1, 2 or 4, no rows, rows wider than the pitch, or a size past `u64`).
fn memset_extent(p: &CUDA_MEMSET_NODE_PARAMS_st) -> Option<u64> {
    if !matches!(p.elementSize, 1 | 2 | 4) || p.height == 0 {
        return None;
    }
    let row = (p.width as u64).checked_mul(p.elementSize as u64)?;
    if p.height == 1 {
        return Some(row);
    }
    if (p.pitch as u64) < row {
        return None;
    }
    (p.height as u64 - 1)
        .checked_mul(p.pitch as u64)?
        .checked_add(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memset_node_covers_its_rows_and_nothing_else() {
        let p = |elem, width, height, pitch| CUDA_MEMSET_NODE_PARAMS_st {
            dst: 0x7000_0000,
            pitch,
            value: 0,
            elementSize: elem,
            width,
            height,
        };
        assert_eq!(
            memset_extent(&p(4, 16, 1, 0)),
            Some(64),
            "one row: pitch unused"
        );
        assert_eq!(
            memset_extent(&p(2, 8, 3, 100)),
            Some(216),
            "two pitches and a row"
        );
        assert_eq!(memset_extent(&p(3, 8, 1, 0)), None, "element size");
        assert_eq!(memset_extent(&p(4, 8, 0, 64)), None, "no rows");
        assert_eq!(
            memset_extent(&p(4, 32, 2, 64)),
            None,
            "rows wider than the pitch"
        );
        assert_eq!(memset_extent(&p(4, usize::MAX, 1, 0)), None, "past u64");
        assert_eq!(
            memset_extent(&p(1, 1, usize::MAX, usize::MAX)),
            None,
            "past u64 in rows"
        );
    }
}
