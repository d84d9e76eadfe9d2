//! Per-thread default stream variants (`_ptsz`): the same calls with the null stream meaning
//! `CU_STREAM_PER_THREAD`. A library that implements the plain function declares the variant
//! with [`per_thread_variants!`](crate::per_thread_variants): one `NAME => BASE;` line, the
//! parameters taken from the signature declared for `NAME` in [`crate::api`].

use crate::cu::*;
use std::ffi::c_void;

/// `CU_STREAM_PER_THREAD`.
pub const PER_THREAD_STREAM: usize = 2;

/// The stream a per-thread variant means by `s`: the null stream becomes the per-thread stream.
pub fn per_thread(s: CUstream) -> CUstream {
    if s.is_null() {
        std::ptr::without_provenance_mut(PER_THREAD_STREAM)
    } else {
        s
    }
}

/// An argument of a per-thread variant as its base function takes it: the stream mapped by
/// [`per_thread`], everything else unchanged.
pub trait OnPerThreadStream {
    /// The argument for the base function.
    fn on_per_thread_stream(self) -> Self;
}

impl OnPerThreadStream for CUstream {
    fn on_per_thread_stream(self) -> Self {
        per_thread(self)
    }
}

macro_rules! passed_unchanged {
    ($($t:ty),*) => {
        $( impl OnPerThreadStream for $t {
            fn on_per_thread_stream(self) -> Self {
                self
            }
        } )*
    };
}

passed_unchanged!(
    u8,
    u16,
    u32,
    usize,
    CUdeviceptr,
    *mut CUdeviceptr, // also *mut u64
    *const c_void,
    *mut c_void,
    *mut *mut c_void,
    *mut [u8; 64],
    *mut u32,
    *mut usize,
    *mut CUcontext,
    *mut *const c_void,
    *mut *const CUgraphNode,
    *mut CUgraph,
    CUfunction,
    CUevent,
    CUgraphExec,
    crate::api::types::HostFn,
    crate::api::types::HostCallback
);

/// Declares per-thread variants: `NAME => BASE;` makes `pub unsafe fn NAME(…)`, with the C
/// signature declared for `NAME`, calling `BASE` with the stream argument mapped by
/// [`per_thread`]. The declared parameter types must be in scope
/// (`use gpupool_cuda::api::types::*`).
#[macro_export]
macro_rules! per_thread_variants {
    ($( $name:ident => $base:path ; )*) => {
        $( $crate::signature_of!{ $name per_thread $base } )*
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_null_stream_becomes_the_per_thread_stream() {
        assert_eq!(per_thread(std::ptr::null_mut()) as usize, 2);
        let s = std::ptr::without_provenance_mut(0x1234);
        assert_eq!(per_thread(s), s);
        assert_eq!(per_thread(std::ptr::without_provenance_mut(1)) as usize, 1);
    }

    #[test]
    fn variants_map_the_stream_argument_only() {
        let null: CUstream = std::ptr::null_mut();
        assert_eq!(null.on_per_thread_stream() as usize, PER_THREAD_STREAM);
        let event: CUevent = std::ptr::null_mut();
        assert!(
            event.on_per_thread_stream().is_null(),
            "an event is not a stream"
        );
        let ptr: CUdeviceptr = 0;
        assert_eq!(ptr.on_per_thread_stream(), 0);
        assert_eq!(0u32.on_per_thread_stream(), 0);
    }
}
