//! Queries answered with sized values: pointer attributes (host memory answered here), pool
//! attributes, device name and PCI bus id; device attributes the client answers itself.

use crate::conn::state;
use crate::memory_map::{self, Kind};
use gpupool_cuda::cu::*;
use gpupool_cuda::result::*;
use gpupool_remote::calls::{custom, pointer_attribute_size, pool_attribute_size};
use std::ffi::{c_char, c_void};

unsafe fn put_sized(out: *mut c_void, bytes: &[u8], size: usize) {
    // SAFETY: the caller sized `out` for the attribute, `size` bytes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), out as *mut u8, size.min(bytes.len())) };
}

/// Host memory this library knows: answered without the server.
fn host_attribute(attr: i32, ptr: u64, base: u64, size: u64) -> [u8; 16] {
    let v: u64 = match attr {
        1 => crate::context::current(),
        2 => 1, // CU_MEMORYTYPE_HOST
        3 | 4 => ptr,
        6 | 13 => 1,
        7 | 11 | 19 => base,
        12 | 18 => size,
        _ => 0,
    };
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&v.to_le_bytes());
    b
}

/// Memory no one knows: zeroed, device ordinal -2, as the driver answers for unregistered memory.
fn unknown_attribute(attr: i32) -> [u8; 16] {
    let mut b = [0u8; 16];
    if attr == 9 {
        b[..4].copy_from_slice(&(-2i32).to_le_bytes());
    }
    b
}

/// `cuPointerGetAttributes`.
pub unsafe fn pointer_get_attributes(
    n: u32,
    attrs: *mut i32,
    data: *mut *mut c_void,
    ptr: CUdeviceptr,
) -> u32 {
    if let Err(e) = state().ready() {
        return e;
    }
    if attrs.is_null() || data.is_null() || n > 64 {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: the caller's arrays of n entries.
    let list: Vec<i32> = (0..n as usize).map(|i| unsafe { *attrs.add(i) }).collect();
    let mut sizes = Vec::with_capacity(list.len());
    for &a in &list {
        match pointer_attribute_size(a) {
            Some(s) => sizes.push(s),
            None => return CUDA_ERROR_INVALID_VALUE,
        }
    }
    let values: Vec<[u8; 16]> = match memory_map::find(ptr) {
        Some((base, r)) if matches!(r.kind, Kind::Pinned | Kind::Registered) => list
            .iter()
            .map(|&a| host_attribute(a, ptr, base, r.size))
            .collect(),
        Some(_) => {
            let mut s = state();
            let start = match s.begin(custom::POINTER_ATTRIBUTES, true, crate::context::current()) {
                Ok(p) => p,
                Err(e) => return e,
            };
            s.batch.put(&ptr);
            s.batch.put(&n);
            for a in &list {
                s.batch.put(a);
            }
            let mut got = Vec::new();
            let rc = s.finish_sync(start, |r| {
                for _ in 0..n {
                    got.push(r.get::<[u8; 16]>("attribute value")?);
                }
                Ok(())
            });
            if rc != CUDA_SUCCESS {
                return rc;
            }
            got
        }
        None => list.iter().map(|&a| unknown_attribute(a)).collect(),
    };
    for (i, v) in values.iter().enumerate() {
        // SAFETY: the caller's array of n output pointers.
        let out = unsafe { *data.add(i) };
        if !out.is_null() {
            // SAFETY: sized for its attribute.
            unsafe { put_sized(out, v, sizes[i]) };
        }
    }
    CUDA_SUCCESS
}

/// `cuPointerGetAttribute`.
pub unsafe fn pointer_get_attribute(out: *mut c_void, attr: i32, ptr: CUdeviceptr) -> u32 {
    let mut a = attr;
    let mut o = out;
    // SAFETY: one attribute, one output.
    unsafe { pointer_get_attributes(1, &mut a, &mut o, ptr) }
}

fn pool_attribute(pool: CUmemoryPool, attr: u32, v: *mut c_void, set: bool) -> u32 {
    if v.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let size = pool_attribute_size(attr);
    let mut s = state();
    let call = if set {
        custom::POOL_SET_ATTRIBUTE
    } else {
        custom::POOL_GET_ATTRIBUTE
    };
    let start = match s.begin(call, true, crate::context::current()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    s.batch.put(&(pool as usize as u64));
    s.batch.put(&attr);
    if set {
        let mut b = [0u8; 8];
        // SAFETY: the caller's value of `size` bytes.
        unsafe { std::ptr::copy_nonoverlapping(v as *const u8, b.as_mut_ptr(), size) };
        s.batch.put(&b);
    }
    s.finish_sync(start, |r| {
        if !set {
            let b: [u8; 8] = r.get("value")?;
            // SAFETY: the caller's value of `size` bytes.
            unsafe { put_sized(v, &b, size) };
        }
        Ok(())
    })
}

/// `cuMemPoolGetAttribute`.
pub unsafe fn mem_pool_get_attribute(pool: CUmemoryPool, attr: u32, v: *mut c_void) -> u32 {
    pool_attribute(pool, attr, v, false)
}

/// `cuMemPoolSetAttribute`.
pub unsafe fn mem_pool_set_attribute(pool: CUmemoryPool, attr: u32, v: *mut c_void) -> u32 {
    pool_attribute(pool, attr, v, true)
}

fn device_string(call: u16, buf: *mut c_char, len: i32, dev: CUdevice) -> u32 {
    if buf.is_null() || len <= 0 {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let mut s = state();
    let start = match s.begin(call, true, crate::context::current()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    s.batch.put(&dev);
    // A device's name and bus id never change: asked once per device.
    s.finish_cached(start, |r| {
        let text = r.get_bytes("text")?;
        let n = text.len().min(len as usize - 1);
        // SAFETY: the caller's buffer of `len` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, n);
            *buf.add(n) = 0;
        }
        Ok(())
    })
}

/// `cuDeviceGetName`.
pub unsafe fn device_get_name(buf: *mut c_char, len: i32, dev: CUdevice) -> u32 {
    device_string(custom::DEVICE_NAME, buf, len, dev)
}

/// `cuDeviceGetPCIBusId`.
pub unsafe fn device_get_pci_bus_id(buf: *mut c_char, len: i32, dev: CUdevice) -> u32 {
    device_string(custom::DEVICE_PCI_BUS_ID, buf, len, dev)
}

/// Device attributes about what this library does rather than the server's GPU: stream memory
/// operations (`CAN_USE_STREAM_MEM_OPS`, `CAN_USE_64_BIT_STREAM_MEM_OPS`) are not forwarded,
/// and physical memory cannot be exported as a file descriptor or fabric handle
/// (`HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED`, `HANDLE_TYPE_FABRIC_SUPPORTED`): the
/// server's descriptors do not reach the client (interprocess handles do).
const CLIENT_SIDE_ATTRIBUTES: [(i32, i32); 4] = [(92, 0), (93, 0), (103, 0), (128, 0)];

/// After `cuDeviceGetAttribute`: the client's own answers replace the server's.
pub unsafe fn client_side_attribute(v: *mut i32, attrib: i32, _dev: CUdevice) {
    if let Some(&(_, own)) = CLIENT_SIDE_ATTRIBUTES.iter().find(|(a, _)| *a == attrib) {
        // SAFETY: the caller's out pointer, which the call just wrote.
        unsafe { crate::write(v, own) };
    }
}
