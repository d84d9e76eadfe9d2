//! Allocation, copies and memsets. Host data travels in requests (host to device, batched) and
//! in replies (device to host, requested in chunks that are all sent before the first reply is
//! read); copies between device addresses stay on the server.

use crate::conn::{state, State};
use crate::memory_map::{self, Kind};
use gpupool_cuda::cu::*;
use gpupool_cuda::result::*;
use gpupool_remote::calls::custom;
use gpupool_remote::wire::Writer;
use std::ffi::c_void;

fn stream_opt(w: &mut Writer, s: Option<CUstream>) {
    w.put_opt(s.map(|s| s as usize as u64).as_ref());
}

/// A synchronous allocation call whose reply is the address (then `extra` more values).
fn allocate(
    call: u16,
    args: impl FnOnce(&mut Writer),
    size: u64,
    kind: Kind,
    out: *mut CUdeviceptr,
) -> (u32, u64) {
    if out.is_null() {
        return (CUDA_ERROR_INVALID_VALUE, 0);
    }
    let mut s = state();
    let start = match s.begin(call, true, crate::context::current()) {
        Ok(p) => p,
        Err(e) => return (e, 0),
    };
    args(&mut s.batch);
    let mut p = 0u64;
    let mut pitch = 0u64;
    let rc = s.finish_sync(start, |r| {
        p = r.get("address")?;
        if call == custom::MEM_ALLOC_PITCH {
            pitch = r.get("pitch")?;
        }
        Ok(())
    });
    if rc == CUDA_SUCCESS {
        // SAFETY: non-null out pointer from the caller.
        unsafe { *out = p };
        let size = if call == custom::MEM_ALLOC_PITCH {
            pitch.saturating_mul(size)
        } else {
            size
        };
        memory_map::insert(p, size.max(1), kind, 0);
    }
    (rc, pitch)
}

/// `cuMemAlloc_v2`.
pub unsafe fn mem_alloc(out: *mut CUdeviceptr, size: usize) -> u32 {
    let size = size as u64;
    allocate(custom::MEM_ALLOC, |w| w.put(&size), size, Kind::Device, out).0
}

/// `cuMemAllocPitch_v2`.
pub unsafe fn mem_alloc_pitch(
    out: *mut CUdeviceptr,
    pitch: *mut usize,
    w: usize,
    h: usize,
    elem: u32,
) -> u32 {
    if pitch.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let (rc, p) = allocate(
        custom::MEM_ALLOC_PITCH,
        |wr| {
            wr.put(&(w as u64));
            wr.put(&(h as u64));
            wr.put(&elem);
        },
        h as u64,
        Kind::Device,
        out,
    );
    if rc == CUDA_SUCCESS {
        // SAFETY: non-null out pointer.
        unsafe { *pitch = p as usize };
    }
    rc
}

/// `cuMemAllocAsync`.
pub unsafe fn mem_alloc_async(out: *mut CUdeviceptr, size: usize, s: CUstream) -> u32 {
    // SAFETY: same contract.
    unsafe { mem_alloc_from_pool_async(out, size, std::ptr::null_mut(), s) }
}

/// `cuMemAllocFromPoolAsync` (a null pool: the device's current pool).
pub unsafe fn mem_alloc_from_pool_async(
    out: *mut CUdeviceptr,
    size: usize,
    pool: CUmemoryPool,
    s: CUstream,
) -> u32 {
    let size = size as u64;
    let args = |w: &mut Writer| {
        w.put(&size);
        w.put(&(pool as usize as u64));
        stream_opt(w, Some(s));
    };
    allocate(custom::MEM_ALLOC_ASYNC, args, size, Kind::Device, out).0
}

/// `cuMemAllocManaged`: allocated on the server and mirrored here at the same address; the
/// mirror is sent before each launch and refreshed after each synchronisation.
pub unsafe fn mem_alloc_managed(out: *mut CUdeviceptr, size: usize, flags: u32) -> u32 {
    let bytes = size as u64;
    let args = |w: &mut Writer| {
        w.put(&bytes);
        w.put(&flags);
    };
    let (rc, _) = allocate(custom::MEM_ALLOC_MANAGED, args, bytes, Kind::Managed, out);
    if rc != CUDA_SUCCESS {
        return rc;
    }
    // SAFETY: the address just written.
    let addr = unsafe { *out };
    // SAFETY: a fresh anonymous mapping at a fixed address that must not replace anything.
    let p = unsafe {
        libc::mmap(
            addr as usize as *mut c_void,
            size.max(1),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p as usize as u64 != addr {
        if p != libc::MAP_FAILED {
            // SAFETY: the mapping just made, elsewhere.
            unsafe { libc::munmap(p, size.max(1)) };
        }
        eprintln!("gpupool remote GPU: managed memory at {addr:#x} cannot be mirrored in this process (address in use); refused");
        // SAFETY: the address this library just allocated.
        unsafe { mem_free(addr) };
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    CUDA_SUCCESS
}

/// `cuMemFree_v2` (batched).
pub unsafe fn mem_free(p: CUdeviceptr) -> u32 {
    free(p, None)
}

/// `cuMemFreeAsync` (batched).
pub unsafe fn mem_free_async(p: CUdeviceptr, s: CUstream) -> u32 {
    free(p, Some(s))
}

fn free(p: CUdeviceptr, stream: Option<CUstream>) -> u32 {
    if p == 0 {
        return if state().ready().is_ok() {
            CUDA_SUCCESS
        } else {
            CUDA_ERROR_NOT_INITIALIZED
        };
    }
    match memory_map::at(p) {
        Some(r) if matches!(r.kind, Kind::Device | Kind::Managed) => {}
        _ => return CUDA_ERROR_INVALID_VALUE,
    }
    let mut s = state();
    let start = match s.begin(custom::MEM_FREE, false, crate::context::current()) {
        Ok(x) => x,
        Err(e) => return e,
    };
    s.batch.put(&p);
    stream_opt(&mut s.batch, stream);
    let rc = s.finish_async(start);
    // Forgotten before the state is let go: once another thread's call sends this free, the
    // server may hand the same address to that thread's allocation, which records it anew.
    if let Some(r) = memory_map::remove(p) {
        if r.kind == Kind::Managed {
            // SAFETY: the mirror made by mem_alloc_managed.
            unsafe { libc::munmap(p as usize as *mut c_void, r.size as usize) };
        }
    }
    drop(s);
    rc
}

/// Bytes a bulk copy sends or asks for per message: small enough that the server's copy
/// between the socket and the GPU stays in the CPU's cache and overlaps the transfer of the
/// next piece (1 MiB pieces measured 75-110 % of raw loopback bandwidth, 8 MiB 50-67 %).
const COPY_PIECE: usize = 1 << 20;

/// Host to device: batched, in pieces.
pub unsafe fn htod(dst: u64, src: *const u8, n: usize, stream: Option<CUstream>) -> u32 {
    if n > 0 && src.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if let Some(captured) = stream.filter(|&s| crate::stream::captured(s)) {
        return crate::graph_host::captured_copy(dst, src as usize, n, true, captured);
    }
    let mut s = state();
    let mut done = 0;
    loop {
        let len = (n - done).min(COPY_PIECE);
        let start = match s.begin(custom::COPY_HTOD, false, crate::context::current()) {
            Ok(p) => p,
            Err(e) => return e,
        };
        s.batch.put(&(dst + done as u64));
        stream_opt(&mut s.batch, stream);
        // SAFETY: the caller's buffer of n bytes.
        let data = unsafe { std::slice::from_raw_parts(src.add(done), len) };
        let rc = if len >= 64 << 10 {
            s.finish_async_with(start, data)
        } else {
            s.batch.put_bytes(data);
            s.finish_async(start)
        };
        if rc != CUDA_SUCCESS {
            return rc;
        }
        done += len;
        if done >= n {
            return CUDA_SUCCESS;
        }
    }
}

/// Device to host: every chunk is requested, then the replies are read in order.
pub unsafe fn dtoh(dst: *mut u8, src: u64, n: usize, stream: Option<CUstream>) -> u32 {
    if n > 0 && dst.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if let Some(captured) = stream.filter(|&s| crate::stream::captured(s)) {
        return crate::graph_host::captured_copy(src, dst as usize, n, false, captured);
    }
    let mut s = state();
    let chunks: Vec<(usize, usize)> = (0..n.div_ceil(COPY_PIECE).max(1))
        .map(|i| (i * COPY_PIECE, (n - i * COPY_PIECE).min(COPY_PIECE)))
        .collect();
    for &(off, len) in &chunks {
        let start = match s.begin(custom::COPY_DTOH, true, crate::context::current()) {
            Ok(p) => p,
            Err(e) => return e,
        };
        s.batch.put(&(src + off as u64));
        s.batch.put(&(len as u64));
        stream_opt(&mut s.batch, stream);
        gpupool_remote::protocol::finish_request(&mut s.batch, start);
    }
    if let Err(e) = s.flush() {
        return e;
    }
    let mut first = CUDA_SUCCESS;
    for &(off, len) in &chunks {
        // SAFETY: the caller's buffer of n bytes; off + len <= n.
        let rc = unsafe { s.read_reply_into(dst.add(off), len) };
        if first == CUDA_SUCCESS {
            first = rc;
        }
    }
    first
}

/// Device to device: batched.
pub fn dtod(dst: u64, src: u64, n: usize, stream: Option<CUstream>) -> u32 {
    let mut s = state();
    let start = match s.begin(custom::COPY_DTOD, false, crate::context::current()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    s.batch.put(&dst);
    s.batch.put(&src);
    s.batch.put(&(n as u64));
    stream_opt(&mut s.batch, stream);
    s.finish_async(start)
}

/// Any-direction copy between unified addresses.
pub unsafe fn copy_any(dst: u64, src: u64, n: usize, stream: Option<CUstream>) -> u32 {
    if let Err(e) = state().ready() {
        return e;
    }
    match (memory_map::is_device(dst), memory_map::is_device(src)) {
        (true, true) => dtod(dst, src, n, stream),
        (true, false) => htod(dst, src as usize as *const u8, n, stream),
        (false, true) => dtoh(dst as usize as *mut u8, src, n, stream),
        (false, false) => {
            if n > 0 {
                if dst == 0 || src == 0 {
                    return CUDA_ERROR_INVALID_VALUE;
                }
                // SAFETY: host memory of the caller (or mirrors), n bytes each.
                unsafe { std::ptr::copy(src as usize as *const u8, dst as usize as *mut u8, n) };
            }
            CUDA_SUCCESS
        }
    }
}

/// `cuMemsetD*`: batched; `elem` is 1, 2 or 4 bytes.
pub fn memset(
    dst: u64,
    elem: u8,
    value: u32,
    width: usize,
    height: usize,
    pitch: usize,
    stream: Option<CUstream>,
) -> u32 {
    if let Some((base, r)) = memory_map::find(dst) {
        if r.kind == Kind::Managed {
            // The mirror is the managed memory's current contents.
            let _ = base;
            return memset_local(dst, elem, value, width, height, pitch);
        }
    }
    let mut s = state();
    let start = match s.begin(custom::MEMSET, false, crate::context::current()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    s.batch.put(&dst);
    s.batch.put(&elem);
    s.batch.put(&value);
    s.batch.put(&(width as u64));
    s.batch.put(&(height as u64));
    s.batch.put(&(pitch as u64));
    stream_opt(&mut s.batch, stream);
    s.finish_async(start)
}

fn memset_local(dst: u64, elem: u8, value: u32, width: usize, height: usize, pitch: usize) -> u32 {
    let row = width * elem as usize;
    let rows = height.max(1);
    let pitch = if height <= 1 { row } else { pitch };
    let end = pitch * (rows - 1) + row;
    match memory_map::find(dst) {
        Some((base, r)) if dst - base + end as u64 <= r.size => {}
        _ => return CUDA_ERROR_INVALID_VALUE,
    }
    let bytes = value.to_le_bytes();
    for y in 0..rows {
        for i in 0..width {
            // SAFETY: inside the mirror, checked above.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    (dst as usize + y * pitch + i * elem as usize) as *mut u8,
                    elem as usize,
                )
            };
        }
    }
    CUDA_SUCCESS
}

/// Sends every managed mirror to the server (before a launch) and notes that kernels may now
/// write managed memory.
pub fn push_managed(s: &mut State) -> u32 {
    for (base, size) in memory_map::managed() {
        let start = match s.begin(custom::COPY_HTOD, false, crate::context::current()) {
            Ok(p) => p,
            Err(e) => return e,
        };
        s.batch.put(&base);
        stream_opt(&mut s.batch, None);
        // SAFETY: the mirror mapping of `size` bytes.
        s.batch.put_bytes(unsafe {
            std::slice::from_raw_parts(base as usize as *const u8, size as usize)
        });
        gpupool_remote::protocol::finish_request(&mut s.batch, start);
        s.kernels_may_have_written = true;
    }
    CUDA_SUCCESS
}

/// Refreshes every managed mirror from the server after a synchronisation, if a kernel ran
/// since the last refresh.
fn pull_managed() {
    {
        let mut s = state();
        if !std::mem::replace(&mut s.kernels_may_have_written, false) {
            return;
        }
    }
    for (base, size) in memory_map::managed() {
        // SAFETY: the mirror mapping of `size` bytes.
        unsafe { dtoh(base as usize as *mut u8, base, size as usize, None) };
    }
}

/// `cuMemPrefetchAsync` (and `_ptsz`), `cuMemAdvise` and `cuMemAdvise_v2`: hints, accepted
/// for memory the program allocated (managed memory is mirrored here and moved at each launch
/// and synchronisation whatever the hint).
pub unsafe fn mem_hint<A, B>(ptr: CUdeviceptr, n: usize, _: A, _: B) -> u32 {
    if memory_map::holds(ptr, n as u64) {
        CUDA_SUCCESS
    } else {
        CUDA_ERROR_INVALID_VALUE
    }
}

/// `cuMemPrefetchAsync_v2` (and `_ptsz`): a hint, as [`mem_hint`].
pub unsafe fn mem_prefetch_async_v2(
    ptr: CUdeviceptr,
    n: usize,
    _loc: u64,
    _flags: u32,
    _s: *mut c_void,
) -> u32 {
    // SAFETY: no pointers are read.
    unsafe { mem_hint(ptr, n, (), ()) }
}

/// Hook after `cuCtxSynchronize`.
pub fn synced() {
    pull_managed();
}

/// Hook after `cuStreamSynchronize` / `cuEventSynchronize`.
pub fn synced_on<T>(_: T) {
    pull_managed();
}
