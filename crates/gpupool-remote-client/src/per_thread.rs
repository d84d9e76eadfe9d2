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

macro_rules! per_thread_variants {
    ($( fn $name:ident ( $($a:ident : $t:ty),* ) [$s:ident] => $base:path ; )*) => {
        $(
            #[doc = concat!("`", stringify!($base), "` on the per-thread default stream.")]
            #[allow(clippy::too_many_arguments)]
            pub unsafe fn $name($($a: $t),*) -> u32 {
                let $s = per_thread($s);
                // SAFETY: the caller's arguments, passed on.
                unsafe { $base($($a),*) }
            }
        )*
    };
}

per_thread_variants! {
    fn launch_kernel(f: CUfunction, gx: u32, gy: u32, gz: u32, bx: u32, by: u32, bz: u32, shared: u32, s: CUstream, params: *mut *mut c_void, extra: *mut *mut c_void) [s] => crate::module::launch_kernel;
    fn launch_cooperative_kernel(f: CUfunction, gx: u32, gy: u32, gz: u32, bx: u32, by: u32, bz: u32, shared: u32, s: CUstream, params: *mut *mut c_void) [s] => crate::module::launch_cooperative_kernel;
    fn stream_synchronize(s: CUstream) [s] => crate::table_client::cuStreamSynchronize;
    fn stream_query(s: CUstream) [s] => crate::table_client::cuStreamQuery;
    fn stream_wait_event(s: CUstream, e: CUevent, flags: u32) [s] => crate::table_client::cuStreamWaitEvent;
    fn event_record(e: CUevent, s: CUstream) [s] => crate::table_client::cuEventRecord;
    fn graph_launch(e: CUgraphExec, s: CUstream) [s] => crate::table_client::cuGraphLaunch;
    fn memcpy_async(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) [s] => crate::copies::memcpy_async;
    fn htod_async(dst: CUdeviceptr, src: *const c_void, n: usize, s: CUstream) [s] => crate::copies::htod_async;
    fn dtoh_async(dst: *mut c_void, src: CUdeviceptr, n: usize, s: CUstream) [s] => crate::copies::dtoh_async;
    fn dtod_async(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) [s] => crate::copies::dtod_async;
    fn memset_d8_async(d: CUdeviceptr, v: u8, n: usize, s: CUstream) [s] => crate::copies::memset_d8_async;
    fn memset_d16_async(d: CUdeviceptr, v: u16, n: usize, s: CUstream) [s] => crate::copies::memset_d16_async;
    fn memset_d32_async(d: CUdeviceptr, v: u32, n: usize, s: CUstream) [s] => crate::copies::memset_d32_async;
    fn mem_alloc_async(d: *mut CUdeviceptr, size: usize, s: CUstream) [s] => crate::memory::mem_alloc_async;
    fn mem_free_async(d: CUdeviceptr, s: CUstream) [s] => crate::memory::mem_free_async;
}

/// `cuLaunchKernelEx_ptsz`.
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
}
