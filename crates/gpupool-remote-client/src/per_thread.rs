//! Per-thread default stream variants (`_ptsz`): the same calls with the null stream meaning
//! `CU_STREAM_PER_THREAD`. The server runs a client's calls on one thread, so the per-thread
//! streams of all the client's threads are that thread's one per-thread stream: ordered like
//! each thread's, never synchronising with the legacy stream's other work more than CUDA does.

use gpupool_cuda::cu::*;
use gpupool_remote::launch_ex::RawLaunchConfig;
use std::ffi::c_void;

/// `CU_STREAM_PER_THREAD`.
const PER_THREAD: usize = 2;

/// The stream a per-thread variant means by `s`.
pub fn per_thread(s: CUstream) -> CUstream {
    if s.is_null() {
        std::ptr::without_provenance_mut(PER_THREAD)
    } else {
        s
    }
}

/// An argument of a per-thread variant as its base function takes it: the stream mapped by
/// [`per_thread`], everything else unchanged.
trait OnPerThreadStream {
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
    *mut CUdeviceptr,
    *const c_void,
    *mut c_void,
    *mut *mut c_void,
    CUfunction,
    CUevent,
    CUgraphExec
);

/// `NAME`: `BASE` with the declared parameters of `NAME`, its stream per-thread.
macro_rules! per_thread_variant {
    ($base:path ; $name:ident ( $($a:ident : $t:ty),* )) => {
        #[doc = concat!("`", stringify!($base), "` on the per-thread default stream.")]
        #[allow(clippy::too_many_arguments, non_snake_case)]
        pub unsafe fn $name($($a: $t),*) -> u32 {
            // SAFETY: the caller's arguments, the stream mapped, passed on.
            unsafe { $base($( OnPerThreadStream::on_per_thread_stream($a) ),*) }
        }
    };
}

/// Per-thread variants, each with the C signature declared for it in `gpupool_cuda::api`.
macro_rules! per_thread_variants {
    ($( $name:ident => $base:path ; )*) => {
        $( gpupool_cuda::signature_of!{ $name adapt per_thread_variant $base } )*
    };
}

per_thread_variants! {
    cuLaunchKernel_ptsz => crate::module::launch_kernel;
    cuLaunchCooperativeKernel_ptsz => crate::module::launch_cooperative_kernel;
    cuStreamSynchronize_ptsz => crate::table_client::cuStreamSynchronize;
    cuStreamQuery_ptsz => crate::table_client::cuStreamQuery;
    cuStreamWaitEvent_ptsz => crate::table_client::cuStreamWaitEvent;
    cuEventRecord_ptsz => crate::table_client::cuEventRecord;
    cuGraphLaunch_ptsz => crate::table_client::cuGraphLaunch;
    cuMemcpyAsync_ptsz => crate::copies::memcpy_async;
    cuMemcpyHtoDAsync_v2_ptsz => crate::copies::htod_async;
    cuMemcpyDtoHAsync_v2_ptsz => crate::copies::dtoh_async;
    cuMemcpyDtoDAsync_v2_ptsz => crate::copies::dtod_async;
    cuMemsetD8Async_ptsz => crate::copies::memset_d8_async;
    cuMemsetD16Async_ptsz => crate::copies::memset_d16_async;
    cuMemsetD32Async_ptsz => crate::copies::memset_d32_async;
    cuMemAllocAsync_ptsz => crate::memory::mem_alloc_async;
    cuMemFreeAsync_ptsz => crate::memory::mem_free_async;
}

/// `cuLaunchKernelEx_ptsz`: the configuration's stream per-thread.
pub unsafe fn launch_kernel_ex(
    config: *const gpupool_cuda::cu::CUlaunchConfig,
    f: CUfunction,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> u32 {
    // SAFETY: null or the caller's configuration, whose layout `RawLaunchConfig` mirrors.
    let Some(mut c) = (unsafe { config.cast::<RawLaunchConfig>().as_ref() }).copied() else {
        return gpupool_cuda::result::CUDA_ERROR_INVALID_VALUE;
    };
    c.stream = per_thread(c.stream);
    let c = std::ptr::from_ref(&c).cast();
    // SAFETY: a copy of the caller's configuration, the rest passed on.
    unsafe { crate::module::launch_kernel_ex(c, f, params, extra) }
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
        assert_eq!(null.on_per_thread_stream() as usize, PER_THREAD);
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
