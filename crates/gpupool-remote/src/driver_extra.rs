//! Driver and NVML functions the session calls for hand-written calls and for its own
//! bookkeeping.

use gpupool_cuda::cu::*;
use gpupool_cuda::nvml::{
    nvmlDevice_t, nvmlMemory_t, nvmlMemory_v2_t, nvmlPciInfo_t, nvmlProcessInfo_v2_t,
    nvmlUtilization_t,
};
use gpupool_cuda::tensor_map::RawTensorMap;
use std::ffi::{c_char, c_uint, c_void, CStr, CString};

macro_rules! extra_functions {
    ($(#[$doc:meta])* struct $struct:ident; $( fn $name:ident ( $($ty:ty),* ) ; )*) => {
        $(#[$doc])*
        #[allow(non_snake_case)]
        pub struct $struct {
            $( #[doc = concat!("`", stringify!($name), "`.")]
               pub $name: Option<unsafe extern "C" fn($($ty),*) -> u32>, )*
        }

        impl $struct {
            /// Finds every function with `resolve` (a `dlsym`).
            pub fn resolve(resolve: &dyn Fn(&CStr) -> *mut c_void) -> $struct {
                $struct {
                    $( $name: {
                        let p = resolve(&CString::new(stringify!($name)).unwrap_or_default());
                        // SAFETY: the symbol of this name has this signature.
                        (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, unsafe extern "C" fn($($ty),*) -> u32>(p) })
                    }, )*
                }
            }
        }
    };
}

extra_functions! {
    /// Driver functions outside the call table (`None`: the driver lacks it).
    struct Extra;
    fn cuInit(u32);
    fn cuDriverGetVersion(*mut i32);
    fn cuDeviceGetCount(*mut i32);
    fn cuDeviceGet(*mut CUdevice, i32);
    fn cuDeviceGetName(*mut c_char, i32, CUdevice);
    fn cuDeviceGetPCIBusId(*mut c_char, i32, CUdevice);
    fn cuCtxSetCurrent(CUcontext);
    fn cuMemAlloc_v2(*mut CUdeviceptr, usize);
    fn cuMemAllocPitch_v2(*mut CUdeviceptr, *mut usize, usize, usize, u32);
    fn cuMemAllocManaged(*mut CUdeviceptr, usize, u32);
    fn cuMemAllocAsync(*mut CUdeviceptr, usize, CUstream);
    fn cuMemAllocFromPoolAsync(*mut CUdeviceptr, usize, CUmemoryPool, CUstream);
    fn cuMemFree_v2(CUdeviceptr);
    fn cuMemFreeAsync(CUdeviceptr, CUstream);
    fn cuMemcpyHtoD_v2(CUdeviceptr, *const c_void, usize);
    fn cuMemcpyHtoDAsync_v2(CUdeviceptr, *const c_void, usize, CUstream);
    fn cuMemcpyDtoH_v2(*mut c_void, CUdeviceptr, usize);
    fn cuMemcpyDtoHAsync_v2(*mut c_void, CUdeviceptr, usize, CUstream);
    fn cuMemcpyDtoD_v2(CUdeviceptr, CUdeviceptr, usize);
    fn cuMemcpyDtoDAsync_v2(CUdeviceptr, CUdeviceptr, usize, CUstream);
    fn cuMemcpy2D_v2(*const CUDA_MEMCPY2D);
    fn cuMemcpy2DAsync_v2(*const CUDA_MEMCPY2D, CUstream);
    fn cuMemcpy3D_v2(*const CUDA_MEMCPY3D);
    fn cuMemcpy3DAsync_v2(*const CUDA_MEMCPY3D, CUstream);
    fn cuMemsetD8_v2(CUdeviceptr, u8, usize);
    fn cuMemsetD16_v2(CUdeviceptr, u16, usize);
    fn cuMemsetD32_v2(CUdeviceptr, u32, usize);
    fn cuMemsetD8Async(CUdeviceptr, u8, usize, CUstream);
    fn cuMemsetD16Async(CUdeviceptr, u16, usize, CUstream);
    fn cuMemsetD32Async(CUdeviceptr, u32, usize, CUstream);
    fn cuMemsetD2D8_v2(CUdeviceptr, usize, u8, usize, usize);
    fn cuMemsetD2D16_v2(CUdeviceptr, usize, u16, usize, usize);
    fn cuMemsetD2D32_v2(CUdeviceptr, usize, u32, usize, usize);
    fn cuMemsetD2D8Async(CUdeviceptr, usize, u8, usize, usize, CUstream);
    fn cuMemsetD2D16Async(CUdeviceptr, usize, u16, usize, usize, CUstream);
    fn cuMemsetD2D32Async(CUdeviceptr, usize, u32, usize, usize, CUstream);
    fn cuStreamSynchronize(CUstream);
    fn cuLinkCreate_v2(u32, *mut u32, *mut *mut c_void, *mut CUlinkState);
    fn cuLinkAddData_v2(CUlinkState, u32, *mut c_void, usize, *const c_char, u32, *mut u32, *mut *mut c_void);
    fn cuLinkComplete(CUlinkState, *mut *mut c_void, *mut usize);
    fn cuLinkDestroy(CUlinkState);
    fn cuMemGetAddressRange_v2(*mut CUdeviceptr, *mut usize, CUdeviceptr);
    fn cuIpcGetMemHandle(*mut CUipcMemHandle_st, CUdeviceptr);
    fn cuIpcOpenMemHandle_v2(*mut CUdeviceptr, CUipcMemHandle_st, u32);
    fn cuIpcCloseMemHandle(CUdeviceptr);
    fn cuIpcGetEventHandle(*mut CUipcEventHandle_st, CUevent);
    fn cuIpcOpenEventHandle(*mut CUevent, CUipcEventHandle_st);
    fn cuStreamIsCapturing(CUstream, *mut u32);
    fn cuThreadExchangeStreamCaptureMode(*mut u32);
    fn cuGraphGetNodes(CUgraph, *mut CUgraphNode, *mut usize);
    fn cuGraphAddEmptyNode(*mut CUgraphNode, CUgraph, *const CUgraphNode, usize);
    fn cuGraphAddMemsetNode(*mut CUgraphNode, CUgraph, *const CUgraphNode, usize, *const CUDA_MEMSET_NODE_PARAMS_st, CUcontext);
    fn cuGraphAddMemcpyNode(*mut CUgraphNode, CUgraph, *const CUgraphNode, usize, *const CUDA_MEMCPY3D, CUcontext);
    fn cuGraphAddChildGraphNode(*mut CUgraphNode, CUgraph, *const CUgraphNode, usize, CUgraph);
    fn cuGraphAddMemAllocNode(*mut CUgraphNode, CUgraph, *const CUgraphNode, usize, *mut CUDA_MEM_ALLOC_NODE_PARAMS_v1_st);
    fn cuGraphAddMemFreeNode(*mut CUgraphNode, CUgraph, *const CUgraphNode, usize, CUdeviceptr);
    fn cuCtxGetCurrent(*mut CUcontext);
    fn cuStreamGetCaptureInfo_v2(CUstream, *mut u32, *mut u64, *mut CUgraph, *mut *const CUgraphNode, *mut usize);
    fn cuModuleLoadData(*mut CUmodule, *const c_void);
    fn cuModuleGetFunction(*mut CUfunction, CUmodule, *const c_char);
    fn cuFuncGetParamInfo(CUfunction, usize, *mut usize, *mut usize);
    fn cuLibraryLoadData(*mut CUlibrary, *const c_void, *mut c_void, *mut *mut c_void, u32, *mut c_void, *mut *mut c_void, u32);
    fn cuLibraryGetKernel(*mut CUkernel, CUlibrary, *const c_char);
    fn cuKernelGetFunction(*mut CUfunction, CUkernel);
    fn cuLibraryEnumerateKernels(*mut CUkernel, u32, CUlibrary);
    fn cuKernelGetParamInfo(CUkernel, usize, *mut usize, *mut usize);
    fn cuLaunchKernel(CUfunction, u32, u32, u32, u32, u32, u32, u32, CUstream, *mut *mut c_void, *mut *mut c_void);
    fn cuLaunchCooperativeKernel(CUfunction, u32, u32, u32, u32, u32, u32, u32, CUstream, *mut *mut c_void);
    // `CUDA_KERNEL_NODE_PARAMS_v2` as `RawKernelNodeParams`.
    fn cuGraphAddKernelNode_v2(*mut CUgraphNode, CUgraph, *const CUgraphNode, usize, *const crate::launch_ex::RawKernelNodeParams);
    fn cuLaunchKernelEx(*const crate::launch_ex::RawLaunchConfig, CUfunction, *mut *mut c_void, *mut *mut c_void);
    fn cuOccupancyMaxActiveClusters(*mut i32, CUfunction, *const crate::launch_ex::RawLaunchConfig);
    fn cuOccupancyMaxPotentialClusterSize(*mut i32, CUfunction, *const crate::launch_ex::RawLaunchConfig);
    fn cuModuleGetGlobal_v2(*mut CUdeviceptr, *mut usize, CUmodule, *const c_char);
    fn cuLibraryGetGlobal(*mut CUdeviceptr, *mut usize, CUlibrary, *const c_char);
    fn cuStreamSetAttribute(CUstream, u32, *const [u8; 64]);
    fn cuTensorMapEncodeTiled(*mut RawTensorMap, u32, u32, *mut c_void, *const u64, *const u64, *const u32, *const u32, u32, u32, u32, u32);
    fn cuTensorMapEncodeIm2col(*mut RawTensorMap, u32, u32, *mut c_void, *const u64, *const u64, *const i32, *const i32, u32, u32, *const u32, u32, u32, u32, u32);
    fn cuTensorMapEncodeIm2colWide(*mut RawTensorMap, u32, u32, *mut c_void, *const u64, *const u64, i32, i32, u32, u32, *const u32, u32, u32, u32, u32, u32);
    fn cuTensorMapReplaceAddress(*mut RawTensorMap, *mut c_void);
    fn cuPointerGetAttributes(u32, *mut i32, *mut *mut c_void, CUdeviceptr);
    fn cuMemPoolGetAttribute(CUmemoryPool, u32, *mut c_void);
    fn cuMemPoolSetAttribute(CUmemoryPool, u32, *mut c_void);
    fn cuDeviceGetAttribute(*mut i32, i32, CUdevice);
    fn cuDeviceGetUuid(*mut CUuuid, CUdevice);
    fn cuMemAddressReserve(*mut CUdeviceptr, usize, usize, CUdeviceptr, u64);
    fn cuMemAddressFree(CUdeviceptr, usize);
    // `CUmemAccessDesc` as three raw 32-bit fields (location type and id, access flags).
    fn cuMemSetAccess(CUdeviceptr, usize, *const [u32; 3], usize);
}

extra_functions! {
    /// NVML functions behind the client's `libnvidia-ml.so.1` (`None`: NVML lacks it).
    struct NvmlFunctions;
    fn nvmlInit_v2();
    fn nvmlDeviceGetCount_v2(*mut c_uint);
    fn nvmlDeviceGetHandleByIndex_v2(c_uint, *mut nvmlDevice_t);
    fn nvmlDeviceGetName(nvmlDevice_t, *mut c_char, c_uint);
    fn nvmlDeviceGetUUID(nvmlDevice_t, *mut c_char, c_uint);
    fn nvmlSystemGetDriverVersion(*mut c_char, c_uint);
    fn nvmlSystemGetNVMLVersion(*mut c_char, c_uint);
    fn nvmlDeviceGetMemoryInfo(nvmlDevice_t, *mut nvmlMemory_t);
    fn nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t, *mut nvmlMemory_v2_t);
    fn nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t, *mut c_uint, *mut nvmlProcessInfo_v2_t);
    fn nvmlDeviceGetPciInfo_v3(nvmlDevice_t, *mut nvmlPciInfo_t);
    fn nvmlDeviceGetCudaComputeCapability(nvmlDevice_t, *mut i32, *mut i32);
    fn nvmlDeviceGetUtilizationRates(nvmlDevice_t, *mut nvmlUtilization_t);
    fn nvmlSystemGetCudaDriverVersion(*mut i32);
    fn nvmlDeviceGetTemperature(nvmlDevice_t, c_uint, *mut c_uint);
}
