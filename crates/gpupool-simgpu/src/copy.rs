//! Copies and sets, in every direction, synchronous and stream-ordered. The simulator executes
//! stream work immediately, so the async forms behave like the sync ones after completion; on
//! a stream being captured they are recorded and done when the graph runs (`capture`).

use crate::ctx::initialised;
use crate::graph::{Kept, Node};
use crate::mem::find;
use gpupool_cuda::cu::{
    CUarray, CUdeviceptr, CUgraphNodeType, CUstream, CUDA_MEMCPY2D, CUDA_MEMCPY3D,
};
use gpupool_cuda::result::*;
use std::ffi::c_void;

/// Checks that `[ptr, ptr + len)` lies inside memory the simulator handed out.
fn device_range(ptr: u64, len: u64) -> Result<*mut u8, u32> {
    if len == 0 {
        return Ok(ptr as *mut u8);
    }
    find(ptr, len)
        .map(|_| ptr as *mut u8)
        .ok_or(CUDA_ERROR_INVALID_VALUE)
}

/// Device range if it is one of ours, else trusted host memory (unified addressing).
fn any_range(ptr: u64, len: u64) -> Result<*mut u8, u32> {
    if ptr == 0 && len > 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    Ok(device_range(ptr, len).unwrap_or(ptr as *mut u8))
}

fn copy(dst: Result<*mut u8, u32>, src: Result<*mut u8, u32>, n: usize) -> u32 {
    if let Err(e) = initialised() {
        return e;
    }
    match (dst, src) {
        (Ok(d), Ok(s)) => {
            if n > 0 {
                // SAFETY: both ranges were validated (device) or supplied by the caller (host);
                // copy handles overlap.
                unsafe { std::ptr::copy(s, d, n) };
            }
            CUDA_SUCCESS
        }
        (Err(e), _) | (_, Err(e)) => e,
    }
}

/// `cuMemcpyHtoD_v2` (and `_ptds`, `Async`).
pub unsafe fn htod(dst: CUdeviceptr, src: *const c_void, n: usize) -> u32 {
    copy(
        device_range(dst, n as u64),
        any_range(src as u64, n as u64),
        n,
    )
}
/// `cuMemcpyDtoH_v2`.
pub unsafe fn dtoh(dst: *mut c_void, src: CUdeviceptr, n: usize) -> u32 {
    copy(
        any_range(dst as u64, n as u64),
        device_range(src, n as u64),
        n,
    )
}
/// `cuMemcpyDtoD_v2`.
pub unsafe fn dtod(dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> u32 {
    copy(device_range(dst, n as u64), device_range(src, n as u64), n)
}
/// `cuMemcpy` (unified).
pub unsafe fn memcpy(dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> u32 {
    copy(any_range(dst, n as u64), any_range(src, n as u64), n)
}
/// `cuMemcpyPeer`.
pub unsafe fn memcpy_peer(
    dst: CUdeviceptr,
    _dc: *mut c_void,
    src: CUdeviceptr,
    _sc: *mut c_void,
    n: usize,
) -> u32 {
    // SAFETY: same contract.
    unsafe { dtod(dst, src, n) }
}

/// Base address of one side of a 2D/3D copy.
fn side_base(
    memtype: u32,
    host: *const c_void,
    device: CUdeviceptr,
    array: CUarray,
) -> Result<u64, u32> {
    match memtype {
        1 => Ok(host as u64),
        2 | 4 => Ok(if device != 0 { device } else { host as u64 }),
        3 => crate::array::array_base(array),
        _ => Err(CUDA_ERROR_INVALID_VALUE),
    }
}

/// A strided 3D copy; rows are validated one by one.
#[allow(clippy::too_many_arguments)]
fn copy_3d(
    src: u64,
    src_pitch: u64,
    src_height: u64,
    src_xyz: (u64, u64, u64),
    dst: u64,
    dst_pitch: u64,
    dst_height: u64,
    dst_xyz: (u64, u64, u64),
    width: u64,
    height: u64,
    depth: u64,
) -> u32 {
    if let Err(e) = initialised() {
        return e;
    }
    let src_pitch = if src_pitch == 0 { width } else { src_pitch };
    let dst_pitch = if dst_pitch == 0 { width } else { dst_pitch };
    if width > src_pitch || width > dst_pitch {
        return CUDA_ERROR_INVALID_VALUE;
    }
    for z in 0..depth {
        for y in 0..height {
            let s = src
                + src_xyz.0
                + (src_xyz.1 + y) * src_pitch
                + (src_xyz.2 + z) * src_pitch * src_height;
            let d = dst
                + dst_xyz.0
                + (dst_xyz.1 + y) * dst_pitch
                + (dst_xyz.2 + z) * dst_pitch * dst_height;
            let rc = copy(any_range(d, width), any_range(s, width), width as usize);
            if rc != CUDA_SUCCESS {
                return rc;
            }
        }
    }
    CUDA_SUCCESS
}

/// `cuMemcpy2D_v2` (also `Unaligned`, `Async`): the same copy as a 3D one of depth 1.
pub unsafe fn memcpy_2d(p: *const CUDA_MEMCPY2D) -> u32 {
    if p.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: caller passes a valid descriptor.
    let c = unsafe { &*p };
    let d = CUDA_MEMCPY3D {
        srcXInBytes: c.srcXInBytes,
        srcY: c.srcY,
        srcZ: 0,
        srcLOD: 0,
        srcMemoryType: c.srcMemoryType,
        srcHost: c.srcHost,
        srcDevice: c.srcDevice,
        srcArray: c.srcArray,
        reserved0: std::ptr::null_mut(),
        srcPitch: c.srcPitch,
        srcHeight: 0,
        dstXInBytes: c.dstXInBytes,
        dstY: c.dstY,
        dstZ: 0,
        dstLOD: 0,
        dstMemoryType: c.dstMemoryType,
        dstHost: c.dstHost,
        dstDevice: c.dstDevice,
        dstArray: c.dstArray,
        reserved1: std::ptr::null_mut(),
        dstPitch: c.dstPitch,
        dstHeight: 0,
        WidthInBytes: c.WidthInBytes,
        Height: c.Height,
        Depth: 1,
    };
    // SAFETY: a valid descriptor that lives across the call.
    unsafe { memcpy_3d(&d) }
}

/// `cuMemcpy3D_v2`.
pub unsafe fn memcpy_3d(p: *const CUDA_MEMCPY3D) -> u32 {
    if p.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: caller passes a valid descriptor.
    let c = unsafe { &*p };
    let (st, dt) = (c.srcMemoryType as u32, c.dstMemoryType as u32);
    let src = match side_base(st, c.srcHost, c.srcDevice, c.srcArray) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let dst = match side_base(dt, c.dstHost, c.dstDevice, c.dstArray) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let (sp, sh) = if st == 3 {
        (
            crate::array::array_pitch(c.srcArray),
            crate::array::array_height(c.srcArray),
        )
    } else {
        (c.srcPitch as u64, c.srcHeight as u64)
    };
    let (dp, dh) = if dt == 3 {
        (
            crate::array::array_pitch(c.dstArray),
            crate::array::array_height(c.dstArray),
        )
    } else {
        (c.dstPitch as u64, c.dstHeight as u64)
    };
    copy_3d(
        src,
        sp,
        sh.max(c.Height as u64),
        (c.srcXInBytes as u64, c.srcY as u64, c.srcZ as u64),
        dst,
        dp,
        dh.max(c.Height as u64),
        (c.dstXInBytes as u64, c.dstY as u64, c.dstZ as u64),
        c.WidthInBytes as u64,
        c.Height as u64,
        c.Depth as u64,
    )
}

/// Sets `count` elements of `N` bytes at `dst` (rows of `width` elements, `pitch` apart).
fn set<const N: usize>(dst: u64, pitch: u64, value: [u8; N], width: u64, height: u64) -> u32 {
    if let Err(e) = initialised() {
        return e;
    }
    let row = width * N as u64;
    let pitch = if height <= 1 { row } else { pitch };
    if height > 1 && pitch < row {
        return CUDA_ERROR_INVALID_VALUE;
    }
    for y in 0..height {
        let start = dst + y * pitch;
        let p = match device_range(start, row) {
            Ok(p) => p,
            Err(e) => return e,
        };
        for i in 0..width as usize {
            // SAFETY: the row was validated to lie inside one allocation.
            unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), p.add(i * N), N) };
        }
    }
    CUDA_SUCCESS
}

/// `cuMemsetD8_v2`.
pub unsafe fn memset_d8(dst: CUdeviceptr, v: u8, n: usize) -> u32 {
    if let Err(e) = initialised() {
        return e;
    }
    match device_range(dst, n as u64) {
        // SAFETY: validated range.
        Ok(p) => unsafe {
            std::ptr::write_bytes(p, v, n);
            CUDA_SUCCESS
        },
        Err(e) => e,
    }
}
/// `cuMemsetD16_v2`.
pub unsafe fn memset_d16(dst: CUdeviceptr, v: u16, n: usize) -> u32 {
    set(dst, 0, v.to_ne_bytes(), n as u64, 1)
}
/// `cuMemsetD32_v2`.
pub unsafe fn memset_d32(dst: CUdeviceptr, v: u32, n: usize) -> u32 {
    set(dst, 0, v.to_ne_bytes(), n as u64, 1)
}
/// `cuMemsetD2D8_v2`.
pub unsafe fn memset_d2d8(dst: CUdeviceptr, pitch: usize, v: u8, w: usize, h: usize) -> u32 {
    set(dst, pitch as u64, [v], w as u64, h as u64)
}
/// `cuMemsetD2D16_v2`.
pub unsafe fn memset_d2d16(dst: CUdeviceptr, pitch: usize, v: u16, w: usize, h: usize) -> u32 {
    set(dst, pitch as u64, v.to_ne_bytes(), w as u64, h as u64)
}
/// `cuMemsetD2D32_v2`.
pub unsafe fn memset_d2d32(dst: CUdeviceptr, pitch: usize, v: u32, w: usize, h: usize) -> u32 {
    set(dst, pitch as u64, v.to_ne_bytes(), w as u64, h as u64)
}

/// Calls `$base` with every argument but the last (the stream).
macro_rules! without_stream {
    ($base:ident; [$($done:ident),*] $stream:ident) => {
        $base($($done),*)
    };
    ($base:ident; [$($done:ident),*] $head:ident, $($rest:ident),+) => {
        without_stream!($base; [$($done,)* $head] $($rest),+)
    };
}

/// The last of a list of arguments (the stream).
macro_rules! last_arg {
    ($x:ident) => {
        $x
    };
    ($x:ident, $($rest:ident),+) => {
        last_arg!($($rest),+)
    };
}

/// An asynchronous copy or memset with the declared signature of `NAME`, done at once as its
/// synchronous form `BASE` (copies do not wait for kernels, whose results are not computed),
/// or recorded as a node of type `KIND` on a stream being captured (`(copied KIND)` for the
/// forms whose parameters are a structure, which the node keeps a copy of).
macro_rules! done_at_once {
    ({ $fn:ident, $base:ident, (copied $kind:ident) } ; $name:ident ( $p:ident : $pt:ty, $s:ident : $st:ty )) => {
        #[doc = concat!("`", stringify!($name), "`: done at once, as [`", stringify!($base), "`], or captured with a copy of its parameters.")]
        pub unsafe fn $fn($p: $pt, $s: $st) -> u32 {
            if crate::capture::of($s).is_some() {
                if $p.is_null() {
                    return CUDA_ERROR_INVALID_VALUE;
                }
                // SAFETY: the caller's parameters, copied: the graph keeps its own.
                let kept = Kept(unsafe { *$p });
                let node = move || {
                    let run = move || {
                        let params = kept.get();
                        // SAFETY: the parameters as captured, whose memory the caller keeps
                        // valid until the graph runs.
                        unsafe { $base(&params) }
                    };
                    Node::Work(CUgraphNodeType::$kind, Box::new(run))
                };
                if let Some(rc) = crate::capture::add($s, node) {
                    return rc;
                }
            }
            // SAFETY: the caller's parameters.
            unsafe { $base($p) }
        }
    };
    ({ $fn:ident, $base:ident, $kind:ident } ; $name:ident ( $($a:ident : $t:ty),* )) => {
        #[doc = concat!("`", stringify!($name), "`: done at once, as [`", stringify!($base), "`], or captured.")]
        #[allow(unused_variables, clippy::too_many_arguments)]
        pub unsafe fn $fn($($a: $t),*) -> u32 {
            let node = || {
                let args = Kept(($($a,)*));
                let run = move || {
                    let ($($a,)*) = args.get();
                    // SAFETY: the arguments as recorded, which the caller keeps valid until
                    // the graph runs.
                    unsafe { without_stream!($base; [] $($a),*) }
                };
                Node::Work(CUgraphNodeType::$kind, Box::new(run))
            };
            if let Some(rc) = crate::capture::add(last_arg!($($a),*), node) {
                return rc;
            }
            // SAFETY: the caller's arguments but the stream, passed on.
            unsafe { without_stream!($base; [] $($a),*) }
        }
    };
}

/// `NAME => FN as BASE, KIND;` for each asynchronous form.
macro_rules! done_at_once_all {
    ($( $name:ident => $fn:ident as $base:ident, $kind:tt; )*) => {$(
        gpupool_cuda::signature_of! { $name adapt done_at_once { $fn, $base, $kind } }
    )*};
}

done_at_once_all! {
    cuMemcpyHtoDAsync_v2 => htod_async as htod, CU_GRAPH_NODE_TYPE_MEMCPY;
    cuMemcpyDtoHAsync_v2 => dtoh_async as dtoh, CU_GRAPH_NODE_TYPE_MEMCPY;
    cuMemcpyDtoDAsync_v2 => dtod_async as dtod, CU_GRAPH_NODE_TYPE_MEMCPY;
    cuMemcpyAsync => memcpy_async as memcpy, CU_GRAPH_NODE_TYPE_MEMCPY;
    cuMemcpyPeerAsync => memcpy_peer_async as memcpy_peer, CU_GRAPH_NODE_TYPE_MEMCPY;
    cuMemcpy2DAsync_v2 => memcpy_2d_async as memcpy_2d, (copied CU_GRAPH_NODE_TYPE_MEMCPY);
    cuMemcpy3DAsync_v2 => memcpy_3d_async as memcpy_3d, (copied CU_GRAPH_NODE_TYPE_MEMCPY);
    cuMemsetD8Async => memset_d8_async as memset_d8, CU_GRAPH_NODE_TYPE_MEMSET;
    cuMemsetD16Async => memset_d16_async as memset_d16, CU_GRAPH_NODE_TYPE_MEMSET;
    cuMemsetD32Async => memset_d32_async as memset_d32, CU_GRAPH_NODE_TYPE_MEMSET;
    cuMemsetD2D8Async => memset_d2d8_async as memset_d2d8, CU_GRAPH_NODE_TYPE_MEMSET;
    cuMemsetD2D16Async => memset_d2d16_async as memset_d2d16, CU_GRAPH_NODE_TYPE_MEMSET;
    cuMemsetD2D32Async => memset_d2d32_async as memset_d2d32, CU_GRAPH_NODE_TYPE_MEMSET;
}
