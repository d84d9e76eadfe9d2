//! Driver functions that neither the simulated driver nor the remote client carries out, with
//! the answers a driver gives when it cannot: stream memory operations (wait / write value: the device
//! attributes that allow them are 0), the kernel parameters of graph nodes and green contexts
//! (partitions of a card's SMs: none can be created, and no stream belongs to one). Libraries
//! such as cuBLAS and cuDNN look these functions up by name and refuse to start without them,
//! but work without calling them.
//!
//! Safety: every `unsafe fn` has the contract of the driver function its doc comment names.

#![allow(clippy::missing_safety_doc)]

use crate::cu::{CUDA_KERNEL_NODE_PARAMS_st, CUgraphExec, CUgraphNode, CUstream};
use crate::result::*;
use std::ffi::c_void;

/// `cuStreamWaitValue32` / `cuStreamBatchMemOp`.
pub unsafe fn stream_memory_operation<S, A, B, C>(_: S, _: A, _: B, _: C) -> u32 {
    CUDA_ERROR_NOT_SUPPORTED
}

/// `cuGraphKernelNodeGetParams`: node parameters are not kept.
pub unsafe fn graph_kernel_node_get_params(
    node: CUgraphNode,
    params: *mut CUDA_KERNEL_NODE_PARAMS_st,
) -> u32 {
    if node.is_null() || params.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    CUDA_ERROR_NOT_SUPPORTED
}

/// `cuGraphExecKernelNodeSetParams`: an instantiated graph is one fixed piece of work.
pub unsafe fn graph_exec_kernel_node_set_params(
    exec: CUgraphExec,
    node: CUgraphNode,
    params: *const CUDA_KERNEL_NODE_PARAMS_st,
) -> u32 {
    if exec.is_null() || node.is_null() || params.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    CUDA_ERROR_NOT_SUPPORTED
}

/// Green contexts and device resources of two arguments (`cuGreenCtxDestroy` aside):
/// `cuCtxFromGreenCtx`, `cuGreenCtxRecordEvent`, `cuGreenCtxWaitEvent`, `cuGreenCtxGetId`.
pub unsafe fn green_context_2<A, B>(_: A, _: B) -> u32 {
    CUDA_ERROR_NOT_SUPPORTED
}

/// Green contexts and device resources of three arguments: `cuDeviceGetDevResource`,
/// `cuCtxGetDevResource`, `cuGreenCtxGetDevResource`, `cuDevResourceGenerateDesc`.
pub unsafe fn green_context_3<A, B, C>(_: A, _: B, _: C) -> u32 {
    CUDA_ERROR_NOT_SUPPORTED
}

/// Green contexts of four arguments: `cuGreenCtxCreate`, `cuGreenCtxStreamCreate`.
pub unsafe fn green_context_4<A, B, C, D>(_: A, _: B, _: C, _: D) -> u32 {
    CUDA_ERROR_NOT_SUPPORTED
}

/// `cuDevSmResourceSplitByCount`.
pub unsafe fn dev_sm_resource_split_by_count(
    _result: *mut c_void,
    _groups: *mut u32,
    _input: *const c_void,
    _remaining: *mut c_void,
    _flags: u32,
    _min_count: u32,
) -> u32 {
    CUDA_ERROR_NOT_SUPPORTED
}

/// `cuGreenCtxDestroy`: no green context exists.
pub unsafe fn green_context_destroy(_g: *mut c_void) -> u32 {
    CUDA_ERROR_INVALID_HANDLE
}

/// `cuStreamGetGreenCtx`: no stream belongs to a green context.
pub unsafe fn stream_get_green_context(_s: CUstream, g: *mut *mut c_void) -> u32 {
    if g.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: the caller's pointer, checked non-null.
    unsafe { *g = std::ptr::null_mut() };
    CUDA_SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_node_parameters_are_refused_after_their_arguments_are_checked() {
        let node = 1usize as CUgraphNode;
        let mut p = std::mem::MaybeUninit::<CUDA_KERNEL_NODE_PARAMS_st>::zeroed();
        // SAFETY (each call): null or valid pointers.
        unsafe {
            assert_eq!(
                graph_kernel_node_get_params(node, std::ptr::null_mut()),
                CUDA_ERROR_INVALID_VALUE
            );
            assert_eq!(
                graph_kernel_node_get_params(node, p.as_mut_ptr()),
                CUDA_ERROR_NOT_SUPPORTED
            );
        }
    }
}
