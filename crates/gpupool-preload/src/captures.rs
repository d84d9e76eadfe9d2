//! Stream captures this process has open. A launch on a stream being captured is recorded into
//! a graph, not run: it is neither paced nor charged (the graph's launch is). While no capture
//! is open, the launch path knows that from one atomic load.

use crate::driver::events;
use crate::real;
use gpupool_cuda::cu::{CUgraph, CUstream};
use gpupool_cuda::result::{CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, CUDA_SUCCESS};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Captures begun and not ended (successfully or invalidated).
static OPEN: AtomicU64 = AtomicU64::new(0);

/// Whether a launch on `stream` would be recorded into a graph rather than run.
///
/// # Safety
/// `stream` is a stream handle of this process (or a special handle).
pub unsafe fn recorded(stream: CUstream) -> bool {
    // SAFETY: the caller's contract.
    OPEN.load(Relaxed) > 0 && unsafe { events::capturing(stream) }
}

fn begun(rc: u32) -> u32 {
    if rc == CUDA_SUCCESS {
        OPEN.fetch_add(1, Relaxed);
    }
    rc
}

fn ended(rc: u32) -> u32 {
    if rc == CUDA_SUCCESS || rc == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED {
        // Never below zero, whatever the driver answered.
        let _ = OPEN.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
    }
    rc
}

/// Hook for `cuStreamBeginCapture_v2`.
pub unsafe fn begin_capture(s: CUstream, mode: u32) -> u32 {
    // SAFETY: forwarding.
    begun(unsafe { real::cuStreamBeginCapture_v2(s, mode) })
}

/// Hook for `cuStreamBeginCapture_v2_ptsz`.
pub unsafe fn begin_capture_ptsz(s: CUstream, mode: u32) -> u32 {
    // SAFETY: forwarding.
    begun(unsafe { real::cuStreamBeginCapture_v2_ptsz(s, mode) })
}

/// Hook for `cuStreamEndCapture`.
pub unsafe fn end_capture(s: CUstream, g: *mut CUgraph) -> u32 {
    // SAFETY: forwarding.
    ended(unsafe { real::cuStreamEndCapture(s, g) })
}

/// Hook for `cuStreamEndCapture_ptsz`.
pub unsafe fn end_capture_ptsz(s: CUstream, g: *mut CUgraph) -> u32 {
    // SAFETY: forwarding.
    ended(unsafe { real::cuStreamEndCapture_ptsz(s, g) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ended_or_invalidated_captures_close() {
        assert_eq!(begun(CUDA_SUCCESS), CUDA_SUCCESS);
        assert_eq!(begun(401), 401);
        assert_eq!(OPEN.load(Relaxed), 1, "a refused begin opens nothing");
        assert_eq!(ended(903), 903);
        assert_eq!(
            OPEN.load(Relaxed),
            1,
            "ending on the wrong stream closes nothing"
        );
        assert_eq!(
            ended(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED),
            CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
        );
        assert_eq!(OPEN.load(Relaxed), 0);
        ended(CUDA_SUCCESS);
        assert_eq!(OPEN.load(Relaxed), 0, "never below zero");
        // SAFETY: the null stream; no capture is open, so the driver is not asked.
        assert!(!unsafe { recorded(std::ptr::null_mut()) });
    }
}
