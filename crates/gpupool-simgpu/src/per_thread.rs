//! Per-thread default stream variants (`_ptsz`) of the functions whose stream decides what
//! they queue behind or wait for: the null stream given to them is the per-thread stream. The
//! other `_ptsz` functions are their plain twin (the simulator does their work at once, so the
//! stream does not show).

use gpupool_cuda::api::types::*;

gpupool_cuda::per_thread_variants! {
    cuLaunchKernel_ptsz => crate::launch::launch_kernel;
    cuLaunchCooperativeKernel_ptsz => crate::launch::launch_cooperative_kernel;
    cuGraphLaunch_ptsz => crate::graph::graph_launch;
    cuStreamSynchronize_ptsz => crate::sync::stream_synchronize;
    cuStreamQuery_ptsz => crate::sync::stream_query;
    cuEventRecord_ptsz => crate::sync::event_record;
    cuStreamBeginCapture_v2_ptsz => crate::capture::begin;
    cuStreamEndCapture_ptsz => crate::capture::end;
}
