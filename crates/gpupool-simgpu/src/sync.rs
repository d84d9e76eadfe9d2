//! Waiting on device work: `cuCtxSynchronize`, `cuStreamSynchronize` / `Query` / `WaitEvent`
//! and the events that record, wait for and time the kernels on the shared timelines
//! (`work`). Each synchronisation also lets memory pools give back what they keep past their
//! release threshold.

use crate::capture;
use crate::ctx::require_current;
use crate::mem::write;
use crate::pool;
use crate::stream::{event_ref, ok_or, stream_ref};
use crate::work;
use gpupool_cuda::cu::{CUevent, CUstream};
use gpupool_cuda::result::*;
use std::sync::atomic::Ordering::SeqCst;

/// `cuCtxSynchronize`: everything runs synchronously in the simulator.
pub unsafe fn ctx_synchronize() -> u32 {
    ok_or(require_current().map(|c| {
        work::wait(c, c.last_any.load(SeqCst));
        pool::release_past_thresholds();
        CUDA_SUCCESS
    }))
}

/// `cuStreamSynchronize`: waits for the stream's kernels (refused during a capture).
pub unsafe fn stream_synchronize(s: CUstream) -> u32 {
    if let Some(refused) = capture::refuse_sync(s) {
        return refused;
    }
    ok_or(work::stream_last(s).map(|(ctx, seq)| {
        work::wait(ctx, seq);
        pool::release_past_thresholds();
        CUDA_SUCCESS
    }))
}

/// `cuStreamQuery`: `CUDA_ERROR_NOT_READY` while a kernel of the stream runs (refused during a
/// capture).
pub unsafe fn stream_query(s: CUstream) -> u32 {
    if let Some(refused) = capture::refuse_sync(s) {
        return refused;
    }
    ok_or(work::stream_last(s).map(|(ctx, seq)| {
        if work::done_at(ctx, seq).is_some() {
            CUDA_SUCCESS
        } else {
            CUDA_ERROR_NOT_READY
        }
    }))
}

/// `cuStreamWaitEvent`: the host waits for the event (the simulator has no cross-stream
/// dependencies on the device); an event recorded in a capture draws the stream into it.
pub unsafe fn stream_wait_event(s: CUstream, e: CUevent, _flags: u32) -> u32 {
    ok_or(stream_ref(s).and_then(|_| event_ref(e)).map(|ev| {
        if !capture::wait_event(s, ev) {
            work::event_wait(ev);
        }
        CUDA_SUCCESS
    }))
}

/// `cuEventRecord`: completes after the stream's kernels queued so far; on a stream being
/// captured, it marks a point of the capture other streams may wait for.
pub unsafe fn event_record(e: CUevent, s: CUstream) -> u32 {
    ok_or(
        event_ref(e)
            .and_then(|ev| work::stream_last(s).map(|last| (ev, last)))
            .map(|(ev, (ctx, seq))| {
                if !capture::record_event(ev, s) {
                    work::event_record(ev, ctx, seq);
                }
                CUDA_SUCCESS
            }),
    )
}

/// `cuEventRecordWithFlags`.
pub unsafe fn event_record_with_flags(e: CUevent, s: CUstream, _flags: u32) -> u32 {
    // SAFETY: same contract.
    unsafe { event_record(e, s) }
}

/// `cuEventSynchronize`.
pub unsafe fn event_synchronize(e: CUevent) -> u32 {
    ok_or(event_ref(e).map(|ev| {
        work::event_wait(ev);
        pool::release_past_thresholds();
        CUDA_SUCCESS
    }))
}

/// `cuEventQuery`.
pub unsafe fn event_query(e: CUevent) -> u32 {
    ok_or(event_ref(e).map(|ev| match work::event_time(ev) {
        Some(_) => CUDA_SUCCESS,
        None => CUDA_ERROR_NOT_READY,
    }))
}

/// `cuEventElapsedTime` (and `_v2`): events created without timing, or never recorded, have
/// none.
pub unsafe fn event_elapsed_time(ms: *mut f32, start: CUevent, end: CUevent) -> u32 {
    ok_or(
        event_ref(start)
            .and_then(|s| event_ref(end).map(|e| (s, e)))
            .and_then(|(s, e)| {
                if s.untimed
                    || e.untimed
                    || s.mark().recorded_ns.load(SeqCst) == 0
                    || e.mark().recorded_ns.load(SeqCst) == 0
                {
                    return Err(CUDA_ERROR_INVALID_HANDLE);
                }
                match (work::event_time(s), work::event_time(e)) {
                    (Some(a), Some(b)) => Ok(write(ms, (b as f64 - a as f64) as f32 / 1e6)),
                    _ => Err(CUDA_ERROR_NOT_READY),
                }
            }),
    )
}
