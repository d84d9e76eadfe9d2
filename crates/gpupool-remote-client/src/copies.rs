//! The driver's copy and memset entry points, mapped onto the three directions and the packed
//! 2D / 3D form.

use crate::graph_host::Shape;
use crate::memory::{copy_any, dtod, dtoh, htod, memset};
use crate::memory_map;
use gpupool_cuda::cu::*;
use gpupool_cuda::result::*;
use gpupool_remote::calls::custom;
use gpupool_remote::copy3d::{self, Copy3d, Side};
use std::ffi::c_void;

/// `cuMemcpy` / `cuMemcpyAsync` (unified addresses; `None`: synchronous).
pub unsafe fn memcpy(dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> u32 {
    copy_any(dst, src, n, None)
}

/// `cuMemcpyAsync`.
pub unsafe fn memcpy_async(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> u32 {
    copy_any(dst, src, n, Some(s))
}

/// `cuMemcpyHtoD_v2`.
pub unsafe fn htod_sync(dst: CUdeviceptr, src: *const c_void, n: usize) -> u32 {
    htod(dst, src.cast(), n, None)
}

/// `cuMemcpyHtoDAsync_v2`.
pub unsafe fn htod_async(dst: CUdeviceptr, src: *const c_void, n: usize, s: CUstream) -> u32 {
    htod(dst, src.cast(), n, Some(s))
}

/// `cuMemcpyDtoH_v2`.
pub unsafe fn dtoh_sync(dst: *mut c_void, src: CUdeviceptr, n: usize) -> u32 {
    dtoh(dst.cast(), src, n, None)
}

/// `cuMemcpyDtoHAsync_v2` (complete when it returns).
pub unsafe fn dtoh_async(dst: *mut c_void, src: CUdeviceptr, n: usize, s: CUstream) -> u32 {
    dtoh(dst.cast(), src, n, Some(s))
}

/// `cuMemcpyDtoD_v2`.
pub unsafe fn dtod_sync(dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> u32 {
    dtod(dst, src, n, None)
}

/// `cuMemcpyDtoDAsync_v2`.
pub unsafe fn dtod_async(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> u32 {
    dtod(dst, src, n, Some(s))
}

/// `cuMemcpyPeer`: with unified addressing a copy between devices of the server is a device
/// to device copy there (the contexts are not needed to find the memory).
pub unsafe fn memcpy_peer(
    dst: CUdeviceptr,
    _dst_ctx: *mut c_void,
    src: CUdeviceptr,
    _src_ctx: *mut c_void,
    n: usize,
) -> u32 {
    dtod(dst, src, n, None)
}

/// `cuMemcpyPeerAsync`.
pub unsafe fn memcpy_peer_async(
    dst: CUdeviceptr,
    _dst_ctx: *mut c_void,
    src: CUdeviceptr,
    _src_ctx: *mut c_void,
    n: usize,
    s: CUstream,
) -> u32 {
    dtod(dst, src, n, Some(s))
}

/// `cuMemsetD8_v2`.
pub unsafe fn memset_d8(d: CUdeviceptr, v: u8, n: usize) -> u32 {
    memset(d, 1, v as u32, n, 1, 0, None)
}
/// `cuMemsetD16_v2`.
pub unsafe fn memset_d16(d: CUdeviceptr, v: u16, n: usize) -> u32 {
    memset(d, 2, v as u32, n, 1, 0, None)
}
/// `cuMemsetD32_v2`.
pub unsafe fn memset_d32(d: CUdeviceptr, v: u32, n: usize) -> u32 {
    memset(d, 4, v, n, 1, 0, None)
}
/// `cuMemsetD8Async`.
pub unsafe fn memset_d8_async(d: CUdeviceptr, v: u8, n: usize, s: CUstream) -> u32 {
    memset(d, 1, v as u32, n, 1, 0, Some(s))
}
/// `cuMemsetD16Async`.
pub unsafe fn memset_d16_async(d: CUdeviceptr, v: u16, n: usize, s: CUstream) -> u32 {
    memset(d, 2, v as u32, n, 1, 0, Some(s))
}
/// `cuMemsetD32Async`.
pub unsafe fn memset_d32_async(d: CUdeviceptr, v: u32, n: usize, s: CUstream) -> u32 {
    memset(d, 4, v, n, 1, 0, Some(s))
}
/// `cuMemsetD2D8_v2`.
pub unsafe fn memset_d2d8(d: CUdeviceptr, p: usize, v: u8, w: usize, h: usize) -> u32 {
    memset(d, 1, v as u32, w, h, p, None)
}
/// `cuMemsetD2D16_v2`.
pub unsafe fn memset_d2d16(d: CUdeviceptr, p: usize, v: u16, w: usize, h: usize) -> u32 {
    memset(d, 2, v as u32, w, h, p, None)
}
/// `cuMemsetD2D32_v2`.
pub unsafe fn memset_d2d32(d: CUdeviceptr, p: usize, v: u32, w: usize, h: usize) -> u32 {
    memset(d, 4, v, w, h, p, None)
}
/// `cuMemsetD2D8Async`.
pub unsafe fn memset_d2d8_async(
    d: CUdeviceptr,
    p: usize,
    v: u8,
    w: usize,
    h: usize,
    s: CUstream,
) -> u32 {
    memset(d, 1, v as u32, w, h, p, Some(s))
}
/// `cuMemsetD2D16Async`.
pub unsafe fn memset_d2d16_async(
    d: CUdeviceptr,
    p: usize,
    v: u16,
    w: usize,
    h: usize,
    s: CUstream,
) -> u32 {
    memset(d, 2, v as u32, w, h, p, Some(s))
}
/// `cuMemsetD2D32Async`.
pub unsafe fn memset_d2d32_async(
    d: CUdeviceptr,
    p: usize,
    v: u32,
    w: usize,
    h: usize,
    s: CUstream,
) -> u32 {
    memset(d, 4, v, w, h, p, Some(s))
}

/// `CUDA_MEMCPY3D` read with memory types as raw integers (same layout).
#[repr(C)]
struct Raw3d {
    src_x: usize,
    src_y: usize,
    src_z: usize,
    src_lod: usize,
    src_type: u32,
    src_host: *const u8,
    src_device: u64,
    src_array: u64,
    _reserved0: usize,
    src_pitch: usize,
    src_height: usize,
    dst_x: usize,
    dst_y: usize,
    dst_z: usize,
    dst_lod: usize,
    dst_type: u32,
    dst_host: *mut u8,
    dst_device: u64,
    dst_array: u64,
    _reserved1: usize,
    dst_pitch: usize,
    dst_height: usize,
    width: usize,
    height: usize,
    depth: usize,
}

/// `CUDA_MEMCPY2D` read with memory types as raw integers (same layout).
#[repr(C)]
struct Raw2d {
    src_x: usize,
    src_y: usize,
    src_type: u32,
    src_host: *const u8,
    src_device: u64,
    src_array: u64,
    src_pitch: usize,
    dst_x: usize,
    dst_y: usize,
    dst_type: u32,
    dst_host: *mut u8,
    dst_device: u64,
    dst_array: u64,
    dst_pitch: usize,
    width: usize,
    height: usize,
}

const _: () = assert!(std::mem::size_of::<Raw3d>() == std::mem::size_of::<CUDA_MEMCPY3D>());
const _: () = assert!(std::mem::size_of::<Raw2d>() == std::mem::size_of::<CUDA_MEMCPY2D>());

/// One side as the caller described it, with its host pointer when it is host memory.
#[derive(Clone, Copy)]
struct CallerSide {
    side: Side,
    host: *mut u8,
}

fn side(
    kind: u32,
    host: *mut u8,
    device: u64,
    array: u64,
    xyz: (usize, usize, usize),
    pitch: usize,
    height: usize,
) -> Option<CallerSide> {
    let (x, y, z) = (xyz.0 as u64, xyz.1 as u64, xyz.2 as u64);
    let mut s = Side {
        kind: 0,
        x,
        y,
        z,
        ptr: 0,
        pitch: pitch as u64,
        height: height as u64,
    };
    let mut host_ptr = std::ptr::null_mut();
    match kind {
        1 => {
            s.kind = copy3d::HOST;
            host_ptr = host;
        }
        2 => {
            s.kind = copy3d::DEVICE;
            s.ptr = device;
        }
        3 => {
            s.kind = copy3d::ARRAY;
            s.ptr = array;
        }
        4 if memory_map::is_device(device) => {
            s.kind = copy3d::DEVICE;
            s.ptr = device;
        }
        4 => {
            s.kind = copy3d::HOST;
            host_ptr = device as usize as *mut u8;
        }
        _ => return None,
    }
    Some(CallerSide {
        side: s,
        host: host_ptr,
    })
}

/// Visits every row of a host side: (offset in the packed buffer, pointer in the caller's).
fn rows(c: &Copy3d, s: &CallerSide, mut f: impl FnMut(usize, *mut u8)) {
    let (w, h, d) = (c.width as usize, c.height as usize, c.depth as usize);
    let sh = (s.side.height as usize).max(h);
    for z in 0..d {
        for y in 0..h {
            let off = (z * h + y) * w;
            let at = s.side.x as usize
                + (s.side.y as usize + y) * s.side.pitch as usize
                + (s.side.z as usize + z) * s.side.pitch as usize * sh;
            f(off, s.host.wrapping_add(at));
        }
    }
}

/// Most bytes of host rows one 2D / 3D copy request carries.
const ROWS_PER_REQUEST: usize = 4 * gpupool_remote::protocol::CHUNK;

/// Splits a copy into copies whose packed host rows fit [`ROWS_PER_REQUEST`]: groups of
/// whole slices when a slice fits, else groups of rows of one slice (each side's rows and
/// slices shifted, its pitch and rows per slice kept); `None` when a single row is larger.
pub(crate) fn pieces(c: &Copy3d) -> Option<Vec<Copy3d>> {
    let row = usize::try_from(c.width).ok()?;
    let slice = row.checked_mul(usize::try_from(c.height).ok()?)?;
    if row > ROWS_PER_REQUEST {
        return None;
    }
    let shifted = |dy: u64, dz: u64, height: u64, depth: u64| {
        let mut p = *c;
        for side in [&mut p.src, &mut p.dst] {
            side.y += dy;
            side.z += dz;
        }
        p.height = height;
        p.depth = depth;
        p
    };
    let mut out = Vec::new();
    if slice <= ROWS_PER_REQUEST {
        let per = (ROWS_PER_REQUEST / slice.max(1)) as u64;
        let mut z = 0;
        while z < c.depth {
            let k = per.min(c.depth - z);
            out.push(shifted(0, z, c.height, k));
            z += k;
        }
    } else {
        // A slice past the limit has rows of at least one byte.
        let per = (ROWS_PER_REQUEST / row) as u64;
        for z in 0..c.depth {
            let mut y = 0;
            while y < c.height {
                let k = per.min(c.height - y);
                out.push(shifted(y, z, k, 1));
                y += k;
            }
        }
    }
    Some(out)
}

fn copy_3d(c: Copy3d, src: CallerSide, dst: CallerSide, stream: Option<CUstream>) -> u32 {
    let Some(packed) = c.packed_len() else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    if packed <= ROWS_PER_REQUEST {
        return copy_3d_request(c, src, dst, stream, packed);
    }
    let Some(pieces) = pieces(&c) else {
        return CUDA_ERROR_NOT_SUPPORTED;
    };
    for p in pieces {
        let with_side = |mut s: CallerSide, of: Side| {
            s.side = of;
            s
        };
        let rc = copy_3d_request(
            p,
            with_side(src, p.src),
            with_side(dst, p.dst),
            stream,
            p.packed_len().unwrap_or(0),
        );
        if rc != CUDA_SUCCESS {
            return rc;
        }
    }
    CUDA_SUCCESS
}

/// One 2D / 3D copy request of `packed` bytes of host rows at most [`ROWS_PER_REQUEST`].
fn copy_3d_request(
    c: Copy3d,
    src: CallerSide,
    dst: CallerSide,
    stream: Option<CUstream>,
    packed: usize,
) -> u32 {
    let mut wire = c;
    let dense = |s: &Side| {
        if s.kind == copy3d::HOST {
            Side {
                kind: copy3d::HOST,
                ..Side::default()
            }
        } else {
            *s
        }
    };
    wire.src = dense(&src.side);
    wire.dst = dense(&dst.side);
    let mut s = crate::conn::state();
    let start = match s.begin(custom::COPY_3D, true, crate::context::current()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    wire.put(&mut s.batch);
    s.batch.put_opt(stream.map(|s| s as usize as u64).as_ref());
    if src.side.kind == copy3d::HOST {
        if src.host.is_null() {
            s.batch.buf.truncate(start);
            return CUDA_ERROR_INVALID_VALUE;
        }
        let mut data = vec![0u8; packed];
        rows(&c, &src, |off, p| {
            // SAFETY: a row of the caller's host memory, as described by its copy parameters.
            unsafe {
                std::ptr::copy_nonoverlapping(p, data.as_mut_ptr().add(off), c.width as usize)
            }
        });
        s.batch.put_bytes(&data);
    }
    let to_host = dst.side.kind == copy3d::HOST;
    if to_host && dst.host.is_null() {
        s.batch.buf.truncate(start);
        return CUDA_ERROR_INVALID_VALUE;
    }
    s.finish_sync(start, |r| {
        if to_host {
            let data = r.get_bytes("data")?;
            if data.len() == packed {
                rows(&c, &dst, |off, p| {
                    // SAFETY: a row of the caller's host memory.
                    unsafe {
                        std::ptr::copy_nonoverlapping(data.as_ptr().add(off), p, c.width as usize)
                    }
                });
            }
        }
        Ok(())
    })
}

impl Raw2d {
    /// The same copy as a 3D descriptor of depth 1 (as the driver reads a 2D one).
    fn as_3d(&self) -> Raw3d {
        Raw3d {
            src_x: self.src_x,
            src_y: self.src_y,
            src_z: 0,
            src_lod: 0,
            src_type: self.src_type,
            src_host: self.src_host,
            src_device: self.src_device,
            src_array: self.src_array,
            _reserved0: 0,
            src_pitch: self.src_pitch,
            src_height: 0,
            dst_x: self.dst_x,
            dst_y: self.dst_y,
            dst_z: 0,
            dst_lod: 0,
            dst_type: self.dst_type,
            dst_host: self.dst_host,
            dst_device: self.dst_device,
            dst_array: self.dst_array,
            _reserved1: 0,
            dst_pitch: self.dst_pitch,
            dst_height: 0,
            width: self.width,
            height: self.height,
            depth: 1,
        }
    }
}

fn run_2d(p: *const CUDA_MEMCPY2D, stream: Option<CUstream>) -> u32 {
    // SAFETY: null or the caller's descriptor, read with the same layout.
    match unsafe { (p as *const Raw2d).as_ref() } {
        Some(r) => run(&r.as_3d(), 0, stream),
        None => CUDA_ERROR_INVALID_VALUE,
    }
}

fn run_3d(p: *const CUDA_MEMCPY3D, stream: Option<CUstream>) -> u32 {
    // SAFETY: null or the caller's descriptor, read with the same layout.
    match unsafe { (p as *const Raw3d).as_ref() } {
        Some(r) => run(r, 1, stream),
        None => CUDA_ERROR_INVALID_VALUE,
    }
}

/// Both sides of the copy `r` describes (`None`: a memory type no copy has).
fn sides(r: &Raw3d) -> Option<(CallerSide, CallerSide)> {
    Some((
        side(
            r.src_type,
            r.src_host as *mut u8,
            r.src_device,
            r.src_array,
            (r.src_x, r.src_y, r.src_z),
            r.src_pitch,
            r.src_height,
        )?,
        side(
            r.dst_type,
            r.dst_host,
            r.dst_device,
            r.dst_array,
            (r.dst_x, r.dst_y, r.dst_z),
            r.dst_pitch,
            r.dst_height,
        )?,
    ))
}

/// The copy `r` describes, of `depth` at least 1.
fn copy_of(r: &Raw3d, src: Side, dst: Side, three_d: u64) -> Copy3d {
    Copy3d {
        src,
        dst,
        width: r.width as u64,
        height: r.height as u64,
        depth: r.depth.max(1) as u64,
        three_d,
    }
}

/// The copy a 3D descriptor describes as a copy node of `graph`, which the server runs when
/// the graph runs, out of reach of the client's memory: a host side becomes a staging buffer
/// of `graph` ([`crate::graph_host`]); a copy from host memory to host memory answers
/// `CUDA_ERROR_NOT_SUPPORTED`.
pub fn node_copy(p: *const CUDA_MEMCPY3D, graph: CUgraph) -> Result<Copy3d, u32> {
    // SAFETY: null or the caller's descriptor, read with the same layout.
    let r = unsafe { (p as *const Raw3d).as_ref() }.ok_or(CUDA_ERROR_INVALID_VALUE)?;
    let (src, dst) = sides(r).ok_or(CUDA_ERROR_INVALID_VALUE)?;
    let c = copy_of(r, src.side, dst.side, 1);
    match host_side(&src, &dst) {
        HostSide::None => Ok(c),
        HostSide::Both => Err(CUDA_ERROR_NOT_SUPPORTED),
        HostSide::One(host, to_device) => staged(c, host, to_device, graph as usize as u64),
    }
}

/// Which side of a copy is host memory.
enum HostSide<'a> {
    /// Neither.
    None,
    /// Both.
    Both,
    /// This one; whether it is the source (the copy goes to the device).
    One(&'a CallerSide, bool),
}

fn host_side<'a>(src: &'a CallerSide, dst: &'a CallerSide) -> HostSide<'a> {
    match (src.side.kind == copy3d::HOST, dst.side.kind == copy3d::HOST) {
        (false, false) => HostSide::None,
        (true, true) => HostSide::Both,
        (true, false) => HostSide::One(src, true),
        (false, true) => HostSide::One(dst, false),
    }
}

/// `c` with its host side `host` (the source when `to_device`) replaced by a staging buffer
/// of `graph`, which each launch of the graph fills from that host memory first or copies to
/// it once the graph has run.
fn staged(mut c: Copy3d, host: &CallerSide, to_device: bool, graph: u64) -> Result<Copy3d, u32> {
    let packed = c.packed_len().ok_or(CUDA_ERROR_INVALID_VALUE)?;
    if host.host.is_null() || packed == 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // The staging buffer holds the copied rows packed.
    let mut staged_side = Side {
        kind: copy3d::DEVICE,
        pitch: c.width,
        height: c.height,
        ..Side::default()
    };
    let (at, shape) = if c.height == 1 && c.depth == 1 {
        let mut row = std::ptr::null_mut();
        rows(&c, host, |_, p| row = p);
        (row as usize, Shape::Linear(packed))
    } else {
        // Each launch copies between the host side as given and the staging buffer.
        pieces(&c).ok_or(CUDA_ERROR_NOT_SUPPORTED)?;
        let mut launch = c;
        if to_device {
            launch.dst = staged_side;
        } else {
            launch.src = staged_side;
        }
        (host.host as usize, Shape::Rows(launch))
    };
    staged_side.ptr = crate::graph_host::stage(graph, at, shape, to_device)?;
    if to_device {
        c.src = staged_side;
    } else {
        c.dst = staged_side;
    }
    Ok(c)
}

/// A launch's copy of rows between host memory at `host` and a staging buffer (`c`, whose
/// staging side's address is `staging`), on `stream`.
pub(crate) fn staged_rows(
    mut c: Copy3d,
    host: usize,
    staging: u64,
    to_device: bool,
    stream: Option<CUstream>,
) -> u32 {
    let host = host as *mut u8;
    let null = std::ptr::null_mut();
    let (src, dst) = if to_device {
        c.dst.ptr = staging;
        (
            CallerSide { side: c.src, host },
            CallerSide {
                side: c.dst,
                host: null,
            },
        )
    } else {
        c.src.ptr = staging;
        (
            CallerSide {
                side: c.src,
                host: null,
            },
            CallerSide { side: c.dst, host },
        )
    };
    copy_3d(c, src, dst, stream)
}

/// Runs the copy `r` describes (`three_d`: whether the caller gave a 3D descriptor).
fn run(r: &Raw3d, three_d: u64, stream: Option<CUstream>) -> u32 {
    let Some((src, dst)) = sides(r) else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    let c = copy_of(r, src.side, dst.side, three_d);
    match (
        host_side(&src, &dst),
        stream.filter(|&s| crate::stream::captured(s)),
    ) {
        (HostSide::Both, Some(_)) => CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED,
        // Captured: a copy with a staging buffer of the capture's graph.
        (HostSide::One(host, to_device), Some(s)) => {
            let staged =
                crate::stream::capture_graph(s).and_then(|g| staged(c, host, to_device, g));
            match staged {
                Ok(c) => {
                    let side = |side| CallerSide {
                        side,
                        host: std::ptr::null_mut(),
                    };
                    copy_3d(c, side(c.src), side(c.dst), Some(s))
                }
                Err(e) => e,
            }
        }
        _ => copy_3d(c, src, dst, stream),
    }
}

/// `cuMemcpy2D_v2` (and `Unaligned`).
pub unsafe fn memcpy_2d(p: *const CUDA_MEMCPY2D) -> u32 {
    run_2d(p, None)
}

/// `cuMemcpy2DAsync_v2`.
pub unsafe fn memcpy_2d_async(p: *const CUDA_MEMCPY2D, s: CUstream) -> u32 {
    run_2d(p, Some(s))
}

/// `cuMemcpy3D_v2`.
pub unsafe fn memcpy_3d(p: *const CUDA_MEMCPY3D) -> u32 {
    run_3d(p, None)
}

/// `cuMemcpy3DAsync_v2`.
pub unsafe fn memcpy_3d_async(p: *const CUDA_MEMCPY3D, s: CUstream) -> u32 {
    run_3d(p, Some(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(width: u64, height: u64, depth: u64) -> Copy3d {
        let side = Side {
            kind: copy3d::DEVICE,
            y: 1,
            z: 2,
            pitch: width,
            height,
            ..Side::default()
        };
        Copy3d {
            src: side,
            dst: Side {
                kind: copy3d::HOST,
                ..side
            },
            width,
            height,
            depth,
            three_d: 1,
        }
    }

    #[test]
    fn large_copies_split_into_slices_or_rows_that_fit_a_request() {
        const MIB: u64 = 1 << 20;
        // Slices of 20 MiB: one per request, each side's slice shifted.
        let p = pieces(&copy(MIB, 20, 5)).unwrap();
        assert_eq!(p.len(), 5);
        assert!(p.iter().all(|p| p.depth == 1 && p.height == 20));
        assert_eq!(
            p.iter().map(|p| p.src.z).collect::<Vec<_>>(),
            [2, 3, 4, 5, 6]
        );
        assert_eq!(p[4].dst.z, 6);
        // One slice of 80 MiB: 8 rows of 4 MiB per request.
        let p = pieces(&copy(4 * MIB, 20, 1)).unwrap();
        let rows: Vec<_> = p.iter().map(|p| (p.src.y, p.height, p.dst.y)).collect();
        assert_eq!(rows, [(1, 8, 1), (9, 8, 9), (17, 4, 17)]);
        assert!(p
            .iter()
            .all(|p| p.packed_len().unwrap() <= ROWS_PER_REQUEST));
        // Pitch and rows per slice are kept.
        assert!(p
            .iter()
            .all(|p| p.src.pitch == 4 * MIB && p.src.height == 20));
        // Two slices of 40 MiB: rows of each slice in turn.
        let p = pieces(&copy(4 * MIB, 10, 2)).unwrap();
        let at: Vec<_> = p.iter().map(|p| (p.src.z, p.src.y, p.height)).collect();
        assert_eq!(at, [(2, 1, 8), (2, 9, 2), (3, 1, 8), (3, 9, 2)]);
        // Small slices go several to a request; one row larger than a request cannot go.
        assert_eq!(pieces(&copy(MIB, 4, 20)).unwrap().len(), 3);
        assert_eq!(pieces(&copy(33 * MIB, 1, 1)), None);
    }
}
