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
pub mod pool;
pub mod proc_address;
pub mod stream;
pub use gpupool_timeline as timeline;
pub mod vmm;
pub mod work;

use gpupool_cuda::cu::*;
use gpupool_cuda::nvml::{
    nvmlDevice_t, nvmlMemory_t, nvmlMemory_v2_t, nvmlPciInfo_t, nvmlProcessUtilizationSample_t,
    nvmlUtilization_t,
};
use std::ffi::{c_char, c_uint, c_void};

type HostCallback = Option<unsafe extern "C" fn(CUstream, u32, *mut c_void)>;
type HostFn = Option<unsafe extern "C" fn(*mut c_void)>;

gpupool_cuda::export_functions! {
    fn cuInit(flags: u32) -> u32 => ctx::cu_init;
    fn cuDriverGetVersion(v: *mut i32) -> u32 => device::driver_get_version;
    fn cuGetProcAddress(symbol: *const c_char, pfn: *mut *mut c_void, version: i32, flags: u64) -> u32 => proc_address::get_proc_address;
    fn cuGetProcAddress_v2(symbol: *const c_char, pfn: *mut *mut c_void, version: i32, flags: u64, status: *mut i32) -> u32 => proc_address::get_proc_address_v2;
    fn cuGetExportTable(table: *mut *const c_void, id: *const CUuuid) -> u32 => device::get_export_table;
    fn cuGetErrorName(e: u32, s: *mut *const c_char) -> u32 => proc_address::get_error_name;
    fn cuGetErrorString(e: u32, s: *mut *const c_char) -> u32 => proc_address::get_error_string;
    fn cuModuleGetLoadingMode(mode: *mut u32) -> u32 => proc_address::module_get_loading_mode;

    fn cuDeviceGet(dev: *mut CUdevice, ordinal: i32) -> u32 => device::device_get;
    fn cuDeviceGetCount(n: *mut i32) -> u32 => device::device_get_count;
    fn cuDeviceGetName(name: *mut c_char, len: i32, dev: CUdevice) -> u32 => device::device_get_name;
    fn cuDeviceGetUuid(uuid: *mut CUuuid, dev: CUdevice) -> u32 => device::device_get_uuid;
    fn cuDeviceGetUuid_v2(uuid: *mut CUuuid, dev: CUdevice) -> u32 => device::device_get_uuid;
    fn cuDeviceGetLuid(luid: *mut c_char, mask: *mut u32, dev: CUdevice) -> u32 => device::device_get_luid;
    fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: CUdevice) -> u32 => device::device_total_mem;
    fn cuDeviceGetAttribute(v: *mut i32, attrib: i32, dev: CUdevice) -> u32 => device::device_get_attribute;
    fn cuDeviceComputeCapability(major: *mut i32, minor: *mut i32, dev: CUdevice) -> u32 => device::device_compute_capability;
    fn cuDeviceGetPCIBusId(buf: *mut c_char, len: i32, dev: CUdevice) -> u32 => device::device_get_pci_bus_id;
    fn cuDeviceGetByPCIBusId(dev: *mut CUdevice, id: *const c_char) -> u32 => device::device_get_by_pci_bus_id;
    fn cuDeviceGetP2PAttribute(v: *mut i32, attrib: i32, src: CUdevice, dst: CUdevice) -> u32 => device::device_get_p2p_attribute;
    fn cuDeviceCanAccessPeer(v: *mut i32, dev: CUdevice, peer: CUdevice) -> u32 => device::device_can_access_peer;
    fn cuDeviceGetTexture1DLinearMaxWidth(v: *mut usize, fmt: u32, chans: u32, dev: CUdevice) -> u32 => device::device_get_texture_1d_linear_max_width;
    fn cuFlushGPUDirectRDMAWrites(target: u32, scope: u32) -> u32 => device::flush_gpu_direct_rdma_writes;
    fn cuDeviceGetDefaultMemPool(pool: *mut CUmemoryPool, dev: CUdevice) -> u32 => pool::device_get_default_mem_pool;
    fn cuDeviceGetMemPool(pool: *mut CUmemoryPool, dev: CUdevice) -> u32 => pool::device_get_mem_pool;
    fn cuDeviceSetMemPool(dev: CUdevice, pool: CUmemoryPool) -> u32 => pool::device_set_mem_pool;

    fn cuDevicePrimaryCtxRetain(ctx: *mut CUcontext, dev: CUdevice) -> u32 => ctx::primary_ctx_retain;
    fn cuDevicePrimaryCtxRelease(dev: CUdevice) -> u32 => ctx::primary_ctx_release;
    fn cuDevicePrimaryCtxRelease_v2(dev: CUdevice) -> u32 => ctx::primary_ctx_release;
    fn cuDevicePrimaryCtxReset(dev: CUdevice) -> u32 => ctx::primary_ctx_reset;
    fn cuDevicePrimaryCtxReset_v2(dev: CUdevice) -> u32 => ctx::primary_ctx_reset;
    fn cuDevicePrimaryCtxGetState(dev: CUdevice, flags: *mut u32, active: *mut i32) -> u32 => ctx::primary_ctx_get_state;
    fn cuDevicePrimaryCtxSetFlags(dev: CUdevice, flags: u32) -> u32 => ctx::primary_ctx_set_flags;
    fn cuDevicePrimaryCtxSetFlags_v2(dev: CUdevice, flags: u32) -> u32 => ctx::primary_ctx_set_flags;
    fn cuCtxCreate_v2(ctx: *mut CUcontext, flags: u32, dev: CUdevice) -> u32 => ctx::ctx_create;
    fn cuCtxCreate_v3(ctx: *mut CUcontext, params: *mut c_void, n: i32, flags: u32, dev: CUdevice) -> u32 => ctx::ctx_create_v3;
    fn cuCtxCreate_v4(ctx: *mut CUcontext, params: *mut c_void, flags: u32, dev: CUdevice) -> u32 => ctx::ctx_create_v4;
    fn cuCtxDestroy_v2(ctx: CUcontext) -> u32 => ctx::ctx_destroy;
    fn cuCtxGetCurrent(ctx: *mut CUcontext) -> u32 => ctx::ctx_get_current;
    fn cuCtxSetCurrent(ctx: CUcontext) -> u32 => ctx::ctx_set_current;
    fn cuCtxPushCurrent_v2(ctx: CUcontext) -> u32 => ctx::ctx_push_current;
    fn cuCtxPopCurrent_v2(ctx: *mut CUcontext) -> u32 => ctx::ctx_pop_current;
    fn cuCtxGetDevice(dev: *mut CUdevice) -> u32 => ctx::ctx_get_device;
    fn cuCtxSynchronize() -> u32 => ctx::ctx_synchronize;
    fn cuCtxGetFlags(flags: *mut u32) -> u32 => ctx::ctx_get_flags;
    fn cuCtxSetFlags(flags: u32) -> u32 => ctx::ctx_set_flags;
    fn cuCtxGetId(ctx: CUcontext, id: *mut u64) -> u32 => ctx::ctx_get_id;
    fn cuCtxGetApiVersion(ctx: CUcontext, v: *mut u32) -> u32 => ctx::ctx_get_api_version;
    fn cuCtxGetLimit(v: *mut usize, limit: u32) -> u32 => ctx::ctx_get_limit;
    fn cuCtxSetLimit(limit: u32, v: usize) -> u32 => ctx::ctx_set_limit;
    fn cuCtxGetCacheConfig(c: *mut u32) -> u32 => ctx::ctx_get_cache_config;
    fn cuCtxSetCacheConfig(c: u32) -> u32 => ctx::ctx_set_cache_config;
    fn cuCtxGetStreamPriorityRange(least: *mut i32, greatest: *mut i32) -> u32 => ctx::ctx_get_stream_priority_range;

    fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> u32 => mem::mem_get_info;
    fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, size: usize) -> u32 => mem::mem_alloc;
    fn cuMemAllocPitch_v2(dptr: *mut CUdeviceptr, pitch: *mut usize, w: usize, h: usize, elem: u32) -> u32 => mem::mem_alloc_pitch;
    fn cuMemAllocManaged(dptr: *mut CUdeviceptr, size: usize, flags: u32) -> u32 => mem::mem_alloc_managed;
    fn cuMemFree_v2(dptr: CUdeviceptr) -> u32 => mem::mem_free;
    fn cuMemGetAddressRange_v2(base: *mut CUdeviceptr, size: *mut usize, dptr: CUdeviceptr) -> u32 => mem::mem_get_address_range;
    fn cuMemAllocHost_v2(pp: *mut *mut c_void, size: usize) -> u32 => mem::mem_alloc_host;
    fn cuMemHostAlloc(pp: *mut *mut c_void, size: usize, flags: u32) -> u32 => mem::mem_host_alloc;
    fn cuMemFreeHost(p: *mut c_void) -> u32 => mem::mem_free_host;
    fn cuMemHostGetDevicePointer_v2(d: *mut CUdeviceptr, p: *mut c_void, flags: u32) -> u32 => mem::mem_host_get_device_pointer;
    fn cuMemHostGetFlags(f: *mut u32, p: *mut c_void) -> u32 => mem::mem_host_get_flags;
    fn cuMemHostRegister_v2(p: *mut c_void, size: usize, flags: u32) -> u32 => mem::mem_host_register;
    fn cuMemHostUnregister(p: *mut c_void) -> u32 => mem::mem_host_unregister;
    fn cuPointerGetAttribute(data: *mut c_void, attr: i32, ptr: CUdeviceptr) -> u32 => mem::pointer_get_attribute;
    fn cuPointerGetAttributes(n: u32, attrs: *mut i32, data: *mut *mut c_void, ptr: CUdeviceptr) -> u32 => mem::pointer_get_attributes;
    fn cuPointerSetAttribute(v: *const c_void, attr: i32, ptr: CUdeviceptr) -> u32 => mem::pointer_set_attribute;
    fn cuMemAdvise(ptr: CUdeviceptr, n: usize, advice: u32, dev: i32) -> u32 => mem::mem_advise;
    fn cuMemAdvise_v2(ptr: CUdeviceptr, n: usize, advice: u32, loc: u64) -> u32 => mem::mem_advise_v2;
    fn cuMemPrefetchAsync(ptr: CUdeviceptr, n: usize, dst: i32, s: *mut c_void) -> u32 => mem::mem_prefetch_async;
    fn cuMemPrefetchAsync_ptsz(ptr: CUdeviceptr, n: usize, dst: i32, s: *mut c_void) -> u32 => mem::mem_prefetch_async;
    fn cuMemPrefetchAsync_v2(ptr: CUdeviceptr, n: usize, loc: u64, flags: u32, s: *mut c_void) -> u32 => mem::mem_prefetch_async_v2;
    fn cuMemPrefetchAsync_v2_ptsz(ptr: CUdeviceptr, n: usize, loc: u64, flags: u32, s: *mut c_void) -> u32 => mem::mem_prefetch_async_v2;

    fn cuMemcpy(dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> u32 => copy::memcpy;
    fn cuMemcpy_ptds(dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> u32 => copy::memcpy;
    fn cuMemcpyAsync(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> u32 => copy::memcpy_async;
    fn cuMemcpyAsync_ptsz(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> u32 => copy::memcpy_async;
    fn cuMemcpyHtoD_v2(dst: CUdeviceptr, src: *const c_void, n: usize) -> u32 => copy::htod;
    fn cuMemcpyHtoD_v2_ptds(dst: CUdeviceptr, src: *const c_void, n: usize) -> u32 => copy::htod;
    fn cuMemcpyDtoH_v2(dst: *mut c_void, src: CUdeviceptr, n: usize) -> u32 => copy::dtoh;
    fn cuMemcpyDtoH_v2_ptds(dst: *mut c_void, src: CUdeviceptr, n: usize) -> u32 => copy::dtoh;
    fn cuMemcpyDtoD_v2(dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> u32 => copy::dtod;
    fn cuMemcpyDtoD_v2_ptds(dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> u32 => copy::dtod;
    fn cuMemcpyHtoDAsync_v2(dst: CUdeviceptr, src: *const c_void, n: usize, s: CUstream) -> u32 => copy::htod_async;
    fn cuMemcpyHtoDAsync_v2_ptsz(dst: CUdeviceptr, src: *const c_void, n: usize, s: CUstream) -> u32 => copy::htod_async;
    fn cuMemcpyDtoHAsync_v2(dst: *mut c_void, src: CUdeviceptr, n: usize, s: CUstream) -> u32 => copy::dtoh_async;
    fn cuMemcpyDtoHAsync_v2_ptsz(dst: *mut c_void, src: CUdeviceptr, n: usize, s: CUstream) -> u32 => copy::dtoh_async;
    fn cuMemcpyDtoDAsync_v2(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> u32 => copy::dtod_async;
    fn cuMemcpyDtoDAsync_v2_ptsz(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> u32 => copy::dtod_async;
    fn cuMemcpyPeer(dst: CUdeviceptr, dc: *mut c_void, src: CUdeviceptr, sc: *mut c_void, n: usize) -> u32 => copy::memcpy_peer;
    fn cuMemcpyPeer_ptds(dst: CUdeviceptr, dc: *mut c_void, src: CUdeviceptr, sc: *mut c_void, n: usize) -> u32 => copy::memcpy_peer;
    fn cuMemcpyPeerAsync(dst: CUdeviceptr, dc: *mut c_void, src: CUdeviceptr, sc: *mut c_void, n: usize, s: CUstream) -> u32 => copy::memcpy_peer_async;
    fn cuMemcpyPeerAsync_ptsz(dst: CUdeviceptr, dc: *mut c_void, src: CUdeviceptr, sc: *mut c_void, n: usize, s: CUstream) -> u32 => copy::memcpy_peer_async;
    fn cuMemcpy2D_v2(p: *const CUDA_MEMCPY2D) -> u32 => copy::memcpy_2d;
    fn cuMemcpy2D_v2_ptds(p: *const CUDA_MEMCPY2D) -> u32 => copy::memcpy_2d;
    fn cuMemcpy2DUnaligned_v2(p: *const CUDA_MEMCPY2D) -> u32 => copy::memcpy_2d;
    fn cuMemcpy2DUnaligned_v2_ptds(p: *const CUDA_MEMCPY2D) -> u32 => copy::memcpy_2d;
    fn cuMemcpy2DAsync_v2(p: *const CUDA_MEMCPY2D, s: CUstream) -> u32 => copy::memcpy_2d_async;
    fn cuMemcpy2DAsync_v2_ptsz(p: *const CUDA_MEMCPY2D, s: CUstream) -> u32 => copy::memcpy_2d_async;
    fn cuMemcpy3D_v2(p: *const CUDA_MEMCPY3D) -> u32 => copy::memcpy_3d;
    fn cuMemcpy3D_v2_ptds(p: *const CUDA_MEMCPY3D) -> u32 => copy::memcpy_3d;
    fn cuMemcpy3DAsync_v2(p: *const CUDA_MEMCPY3D, s: CUstream) -> u32 => copy::memcpy_3d_async;
    fn cuMemcpy3DAsync_v2_ptsz(p: *const CUDA_MEMCPY3D, s: CUstream) -> u32 => copy::memcpy_3d_async;
    fn cuMemsetD8_v2(d: CUdeviceptr, v: u8, n: usize) -> u32 => copy::memset_d8;
    fn cuMemsetD8_v2_ptds(d: CUdeviceptr, v: u8, n: usize) -> u32 => copy::memset_d8;
    fn cuMemsetD16_v2(d: CUdeviceptr, v: u16, n: usize) -> u32 => copy::memset_d16;
    fn cuMemsetD16_v2_ptds(d: CUdeviceptr, v: u16, n: usize) -> u32 => copy::memset_d16;
    fn cuMemsetD32_v2(d: CUdeviceptr, v: u32, n: usize) -> u32 => copy::memset_d32;
    fn cuMemsetD32_v2_ptds(d: CUdeviceptr, v: u32, n: usize) -> u32 => copy::memset_d32;
    fn cuMemsetD2D8_v2(d: CUdeviceptr, p: usize, v: u8, w: usize, h: usize) -> u32 => copy::memset_d2d8;
    fn cuMemsetD2D8_v2_ptds(d: CUdeviceptr, p: usize, v: u8, w: usize, h: usize) -> u32 => copy::memset_d2d8;
    fn cuMemsetD2D16_v2(d: CUdeviceptr, p: usize, v: u16, w: usize, h: usize) -> u32 => copy::memset_d2d16;
    fn cuMemsetD2D16_v2_ptds(d: CUdeviceptr, p: usize, v: u16, w: usize, h: usize) -> u32 => copy::memset_d2d16;
    fn cuMemsetD2D32_v2(d: CUdeviceptr, p: usize, v: u32, w: usize, h: usize) -> u32 => copy::memset_d2d32;
    fn cuMemsetD2D32_v2_ptds(d: CUdeviceptr, p: usize, v: u32, w: usize, h: usize) -> u32 => copy::memset_d2d32;
    fn cuMemsetD8Async(d: CUdeviceptr, v: u8, n: usize, s: CUstream) -> u32 => copy::memset_d8_async;
    fn cuMemsetD8Async_ptsz(d: CUdeviceptr, v: u8, n: usize, s: CUstream) -> u32 => copy::memset_d8_async;
    fn cuMemsetD16Async(d: CUdeviceptr, v: u16, n: usize, s: CUstream) -> u32 => copy::memset_d16_async;
    fn cuMemsetD16Async_ptsz(d: CUdeviceptr, v: u16, n: usize, s: CUstream) -> u32 => copy::memset_d16_async;
    fn cuMemsetD32Async(d: CUdeviceptr, v: u32, n: usize, s: CUstream) -> u32 => copy::memset_d32_async;
    fn cuMemsetD32Async_ptsz(d: CUdeviceptr, v: u32, n: usize, s: CUstream) -> u32 => copy::memset_d32_async;
    fn cuMemsetD2D8Async(d: CUdeviceptr, p: usize, v: u8, w: usize, h: usize, s: CUstream) -> u32 => copy::memset_d2d8_async;
    fn cuMemsetD2D8Async_ptsz(d: CUdeviceptr, p: usize, v: u8, w: usize, h: usize, s: CUstream) -> u32 => copy::memset_d2d8_async;
    fn cuMemsetD2D16Async(d: CUdeviceptr, p: usize, v: u16, w: usize, h: usize, s: CUstream) -> u32 => copy::memset_d2d16_async;
    fn cuMemsetD2D16Async_ptsz(d: CUdeviceptr, p: usize, v: u16, w: usize, h: usize, s: CUstream) -> u32 => copy::memset_d2d16_async;
    fn cuMemsetD2D32Async(d: CUdeviceptr, p: usize, v: u32, w: usize, h: usize, s: CUstream) -> u32 => copy::memset_d2d32_async;
    fn cuMemsetD2D32Async_ptsz(d: CUdeviceptr, p: usize, v: u32, w: usize, h: usize, s: CUstream) -> u32 => copy::memset_d2d32_async;

    fn cuArrayCreate_v2(a: *mut CUarray, d: *const gpupool_cuda::arrays::RawArrayDescriptor) -> u32 => array::array_create;
    fn cuArray3DCreate_v2(a: *mut CUarray, d: *const gpupool_cuda::arrays::RawArray3dDescriptor) -> u32 => array::array_3d_create;
    fn cuArrayDestroy(a: CUarray) -> u32 => array::array_destroy;
    fn cuMipmappedArrayCreate(a: *mut CUmipmappedArray, d: *const gpupool_cuda::arrays::RawArray3dDescriptor, levels: u32) -> u32 => array::mipmapped_array_create;
    fn cuMipmappedArrayDestroy(a: CUmipmappedArray) -> u32 => array::mipmapped_array_destroy;

    fn cuMemPoolCreate(p: *mut CUmemoryPool, props: *const gpupool_cuda::props::RawPoolProps) -> u32 => pool::mem_pool_create;
    fn cuMemPoolDestroy(p: CUmemoryPool) -> u32 => pool::mem_pool_destroy;
    fn cuMemPoolTrimTo(p: CUmemoryPool, keep: usize) -> u32 => pool::mem_pool_trim_to;
    fn cuMemPoolGetAttribute(p: CUmemoryPool, attr: u32, v: *mut c_void) -> u32 => pool::mem_pool_get_attribute;
    fn cuMemPoolSetAttribute(p: CUmemoryPool, attr: u32, v: *mut c_void) -> u32 => pool::mem_pool_set_attribute;
    fn cuMemAllocAsync(d: *mut CUdeviceptr, size: usize, s: CUstream) -> u32 => pool::mem_alloc_async;
    fn cuMemAllocAsync_ptsz(d: *mut CUdeviceptr, size: usize, s: CUstream) -> u32 => pool::mem_alloc_async;
    fn cuMemAllocFromPoolAsync(d: *mut CUdeviceptr, size: usize, p: CUmemoryPool, s: CUstream) -> u32 => pool::mem_alloc_from_pool_async;
    fn cuMemAllocFromPoolAsync_ptsz(d: *mut CUdeviceptr, size: usize, p: CUmemoryPool, s: CUstream) -> u32 => pool::mem_alloc_from_pool_async;
    fn cuMemFreeAsync(d: CUdeviceptr, s: CUstream) -> u32 => pool::mem_free_async;
    fn cuMemFreeAsync_ptsz(d: CUdeviceptr, s: CUstream) -> u32 => pool::mem_free_async;

    fn cuMemGetAllocationGranularity(g: *mut usize, prop: *const gpupool_cuda::props::RawAllocationProp, option: u32) -> u32 => vmm::mem_get_allocation_granularity;
    fn cuMemCreate(h: *mut u64, size: usize, prop: *const gpupool_cuda::props::RawAllocationProp, flags: u64) -> u32 => vmm::mem_create;
    fn cuMemRelease(h: u64) -> u32 => vmm::mem_release;
    fn cuMemAddressReserve(p: *mut CUdeviceptr, size: usize, align: usize, addr: CUdeviceptr, flags: u64) -> u32 => vmm::mem_address_reserve;
    fn cuMemAddressFree(p: CUdeviceptr, size: usize) -> u32 => vmm::mem_address_free;
    fn cuMemMap(p: CUdeviceptr, size: usize, offset: usize, h: u64, flags: u64) -> u32 => vmm::mem_map;
    fn cuMemUnmap(p: CUdeviceptr, size: usize) -> u32 => vmm::mem_unmap;
    fn cuMemSetAccess(p: CUdeviceptr, size: usize, desc: *const c_void, count: usize) -> u32 => vmm::mem_set_access;
    fn cuMemGetAccess(flags: *mut u64, loc: *const c_void, p: CUdeviceptr) -> u32 => vmm::mem_get_access;
    fn cuMemRetainAllocationHandle(h: *mut u64, addr: *mut c_void) -> u32 => vmm::mem_retain_allocation_handle;
    fn cuMemGetAllocationPropertiesFromHandle(prop: *mut gpupool_cuda::props::RawAllocationProp, h: u64) -> u32 => vmm::mem_get_allocation_properties_from_handle;

    fn cuLaunchKernel(f: CUfunction, gx: u32, gy: u32, gz: u32, bx: u32, by: u32, bz: u32, shared: u32, s: CUstream, params: *mut *mut c_void, extra: *mut *mut c_void) -> u32 => launch::launch_kernel;
    fn cuLaunchKernel_ptsz(f: CUfunction, gx: u32, gy: u32, gz: u32, bx: u32, by: u32, bz: u32, shared: u32, s: CUstream, params: *mut *mut c_void, extra: *mut *mut c_void) -> u32 => launch::launch_kernel_ptsz;
    fn cuLaunchKernelEx(config: *const CUlaunchConfig_st, f: CUfunction, params: *mut *mut c_void, extra: *mut *mut c_void) -> u32 => launch::launch_kernel_ex;
    fn cuLaunchKernelEx_ptsz(config: *const CUlaunchConfig_st, f: CUfunction, params: *mut *mut c_void, extra: *mut *mut c_void) -> u32 => launch::launch_kernel_ex_ptsz;
    fn cuLaunchCooperativeKernel(f: CUfunction, gx: u32, gy: u32, gz: u32, bx: u32, by: u32, bz: u32, shared: u32, s: CUstream, params: *mut *mut c_void) -> u32 => launch::launch_cooperative_kernel;
    fn cuLaunchCooperativeKernel_ptsz(f: CUfunction, gx: u32, gy: u32, gz: u32, bx: u32, by: u32, bz: u32, shared: u32, s: CUstream, params: *mut *mut c_void) -> u32 => launch::launch_cooperative_kernel_ptsz;
    fn cuLaunchCooperativeKernelMultiDevice(list: *mut CUDA_LAUNCH_PARAMS_st, n: u32, flags: u32) -> u32 => launch::launch_cooperative_kernel_multi_device;
    fn cuModuleLoad(m: *mut CUmodule, path: *const c_char) -> u32 => module::module_load;
    fn cuModuleLoadData(m: *mut CUmodule, image: *const c_void) -> u32 => module::module_load_data;
    fn cuModuleLoadDataEx(m: *mut CUmodule, image: *const c_void, n: u32, options: *mut c_void, values: *mut *mut c_void) -> u32 => module::module_load_data_ex;
    fn cuModuleUnload(m: CUmodule) -> u32 => module::module_unload;
    fn cuModuleGetFunction(f: *mut CUfunction, m: CUmodule, name: *const c_char) -> u32 => module::module_get_function;
    fn cuFuncGetParamInfo(f: CUfunction, index: usize, off: *mut usize, size: *mut usize) -> u32 => module::func_get_param_info;
    fn cuCheckpointProcessGetState(pid: i32, state: *mut u32) -> u32 => checkpoint::get_state;
    fn cuCheckpointProcessLock(pid: i32, args: *mut c_void) -> u32 => checkpoint::lock;
    fn cuCheckpointProcessCheckpoint(pid: i32, args: *mut c_void) -> u32 => checkpoint::checkpoint;
    fn cuCheckpointProcessRestore(pid: i32, args: *mut c_void) -> u32 => checkpoint::restore;
    fn cuCheckpointProcessUnlock(pid: i32, args: *mut c_void) -> u32 => checkpoint::unlock;
    fn cuLibraryLoadData(l: *mut CUlibrary, code: *const c_void, jo: *mut c_void, jv: *mut *mut c_void, jn: u32, lo: *mut c_void, lv: *mut *mut c_void, ln: u32) -> u32 => library::library_load_data;
    fn cuLibraryUnload(l: CUlibrary) -> u32 => library::library_unload;
    fn cuLibraryGetKernel(k: *mut CUkernel, l: CUlibrary, name: *const c_char) -> u32 => library::library_get_kernel;
    fn cuLibraryGetModule(m: *mut CUmodule, l: CUlibrary) -> u32 => library::library_get_module;
    fn cuLibraryGetKernelCount(n: *mut u32, l: CUlibrary) -> u32 => library::library_get_kernel_count;
    fn cuLibraryEnumerateKernels(k: *mut CUkernel, n: u32, l: CUlibrary) -> u32 => library::library_enumerate_kernels;
    fn cuKernelGetFunction(f: *mut CUfunction, k: CUkernel) -> u32 => library::kernel_get_function;
    fn cuKernelGetParamInfo(k: CUkernel, index: usize, off: *mut usize, size: *mut usize) -> u32 => library::kernel_get_param_info;
    fn cuKernelSetAttribute(attr: i32, value: i32, k: CUkernel, dev: i32) -> u32 => library::kernel_set_attribute;
    fn cuKernelSetCacheConfig(k: CUkernel, config: u32, dev: i32) -> u32 => library::kernel_set_cache_config;
    fn cuGraphCreate(g: *mut CUgraph, flags: u32) -> u32 => graph::graph_create;
    fn cuGraphDestroy(g: CUgraph) -> u32 => graph::graph_destroy;
    fn cuGraphAddKernelNode(n: *mut CUgraphNode, g: CUgraph, deps: *const CUgraphNode, ndeps: usize, p: *const CUDA_KERNEL_NODE_PARAMS_st) -> u32 => graph::graph_add_kernel_node;
    fn cuGraphAddKernelNode_v2(n: *mut CUgraphNode, g: CUgraph, deps: *const CUgraphNode, ndeps: usize, p: *const CUDA_KERNEL_NODE_PARAMS_st) -> u32 => graph::graph_add_kernel_node;
    fn cuGraphInstantiateWithFlags(e: *mut CUgraphExec, g: CUgraph, flags: u64) -> u32 => graph::graph_instantiate_with_flags;
    fn cuGraphInstantiate_v2(e: *mut CUgraphExec, g: CUgraph, node: *mut CUgraphNode, log: *mut i8, size: usize) -> u32 => graph::graph_instantiate;
    fn cuGraphLaunch(e: CUgraphExec, s: CUstream) -> u32 => graph::graph_launch;
    fn cuGraphLaunch_ptsz(e: CUgraphExec, s: CUstream) -> u32 => graph::graph_launch_ptsz;
    fn cuGraphExecDestroy(e: CUgraphExec) -> u32 => graph::graph_exec_destroy;
    fn cuStreamCreate(s: *mut CUstream, flags: u32) -> u32 => stream::stream_create;
    fn cuStreamCreateWithPriority(s: *mut CUstream, flags: u32, prio: i32) -> u32 => stream::stream_create_with_priority;
    fn cuStreamDestroy_v2(s: CUstream) -> u32 => stream::stream_destroy;
    fn cuStreamSynchronize(s: CUstream) -> u32 => stream::stream_synchronize;
    fn cuStreamSynchronize_ptsz(s: CUstream) -> u32 => stream::stream_synchronize_ptsz;
    fn cuStreamQuery(s: CUstream) -> u32 => stream::stream_query;
    fn cuStreamQuery_ptsz(s: CUstream) -> u32 => stream::stream_query_ptsz;
    fn cuStreamWaitEvent(s: CUstream, e: CUevent, flags: u32) -> u32 => stream::stream_wait_event;
    fn cuStreamWaitEvent_ptsz(s: CUstream, e: CUevent, flags: u32) -> u32 => stream::stream_wait_event;
    fn cuStreamGetPriority(s: CUstream, p: *mut i32) -> u32 => stream::stream_get_priority;
    fn cuStreamGetPriority_ptsz(s: CUstream, p: *mut i32) -> u32 => stream::stream_get_priority;
    fn cuStreamGetFlags(s: CUstream, f: *mut u32) -> u32 => stream::stream_get_flags;
    fn cuStreamGetFlags_ptsz(s: CUstream, f: *mut u32) -> u32 => stream::stream_get_flags;
    fn cuStreamGetId(s: CUstream, id: *mut u64) -> u32 => stream::stream_get_id;
    fn cuStreamGetId_ptsz(s: CUstream, id: *mut u64) -> u32 => stream::stream_get_id;
    fn cuStreamGetCtx(s: CUstream, c: *mut CUcontext) -> u32 => stream::stream_get_ctx;
    fn cuStreamGetCtx_ptsz(s: CUstream, c: *mut CUcontext) -> u32 => stream::stream_get_ctx;
    fn cuStreamGetCtx_v2(s: CUstream, c: *mut CUcontext, g: *mut *mut c_void) -> u32 => stream::stream_get_ctx_v2;
    fn cuStreamGetCtx_v2_ptsz(s: CUstream, c: *mut CUcontext, g: *mut *mut c_void) -> u32 => stream::stream_get_ctx_v2;
    fn cuStreamGetDevice(s: CUstream, d: *mut i32) -> u32 => stream::stream_get_device;
    fn cuStreamGetDevice_ptsz(s: CUstream, d: *mut i32) -> u32 => stream::stream_get_device;
    fn cuStreamIsCapturing(s: CUstream, st: *mut u32) -> u32 => stream::stream_is_capturing;
    fn cuStreamIsCapturing_ptsz(s: CUstream, st: *mut u32) -> u32 => stream::stream_is_capturing;
    fn cuStreamGetCaptureInfo(s: CUstream, st: *mut u32, id: *mut u64) -> u32 => stream::stream_get_capture_info;
    fn cuStreamGetCaptureInfo_ptsz(s: CUstream, st: *mut u32, id: *mut u64) -> u32 => stream::stream_get_capture_info;
    fn cuStreamGetCaptureInfo_v2(s: CUstream, st: *mut u32, id: *mut u64, g: *mut *mut c_void, d: *mut *const c_void, n: *mut usize) -> u32 => stream::stream_get_capture_info_v2;
    fn cuStreamGetCaptureInfo_v2_ptsz(s: CUstream, st: *mut u32, id: *mut u64, g: *mut *mut c_void, d: *mut *const c_void, n: *mut usize) -> u32 => stream::stream_get_capture_info_v2;
    fn cuStreamGetCaptureInfo_v3(s: CUstream, st: *mut u32, id: *mut u64, g: *mut *mut c_void, d: *mut *const c_void, e: *mut *const c_void, n: *mut usize) -> u32 => stream::stream_get_capture_info_v3;
    fn cuStreamGetCaptureInfo_v3_ptsz(s: CUstream, st: *mut u32, id: *mut u64, g: *mut *mut c_void, d: *mut *const c_void, e: *mut *const c_void, n: *mut usize) -> u32 => stream::stream_get_capture_info_v3;
    fn cuStreamAddCallback(s: CUstream, cb: HostCallback, user: *mut c_void, flags: u32) -> u32 => stream::stream_add_callback;
    fn cuStreamAddCallback_ptsz(s: CUstream, cb: HostCallback, user: *mut c_void, flags: u32) -> u32 => stream::stream_add_callback;
    fn cuLaunchHostFunc(s: CUstream, f: HostFn, user: *mut c_void) -> u32 => stream::launch_host_func;
    fn cuLaunchHostFunc_ptsz(s: CUstream, f: HostFn, user: *mut c_void) -> u32 => stream::launch_host_func;
    fn cuStreamGetAttribute(s: CUstream, attr: u32, v: *mut [u8; 64]) -> u32 => stream::stream_get_attribute;
    fn cuStreamGetAttribute_ptsz(s: CUstream, attr: u32, v: *mut [u8; 64]) -> u32 => stream::stream_get_attribute;
    fn cuStreamSetAttribute(s: CUstream, attr: u32, v: *const c_void) -> u32 => stream::stream_set_attribute;
    fn cuStreamSetAttribute_ptsz(s: CUstream, attr: u32, v: *const c_void) -> u32 => stream::stream_set_attribute;
    fn cuStreamCopyAttributes(d: CUstream, s: CUstream) -> u32 => stream::stream_copy_attributes;
    fn cuStreamCopyAttributes_ptsz(d: CUstream, s: CUstream) -> u32 => stream::stream_copy_attributes;
    fn cuEventCreate(e: *mut CUevent, flags: u32) -> u32 => stream::event_create;
    fn cuEventDestroy_v2(e: CUevent) -> u32 => stream::event_destroy;
    fn cuEventRecord(e: CUevent, s: CUstream) -> u32 => stream::event_record;
    fn cuEventRecord_ptsz(e: CUevent, s: CUstream) -> u32 => stream::event_record_ptsz;
    fn cuEventRecordWithFlags(e: CUevent, s: CUstream, flags: u32) -> u32 => stream::event_record_with_flags;
    fn cuEventRecordWithFlags_ptsz(e: CUevent, s: CUstream, flags: u32) -> u32 => stream::event_record_with_flags;
    fn cuEventSynchronize(e: CUevent) -> u32 => stream::event_synchronize;
    fn cuEventQuery(e: CUevent) -> u32 => stream::event_query;
    fn cuEventElapsedTime(ms: *mut f32, a: CUevent, b: CUevent) -> u32 => stream::event_elapsed_time;
    fn cuEventElapsedTime_v2(ms: *mut f32, a: CUevent, b: CUevent) -> u32 => stream::event_elapsed_time;

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
    fn nvmlDeviceGetHandleByPciBusId_v2(p: *const c_char, h: *mut nvmlDevice_t) -> u32 => nvml::device_get_handle_by_pci_bus_id;
    fn nvmlDeviceGetName(h: nvmlDevice_t, b: *mut c_char, n: c_uint) -> u32 => nvml::device_get_name;
    fn nvmlDeviceGetUUID(h: nvmlDevice_t, b: *mut c_char, n: c_uint) -> u32 => nvml::device_get_uuid;
    fn nvmlDeviceGetIndex(h: nvmlDevice_t, i: *mut c_uint) -> u32 => nvml::device_get_index;
    fn nvmlDeviceGetMinorNumber(h: nvmlDevice_t, i: *mut c_uint) -> u32 => nvml::device_get_index;
    fn nvmlDeviceGetPciInfo_v3(h: nvmlDevice_t, p: *mut nvmlPciInfo_t) -> u32 => nvml::device_get_pci_info;
    fn nvmlDeviceGetMemoryInfo(h: nvmlDevice_t, m: *mut nvmlMemory_t) -> u32 => nvml::device_get_memory_info;
    fn nvmlDeviceGetMemoryInfo_v2(h: nvmlDevice_t, m: *mut nvmlMemory_v2_t) -> u32 => nvml::device_get_memory_info_v2;
    fn nvmlDeviceGetComputeRunningProcesses_v3(h: nvmlDevice_t, n: *mut c_uint, p: *mut nvml::ProcessInfo) -> u32 => nvml::device_get_compute_running_processes;
    fn nvmlDeviceGetComputeRunningProcesses_v2(h: nvmlDevice_t, n: *mut c_uint, p: *mut nvml::ProcessInfo) -> u32 => nvml::device_get_compute_running_processes;
    fn nvmlDeviceGetComputeRunningProcesses(h: nvmlDevice_t, n: *mut c_uint, p: *mut [u64; 2]) -> u32 => nvml::device_get_compute_running_processes_v1;
    fn nvmlDeviceGetGraphicsRunningProcesses_v3(h: nvmlDevice_t, n: *mut c_uint, p: *mut nvml::ProcessInfo) -> u32 => nvml::device_get_graphics_running_processes;
    fn nvmlDeviceGetUtilizationRates(h: nvmlDevice_t, u: *mut nvmlUtilization_t) -> u32 => nvml_util::device_get_utilization_rates;
    fn nvmlDeviceGetProcessUtilization(h: nvmlDevice_t, s: *mut nvmlProcessUtilizationSample_t, n: *mut c_uint, last_seen: u64) -> u32 => nvml_util::device_get_process_utilization;
    fn nvmlDeviceGetCudaComputeCapability(h: nvmlDevice_t, a: *mut i32, b: *mut i32) -> u32 => nvml::device_get_cuda_compute_capability;
    fn nvmlEventSetCreate(s: *mut gpupool_cuda::nvml::nvmlEventSet_t) -> u32 => nvml_events::event_set_create;
    fn nvmlDeviceGetSupportedEventTypes(h: nvmlDevice_t, t: *mut u64) -> u32 => nvml_events::device_get_supported_event_types;
    fn nvmlDeviceRegisterEvents(h: nvmlDevice_t, t: u64, s: gpupool_cuda::nvml::nvmlEventSet_t) -> u32 => nvml_events::device_register_events;
    fn nvmlEventSetWait_v2(s: gpupool_cuda::nvml::nvmlEventSet_t, d: *mut gpupool_cuda::nvml::nvmlEventData_t, ms: c_uint) -> u32 => nvml_events::event_set_wait;
    fn nvmlEventSetWait(s: gpupool_cuda::nvml::nvmlEventSet_t, d: *mut gpupool_cuda::nvml::nvmlEventData_t, ms: c_uint) -> u32 => nvml_events::event_set_wait;
    fn nvmlEventSetFree(s: gpupool_cuda::nvml::nvmlEventSet_t) -> u32 => nvml_events::event_set_free;
    fn nvmlDeviceGetTemperature(h: nvmlDevice_t, sensor: c_uint, t: *mut c_uint) -> u32 => nvml::device_get_temperature;
    fn nvmlDeviceGetMigMode(h: nvmlDevice_t, current: *mut c_uint, pending: *mut c_uint) -> u32 => nvml::device_get_mig_mode;
}

/// `nvmlErrorString`: the one export that returns a pointer rather than a code.
#[no_mangle]
pub extern "C" fn nvmlErrorString(r: u32) -> *const c_char {
    nvml::error_string(r).as_ptr()
}
