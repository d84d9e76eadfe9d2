//! Raw result codes. Results cross the FFI boundary as `u32` so that codes unknown to us (from a
//! newer driver) pass through unchanged.

use cudarc::driver::sys::CUresult as R;

/// A raw `CUresult`.
pub type CuResult = u32;
/// A raw `nvmlReturn_t`.
pub type NvmlReturn = u32;

/// `CUDA_SUCCESS`.
pub const CUDA_SUCCESS: CuResult = R::CUDA_SUCCESS as u32;
/// `CUDA_ERROR_INVALID_VALUE`.
pub const CUDA_ERROR_INVALID_VALUE: CuResult = R::CUDA_ERROR_INVALID_VALUE as u32;
/// `CUDA_ERROR_OUT_OF_MEMORY`.
pub const CUDA_ERROR_OUT_OF_MEMORY: CuResult = R::CUDA_ERROR_OUT_OF_MEMORY as u32;
/// `CUDA_ERROR_NOT_INITIALIZED`.
pub const CUDA_ERROR_NOT_INITIALIZED: CuResult = R::CUDA_ERROR_NOT_INITIALIZED as u32;
/// `CUDA_ERROR_NO_DEVICE`.
pub const CUDA_ERROR_NO_DEVICE: CuResult = R::CUDA_ERROR_NO_DEVICE as u32;
/// `CUDA_ERROR_INVALID_DEVICE`.
pub const CUDA_ERROR_INVALID_DEVICE: CuResult = R::CUDA_ERROR_INVALID_DEVICE as u32;
/// `CUDA_ERROR_INVALID_CONTEXT`.
pub const CUDA_ERROR_INVALID_CONTEXT: CuResult = R::CUDA_ERROR_INVALID_CONTEXT as u32;
/// `CUDA_ERROR_INVALID_HANDLE`.
pub const CUDA_ERROR_INVALID_HANDLE: CuResult = R::CUDA_ERROR_INVALID_HANDLE as u32;
/// `CUDA_ERROR_NOT_FOUND`.
pub const CUDA_ERROR_NOT_FOUND: CuResult = R::CUDA_ERROR_NOT_FOUND as u32;
/// `CUDA_ERROR_NOT_READY`.
pub const CUDA_ERROR_NOT_READY: CuResult = R::CUDA_ERROR_NOT_READY as u32;
/// `CUDA_ERROR_NOT_SUPPORTED`.
pub const CUDA_ERROR_NOT_SUPPORTED: CuResult = R::CUDA_ERROR_NOT_SUPPORTED as u32;
/// `CUDA_ERROR_INVALID_IMAGE`.
pub const CUDA_ERROR_INVALID_IMAGE: CuResult = R::CUDA_ERROR_INVALID_IMAGE as u32;
/// `CUDA_ERROR_INVALID_PTX`.
pub const CUDA_ERROR_INVALID_PTX: CuResult = R::CUDA_ERROR_INVALID_PTX as u32;
/// `CUDA_ERROR_FILE_NOT_FOUND`.
pub const CUDA_ERROR_FILE_NOT_FOUND: CuResult = R::CUDA_ERROR_FILE_NOT_FOUND as u32;
/// `CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE`.
pub const CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE: CuResult =
    R::CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE as u32;
/// `CUDA_ERROR_ALREADY_MAPPED`.
pub const CUDA_ERROR_ALREADY_MAPPED: CuResult = R::CUDA_ERROR_ALREADY_MAPPED as u32;
/// `CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED`.
pub const CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED: CuResult =
    R::CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED as u32;
/// `CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED`.
pub const CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED: CuResult =
    R::CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED as u32;
/// `CUDA_ERROR_ILLEGAL_ADDRESS`.
pub const CUDA_ERROR_ILLEGAL_ADDRESS: CuResult = R::CUDA_ERROR_ILLEGAL_ADDRESS as u32;
/// `CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED`.
pub const CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED: CuResult =
    R::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED as u32;
/// `CUDA_ERROR_STREAM_CAPTURE_INVALIDATED`.
pub const CUDA_ERROR_STREAM_CAPTURE_INVALIDATED: CuResult =
    R::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED as u32;
/// `CUDA_ERROR_STREAM_CAPTURE_IMPLICIT`.
pub const CUDA_ERROR_STREAM_CAPTURE_IMPLICIT: CuResult =
    R::CUDA_ERROR_STREAM_CAPTURE_IMPLICIT as u32;
/// `CUDA_ERROR_STREAM_CAPTURE_UNMATCHED`.
pub const CUDA_ERROR_STREAM_CAPTURE_UNMATCHED: CuResult =
    R::CUDA_ERROR_STREAM_CAPTURE_UNMATCHED as u32;
/// `CUDA_ERROR_PEER_ACCESS_UNSUPPORTED`.
pub const CUDA_ERROR_PEER_ACCESS_UNSUPPORTED: CuResult =
    R::CUDA_ERROR_PEER_ACCESS_UNSUPPORTED as u32;
/// `CUDA_ERROR_PEER_ACCESS_NOT_ENABLED`.
pub const CUDA_ERROR_PEER_ACCESS_NOT_ENABLED: CuResult =
    R::CUDA_ERROR_PEER_ACCESS_NOT_ENABLED as u32;
/// `CUDA_ERROR_ILLEGAL_STATE`.
pub const CUDA_ERROR_ILLEGAL_STATE: CuResult = R::CUDA_ERROR_ILLEGAL_STATE as u32;
/// `CUDA_ERROR_OPERATING_SYSTEM`.
pub const CUDA_ERROR_OPERATING_SYSTEM: CuResult = R::CUDA_ERROR_OPERATING_SYSTEM as u32;
/// `CUDA_ERROR_UNKNOWN`.
pub const CUDA_ERROR_UNKNOWN: CuResult = R::CUDA_ERROR_UNKNOWN as u32;

/// `NVML_SUCCESS`.
pub const NVML_SUCCESS: NvmlReturn = 0;
/// `NVML_ERROR_UNINITIALIZED`.
pub const NVML_ERROR_UNINITIALIZED: NvmlReturn = 1;
/// `NVML_ERROR_INVALID_ARGUMENT`.
pub const NVML_ERROR_INVALID_ARGUMENT: NvmlReturn = 2;
/// `NVML_ERROR_NOT_SUPPORTED`.
pub const NVML_ERROR_NOT_SUPPORTED: NvmlReturn = 3;
/// `NVML_ERROR_NO_PERMISSION`.
pub const NVML_ERROR_NO_PERMISSION: NvmlReturn = 4;
/// `NVML_ERROR_DRIVER_NOT_LOADED`.
pub const NVML_ERROR_DRIVER_NOT_LOADED: NvmlReturn = 9;
/// `NVML_ERROR_LIBRARY_NOT_FOUND`.
pub const NVML_ERROR_LIBRARY_NOT_FOUND: NvmlReturn = 12;
/// `NVML_ERROR_NOT_FOUND`.
pub const NVML_ERROR_NOT_FOUND: NvmlReturn = 6;
/// `NVML_ERROR_INSUFFICIENT_SIZE`.
pub const NVML_ERROR_INSUFFICIENT_SIZE: NvmlReturn = 7;
/// `NVML_ERROR_GPU_IS_LOST`: the device fell off the bus or otherwise became inaccessible.
pub const NVML_ERROR_GPU_IS_LOST: NvmlReturn = 15;
/// `NVML_ERROR_FUNCTION_NOT_FOUND`.
pub const NVML_ERROR_FUNCTION_NOT_FOUND: NvmlReturn = 13;
/// `NVML_ERROR_ARGUMENT_VERSION_MISMATCH`.
pub const NVML_ERROR_ARGUMENT_VERSION_MISMATCH: NvmlReturn = 25;
/// `NVML_ERROR_UNKNOWN`.
pub const NVML_ERROR_UNKNOWN: NvmlReturn = 999;

use std::ffi::{c_char, CStr};

fn error_text(e: u32) -> Option<(&'static CStr, &'static CStr)> {
    Some(match e {
        CUDA_SUCCESS => (c"CUDA_SUCCESS", c"no error"),
        CUDA_ERROR_INVALID_VALUE => (c"CUDA_ERROR_INVALID_VALUE", c"invalid argument"),
        CUDA_ERROR_OUT_OF_MEMORY => (c"CUDA_ERROR_OUT_OF_MEMORY", c"out of memory"),
        CUDA_ERROR_NOT_INITIALIZED => (c"CUDA_ERROR_NOT_INITIALIZED", c"initialization error"),
        CUDA_ERROR_NO_DEVICE => (
            c"CUDA_ERROR_NO_DEVICE",
            c"no CUDA-capable device is detected",
        ),
        CUDA_ERROR_INVALID_DEVICE => (c"CUDA_ERROR_INVALID_DEVICE", c"invalid device ordinal"),
        CUDA_ERROR_INVALID_CONTEXT => (c"CUDA_ERROR_INVALID_CONTEXT", c"invalid device context"),
        CUDA_ERROR_INVALID_HANDLE => (c"CUDA_ERROR_INVALID_HANDLE", c"invalid resource handle"),
        CUDA_ERROR_NOT_FOUND => (c"CUDA_ERROR_NOT_FOUND", c"named symbol not found"),
        CUDA_ERROR_NOT_SUPPORTED => (c"CUDA_ERROR_NOT_SUPPORTED", c"operation not supported"),
        CUDA_ERROR_INVALID_IMAGE => (
            c"CUDA_ERROR_INVALID_IMAGE",
            c"device kernel image is invalid",
        ),
        CUDA_ERROR_INVALID_PTX => (c"CUDA_ERROR_INVALID_PTX", c"a PTX JIT compilation failed"),
        CUDA_ERROR_PEER_ACCESS_UNSUPPORTED => (
            c"CUDA_ERROR_PEER_ACCESS_UNSUPPORTED",
            c"peer access is not supported between these two devices",
        ),
        CUDA_ERROR_PEER_ACCESS_NOT_ENABLED => (
            c"CUDA_ERROR_PEER_ACCESS_NOT_ENABLED",
            c"peer access has not been enabled",
        ),
        CUDA_ERROR_ILLEGAL_STATE => (
            c"CUDA_ERROR_ILLEGAL_STATE",
            c"the operation cannot be performed in the present state",
        ),
        CUDA_ERROR_OPERATING_SYSTEM => (
            c"CUDA_ERROR_OPERATING_SYSTEM",
            c"OS call failed or operation not supported on this OS",
        ),
        46 => (
            c"CUDA_ERROR_DEVICE_UNAVAILABLE",
            c"CUDA-capable device(s) is/are busy or unavailable",
        ),
        800 => (c"CUDA_ERROR_NOT_PERMITTED", c"operation not permitted"),
        _ => return None,
    })
}

/// The name of a `CUresult` (`CUDA_ERROR_INVALID_IMAGE`), if it is one the crate names.
pub fn error_name(e: u32) -> Option<&'static CStr> {
    error_text(e).map(|(name, _)| name)
}

/// `cuGetErrorName`.
///
/// # Safety
/// `out` is null or valid for writing.
pub unsafe fn get_error_name(e: u32, out: *mut *const c_char) -> u32 {
    match (error_text(e), out.is_null()) {
        // SAFETY: non-null out pointer; static string.
        (Some((n, _)), false) => unsafe {
            *out = n.as_ptr();
            CUDA_SUCCESS
        },
        _ => CUDA_ERROR_INVALID_VALUE,
    }
}

/// `cuGetErrorString`.
///
/// # Safety
/// `out` is null or valid for writing.
pub unsafe fn get_error_string(e: u32, out: *mut *const c_char) -> u32 {
    match (error_text(e), out.is_null()) {
        // SAFETY: non-null out pointer; static string.
        (Some((_, s)), false) => unsafe {
            *out = s.as_ptr();
            CUDA_SUCCESS
        },
        _ => CUDA_ERROR_INVALID_VALUE,
    }
}
