//! The C signature of every driver / NVML function a gpupool library exports, declared once.
//!
//! The simulated driver, the interception library and the remote client name a function and
//! the Rust function implementing it ([`export_functions!`](crate::export_functions)); the
//! parameter list comes from here, so an export is one line plus one body. Enum-typed values
//! cross as raw integers, results as raw `u32` codes.

/// The types the signatures below name.
pub mod types {
    pub use crate::arrays::{RawArray3dDescriptor, RawArrayDescriptor};
    pub use crate::cu::*;
    pub use crate::nvml::{
        nvmlDevice_t, nvmlEventData_t, nvmlEventSet_t, nvmlMemory_t, nvmlMemory_v2_t,
        nvmlPciInfo_t, nvmlProcessInfo_v1_t, nvmlProcessInfo_v2_t, nvmlProcessUtilizationSample_t,
        nvmlUtilization_t,
    };
    pub use crate::props::{RawAllocationProp, RawPoolProps};
    pub use crate::tensor_map::RawTensorMap;
    pub use core::ffi::{c_char, c_uint, c_void};
    /// `CUstreamCallback`.
    pub type HostCallback = Option<unsafe extern "C" fn(CUstream, u32, *mut c_void)>;
    /// `CUhostFn`.
    pub type HostFn = Option<unsafe extern "C" fn(*mut c_void)>;
}

use types::*;

#[cfg(test)]
mod header_check;

/// Turns the list into `signature_of!` (one arm per function), [`DECLARED`] and [`SIGNATURES`].
macro_rules! declare_api {
    ($d:tt $( fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ); )*) => {
        /// `signature_of!{ NAME MODE … }` expands `api_item!{ MODE … ; NAME(PARAMS) }` with the
        /// function's declared parameters; an undeclared name is a compile error naming it.
        #[doc(hidden)]
        #[macro_export]
        macro_rules! signature_of {
            $( ($name $d($d then:tt)*) => {
                $crate::api_item!{ $d($d then)* ; $name ( $($arg : $ty),* ) }
            }; )*
            ($d other:ident $d($d then:tt)*) => {
                compile_error!(concat!(
                    "no C signature declared for `", stringify!($d other),
                    "`: add it to gpupool-cuda's api.rs"
                ));
            };
        }

        /// Every function with a declared signature.
        pub const DECLARED: &[&str] = &[ $( stringify!($name) ),* ];

        /// Each function's parameters as written (type text, size in bytes), to compare with
        /// NVIDIA's headers.
        pub const SIGNATURES: &[(&str, &[(&str, usize)])] = &[
            $( (stringify!($name), &[ $( (stringify!($ty), ::core::mem::size_of::<$ty>()) ),* ]), )*
        ];
    };
}

declare_api! { $
    fn cuInit(flags: u32);
    fn cuDriverGetVersion(v: *mut i32);
    fn cuGetProcAddress(symbol: *const c_char, pfn: *mut *mut c_void, version: i32, flags: u64);
    fn cuGetProcAddress_v2(symbol: *const c_char, pfn: *mut *mut c_void, version: i32, flags: u64, status: *mut i32);
    fn cuGetExportTable(table: *mut *const c_void, id: *const CUuuid);
    fn cuGetErrorName(e: u32, s: *mut *const c_char);
    fn cuGetErrorString(e: u32, s: *mut *const c_char);
    fn cuModuleGetLoadingMode(mode: *mut u32);

    fn cuDeviceGet(dev: *mut CUdevice, ordinal: i32);
    fn cuDeviceGetCount(n: *mut i32);
    fn cuDeviceGetName(name: *mut c_char, len: i32, dev: CUdevice);
    fn cuDeviceGetUuid(uuid: *mut CUuuid, dev: CUdevice);
    fn cuDeviceGetUuid_v2(uuid: *mut CUuuid, dev: CUdevice);
    fn cuDeviceGetLuid(luid: *mut c_char, mask: *mut u32, dev: CUdevice);
    fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: CUdevice);
    fn cuDeviceGetAttribute(v: *mut i32, attrib: i32, dev: CUdevice);
    fn cuDeviceComputeCapability(major: *mut i32, minor: *mut i32, dev: CUdevice);
    fn cuDeviceGetPCIBusId(buf: *mut c_char, len: i32, dev: CUdevice);
    fn cuDeviceGetByPCIBusId(dev: *mut CUdevice, id: *const c_char);
    fn cuDeviceGetP2PAttribute(v: *mut i32, attrib: i32, src: CUdevice, dst: CUdevice);
    fn cuDeviceCanAccessPeer(v: *mut i32, dev: CUdevice, peer: CUdevice);
    fn cuDeviceGetTexture1DLinearMaxWidth(v: *mut usize, fmt: u32, chans: u32, dev: CUdevice);
    fn cuFlushGPUDirectRDMAWrites(target: u32, scope: u32);
    fn cuDeviceGetDefaultMemPool(pool: *mut CUmemoryPool, dev: CUdevice);
    fn cuDeviceGetMemPool(pool: *mut CUmemoryPool, dev: CUdevice);
    fn cuDeviceGetGraphMemAttribute(dev: CUdevice, attr: u32, value: *mut c_void);
    fn cuDeviceSetGraphMemAttribute(dev: CUdevice, attr: u32, value: *mut c_void);
    fn cuDeviceGraphMemTrim(dev: CUdevice);
    fn cuDeviceSetMemPool(dev: CUdevice, pool: CUmemoryPool);

    fn cuDevicePrimaryCtxRetain(ctx: *mut CUcontext, dev: CUdevice);
    fn cuDevicePrimaryCtxRelease(dev: CUdevice);
    fn cuDevicePrimaryCtxRelease_v2(dev: CUdevice);
    fn cuDevicePrimaryCtxReset(dev: CUdevice);
    fn cuDevicePrimaryCtxReset_v2(dev: CUdevice);
    fn cuDevicePrimaryCtxGetState(dev: CUdevice, flags: *mut u32, active: *mut i32);
    fn cuDevicePrimaryCtxSetFlags(dev: CUdevice, flags: u32);
    fn cuDevicePrimaryCtxSetFlags_v2(dev: CUdevice, flags: u32);
    fn cuCtxCreate_v2(ctx: *mut CUcontext, flags: u32, dev: CUdevice);
    fn cuCtxCreate_v3(ctx: *mut CUcontext, params: *mut c_void, n: i32, flags: u32, dev: CUdevice);
    fn cuCtxCreate_v4(ctx: *mut CUcontext, params: *mut c_void, flags: u32, dev: CUdevice);
    fn cuCtxDestroy_v2(ctx: CUcontext);
    fn cuCtxGetCurrent(ctx: *mut CUcontext);
    fn cuCtxSetCurrent(ctx: CUcontext);
    fn cuCtxPushCurrent_v2(ctx: CUcontext);
    fn cuCtxPopCurrent_v2(ctx: *mut CUcontext);
    fn cuCtxPushCurrent(ctx: CUcontext);
    fn cuCtxPopCurrent(ctx: *mut CUcontext);
    fn cuCtxGetDevice(dev: *mut CUdevice);
    fn cuCtxSynchronize();
    fn cuCtxGetFlags(flags: *mut u32);
    fn cuCtxSetFlags(flags: u32);
    fn cuCtxGetId(ctx: CUcontext, id: *mut u64);
    fn cuCtxGetApiVersion(ctx: CUcontext, v: *mut u32);
    fn cuCtxGetLimit(v: *mut usize, limit: u32);
    fn cuCtxSetLimit(limit: u32, v: usize);
    fn cuCtxGetCacheConfig(c: *mut u32);
    fn cuCtxSetCacheConfig(c: u32);
    fn cuCtxGetStreamPriorityRange(least: *mut i32, greatest: *mut i32);

    fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize);
    fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, size: usize);
    fn cuMemAllocPitch_v2(dptr: *mut CUdeviceptr, pitch: *mut usize, w: usize, h: usize, elem: u32);
    fn cuMemAllocManaged(dptr: *mut CUdeviceptr, size: usize, flags: u32);
    fn cuMemFree_v2(dptr: CUdeviceptr);
    fn cuMemGetAddressRange_v2(base: *mut CUdeviceptr, size: *mut usize, dptr: CUdeviceptr);
    fn cuMemAllocHost_v2(pp: *mut *mut c_void, size: usize);
    fn cuMemHostAlloc(pp: *mut *mut c_void, size: usize, flags: u32);
    fn cuMemFreeHost(p: *mut c_void);
    fn cuMemHostGetDevicePointer_v2(d: *mut CUdeviceptr, p: *mut c_void, flags: u32);
    fn cuMemHostGetFlags(f: *mut u32, p: *mut c_void);
    fn cuMemHostRegister_v2(p: *mut c_void, size: usize, flags: u32);
    fn cuMemHostUnregister(p: *mut c_void);
    fn cuIpcGetMemHandle(h: *mut CUipcMemHandle_st, d: CUdeviceptr);
    fn cuIpcOpenMemHandle_v2(d: *mut CUdeviceptr, h: CUipcMemHandle_st, flags: u32);
    fn cuIpcOpenMemHandle(d: *mut CUdeviceptr, h: CUipcMemHandle_st, flags: u32);
    fn cuIpcCloseMemHandle(d: CUdeviceptr);
    fn cuIpcGetEventHandle(h: *mut CUipcEventHandle_st, e: CUevent);
    fn cuIpcOpenEventHandle(e: *mut CUevent, h: CUipcEventHandle_st);
    fn cuPointerGetAttribute(data: *mut c_void, attr: i32, ptr: CUdeviceptr);
    fn cuPointerGetAttributes(n: u32, attrs: *mut i32, data: *mut *mut c_void, ptr: CUdeviceptr);
    fn cuPointerSetAttribute(v: *const c_void, attr: i32, ptr: CUdeviceptr);
    fn cuMemAdvise(ptr: CUdeviceptr, n: usize, advice: u32, dev: i32);
    fn cuMemAdvise_v2(ptr: CUdeviceptr, n: usize, advice: u32, loc: u64);
    fn cuMemPrefetchAsync(ptr: CUdeviceptr, n: usize, dst: i32, s: *mut c_void);
    fn cuMemPrefetchAsync_ptsz(ptr: CUdeviceptr, n: usize, dst: i32, s: *mut c_void);
    fn cuMemPrefetchAsync_v2(ptr: CUdeviceptr, n: usize, loc: u64, flags: u32, s: *mut c_void);
    fn cuMemPrefetchAsync_v2_ptsz(ptr: CUdeviceptr, n: usize, loc: u64, flags: u32, s: *mut c_void);

    fn cuMemcpy(dst: CUdeviceptr, src: CUdeviceptr, n: usize);
    fn cuMemcpy_ptds(dst: CUdeviceptr, src: CUdeviceptr, n: usize);
    fn cuMemcpyAsync(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream);
    fn cuMemcpyAsync_ptsz(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream);
    fn cuMemcpyHtoD_v2(dst: CUdeviceptr, src: *const c_void, n: usize);
    fn cuMemcpyHtoD_v2_ptds(dst: CUdeviceptr, src: *const c_void, n: usize);
    fn cuMemcpyDtoH_v2(dst: *mut c_void, src: CUdeviceptr, n: usize);
    fn cuMemcpyDtoH_v2_ptds(dst: *mut c_void, src: CUdeviceptr, n: usize);
    fn cuMemcpyDtoD_v2(dst: CUdeviceptr, src: CUdeviceptr, n: usize);
    fn cuMemcpyDtoD_v2_ptds(dst: CUdeviceptr, src: CUdeviceptr, n: usize);
    fn cuMemcpyHtoDAsync_v2(dst: CUdeviceptr, src: *const c_void, n: usize, s: CUstream);
    fn cuMemcpyHtoDAsync_v2_ptsz(dst: CUdeviceptr, src: *const c_void, n: usize, s: CUstream);
    fn cuMemcpyDtoHAsync_v2(dst: *mut c_void, src: CUdeviceptr, n: usize, s: CUstream);
    fn cuMemcpyDtoHAsync_v2_ptsz(dst: *mut c_void, src: CUdeviceptr, n: usize, s: CUstream);
    fn cuMemcpyDtoDAsync_v2(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream);
    fn cuMemcpyDtoDAsync_v2_ptsz(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream);
    fn cuMemcpyPeer(dst: CUdeviceptr, dc: *mut c_void, src: CUdeviceptr, sc: *mut c_void, n: usize);
    fn cuMemcpyPeer_ptds(dst: CUdeviceptr, dc: *mut c_void, src: CUdeviceptr, sc: *mut c_void, n: usize);
    fn cuMemcpyPeerAsync(dst: CUdeviceptr, dc: *mut c_void, src: CUdeviceptr, sc: *mut c_void, n: usize, s: CUstream);
    fn cuMemcpyPeerAsync_ptsz(dst: CUdeviceptr, dc: *mut c_void, src: CUdeviceptr, sc: *mut c_void, n: usize, s: CUstream);
    fn cuMemcpy2D_v2(p: *const CUDA_MEMCPY2D);
    fn cuMemcpy2D_v2_ptds(p: *const CUDA_MEMCPY2D);
    fn cuMemcpy2DUnaligned_v2(p: *const CUDA_MEMCPY2D);
    fn cuMemcpy2DUnaligned_v2_ptds(p: *const CUDA_MEMCPY2D);
    fn cuMemcpy2DAsync_v2(p: *const CUDA_MEMCPY2D, s: CUstream);
    fn cuMemcpy2DAsync_v2_ptsz(p: *const CUDA_MEMCPY2D, s: CUstream);
    fn cuMemcpy3D_v2(p: *const CUDA_MEMCPY3D);
    fn cuMemcpy3D_v2_ptds(p: *const CUDA_MEMCPY3D);
    fn cuMemcpy3DAsync_v2(p: *const CUDA_MEMCPY3D, s: CUstream);
    fn cuMemcpy3DAsync_v2_ptsz(p: *const CUDA_MEMCPY3D, s: CUstream);
    fn cuMemsetD8_v2(d: CUdeviceptr, v: u8, n: usize);
    fn cuMemsetD8_v2_ptds(d: CUdeviceptr, v: u8, n: usize);
    fn cuMemsetD16_v2(d: CUdeviceptr, v: u16, n: usize);
    fn cuMemsetD16_v2_ptds(d: CUdeviceptr, v: u16, n: usize);
    fn cuMemsetD32_v2(d: CUdeviceptr, v: u32, n: usize);
    fn cuMemsetD32_v2_ptds(d: CUdeviceptr, v: u32, n: usize);
    fn cuMemsetD2D8_v2(d: CUdeviceptr, p: usize, v: u8, w: usize, h: usize);
    fn cuMemsetD2D8_v2_ptds(d: CUdeviceptr, p: usize, v: u8, w: usize, h: usize);
    fn cuMemsetD2D16_v2(d: CUdeviceptr, p: usize, v: u16, w: usize, h: usize);
    fn cuMemsetD2D16_v2_ptds(d: CUdeviceptr, p: usize, v: u16, w: usize, h: usize);
    fn cuMemsetD2D32_v2(d: CUdeviceptr, p: usize, v: u32, w: usize, h: usize);
    fn cuMemsetD2D32_v2_ptds(d: CUdeviceptr, p: usize, v: u32, w: usize, h: usize);
    fn cuMemsetD8Async(d: CUdeviceptr, v: u8, n: usize, s: CUstream);
    fn cuMemsetD8Async_ptsz(d: CUdeviceptr, v: u8, n: usize, s: CUstream);
    fn cuMemsetD16Async(d: CUdeviceptr, v: u16, n: usize, s: CUstream);
    fn cuMemsetD16Async_ptsz(d: CUdeviceptr, v: u16, n: usize, s: CUstream);
    fn cuMemsetD32Async(d: CUdeviceptr, v: u32, n: usize, s: CUstream);
    fn cuMemsetD32Async_ptsz(d: CUdeviceptr, v: u32, n: usize, s: CUstream);
    fn cuMemsetD2D8Async(d: CUdeviceptr, p: usize, v: u8, w: usize, h: usize, s: CUstream);
    fn cuMemsetD2D8Async_ptsz(d: CUdeviceptr, p: usize, v: u8, w: usize, h: usize, s: CUstream);
    fn cuMemsetD2D16Async(d: CUdeviceptr, p: usize, v: u16, w: usize, h: usize, s: CUstream);
    fn cuMemsetD2D16Async_ptsz(d: CUdeviceptr, p: usize, v: u16, w: usize, h: usize, s: CUstream);
    fn cuMemsetD2D32Async(d: CUdeviceptr, p: usize, v: u32, w: usize, h: usize, s: CUstream);
    fn cuMemsetD2D32Async_ptsz(d: CUdeviceptr, p: usize, v: u32, w: usize, h: usize, s: CUstream);

    fn cuArrayCreate_v2(a: *mut CUarray, d: *const RawArrayDescriptor);
    fn cuArray3DCreate_v2(a: *mut CUarray, d: *const RawArray3dDescriptor);
    fn cuArrayDestroy(a: CUarray);
    fn cuMipmappedArrayCreate(a: *mut CUmipmappedArray, d: *const RawArray3dDescriptor, levels: u32);
    fn cuMipmappedArrayDestroy(a: CUmipmappedArray);

    fn cuMemPoolCreate(p: *mut CUmemoryPool, props: *const RawPoolProps);
    fn cuMemPoolDestroy(p: CUmemoryPool);
    fn cuMemPoolTrimTo(p: CUmemoryPool, keep: usize);
    fn cuMemPoolGetAttribute(p: CUmemoryPool, attr: u32, v: *mut c_void);
    fn cuMemPoolSetAttribute(p: CUmemoryPool, attr: u32, v: *mut c_void);
    fn cuMemAllocAsync(d: *mut CUdeviceptr, size: usize, s: CUstream);
    fn cuMemAllocAsync_ptsz(d: *mut CUdeviceptr, size: usize, s: CUstream);
    fn cuMemAllocFromPoolAsync(d: *mut CUdeviceptr, size: usize, p: CUmemoryPool, s: CUstream);
    fn cuMemAllocFromPoolAsync_ptsz(d: *mut CUdeviceptr, size: usize, p: CUmemoryPool, s: CUstream);
    fn cuMemFreeAsync(d: CUdeviceptr, s: CUstream);
    fn cuMemFreeAsync_ptsz(d: CUdeviceptr, s: CUstream);

    fn cuMemGetAllocationGranularity(g: *mut usize, prop: *const RawAllocationProp, option: u32);
    fn cuMemCreate(h: *mut u64, size: usize, prop: *const RawAllocationProp, flags: u64);
    fn cuMemRelease(h: u64);
    fn cuMemAddressReserve(p: *mut CUdeviceptr, size: usize, align: usize, addr: CUdeviceptr, flags: u64);
    fn cuMemAddressFree(p: CUdeviceptr, size: usize);
    fn cuMemMap(p: CUdeviceptr, size: usize, offset: usize, h: u64, flags: u64);
    fn cuMemUnmap(p: CUdeviceptr, size: usize);
    fn cuMemSetAccess(p: CUdeviceptr, size: usize, desc: *const CUmemAccessDesc, count: usize);
    fn cuMemGetAccess(flags: *mut u64, loc: *const c_void, p: CUdeviceptr);
    fn cuMemRetainAllocationHandle(h: *mut u64, addr: *mut c_void);
    fn cuMemGetAllocationPropertiesFromHandle(prop: *mut RawAllocationProp, h: u64);
    fn cuMemExportToShareableHandle(out: *mut c_void, h: u64, handle_type: u32, flags: u64);
    fn cuMemImportFromShareableHandle(out: *mut u64, os_handle: *mut c_void, handle_type: u32);

    fn cuLaunchKernel(f: CUfunction, gx: u32, gy: u32, gz: u32, bx: u32, by: u32, bz: u32, shared: u32, s: CUstream, params: *mut *mut c_void, extra: *mut *mut c_void);
    fn cuLaunchKernel_ptsz(f: CUfunction, gx: u32, gy: u32, gz: u32, bx: u32, by: u32, bz: u32, shared: u32, s: CUstream, params: *mut *mut c_void, extra: *mut *mut c_void);
    fn cuLaunchKernelEx(config: *const CUlaunchConfig_st, f: CUfunction, params: *mut *mut c_void, extra: *mut *mut c_void);
    fn cuLaunchKernelEx_ptsz(config: *const CUlaunchConfig_st, f: CUfunction, params: *mut *mut c_void, extra: *mut *mut c_void);
    fn cuLaunchCooperativeKernel(f: CUfunction, gx: u32, gy: u32, gz: u32, bx: u32, by: u32, bz: u32, shared: u32, s: CUstream, params: *mut *mut c_void);
    fn cuLaunchCooperativeKernel_ptsz(f: CUfunction, gx: u32, gy: u32, gz: u32, bx: u32, by: u32, bz: u32, shared: u32, s: CUstream, params: *mut *mut c_void);
    fn cuLaunchCooperativeKernelMultiDevice(list: *mut CUDA_LAUNCH_PARAMS_st, n: u32, flags: u32);
    fn cuModuleLoad(m: *mut CUmodule, path: *const c_char);
    fn cuModuleLoadData(m: *mut CUmodule, image: *const c_void);
    fn cuModuleLoadFatBinary(m: *mut CUmodule, fatbin: *const c_void);
    fn cuModuleLoadDataEx(m: *mut CUmodule, image: *const c_void, n: u32, options: *mut c_void, values: *mut *mut c_void);
    fn cuModuleUnload(m: CUmodule);
    fn cuModuleGetFunction(f: *mut CUfunction, m: CUmodule, name: *const c_char);
    fn cuFuncGetParamInfo(f: CUfunction, index: usize, off: *mut usize, size: *mut usize);
    fn cuFuncGetAttribute(v: *mut i32, attrib: i32, f: CUfunction);
    fn cuFuncSetAttribute(f: CUfunction, attrib: i32, v: i32);
    fn cuOccupancyMaxActiveBlocksPerMultiprocessor(n: *mut i32, f: CUfunction, block: i32, shared: usize);
    fn cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(n: *mut i32, f: CUfunction, block: i32, shared: usize, flags: u32);
    fn cuOccupancyAvailableDynamicSMemPerBlock(bytes: *mut usize, f: CUfunction, blocks: i32, block: i32);
    fn cuOccupancyMaxPotentialClusterSize(size: *mut i32, f: CUfunction, config: *const CUlaunchConfig_st);
    fn cuOccupancyMaxActiveClusters(n: *mut i32, f: CUfunction, config: *const CUlaunchConfig_st);
    fn cuCheckpointProcessGetState(pid: i32, state: *mut u32);
    fn cuCheckpointProcessLock(pid: i32, args: *mut c_void);
    fn cuCheckpointProcessCheckpoint(pid: i32, args: *mut c_void);
    fn cuCheckpointProcessRestore(pid: i32, args: *mut c_void);
    fn cuCheckpointProcessUnlock(pid: i32, args: *mut c_void);
    fn cuLibraryLoadData(l: *mut CUlibrary, code: *const c_void, jo: *mut c_void, jv: *mut *mut c_void, jn: u32, lo: *mut c_void, lv: *mut *mut c_void, ln: u32);
    fn cuLibraryUnload(l: CUlibrary);
    fn cuLibraryGetKernel(k: *mut CUkernel, l: CUlibrary, name: *const c_char);
    fn cuLibraryGetModule(m: *mut CUmodule, l: CUlibrary);
    fn cuLibraryGetKernelCount(n: *mut u32, l: CUlibrary);
    fn cuLibraryEnumerateKernels(k: *mut CUkernel, n: u32, l: CUlibrary);
    fn cuKernelGetFunction(f: *mut CUfunction, k: CUkernel);
    fn cuKernelGetParamInfo(k: CUkernel, index: usize, off: *mut usize, size: *mut usize);
    fn cuKernelSetAttribute(attr: i32, value: i32, k: CUkernel, dev: i32);
    fn cuKernelGetAttribute(v: *mut i32, attrib: i32, k: CUkernel, dev: i32);
    fn cuLibraryGetGlobal(dptr: *mut CUdeviceptr, bytes: *mut usize, l: CUlibrary, name: *const c_char);
    fn cuModuleGetGlobal_v2(dptr: *mut CUdeviceptr, bytes: *mut usize, m: CUmodule, name: *const c_char);
    fn cuKernelSetCacheConfig(k: CUkernel, config: u32, dev: i32);
    fn cuKernelGetLibrary(l: *mut CUlibrary, k: CUkernel);
    fn cuFuncSetCacheConfig(f: CUfunction, config: u32);
    fn cuCtxEnablePeerAccess(peer: CUcontext, flags: u32);
    fn cuCtxDisablePeerAccess(peer: CUcontext);
    fn cuLinkCreate_v2(n: u32, options: *mut u32, values: *mut *mut c_void, state: *mut CUlinkState);
    fn cuLinkAddData_v2(state: CUlinkState, kind: u32, data: *mut c_void, size: usize, name: *const c_char, n: u32, options: *mut u32, values: *mut *mut c_void);
    fn cuLinkAddFile_v2(state: CUlinkState, kind: u32, path: *const c_char, n: u32, options: *mut u32, values: *mut *mut c_void);
    fn cuLinkComplete(state: CUlinkState, cubin: *mut *mut c_void, size: *mut usize);
    fn cuLinkDestroy(state: CUlinkState);
    fn cuTensorMapEncodeTiled(map: *mut RawTensorMap, data_type: u32, rank: u32, address: *mut c_void, dims: *const u64, strides: *const u64, box_dims: *const u32, element_strides: *const u32, interleave: u32, swizzle: u32, l2: u32, oob: u32);
    fn cuTensorMapEncodeIm2col(map: *mut RawTensorMap, data_type: u32, rank: u32, address: *mut c_void, dims: *const u64, strides: *const u64, lower: *const i32, upper: *const i32, channels: u32, pixels: u32, element_strides: *const u32, interleave: u32, swizzle: u32, l2: u32, oob: u32);
    fn cuTensorMapEncodeIm2colWide(map: *mut RawTensorMap, data_type: u32, rank: u32, address: *mut c_void, dims: *const u64, strides: *const u64, lower_width: i32, upper_width: i32, channels: u32, pixels: u32, element_strides: *const u32, interleave: u32, mode: u32, swizzle: u32, l2: u32, oob: u32);
    fn cuTensorMapReplaceAddress(map: *mut RawTensorMap, address: *mut c_void);
    fn cuGreenCtxCreate(g: *mut *mut c_void, desc: *mut c_void, dev: CUdevice, flags: u32);
    fn cuGreenCtxDestroy(g: *mut c_void);
    fn cuCtxFromGreenCtx(ctx: *mut CUcontext, g: *mut c_void);
    fn cuDeviceGetDevResource(dev: CUdevice, resource: *mut c_void, kind: u32);
    fn cuCtxGetDevResource(ctx: CUcontext, resource: *mut c_void, kind: u32);
    fn cuGreenCtxGetDevResource(g: *mut c_void, resource: *mut c_void, kind: u32);
    fn cuDevSmResourceSplitByCount(result: *mut c_void, groups: *mut u32, input: *const c_void, remaining: *mut c_void, flags: u32, min_count: u32);
    fn cuDevResourceGenerateDesc(desc: *mut *mut c_void, resources: *mut c_void, n: u32);
    fn cuGreenCtxRecordEvent(g: *mut c_void, e: CUevent);
    fn cuGreenCtxWaitEvent(g: *mut c_void, e: CUevent);
    fn cuStreamGetGreenCtx(s: CUstream, g: *mut *mut c_void);
    fn cuGreenCtxStreamCreate(s: *mut CUstream, g: *mut c_void, flags: u32, priority: i32);
    fn cuGreenCtxGetId(g: *mut c_void, id: *mut u64);
    fn cuStreamWaitValue32(s: CUstream, addr: CUdeviceptr, value: u32, flags: u32);
    fn cuStreamBatchMemOp(s: CUstream, n: u32, ops: *mut c_void, flags: u32);
    fn cuStreamWaitValue32_v2(s: CUstream, addr: CUdeviceptr, value: u32, flags: u32);
    fn cuStreamWriteValue32(s: CUstream, addr: CUdeviceptr, value: u32, flags: u32);
    fn cuStreamWriteValue32_v2(s: CUstream, addr: CUdeviceptr, value: u32, flags: u32);
    fn cuStreamWaitValue64(s: CUstream, addr: CUdeviceptr, value: u64, flags: u32);
    fn cuStreamWaitValue64_v2(s: CUstream, addr: CUdeviceptr, value: u64, flags: u32);
    fn cuStreamWriteValue64(s: CUstream, addr: CUdeviceptr, value: u64, flags: u32);
    fn cuStreamWriteValue64_v2(s: CUstream, addr: CUdeviceptr, value: u64, flags: u32);
    fn cuStreamBatchMemOp_v2(s: CUstream, n: u32, ops: *mut c_void, flags: u32);
    fn cuStreamBeginCapture_v2(s: CUstream, mode: u32);
    fn cuStreamBeginCapture_v2_ptsz(s: CUstream, mode: u32);
    fn cuStreamEndCapture(s: CUstream, g: *mut CUgraph);
    fn cuStreamEndCapture_ptsz(s: CUstream, g: *mut CUgraph);
    fn cuGraphCreate(g: *mut CUgraph, flags: u32);
    fn cuGraphDestroy(g: CUgraph);
    fn cuGraphAddKernelNode(n: *mut CUgraphNode, g: CUgraph, deps: *const CUgraphNode, ndeps: usize, p: *const CUDA_KERNEL_NODE_PARAMS_st);
    fn cuGraphAddKernelNode_v2(n: *mut CUgraphNode, g: CUgraph, deps: *const CUgraphNode, ndeps: usize, p: *const CUDA_KERNEL_NODE_PARAMS_st);
    fn cuGraphInstantiateWithFlags(e: *mut CUgraphExec, g: CUgraph, flags: u64);
    fn cuGraphInstantiate_v2(e: *mut CUgraphExec, g: CUgraph, node: *mut CUgraphNode, log: *mut i8, size: usize);
    fn cuGraphInstantiate(e: *mut CUgraphExec, g: CUgraph, node: *mut CUgraphNode, log: *mut i8, size: usize);
    fn cuGraphInstantiateWithParams(e: *mut CUgraphExec, g: CUgraph, p: *mut CUDA_GRAPH_INSTANTIATE_PARAMS_st);
    fn cuGraphInstantiateWithParams_ptsz(e: *mut CUgraphExec, g: CUgraph, p: *mut CUDA_GRAPH_INSTANTIATE_PARAMS_st);
    fn cuGraphAddEmptyNode(n: *mut CUgraphNode, g: CUgraph, deps: *const CUgraphNode, ndeps: usize);
    fn cuGraphAddMemsetNode(n: *mut CUgraphNode, g: CUgraph, deps: *const CUgraphNode, ndeps: usize, p: *const CUDA_MEMSET_NODE_PARAMS_st, ctx: CUcontext);
    fn cuGraphAddMemcpyNode(n: *mut CUgraphNode, g: CUgraph, deps: *const CUgraphNode, ndeps: usize, p: *const CUDA_MEMCPY3D, ctx: CUcontext);
    fn cuGraphAddHostNode(n: *mut CUgraphNode, g: CUgraph, deps: *const CUgraphNode, ndeps: usize, p: *const CUDA_HOST_NODE_PARAMS_st);
    fn cuGraphAddMemAllocNode(n: *mut CUgraphNode, g: CUgraph, deps: *const CUgraphNode, ndeps: usize, p: *mut CUDA_MEM_ALLOC_NODE_PARAMS_v1_st);
    fn cuGraphAddMemFreeNode(n: *mut CUgraphNode, g: CUgraph, deps: *const CUgraphNode, ndeps: usize, dptr: CUdeviceptr);
    fn cuGraphAddChildGraphNode(n: *mut CUgraphNode, g: CUgraph, deps: *const CUgraphNode, ndeps: usize, child: CUgraph);
    fn cuGraphGetNodes(g: CUgraph, nodes: *mut CUgraphNode, n: *mut usize);
    fn cuGraphNodeGetType(node: CUgraphNode, kind: *mut u32);
    fn cuGraphKernelNodeGetParams(node: CUgraphNode, p: *mut CUDA_KERNEL_NODE_PARAMS_st);
    fn cuGraphExecKernelNodeSetParams(e: CUgraphExec, node: CUgraphNode, p: *const CUDA_KERNEL_NODE_PARAMS_st);
    fn cuGraphLaunch(e: CUgraphExec, s: CUstream);
    fn cuGraphLaunch_ptsz(e: CUgraphExec, s: CUstream);
    fn cuGraphExecDestroy(e: CUgraphExec);
    fn cuGraphUpload(e: CUgraphExec, s: CUstream);
    fn cuStreamCreate(s: *mut CUstream, flags: u32);
    fn cuStreamCreateWithPriority(s: *mut CUstream, flags: u32, prio: i32);
    fn cuStreamDestroy_v2(s: CUstream);
    fn cuStreamSynchronize(s: CUstream);
    fn cuStreamSynchronize_ptsz(s: CUstream);
    fn cuStreamQuery(s: CUstream);
    fn cuStreamQuery_ptsz(s: CUstream);
    fn cuStreamWaitEvent(s: CUstream, e: CUevent, flags: u32);
    fn cuStreamWaitEvent_ptsz(s: CUstream, e: CUevent, flags: u32);
    fn cuStreamGetPriority(s: CUstream, p: *mut i32);
    fn cuStreamGetPriority_ptsz(s: CUstream, p: *mut i32);
    fn cuStreamGetFlags(s: CUstream, f: *mut u32);
    fn cuStreamGetFlags_ptsz(s: CUstream, f: *mut u32);
    fn cuStreamGetId(s: CUstream, id: *mut u64);
    fn cuStreamGetId_ptsz(s: CUstream, id: *mut u64);
    fn cuStreamGetCtx(s: CUstream, c: *mut CUcontext);
    fn cuStreamGetCtx_ptsz(s: CUstream, c: *mut CUcontext);
    fn cuStreamGetCtx_v2(s: CUstream, c: *mut CUcontext, g: *mut *mut c_void);
    fn cuStreamGetCtx_v2_ptsz(s: CUstream, c: *mut CUcontext, g: *mut *mut c_void);
    fn cuStreamGetDevice(s: CUstream, d: *mut i32);
    fn cuStreamGetDevice_ptsz(s: CUstream, d: *mut i32);
    fn cuStreamIsCapturing(s: CUstream, st: *mut u32);
    fn cuThreadExchangeStreamCaptureMode(mode: *mut u32);
    fn cuStreamIsCapturing_ptsz(s: CUstream, st: *mut u32);
    fn cuStreamGetCaptureInfo(s: CUstream, st: *mut u32, id: *mut u64);
    fn cuStreamGetCaptureInfo_ptsz(s: CUstream, st: *mut u32, id: *mut u64);
    fn cuStreamGetCaptureInfo_v2(s: CUstream, st: *mut u32, id: *mut u64, g: *mut *mut c_void, d: *mut *const CUgraphNode, n: *mut usize);
    fn cuStreamGetCaptureInfo_v2_ptsz(s: CUstream, st: *mut u32, id: *mut u64, g: *mut *mut c_void, d: *mut *const CUgraphNode, n: *mut usize);
    fn cuStreamGetCaptureInfo_v3(s: CUstream, st: *mut u32, id: *mut u64, g: *mut *mut c_void, d: *mut *const CUgraphNode, e: *mut *const c_void, n: *mut usize);
    fn cuStreamGetCaptureInfo_v3_ptsz(s: CUstream, st: *mut u32, id: *mut u64, g: *mut *mut c_void, d: *mut *const CUgraphNode, e: *mut *const c_void, n: *mut usize);
    fn cuStreamAddCallback(s: CUstream, cb: HostCallback, user: *mut c_void, flags: u32);
    fn cuStreamAddCallback_ptsz(s: CUstream, cb: HostCallback, user: *mut c_void, flags: u32);
    fn cuLaunchHostFunc(s: CUstream, f: HostFn, user: *mut c_void);
    fn cuLaunchHostFunc_ptsz(s: CUstream, f: HostFn, user: *mut c_void);
    fn cuStreamGetAttribute(s: CUstream, attr: u32, v: *mut [u8; 64]);
    fn cuStreamGetAttribute_ptsz(s: CUstream, attr: u32, v: *mut [u8; 64]);
    fn cuStreamSetAttribute(s: CUstream, attr: u32, v: *const c_void);
    fn cuStreamSetAttribute_ptsz(s: CUstream, attr: u32, v: *const c_void);
    fn cuStreamCopyAttributes(d: CUstream, s: CUstream);
    fn cuStreamCopyAttributes_ptsz(d: CUstream, s: CUstream);
    fn cuEventCreate(e: *mut CUevent, flags: u32);
    fn cuEventDestroy_v2(e: CUevent);
    fn cuEventRecord(e: CUevent, s: CUstream);
    fn cuEventRecord_ptsz(e: CUevent, s: CUstream);
    fn cuEventRecordWithFlags(e: CUevent, s: CUstream, flags: u32);
    fn cuEventRecordWithFlags_ptsz(e: CUevent, s: CUstream, flags: u32);
    fn cuEventSynchronize(e: CUevent);
    fn cuEventQuery(e: CUevent);
    fn cuEventElapsedTime(ms: *mut f32, a: CUevent, b: CUevent);
    fn cuEventElapsedTime_v2(ms: *mut f32, a: CUevent, b: CUevent);

    fn nvmlInit_v2();
    fn nvmlInit();
    fn nvmlInitWithFlags(flags: c_uint);
    fn nvmlShutdown();
    fn nvmlSystemGetDriverVersion(b: *mut c_char, n: c_uint);
    fn nvmlSystemGetNVMLVersion(b: *mut c_char, n: c_uint);
    fn nvmlSystemGetCudaDriverVersion(v: *mut i32);
    fn nvmlSystemGetCudaDriverVersion_v2(v: *mut i32);
    fn nvmlDeviceGetCount_v2(n: *mut c_uint);
    fn nvmlDeviceGetCount(n: *mut c_uint);
    fn nvmlDeviceGetHandleByIndex_v2(i: c_uint, h: *mut nvmlDevice_t);
    fn nvmlDeviceGetHandleByIndex(i: c_uint, h: *mut nvmlDevice_t);
    fn nvmlDeviceGetHandleByUUID(u: *const c_char, h: *mut nvmlDevice_t);
    fn nvmlDeviceGetHandleByPciBusId_v2(p: *const c_char, h: *mut nvmlDevice_t);
    fn nvmlDeviceGetName(h: nvmlDevice_t, b: *mut c_char, n: c_uint);
    fn nvmlDeviceGetUUID(h: nvmlDevice_t, b: *mut c_char, n: c_uint);
    fn nvmlDeviceGetIndex(h: nvmlDevice_t, i: *mut c_uint);
    fn nvmlDeviceGetMinorNumber(h: nvmlDevice_t, i: *mut c_uint);
    fn nvmlDeviceGetPciInfo_v3(h: nvmlDevice_t, p: *mut nvmlPciInfo_t);
    fn nvmlDeviceGetMemoryInfo(h: nvmlDevice_t, m: *mut nvmlMemory_t);
    fn nvmlDeviceGetMemoryInfo_v2(h: nvmlDevice_t, m: *mut nvmlMemory_v2_t);
    fn nvmlDeviceGetComputeRunningProcesses_v3(h: nvmlDevice_t, n: *mut c_uint, p: *mut nvmlProcessInfo_v2_t);
    fn nvmlDeviceGetComputeRunningProcesses_v2(h: nvmlDevice_t, n: *mut c_uint, p: *mut nvmlProcessInfo_v2_t);
    fn nvmlDeviceGetComputeRunningProcesses(h: nvmlDevice_t, n: *mut c_uint, p: *mut nvmlProcessInfo_v1_t);
    fn nvmlDeviceGetGraphicsRunningProcesses_v3(h: nvmlDevice_t, n: *mut c_uint, p: *mut nvmlProcessInfo_v2_t);
    fn nvmlDeviceGetUtilizationRates(h: nvmlDevice_t, u: *mut nvmlUtilization_t);
    fn nvmlDeviceGetProcessUtilization(h: nvmlDevice_t, s: *mut nvmlProcessUtilizationSample_t, n: *mut c_uint, last_seen: u64);
    fn nvmlDeviceGetCudaComputeCapability(h: nvmlDevice_t, a: *mut i32, b: *mut i32);
    fn nvmlEventSetCreate(s: *mut nvmlEventSet_t);
    fn nvmlDeviceGetSupportedEventTypes(h: nvmlDevice_t, t: *mut u64);
    fn nvmlDeviceRegisterEvents(h: nvmlDevice_t, t: u64, s: nvmlEventSet_t);
    fn nvmlEventSetWait_v2(s: nvmlEventSet_t, d: *mut nvmlEventData_t, ms: c_uint);
    fn nvmlEventSetWait(s: nvmlEventSet_t, d: *mut nvmlEventData_t, ms: c_uint);
    fn nvmlEventSetFree(s: nvmlEventSet_t);
    fn nvmlDeviceGetTemperature(h: nvmlDevice_t, sensor: c_uint, t: *mut c_uint);
    fn nvmlDeviceGetMigMode(h: nvmlDevice_t, current: *mut c_uint, pending: *mut c_uint);
    fn nvmlDeviceGetNvLinkRemoteDeviceType(h: nvmlDevice_t, link: c_uint, t: *mut u32);
    fn nvmlDeviceGetNvLinkRemotePciInfo_v2(h: nvmlDevice_t, link: c_uint, p: *mut nvmlPciInfo_t);
    fn nvmlDeviceGetGpuFabricInfoV(h: nvmlDevice_t, info: *mut c_void);
}
