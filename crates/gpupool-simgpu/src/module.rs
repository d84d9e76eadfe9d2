//! Modules of simulated kernels: a text image naming each kernel and how long it runs.
//!
//! ```text
//! gpupool-sim-module 1
//! # name        duration   [per-block=duration]
//! kernel busy_50us  50us
//! kernel scaled     10us  per-block=1us
//! ```
//!
//! A launch of `scaled` with a grid of 100 blocks runs 10 µs + 100 × 1 µs. A kernel with
//! `reads=buffer` takes two parameters, a device address and a byte count, and runs that many
//! bytes longer at the bandwidth of the memory the address is in: [`DEVICE_GBPS`] for device
//! memory, [`HOST_MAPPED_GBPS`](crate::mem::HOST_MAPPED_GBPS) for host memory mapped into the device (read over the bus). The image is what
//! `cuModuleLoadData` / `cuModuleLoadDataEx` / `cuLibraryLoadData` take (NUL-terminated),
//! what `cuModuleLoad` reads from a file, or the payload of a fat binary (or of the wrapper a
//! program registers with the runtime), which is how the runtime's own kernels arrive.
//!
//! A line `code` adds real GPU code to a simulated module (see below): the JIT linker's output
//! when it links both.
//!
//! Real GPU code (a cubin, PTX, or a fat binary of them, as PyTorch and its libraries register)
//! loads as a module whose kernels are found by any name and run [`CODE_KERNEL_NS`] each; their
//! code never runs, so what they compute is not computed. Other text is refused with
//! `CUDA_ERROR_INVALID_IMAGE`.

use crate::ctx::require_current;
use crate::mem::write;
use gpupool_config::parse_duration_ns;
use gpupool_cuda::cu::{CUdeviceptr, CUfunction, CUlaunchConfig_st, CUmodule};
#[cfg(test)]
use gpupool_cuda::images::FATBIN_WRAPPER_MAGIC;
use gpupool_cuda::images::{self, ImageKind, ELF_MAGIC, FATBIN_MAGIC};
use gpupool_cuda::jit;
use gpupool_cuda::result::*;
use gpupool_cuda::spinlock::{ForkLock, SpinLock};
use std::collections::{HashMap, HashSet};
use std::ffi::{c_char, c_void, CStr};

/// Bandwidth of a kernel reading device memory (GB/s, an H100's HBM3 order of magnitude).
pub const DEVICE_GBPS: u64 = 2000;

/// How long a launch of a kernel of real GPU code runs on the simulator.
pub const CODE_KERNEL_NS: u64 = 5_000;

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
    /// Reads the buffer its parameters name (address, bytes): time at that memory's bandwidth.
    pub reads_buffer: bool,
}

impl Kernel {
    /// How long a launch with `blocks` blocks runs, before any memory it reads.
    pub fn duration_ns(&self, blocks: u64) -> u64 {
        self.base_ns
            .saturating_add(self.per_block_ns.saturating_mul(blocks))
    }

    /// Time the launch spends reading the buffer its parameters name (0 for kernels that read
    /// none); an address outside the simulator's memory is `CUDA_ERROR_INVALID_VALUE`.
    ///
    /// # Safety
    /// `params` is null or the launch's `kernelParams` (for a buffer-reading kernel: pointers to
    /// its two 8-byte parameters).
    pub unsafe fn memory_ns(&self, params: *mut *mut c_void) -> Result<u64, u32> {
        if !self.reads_buffer {
            return Ok(0);
        }
        if params.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: the caller's parameter array holds two pointers to 8-byte values.
        let (ptr, bytes) = unsafe {
            let (a, b) = (*params, *params.add(1));
            if a.is_null() || b.is_null() {
                return Err(CUDA_ERROR_INVALID_VALUE);
            }
            (
                std::ptr::read_unaligned(a as *const u64),
                std::ptr::read_unaligned(b as *const u64),
            )
        };
        let (_, alloc) = crate::mem::find(ptr, bytes).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        let gbps = match alloc.kind {
            crate::mem::Kind::Host
            | crate::mem::Kind::Registered
            | crate::mem::Kind::ManagedOnHost => crate::mem::HOST_MAPPED_GBPS,
            _ => DEVICE_GBPS,
        };
        // 1 GB/s is one byte per nanosecond.
        Ok(bytes / gbps)
    }
}

/// A loaded module: its kernels (handles point into it and stay valid: modules are never freed,
/// they are small).
pub struct Module {
    kernels: Vec<Kernel>,
    /// Real GPU code: its kernels are made on first lookup ([`CODE_KERNEL_NS`] each).
    code: bool,
}

/// What a module image holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image<'a> {
    /// A simulated module's text (parsed when loaded).
    Simulated(&'a str),
    /// Real GPU code: a cubin, PTX, or a fat binary without a simulated module.
    Code,
}

/// What a text image is: PTX (its `.version` and `.target` directives) or a simulated module.
pub(crate) fn text_image(text: &str) -> Image<'_> {
    if !text.trim_start().starts_with(HEADER)
        && text.contains(".version")
        && text.contains(".target")
    {
        Image::Code
    } else {
        Image::Simulated(text)
    }
}

/// A line of a simulated module saying that it also holds real GPU code: names it does not
/// list are found as kernels of real code (a module the JIT linker made of both).
pub const CODE_DIRECTIVE: &str = "code";

/// Whether a simulated module's text holds the [`CODE_DIRECTIVE`] line.
pub fn declares_code(image: &str) -> bool {
    image
        .lines()
        .any(|l| l.split('#').next().unwrap_or("").trim() == CODE_DIRECTIVE)
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
        if line.is_empty() || line == CODE_DIRECTIVE {
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
        let mut reads_buffer = false;
        for option in rest {
            match option.split_once('=') {
                Some(("per-block", d)) => {
                    per_block_ns = parse_duration_ns(d).map_err(|e| bad(e.to_string()))?
                }
                Some(("reads", "buffer")) => reads_buffer = true,
                _ => {
                    return Err(bad(format!(
                        "unknown option {option:?} (per-block=DURATION, reads=buffer)"
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
            reads_buffer,
        });
    }
    Ok(kernels)
}

fn load(out: *mut CUmodule, image: Image) -> u32 {
    if let Err(e) = require_current() {
        return e;
    }
    match load_unbound(image) {
        Ok(m) => write(out, m as CUmodule),
        Err(e) => e,
    }
}

/// What an image holds: NUL-terminated text (a simulated module or PTX), the simulated-module
/// text inside a fat binary's payload (up to a NUL or the payload's end) or inside the fat
/// binary a wrapper points at, else real code (a fat binary without one, a cubin).
///
/// # Safety
/// `image` points at a fat-binary wrapper, a fat binary whose header gives its size, a cubin,
/// or NUL-terminated bytes.
pub unsafe fn image_of<'a>(image: *const c_void) -> Result<Image<'a>, u32> {
    // SAFETY: the caller's contract.
    let (kind, bytes) = unsafe { images::image_at(image.cast()) }?;
    match kind {
        ImageKind::FatBinary { header } => {
            let body = bytes.get(header..).unwrap_or_default();
            let Some(at) = body
                .windows(HEADER.len())
                .position(|w| w == HEADER.as_bytes())
            else {
                return Ok(Image::Code);
            };
            let text = &body[at..];
            let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
            std::str::from_utf8(&text[..end])
                .map(Image::Simulated)
                .map_err(|_| CUDA_ERROR_INVALID_IMAGE)
        }
        ImageKind::Elf => Ok(Image::Code),
        // Otherwise only NUL-terminated text can be an image.
        ImageKind::Text => std::str::from_utf8(&bytes[..bytes.len() - 1])
            .map(text_image)
            .map_err(|_| CUDA_ERROR_INVALID_IMAGE),
    }
}

/// `cuModuleLoadData`.
pub unsafe fn module_load_data(out: *mut CUmodule, image: *const c_void) -> u32 {
    if out.is_null() || image.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: the caller passes an image.
    match unsafe { image_of(image) } {
        Ok(i) => load(out, i),
        Err(e) => e,
    }
}

/// Addresses of every kernel and every module (or library) loaded: only these are valid
/// handles (the runtime hands the driver any pointer it does not know as a kernel handle).
/// Taken around `fork` with the simulator's other locks (`fork.rs`).
static LOADED: SpinLock<Option<Loaded>> = SpinLock::new(None);

/// What [`LOADED`] holds.
#[derive(Default)]
pub(crate) struct Loaded {
    kernels: HashSet<usize>,
    modules: HashSet<usize>,
    /// Kernels of real-code modules by (module, name).
    code_kernels: HashMap<(usize, Vec<u8>), usize>,
    /// Device variables of real-code modules by (module, name): their addresses.
    code_globals: HashMap<(usize, Vec<u8>), u64>,
}

fn known(which: fn(&Loaded) -> &HashSet<usize>, p: usize) -> bool {
    LOADED
        .lock()
        .as_ref()
        .is_some_and(|l| which(l).contains(&p))
}

/// The module behind a module or library handle; `CUDA_ERROR_INVALID_HANDLE` for anything
/// else.
pub fn module(handle: *const Module) -> Result<&'static Module, u32> {
    let m = handle as usize;
    if !known(|l| &l.modules, m) {
        return Err(CUDA_ERROR_INVALID_HANDLE);
    }
    // SAFETY: a leaked module.
    Ok(unsafe { &*(m as *const Module) })
}

/// Parses and keeps a module without a context (`cuLibraryLoadData`): its handle.
pub fn load_unbound(image: Image) -> Result<*mut Module, u32> {
    load_explained(image).map_err(|(e, _)| e)
}

/// [`load_unbound`], with why an image is refused.
pub(crate) fn load_explained(image: Image) -> Result<*mut Module, (u32, String)> {
    let parsed = match image {
        Image::Simulated(text) => parse(text),
        Image::Code => Ok(Vec::new()),
    };
    match parsed {
        Ok(kernels) => {
            let code = match image {
                Image::Code => true,
                Image::Simulated(text) => declares_code(text),
            };
            let m: &'static Module = Box::leak(Box::new(Module { kernels, code }));
            let mut loaded = LOADED.lock();
            let loaded = loaded.get_or_insert_with(Loaded::default);
            loaded
                .kernels
                .extend(m.kernels.iter().map(|k| k as *const Kernel as usize));
            loaded.modules.insert(m as *const Module as usize);
            Ok(m as *const Module as *mut Module)
        }
        Err(why) => {
            if crate::machine::tracing() {
                eprintln!("gpupool simulated GPU: module refused: {why}");
            }
            Err((CUDA_ERROR_INVALID_IMAGE, why))
        }
    }
}

impl Module {
    /// Its kernels.
    pub fn kernels(&self) -> &[Kernel] {
        &self.kernels
    }
}

/// A module's kernel by name (any name, for real code: made on first lookup).
pub fn find_kernel(m: *const Module, name: &CStr) -> Result<&'static Kernel, u32> {
    let module = module(m)?;
    if let Some(k) = module
        .kernels
        .iter()
        .find(|k| k.name.as_bytes() == name.to_bytes())
    {
        return Ok(k);
    }
    if !module.code {
        return Err(CUDA_ERROR_NOT_FOUND);
    }
    let mut loaded = LOADED.lock();
    let loaded = loaded.get_or_insert_with(Loaded::default);
    let key = (m as usize, name.to_bytes().to_vec());
    let k = *loaded.code_kernels.entry(key).or_insert_with(|| {
        let k: &'static Kernel = Box::leak(Box::new(Kernel {
            name: name.to_string_lossy().into_owned(),
            base_ns: CODE_KERNEL_NS,
            per_block_ns: 0,
            reads_buffer: false,
        }));
        k as *const Kernel as usize
    });
    loaded.kernels.insert(k);
    // SAFETY: a leaked kernel.
    Ok(unsafe { &*(k as *const Kernel) })
}

/// `cuModuleLoadDataEx`: options that carry numbers are ignored; the logs get why an image
/// is refused (empty when it loads), the wall time the loading's.
pub unsafe fn module_load_data_ex(
    out: *mut CUmodule,
    image: *const c_void,
    n: u32,
    options: *mut c_void,
    values: *mut *mut c_void,
) -> u32 {
    let load = || {
        if out.is_null() || image.is_null() {
            return (CUDA_ERROR_INVALID_VALUE, String::new());
        }
        if let Err(e) = require_current() {
            return (e, String::new());
        }
        // SAFETY: the caller passes an image.
        match unsafe { explained_image(image) }.and_then(load_explained) {
            Ok(m) => (write(out, m as CUmodule), String::new()),
            Err((e, why)) => (e, why),
        }
    };
    // SAFETY: the caller's arrays of `n` entries.
    unsafe { jit::load_with_logs(n, options.cast(), values, load) }
}

/// [`image_of`], with why an image is refused.
///
/// # Safety
/// As [`image_of`].
pub(crate) unsafe fn explained_image<'a>(image: *const c_void) -> Result<Image<'a>, (u32, String)> {
    // SAFETY: the caller's contract.
    unsafe { image_of(image) }.map_err(|e| (e, "not a module image".to_string()))
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
    match std::fs::read(path) {
        Ok(bytes) => match file_image(&bytes) {
            Ok(image) => load(out, image),
            Err(e) => e,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => CUDA_ERROR_FILE_NOT_FOUND,
        Err(_) => CUDA_ERROR_INVALID_IMAGE,
    }
}

/// What a module file holds (`cuModuleLoad`): a cubin, a fat binary whose header fits in the
/// file, or text (PTX or a simulated module, up to a NUL).
pub fn file_image(bytes: &[u8]) -> Result<Image<'_>, u32> {
    let magic = bytes
        .get(..4)
        .map(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
    if magic == Some(ELF_MAGIC) {
        return Ok(Image::Code);
    }
    if magic == Some(FATBIN_MAGIC) {
        let header = bytes
            .get(6..8)
            .map(|h| u16::from_le_bytes([h[0], h[1]]) as u64);
        let size = bytes
            .get(8..16)
            .map(|s| u64::from_le_bytes(s.try_into().unwrap_or_default()));
        return match (header, size) {
            (Some(h), Some(n))
                if h.checked_add(n)
                    .is_some_and(|end| end <= bytes.len() as u64) =>
            {
                // SAFETY: a fat binary whose header and payload lie inside `bytes`.
                unsafe { image_of(bytes.as_ptr().cast()) }
            }
            _ => Err(CUDA_ERROR_INVALID_IMAGE),
        };
    }
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    std::str::from_utf8(&bytes[..end])
        .map(text_image)
        .map_err(|_| CUDA_ERROR_INVALID_IMAGE)
}

/// `cuModuleUnload` (handles of its kernels stay valid memory; its device variables are
/// freed).
pub unsafe fn module_unload(m: CUmodule) -> u32 {
    unload(m as *const Module)
}

/// Unloads module or library `m`: frees the device variables made for it.
pub fn unload(m: *const Module) -> u32 {
    if let Err(e) = module(m) {
        return e;
    }
    let mut gone = Vec::new();
    if let Some(l) = LOADED.lock().as_mut() {
        l.code_globals.retain(|(owner, _), &mut at| {
            if *owner == m as usize {
                gone.push(at);
            }
            *owner != m as usize
        });
    }
    // Freed without holding the table's lock (freeing takes the memory locks).
    for at in gone {
        let _ = crate::mem::free_device(at, |k| k == crate::mem::Kind::Device);
    }
    CUDA_SUCCESS
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
    match find_kernel(m as *const Module, unsafe { CStr::from_ptr(name) }) {
        Ok(k) => write(out, k as *const Kernel as CUfunction),
        Err(e) => e,
    }
}

/// The kernel behind a function handle; `CUDA_ERROR_INVALID_HANDLE` for anything that is
/// not a loaded kernel.
pub fn kernel(f: CUfunction) -> Result<&'static Kernel, u32> {
    if !known(|l| &l.kernels, f as usize) {
        return Err(CUDA_ERROR_INVALID_HANDLE);
    }
    // SAFETY: a reference into a leaked module.
    Ok(unsafe { &*(f as *const Kernel) })
}

/// `cuFuncGetParamInfo`: simulated kernels take no parameters, except those reading a buffer
/// (an address and a byte count, 8 bytes each).
pub unsafe fn func_get_param_info(
    f: CUfunction,
    index: usize,
    off: *mut usize,
    size: *mut usize,
) -> u32 {
    match kernel(f) {
        Ok(k) if k.reads_buffer && index < 2 => {
            if !off.is_null() {
                write(off, index * 8);
            }
            if size.is_null() {
                CUDA_SUCCESS
            } else {
                write(size, 8)
            }
        }
        Ok(_) => CUDA_ERROR_INVALID_VALUE,
        Err(e) => e,
    }
}

/// Shared memory a block may use on the simulated devices (an H100's opt-in maximum), bytes.
pub const MAX_SHARED_PER_BLOCK: i32 = 232_448;
/// Threads a multiprocessor runs at most.
const MAX_THREADS_PER_SM: i32 = 2048;
/// Blocks a multiprocessor runs at most.
const MAX_BLOCKS_PER_SM: i32 = 32;

/// A kernel's attribute (`CUfunction_attribute`) as the simulator reports it for every kernel:
/// the device's limits, no static memory, 32 registers a thread; `None` for an unknown one.
pub fn attribute(attrib: i32) -> Option<i32> {
    Some(match attrib {
        0 => 1024,                 // MAX_THREADS_PER_BLOCK
        1..=3 => 0,                // static shared, constant and local bytes
        4 => 32,                   // NUM_REGS
        5 | 6 => 90,               // PTX and binary versions
        7 => 0,                    // CACHE_MODE_CA
        8 => MAX_SHARED_PER_BLOCK, // MAX_DYNAMIC_SHARED_SIZE_BYTES
        9 => -1,                   // PREFERRED_SHARED_MEMORY_CARVEOUT: no preference
        10..=15 => 0,              // cluster requirements: none
        _ => return None,
    })
}

/// Answers `value()` through `out` about the loaded kernel `f`.
fn kernel_answer<T>(out: *mut T, f: CUfunction, value: impl FnOnce() -> Result<T, u32>) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    match kernel(f).and_then(|_| value()) {
        Ok(v) => write(out, v),
        Err(e) => e,
    }
}

/// `cuFuncGetAttribute`.
pub unsafe fn func_get_attribute(out: *mut i32, attrib: i32, f: CUfunction) -> u32 {
    kernel_answer(out, f, || attribute(attrib).ok_or(CUDA_ERROR_INVALID_VALUE))
}

/// `cuFuncSetAttribute`: accepted for a known attribute, without effect on the simulation.
pub unsafe fn func_set_attribute(f: CUfunction, attrib: i32, _value: i32) -> u32 {
    match (kernel(f), attribute(attrib)) {
        (Err(e), _) => e,
        (Ok(_), Some(_)) => CUDA_SUCCESS,
        (Ok(_), None) => CUDA_ERROR_INVALID_VALUE,
    }
}

/// `cuFuncSetCacheConfig`: accepted for any function (the simulated cache has no split).
pub unsafe fn func_set_cache_config(f: CUfunction, _config: u32) -> u32 {
    kernel(f).map_or_else(|e| e, |_| CUDA_SUCCESS)
}

/// The module or library a kernel handle belongs to.
pub fn module_of_kernel(k: *const Kernel) -> Result<*const Module, u32> {
    let k = k as usize;
    let loaded = LOADED.lock();
    let Some(l) = loaded.as_ref().filter(|l| l.kernels.contains(&k)) else {
        return Err(CUDA_ERROR_INVALID_HANDLE);
    };
    if let Some(((m, _), _)) = l.code_kernels.iter().find(|(_, &at)| at == k) {
        return Ok(*m as *const Module);
    }
    l.modules
        .iter()
        .find(|&&m| {
            // SAFETY: a leaked module.
            let kernels = unsafe { &*(m as *const Module) }.kernels.as_ptr_range();
            (kernels.start as usize..kernels.end as usize).contains(&k)
        })
        .map(|&m| m as *const Module)
        .ok_or(CUDA_ERROR_INVALID_HANDLE)
}

/// Blocks of `block` threads using `shared` bytes each that fit on one multiprocessor.
pub fn blocks_per_sm(block: i32, shared: usize) -> i32 {
    if block <= 0 {
        return 0;
    }
    let by_threads = MAX_THREADS_PER_SM / block;
    let by_shared = match shared {
        0 => MAX_BLOCKS_PER_SM,
        s => (MAX_SHARED_PER_BLOCK as usize / s).min(i32::MAX as usize) as i32,
    };
    by_threads.min(by_shared).min(MAX_BLOCKS_PER_SM)
}

/// `cuOccupancyMaxActiveBlocksPerMultiprocessor`.
pub unsafe fn occupancy_max_active_blocks(
    n: *mut i32,
    f: CUfunction,
    block: i32,
    shared: usize,
) -> u32 {
    // SAFETY: same contract.
    unsafe { occupancy_max_active_blocks_with_flags(n, f, block, shared, 0) }
}

/// `cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags`.
pub unsafe fn occupancy_max_active_blocks_with_flags(
    n: *mut i32,
    f: CUfunction,
    block: i32,
    shared: usize,
    _flags: u32,
) -> u32 {
    kernel_answer(n, f, || Ok(blocks_per_sm(block, shared)))
}

/// `cuOccupancyAvailableDynamicSMemPerBlock`: the shared memory each of `blocks` blocks may have.
pub unsafe fn occupancy_available_dynamic_smem(
    bytes: *mut usize,
    f: CUfunction,
    blocks: i32,
    _block: i32,
) -> u32 {
    kernel_answer(bytes, f, || match blocks {
        1.. => Ok(MAX_SHARED_PER_BLOCK as usize / blocks as usize),
        _ => Err(CUDA_ERROR_INVALID_VALUE),
    })
}

/// Blocks a portable thread-block cluster has at most.
const MAX_PORTABLE_CLUSTER: i32 = 8;

/// `cuOccupancyMaxPotentialClusterSize`: the portable maximum.
pub unsafe fn occupancy_max_potential_cluster_size(
    size: *mut i32,
    f: CUfunction,
    _config: *const CUlaunchConfig_st,
) -> u32 {
    kernel_answer(size, f, || Ok(MAX_PORTABLE_CLUSTER))
}

/// `CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION`.
const CLUSTER_DIMENSION: u32 = 4;

/// Blocks of the cluster a launch configuration asks for (1 without one).
///
/// # Safety
/// `config` is null or a launch configuration whose `attrs` holds `numAttrs` attributes.
unsafe fn cluster_blocks(config: *const CUlaunchConfig_st) -> u64 {
    // SAFETY: null or the caller's configuration.
    let Some(c) = (unsafe { config.as_ref() }) else {
        return 1;
    };
    if c.attrs.is_null() {
        return 1;
    }
    // SAFETY: the configuration's attribute array.
    let attrs = unsafe { std::slice::from_raw_parts(c.attrs, c.numAttrs as usize) };
    attrs
        .iter()
        .find(|a| a.id as u32 == CLUSTER_DIMENSION)
        .map_or(1, |a| {
            // SAFETY: the cluster-dimension member of a cluster-dimension attribute.
            let d = unsafe { a.value.clusterDim };
            (d.x as u64 * d.y as u64 * d.z as u64).max(1)
        })
}

/// `cuOccupancyMaxActiveClusters`: clusters of the configuration's size that fit on the
/// current device, one block a multiprocessor.
pub unsafe fn occupancy_max_active_clusters(
    n: *mut i32,
    f: CUfunction,
    config: *const CUlaunchConfig_st,
) -> u32 {
    kernel_answer(n, f, || {
        let (_, d) = require_current().and_then(|c| crate::ctx::device(c.ordinal))?;
        // SAFETY: the caller's configuration.
        let per_cluster = unsafe { cluster_blocks(config) };
        Ok((d.spec.sms as u64 / per_cluster).min(i32::MAX as u64) as i32)
    })
}

/// Bytes of each device variable of real GPU code (its real size is in code the simulator
/// does not read).
pub const CODE_GLOBAL_BYTES: u64 = 1 << 20;

/// A module's device variable `name` (`cuModuleGetGlobal`): real GPU code has every name, each
/// [`CODE_GLOBAL_BYTES`] of zeroed device memory made on first lookup; simulated modules have
/// none.
pub fn find_global(m: *const Module, name: &CStr) -> Result<(u64, u64), u32> {
    if !module(m)?.code {
        return Err(CUDA_ERROR_NOT_FOUND);
    }
    let key = (m as usize, name.to_bytes().to_vec());
    if let Some(&at) = LOADED
        .lock()
        .as_ref()
        .and_then(|l| l.code_globals.get(&key))
    {
        return Ok((at, CODE_GLOBAL_BYTES));
    }
    // Allocated without holding the table's lock (allocation takes the memory locks).
    let fresh = crate::mem::alloc_device(CODE_GLOBAL_BYTES, crate::mem::Kind::Device)?;
    let mut loaded = LOADED.lock();
    let at = *loaded
        .get_or_insert_with(Loaded::default)
        .code_globals
        .entry(key)
        .or_insert(fresh);
    drop(loaded);
    if at != fresh {
        // Another thread's lookup of the same variable won.
        let _ = crate::mem::free_device(fresh, |k| k == crate::mem::Kind::Device);
    }
    Ok((at, CODE_GLOBAL_BYTES))
}

/// `cuModuleGetGlobal_v2` (also `cuLibraryGetGlobal`: a library is a module).
pub unsafe fn module_get_global(
    dptr: *mut CUdeviceptr,
    bytes: *mut usize,
    m: CUmodule,
    name: *const c_char,
) -> u32 {
    if name.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: a NUL-terminated name.
    match find_global(m as *const Module, unsafe { CStr::from_ptr(name) }) {
        Ok((at, size)) => {
            if !dptr.is_null() {
                write(dptr, at);
            }
            if !bytes.is_null() {
                write(bytes, size as usize);
            }
            CUDA_SUCCESS
        }
        Err(e) => e,
    }
}

/// This module's locks (for fork handlers).
pub fn fork_locks() -> [&'static dyn ForkLock; 1] {
    [&LOADED]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_files_hold_cubins_fat_binaries_or_text() {
        let mut cubin = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0x33];
        cubin.extend_from_slice(&[0xff; 56]);
        assert!(
            file_image(&cubin) == Ok(Image::Code),
            "binary bytes are no text"
        );
        // A fat binary: magic, version, 16-byte header, then its payload size.
        let mut fatbin = FATBIN_MAGIC.to_le_bytes().to_vec();
        fatbin.extend_from_slice(&1u16.to_le_bytes());
        fatbin.extend_from_slice(&16u16.to_le_bytes());
        fatbin.extend_from_slice(&32u64.to_le_bytes());
        fatbin.extend_from_slice(&[0xee; 32]);
        assert!(file_image(&fatbin) == Ok(Image::Code));
        assert!(
            file_image(&fatbin[..40]) == Err(CUDA_ERROR_INVALID_IMAGE),
            "a payload past the end of the file"
        );
        assert!(file_image(b".version 8.0\n.target sm_90\n\0junk") == Ok(Image::Code));
        let text = format!("{HEADER}\nkernel a 1us\n");
        assert!(file_image(text.as_bytes()) == Ok(Image::Simulated(&text)));
        assert!(file_image(&[0xc3, 0x28]) == Err(CUDA_ERROR_INVALID_IMAGE));
    }

    #[test]
    fn parses_kernels_with_durations() {
        let k = parse("gpupool-sim-module 1\n# two kernels\nkernel a 50us\nkernel b 10us per-block=1us # scaled\n")
            .unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(k[0].duration_ns(1000), 50_000);
        assert_eq!(k[1].duration_ns(100), 110_000);
        assert!(!k[0].reads_buffer);
        let k = parse("gpupool-sim-module 1\nkernel r 0us reads=buffer\n").unwrap();
        assert!(k[0].reads_buffer);
        // SAFETY: a null parameter array.
        assert_eq!(
            unsafe { k[0].memory_ns(std::ptr::null_mut()) },
            Err(CUDA_ERROR_INVALID_VALUE),
            "a buffer-reading kernel needs its parameters"
        );
        assert!(parse("gpupool-sim-module 1\nkernel r 0us reads=everything\n").is_err());
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

    use gpupool_cuda::images::fat_binary as fatbin;

    #[test]
    fn images_inside_fat_binaries_and_their_wrappers_are_found() {
        let fb = fatbin(b"\x01\x02entry header\0gpupool-sim-module 1\nkernel k 1ms\n\0\0junk");
        // SAFETY: a fat binary with its size in its header.
        let image = unsafe { image_of(fb.as_ptr().cast()) }.unwrap();
        let text = "gpupool-sim-module 1\nkernel k 1ms\n";
        assert_eq!(image, Image::Simulated(text));
        let wrapper: [u64; 3] = [
            FATBIN_WRAPPER_MAGIC as u64 | (1 << 32),
            fb.as_ptr() as u64,
            0,
        ];
        // SAFETY: a wrapper pointing at that fat binary.
        assert_eq!(unsafe { image_of(wrapper.as_ptr().cast()) }, Ok(image));
        let real = fatbin(b"\x7fELF a real cubin, not ours");
        // SAFETY: as above.
        assert_eq!(unsafe { image_of(real.as_ptr().cast()) }, Ok(Image::Code));
        let m = load_unbound(image).unwrap();
        let k = find_kernel(m, c"k").unwrap();
        assert_eq!(k.base_ns, 1_000_000);
        assert_eq!(find_kernel(m, c"other").unwrap_err(), CUDA_ERROR_NOT_FOUND);
        assert!(kernel(k as *const Kernel as CUfunction).is_ok());
        let stray = &wrapper as *const _ as CUfunction;
        assert_eq!(kernel(stray).unwrap_err(), CUDA_ERROR_INVALID_HANDLE);
        assert_eq!(module(stray.cast()).err(), Some(CUDA_ERROR_INVALID_HANDLE));
    }

    #[test]
    fn real_code_loads_with_kernels_found_by_name() {
        // An ELF header whose section table ends the 64-byte file (no sections).
        let mut cubin = [0u8; 64];
        cubin[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x33");
        cubin[0x28] = 64;
        // SAFETY: a cubin's header.
        assert_eq!(unsafe { image_of(cubin.as_ptr().cast()) }, Ok(Image::Code));
        let ptx = c".version 8.0\n.target sm_90\n.entry k() { ret; }";
        // SAFETY: NUL-terminated text.
        assert_eq!(unsafe { image_of(ptx.as_ptr().cast()) }, Ok(Image::Code));
        let garbage = [0xffu8, 0xfe, 0xfd, 0];
        // SAFETY: NUL-terminated bytes.
        assert_eq!(
            unsafe { image_of(garbage.as_ptr().cast()) },
            Err(CUDA_ERROR_INVALID_IMAGE)
        );
        let prose = c"not a module";
        // SAFETY: NUL-terminated text.
        let prose = unsafe { image_of(prose.as_ptr().cast()) }.unwrap();
        assert_eq!(load_unbound(prose).unwrap_err(), CUDA_ERROR_INVALID_IMAGE);

        let m = load_unbound(Image::Code).unwrap();
        let a = find_kernel(m, c"gemm_kernel").unwrap();
        assert_eq!(a.duration_ns(1_000), CODE_KERNEL_NS);
        assert!(std::ptr::eq(a, find_kernel(m, c"gemm_kernel").unwrap()));
        let b = find_kernel(m, c"other").unwrap();
        assert!(!std::ptr::eq(a, b));
        assert!(kernel(a as *const Kernel as CUfunction).is_ok());
        // Another module's kernel of the same name is its own.
        let m2 = load_unbound(Image::Code).unwrap();
        assert!(!std::ptr::eq(a, find_kernel(m2, c"gemm_kernel").unwrap()));
    }

    #[test]
    fn kernels_report_attributes_and_occupancy() {
        assert_eq!(attribute(0), Some(1024));
        assert_eq!(attribute(8), Some(MAX_SHARED_PER_BLOCK));
        assert_eq!(attribute(99), None);
        assert_eq!(blocks_per_sm(256, 0), 8);
        assert_eq!(blocks_per_sm(32, 0), MAX_BLOCKS_PER_SM);
        assert_eq!(blocks_per_sm(128, 100_000), 2);
        assert_eq!(blocks_per_sm(0, 0), 0);
        let m = load_unbound(Image::Code).unwrap();
        let f = find_kernel(m, c"k").unwrap() as *const Kernel as CUfunction;
        let mut v = 0;
        // SAFETY: valid pointers; a loaded kernel.
        unsafe {
            assert_eq!(func_get_attribute(&mut v, 4, f), CUDA_SUCCESS);
            assert_eq!(v, 32);
            assert_eq!(func_get_attribute(&mut v, 99, f), CUDA_ERROR_INVALID_VALUE);
            assert_eq!(
                func_get_attribute(&mut v, 0, 0x10 as CUfunction),
                CUDA_ERROR_INVALID_HANDLE
            );
            assert_eq!(occupancy_max_active_blocks(&mut v, f, 512, 0), CUDA_SUCCESS);
            assert_eq!(v, 4);
        }
    }
}
