//! Modules and launches. A module image travels whole (its length read from its fat-binary or
//! ELF header, else up to its NUL); each kernel's parameter sizes come back with
//! `cuModuleGetFunction` and are cached, so a launch sends the argument bytes without asking.

use crate::conn::state;
use crate::images::Travel;
use crate::kernel_cache;
use gpupool_cuda::cu::*;
use gpupool_cuda::launch::{How, Launch};
use gpupool_cuda::result::*;
use gpupool_remote::calls::custom;
use gpupool_remote::image_cache::ImageKey;
use gpupool_remote::kernel_args;
use gpupool_remote::launch_ex::{
    all_travel_in_launch, travelling_attributes, write_attributes, LaunchShape,
    RawKernelNodeParams, RawLaunchConfig,
};
use gpupool_remote::wire::{DecodeError, Reader};
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;

/// Parameter sizes per function (`None`: the server's driver cannot tell).
pub(crate) static LAYOUTS: Mutex<Option<HashMap<u64, Option<Vec<u32>>>>> = Mutex::new(None);

/// The bytes of the module image at `image` (a wrapper's fat binary), as its headers give
/// their length.
///
/// # Safety
/// `image` points at a fat binary, a fat-binary wrapper, an ELF cubin or NUL-terminated text.
pub unsafe fn image_bytes<'a>(image: *const u8) -> Result<&'a [u8], u32> {
    // SAFETY: the caller's contract.
    unsafe { gpupool_cuda::images::image_at(image) }.map(|(_, bytes)| bytes)
}

/// Sends an image with `call` (a module or a library load); the handle comes back in `out`.
/// With `may_name`, an image compiled into the program or a library is loaded under a name
/// of the client's, without waiting.
fn load_as(call: u16, out: *mut *mut c_void, image: &[u8], may_name: bool) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if image.len() > gpupool_remote::protocol::MAX_FRAME - 4096 {
        return CUDA_ERROR_INVALID_IMAGE;
    }
    let travel = crate::images::travel_of(image);
    // Compiled-in images load without waiting, unless the image goes by a key the server
    // has not pinned for this session (it might no longer keep it).
    if may_name && travel.in_file() && (travel.source != custom::IMAGE_CACHED || travel.pinned) {
        return load_named(call, out, travel, image);
    }
    let (source, key) = (travel.source, travel.key);
    let rc = send_load(call, out, source, key, image);
    match (source, key) {
        // The server no longer keeps it: sent again, to be kept again.
        (custom::IMAGE_CACHED, Some(h)) if rc == CUDA_ERROR_NOT_FOUND => {
            crate::images::kept(h, false);
            let rc = send_load(call, out, custom::IMAGE_KEEP, key, image);
            crate::images::kept(h, rc == CUDA_SUCCESS);
            rc
        }
        (custom::IMAGE_KEEP, Some(h)) if rc == CUDA_SUCCESS => {
            crate::images::kept(h, true);
            rc
        }
        _ => rc,
    }
}

/// Writes a load's request: the image's source, the library's name (0: the driver's handle
/// comes back), the key of a kept image, then its length (`IMAGE_CACHED`) or the image.
fn put_load(
    w: &mut gpupool_remote::wire::Writer,
    source: u8,
    name: u64,
    key: Option<ImageKey>,
    image: &[u8],
) {
    w.put(&source);
    w.put(&name);
    if let (custom::IMAGE_CACHED | custom::IMAGE_KEEP, Some(k)) = (source, key) {
        w.put(&k);
    }
    let by_key = source == custom::IMAGE_CACHED;
    if by_key {
        w.put(&(image.len() as u64));
    } else {
        w.put_bytes(image);
    }
    crate::call_stats::image(image.len(), by_key);
}

/// Loads a module or library (`call`) without waiting: it gets a name of the client's, and
/// the driver's error, if any, comes back where it or one of its kernels is used. The image
/// travels as `travel` says (by key only when the server pinned it for this session).
fn load_named(call: u16, out: *mut *mut c_void, travel: Travel, image: &[u8]) -> u32 {
    let name = crate::names::next();
    let mut s = state();
    let start = match s.begin(call, false, crate::context::current()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    put_load(&mut s.batch, travel.source, name, travel.key, image);
    let rc = s.finish_async(start);
    drop(s);
    if rc != CUDA_SUCCESS {
        return rc;
    }
    if let (custom::IMAGE_KEEP, Some(k)) = (travel.source, travel.key) {
        // Kept if it loads; if not, a later load by key is answered "not found" and resent.
        crate::images::kept(k, true);
    }
    kernel_cache::loaded(name);
    // SAFETY: non-null out pointer.
    unsafe { *out = name as usize as *mut c_void };
    CUDA_SUCCESS
}

/// Sends one load of `image` (only its key and length for `IMAGE_CACHED`; its key first for
/// `IMAGE_KEEP`), waiting for the driver's handle.
fn send_load(
    call: u16,
    out: *mut *mut c_void,
    source: u8,
    key: Option<ImageKey>,
    image: &[u8],
) -> u32 {
    let mut s = state();
    let start = match s.begin(call, true, crate::context::current()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    put_load(&mut s.batch, source, 0, key, image);
    s.finish_sync(start, |r| {
        let h: u64 = r.get("handle")?;
        if call == custom::LIBRARY_LOAD {
            kernel_cache::loaded(h);
        }
        // SAFETY: non-null out pointer.
        unsafe { *out = h as usize as *mut c_void };
        Ok(())
    })
}

/// Loads a module a program asked for, waiting for the driver's answer (JIT users check it).
fn load(out: *mut CUmodule, image: &[u8]) -> u32 {
    load_as(custom::MODULE_LOAD, out.cast(), image, false)
}

/// Loads a module NVIDIA's runtime registered (runtime 11.8's fat binaries), without
/// waiting when its image lies in a loaded file: the runtime asks for every module and
/// kernel a program holds when it starts, and meets a driver's error where the kernel is
/// launched.
///
/// # Safety
/// `image` is null or points at a module image.
pub unsafe fn module_load_registered(out: *mut CUmodule, image: *const c_void) -> u32 {
    if image.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: the runtime passes a module image.
    match unsafe { image_bytes(image.cast()) } {
        Ok(bytes) => load_as(custom::MODULE_LOAD, out.cast(), bytes, true),
        Err(e) => e,
    }
}

/// `cuLibraryLoadData`: library options and JIT options that carry numbers are the server's
/// business and are dropped; the JIT logs are filled as by `cuModuleLoadDataEx` (a library
/// named without waiting reports a refusal where it is used, its logs empty).
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
        if code.is_null() {
            return (CUDA_ERROR_INVALID_VALUE, String::new());
        }
        // SAFETY: the caller passes a module image.
        refusal(match unsafe { image_bytes(code.cast()) } {
            Ok(bytes) => load_as(custom::LIBRARY_LOAD, out.cast(), bytes, true),
            Err(e) => e,
        })
    };
    // SAFETY: the caller's JIT option arrays.
    unsafe { gpupool_cuda::jit::load_with_logs(jit_count, jit_options.cast(), jit_values, load) }
}

/// `cuModuleLoadData`.
pub unsafe fn module_load_data(out: *mut CUmodule, image: *const c_void) -> u32 {
    if image.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: the caller passes a module image.
    match unsafe { image_bytes(image.cast()) } {
        Ok(bytes) => load(out, bytes),
        Err(e) => e,
    }
}

/// `cuModuleLoadDataEx`: options that carry numbers are the server's business and are
/// dropped; the error log gets the server's refusal, the wall time the loading's, round trip
/// included.
pub unsafe fn module_load_data_ex(
    out: *mut CUmodule,
    image: *const c_void,
    n: u32,
    options: *mut c_void,
    values: *mut *mut c_void,
) -> u32 {
    // SAFETY: the caller passes a module image.
    let load = || refusal(unsafe { module_load_data(out, image) });
    // SAFETY: the caller's option arrays.
    unsafe { gpupool_cuda::jit::load_with_logs(n, options.cast(), values, load) }
}

/// A load's result, with the server's refusal in words.
fn refusal(rc: u32) -> (u32, String) {
    let why = match (rc, gpupool_cuda::result::error_name(rc)) {
        (CUDA_SUCCESS, _) => String::new(),
        (_, Some(name)) => format!(
            "the GPU server refused the image: {}",
            name.to_string_lossy()
        ),
        (_, None) => format!("the GPU server refused the image: CUresult {rc}"),
    };
    (rc, why)
}

/// `cuModuleLoad`: the file is read here and sent.
pub unsafe fn module_load(out: *mut CUmodule, path: *const c_char) -> u32 {
    if path.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: NUL-terminated path from the caller.
    let p = unsafe { CStr::from_ptr(path) }
        .to_string_lossy()
        .into_owned();
    match std::fs::read(&p) {
        Ok(mut bytes) => {
            if !bytes.starts_with(b"\x7fELF") && bytes.last() != Some(&0) {
                bytes.push(0);
            }
            load(out, &bytes)
        }
        Err(_) => CUDA_ERROR_FILE_NOT_FOUND,
    }
}

/// Asks for a function (or kernel) with `call`, whose request `args` writes; keeps the
/// parameter sizes that come back with it.
fn get_function(
    call: u16,
    out: *mut *mut c_void,
    args: impl FnOnce(&mut gpupool_remote::wire::Writer),
) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let mut s = state();
    let start = match s.begin(call, true, crate::context::current()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    args(&mut s.batch);
    s.finish_sync(start, |r| {
        let f: u64 = r.get("function")?;
        keep_layout(f, read_layout(r)?);
        // SAFETY: non-null out pointer.
        unsafe { *out = f as usize as *mut c_void };
        Ok(())
    })
}

/// A function's parameter sizes as the server sends them (`None`: its driver cannot tell).
fn read_layout(r: &mut Reader<'_>) -> Result<Option<Vec<u32>>, DecodeError> {
    let n: u32 = r.get("parameter count")?;
    if n == u32::MAX {
        return Ok(None);
    }
    Ok(Some(
        (0..n.min(4096))
            .map(|_| r.get::<u32>("parameter size"))
            .collect::<Result<Vec<_>, _>>()?,
    ))
}

/// Keeps `f`'s parameter sizes for its launches.
fn keep_layout(f: u64, layout: Option<Vec<u32>>) {
    LAYOUTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(f, layout);
}

/// `f`'s parameter sizes: kept, or asked of the server once (a kernel this client named).
fn layout_of(f: u64) -> Result<Option<Vec<u32>>, u32> {
    let kept = LAYOUTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(&f).cloned());
    if let Some(layout) = kept {
        return Ok(layout);
    }
    let mut s = state();
    let start = s.begin(custom::PARAM_LAYOUT, true, crate::context::current())?;
    s.batch.put(&f);
    let mut got = None;
    let rc = s.finish_sync(start, |r| {
        got = Some(read_layout(r)?);
        Ok(())
    });
    drop(s);
    match (rc, got) {
        (CUDA_SUCCESS, Some(layout)) => {
            keep_layout(f, layout.clone());
            Ok(layout)
        }
        (CUDA_SUCCESS, None) => Err(CUDA_ERROR_UNKNOWN),
        (rc, _) => Err(rc),
    }
}

/// Asks `call` for the function named `name` in the module or library `handle`.
///
/// # Safety
/// `name` is null or NUL-terminated.
unsafe fn get_named(call: u16, out: *mut c_void, handle: u64, name: *const c_char) -> u32 {
    if name.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: NUL-terminated name from the caller.
    let name = unsafe { CStr::from_ptr(name) }.to_bytes();
    get_function(call, out.cast(), |w| {
        w.put(&handle);
        w.put_bytes(name);
    })
}

/// `cuModuleGetFunction`: named here, without a round trip, in a module this client named.
pub unsafe fn module_get_function(out: *mut CUfunction, m: CUmodule, name: *const c_char) -> u32 {
    let module = m as usize as u64;
    // SAFETY: the caller's arguments.
    if let Some(rc) = unsafe { known_or_named(custom::NAME_FUNCTION, out.cast(), module, name) } {
        return rc;
    }
    // SAFETY: the caller's name.
    unsafe { get_named(custom::MODULE_GET_FUNCTION, out.cast(), module, name) }
}

/// `cuLibraryGetKernel`: a kernel handle, which launches take as a function (asked of the
/// server once per library and name, unless this client names the library's kernels).
pub unsafe fn library_get_kernel(out: *mut CUkernel, lib: CUlibrary, name: *const c_char) -> u32 {
    let library = lib as usize as u64;
    // SAFETY: the caller's arguments.
    if let Some(rc) = unsafe { known_or_named(custom::NAME_KERNEL, out.cast(), library, name) } {
        return rc;
    }
    // SAFETY: the caller's name.
    let rc = unsafe { get_named(custom::LIBRARY_GET_KERNEL, out.cast(), library, name) };
    if rc == CUDA_SUCCESS {
        // SAFETY: a NUL-terminated name from the caller; `out` set by the successful call.
        unsafe {
            let bytes = CStr::from_ptr(name).to_bytes();
            kernel_cache::remember_kernel(library, bytes, *out as usize as u64);
        }
    }
    rc
}

/// Answers a kernel or function request of `owner` here: one given before, or a new name
/// sent with `call` without waiting when this client names `owner`'s kernels (a program
/// start asks for tens of thousands); `None` when the server must be asked.
///
/// # Safety
/// `out` is null or writable; `name` is null or NUL-terminated.
unsafe fn known_or_named(
    call: u16,
    out: *mut *mut c_void,
    owner: u64,
    name: *const c_char,
) -> Option<u32> {
    if out.is_null() || name.is_null() {
        return Some(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: a NUL-terminated name from the caller.
    let bytes = unsafe { CStr::from_ptr(name) }.to_bytes();
    if let Some(k) = kernel_cache::kernel_named(owner, bytes) {
        // SAFETY: non-null out pointer.
        unsafe { *out = k as usize as *mut c_void };
        return Some(CUDA_SUCCESS);
    }
    if !kernel_cache::names_kernels_of(owner) {
        return None;
    }
    let k = crate::names::next();
    let mut st = state();
    let start = match st.begin(call, false, crate::context::current()) {
        Ok(p) => p,
        Err(e) => return Some(e),
    };
    st.batch.put(&owner);
    st.batch.put_bytes(bytes);
    st.batch.put(&k);
    let rc = st.finish_async(start);
    drop(st);
    if rc == CUDA_SUCCESS {
        kernel_cache::remember_kernel(owner, bytes, k);
        // SAFETY: non-null out pointer.
        unsafe { *out = k as usize as *mut c_void };
    }
    Some(rc)
}

/// `cuLibraryEnumerateKernels`: the server's handles, remembered as the library's.
pub unsafe fn library_enumerate_kernels(out: *mut CUkernel, n: u32, lib: CUlibrary) -> u32 {
    if out.is_null() || n > custom::MAX_ENUMERATED_KERNELS {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if n == 0 {
        return CUDA_SUCCESS;
    }
    let library = lib as usize as u64;
    let mut st = state();
    let start = match st.begin(
        custom::LIBRARY_ENUMERATE_KERNELS,
        true,
        crate::context::current(),
    ) {
        Ok(p) => p,
        Err(e) => return e,
    };
    st.batch.put(&library);
    st.batch.put(&n);
    let mut kernels = Vec::new();
    let rc = st.finish_sync(start, |r| {
        let count: u32 = r.get("kernel count")?;
        for _ in 0..count.min(n) {
            kernels.push(r.get::<u64>("kernel")?);
        }
        Ok(())
    });
    drop(st);
    if rc == CUDA_SUCCESS {
        kernel_cache::kernels_listed(library);
        for (i, &k) in kernels.iter().enumerate() {
            // SAFETY: the caller's array holds `n` handles; at most `n` came back.
            unsafe { *out.add(i) = k as usize as CUkernel };
            if k != 0 {
                kernel_cache::remember_library_of(k, library);
            }
        }
    }
    rc
}

/// `cuKernelGetLibrary`: answered from the kernels `cuLibraryGetKernel` and
/// `cuLibraryEnumerateKernels` gave out.
pub unsafe fn kernel_get_library(out: *mut CUlibrary, kernel: CUkernel) -> u32 {
    match kernel_cache::library_of(kernel as usize as u64) {
        // SAFETY: the caller's out pointer (null: `CUDA_ERROR_INVALID_VALUE`).
        Some(l) => unsafe { crate::write(out, l as usize as CUlibrary) },
        None if out.is_null() => CUDA_ERROR_INVALID_VALUE,
        None => CUDA_ERROR_INVALID_HANDLE,
    }
}

/// `cuKernelGetFunction` (asked of the server once per kernel and context).
pub unsafe fn kernel_get_function(out: *mut CUfunction, kernel: CUkernel) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let (k, ctx) = (kernel as usize as u64, crate::context::current());
    if let Some(f) = kernel_cache::function_of(k, ctx) {
        // SAFETY: non-null out pointer.
        unsafe { *out = f as usize as CUfunction };
        return CUDA_SUCCESS;
    }
    let epoch = crate::local_answers::epoch();
    let rc = get_function(custom::KERNEL_GET_FUNCTION, out.cast(), |w| w.put(&k));
    if rc == CUDA_SUCCESS {
        // SAFETY: set by the successful call.
        kernel_cache::remember_function(k, ctx, epoch, unsafe { *out } as usize as u64);
    }
    rc
}

/// Reads the `extra` launch list: the argument buffer it names, if any.
unsafe fn extra_buffer<'a>(extra: *mut *mut c_void) -> Result<Option<&'a [u8]>, u32> {
    if extra.is_null() {
        return Ok(None);
    }
    let (mut buf, mut size) = (std::ptr::null::<u8>(), None::<usize>);
    for i in (0..64).step_by(2) {
        // SAFETY: the caller's list of (key, value) pairs, ended by a null key.
        let (key, value) = unsafe { (*extra.add(i) as usize, *extra.add(i + 1)) };
        match key {
            0 => break,
            1 => buf = value as *const u8,
            // SAFETY: CU_LAUNCH_PARAM_BUFFER_SIZE's value points at a size_t.
            2 => size = Some(unsafe { *(value as *const usize) }),
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        }
    }
    match (buf.is_null(), size) {
        // SAFETY: the caller's buffer of `n` bytes.
        (false, Some(n)) => Ok(Some(unsafe { std::slice::from_raw_parts(buf, n) })),
        (true, None) => Ok(None),
        _ => Err(CUDA_ERROR_INVALID_VALUE),
    }
}

/// Each parameter's bytes, and the argument buffer.
type Arguments<'a> = (Vec<&'a [u8]>, Option<&'a [u8]>);

/// A kernel's arguments: each parameter's bytes (sizes from the cached layout of `f`) and the
/// argument buffer of `extra`.
///
/// # Safety
/// `params` and `extra` are a launch's, for function `f`.
unsafe fn arguments<'a>(
    f: CUfunction,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> Result<Arguments<'a>, u32> {
    let layout = layout_of(f as usize as u64)?;
    // SAFETY: the caller's extra list.
    let extra = unsafe { extra_buffer(extra) }?;
    let sizes: &[u32] = match (&layout, params.is_null()) {
        (_, true) => &[],
        (Some(l), false) => l,
        // Arguments whose sizes the server's driver cannot tell cannot be sent.
        (None, false) => return Err(CUDA_ERROR_NOT_SUPPORTED),
    };
    let args = sizes
        .iter()
        .enumerate()
        // SAFETY: kernelParams holds one pointer per parameter, each to `n` bytes.
        .map(|(i, &n)| unsafe {
            std::slice::from_raw_parts(*params.add(i) as *const u8, n as usize)
        })
        .collect();
    Ok((args, extra))
}

/// A launch's shape as it travels.
fn shape(f: CUfunction, grid: [u32; 3], block: [u32; 3], shared: u32, s: CUstream) -> LaunchShape {
    LaunchShape {
        function: f as usize as u64,
        grid,
        block,
        shared,
        stream: s as usize as u64,
    }
}

/// Sends a launch without waiting: `cuLaunchKernelEx`'s attributes whose values are plain
/// numbers travel, and those carrying an event (the client's name for it, which the session
/// maps); others are `CUDA_ERROR_NOT_SUPPORTED`.
fn launch(l: Launch<'_>) -> u32 {
    if let How::Ex(attrs) = l.how {
        if let Err(e) = all_travel_in_launch(attrs) {
            return e;
        }
    }
    // SAFETY: the caller's arguments.
    let (args, extra) = match unsafe { arguments(l.function, l.params, l.extra) } {
        Ok(a) => a,
        Err(e) => return e,
    };
    let mut s = state();
    if let Err(e) = s.ready() {
        return e;
    }
    crate::memory::push_managed(&mut s);
    let start = match s.begin(custom::LAUNCH, false, crate::context::current()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let w = &mut s.batch;
    shape(l.function, l.grid, l.block, l.shared, l.stream).write(w);
    match l.how {
        How::Plain => w.put(&custom::LAUNCH_PLAIN),
        How::Cooperative => w.put(&custom::LAUNCH_COOPERATIVE),
        How::Ex(attrs) => {
            w.put(&custom::LAUNCH_EX);
            write_attributes(w, attrs);
        }
    }
    kernel_args::write(w, &args, extra);
    s.finish_async(start)
}

gpupool_cuda::launch_entry_points!(launch);

/// Asks the server a cluster question (`which`) about launching `f` as `config` says.
///
/// # Safety
/// `config` is null or the caller's launch configuration.
unsafe fn occupancy_clusters(
    which: u8,
    out: *mut i32,
    f: CUfunction,
    config: *const CUlaunchConfig,
) -> u32 {
    // SAFETY: null or the caller's configuration, whose layout `RawLaunchConfig` mirrors.
    let Some(c) = (unsafe { config.cast::<RawLaunchConfig>().as_ref() }) else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: the caller's configuration lists `count` attributes.
    let attrs = match unsafe { travelling_attributes(c) } {
        Ok(a) => a,
        Err(e) => return e,
    };
    let mut s = state();
    let start = match s.begin(custom::OCCUPANCY_CLUSTERS, true, crate::context::current()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let w = &mut s.batch;
    w.put(&which);
    shape(f, c.grid, c.block, c.shared, c.stream).write(w);
    write_attributes(w, attrs);
    // Cached as the other occupancy queries, forgotten when the function's attributes change.
    s.finish_cached(start, |r| {
        let n: i32 = r.get("clusters")?;
        // SAFETY: non-null out pointer.
        unsafe { *out = n };
        Ok(())
    })
}

/// `cuOccupancyMaxActiveClusters`.
pub unsafe fn occupancy_max_active_clusters(
    out: *mut i32,
    f: CUfunction,
    config: *const CUlaunchConfig,
) -> u32 {
    // SAFETY: the caller's arguments.
    unsafe { occupancy_clusters(custom::CLUSTERS_ACTIVE, out, f, config) }
}

/// `cuOccupancyMaxPotentialClusterSize`.
pub unsafe fn occupancy_max_potential_cluster_size(
    out: *mut i32,
    f: CUfunction,
    config: *const CUlaunchConfig,
) -> u32 {
    // SAFETY: the caller's arguments.
    unsafe { occupancy_clusters(custom::CLUSTERS_POTENTIAL_SIZE, out, f, config) }
}

/// `cuGraphAddKernelNode` and `_v2` (whose leading fields are v1's; library kernels, `kern`,
/// are not supported).
pub unsafe fn graph_add_kernel_node(
    node: *mut CUgraphNode,
    graph: CUgraph,
    deps: *const CUgraphNode,
    ndeps: usize,
    p: *const RawKernelNodeParams,
    v2: bool,
) -> u32 {
    if p.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: the caller's parameters, read field by field: a v1 structure ends after `extra`.
    let (func, grid, block, shared, params, extra) = unsafe {
        (
            (*p).func,
            (*p).grid,
            (*p).block,
            (*p).shared,
            (*p).params,
            (*p).extra,
        )
    };
    // SAFETY: as above; only v2 structures have `kern`.
    if v2 && !unsafe { (*p).kern }.is_null() {
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    // SAFETY: the caller's arguments for func.
    let (args, extra) = match unsafe { arguments(func, params, extra) } {
        Ok(a) => a,
        Err(e) => return e,
    };
    let write = |w: &mut gpupool_remote::wire::Writer| {
        w.put(&(func as usize as u64));
        w.put(&grid);
        w.put(&block);
        w.put(&shared);
        kernel_args::write(w, &args, extra);
    };
    let call = custom::GRAPH_ADD_KERNEL_NODE;
    // SAFETY: the caller's node, graph and dependencies.
    unsafe { crate::graph::send_node(call, node, graph, (deps, ndeps), write) }
}

/// `cuGraphAddKernelNode` (v1 parameters).
pub unsafe fn graph_add_kernel_node_v1(
    node: *mut CUgraphNode,
    graph: CUgraph,
    deps: *const CUgraphNode,
    ndeps: usize,
    p: *const CUDA_KERNEL_NODE_PARAMS_st,
) -> u32 {
    // SAFETY: same contract; v1 parameters are read up to `extra` only.
    unsafe { graph_add_kernel_node(node, graph, deps, ndeps, p.cast(), false) }
}

/// `cuGraphAddKernelNode_v2`.
pub unsafe fn graph_add_kernel_node_v2(
    node: *mut CUgraphNode,
    graph: CUgraph,
    deps: *const CUgraphNode,
    ndeps: usize,
    p: *const CUDA_KERNEL_NODE_PARAMS_st,
) -> u32 {
    // SAFETY: same contract.
    unsafe { graph_add_kernel_node(node, graph, deps, ndeps, p.cast(), true) }
}
