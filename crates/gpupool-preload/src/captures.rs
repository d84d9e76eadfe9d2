//! Stream captures this process has open. A launch on a stream being captured is recorded into
//! a graph, not run: it is neither paced nor charged (the graph's launch is). While no capture
//! is open, the launch path knows that from one atomic load.

use crate::driver::events;
use crate::real;
use gpupool_cuda::capture_mode::OpenCaptures;
use gpupool_cuda::cu::{CUgraph, CUstream};

static OPEN: OpenCaptures = OpenCaptures::new();

/// Whether a launch on `stream` would be recorded into a graph rather than run.
///
/// # Safety
/// `stream` is a stream handle of this process (or a special handle).
pub unsafe fn recorded(stream: CUstream) -> bool {
    // SAFETY: the caller's contract.
    OPEN.any() && unsafe { events::capturing(stream) }
}

/// Hook for `cuStreamBeginCapture_v2`.
pub unsafe fn begin_capture(s: CUstream, mode: u32) -> u32 {
    // SAFETY: forwarding.
    OPEN.begun(unsafe { real::cuStreamBeginCapture_v2(s, mode) })
}

/// Hook for `cuStreamBeginCapture_v2_ptsz`.
pub unsafe fn begin_capture_ptsz(s: CUstream, mode: u32) -> u32 {
    // SAFETY: forwarding.
    OPEN.begun(unsafe { real::cuStreamBeginCapture_v2_ptsz(s, mode) })
}

/// Hook for `cuStreamEndCapture`.
pub unsafe fn end_capture(s: CUstream, g: *mut CUgraph) -> u32 {
    // SAFETY: forwarding.
    OPEN.ended(unsafe { real::cuStreamEndCapture(s, g) })
}

/// Hook for `cuStreamEndCapture_ptsz`.
pub unsafe fn end_capture_ptsz(s: CUstream, g: *mut CUgraph) -> u32 {
    // SAFETY: forwarding.
    OPEN.ended(unsafe { real::cuStreamEndCapture_ptsz(s, g) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_capture_open_asks_no_driver() {
        // SAFETY: the null stream; no capture is open, so the driver is not asked.
        assert!(!unsafe { recorded(std::ptr::null_mut()) });
    }
}
