//! Stream-capture answers for the libraries that stand in for the driver: the calling thread's
//! capture mode (`cuThreadExchangeStreamCaptureMode`), kept per thread, and capture
//! information (`cuStreamGetCaptureInfo*`, [`capture_info_functions!`](crate::capture_info_functions))
//! from what such a library knows of a stream's capture ([`CaptureNow`]).

use crate::cu::CUgraphNode;
use crate::result::*;
use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// `CU_STREAM_CAPTURE_MODE_RELAXED`, the largest mode.
const LAST_CAPTURE_MODE: u32 = 2;

thread_local! {
    /// The calling thread's stream-capture mode (`CU_STREAM_CAPTURE_MODE_GLOBAL` at first).
    static CAPTURE_MODE: Cell<u32> = const { Cell::new(0) };
}

/// `cuThreadExchangeStreamCaptureMode`: the calling thread's mode is kept and exchanged; no
/// mode forbids anything in the libraries that use this (the simulator does not check which
/// calls a mode allows, the remote client's captures run on the server).
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

/// `CU_STREAM_CAPTURE_STATUS_ACTIVE`.
pub const CAPTURING: u32 = 1;

/// `CU_STREAM_CAPTURE_STATUS_INVALIDATED`.
pub const CAPTURE_INVALIDATED: u32 = 2;

/// The stream captures a process has open, counted from the results of its
/// `cuStreamBeginCapture` and `cuStreamEndCapture` calls: while there are none, no stream of
/// the process is being captured, which one atomic load tells.
pub struct OpenCaptures(AtomicU64);

impl OpenCaptures {
    /// No capture open.
    pub const fn new() -> OpenCaptures {
        OpenCaptures(AtomicU64::new(0))
    }

    /// Whether some capture is open.
    pub fn any(&self) -> bool {
        self.0.load(Relaxed) > 0
    }

    /// Counts a capture begun with result `rc`; returns `rc`.
    pub fn begun(&self, rc: u32) -> u32 {
        if rc == CUDA_SUCCESS {
            self.0.fetch_add(1, Relaxed);
        }
        rc
    }

    /// Counts a capture ended with result `rc` (with its graph, or invalidated); returns `rc`.
    pub fn ended(&self, rc: u32) -> u32 {
        if rc == CUDA_SUCCESS || rc == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED {
            // Never below zero, whatever the driver answered.
            let _ = self.0.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
        }
        rc
    }
}

impl Default for OpenCaptures {
    fn default() -> Self {
        Self::new()
    }
}

/// A stream's capture status from `query`, a `cuStreamIsCapturing` call writing it through
/// the pointer it is given.
pub fn capture_status(query: impl FnOnce(*mut u32) -> u32) -> Result<u32, u32> {
    let mut status = NOT_CAPTURING;
    match query(&mut status) {
        CUDA_SUCCESS => Ok(status),
        e => Err(e),
    }
}

/// What a driver stand-in knows of a stream's capture: its status, and each detail it can
/// answer (`None`: not known here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureNow {
    /// `CUstreamCaptureStatus`.
    pub status: u32,
    /// The capture's id (unique in the process).
    pub id: Option<u64>,
    /// The graph being captured into.
    pub graph: Option<*mut c_void>,
    /// The nodes the stream's next captured work will depend on, and how many.
    pub deps: Option<(*const CUgraphNode, usize)>,
}

impl CaptureNow {
    /// A stream not being captured.
    pub const NONE: CaptureNow = CaptureNow::status_only(NOT_CAPTURING);

    /// A status whose details are not known here.
    pub const fn status_only(status: u32) -> CaptureNow {
        CaptureNow {
            status,
            id: None,
            graph: None,
            deps: None,
        }
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

/// Writes `known` through `p` unless `p` is null; `false` when it is asked for and unknown.
///
/// # Safety
/// `p` is null or valid for writing a `T`.
unsafe fn put_known<T>(p: *mut T, known: Option<T>) -> bool {
    match known {
        // SAFETY: the caller's contract.
        Some(v) => unsafe { put(p, v) },
        None => return p.is_null(),
    }
    true
}

/// The `cuStreamGetCaptureInfo_v3` answers from what is known of a stream's capture `now` (or
/// the error finding it): empty answers outside a capture; during one, each detail asked for
/// that is not known is `CUDA_ERROR_NOT_SUPPORTED`. Edge data is never kept (null: every
/// dependency is a plain one).
///
/// # Safety
/// Each pointer is null or valid for writing its answer.
pub unsafe fn capture_info(
    now: Result<CaptureNow, u32>,
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
    let mut now = match now {
        Ok(now) => now,
        Err(e) => return e,
    };
    if now.status == NOT_CAPTURING {
        now = CaptureNow {
            status: NOT_CAPTURING,
            id: Some(0),
            graph: Some(std::ptr::null_mut()),
            deps: Some((std::ptr::null(), 0)),
        };
    }
    let (dep_list, dep_count) = now.deps.unzip();
    // SAFETY: the caller's out pointers, each null or valid.
    let known = unsafe {
        put_known(id, now.id)
            & put_known(graph, now.graph)
            & put_known(deps, dep_list)
            & put_known(n, dep_count)
    };
    if !known {
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    // SAFETY: as above.
    unsafe {
        put(status, now.status);
        put(edges, std::ptr::null());
    }
    CUDA_SUCCESS
}

/// Defines `stream_get_capture_info`, `_v2` and `_v3` in the invoking module, answered by
/// [`capture_info`] from `INFO_OF`, an
/// `unsafe fn(CUstream) -> Result<CaptureNow, u32>` saying what is known of a stream's capture.
#[macro_export]
macro_rules! capture_info_functions {
    ($info_of:path) => {
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
            // SAFETY: the stream is checked by the info function.
            let now = unsafe { $info_of(s) };
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
    fn only_ended_or_invalidated_captures_close() {
        let open = OpenCaptures::new();
        assert_eq!(open.begun(CUDA_SUCCESS), CUDA_SUCCESS);
        assert_eq!(open.begun(401), 401);
        assert!(open.any());
        assert_eq!(open.ended(903), 903);
        assert!(open.any(), "ending on the wrong stream closes nothing");
        let invalidated = CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
        assert_eq!(open.ended(invalidated), invalidated);
        assert!(!open.any(), "a refused begin opened nothing");
        open.ended(CUDA_SUCCESS);
        open.begun(CUDA_SUCCESS);
        assert!(open.any(), "never below zero");
    }

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

    /// `capture_info` about `now`, asked for the status and, where given, the id and graph:
    /// its result and the status.
    unsafe fn ask(
        now: Result<CaptureNow, u32>,
        id: Option<&mut u64>,
        graph: Option<&mut *mut c_void>,
    ) -> (u32, u32) {
        let mut st = 9;
        let id = id.map_or(std::ptr::null_mut(), |p| p as *mut u64);
        let graph = graph.map_or(std::ptr::null_mut(), |p| p as *mut *mut c_void);
        let none = std::ptr::null_mut::<u8>();
        // SAFETY: valid or null out pointers.
        let rc = unsafe {
            capture_info(
                now,
                &mut st,
                id,
                graph,
                none.cast(),
                none.cast(),
                none.cast(),
            )
        };
        (rc, st)
    }

    /// What `capture_info` answers about `now` when every answer is asked for.
    struct AllAnswers {
        rc: u32,
        status: u32,
        id: u64,
        graph: *mut c_void,
        deps: *const CUgraphNode,
        n: usize,
    }

    /// `capture_info` about `now` with every answer asked for.
    unsafe fn ask_all(now: Result<CaptureNow, u32>) -> AllAnswers {
        let (mut status, mut id, mut n) = (9u32, 9u64, 9usize);
        let mut graph = std::ptr::dangling_mut::<c_void>();
        let mut deps = std::ptr::dangling::<CUgraphNode>();
        let edges = std::ptr::null_mut();
        // SAFETY: valid out pointers.
        let rc = unsafe {
            capture_info(
                now,
                &mut status,
                &mut id,
                &mut graph,
                &mut deps,
                edges,
                &mut n,
            )
        };
        AllAnswers {
            rc,
            status,
            id,
            graph,
            deps,
            n,
        }
    }

    #[test]
    fn capture_info_is_empty_outside_a_capture_and_what_is_known_during_one() {
        let mut id = 9u64;
        let mut graph = std::ptr::dangling_mut::<c_void>();
        let none = std::ptr::null_mut::<u8>();
        // SAFETY: valid or null out pointers.
        unsafe {
            let a = ask_all(Ok(CaptureNow::NONE));
            assert_eq!((a.rc, a.status, a.id, a.n), (CUDA_SUCCESS, 0, 0, 0));
            assert!(a.graph.is_null() && a.deps.is_null());
            // Capturing, the status alone known: the status answers, the details do not.
            let status_only = Ok(CaptureNow::status_only(CAPTURING));
            assert_eq!(ask(status_only, None, None), (CUDA_SUCCESS, CAPTURING));
            assert_eq!(
                ask(status_only, Some(&mut id), None).0,
                CUDA_ERROR_NOT_SUPPORTED
            );
            // The id known, the graph not: asking for the id alone works.
            let with_id = Ok(CaptureNow {
                id: Some(7),
                ..CaptureNow::status_only(CAPTURING)
            });
            assert_eq!(ask(with_id, Some(&mut id), None).0, CUDA_SUCCESS);
            assert_eq!(id, 7);
            let rc = ask(with_id, Some(&mut id), Some(&mut graph)).0;
            assert_eq!(rc, CUDA_ERROR_NOT_SUPPORTED);
            // Everything known.
            let node = 3usize as CUgraphNode;
            let a = ask_all(Ok(CaptureNow {
                status: CAPTURING,
                id: Some(8),
                graph: Some(std::ptr::dangling_mut()),
                deps: Some((&node, 1)),
            }));
            assert_eq!((a.rc, a.status, a.id, a.n), (CUDA_SUCCESS, CAPTURING, 8, 1));
            assert_eq!(*a.deps, node);
            assert_eq!(ask(Err(400), None, None).0, 400);
            assert_eq!(
                capture_info(
                    Ok(CaptureNow::NONE),
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
