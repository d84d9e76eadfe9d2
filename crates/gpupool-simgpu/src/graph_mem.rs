//! Graph memory: `cuMemAllocAsync` and `cuMemFreeAsync` on a stream being captured become
//! allocation and free nodes. As on a real driver, an allocation node's address is fixed when
//! it is recorded, and the memory behind it is taken when a launch reaches the node, from the
//! device's graph memory: what a free node (or a later `cuMemFreeAsync`) gives back stays
//! reserved there, still charged to the card, for later launches, until
//! `cuDeviceGraphMemTrim`. `cuDeviceGetGraphMemAttribute` reports used and reserved bytes.
//! `cuGraphAddMemAllocNode` / `cuGraphAddMemFreeNode` add the same nodes one by one.

use crate::capture;
use crate::ctx::{device, require_current};
use crate::graph::{add_node, Node};
use crate::mem::{map_anonymous, mapped_size, register, uncharge, write, Alloc, Kind};
use gpupool_cuda::cu::{
    CUDA_MEM_ALLOC_NODE_PARAMS_v1_st, CUdevice, CUdeviceptr, CUgraph, CUgraphNode, CUgraphNodeType,
    CUstream,
};
use gpupool_cuda::result::*;
use gpupool_cuda::spinlock::{ForkLock, SpinLock};
use std::collections::BTreeMap;
use std::ffi::c_void;

/// Graph memory of one device.
#[derive(Debug, Clone, Copy, Default)]
struct DeviceMemory {
    used: u64,
    used_high: u64,
    reserved: u64,
    reserved_high: u64,
}

/// One allocation node's memory.
#[derive(Debug, Clone, Copy)]
struct Block {
    ordinal: i32,
    mapped: u64,
    /// Taken by a launch and not freed yet.
    live: bool,
}

#[derive(Default)]
struct State {
    devices: BTreeMap<i32, DeviceMemory>,
    blocks: BTreeMap<u64, Block>,
}

static STATE: SpinLock<Option<State>> = SpinLock::new(None);

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(s.get_or_insert_with(State::default)))
}

/// Grows the graph memory of device `ordinal` (charged to the card) so that `bytes` more than
/// it has in use fit in what it reserves.
fn grow(ordinal: i32, bytes: u64) -> u32 {
    let (m, dev) = match device(ordinal) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let need = with(|s| {
        let d = s.devices.entry(ordinal).or_default();
        d.used.saturating_add(bytes).saturating_sub(d.reserved)
    });
    if need == 0 {
        return CUDA_SUCCESS;
    }
    if let Err(e) = m.reserve(dev, need) {
        return e;
    }
    with(|s| {
        let d = s.devices.entry(ordinal).or_default();
        d.reserved = d.reserved.saturating_add(need);
        d.reserved_high = d.reserved_high.max(d.reserved);
    });
    CUDA_SUCCESS
}

/// A launch reached the allocation node of `base`: its memory is taken from the device's
/// graph memory, which grows when it has too little to spare.
pub(crate) fn take(base: u64) -> u32 {
    let block = with(|s| s.blocks.get(&base).copied());
    let Some(b) = block.filter(|b| !b.live) else {
        // Launched again before the allocation was freed.
        return CUDA_ERROR_INVALID_VALUE;
    };
    let rc = grow(b.ordinal, b.mapped);
    if rc != CUDA_SUCCESS {
        return rc;
    }
    with(|s| {
        let d = s.devices.entry(b.ordinal).or_default();
        d.used = d.used.saturating_add(b.mapped);
        d.used_high = d.used_high.max(d.used);
        if let Some(b) = s.blocks.get_mut(&base) {
            b.live = true;
        }
    });
    CUDA_SUCCESS
}

/// An upload of a graph whose allocation nodes are `bases`: each device's graph memory grows
/// to what they will take beyond what is in use.
pub(crate) fn reserve_for(bases: impl Iterator<Item = u64>) -> u32 {
    let mut wanted: BTreeMap<i32, u64> = BTreeMap::new();
    with(|s| {
        for b in bases
            .filter_map(|base| s.blocks.get(&base))
            .filter(|b| !b.live)
        {
            let w = wanted.entry(b.ordinal).or_default();
            *w = w.saturating_add(b.mapped);
        }
    });
    for (ordinal, bytes) in wanted {
        let rc = grow(ordinal, bytes);
        if rc != CUDA_SUCCESS {
            return rc;
        }
    }
    CUDA_SUCCESS
}

/// The allocation of `base` is freed: its memory stays reserved for the device's graphs.
fn give(base: u64) -> u32 {
    with(|s| {
        let Some(b) = s.blocks.get_mut(&base).filter(|b| b.live) else {
            return CUDA_ERROR_INVALID_VALUE;
        };
        b.live = false;
        let (ordinal, mapped) = (b.ordinal, b.mapped);
        let d = s.devices.entry(ordinal).or_default();
        d.used = d.used.saturating_sub(mapped);
        CUDA_SUCCESS
    })
}

/// A new allocation node's address on the current context's device (nothing charged yet).
fn new_block(size: usize) -> Result<u64, u32> {
    let ctx = require_current()?;
    let mapped = mapped_size(ctx.ordinal, size as u64)?;
    if size == 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let base = map_anonymous(mapped)?;
    register(
        base,
        Alloc {
            size: size as u64,
            mapped,
            ordinal: ctx.ordinal,
            ctx: ctx as *const _ as usize,
            kind: Kind::Graph,
            id: 0,
        },
    );
    with(|s| {
        s.blocks.insert(
            base,
            Block {
                ordinal: ctx.ordinal,
                mapped,
                live: false,
            },
        )
    });
    Ok(base)
}

fn alloc_node(base: u64) -> Node {
    Node::Allocation(base)
}

fn free_node(base: u64) -> Node {
    Node::Work(
        CUgraphNodeType::CU_GRAPH_NODE_TYPE_MEM_FREE,
        Box::new(move || give(base)),
    )
}

fn is_block(ptr: u64) -> bool {
    with(|s| s.blocks.contains_key(&ptr))
}

/// `cuMemAllocAsync` on stream `s`: if `s` is being captured, records an allocation node whose
/// address goes to `out` and returns the call's result.
pub fn capture_alloc(out: *mut CUdeviceptr, size: usize, s: CUstream) -> Option<u32> {
    capture::of(s)?;
    if out.is_null() {
        return Some(CUDA_ERROR_INVALID_VALUE);
    }
    let base = match new_block(size) {
        Ok(b) => b,
        Err(e) => return Some(e),
    };
    let rc = capture::add(s, || alloc_node(base))?;
    Some(if rc == CUDA_SUCCESS {
        write(out, base)
    } else {
        rc
    })
}

/// `cuMemFreeAsync` of `ptr` on stream `s`: if `ptr` is graph memory, records a free node (when
/// `s` is being captured) or frees it now, and returns the call's result.
pub fn free(ptr: CUdeviceptr, s: CUstream) -> Option<u32> {
    is_block(ptr).then(|| capture::add(s, || free_node(ptr)).unwrap_or_else(|| give(ptr)))
}

/// `cuGraphAddMemAllocNode`: the node's address goes to the parameters' `dptr`.
pub unsafe fn graph_add_mem_alloc_node(
    out: *mut CUgraphNode,
    g: CUgraph,
    _deps: *const CUgraphNode,
    _ndeps: usize,
    params: *mut CUDA_MEM_ALLOC_NODE_PARAMS_v1_st,
) -> u32 {
    // SAFETY: null or the caller's parameters.
    let Some(p) = (unsafe { params.as_mut() }) else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    add_node(out, g, || {
        let base = new_block(p.bytesize)?;
        p.dptr = base;
        Ok(alloc_node(base))
    })
}

/// `cuGraphAddMemFreeNode`: `ptr` must be an allocation node's address.
pub unsafe fn graph_add_mem_free_node(
    out: *mut CUgraphNode,
    g: CUgraph,
    _deps: *const CUgraphNode,
    _ndeps: usize,
    ptr: CUdeviceptr,
) -> u32 {
    add_node(out, g, || {
        if is_block(ptr) {
            Ok(free_node(ptr))
        } else {
            Err(CUDA_ERROR_INVALID_VALUE)
        }
    })
}

/// `cuDeviceGetGraphMemAttribute`: used (0), its high mark (1), reserved (2), its high mark (3).
pub unsafe fn device_get_graph_mem_attribute(dev: CUdevice, attr: u32, value: *mut c_void) -> u32 {
    if let Err(e) = device(dev) {
        return e;
    }
    let d = with(|s| s.devices.get(&dev).copied().unwrap_or_default());
    let v = match attr {
        0 => d.used,
        1 => d.used_high,
        2 => d.reserved,
        3 => d.reserved_high,
        _ => return CUDA_ERROR_INVALID_VALUE,
    };
    write(value as *mut u64, v)
}

/// `cuDeviceSetGraphMemAttribute`: the high marks can be reset (to the current values).
pub unsafe fn device_set_graph_mem_attribute(dev: CUdevice, attr: u32, value: *mut c_void) -> u32 {
    if let Err(e) = device(dev) {
        return e;
    }
    if value.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    with(|s| {
        let d = s.devices.entry(dev).or_default();
        match attr {
            1 => d.used_high = d.used,
            3 => d.reserved_high = d.reserved,
            _ => return CUDA_ERROR_INVALID_VALUE,
        }
        CUDA_SUCCESS
    })
}

/// `cuDeviceGraphMemTrim`: the device's graph memory not in use goes back to the card.
pub unsafe fn device_graph_mem_trim(dev: CUdevice) -> u32 {
    if let Err(e) = device(dev) {
        return e;
    }
    let spare = with(|s| {
        let d = s.devices.entry(dev).or_default();
        let spare = d.reserved.saturating_sub(d.used);
        d.reserved -= spare;
        spare
    });
    uncharge(dev, spare);
    CUDA_SUCCESS
}

/// This module's locks (for fork handlers).
pub fn fork_locks() -> [&'static dyn ForkLock; 1] {
    [&STATE]
}
