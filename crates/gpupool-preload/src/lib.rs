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

pub mod compute;
pub mod coordination;
pub mod cost;
pub mod driver;
pub mod idle_gate;
pub mod log;
pub mod lookup;
pub mod memory;
pub mod pacing;
pub mod primary_context;
pub mod real_lib;
pub mod room;
pub use gpupool_cuda::spinlock;
pub mod spill;
pub mod tenant;
pub mod tracking;
pub mod view;
pub mod vmm;

use gpupool_cuda::arrays::{RawArray3dDescriptor, RawArrayDescriptor};
use gpupool_cuda::cu::*;
use gpupool_cuda::nvml::{nvmlDevice_t, nvmlMemory_t, nvmlMemory_v2_t, nvmlProcessInfo_v2_t};
use gpupool_cuda::props::{RawAllocationProp, RawPoolProps};
use std::ffi::{c_char, c_uint, c_void};

gpupool_cuda::export_functions! {
    forward_via crate::real_lib::resolve;
    fn cuInit(flags: u32) -> u32 => lookup::init;
    fn cuGetProcAddress(symbol: *const c_char, pfn: *mut *mut c_void, version: i32, flags: u64) -> u32 => lookup::get_proc_address;
    fn cuGetProcAddress_v2(symbol: *const c_char, pfn: *mut *mut c_void, version: i32, flags: u64, status: *mut i32) -> u32 => lookup::get_proc_address_v2;

    fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, size: usize) -> u32 => memory::mem_alloc;
    fn cuMemAllocPitch_v2(dptr: *mut CUdeviceptr, pitch: *mut usize, w: usize, h: usize, elem: u32) -> u32 => memory::mem_alloc_pitch;
    fn cuMemAllocManaged(dptr: *mut CUdeviceptr, size: usize, flags: u32) -> u32 => memory::mem_alloc_managed;
    fn cuMemFree_v2(dptr: CUdeviceptr) -> u32 => memory::mem_free;
    fn cuMemAllocAsync(dptr: *mut CUdeviceptr, size: usize, s: CUstream) -> u32 => memory::mem_alloc_async;
    fn cuMemAllocAsync_ptsz(dptr: *mut CUdeviceptr, size: usize, s: CUstream) -> u32 => memory::mem_alloc_async_ptsz;
    fn cuMemAllocFromPoolAsync(dptr: *mut CUdeviceptr, size: usize, pool: CUmemoryPool, s: CUstream) -> u32 => memory::mem_alloc_from_pool_async;
    fn cuMemAllocFromPoolAsync_ptsz(dptr: *mut CUdeviceptr, size: usize, pool: CUmemoryPool, s: CUstream) -> u32 => memory::mem_alloc_from_pool_async_ptsz;
    fn cuMemPoolCreate(pool: *mut CUmemoryPool, props: *const RawPoolProps) -> u32 => memory::mem_pool_create;
    fn cuMemPoolDestroy(pool: CUmemoryPool) -> u32 => memory::mem_pool_destroy;
    fn cuDeviceGetDefaultMemPool(pool: *mut CUmemoryPool, dev: CUdevice) -> u32 => memory::device_get_default_mem_pool;
    fn cuDeviceGetMemPool(pool: *mut CUmemoryPool, dev: CUdevice) -> u32 => memory::device_get_mem_pool;
    fn cuMemFreeAsync(dptr: CUdeviceptr, s: CUstream) -> u32 => memory::mem_free_async;
    fn cuMemFreeAsync_ptsz(dptr: CUdeviceptr, s: CUstream) -> u32 => memory::mem_free_async_ptsz;
    fn cuMemCreate(handle: *mut u64, size: usize, prop: *const RawAllocationProp, flags: u64) -> u32 => memory::mem_create;
    fn cuMemRelease(handle: u64) -> u32 => memory::mem_release;
    fn cuMemMap(va: CUdeviceptr, size: usize, offset: usize, handle: u64, flags: u64) -> u32 => memory::mem_map;
    fn cuMemUnmap(va: CUdeviceptr, size: usize) -> u32 => memory::mem_unmap;
    fn cuArrayCreate_v2(a: *mut CUarray, d: *const RawArrayDescriptor) -> u32 => memory::array_create;
    fn cuArray3DCreate_v2(a: *mut CUarray, d: *const RawArray3dDescriptor) -> u32 => memory::array_3d_create;
    fn cuArrayDestroy(a: CUarray) -> u32 => memory::array_destroy;
    fn cuMipmappedArrayCreate(a: *mut CUmipmappedArray, d: *const RawArray3dDescriptor, levels: u32) -> u32 => memory::mipmapped_array_create;
    fn cuMipmappedArrayDestroy(a: CUmipmappedArray) -> u32 => memory::mipmapped_array_destroy;
    fn cuDevicePrimaryCtxRetain(ctx: *mut CUcontext, dev: CUdevice) -> u32 => primary_context::primary_ctx_retain;
    fn cuCtxCreate_v2(ctx: *mut CUcontext, flags: u32, dev: CUdevice) -> u32 => memory::ctx_create;
    fn cuCtxCreate_v3(ctx: *mut CUcontext, params: *mut c_void, n: i32, flags: u32, dev: CUdevice) -> u32 => memory::ctx_create_v3;
    fn cuCtxCreate_v4(ctx: *mut CUcontext, params: *mut c_void, flags: u32, dev: CUdevice) -> u32 => memory::ctx_create_v4;
    fn cuCtxDestroy_v2(ctx: CUcontext) -> u32 => memory::ctx_destroy;

    fn cuLaunchKernel(f: CUfunction, gx: u32, gy: u32, gz: u32, bx: u32, by: u32, bz: u32, shared: u32, s: CUstream, params: *mut *mut c_void, extra: *mut *mut c_void) -> u32 => compute::launch_kernel;
    fn cuLaunchKernel_ptsz(f: CUfunction, gx: u32, gy: u32, gz: u32, bx: u32, by: u32, bz: u32, shared: u32, s: CUstream, params: *mut *mut c_void, extra: *mut *mut c_void) -> u32 => compute::launch_kernel_ptsz;
    fn cuLaunchKernelEx(config: *const CUlaunchConfig_st, f: CUfunction, params: *mut *mut c_void, extra: *mut *mut c_void) -> u32 => compute::launch_kernel_ex;
    fn cuLaunchKernelEx_ptsz(config: *const CUlaunchConfig_st, f: CUfunction, params: *mut *mut c_void, extra: *mut *mut c_void) -> u32 => compute::launch_kernel_ex_ptsz;
    fn cuLaunchCooperativeKernel(f: CUfunction, gx: u32, gy: u32, gz: u32, bx: u32, by: u32, bz: u32, shared: u32, s: CUstream, params: *mut *mut c_void) -> u32 => compute::launch_cooperative_kernel;
    fn cuLaunchCooperativeKernel_ptsz(f: CUfunction, gx: u32, gy: u32, gz: u32, bx: u32, by: u32, bz: u32, shared: u32, s: CUstream, params: *mut *mut c_void) -> u32 => compute::launch_cooperative_kernel_ptsz;
    fn cuLaunchCooperativeKernelMultiDevice(list: *mut CUDA_LAUNCH_PARAMS_st, n: u32, flags: u32) -> u32 => compute::launch_cooperative_kernel_multi_device;
    fn cuGraphLaunch(exec: CUgraphExec, s: CUstream) -> u32 => compute::graph_launch;
    fn cuGraphLaunch_ptsz(exec: CUgraphExec, s: CUstream) -> u32 => compute::graph_launch_ptsz;

    fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> u32 => view::mem_get_info;
    fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: CUdevice) -> u32 => view::device_total_mem;
    fn nvmlDeviceGetMemoryInfo(h: nvmlDevice_t, m: *mut nvmlMemory_t) -> u32 => view::nvml_memory_info;
    fn nvmlDeviceGetMemoryInfo_v2(h: nvmlDevice_t, m: *mut nvmlMemory_v2_t) -> u32 => view::nvml_memory_info_v2;
    fn nvmlDeviceGetCount_v2(n: *mut c_uint) -> u32 => view::nvml_device_count;
    fn nvmlDeviceGetHandleByIndex_v2(i: c_uint, h: *mut nvmlDevice_t) -> u32 => view::nvml_handle_by_index;
    fn nvmlDeviceGetComputeRunningProcesses_v3(h: nvmlDevice_t, n: *mut c_uint, p: *mut nvmlProcessInfo_v2_t) -> u32 => view::nvml_compute_processes_v3;
    fn nvmlDeviceGetComputeRunningProcesses_v2(h: nvmlDevice_t, n: *mut c_uint, p: *mut nvmlProcessInfo_v2_t) -> u32 => view::nvml_compute_processes_v2;
    fn nvmlDeviceGetComputeRunningProcesses(h: nvmlDevice_t, n: *mut c_uint, p: *mut view::ProcessInfoV1) -> u32 => view::nvml_compute_processes_v1;
    fn nvmlDeviceGetGraphicsRunningProcesses_v3(h: nvmlDevice_t, n: *mut c_uint, p: *mut nvmlProcessInfo_v2_t) -> u32 => view::nvml_graphics_processes_v3;
    fn nvmlDeviceGetCount(n: *mut c_uint) -> u32 => view::nvml_device_count_v1;
    fn nvmlDeviceGetHandleByIndex(i: c_uint, h: *mut nvmlDevice_t) -> u32 => view::nvml_handle_by_index_v1;
    fn nvmlDeviceGetHandleByUUID(uuid: *const c_char, h: *mut nvmlDevice_t) -> u32 => view::nvml_handle_by_uuid;
    fn nvmlDeviceGetHandleByPciBusId_v2(bus: *const c_char, h: *mut nvmlDevice_t) -> u32 => view::nvml_handle_by_pci_bus_id;

    gated_via idle_gate::enter {
        fn cuMemcpy(dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> u32;
        fn cuMemcpy_ptds(dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> u32;
        fn cuMemcpyAsync(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> u32;
        fn cuMemcpyAsync_ptsz(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> u32;
        fn cuMemcpyHtoD_v2(dst: CUdeviceptr, src: *const c_void, n: usize) -> u32;
        fn cuMemcpyHtoD_v2_ptds(dst: CUdeviceptr, src: *const c_void, n: usize) -> u32;
        fn cuMemcpyHtoDAsync_v2(dst: CUdeviceptr, src: *const c_void, n: usize, s: CUstream) -> u32;
        fn cuMemcpyHtoDAsync_v2_ptsz(dst: CUdeviceptr, src: *const c_void, n: usize, s: CUstream) -> u32;
        fn cuMemcpyDtoH_v2(dst: *mut c_void, src: CUdeviceptr, n: usize) -> u32;
        fn cuMemcpyDtoH_v2_ptds(dst: *mut c_void, src: CUdeviceptr, n: usize) -> u32;
        fn cuMemcpyDtoHAsync_v2(dst: *mut c_void, src: CUdeviceptr, n: usize, s: CUstream) -> u32;
        fn cuMemcpyDtoHAsync_v2_ptsz(dst: *mut c_void, src: CUdeviceptr, n: usize, s: CUstream) -> u32;
        fn cuMemcpyDtoD_v2(dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> u32;
        fn cuMemcpyDtoD_v2_ptds(dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> u32;
        fn cuMemcpyDtoDAsync_v2(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> u32;
        fn cuMemcpyDtoDAsync_v2_ptsz(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> u32;
        fn cuMemsetD8_v2(dst: CUdeviceptr, v: u8, n: usize) -> u32;
        fn cuMemsetD8_v2_ptds(dst: CUdeviceptr, v: u8, n: usize) -> u32;
        fn cuMemsetD8Async(dst: CUdeviceptr, v: u8, n: usize, s: CUstream) -> u32;
        fn cuMemsetD8Async_ptsz(dst: CUdeviceptr, v: u8, n: usize, s: CUstream) -> u32;
        fn cuMemsetD32_v2(dst: CUdeviceptr, v: u32, n: usize) -> u32;
        fn cuMemsetD32_v2_ptds(dst: CUdeviceptr, v: u32, n: usize) -> u32;
        fn cuMemsetD32Async(dst: CUdeviceptr, v: u32, n: usize, s: CUstream) -> u32;
        fn cuMemsetD32Async_ptsz(dst: CUdeviceptr, v: u32, n: usize, s: CUstream) -> u32;
        fn cuStreamSynchronize(s: CUstream) -> u32;
        fn cuStreamSynchronize_ptsz(s: CUstream) -> u32;
        fn cuCtxSynchronize() -> u32;
        fn cuEventSynchronize(e: CUevent) -> u32;
    }
}
