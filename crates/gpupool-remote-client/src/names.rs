//! Streams and events created without a round trip: the client names each one itself, hands
//! the name to the program at once and sends the creation without waiting; the server maps
//! the name to the driver's handle. Arguments a driver would refuse are refused here first,
//! so what is sent can only fail for reasons a synchronising call reports (no context, no
//! resources), as other calls sent without waiting do.

use crate::table_client;
use gpupool_cuda::api::types::*;
use gpupool_cuda::creation_flags::{event_flags_valid, stream_flags_valid};
use gpupool_cuda::result::*;
use gpupool_remote::calls::{CLIENT_NAME_STEP, FIRST_CLIENT_NAME};
use std::sync::atomic::{AtomicU64, Ordering};

/// The next name to give.
static NEXT: AtomicU64 = AtomicU64::new(FIRST_CLIENT_NAME);

/// A name never given before in this process (for a stream, event, module, library or kernel).
pub fn next() -> u64 {
    NEXT.fetch_add(CLIENT_NAME_STEP, Ordering::Relaxed)
}

/// `cuStreamCreate`.
pub unsafe fn stream_create(s: *mut CUstream, flags: u32) -> u32 {
    if !stream_flags_valid(flags) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: the caller's out pointer (null refused by the call).
    unsafe { table_client::cuStreamCreate(s, flags) }
}

/// `cuStreamCreateWithPriority` (the server's driver clamps the priority, as any does).
pub unsafe fn stream_create_with_priority(s: *mut CUstream, flags: u32, prio: i32) -> u32 {
    if !stream_flags_valid(flags) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: as above.
    unsafe { table_client::cuStreamCreateWithPriority(s, flags, prio) }
}

/// `cuEventCreate`.
pub unsafe fn event_create(e: *mut CUevent, flags: u32) -> u32 {
    if !event_flags_valid(flags) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: as above.
    unsafe { table_client::cuEventCreate(e, flags) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_never_the_special_streams_and_never_repeat() {
        let a = next();
        let b = next();
        assert!(a > 2 && b > 2);
        assert_ne!(a, b);
    }

    #[test]
    fn null_out_pointers_are_refused_before_anything_is_sent() {
        // SAFETY: null pointers, refused before any use.
        unsafe {
            assert_eq!(
                stream_create(std::ptr::null_mut(), 0),
                CUDA_ERROR_INVALID_VALUE
            );
            assert_eq!(
                event_create(std::ptr::null_mut(), 0),
                CUDA_ERROR_INVALID_VALUE
            );
            assert_eq!(
                event_create(std::ptr::null_mut(), 0x100),
                CUDA_ERROR_INVALID_VALUE
            );
        }
    }
}
