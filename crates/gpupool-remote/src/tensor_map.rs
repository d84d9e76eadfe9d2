//! Tensor-memory-access descriptors on the wire ([`TENSOR_MAP`](crate::calls::custom::TENSOR_MAP)): the client sends an
//! encode's arguments (one fixed-size [`TensorMapRequest`]) or a descriptor with a new global
//! address; the server's driver writes the 128 opaque bytes, which travel back. The global
//! address must lie in the tenant's memory.

use crate::driver_extra::Extra;
use crate::wire::{DecodeError, Pod, Reader, Writer};
use gpupool_cuda::result::*;
use gpupool_cuda::tensor_map::{RawTensorMap, TensorMapKind, TensorMapRequest, MAX_RANK};
use std::ffi::c_void;

// SAFETY: integers and integer arrays only, without padding.
unsafe impl Pod for TensorMapRequest {}

/// [`TENSOR_MAP`](crate::calls::custom::TENSOR_MAP) operation: encode.
const ENCODE: u8 = 0;
/// [`TENSOR_MAP`](crate::calls::custom::TENSOR_MAP) operation: replace the global address.
const REPLACE_ADDRESS: u8 = 1;

/// A descriptor where the driver wants it: 64-byte aligned.
#[repr(C, align(64))]
struct Aligned(RawTensorMap);

/// Writes an encode request.
pub fn write_encode(w: &mut Writer, request: &TensorMapRequest) {
    w.put(&ENCODE);
    w.put(request);
}

/// Writes an address replacement.
pub fn write_replace_address(w: &mut Writer, map: &RawTensorMap, address: u64) {
    w.put(&REPLACE_ADDRESS);
    w.put(map);
    w.put(&address);
}

/// Reads the descriptor of a reply.
pub fn read_reply(r: &mut Reader<'_>) -> Result<RawTensorMap, DecodeError> {
    r.get("tensor map")
}

/// Carries out one [`TENSOR_MAP`](crate::calls::custom::TENSOR_MAP) request with `extra`'s driver functions, `owns`
/// telling whether an address is the tenant's.
pub fn serve(
    r: &mut Reader<'_>,
    outs: &mut Writer,
    extra: &Extra,
    owns: impl Fn(u64) -> bool,
) -> Result<u32, DecodeError> {
    let op: u8 = r.get("tensor map operation")?;
    let mut map = Aligned([0; 16]);
    let rc = match op {
        ENCODE => {
            let q: TensorMapRequest = r.get("tensor map request")?;
            r.end()?;
            // The driver reads `rank` values from the fixed arrays: never past them.
            let (Some(kind), true) = (q.kind(), (1..=MAX_RANK as u32).contains(&q.rank)) else {
                return Ok(CUDA_ERROR_INVALID_VALUE);
            };
            if !owns(q.address) {
                return Ok(CUDA_ERROR_INVALID_VALUE);
            }
            // SAFETY: every array holds MAX_RANK values, more than the rank asks for; the
            // descriptor is 128 aligned bytes.
            unsafe { encode(extra, kind, &q, &mut map.0) }
        }
        REPLACE_ADDRESS => {
            let (old, address): (RawTensorMap, u64) =
                (r.get("tensor map")?, r.get("global address")?);
            r.end()?;
            if !owns(address) {
                return Ok(CUDA_ERROR_INVALID_VALUE);
            }
            map.0 = old;
            match extra.cuTensorMapReplaceAddress {
                // SAFETY: 128 aligned bytes.
                Some(f) => unsafe { f(&mut map.0, address as *mut c_void) },
                None => CUDA_ERROR_NOT_FOUND,
            }
        }
        _ => {
            return Err(DecodeError {
                what: "tensor map operation",
                at: 0,
            })
        }
    };
    if rc == CUDA_SUCCESS {
        outs.put(&map.0);
    }
    Ok(rc)
}

/// Calls the driver's encode of `kind` with `q`'s arguments.
///
/// # Safety
/// `q.rank` is at most [`MAX_RANK`]; `map` is 64-byte aligned.
unsafe fn encode(
    extra: &Extra,
    kind: TensorMapKind,
    q: &TensorMapRequest,
    map: &mut RawTensorMap,
) -> u32 {
    let address = q.address as *mut c_void;
    let (dims, strides, elements) = (
        q.dims.as_ptr(),
        q.strides.as_ptr(),
        q.element_strides.as_ptr(),
    );
    // SAFETY (each call): the caller's contract; arrays live across the call.
    match kind {
        TensorMapKind::Tiled => match extra.cuTensorMapEncodeTiled {
            Some(f) => unsafe {
                f(
                    map,
                    q.data_type,
                    q.rank,
                    address,
                    dims,
                    strides,
                    q.box_dims.as_ptr(),
                    elements,
                    q.interleave,
                    q.swizzle,
                    q.l2_promotion,
                    q.oob_fill,
                )
            },
            None => CUDA_ERROR_NOT_FOUND,
        },
        TensorMapKind::Im2col => match extra.cuTensorMapEncodeIm2col {
            Some(f) => unsafe {
                f(
                    map,
                    q.data_type,
                    q.rank,
                    address,
                    dims,
                    strides,
                    q.lower.as_ptr(),
                    q.upper.as_ptr(),
                    q.channels,
                    q.pixels,
                    elements,
                    q.interleave,
                    q.swizzle,
                    q.l2_promotion,
                    q.oob_fill,
                )
            },
            None => CUDA_ERROR_NOT_FOUND,
        },
        TensorMapKind::Im2colWide => match extra.cuTensorMapEncodeIm2colWide {
            Some(f) => unsafe {
                f(
                    map,
                    q.data_type,
                    q.rank,
                    address,
                    dims,
                    strides,
                    q.lower[0],
                    q.upper[0],
                    q.channels,
                    q.pixels,
                    elements,
                    q.interleave,
                    q.wide_mode,
                    q.swizzle,
                    q.l2_promotion,
                    q.oob_fill,
                )
            },
            None => CUDA_ERROR_NOT_FOUND,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

    /// Calls of the fake encode, and the rank of the last.
    static CALLS: AtomicU32 = AtomicU32::new(0);
    static RANK: AtomicU32 = AtomicU32::new(0);

    /// A driver's tiled encode that writes the address and the rank's last dimension.
    #[allow(clippy::too_many_arguments)]
    unsafe extern "C" fn fake_tiled(
        map: *mut RawTensorMap,
        _data_type: u32,
        rank: u32,
        address: *mut c_void,
        dims: *const u64,
        _strides: *const u64,
        _box_dims: *const u32,
        _element_strides: *const u32,
        _interleave: u32,
        _swizzle: u32,
        _l2: u32,
        _oob: u32,
    ) -> u32 {
        CALLS.fetch_add(1, SeqCst);
        RANK.store(rank, SeqCst);
        assert_eq!(map as usize % 64, 0, "the descriptor is 64-byte aligned");
        // SAFETY: the server passes MAX_RANK dimensions and an aligned descriptor.
        unsafe {
            (*map)[0] = address as u64;
            (*map)[1] = *dims.add(rank as usize - 1);
        }
        CUDA_SUCCESS
    }

    fn extra() -> Extra {
        Extra::resolve(&|name: &CStr| match name.to_bytes() {
            b"cuTensorMapEncodeTiled" => fake_tiled as *mut c_void,
            _ => std::ptr::null_mut(),
        })
    }

    fn ask(request: &[u8], owned: u64) -> (Result<u32, DecodeError>, Vec<u8>) {
        let mut outs = Writer::default();
        let rc = serve(&mut Reader::new(request), &mut outs, &extra(), |a| {
            (owned..owned + 4096).contains(&a)
        });
        (rc, outs.buf)
    }

    fn encode(rank: u32, address: u64) -> Vec<u8> {
        let mut w = Writer::default();
        let q = TensorMapRequest {
            rank,
            address,
            dims: [10, 20, 30, 40, 50],
            ..TensorMapRequest::default()
        };
        write_encode(&mut w, &q);
        w.buf
    }

    #[test]
    fn an_encode_reaches_the_driver_only_with_the_tenant_s_address_and_a_valid_rank() {
        let before = CALLS.load(SeqCst);
        let (rc, reply) = ask(&encode(3, 0x10_0000), 0x10_0000);
        assert_eq!(rc, Ok(CUDA_SUCCESS));
        let map = read_reply(&mut Reader::new(&reply)).unwrap();
        assert_eq!((map[0], map[1]), (0x10_0000, 30));
        assert_eq!(RANK.load(SeqCst), 3);
        for (rank, address) in [(3, 0x20_0000), (6, 0x10_0000), (0, 0x10_0000)] {
            let (rc, reply) = ask(&encode(rank, address), 0x10_0000);
            assert_eq!(
                rc,
                Ok(CUDA_ERROR_INVALID_VALUE),
                "rank {rank} at {address:#x}"
            );
            assert!(reply.is_empty());
        }
        assert_eq!(
            CALLS.load(SeqCst),
            before + 1,
            "refused requests never reach it"
        );
    }

    #[test]
    fn malformed_requests_are_refused_and_missing_functions_reported() {
        let mut unknown_op = vec![9u8];
        unknown_op.extend_from_slice(&[0; 184]);
        assert!(ask(&unknown_op, 0).0.is_err());
        let short = encode(3, 0x10_0000);
        assert!(ask(&short[..100], 0x10_0000).0.is_err(), "truncated");
        let mut replace = Writer::default();
        write_replace_address(&mut replace, &[0; 16], 0x10_0000);
        assert_eq!(
            ask(&replace.buf, 0x10_0000).0,
            Ok(CUDA_ERROR_NOT_FOUND),
            "a driver without the function"
        );
        let mut kind = TensorMapRequest {
            rank: 3,
            address: 0x10_0000,
            kind: 7,
            ..TensorMapRequest::default()
        };
        let mut w = Writer::default();
        write_encode(&mut w, &kind);
        assert_eq!(ask(&w.buf, 0x10_0000).0, Ok(CUDA_ERROR_INVALID_VALUE));
        kind.kind = TensorMapKind::Im2col as u32;
        let mut w = Writer::default();
        write_encode(&mut w, &kind);
        assert_eq!(ask(&w.buf, 0x10_0000).0, Ok(CUDA_ERROR_NOT_FOUND));
    }
}
