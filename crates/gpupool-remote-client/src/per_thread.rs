//! Per-thread default stream variants (`_ptsz`): the same calls with the null stream meaning
//! `CU_STREAM_PER_THREAD`. The server runs a client's calls on one thread, so the per-thread
//! streams of all the client's threads are that thread's one per-thread stream: ordered like
//! each thread's, never synchronising with the legacy stream's other work more than CUDA does.

use gpupool_cuda::api::types::*;
use std::ffi::c_void;

gpupool_cuda::per_thread_variants! {
    cuLaunchKernel_ptsz => crate::module::launch_kernel;
    cuLaunchCooperativeKernel_ptsz => crate::module::launch_cooperative_kernel;
    cuStreamSynchronize_ptsz => crate::table_client::cuStreamSynchronize;
    cuStreamQuery_ptsz => crate::table_client::cuStreamQuery;
    cuStreamWaitEvent_ptsz => crate::table_client::cuStreamWaitEvent;
    cuEventRecord_ptsz => crate::table_client::cuEventRecord;
    cuGraphLaunch_ptsz => crate::graph_host::graph_launch;
    cuStreamBeginCapture_v2_ptsz => crate::table_client::cuStreamBeginCapture_v2;
    cuStreamEndCapture_ptsz => crate::stream::stream_end_capture;
    cuMemcpyAsync_ptsz => crate::copies::memcpy_async;
    cuMemcpyHtoDAsync_v2_ptsz => crate::copies::htod_async;
    cuMemcpyDtoHAsync_v2_ptsz => crate::copies::dtoh_async;
    cuMemcpyDtoDAsync_v2_ptsz => crate::copies::dtod_async;
    cuMemcpyPeerAsync_ptsz => crate::copies::memcpy_peer_async;
    cuMemsetD8Async_ptsz => crate::copies::memset_d8_async;
    cuMemsetD16Async_ptsz => crate::copies::memset_d16_async;
    cuMemsetD32Async_ptsz => crate::copies::memset_d32_async;
    cuMemAllocAsync_ptsz => crate::memory::mem_alloc_async;
    cuMemFreeAsync_ptsz => crate::memory::mem_free_async;
    cuStreamIsCapturing_ptsz => crate::stream::stream_is_capturing;
    cuStreamGetCaptureInfo_ptsz => crate::stream::stream_get_capture_info;
    cuStreamGetCaptureInfo_v2_ptsz => crate::stream::stream_get_capture_info_v2;
    cuStreamGetCaptureInfo_v3_ptsz => crate::stream::stream_get_capture_info_v3;
    cuStreamGetCtx_v2_ptsz => crate::stream::stream_get_ctx_v2;
    cuLaunchHostFunc_ptsz => crate::stream::launch_host_func;
    cuStreamAddCallback_ptsz => crate::stream::stream_add_callback;
    cuStreamSetAttribute_ptsz => crate::stream::stream_set_attribute;
    cuStreamGetAttribute_ptsz => crate::table_client::cuStreamGetAttribute;
    cuStreamCopyAttributes_ptsz => crate::table_client::cuStreamCopyAttributes;
}

#[cfg(test)]
mod tests {
    use gpupool_cuda::api::types::*;

    /// The base a declared variant calls: answers the stream it was given.
    unsafe fn stream_given(s: CUstream) -> u32 {
        s as usize as u32
    }

    mod variants {
        use gpupool_cuda::api::types::*;
        gpupool_cuda::per_thread_variants! {
            cuStreamSynchronize_ptsz => super::stream_given;
        }
    }

    #[test]
    fn a_declared_variant_passes_the_mapped_stream_to_its_base() {
        // SAFETY: the base only reads the stream's value.
        unsafe {
            assert_eq!(variants::cuStreamSynchronize_ptsz(std::ptr::null_mut()), 2);
            let s = std::ptr::without_provenance_mut(0x40);
            assert_eq!(variants::cuStreamSynchronize_ptsz(s), 0x40);
        }
    }
}
