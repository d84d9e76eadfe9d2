//! `libgpupool.so`, preloaded into unmodified CUDA programs (`LD_PRELOAD` or
//! `/etc/ld.so.preload`). It enforces the tenant's hard device-memory limits on every allocation
//! path, shows the tenant a virtual view of memory and devices in CUDA and NVML, and keeps the
//! tenant's usage in a shared region (see `gpupool-region`).
//!
//! The list below is the only declaration of what is intercepted: it makes the C exports, the
//! answers to `cuGetProcAddress` / `dlsym`, and the forwarders to the real driver (`real::*`).
//! Everything not listed is left to the real driver untouched.
//!
//! Safety: every `unsafe fn` here implements the driver / NVML function named in its doc
//! comment and has that function's contract.

#![warn(missing_docs)]
#![allow(clippy::missing_safety_doc)]

pub mod captures;
pub mod compute;
pub mod coordination;
pub mod cost;
pub mod driver;
pub mod graph_memory;
pub mod idle_gate;
pub mod lifecycle;
pub mod log;
pub mod lookup;
pub mod memory;
pub mod others_share;
pub mod pacing;
pub mod pools;
pub mod primary_context;
pub mod real_lib;
pub mod room;
pub use gpupool_cuda::spinlock;
pub mod spill;
pub mod tenant;
pub mod tracking;
pub mod view;
pub mod vmm;

gpupool_cuda::export_functions! {
    forward_via crate::real_lib::resolve;
    cuInit => lookup::init;
    cuGetProcAddress => lookup::get_proc_address;
    cuGetProcAddress_v2 => lookup::get_proc_address_v2;

    cuMemAlloc_v2 => memory::mem_alloc;
    cuMemAllocPitch_v2 => memory::mem_alloc_pitch;
    cuMemAllocManaged => memory::mem_alloc_managed;
    cuMemFree_v2 => memory::mem_free;
    cuMemAllocAsync => memory::mem_alloc_async;
    cuMemAllocAsync_ptsz => memory::mem_alloc_async_ptsz;
    cuMemAllocFromPoolAsync => memory::mem_alloc_from_pool_async;
    cuMemAllocFromPoolAsync_ptsz => memory::mem_alloc_from_pool_async_ptsz;
    cuMemPoolCreate => memory::mem_pool_create;
    cuMemPoolDestroy => memory::mem_pool_destroy;
    cuDeviceGetDefaultMemPool => memory::device_get_default_mem_pool;
    cuDeviceGetMemPool => memory::device_get_mem_pool;
    cuMemFreeAsync => memory::mem_free_async;
    cuMemFreeAsync_ptsz => memory::mem_free_async_ptsz;
    cuMemCreate => memory::mem_create;
    cuMemRelease => memory::mem_release;
    cuMemMap => memory::mem_map;
    cuMemUnmap => memory::mem_unmap;
    cuArrayCreate_v2 => memory::array_create;
    cuArray3DCreate_v2 => memory::array_3d_create;
    cuArrayDestroy => memory::array_destroy;
    cuMipmappedArrayCreate => memory::mipmapped_array_create;
    cuMipmappedArrayDestroy => memory::mipmapped_array_destroy;
    cuDevicePrimaryCtxRetain => primary_context::primary_ctx_retain;
    cuCtxCreate_v2 => memory::ctx_create;
    cuCtxCreate_v3 => memory::ctx_create_v3;
    cuCtxCreate_v4 => memory::ctx_create_v4;
    cuCtxDestroy_v2 => memory::ctx_destroy;

    cuLaunchKernel => compute::launch_kernel;
    cuLaunchKernel_ptsz => compute::launch_kernel_ptsz;
    cuLaunchKernelEx => compute::launch_kernel_ex;
    cuLaunchKernelEx_ptsz => compute::launch_kernel_ex_ptsz;
    cuLaunchCooperativeKernel => compute::launch_cooperative_kernel;
    cuLaunchCooperativeKernel_ptsz => compute::launch_cooperative_kernel_ptsz;
    cuLaunchCooperativeKernelMultiDevice => compute::launch_cooperative_kernel_multi_device;
    cuGraphLaunch => graph_memory::graph_launch;
    cuGraphLaunch_ptsz => graph_memory::graph_launch_ptsz;
    cuGraphUpload => graph_memory::graph_upload;
    cuGraphInstantiateWithFlags => graph_memory::instantiate_with_flags;
    cuGraphInstantiate => graph_memory::instantiate;
    cuGraphInstantiate_v2 => graph_memory::instantiate_v2;
    cuGraphInstantiateWithParams => graph_memory::instantiate_with_params;
    cuGraphInstantiateWithParams_ptsz => graph_memory::instantiate_with_params_ptsz;
    cuGraphExecDestroy => graph_memory::exec_destroy;
    cuGraphDestroy => graph_memory::graph_destroy;
    cuGraphAddMemAllocNode => graph_memory::add_mem_alloc_node;
    cuStreamSynchronize => pools::stream_synchronize;
    cuStreamSynchronize_ptsz => pools::stream_synchronize_ptsz;
    cuCtxSynchronize => pools::ctx_synchronize;
    cuEventSynchronize => pools::event_synchronize;
    cuStreamBeginCapture_v2 => captures::begin_capture;
    cuStreamBeginCapture_v2_ptsz => captures::begin_capture_ptsz;
    cuStreamEndCapture => captures::end_capture;
    cuStreamEndCapture_ptsz => captures::end_capture_ptsz;

    cuMemGetInfo_v2 => view::mem_get_info;
    cuDeviceTotalMem_v2 => view::device_total_mem;
    nvmlDeviceGetMemoryInfo => view::nvml_memory_info;
    nvmlDeviceGetMemoryInfo_v2 => view::nvml_memory_info_v2;
    nvmlDeviceGetCount_v2 => view::nvml_device_count;
    nvmlDeviceGetHandleByIndex_v2 => view::nvml_handle_by_index;
    nvmlDeviceGetComputeRunningProcesses_v3 => view::nvml_compute_processes_v3;
    nvmlDeviceGetComputeRunningProcesses_v2 => view::nvml_compute_processes_v2;
    nvmlDeviceGetComputeRunningProcesses => view::nvml_compute_processes_v1;
    nvmlDeviceGetGraphicsRunningProcesses_v3 => view::nvml_graphics_processes_v3;
    nvmlDeviceGetCount => view::nvml_device_count_v1;
    nvmlDeviceGetHandleByIndex => view::nvml_handle_by_index_v1;
    nvmlDeviceGetHandleByUUID => view::nvml_handle_by_uuid;
    nvmlDeviceGetHandleByPciBusId_v2 => view::nvml_handle_by_pci_bus_id;

    @gated_via crate::idle_gate::enter {
        cuMemcpy;
        cuMemcpy_ptds;
        cuMemcpyAsync;
        cuMemcpyAsync_ptsz;
        cuMemcpyHtoD_v2;
        cuMemcpyHtoD_v2_ptds;
        cuMemcpyHtoDAsync_v2;
        cuMemcpyHtoDAsync_v2_ptsz;
        cuMemcpyDtoH_v2;
        cuMemcpyDtoH_v2_ptds;
        cuMemcpyDtoHAsync_v2;
        cuMemcpyDtoHAsync_v2_ptsz;
        cuMemcpyDtoD_v2;
        cuMemcpyDtoD_v2_ptds;
        cuMemcpyDtoDAsync_v2;
        cuMemcpyDtoDAsync_v2_ptsz;
        cuMemsetD8_v2;
        cuMemsetD8_v2_ptds;
        cuMemsetD8Async;
        cuMemsetD8Async_ptsz;
        cuMemsetD32_v2;
        cuMemsetD32_v2_ptds;
        cuMemsetD32Async;
        cuMemsetD32Async_ptsz;
    }
}
