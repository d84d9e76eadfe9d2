//! The remote-GPU client driver: installed as `libcuda.so.1` on a machine without a GPU, it
//! forwards the driver calls of unmodified CUDA programs to a `gpupool serve` GPU server.
//! Installed as `libnvidia-ml.so.1` too, it answers NVML from the server's view of the tenant.
//! NVIDIA's runtime runs on it: its private export tables and symbol lookups are answered here.
//!
//! Configuration (read once, by `cuInit`): `GPUPOOL_REMOTE` (`tcp://HOST:PORT` or
//! `unix:PATH`), `GPUPOOL_REMOTE_TOKEN` or `GPUPOOL_REMOTE_TOKEN_FILE`;
//! `GPUPOOL_REMOTE_TRACE=1` logs lookups; `GPUPOOL_REMOTE_STATS=1` prints at exit how many
//! calls of each number were sent, waited for or not.
//!
//! Safety: every `unsafe fn` implements the driver function named in its doc comment and has
//! that function's contract.

#![warn(missing_docs)]
#![allow(clippy::missing_safety_doc)]

pub mod attributes;
pub mod call_stats;
pub mod conn;
pub mod context;
pub mod copies;
pub mod device;
pub mod device_attributes;
pub mod fork;
pub mod graph;
pub mod graph_host;
pub mod host;
pub mod images;
pub mod ipc;
pub mod kernel_cache;
pub mod link;
pub mod local_answers;
pub mod memory;
pub mod memory_map;
pub mod module;
pub mod names;
pub mod nvml;
pub mod per_thread;
pub mod stream;
pub mod table_client;
pub mod tensor_map;
pub mod variables;
pub mod vmm;

use gpupool_cuda::absent;
use gpupool_cuda::result::*;
use std::ffi::c_char;

/// Writes `v` through a caller's out pointer (null: `CUDA_ERROR_INVALID_VALUE`).
pub unsafe fn write<T>(out: *mut T, v: T) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: non-null out pointer from the caller.
    unsafe { *out = v };
    CUDA_SUCCESS
}

/// `nvmlErrorString`: the one NVML export that returns a pointer rather than a code.
#[no_mangle]
pub extern "C" fn nvmlErrorString(r: u32) -> *const c_char {
    gpupool_cuda::nvml_list::error_string(r).as_ptr()
}

gpupool_cuda::export_functions! {
    with_absent;
    cuInit => device::cu_init;
    cuDriverGetVersion => device::driver_get_version;
    cuGetProcAddress => device::get_proc_address;
    cuGetProcAddress_v2 => device::get_proc_address_v2;
    cuGetExportTable => device::get_export_table;
    cuGetErrorName => get_error_name;
    cuGetErrorString => get_error_string;
    cuModuleGetLoadingMode => device::module_get_loading_mode;
    cuDeviceGet => device::device_get;
    cuDeviceGetCount => device::device_get_count;
    cuDeviceGetName => attributes::device_get_name;
    cuDeviceGetPCIBusId => attributes::device_get_pci_bus_id;

    cuCtxGetCurrent => context::get_current;
    cuCtxSetCurrent => context::set_current;
    cuCtxPushCurrent_v2 => context::push_current;
    cuCtxPopCurrent_v2 => context::pop_current;
    cuCtxPushCurrent => context::push_current;
    cuCtxPopCurrent => context::pop_current;

    cuMemAlloc_v2 => memory::mem_alloc;
    cuMemAllocPitch_v2 => memory::mem_alloc_pitch;
    cuMemAllocManaged => memory::mem_alloc_managed;
    cuMemAllocAsync => memory::mem_alloc_async;
    cuMemAllocFromPoolAsync => memory::mem_alloc_from_pool_async;
    cuMemFree_v2 => memory::mem_free;
    cuMemFreeAsync => memory::mem_free_async;
    cuMemAllocHost_v2 => host::mem_alloc_host;
    cuMemHostAlloc => host::mem_host_alloc;
    cuMemFreeHost => host::mem_free_host;
    cuMemHostGetFlags => host::mem_host_get_flags;
    cuMemHostRegister_v2 => host::mem_host_register;
    cuMemHostUnregister => host::mem_host_unregister;
    cuMemHostGetDevicePointer_v2 => host::mem_host_get_device_pointer;
    cuMemAddressReserve => vmm::mem_address_reserve;
    cuMemAddressFree => vmm::mem_address_free;
    cuMemSetAccess => vmm::mem_set_access;
    cuMemExportToShareableHandle => vmm::mem_export_to_shareable_handle;
    cuMemImportFromShareableHandle => vmm::mem_import_from_shareable_handle;
    cuPointerGetAttribute => attributes::pointer_get_attribute;
    cuPointerGetAttributes => attributes::pointer_get_attributes;
    cuMemPoolGetAttribute => attributes::mem_pool_get_attribute;
    cuMemPoolSetAttribute => attributes::mem_pool_set_attribute;

    cuMemcpy => copies::memcpy;
    cuMemcpyAsync => copies::memcpy_async;
    cuMemcpyHtoD_v2 => copies::htod_sync;
    cuMemcpyDtoH_v2 => copies::dtoh_sync;
    cuMemcpyDtoD_v2 => copies::dtod_sync;
    cuMemcpyHtoDAsync_v2 => copies::htod_async;
    cuMemcpyDtoHAsync_v2 => copies::dtoh_async;
    cuMemcpyDtoDAsync_v2 => copies::dtod_async;
    cuMemcpyPeer => copies::memcpy_peer;
    cuMemcpyPeerAsync => copies::memcpy_peer_async;
    cuMemcpy2D_v2 => copies::memcpy_2d;
    cuMemcpy2DUnaligned_v2 => copies::memcpy_2d;
    cuMemcpy2DAsync_v2 => copies::memcpy_2d_async;
    cuMemcpy3D_v2 => copies::memcpy_3d;
    cuMemcpy3DAsync_v2 => copies::memcpy_3d_async;
    cuMemsetD8_v2 => copies::memset_d8;
    cuMemsetD16_v2 => copies::memset_d16;
    cuMemsetD32_v2 => copies::memset_d32;
    cuMemsetD2D8_v2 => copies::memset_d2d8;
    cuMemsetD2D16_v2 => copies::memset_d2d16;
    cuMemsetD2D32_v2 => copies::memset_d2d32;
    cuMemsetD8Async => copies::memset_d8_async;
    cuMemsetD16Async => copies::memset_d16_async;
    cuMemsetD32Async => copies::memset_d32_async;
    cuMemsetD2D8Async => copies::memset_d2d8_async;
    cuMemsetD2D16Async => copies::memset_d2d16_async;
    cuMemsetD2D32Async => copies::memset_d2d32_async;

    cuModuleLoad => module::module_load;
    cuModuleLoadData => module::module_load_data;
    cuModuleLoadFatBinary => module::module_load_data;
    cuModuleLoadDataEx => module::module_load_data_ex;
    cuModuleGetFunction => module::module_get_function;
    cuLinkCreate_v2 => link::link_create;
    cuLinkAddData_v2 => link::link_add_data;
    cuLinkAddFile_v2 => link::link_add_file;
    cuLinkComplete => link::link_complete;
    cuLinkDestroy => link::link_destroy;
    cuLibraryLoadData => module::library_load_data;
    cuLibraryGetKernel => module::library_get_kernel;
    cuKernelGetFunction => module::kernel_get_function;
    cuKernelGetLibrary => module::kernel_get_library;
    cuLibraryEnumerateKernels => module::library_enumerate_kernels;
    cuCtxGetDevice => local_answers::ctx_get_device;
    cuDeviceGetAttribute => device_attributes::device_get_attribute;
    cuCtxGetId => local_answers::ctx_get_id;
    cuDevicePrimaryCtxGetState => local_answers::primary_ctx_get_state;
    cuFuncSetAttribute => local_answers::func_set_attribute;
    cuKernelSetAttribute => local_answers::kernel_set_attribute;
    cuGraphInstantiate => graph::graph_instantiate;
    cuGraphInstantiate_v2 => graph::graph_instantiate;
    cuGraphGetNodes => graph::graph_get_nodes;
    cuGraphLaunch => graph_host::graph_launch;
    cuGraphAddEmptyNode => graph::graph_add_empty_node;
    cuGraphAddMemsetNode => graph::graph_add_memset_node;
    cuGraphAddChildGraphNode => graph::graph_add_child_graph_node;
    cuGraphAddMemAllocNode => graph::graph_add_mem_alloc_node;
    cuGraphAddMemFreeNode => graph::graph_add_mem_free_node;
    cuGraphInstantiateWithParams => graph::graph_instantiate_with_params;
    cuGraphInstantiateWithParams_ptsz => graph::graph_instantiate_with_params;
    cuGraphAddMemcpyNode => graph::graph_add_memcpy_node;
    cuGraphAddHostNode => graph::graph_add_host_node;
    cuTensorMapEncodeTiled => tensor_map::encode_tiled;
    cuTensorMapEncodeIm2col => tensor_map::encode_im2col;
    cuTensorMapEncodeIm2colWide => tensor_map::encode_im2col_wide;
    cuTensorMapReplaceAddress => tensor_map::replace_address;
    cuMemPrefetchAsync => memory::mem_hint;
    cuMemPrefetchAsync_ptsz => memory::mem_hint;
    cuMemPrefetchAsync_v2 => memory::mem_prefetch_async_v2;
    cuMemPrefetchAsync_v2_ptsz => memory::mem_prefetch_async_v2;
    cuMemAdvise => memory::mem_hint;
    cuMemAdvise_v2 => memory::mem_hint;
    cuStreamSetAttribute => stream::stream_set_attribute;
    cuModuleGetGlobal_v2 => variables::module_get_global;
    cuLibraryGetGlobal => variables::library_get_global;
    cuOccupancyMaxActiveClusters => module::occupancy_max_active_clusters;
    cuOccupancyMaxPotentialClusterSize => module::occupancy_max_potential_cluster_size;
    cuLaunchKernel => module::launch_kernel;
    nvmlInit_v2 => nvml::init;
    nvmlInit => nvml::init;
    nvmlInitWithFlags => nvml::init_with_flags;
    nvmlShutdown => nvml::shutdown;
    nvmlSystemGetDriverVersion => nvml::system_get_driver_version;
    nvmlSystemGetNVMLVersion => nvml::system_get_nvml_version;
    nvmlSystemGetCudaDriverVersion => nvml::system_get_cuda_driver_version;
    nvmlSystemGetCudaDriverVersion_v2 => nvml::system_get_cuda_driver_version;
    nvmlDeviceGetCount_v2 => nvml::device_get_count;
    nvmlDeviceGetCount => nvml::device_get_count;
    nvmlDeviceGetHandleByIndex_v2 => nvml::device_get_handle_by_index;
    nvmlDeviceGetHandleByIndex => nvml::device_get_handle_by_index;
    nvmlDeviceGetHandleByUUID => nvml::device_get_handle_by_uuid;
    nvmlDeviceGetHandleByPciBusId_v2 => nvml::device_get_handle_by_pci_bus_id;
    nvmlDeviceGetName => nvml::device_get_name;
    nvmlDeviceGetUUID => nvml::device_get_uuid;
    nvmlDeviceGetIndex => nvml::device_get_index;
    nvmlDeviceGetMinorNumber => nvml::device_get_index;
    nvmlDeviceGetPciInfo_v3 => nvml::device_get_pci_info;
    nvmlDeviceGetMemoryInfo => nvml::device_get_memory_info;
    nvmlDeviceGetMemoryInfo_v2 => nvml::device_get_memory_info_v2;
    nvmlDeviceGetComputeRunningProcesses_v3 => nvml::device_get_compute_running_processes;
    nvmlDeviceGetComputeRunningProcesses_v2 => nvml::device_get_compute_running_processes;
    nvmlDeviceGetComputeRunningProcesses => nvml::device_get_compute_running_processes_v1;
    nvmlDeviceGetUtilizationRates => nvml::device_get_utilization_rates;
    nvmlDeviceGetCudaComputeCapability => nvml::device_get_cuda_compute_capability;
    nvmlDeviceGetTemperature => nvml::device_get_temperature;
    cuGraphAddKernelNode => module::graph_add_kernel_node_v1;
    cuGraphAddKernelNode_v2 => module::graph_add_kernel_node_v2;
    cuLaunchKernelEx => module::launch_kernel_ex;
    cuLaunchKernel_ptsz => per_thread::cuLaunchKernel_ptsz;
    cuLaunchCooperativeKernel_ptsz => per_thread::cuLaunchCooperativeKernel_ptsz;
    cuLaunchKernelEx_ptsz => module::launch_kernel_ex_ptsz;
    cuStreamSynchronize_ptsz => per_thread::cuStreamSynchronize_ptsz;
    cuStreamQuery_ptsz => per_thread::cuStreamQuery_ptsz;
    cuStreamWaitEvent_ptsz => per_thread::cuStreamWaitEvent_ptsz;
    cuEventRecord_ptsz => per_thread::cuEventRecord_ptsz;
    cuGraphLaunch_ptsz => per_thread::cuGraphLaunch_ptsz;
    cuMemcpyAsync_ptsz => per_thread::cuMemcpyAsync_ptsz;
    cuMemcpyHtoDAsync_v2_ptsz => per_thread::cuMemcpyHtoDAsync_v2_ptsz;
    cuMemcpyDtoHAsync_v2_ptsz => per_thread::cuMemcpyDtoHAsync_v2_ptsz;
    cuMemcpyDtoDAsync_v2_ptsz => per_thread::cuMemcpyDtoDAsync_v2_ptsz;
    cuMemcpyPeerAsync_ptsz => per_thread::cuMemcpyPeerAsync_ptsz;
    cuMemsetD8Async_ptsz => per_thread::cuMemsetD8Async_ptsz;
    cuMemsetD16Async_ptsz => per_thread::cuMemsetD16Async_ptsz;
    cuMemsetD32Async_ptsz => per_thread::cuMemsetD32Async_ptsz;
    cuMemAllocAsync_ptsz => per_thread::cuMemAllocAsync_ptsz;
    cuMemFreeAsync_ptsz => per_thread::cuMemFreeAsync_ptsz;
    cuStreamCreate => names::stream_create;
    cuStreamCreateWithPriority => names::stream_create_with_priority;
    cuEventCreate => names::event_create;
    cuIpcGetMemHandle => ipc::ipc_get_mem_handle;
    cuIpcOpenMemHandle_v2 => ipc::ipc_open_mem_handle;
    cuIpcOpenMemHandle => ipc::ipc_open_mem_handle;
    cuIpcCloseMemHandle => ipc::ipc_close_mem_handle;
    cuIpcGetEventHandle => ipc::ipc_get_event_handle;
    cuIpcOpenEventHandle => ipc::ipc_open_event_handle;
    cuStreamIsCapturing => stream::stream_is_capturing;
    cuStreamEndCapture => stream::stream_end_capture;
    cuStreamBeginCapture_v2_ptsz => per_thread::cuStreamBeginCapture_v2_ptsz;
    cuStreamEndCapture_ptsz => per_thread::cuStreamEndCapture_ptsz;
    cuStreamGetCaptureInfo => stream::stream_get_capture_info;
    cuStreamGetCaptureInfo_v2 => stream::stream_get_capture_info_v2;
    cuStreamGetCaptureInfo_v3 => stream::stream_get_capture_info_v3;
    cuStreamGetCaptureInfo_ptsz => per_thread::cuStreamGetCaptureInfo_ptsz;
    cuStreamGetCaptureInfo_v2_ptsz => per_thread::cuStreamGetCaptureInfo_v2_ptsz;
    cuStreamGetCaptureInfo_v3_ptsz => per_thread::cuStreamGetCaptureInfo_v3_ptsz;
    cuStreamGetCtx_v2 => stream::stream_get_ctx_v2;
    cuStreamGetCtx_v2_ptsz => per_thread::cuStreamGetCtx_v2_ptsz;
    cuLaunchHostFunc => stream::launch_host_func;
    cuLaunchHostFunc_ptsz => per_thread::cuLaunchHostFunc_ptsz;
    cuStreamAddCallback => stream::stream_add_callback;
    cuStreamAddCallback_ptsz => per_thread::cuStreamAddCallback_ptsz;
    cuFlushGPUDirectRDMAWrites => stream::flush_gpu_direct_rdma_writes;
    cuThreadExchangeStreamCaptureMode => stream::thread_exchange_stream_capture_mode;
    cuLaunchCooperativeKernel => module::launch_cooperative_kernel;
}
