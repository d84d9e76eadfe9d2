//! The simulated GPU: a `libcuda.so.1` and `libnvidia-ml.so.1` built from our code, so that
//! unmodified CUDA programs (linked against NVIDIA's real runtime) run on machines without a GPU.
//!
//! Configuration: `GPUPOOL_SIM_SPEC` (e.g. `2x80GiB`, `1xH100`; default `1xH100`) and
//! `GPUPOOL_SIM_STATE` (the folder shared by all processes of one simulated machine; default
//! `$TMPDIR/gpupool-sim-<uid>`). `GPUPOOL_SIM_TRACE=1` logs driver lookups.
//!
//! Every exported function is declared once, in the list below.
//!
//! Safety: every `unsafe fn` in this crate implements the driver or NVML function named in its
//! doc comment and has that function's contract (pointers valid as CUDA / NVML document them).

#![warn(missing_docs)]
#![allow(clippy::missing_safety_doc)]

pub mod array;
pub mod checkpoint;
pub mod copy;
pub mod ctx;
pub mod device;
pub mod fork;
pub mod graph;
pub mod launch;
pub mod library;
pub mod machine;
pub mod mem;
pub mod module;
pub mod nvml;
pub mod nvml_events;
pub mod nvml_util;
pub mod per_thread;
pub mod pool;
pub mod proc_address;
pub mod stream;
pub mod sync;
pub use gpupool_timeline as timeline;
pub mod vmm;
pub mod work;

gpupool_cuda::export_functions! {
    cuInit => ctx::cu_init;
    cuDriverGetVersion => device::driver_get_version;
    cuGetProcAddress => proc_address::get_proc_address;
    cuGetProcAddress_v2 => proc_address::get_proc_address_v2;
    cuGetExportTable => device::get_export_table;
    cuGetErrorName => proc_address::get_error_name;
    cuGetErrorString => proc_address::get_error_string;
    cuModuleGetLoadingMode => proc_address::module_get_loading_mode;

    cuDeviceGet => device::device_get;
    cuDeviceGetCount => device::device_get_count;
    cuDeviceGetName => device::device_get_name;
    cuDeviceGetUuid => device::device_get_uuid;
    cuDeviceGetUuid_v2 => device::device_get_uuid;
    cuDeviceGetLuid => device::device_get_luid;
    cuDeviceTotalMem_v2 => device::device_total_mem;
    cuDeviceGetAttribute => device::device_get_attribute;
    cuDeviceComputeCapability => device::device_compute_capability;
    cuDeviceGetPCIBusId => device::device_get_pci_bus_id;
    cuDeviceGetByPCIBusId => device::device_get_by_pci_bus_id;
    cuDeviceGetP2PAttribute => device::device_get_p2p_attribute;
    cuDeviceCanAccessPeer => device::device_can_access_peer;
    cuDeviceGetTexture1DLinearMaxWidth => device::device_get_texture_1d_linear_max_width;
    cuFlushGPUDirectRDMAWrites => device::flush_gpu_direct_rdma_writes;
    cuDeviceGetDefaultMemPool => pool::device_get_default_mem_pool;
    cuDeviceGetMemPool => pool::device_get_mem_pool;
    cuDeviceSetMemPool => pool::device_set_mem_pool;

    cuDevicePrimaryCtxRetain => ctx::primary_ctx_retain;
    cuDevicePrimaryCtxRelease => ctx::primary_ctx_release;
    cuDevicePrimaryCtxRelease_v2 => ctx::primary_ctx_release;
    cuDevicePrimaryCtxReset => ctx::primary_ctx_reset;
    cuDevicePrimaryCtxReset_v2 => ctx::primary_ctx_reset;
    cuDevicePrimaryCtxGetState => ctx::primary_ctx_get_state;
    cuDevicePrimaryCtxSetFlags => ctx::primary_ctx_set_flags;
    cuDevicePrimaryCtxSetFlags_v2 => ctx::primary_ctx_set_flags;
    cuCtxCreate_v2 => ctx::ctx_create;
    cuCtxCreate_v3 => ctx::ctx_create_v3;
    cuCtxCreate_v4 => ctx::ctx_create_v4;
    cuCtxDestroy_v2 => ctx::ctx_destroy;
    cuCtxGetCurrent => ctx::ctx_get_current;
    cuCtxSetCurrent => ctx::ctx_set_current;
    cuCtxPushCurrent_v2 => ctx::ctx_push_current;
    cuCtxPopCurrent_v2 => ctx::ctx_pop_current;
    cuCtxGetDevice => ctx::ctx_get_device;
    cuCtxSynchronize => sync::ctx_synchronize;
    cuCtxGetFlags => ctx::ctx_get_flags;
    cuCtxSetFlags => ctx::ctx_set_flags;
    cuCtxGetId => ctx::ctx_get_id;
    cuCtxGetApiVersion => ctx::ctx_get_api_version;
    cuCtxGetLimit => ctx::ctx_get_limit;
    cuCtxSetLimit => ctx::ctx_set_limit;
    cuCtxGetCacheConfig => ctx::ctx_get_cache_config;
    cuCtxSetCacheConfig => ctx::ctx_set_cache_config;
    cuCtxGetStreamPriorityRange => ctx::ctx_get_stream_priority_range;

    cuMemGetInfo_v2 => mem::mem_get_info;
    cuMemAlloc_v2 => mem::mem_alloc;
    cuMemAllocPitch_v2 => mem::mem_alloc_pitch;
    cuMemAllocManaged => mem::mem_alloc_managed;
    cuMemFree_v2 => mem::mem_free;
    cuMemGetAddressRange_v2 => mem::mem_get_address_range;
    cuMemAllocHost_v2 => mem::mem_alloc_host;
    cuMemHostAlloc => mem::mem_host_alloc;
    cuMemFreeHost => mem::mem_free_host;
    cuMemHostGetDevicePointer_v2 => mem::mem_host_get_device_pointer;
    cuMemHostGetFlags => mem::mem_host_get_flags;
    cuMemHostRegister_v2 => mem::mem_host_register;
    cuMemHostUnregister => mem::mem_host_unregister;
    cuPointerGetAttribute => mem::pointer_get_attribute;
    cuPointerGetAttributes => mem::pointer_get_attributes;
    cuPointerSetAttribute => mem::pointer_set_attribute;
    cuMemAdvise => mem::mem_advise;
    cuMemAdvise_v2 => mem::mem_advise_v2;
    cuMemPrefetchAsync => mem::mem_prefetch_async;
    cuMemPrefetchAsync_ptsz => mem::mem_prefetch_async;
    cuMemPrefetchAsync_v2 => mem::mem_prefetch_async_v2;
    cuMemPrefetchAsync_v2_ptsz => mem::mem_prefetch_async_v2;

    cuMemcpy => copy::memcpy;
    cuMemcpy_ptds => copy::memcpy;
    cuMemcpyAsync => copy::memcpy_async;
    cuMemcpyAsync_ptsz => copy::memcpy_async;
    cuMemcpyHtoD_v2 => copy::htod;
    cuMemcpyHtoD_v2_ptds => copy::htod;
    cuMemcpyDtoH_v2 => copy::dtoh;
    cuMemcpyDtoH_v2_ptds => copy::dtoh;
    cuMemcpyDtoD_v2 => copy::dtod;
    cuMemcpyDtoD_v2_ptds => copy::dtod;
    cuMemcpyHtoDAsync_v2 => copy::htod_async;
    cuMemcpyHtoDAsync_v2_ptsz => copy::htod_async;
    cuMemcpyDtoHAsync_v2 => copy::dtoh_async;
    cuMemcpyDtoHAsync_v2_ptsz => copy::dtoh_async;
    cuMemcpyDtoDAsync_v2 => copy::dtod_async;
    cuMemcpyDtoDAsync_v2_ptsz => copy::dtod_async;
    cuMemcpyPeer => copy::memcpy_peer;
    cuMemcpyPeer_ptds => copy::memcpy_peer;
    cuMemcpyPeerAsync => copy::memcpy_peer_async;
    cuMemcpyPeerAsync_ptsz => copy::memcpy_peer_async;
    cuMemcpy2D_v2 => copy::memcpy_2d;
    cuMemcpy2D_v2_ptds => copy::memcpy_2d;
    cuMemcpy2DUnaligned_v2 => copy::memcpy_2d;
    cuMemcpy2DUnaligned_v2_ptds => copy::memcpy_2d;
    cuMemcpy2DAsync_v2 => copy::memcpy_2d_async;
    cuMemcpy2DAsync_v2_ptsz => copy::memcpy_2d_async;
    cuMemcpy3D_v2 => copy::memcpy_3d;
    cuMemcpy3D_v2_ptds => copy::memcpy_3d;
    cuMemcpy3DAsync_v2 => copy::memcpy_3d_async;
    cuMemcpy3DAsync_v2_ptsz => copy::memcpy_3d_async;
    cuMemsetD8_v2 => copy::memset_d8;
    cuMemsetD8_v2_ptds => copy::memset_d8;
    cuMemsetD16_v2 => copy::memset_d16;
    cuMemsetD16_v2_ptds => copy::memset_d16;
    cuMemsetD32_v2 => copy::memset_d32;
    cuMemsetD32_v2_ptds => copy::memset_d32;
    cuMemsetD2D8_v2 => copy::memset_d2d8;
    cuMemsetD2D8_v2_ptds => copy::memset_d2d8;
    cuMemsetD2D16_v2 => copy::memset_d2d16;
    cuMemsetD2D16_v2_ptds => copy::memset_d2d16;
    cuMemsetD2D32_v2 => copy::memset_d2d32;
    cuMemsetD2D32_v2_ptds => copy::memset_d2d32;
    cuMemsetD8Async => copy::memset_d8_async;
    cuMemsetD8Async_ptsz => copy::memset_d8_async;
    cuMemsetD16Async => copy::memset_d16_async;
    cuMemsetD16Async_ptsz => copy::memset_d16_async;
    cuMemsetD32Async => copy::memset_d32_async;
    cuMemsetD32Async_ptsz => copy::memset_d32_async;
    cuMemsetD2D8Async => copy::memset_d2d8_async;
    cuMemsetD2D8Async_ptsz => copy::memset_d2d8_async;
    cuMemsetD2D16Async => copy::memset_d2d16_async;
    cuMemsetD2D16Async_ptsz => copy::memset_d2d16_async;
    cuMemsetD2D32Async => copy::memset_d2d32_async;
    cuMemsetD2D32Async_ptsz => copy::memset_d2d32_async;

    cuArrayCreate_v2 => array::array_create;
    cuArray3DCreate_v2 => array::array_3d_create;
    cuArrayDestroy => array::array_destroy;
    cuMipmappedArrayCreate => array::mipmapped_array_create;
    cuMipmappedArrayDestroy => array::mipmapped_array_destroy;

    cuMemPoolCreate => pool::mem_pool_create;
    cuMemPoolDestroy => pool::mem_pool_destroy;
    cuMemPoolTrimTo => pool::mem_pool_trim_to;
    cuMemPoolGetAttribute => pool::mem_pool_get_attribute;
    cuMemPoolSetAttribute => pool::mem_pool_set_attribute;
    cuMemAllocAsync => pool::mem_alloc_async;
    cuMemAllocAsync_ptsz => pool::mem_alloc_async;
    cuMemAllocFromPoolAsync => pool::mem_alloc_from_pool_async;
    cuMemAllocFromPoolAsync_ptsz => pool::mem_alloc_from_pool_async;
    cuMemFreeAsync => pool::mem_free_async;
    cuMemFreeAsync_ptsz => pool::mem_free_async;

    cuMemGetAllocationGranularity => vmm::mem_get_allocation_granularity;
    cuMemCreate => vmm::mem_create;
    cuMemRelease => vmm::mem_release;
    cuMemAddressReserve => vmm::mem_address_reserve;
    cuMemAddressFree => vmm::mem_address_free;
    cuMemMap => vmm::mem_map;
    cuMemUnmap => vmm::mem_unmap;
    cuMemSetAccess => vmm::mem_set_access;
    cuMemGetAccess => vmm::mem_get_access;
    cuMemRetainAllocationHandle => vmm::mem_retain_allocation_handle;
    cuMemGetAllocationPropertiesFromHandle => vmm::mem_get_allocation_properties_from_handle;

    cuLaunchKernel => launch::launch_kernel;
    cuLaunchKernel_ptsz => per_thread::cuLaunchKernel_ptsz;
    cuLaunchKernelEx => launch::launch_kernel_ex;
    cuLaunchKernelEx_ptsz => launch::launch_kernel_ex_ptsz;
    cuLaunchCooperativeKernel => launch::launch_cooperative_kernel;
    cuLaunchCooperativeKernel_ptsz => per_thread::cuLaunchCooperativeKernel_ptsz;
    cuLaunchCooperativeKernelMultiDevice => launch::launch_cooperative_kernel_multi_device;
    cuModuleLoad => module::module_load;
    cuModuleLoadData => module::module_load_data;
    cuModuleLoadDataEx => module::module_load_data_ex;
    cuModuleUnload => module::module_unload;
    cuModuleGetFunction => module::module_get_function;
    cuFuncGetParamInfo => module::func_get_param_info;
    cuCheckpointProcessGetState => checkpoint::get_state;
    cuCheckpointProcessLock => checkpoint::lock;
    cuCheckpointProcessCheckpoint => checkpoint::checkpoint;
    cuCheckpointProcessRestore => checkpoint::restore;
    cuCheckpointProcessUnlock => checkpoint::unlock;
    cuLibraryLoadData => library::library_load_data;
    cuLibraryUnload => library::library_unload;
    cuLibraryGetKernel => library::library_get_kernel;
    cuLibraryGetModule => library::library_get_module;
    cuLibraryGetKernelCount => library::library_get_kernel_count;
    cuLibraryEnumerateKernels => library::library_enumerate_kernels;
    cuKernelGetFunction => library::kernel_get_function;
    cuKernelGetParamInfo => library::kernel_get_param_info;
    cuKernelSetAttribute => library::kernel_set_attribute;
    cuKernelSetCacheConfig => library::kernel_set_cache_config;
    cuGraphCreate => graph::graph_create;
    cuGraphDestroy => graph::graph_destroy;
    cuGraphAddKernelNode => graph::graph_add_kernel_node;
    cuGraphAddKernelNode_v2 => graph::graph_add_kernel_node;
    cuGraphInstantiateWithFlags => graph::graph_instantiate_with_flags;
    cuGraphInstantiate_v2 => graph::graph_instantiate;
    cuGraphLaunch => graph::graph_launch;
    cuGraphLaunch_ptsz => per_thread::cuGraphLaunch_ptsz;
    cuGraphExecDestroy => graph::graph_exec_destroy;
    cuStreamCreate => stream::stream_create;
    cuStreamCreateWithPriority => stream::stream_create_with_priority;
    cuStreamDestroy_v2 => stream::stream_destroy;
    cuStreamSynchronize => sync::stream_synchronize;
    cuStreamSynchronize_ptsz => per_thread::cuStreamSynchronize_ptsz;
    cuStreamQuery => sync::stream_query;
    cuStreamQuery_ptsz => per_thread::cuStreamQuery_ptsz;
    cuStreamWaitEvent => sync::stream_wait_event;
    cuStreamWaitEvent_ptsz => sync::stream_wait_event;
    cuStreamGetPriority => stream::stream_get_priority;
    cuStreamGetPriority_ptsz => stream::stream_get_priority;
    cuStreamGetFlags => stream::stream_get_flags;
    cuStreamGetFlags_ptsz => stream::stream_get_flags;
    cuStreamGetId => stream::stream_get_id;
    cuStreamGetId_ptsz => stream::stream_get_id;
    cuStreamGetCtx => stream::stream_get_ctx;
    cuStreamGetCtx_ptsz => stream::stream_get_ctx;
    cuStreamGetCtx_v2 => stream::stream_get_ctx_v2;
    cuStreamGetCtx_v2_ptsz => stream::stream_get_ctx_v2;
    cuStreamGetDevice => stream::stream_get_device;
    cuStreamGetDevice_ptsz => stream::stream_get_device;
    cuStreamIsCapturing => stream::stream_is_capturing;
    cuStreamIsCapturing_ptsz => stream::stream_is_capturing;
    cuStreamGetCaptureInfo => stream::stream_get_capture_info;
    cuStreamGetCaptureInfo_ptsz => stream::stream_get_capture_info;
    cuStreamGetCaptureInfo_v2 => stream::stream_get_capture_info_v2;
    cuStreamGetCaptureInfo_v2_ptsz => stream::stream_get_capture_info_v2;
    cuStreamGetCaptureInfo_v3 => stream::stream_get_capture_info_v3;
    cuStreamGetCaptureInfo_v3_ptsz => stream::stream_get_capture_info_v3;
    cuStreamAddCallback => stream::stream_add_callback;
    cuStreamAddCallback_ptsz => stream::stream_add_callback;
    cuLaunchHostFunc => stream::launch_host_func;
    cuLaunchHostFunc_ptsz => stream::launch_host_func;
    cuStreamGetAttribute => stream::stream_get_attribute;
    cuStreamGetAttribute_ptsz => stream::stream_get_attribute;
    cuStreamSetAttribute => stream::stream_set_attribute;
    cuStreamSetAttribute_ptsz => stream::stream_set_attribute;
    cuStreamCopyAttributes => stream::stream_copy_attributes;
    cuStreamCopyAttributes_ptsz => stream::stream_copy_attributes;
    cuEventCreate => stream::event_create;
    cuEventDestroy_v2 => stream::event_destroy;
    cuEventRecord => sync::event_record;
    cuEventRecord_ptsz => per_thread::cuEventRecord_ptsz;
    cuEventRecordWithFlags => sync::event_record_with_flags;
    cuEventRecordWithFlags_ptsz => sync::event_record_with_flags;
    cuEventSynchronize => sync::event_synchronize;
    cuEventQuery => sync::event_query;
    cuEventElapsedTime => sync::event_elapsed_time;
    cuEventElapsedTime_v2 => sync::event_elapsed_time;

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
    nvmlDeviceGetGraphicsRunningProcesses_v3 => nvml::device_get_graphics_running_processes;
    nvmlDeviceGetUtilizationRates => nvml_util::device_get_utilization_rates;
    nvmlDeviceGetProcessUtilization => nvml_util::device_get_process_utilization;
    nvmlDeviceGetCudaComputeCapability => nvml::device_get_cuda_compute_capability;
    nvmlEventSetCreate => nvml_events::event_set_create;
    nvmlDeviceGetSupportedEventTypes => nvml_events::device_get_supported_event_types;
    nvmlDeviceRegisterEvents => nvml_events::device_register_events;
    nvmlEventSetWait_v2 => nvml_events::event_set_wait;
    nvmlEventSetWait => nvml_events::event_set_wait;
    nvmlEventSetFree => nvml_events::event_set_free;
    nvmlDeviceGetTemperature => nvml::device_get_temperature;
    nvmlDeviceGetMigMode => nvml::device_get_mig_mode;
}

/// `nvmlErrorString`: the one export that returns a pointer rather than a code.
#[no_mangle]
pub extern "C" fn nvmlErrorString(r: u32) -> *const std::ffi::c_char {
    nvml::error_string(r).as_ptr()
}
