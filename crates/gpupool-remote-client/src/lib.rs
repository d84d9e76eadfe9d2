//! The remote-GPU client driver: installed as `libcuda.so.1` on a machine without a GPU, it
//! forwards the driver calls of unmodified CUDA programs to a `gpupool serve` GPU server.
//! Installed as `libnvidia-ml.so.1` too, it answers NVML from the server's view of the tenant.
//! NVIDIA's runtime runs on it: its private export tables and symbol lookups are answered here.
//!
//! Configuration (read once, by `cuInit`): `GPUPOOL_REMOTE` (`tcp://HOST:PORT` or
//! `unix:PATH`), `GPUPOOL_REMOTE_TOKEN` or `GPUPOOL_REMOTE_TOKEN_FILE`;
//! `GPUPOOL_REMOTE_TRACE=1` logs lookups.
//!
//! Safety: every `unsafe fn` implements the driver function named in its doc comment and has
//! that function's contract.

#![warn(missing_docs)]
#![allow(clippy::missing_safety_doc)]

pub mod attributes;
pub mod conn;
pub mod context;
pub mod copies;
pub mod device;
pub mod host;
pub mod memory;
pub mod memory_map;
pub mod module;
pub mod nvml;
pub mod per_thread;
pub mod table_client;
pub mod vmm;

use gpupool_cuda::cu::*;
use gpupool_cuda::nvml::{
    nvmlDevice_t, nvmlMemory_t, nvmlMemory_v2_t, nvmlPciInfo_t, nvmlProcessInfo_v2_t,
    nvmlUtilization_t,
};
use gpupool_cuda::result::*;
use std::ffi::{c_char, c_uint, c_void};

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
    fn cuInit(flags: u32) -> u32 => device::cu_init;
    fn cuDriverGetVersion(v: *mut i32) -> u32 => device::driver_get_version;
    fn cuGetProcAddress(symbol: *const c_char, pfn: *mut *mut c_void, version: i32, flags: u64) -> u32 => device::get_proc_address;
    fn cuGetProcAddress_v2(symbol: *const c_char, pfn: *mut *mut c_void, version: i32, flags: u64, status: *mut i32) -> u32 => device::get_proc_address_v2;
    fn cuGetExportTable(table: *mut *const c_void, id: *const CUuuid) -> u32 => device::get_export_table;
    fn cuGetErrorName(e: u32, s: *mut *const c_char) -> u32 => get_error_name;
    fn cuGetErrorString(e: u32, s: *mut *const c_char) -> u32 => get_error_string;
    fn cuModuleGetLoadingMode(mode: *mut u32) -> u32 => device::module_get_loading_mode;
    fn cuDeviceGet(dev: *mut CUdevice, ordinal: i32) -> u32 => device::device_get;
    fn cuDeviceGetCount(n: *mut i32) -> u32 => device::device_get_count;
    fn cuDeviceGetName(name: *mut c_char, len: i32, dev: CUdevice) -> u32 => attributes::device_get_name;
    fn cuDeviceGetPCIBusId(buf: *mut c_char, len: i32, dev: CUdevice) -> u32 => attributes::device_get_pci_bus_id;

    fn cuCtxGetCurrent(ctx: *mut CUcontext) -> u32 => context::get_current;
    fn cuCtxSetCurrent(ctx: CUcontext) -> u32 => context::set_current;
    fn cuCtxPushCurrent_v2(ctx: CUcontext) -> u32 => context::push_current;
    fn cuCtxPopCurrent_v2(ctx: *mut CUcontext) -> u32 => context::pop_current;

    fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, size: usize) -> u32 => memory::mem_alloc;
    fn cuMemAllocPitch_v2(dptr: *mut CUdeviceptr, pitch: *mut usize, w: usize, h: usize, elem: u32) -> u32 => memory::mem_alloc_pitch;
    fn cuMemAllocManaged(dptr: *mut CUdeviceptr, size: usize, flags: u32) -> u32 => memory::mem_alloc_managed;
    fn cuMemAllocAsync(d: *mut CUdeviceptr, size: usize, s: CUstream) -> u32 => memory::mem_alloc_async;
    fn cuMemAllocFromPoolAsync(d: *mut CUdeviceptr, size: usize, p: CUmemoryPool, s: CUstream) -> u32 => memory::mem_alloc_from_pool_async;
    fn cuMemFree_v2(dptr: CUdeviceptr) -> u32 => memory::mem_free;
    fn cuMemFreeAsync(d: CUdeviceptr, s: CUstream) -> u32 => memory::mem_free_async;
    fn cuMemAllocHost_v2(pp: *mut *mut c_void, size: usize) -> u32 => host::mem_alloc_host;
    fn cuMemHostAlloc(pp: *mut *mut c_void, size: usize, flags: u32) -> u32 => host::mem_host_alloc;
    fn cuMemFreeHost(p: *mut c_void) -> u32 => host::mem_free_host;
    fn cuMemHostGetFlags(f: *mut u32, p: *mut c_void) -> u32 => host::mem_host_get_flags;
    fn cuMemHostRegister_v2(p: *mut c_void, size: usize, flags: u32) -> u32 => host::mem_host_register;
    fn cuMemHostUnregister(p: *mut c_void) -> u32 => host::mem_host_unregister;
    fn cuMemHostGetDevicePointer_v2(d: *mut CUdeviceptr, p: *mut c_void, flags: u32) -> u32 => host::mem_host_get_device_pointer;
    fn cuMemAddressReserve(p: *mut CUdeviceptr, size: usize, align: usize, hint: CUdeviceptr, flags: u64) -> u32 => vmm::mem_address_reserve;
    fn cuMemAddressFree(p: CUdeviceptr, size: usize) -> u32 => vmm::mem_address_free;
    fn cuMemSetAccess(p: CUdeviceptr, size: usize, descs: *const [u32; 3], count: usize) -> u32 => vmm::mem_set_access;
    fn cuPointerGetAttribute(data: *mut c_void, attr: i32, ptr: CUdeviceptr) -> u32 => attributes::pointer_get_attribute;
    fn cuPointerGetAttributes(n: u32, attrs: *mut i32, data: *mut *mut c_void, ptr: CUdeviceptr) -> u32 => attributes::pointer_get_attributes;
    fn cuMemPoolGetAttribute(p: CUmemoryPool, attr: u32, v: *mut c_void) -> u32 => attributes::mem_pool_get_attribute;
    fn cuMemPoolSetAttribute(p: CUmemoryPool, attr: u32, v: *mut c_void) -> u32 => attributes::mem_pool_set_attribute;

    fn cuMemcpy(dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> u32 => copies::memcpy;
    fn cuMemcpyAsync(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> u32 => copies::memcpy_async;
    fn cuMemcpyHtoD_v2(dst: CUdeviceptr, src: *const c_void, n: usize) -> u32 => copies::htod_sync;
    fn cuMemcpyDtoH_v2(dst: *mut c_void, src: CUdeviceptr, n: usize) -> u32 => copies::dtoh_sync;
    fn cuMemcpyDtoD_v2(dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> u32 => copies::dtod_sync;
    fn cuMemcpyHtoDAsync_v2(dst: CUdeviceptr, src: *const c_void, n: usize, s: CUstream) -> u32 => copies::htod_async;
    fn cuMemcpyDtoHAsync_v2(dst: *mut c_void, src: CUdeviceptr, n: usize, s: CUstream) -> u32 => copies::dtoh_async;
    fn cuMemcpyDtoDAsync_v2(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> u32 => copies::dtod_async;
    fn cuMemcpy2D_v2(p: *const CUDA_MEMCPY2D) -> u32 => copies::memcpy_2d;
    fn cuMemcpy2DUnaligned_v2(p: *const CUDA_MEMCPY2D) -> u32 => copies::memcpy_2d;
    fn cuMemcpy2DAsync_v2(p: *const CUDA_MEMCPY2D, s: CUstream) -> u32 => copies::memcpy_2d_async;
    fn cuMemcpy3D_v2(p: *const CUDA_MEMCPY3D) -> u32 => copies::memcpy_3d;
    fn cuMemcpy3DAsync_v2(p: *const CUDA_MEMCPY3D, s: CUstream) -> u32 => copies::memcpy_3d_async;
    fn cuMemsetD8_v2(d: CUdeviceptr, v: u8, n: usize) -> u32 => copies::memset_d8;
    fn cuMemsetD16_v2(d: CUdeviceptr, v: u16, n: usize) -> u32 => copies::memset_d16;
    fn cuMemsetD32_v2(d: CUdeviceptr, v: u32, n: usize) -> u32 => copies::memset_d32;
    fn cuMemsetD2D8_v2(d: CUdeviceptr, p: usize, v: u8, w: usize, h: usize) -> u32 => copies::memset_d2d8;
    fn cuMemsetD2D16_v2(d: CUdeviceptr, p: usize, v: u16, w: usize, h: usize) -> u32 => copies::memset_d2d16;
    fn cuMemsetD2D32_v2(d: CUdeviceptr, p: usize, v: u32, w: usize, h: usize) -> u32 => copies::memset_d2d32;
    fn cuMemsetD8Async(d: CUdeviceptr, v: u8, n: usize, s: CUstream) -> u32 => copies::memset_d8_async;
    fn cuMemsetD16Async(d: CUdeviceptr, v: u16, n: usize, s: CUstream) -> u32 => copies::memset_d16_async;
    fn cuMemsetD32Async(d: CUdeviceptr, v: u32, n: usize, s: CUstream) -> u32 => copies::memset_d32_async;
    fn cuMemsetD2D8Async(d: CUdeviceptr, p: usize, v: u8, w: usize, h: usize, s: CUstream) -> u32 => copies::memset_d2d8_async;
    fn cuMemsetD2D16Async(d: CUdeviceptr, p: usize, v: u16, w: usize, h: usize, s: CUstream) -> u32 => copies::memset_d2d16_async;
    fn cuMemsetD2D32Async(d: CUdeviceptr, p: usize, v: u32, w: usize, h: usize, s: CUstream) -> u32 => copies::memset_d2d32_async;

    fn cuModuleLoad(m: *mut CUmodule, path: *const c_char) -> u32 => module::module_load;
    fn cuModuleLoadData(m: *mut CUmodule, image: *const c_void) -> u32 => module::module_load_data;
    fn cuModuleLoadDataEx(m: *mut CUmodule, image: *const c_void, n: u32, options: *mut c_void, values: *mut *mut c_void) -> u32 => module::module_load_data_ex;
    fn cuModuleGetFunction(f: *mut CUfunction, m: CUmodule, name: *const c_char) -> u32 => module::module_get_function;
    fn cuLibraryLoadData(l: *mut CUlibrary, code: *const c_void, jo: *mut c_void, jv: *mut *mut c_void, jn: u32, lo: *mut c_void, lv: *mut *mut c_void, ln: u32) -> u32 => module::library_load_data;
    fn cuLibraryGetKernel(k: *mut CUkernel, l: CUlibrary, name: *const c_char) -> u32 => module::library_get_kernel;
    fn cuKernelGetFunction(f: *mut CUfunction, k: CUkernel) -> u32 => module::kernel_get_function;
    fn cuLaunchKernel(f: CUfunction, gx: u32, gy: u32, gz: u32, bx: u32, by: u32, bz: u32, shared: u32, s: CUstream, params: *mut *mut c_void, extra: *mut *mut c_void) -> u32 => module::launch_kernel;
    fn nvmlInit_v2() -> u32 => nvml::init;
    fn nvmlInit() -> u32 => nvml::init;
    fn nvmlInitWithFlags(flags: c_uint) -> u32 => nvml::init_with_flags;
    fn nvmlShutdown() -> u32 => nvml::shutdown;
    fn nvmlSystemGetDriverVersion(b: *mut c_char, n: c_uint) -> u32 => nvml::system_get_driver_version;
    fn nvmlSystemGetNVMLVersion(b: *mut c_char, n: c_uint) -> u32 => nvml::system_get_nvml_version;
    fn nvmlSystemGetCudaDriverVersion(v: *mut i32) -> u32 => nvml::system_get_cuda_driver_version;
    fn nvmlSystemGetCudaDriverVersion_v2(v: *mut i32) -> u32 => nvml::system_get_cuda_driver_version;
    fn nvmlDeviceGetCount_v2(n: *mut c_uint) -> u32 => nvml::device_get_count;
    fn nvmlDeviceGetCount(n: *mut c_uint) -> u32 => nvml::device_get_count;
    fn nvmlDeviceGetHandleByIndex_v2(i: c_uint, h: *mut nvmlDevice_t) -> u32 => nvml::device_get_handle_by_index;
    fn nvmlDeviceGetHandleByIndex(i: c_uint, h: *mut nvmlDevice_t) -> u32 => nvml::device_get_handle_by_index;
    fn nvmlDeviceGetHandleByUUID(u: *const c_char, h: *mut nvmlDevice_t) -> u32 => nvml::device_get_handle_by_uuid;
    fn nvmlDeviceGetName(h: nvmlDevice_t, b: *mut c_char, n: c_uint) -> u32 => nvml::device_get_name;
    fn nvmlDeviceGetUUID(h: nvmlDevice_t, b: *mut c_char, n: c_uint) -> u32 => nvml::device_get_uuid;
    fn nvmlDeviceGetIndex(h: nvmlDevice_t, i: *mut c_uint) -> u32 => nvml::device_get_index;
    fn nvmlDeviceGetMinorNumber(h: nvmlDevice_t, i: *mut c_uint) -> u32 => nvml::device_get_index;
    fn nvmlDeviceGetPciInfo_v3(h: nvmlDevice_t, p: *mut nvmlPciInfo_t) -> u32 => nvml::device_get_pci_info;
    fn nvmlDeviceGetMemoryInfo(h: nvmlDevice_t, m: *mut nvmlMemory_t) -> u32 => nvml::device_get_memory_info;
    fn nvmlDeviceGetMemoryInfo_v2(h: nvmlDevice_t, m: *mut nvmlMemory_v2_t) -> u32 => nvml::device_get_memory_info_v2;
    fn nvmlDeviceGetComputeRunningProcesses_v3(h: nvmlDevice_t, n: *mut c_uint, p: *mut nvmlProcessInfo_v2_t) -> u32 => nvml::device_get_compute_running_processes;
    fn nvmlDeviceGetComputeRunningProcesses_v2(h: nvmlDevice_t, n: *mut c_uint, p: *mut nvmlProcessInfo_v2_t) -> u32 => nvml::device_get_compute_running_processes;
    fn nvmlDeviceGetComputeRunningProcesses(h: nvmlDevice_t, n: *mut c_uint, p: *mut [u64; 2]) -> u32 => nvml::device_get_compute_running_processes_v1;
    fn nvmlDeviceGetUtilizationRates(h: nvmlDevice_t, u: *mut nvmlUtilization_t) -> u32 => nvml::device_get_utilization_rates;
    fn nvmlDeviceGetCudaComputeCapability(h: nvmlDevice_t, a: *mut i32, b: *mut i32) -> u32 => nvml::device_get_cuda_compute_capability;
    fn nvmlDeviceGetTemperature(h: nvmlDevice_t, sensor: c_uint, t: *mut c_uint) -> u32 => nvml::device_get_temperature;
    fn cuGraphAddKernelNode(n: *mut CUgraphNode, g: CUgraph, deps: *const CUgraphNode, ndeps: usize, p: *const gpupool_remote::launch_ex::RawKernelNodeParams) -> u32 => module::graph_add_kernel_node_v1;
    fn cuGraphAddKernelNode_v2(n: *mut CUgraphNode, g: CUgraph, deps: *const CUgraphNode, ndeps: usize, p: *const gpupool_remote::launch_ex::RawKernelNodeParams) -> u32 => module::graph_add_kernel_node_v2;
    fn cuLaunchKernelEx(config: *const gpupool_remote::launch_ex::RawLaunchConfig, f: CUfunction, params: *mut *mut c_void, extra: *mut *mut c_void) -> u32 => module::launch_kernel_ex;
    fn cuLaunchKernel_ptsz(f: CUfunction, gx: u32, gy: u32, gz: u32, bx: u32, by: u32, bz: u32, shared: u32, s: CUstream, params: *mut *mut c_void, extra: *mut *mut c_void) -> u32 => per_thread::launch_kernel;
    fn cuLaunchCooperativeKernel_ptsz(f: CUfunction, gx: u32, gy: u32, gz: u32, bx: u32, by: u32, bz: u32, shared: u32, s: CUstream, params: *mut *mut c_void) -> u32 => per_thread::launch_cooperative_kernel;
    fn cuLaunchKernelEx_ptsz(config: *const gpupool_remote::launch_ex::RawLaunchConfig, f: CUfunction, params: *mut *mut c_void, extra: *mut *mut c_void) -> u32 => per_thread::launch_kernel_ex;
    fn cuStreamSynchronize_ptsz(s: CUstream) -> u32 => per_thread::stream_synchronize;
    fn cuStreamQuery_ptsz(s: CUstream) -> u32 => per_thread::stream_query;
    fn cuStreamWaitEvent_ptsz(s: CUstream, e: CUevent, flags: u32) -> u32 => per_thread::stream_wait_event;
    fn cuEventRecord_ptsz(e: CUevent, s: CUstream) -> u32 => per_thread::event_record;
    fn cuGraphLaunch_ptsz(e: CUgraphExec, s: CUstream) -> u32 => per_thread::graph_launch;
    fn cuMemcpyAsync_ptsz(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> u32 => per_thread::memcpy_async;
    fn cuMemcpyHtoDAsync_v2_ptsz(dst: CUdeviceptr, src: *const c_void, n: usize, s: CUstream) -> u32 => per_thread::htod_async;
    fn cuMemcpyDtoHAsync_v2_ptsz(dst: *mut c_void, src: CUdeviceptr, n: usize, s: CUstream) -> u32 => per_thread::dtoh_async;
    fn cuMemcpyDtoDAsync_v2_ptsz(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> u32 => per_thread::dtod_async;
    fn cuMemsetD8Async_ptsz(d: CUdeviceptr, v: u8, n: usize, s: CUstream) -> u32 => per_thread::memset_d8_async;
    fn cuMemsetD16Async_ptsz(d: CUdeviceptr, v: u16, n: usize, s: CUstream) -> u32 => per_thread::memset_d16_async;
    fn cuMemsetD32Async_ptsz(d: CUdeviceptr, v: u32, n: usize, s: CUstream) -> u32 => per_thread::memset_d32_async;
    fn cuMemAllocAsync_ptsz(d: *mut CUdeviceptr, size: usize, s: CUstream) -> u32 => per_thread::mem_alloc_async;
    fn cuMemFreeAsync_ptsz(d: CUdeviceptr, s: CUstream) -> u32 => per_thread::mem_free_async;
    fn cuLaunchCooperativeKernel(f: CUfunction, gx: u32, gy: u32, gz: u32, bx: u32, by: u32, bz: u32, shared: u32, s: CUstream, params: *mut *mut c_void) -> u32 => module::launch_cooperative_kernel;
}
