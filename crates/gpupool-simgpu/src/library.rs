//! Context-independent kernel loading (`cuLibrary*`, `cuKernel*`), which NVIDIA's runtime 12
//! and later use for the kernels a program registers. A library is a simulated module and a
//! kernel is its function: as with the real driver, a `CUkernel` can be launched as a
//! `CUfunction`.

use crate::ctx::require_current;
use crate::mem::write;
use crate::module::{self, Kernel, Module};
use gpupool_cuda::cu::{CUdeviceptr, CUfunction, CUkernel, CUlibrary, CUmodule};
use gpupool_cuda::result::*;
use std::ffi::{c_char, c_void, CStr};

/// `cuLibraryLoadData`: library options and JIT options that carry numbers are ignored; the
/// JIT logs get why an image is refused, as `cuModuleLoadDataEx`'s.
#[allow(clippy::too_many_arguments)]
pub unsafe fn library_load_data(
    out: *mut CUlibrary,
    code: *const c_void,
    jit_options: *mut c_void,
    jit_values: *mut *mut c_void,
    jit_count: u32,
    _options: *mut c_void,
    _values: *mut *mut c_void,
    _count: u32,
) -> u32 {
    let load = || {
        if out.is_null() || code.is_null() {
            return (CUDA_ERROR_INVALID_VALUE, String::new());
        }
        // SAFETY: the caller passes an image.
        match unsafe { module::explained_image(code) }.and_then(module::load_explained) {
            Ok(m) => (write(out, m as CUlibrary), String::new()),
            Err((e, why)) => (e, why),
        }
    };
    // SAFETY: the caller's JIT option arrays.
    unsafe { gpupool_cuda::jit::load_with_logs(jit_count, jit_options.cast(), jit_values, load) }
}

/// `cuLibraryUnload` (handles of its kernels stay valid memory; its device variables are
/// freed).
pub unsafe fn library_unload(lib: CUlibrary) -> u32 {
    module::unload(lib as *const Module)
}

/// `cuLibraryGetKernel`.
pub unsafe fn library_get_kernel(out: *mut CUkernel, lib: CUlibrary, name: *const c_char) -> u32 {
    if out.is_null() || name.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: a NUL-terminated name.
    match module::find_kernel(lib as *const Module, unsafe { CStr::from_ptr(name) }) {
        Ok(k) => write(out, k as *const Kernel as CUkernel),
        Err(e) => e,
    }
}

/// `cuLibraryGetModule`: the library's module in the current context.
pub unsafe fn library_get_module(out: *mut CUmodule, lib: CUlibrary) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if let Err(e) = module::module(lib as *const Module) {
        return e;
    }
    if let Err(e) = require_current() {
        return e;
    }
    write(out, lib as CUmodule)
}

/// `cuLibraryGetKernelCount`.
pub unsafe fn library_get_kernel_count(count: *mut u32, lib: CUlibrary) -> u32 {
    if count.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    match module::module(lib as *const Module) {
        Ok(m) => write(count, m.kernels().len() as u32),
        Err(e) => e,
    }
}

/// `cuLibraryEnumerateKernels`: the first `n` kernels.
pub unsafe fn library_enumerate_kernels(out: *mut CUkernel, n: u32, lib: CUlibrary) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let kernels = match module::module(lib as *const Module) {
        Ok(m) => m.kernels(),
        Err(e) => return e,
    };
    for (i, k) in kernels.iter().take(n as usize).enumerate() {
        // SAFETY: `out` holds `n` handles; i < n.
        unsafe { *out.add(i) = k as *const Kernel as CUkernel };
    }
    CUDA_SUCCESS
}

/// `cuKernelGetFunction`: the kernel's function in the current context.
pub unsafe fn kernel_get_function(out: *mut CUfunction, kernel: CUkernel) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if let Err(e) = module::kernel(kernel as CUfunction) {
        return e;
    }
    if let Err(e) = require_current() {
        return e;
    }
    write(out, kernel as CUfunction)
}

/// `cuKernelGetParamInfo`: simulated kernels take no parameters.
pub unsafe fn kernel_get_param_info(
    kernel: CUkernel,
    index: usize,
    off: *mut usize,
    size: *mut usize,
) -> u32 {
    // SAFETY: same contract as for a function.
    unsafe { module::func_get_param_info(kernel as CUfunction, index, off, size) }
}

/// `cuKernelSetAttribute`: accepted, without effect on the simulated device.
pub unsafe fn kernel_set_attribute(_attr: i32, _value: i32, kernel: CUkernel, _dev: i32) -> u32 {
    match module::kernel(kernel as CUfunction) {
        Ok(_) => CUDA_SUCCESS,
        Err(e) => e,
    }
}

/// `cuKernelGetAttribute`: as `cuFuncGetAttribute` (every device alike).
pub unsafe fn kernel_get_attribute(out: *mut i32, attrib: i32, kernel: CUkernel, _dev: i32) -> u32 {
    // SAFETY: same contract.
    unsafe { module::func_get_attribute(out, attrib, kernel as CUfunction) }
}

/// `cuLibraryGetGlobal`.
pub unsafe fn library_get_global(
    dptr: *mut CUdeviceptr,
    bytes: *mut usize,
    lib: CUlibrary,
    name: *const c_char,
) -> u32 {
    // SAFETY: same contract (a library handle is its module's).
    unsafe { module::module_get_global(dptr, bytes, lib as CUmodule, name) }
}

/// `cuKernelSetCacheConfig`: accepted, without effect on the simulated device.
pub unsafe fn kernel_set_cache_config(kernel: CUkernel, _config: u32, dev: i32) -> u32 {
    // SAFETY: no pointers.
    unsafe { kernel_set_attribute(0, 0, kernel, dev) }
}

/// `cuKernelGetLibrary`.
pub unsafe fn kernel_get_library(out: *mut CUlibrary, kernel: CUkernel) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    match module::module_of_kernel(kernel as *const Kernel) {
        Ok(m) => write(out, m as CUlibrary),
        Err(e) => e,
    }
}
