//! Device work of this process on the shared timelines: which stream a kernel goes to, the last
//! kernel of each stream and context, waiting for them, and event times.

use crate::ctx::{require_current, Context};
use crate::stream::{is_special, stream_ref, Event};
use crate::timeline::{now_ns, Progress, Timeline};
use gpupool_cuda::cu::CUstream;
use std::cell::Cell;
use std::sync::atomic::Ordering::SeqCst;

thread_local! {
    /// This thread's per-thread default stream: (context id, last kernel).
    static PER_THREAD: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// `CU_STREAM_PER_THREAD`.
const PER_THREAD_STREAM: usize = 2;

fn timeline(ctx: &Context) -> Option<&'static Timeline> {
    let (_, d) = crate::ctx::device(ctx.ordinal).ok()?;
    Some(&d.timeline)
}

/// Key of a stream on the timeline (unique in the process).
fn stream_key(ctx: &Context, s: CUstream) -> u64 {
    match s as usize {
        PER_THREAD_STREAM => {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() } as u64;
            (ctx.id << 40) | (tid << 2) | 2
        }
        _ if is_special(s) => (ctx.id << 40) | 1,
        _ => stream_ref(s).ok().flatten().map_or(0, |st| st.id() << 2),
    }
}

/// The context a stream belongs to (the current one for the special handles).
fn stream_context(s: CUstream) -> Result<&'static Context, u32> {
    match stream_ref(s)? {
        Some(st) => Ok(st.context()),
        None => require_current(),
    }
}

/// Queues a kernel of `duration_ns` on stream `s` (or adds it to the stream's capture).
pub fn launch(s: CUstream, duration_ns: u64) -> Result<(), u32> {
    let ctx = stream_context(s)?;
    if let Some(rc) = crate::capture::add(s, || crate::graph::Node::Kernel(duration_ns)) {
        return match rc {
            gpupool_cuda::result::CUDA_SUCCESS => Ok(()),
            e => Err(e),
        };
    }
    if crate::machine::null_launches() {
        return Ok(());
    }
    let Some(t) = timeline(ctx) else {
        return Err(gpupool_cuda::result::CUDA_ERROR_INVALID_CONTEXT);
    };
    let seq = t.submit(ctx.id, stream_key(ctx, s), duration_ns);
    ctx.last_any.fetch_max(seq, SeqCst);
    match s as usize {
        PER_THREAD_STREAM => PER_THREAD.with(|c| c.set((ctx.id, seq))),
        _ if is_special(s) => ctx.legacy_last.store(seq, SeqCst),
        _ => {
            if let Ok(Some(st)) = stream_ref(s) {
                st.last_seq.store(seq, SeqCst);
            }
        }
    }
    Ok(())
}

/// The context of stream `s` and the last kernel queued on it (0 = none).
pub fn stream_last(s: CUstream) -> Result<(&'static Context, u64), u32> {
    let ctx = stream_context(s)?;
    let seq = match s as usize {
        PER_THREAD_STREAM => PER_THREAD.with(|c| {
            let (id, seq) = c.get();
            if id == ctx.id {
                seq
            } else {
                0
            }
        }),
        _ if is_special(s) => ctx.legacy_last.load(SeqCst),
        _ => stream_ref(s)?.map_or(0, |st| st.last_seq.load(SeqCst)),
    };
    Ok((ctx, seq))
}

/// When kernel `seq` of `ctx`'s device completed, `None` while it runs (0 = none / long ago).
pub fn done_at(ctx: &Context, seq: u64) -> Option<u64> {
    if seq == 0 {
        return Some(0);
    }
    match timeline(ctx)?.progress(seq) {
        Progress::Done { end_ns, .. } => Some(end_ns),
        Progress::Pending { .. } => None,
    }
}

/// Waits for kernel `seq` of `ctx`'s device.
pub fn wait(ctx: &Context, seq: u64) {
    if seq != 0 {
        if let Some(t) = timeline(ctx) {
            t.wait(seq);
        }
    }
}

/// Records `ev` after kernel `seq` of `ctx`'s device.
pub fn event_record(ev: &Event, ctx: &Context, seq: u64) {
    let device = crate::ctx::device(ctx.ordinal).map_or(0, |(_, d)| d.physical as u64);
    ev.mark().device.store(device, SeqCst);
    ev.mark().after_seq.store(seq, SeqCst);
    // Launches that are not queued take no GPU time: every event reads one fixed time.
    let at = if crate::machine::null_launches() {
        1
    } else {
        now_ns()
    };
    ev.mark().recorded_ns.store(at, SeqCst);
}

fn event_timeline(ev: &Event) -> Option<&'static Timeline> {
    let m = crate::ctx::initialised().ok()?;
    Some(&m.all.get(ev.mark().device.load(SeqCst) as usize)?.timeline)
}

/// The time an event completed (`None` while its kernels run; never-recorded events are
/// complete at 0).
pub fn event_time(ev: &Event) -> Option<u64> {
    let recorded = ev.mark().recorded_ns.load(SeqCst);
    let seq = ev.mark().after_seq.load(SeqCst);
    if seq == 0 {
        return Some(recorded);
    }
    match event_timeline(ev)?.progress(seq) {
        // A stream already idle at the record: the event completed when recorded.
        Progress::Done { end_ns, .. } => Some(end_ns.max(recorded)),
        Progress::Pending { .. } => None,
    }
}

/// Waits until an event completed.
pub fn event_wait(ev: &Event) {
    let seq = ev.mark().after_seq.load(SeqCst);
    if seq != 0 {
        if let Some(t) = event_timeline(ev) {
            t.wait(seq);
        }
    }
}
