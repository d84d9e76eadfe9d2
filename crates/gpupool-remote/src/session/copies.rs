//! A session's memsets and 3-D copies: every device range checked to be the session's.

use super::Session;
use crate::calls::Class;
use crate::copy3d::{self, Copy3d};
use crate::protocol::*;
use crate::wire::{DecodeError, Reader, Writer};
use gpupool_cuda::cu::*;
use gpupool_cuda::result::*;
use std::ffi::c_void;

impl Session {
    /// Any `cuMemsetD*`: 1-, 2- or 4-byte elements, in rows or not, on a stream or not.
    pub(super) fn memset(&mut self, r: &mut Reader<'_>) -> Result<u32, DecodeError> {
        let dst: u64 = r.get("destination")?;
        let elem: u8 = r.get("element size")?;
        let value: u32 = r.get("value")?;
        let width: u64 = r.get("width")?;
        let height: u64 = r.get("height")?;
        let pitch: u64 = r.get("pitch")?;
        let s = match self.stream(r)? {
            Ok(s) => s,
            Err(e) => return Ok(e),
        };
        r.end()?;
        if !matches!(elem, 1 | 2 | 4) {
            return Ok(CUDA_ERROR_INVALID_VALUE);
        }
        let row = width.checked_mul(elem as u64);
        let extent = if height <= 1 {
            row
        } else {
            row.and_then(|row| {
                (pitch >= row)
                    .then(|| pitch.checked_mul(height - 1)?.checked_add(row))
                    .flatten()
            })
        };
        match extent {
            Some(len) if len == 0 || self.owns(dst, len) => {}
            _ => return Ok(CUDA_ERROR_INVALID_VALUE),
        }
        let (w, h, p) = (width as usize, height as usize, pitch as usize);
        let e = &self.extra;
        macro_rules! call {
            ($f:ident, $($a:expr),*) => {
                match e.$f {
                    // SAFETY: the range was checked to lie in one of this session's allocations.
                    Some(f) => unsafe { f($($a),*) },
                    None => CUDA_ERROR_NOT_FOUND,
                }
            };
        }
        Ok(match (elem, height > 1, s) {
            (1, false, None) => call!(cuMemsetD8_v2, dst, value as u8, w),
            (2, false, None) => call!(cuMemsetD16_v2, dst, value as u16, w),
            (_, false, None) => call!(cuMemsetD32_v2, dst, value, w),
            (1, false, Some(s)) => call!(cuMemsetD8Async, dst, value as u8, w, s),
            (2, false, Some(s)) => call!(cuMemsetD16Async, dst, value as u16, w, s),
            (_, false, Some(s)) => call!(cuMemsetD32Async, dst, value, w, s),
            (1, true, None) => call!(cuMemsetD2D8_v2, dst, p, value as u8, w, h),
            (2, true, None) => call!(cuMemsetD2D16_v2, dst, p, value as u16, w, h),
            (_, true, None) => call!(cuMemsetD2D32_v2, dst, p, value, w, h),
            (1, true, Some(s)) => call!(cuMemsetD2D8Async, dst, p, value as u8, w, h, s),
            (2, true, Some(s)) => call!(cuMemsetD2D16Async, dst, p, value as u16, w, h, s),
            (_, true, Some(s)) => call!(cuMemsetD2D32Async, dst, p, value, w, h, s),
        })
    }

    /// A 3-D (or 2-D) copy between the session's device memory, arrays and the client's
    /// host bytes (sent with the request, or returned in the reply).
    pub(super) fn copy_3d(
        &mut self,
        r: &mut Reader<'_>,
        outs: &mut Writer,
    ) -> Result<u32, DecodeError> {
        let c = Copy3d::get(r)?;
        let s = match self.stream(r)? {
            Ok(s) => s,
            Err(e) => return Ok(e),
        };
        let Some(packed) = c.packed_len() else {
            return Ok(CUDA_ERROR_INVALID_VALUE);
        };
        let src_data = if c.src.kind == copy3d::HOST {
            let d = r.get_bytes("source data")?;
            if d.len() != packed {
                return Err(DecodeError {
                    what: "source data length",
                    at: 0,
                });
            }
            Some(d)
        } else {
            None
        };
        r.end()?;
        if packed > CHUNK * 4 {
            return Ok(CUDA_ERROR_INVALID_VALUE);
        }
        if !self.sides_owned(&c) {
            return Ok(CUDA_ERROR_INVALID_VALUE);
        }
        if c.src.kind == copy3d::HOST || c.dst.kind == copy3d::HOST {
            if let Some(refused) = self.refuse_captured_host_copy(s) {
                return Ok(refused);
            }
        }
        let mut dst_buf = if c.dst.kind == copy3d::HOST {
            vec![0u8; packed]
        } else {
            Vec::new()
        };
        let src_host = src_data.map_or(std::ptr::null(), |d| d.as_ptr() as *const c_void);
        let dst_host = if dst_buf.is_empty() {
            std::ptr::null_mut()
        } else {
            dst_buf.as_mut_ptr() as *mut c_void
        };
        let e = &self.extra;
        // SAFETY (both branches): host sides point into buffers of `packed` bytes laid out
        // densely; device sides and arrays were checked to be this session's.
        let mut rc = if c.three_d != 0 {
            let p = memcpy_3d_params(&c, src_host, dst_host);
            match (s, e.cuMemcpy3D_v2, e.cuMemcpy3DAsync_v2) {
                (None, Some(f), _) => unsafe { f(&p) },
                (Some(s), _, Some(f)) => unsafe { f(&p, s) },
                _ => CUDA_ERROR_NOT_FOUND,
            }
        } else {
            let p = memcpy_2d_params(&c, src_host, dst_host);
            match (s, e.cuMemcpy2D_v2, e.cuMemcpy2DAsync_v2) {
                (None, Some(f), _) => unsafe { f(&p) },
                (Some(s), _, Some(f)) => unsafe { f(&p, s) },
                _ => CUDA_ERROR_NOT_FOUND,
            }
        };
        if rc == CUDA_SUCCESS && !dst_buf.is_empty() {
            if let (Some(s), Some(sync)) = (s, e.cuStreamSynchronize) {
                // SAFETY: a stream checked above.
                rc = unsafe { sync(s) };
            }
            outs.put_bytes(&dst_buf);
        }
        Ok(rc)
    }

    /// Whether each device side of `c` lies in the session's memory and each array side is
    /// one of its arrays.
    pub(super) fn sides_owned(&self, c: &Copy3d) -> bool {
        [&c.src, &c.dst].into_iter().all(|side| match side.kind {
            copy3d::DEVICE => match c.extent(side) {
                Some((start, end)) => {
                    end == start
                        || side
                            .ptr
                            .checked_add(start)
                            .is_some_and(|p| self.owns(p, end - start))
                }
                None => false,
            },
            copy3d::ARRAY => side.ptr != 0 && self.valid(Class::Array, side.ptr),
            _ => true,
        })
    }
}

/// Memory types of `CUDA_MEMCPY3D`.
fn memory_type(kind: u64) -> CUmemorytype {
    match kind {
        copy3d::HOST => CUmemorytype::CU_MEMORYTYPE_HOST,
        copy3d::ARRAY => CUmemorytype::CU_MEMORYTYPE_ARRAY,
        _ => CUmemorytype::CU_MEMORYTYPE_DEVICE,
    }
}

/// Where one side of `c` starts and how it is laid out: (x in bytes, y, z, pitch, height);
/// a host side is the densely packed buffer of the message.
fn layout(c: &Copy3d, side: &copy3d::Side) -> (usize, usize, usize, usize, usize) {
    if side.kind == copy3d::HOST {
        (0, 0, 0, c.width as usize, c.height as usize)
    } else {
        (
            side.x as usize,
            side.y as usize,
            side.z as usize,
            side.pitch as usize,
            side.height as usize,
        )
    }
}

/// The device address of a device side (0 otherwise).
fn device_of(side: &copy3d::Side) -> u64 {
    if side.kind == copy3d::DEVICE {
        side.ptr
    } else {
        0
    }
}

/// The array of an array side (null otherwise).
fn array_of(side: &copy3d::Side) -> CUarray {
    if side.kind == copy3d::ARRAY {
        side.ptr as usize as CUarray
    } else {
        std::ptr::null_mut()
    }
}

/// The driver's 3-D descriptor of `c`, host sides at `src_host` / `dst_host`.
pub(super) fn memcpy_3d_params(
    c: &Copy3d,
    src_host: *const c_void,
    dst_host: *mut c_void,
) -> CUDA_MEMCPY3D {
    let (sx, sy, sz, sp, sh) = layout(c, &c.src);
    let (dx, dy, dz, dp, dh) = layout(c, &c.dst);
    CUDA_MEMCPY3D {
        srcXInBytes: sx,
        srcY: sy,
        srcZ: sz,
        srcLOD: 0,
        srcMemoryType: memory_type(c.src.kind),
        srcHost: src_host,
        srcDevice: device_of(&c.src),
        srcArray: array_of(&c.src),
        reserved0: std::ptr::null_mut(),
        srcPitch: sp,
        srcHeight: sh,
        dstXInBytes: dx,
        dstY: dy,
        dstZ: dz,
        dstLOD: 0,
        dstMemoryType: memory_type(c.dst.kind),
        dstHost: dst_host,
        dstDevice: device_of(&c.dst),
        dstArray: array_of(&c.dst),
        reserved1: std::ptr::null_mut(),
        dstPitch: dp,
        dstHeight: dh,
        WidthInBytes: c.width as usize,
        Height: c.height as usize,
        Depth: c.depth as usize,
    }
}

/// The driver's 2-D descriptor of `c`, host sides at `src_host` / `dst_host`.
fn memcpy_2d_params(c: &Copy3d, src_host: *const c_void, dst_host: *mut c_void) -> CUDA_MEMCPY2D {
    let (sx, sy, _, sp, _) = layout(c, &c.src);
    let (dx, dy, _, dp, _) = layout(c, &c.dst);
    CUDA_MEMCPY2D {
        srcXInBytes: sx,
        srcY: sy,
        srcMemoryType: memory_type(c.src.kind),
        srcHost: src_host,
        srcDevice: device_of(&c.src),
        srcArray: array_of(&c.src),
        srcPitch: sp,
        dstXInBytes: dx,
        dstY: dy,
        dstMemoryType: memory_type(c.dst.kind),
        dstHost: dst_host,
        dstDevice: device_of(&c.dst),
        dstArray: array_of(&c.dst),
        dstPitch: dp,
        WidthInBytes: c.width as usize,
        Height: c.height as usize,
    }
}
