//! Modules of simulated kernels: a text image naming each kernel and how long it runs.
//!
//! ```text
//! gpupool-sim-module 1
//! # name        duration   [per-block=duration]
//! kernel busy_50us  50us
//! kernel scaled     10us  per-block=1us
//! ```
//!
//! A launch of `scaled` with a grid of 100 blocks runs 10 µs + 100 × 1 µs. The image is what
//! `cuModuleLoadData` / `cuModuleLoadDataEx` take (NUL-terminated) and what `cuModuleLoad`
//! reads from a file. Anything else (a real cubin, PTX, a fat binary) is refused with
//! `CUDA_ERROR_INVALID_IMAGE`.

use crate::ctx::require_current;
use crate::mem::write;
use gpupool_config::parse_duration_ns;
use gpupool_cuda::cu::{CUfunction, CUmodule};
use gpupool_cuda::result::*;
use std::ffi::{c_char, c_void, CStr};

/// First line of a simulated-module image.
pub const HEADER: &str = "gpupool-sim-module 1";

/// A kernel of a simulated module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// Its name (`cuModuleGetFunction`).
    pub name: String,
    /// Duration of every launch.
    pub base_ns: u64,
    /// Added per block of the grid.
    pub per_block_ns: u64,
}

impl Kernel {
    /// How long a launch with `blocks` blocks runs.
    pub fn duration_ns(&self, blocks: u64) -> u64 {
        self.base_ns
            .saturating_add(self.per_block_ns.saturating_mul(blocks))
    }
}

/// A loaded module: its kernels (handles point into it and stay valid: modules are never freed,
/// they are small).
pub struct Module {
    kernels: Vec<Kernel>,
}

/// Parses a module image; the error names the line.
pub fn parse(image: &str) -> Result<Vec<Kernel>, String> {
    let mut lines = image.lines().enumerate();
    match lines.next() {
        Some((_, first)) if first.trim() == HEADER => {}
        _ => {
            return Err(format!(
                "not a simulated module (first line must be {HEADER:?})"
            ))
        }
    }
    let mut kernels: Vec<Kernel> = Vec::new();
    for (n, line) in lines {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: String| format!("line {}: {why}: {line:?}", n + 1);
        let words: Vec<&str> = line.split_whitespace().collect();
        let (name, duration, rest) = match words.as_slice() {
            ["kernel", name, duration, rest @ ..] => (*name, *duration, rest),
            _ => {
                return Err(bad(
                    "expected `kernel NAME DURATION [per-block=DURATION]`".into()
                ))
            }
        };
        let base_ns = parse_duration_ns(duration).map_err(|e| bad(e.to_string()))?;
        let mut per_block_ns = 0;
        for option in rest {
            match option.split_once('=') {
                Some(("per-block", d)) => {
                    per_block_ns = parse_duration_ns(d).map_err(|e| bad(e.to_string()))?
                }
                _ => {
                    return Err(bad(format!(
                        "unknown option {option:?} (per-block=DURATION)"
                    )))
                }
            }
        }
        if kernels.iter().any(|k| k.name == name) {
            return Err(bad(format!("kernel {name:?} defined twice")));
        }
        kernels.push(Kernel {
            name: name.to_string(),
            base_ns,
            per_block_ns,
        });
    }
    Ok(kernels)
}

fn load(out: *mut CUmodule, image: &str) -> u32 {
    if let Err(e) = require_current() {
        return e;
    }
    match parse(image) {
        Ok(kernels) => {
            let m = Box::into_raw(Box::new(Module { kernels }));
            write(out, m as CUmodule)
        }
        Err(why) => {
            if crate::machine::tracing() {
                eprintln!("gpupool simulated GPU: module refused: {why}");
            }
            CUDA_ERROR_INVALID_IMAGE
        }
    }
}

/// `cuModuleLoadData`.
pub unsafe fn module_load_data(out: *mut CUmodule, image: *const c_void) -> u32 {
    if out.is_null() || image.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // Real images are binary; only a NUL-terminated text image can be ours.
    // SAFETY: the caller passes an image; text images are NUL-terminated.
    let text = unsafe { CStr::from_ptr(image as *const c_char) };
    match text.to_str() {
        Ok(t) => load(out, t),
        Err(_) => CUDA_ERROR_INVALID_IMAGE,
    }
}

/// `cuModuleLoadDataEx` (JIT options are ignored).
pub unsafe fn module_load_data_ex(
    out: *mut CUmodule,
    image: *const c_void,
    _n: u32,
    _options: *mut c_void,
    _values: *mut *mut c_void,
) -> u32 {
    // SAFETY: same contract.
    unsafe { module_load_data(out, image) }
}

/// `cuModuleLoad`: reads the image from a file.
pub unsafe fn module_load(out: *mut CUmodule, path: *const c_char) -> u32 {
    if out.is_null() || path.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: NUL-terminated file name.
    let path = unsafe { CStr::from_ptr(path) };
    let Ok(path) = path.to_str() else {
        return CUDA_ERROR_FILE_NOT_FOUND;
    };
    match std::fs::read_to_string(path) {
        Ok(text) => load(out, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => CUDA_ERROR_FILE_NOT_FOUND,
        Err(_) => CUDA_ERROR_INVALID_IMAGE,
    }
}

/// `cuModuleUnload` (handles of its kernels stay valid memory).
pub unsafe fn module_unload(m: CUmodule) -> u32 {
    if m.is_null() {
        CUDA_ERROR_INVALID_HANDLE
    } else {
        CUDA_SUCCESS
    }
}

/// `cuModuleGetFunction`.
pub unsafe fn module_get_function(out: *mut CUfunction, m: CUmodule, name: *const c_char) -> u32 {
    if out.is_null() || name.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if m.is_null() {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    // SAFETY: module handles are leaked boxes from `load`; the name is NUL-terminated.
    let (module, name) = unsafe { (&*(m as *const Module), CStr::from_ptr(name)) };
    match module
        .kernels
        .iter()
        .find(|k| k.name.as_bytes() == name.to_bytes())
    {
        Some(k) => write(out, k as *const Kernel as CUfunction),
        None => CUDA_ERROR_NOT_FOUND,
    }
}

/// The kernel behind a function handle.
pub fn kernel(f: CUfunction) -> Result<&'static Kernel, u32> {
    if f.is_null() {
        return Err(CUDA_ERROR_INVALID_HANDLE);
    }
    // SAFETY: function handles are references into leaked modules.
    Ok(unsafe { &*(f as *const Kernel) })
}

/// `cuFuncGetParamInfo`: simulated kernels take no parameters, so every index is past the end.
pub unsafe fn func_get_param_info(
    f: CUfunction,
    _index: usize,
    _off: *mut usize,
    _size: *mut usize,
) -> u32 {
    match kernel(f) {
        Ok(_) => gpupool_cuda::result::CUDA_ERROR_INVALID_VALUE,
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernels_with_durations() {
        let k = parse("gpupool-sim-module 1\n# two kernels\nkernel a 50us\nkernel b 10us per-block=1us # scaled\n")
            .unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(k[0].duration_ns(1000), 50_000);
        assert_eq!(k[1].duration_ns(100), 110_000);
    }

    #[test]
    fn bad_images_name_the_line() {
        for (image, needle) in [
            ("\x7fELF", "not a simulated module"),
            ("gpupool-sim-module 1\nkernel a", "line 2"),
            ("gpupool-sim-module 1\nkernel a 5 parsecs", "line 2"),
            (
                "gpupool-sim-module 1\nkernel a 1ms\nkernel a 2ms",
                "defined twice",
            ),
            (
                "gpupool-sim-module 1\nkernel a 1ms fast=yes",
                "unknown option",
            ),
        ] {
            let e = parse(image).unwrap_err();
            assert!(e.contains(needle), "{image:?}: {e}");
        }
    }
}
