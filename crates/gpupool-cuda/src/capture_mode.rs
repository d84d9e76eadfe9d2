//! Stream-capture answers for the libraries that stand in for the driver: the calling thread's
//! capture mode (`cuThreadExchangeStreamCaptureMode`), kept per thread, and capture
//! information (`cuStreamGetCaptureInfo*`, [`capture_info_functions!`](crate::capture_info_functions))
//! from what such a library knows, a stream's capture status.

use crate::cu::CUgraphNode;
use crate::result::*;
use std::cell::Cell;
use std::ffi::c_void;

/// `CU_STREAM_CAPTURE_MODE_RELAXED`, the largest mode.
const LAST_CAPTURE_MODE: u32 = 2;

thread_local! {
    /// The calling thread's stream-capture mode (`CU_STREAM_CAPTURE_MODE_GLOBAL` at first).
    static CAPTURE_MODE: Cell<u32> = const { Cell::new(0) };
}

/// `cuThreadExchangeStreamCaptureMode`: the calling thread's mode is kept and exchanged; no
/// mode forbids anything in the libraries that use this (the simulator never captures, the
/// remote client's captures run on the server).
///
/// # Safety
/// `mode` is null or points at a readable and writable `CUstreamCaptureMode`.
pub unsafe fn thread_exchange_stream_capture_mode(mode: *mut u32) -> u32 {
    // SAFETY: null or the caller's mode.
    match unsafe { mode.as_mut() } {
        Some(m) if *m <= LAST_CAPTURE_MODE => {
            *m = CAPTURE_MODE.replace(*m);
            CUDA_SUCCESS
        }
        _ => CUDA_ERROR_INVALID_VALUE,
    }
}

/// `CU_STREAM_CAPTURE_STATUS_NONE`.
pub const NOT_CAPTURING: u32 = 0;

/// A stream's capture status from `query`, a `cuStreamIsCapturing` call writing it through
/// the pointer it is given.
pub fn capture_status(query: impl FnOnce(*mut u32) -> u32) -> Result<u32, u32> {
    let mut status = NOT_CAPTURING;
    match query(&mut status) {
        CUDA_SUCCESS => Ok(status),
        e => Err(e),
    }
}

/// Writes `v` through `p` unless it is null.
///
/// # Safety
/// `p` is null or valid for writing a `T`.
unsafe fn put<T>(p: *mut T, v: T) {
    if !p.is_null() {
        // SAFETY: non-null, valid per the caller.
        unsafe { p.write(v) };
    }
}

/// The `cuStreamGetCaptureInfo_v3` answers from a stream's capture status `now` (or the error
/// finding it): the status, and empty answers outside a capture. During a capture the id,
/// graph and dependencies are not known here: asking for them is `CUDA_ERROR_NOT_SUPPORTED`.
///
/// # Safety
/// Each pointer is null or valid for writing its answer.
pub unsafe fn capture_info(
    now: Result<u32, u32>,
    status: *mut u32,
    id: *mut u64,
    graph: *mut *mut c_void,
    deps: *mut *const CUgraphNode,
    edges: *mut *const c_void,
    n: *mut usize,
) -> u32 {
    if status.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let st = match now {
        Ok(st) => st,
        Err(e) => return e,
    };
    let details_asked =
        !id.is_null() || !graph.is_null() || !deps.is_null() || !edges.is_null() || !n.is_null();
    if st != NOT_CAPTURING && details_asked {
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    // SAFETY: the caller's out pointers, each null or valid.
    unsafe {
        put(status, st);
        put(id, 0);
        put(graph, std::ptr::null_mut());
        put(deps, std::ptr::null());
        put(edges, std::ptr::null());
        put(n, 0);
    }
    CUDA_SUCCESS
}

/// Defines `stream_get_capture_info`, `_v2` and `_v3` in the invoking module, answered by
/// [`capture_info`] from `STATUS_OF`, a `cuStreamIsCapturing`-like
/// `unsafe fn(CUstream, *mut u32) -> u32`.
#[macro_export]
macro_rules! capture_info_functions {
    ($status_of:path) => {
        /// `cuStreamGetCaptureInfo_v3`: see `gpupool_cuda::capture_mode::capture_info`.
        pub unsafe fn stream_get_capture_info_v3(
            s: $crate::cu::CUstream,
            status: *mut u32,
            id: *mut u64,
            graph: *mut *mut ::std::ffi::c_void,
            deps: *mut *const $crate::cu::CUgraphNode,
            edges: *mut *const ::std::ffi::c_void,
            n: *mut usize,
        ) -> u32 {
            // SAFETY: a valid out pointer; the stream is checked by the status function.
            let now = $crate::capture_mode::capture_status(|st| unsafe { $status_of(s, st) });
            // SAFETY: the caller's pointers.
            unsafe { $crate::capture_mode::capture_info(now, status, id, graph, deps, edges, n) }
        }

        /// `cuStreamGetCaptureInfo_v2`: the v3 answers without edges.
        pub unsafe fn stream_get_capture_info_v2(
            s: $crate::cu::CUstream,
            status: *mut u32,
            id: *mut u64,
            graph: *mut *mut ::std::ffi::c_void,
            deps: *mut *const $crate::cu::CUgraphNode,
            n: *mut usize,
        ) -> u32 {
            let no_edges = ::std::ptr::null_mut();
            // SAFETY: the caller's pointers.
            unsafe { stream_get_capture_info_v3(s, status, id, graph, deps, no_edges, n) }
        }

        /// `cuStreamGetCaptureInfo`: the status and the id.
        pub unsafe fn stream_get_capture_info(
            s: $crate::cu::CUstream,
            status: *mut u32,
            id: *mut u64,
        ) -> u32 {
            let none = ::std::ptr::null_mut();
            // SAFETY: the caller's pointers.
            unsafe {
                stream_get_capture_info_v3(
                    s,
                    status,
                    id,
                    none,
                    none.cast(),
                    none.cast(),
                    none.cast(),
                )
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_modes_are_exchanged_per_thread() {
        // SAFETY: valid or null mode pointers.
        unsafe {
            let mut mode = 1;
            assert_eq!(thread_exchange_stream_capture_mode(&mut mode), CUDA_SUCCESS);
            assert_eq!(mode, 0, "a thread starts in the global mode");
            mode = 2;
            assert_eq!(thread_exchange_stream_capture_mode(&mut mode), CUDA_SUCCESS);
            assert_eq!(mode, 1);
            let other = std::thread::spawn(|| {
                let mut m = 2;
                thread_exchange_stream_capture_mode(&mut m);
                m
            });
            assert_eq!(other.join().unwrap(), 0, "another thread has its own mode");
            mode = 7;
            assert_eq!(
                thread_exchange_stream_capture_mode(&mut mode),
                CUDA_ERROR_INVALID_VALUE
            );
            assert_eq!(
                thread_exchange_stream_capture_mode(std::ptr::null_mut()),
                CUDA_ERROR_INVALID_VALUE
            );
        }
    }

    #[test]
    fn capture_info_is_empty_outside_a_capture_and_partial_during_one() {
        let (mut st, mut id, mut n) = (9u32, 9u64, 9usize);
        let mut graph = std::ptr::dangling_mut::<c_void>();
        let none = std::ptr::null_mut::<u8>();
        // SAFETY: valid or null out pointers.
        unsafe {
            let rc = capture_info(
                Ok(NOT_CAPTURING),
                &mut st,
                &mut id,
                &mut graph,
                none.cast(),
                none.cast(),
                &mut n,
            );
            assert_eq!(rc, CUDA_SUCCESS);
            assert_eq!((st, id, n), (0, 0, 0));
            assert!(graph.is_null());
            // Capturing: the status alone is known, the rest is not carried.
            assert_eq!(
                capture_info(
                    Ok(1),
                    &mut st,
                    none.cast(),
                    none.cast(),
                    none.cast(),
                    none.cast(),
                    none.cast()
                ),
                CUDA_SUCCESS
            );
            assert_eq!(st, 1);
            assert_eq!(
                capture_info(
                    Ok(1),
                    &mut st,
                    &mut id,
                    none.cast(),
                    none.cast(),
                    none.cast(),
                    none.cast()
                ),
                CUDA_ERROR_NOT_SUPPORTED
            );
            assert_eq!(
                capture_info(
                    Err(400),
                    &mut st,
                    none.cast(),
                    none.cast(),
                    none.cast(),
                    none.cast(),
                    none.cast()
                ),
                400
            );
            assert_eq!(
                capture_info(
                    Ok(0),
                    none.cast(),
                    none.cast(),
                    none.cast(),
                    none.cast(),
                    none.cast(),
                    none.cast()
                ),
                CUDA_ERROR_INVALID_VALUE
            );
        }
        assert_eq!(
            capture_status(|p| unsafe {
                p.write(2);
                CUDA_SUCCESS
            }),
            Ok(2)
        );
    }
}
