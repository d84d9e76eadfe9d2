//! Driver and NVML functions that neither the simulated driver nor the remote client carries
//! out, with the answers a driver gives when it cannot: stream memory operations (wait / write
//! value: the device attributes that allow them are 0), the kernel parameters of graph nodes,
//! green contexts (partitions of a card's SMs: none can be created, and no stream belongs to
//! one), and NVML's NVLink peers and GPU fabric (none, as on a PCIe card). Libraries such as
//! cuBLAS, cuDNN and PyTorch look these functions up by name and refuse to start without
//! them, but work without calling them.
//!
//! Safety: every `unsafe fn` has the contract of the driver function its doc comment names.

#![allow(clippy::missing_safety_doc)]

use crate::cu::{CUDA_KERNEL_NODE_PARAMS_st, CUgraphExec, CUgraphNode, CUstream};
use crate::result::*;
use std::ffi::{c_uint, c_void};

/// `cuStreamWaitValue32` / `cuStreamWriteValue32` / their 64-bit forms / `cuStreamBatchMemOp`
/// (and their `_v2`).
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

/// `nvmlDeviceGetNvLinkRemoteDeviceType` / `nvmlDeviceGetNvLinkRemotePciInfo_v2`: no link.
pub unsafe fn nvml_nvlink_query<D, O>(_device: D, _link: c_uint, out: *mut O) -> u32 {
    if out.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    NVML_ERROR_NOT_SUPPORTED
}

/// `nvmlDeviceGetGpuFabricInfoV`: the card is on no fabric (probe state
/// `NVML_GPU_FABRIC_STATE_NOT_SUPPORTED`, as a PCIe card answers), for structure versions 2
/// to 4 (whose state is the byte at offset 28).
pub unsafe fn nvml_fabric_info<D>(_device: D, info: *mut c_void) -> u32 {
    if info.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: the caller's structure starts with its version.
    let version = unsafe { (info as *const u32).read_unaligned() };
    let size = (version & 0x00ff_ffff) as usize;
    if !(2..=4).contains(&(version >> 24)) || !(29..=4096).contains(&size) {
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    }
    // SAFETY: the structure of the version the caller named is `size` bytes; all but the
    // version are zeroed (no cluster, status success, state 0: not supported).
    unsafe { std::ptr::write_bytes((info as *mut u8).add(4), 0, size - 4) };
    NVML_SUCCESS
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

    #[test]
    fn fabric_info_says_no_fabric_for_the_versions_it_knows() {
        let mut info = [0xffu8; 40];
        let v3 = 40u32 | (3 << 24);
        info[..4].copy_from_slice(&v3.to_le_bytes());
        // SAFETY (each call): a 40-byte structure.
        unsafe {
            assert_eq!(
                nvml_fabric_info(0usize, info.as_mut_ptr().cast()),
                NVML_SUCCESS
            );
            assert_eq!(info[28], 0, "NVML_GPU_FABRIC_STATE_NOT_SUPPORTED");
            assert!(info[4..].iter().all(|&b| b == 0));
            info[..4].copy_from_slice(&(40u32 | (9 << 24)).to_le_bytes());
            assert_eq!(
                nvml_fabric_info(0usize, info.as_mut_ptr().cast()),
                NVML_ERROR_ARGUMENT_VERSION_MISMATCH
            );
            assert_eq!(
                nvml_fabric_info(0usize, std::ptr::null_mut()),
                NVML_ERROR_INVALID_ARGUMENT
            );
        }
    }
}
