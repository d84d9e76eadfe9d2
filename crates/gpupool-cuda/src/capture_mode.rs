//! `cuThreadExchangeStreamCaptureMode` for the libraries that stand in for the driver: the
//! calling thread's stream-capture mode, kept per thread.

use crate::result::*;
use std::cell::Cell;

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
}
