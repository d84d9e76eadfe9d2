//! Stream capture: between `cuStreamBeginCapture` and `cuStreamEndCapture` the work queued on a
//! stream (kernels, copies, sets, host functions, graph launches) is added to a graph instead
//! of being done; an event recorded on it and waited for by another stream draws that stream
//! into the same capture. Synchronising with a stream being captured is refused and
//! invalidates the capture, as on a real driver; so does stream work queued on the legacy
//! stream of a context where a blocking stream (one created without `CU_STREAM_NON_BLOCKING`)
//! is being captured, as the legacy stream would wait for it
//! (`CUDA_ERROR_STREAM_CAPTURE_IMPLICIT`).
//!
//! Not modelled: the dependencies between captured work (a graph runs its nodes in order), the
//! other calls a capture mode forbids, synchronous copies and sets on the legacy stream during
//! a capture, capturing the special streams, and allocations other than stream-ordered ones
//! during a capture (done at once). Stream-ordered allocations and frees become allocation and
//! free nodes (`graph_mem`).

use crate::ctx::{require_current, Context};
use crate::graph::{Graph, Node};
use crate::mem::write;
use crate::stream::{stream_ref, Event, Stream};
use gpupool_cuda::capture_mode::{CaptureNow, CAPTURE_INVALIDATED, CAPTURING, NOT_CAPTURING};
use gpupool_cuda::cu::{CUgraph, CUgraphNode, CUstream};
use gpupool_cuda::result::*;
use gpupool_cuda::spinlock::SpinLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};

/// `CU_STREAM_CAPTURE_MODE_RELAXED`, the largest mode.
const LAST_MODE: u32 = 2;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Captures begun and not ended.
static OPEN: SpinLock<Vec<&'static Capture>> = SpinLock::new(Vec::new());
/// How many there are (read without the lock on every launch on the legacy stream).
static OPEN_COUNT: AtomicUsize = AtomicUsize::new(0);

/// One capture: its graph and the streams capturing into it.
pub struct Capture {
    id: u64,
    graph: &'static Graph,
    invalidated: AtomicBool,
    /// Every stream capturing into it, the one that began it first; none once it ended.
    streams: SpinLock<Vec<&'static Stream>>,
    /// Handle of the last node added (0 = none): what the next work depends on.
    last_node: AtomicUsize,
}

impl Capture {
    fn status(&self) -> u32 {
        if self.invalidated.load(SeqCst) {
            CAPTURE_INVALIDATED
        } else {
            CAPTURING
        }
    }

    /// Draws `s` into the capture unless it ended.
    fn join(&'static self, s: &'static Stream) -> bool {
        let mut streams = self.streams.lock();
        if streams.is_empty() {
            return false;
        }
        s.capture.store(self as *const Capture as usize, SeqCst);
        streams.push(s);
        true
    }

    /// Whether `s` began it.
    fn began_on(&self, s: &Stream) -> bool {
        self.streams
            .lock()
            .first()
            .is_some_and(|o| std::ptr::eq(*o, s))
    }
}

/// The capture stream `s` is part of, if any (the special streams are never captured).
pub(crate) fn of(s: CUstream) -> Option<&'static Capture> {
    let st = stream_ref(s).ok().flatten()?;
    capture_at(st.capture.load(SeqCst))
}

fn capture_at(address: usize) -> Option<&'static Capture> {
    // SAFETY: capture addresses are leaked Box<Capture>, never freed.
    (address != 0).then(|| unsafe { &*(address as *const Capture) })
}

/// Work queued on stream `s`: refused ([`refuse_implicit`]), or if `s` is being captured,
/// `record` adds it to the capture's graph unless the capture is broken; `None` (nothing
/// recorded) otherwise.
fn record(s: CUstream, record: impl FnOnce(&Capture) -> u32) -> Option<u32> {
    if let Some(refused) = refuse_implicit(s) {
        return Some(refused);
    }
    of(s).map(|c| {
        if c.invalidated.load(SeqCst) {
            CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
        } else {
            record(c)
        }
    })
}

/// If `s` is being captured, adds the node `make` gives to its capture and returns the call's
/// result (see [`record`]).
pub(crate) fn add(s: CUstream, make: impl FnOnce() -> Node) -> Option<u32> {
    record(s, |c| {
        let handle = c.graph.add(make());
        c.last_node.store(handle as usize, SeqCst);
        CUDA_SUCCESS
    })
}

/// If `s` is being captured, lets `extend` add to the capture's graph (a graph launched into
/// it) and returns the call's result (see [`record`]).
pub(crate) fn add_graph(s: CUstream, extend: impl FnOnce(&Graph)) -> Option<u32> {
    record(s, |c| {
        extend(c.graph);
        CUDA_SUCCESS
    })
}

/// Work queued on stream `s`: refused when `s` is the legacy stream and a blocking stream of
/// its context is being captured, which invalidates that capture.
pub(crate) fn refuse_implicit(s: CUstream) -> Option<u32> {
    if OPEN_COUNT.load(SeqCst) == 0 || !matches!(s as usize, 0 | 1) {
        return None;
    }
    let ctx = require_current().ok()? as *const Context;
    let mut refused = None;
    for c in OPEN.lock().iter() {
        let joins = c
            .streams
            .lock()
            .iter()
            .any(|st| st.blocking() && std::ptr::eq(st.context(), ctx));
        if joins {
            c.invalidated.store(true, SeqCst);
            refused = Some(CUDA_ERROR_STREAM_CAPTURE_IMPLICIT);
        }
    }
    refused
}

/// A synchronisation with `s`: refused while it is captured, which invalidates the capture.
pub(crate) fn refuse_sync(s: CUstream) -> Option<u32> {
    of(s).map(|c| {
        c.invalidated.store(true, SeqCst);
        CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
    })
}

/// An event recorded on `s`: marks it as part of `s`'s capture (or of none). `true` when the
/// record was captured (and there is nothing else to do).
pub(crate) fn record_event(ev: &Event, s: CUstream) -> bool {
    let capture = of(s).map_or(0, |c| c as *const Capture as usize);
    ev.capture.store(capture, SeqCst);
    capture != 0
}

/// Stream `s` waits for event `ev`: `true` when that was handled by the capture (`s` joins the
/// capture the event was recorded in, or `s` is captured itself).
pub(crate) fn wait_event(s: CUstream, ev: &Event) -> bool {
    if of(s).is_some() {
        return true;
    }
    match (capture_at(ev.capture.load(SeqCst)), stream_ref(s)) {
        (Some(c), Ok(Some(st))) => c.join(st),
        _ => false,
    }
}

/// `cuStreamBeginCapture_v2` (and `_ptsz`).
pub unsafe fn begin(s: CUstream, mode: u32) -> u32 {
    if mode > LAST_MODE {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let st = match stream_ref(s) {
        Ok(Some(st)) => st,
        Ok(None) => return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED,
        Err(e) => return e,
    };
    if st.capture.load(SeqCst) != 0 {
        return CUDA_ERROR_ILLEGAL_STATE;
    }
    let c: &'static Capture = Box::leak(Box::new(Capture {
        id: NEXT_ID.fetch_add(1, SeqCst),
        graph: Graph::leaked(),
        invalidated: AtomicBool::new(false),
        streams: SpinLock::new(vec![st]),
        last_node: AtomicUsize::new(0),
    }));
    st.capture.store(c as *const Capture as usize, SeqCst);
    let mut open = OPEN.lock();
    open.push(c);
    OPEN_COUNT.store(open.len(), SeqCst);
    CUDA_SUCCESS
}

/// `cuStreamEndCapture` (and `_ptsz`): only on the stream that began the capture; every stream
/// drawn into it stops capturing. An invalidated capture gives no graph.
pub unsafe fn end(s: CUstream, out: *mut CUgraph) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let st = match stream_ref(s) {
        Ok(st) => st,
        Err(e) => return e,
    };
    let (Some(st), Some(c)) = (st, of(s)) else {
        return CUDA_ERROR_ILLEGAL_STATE;
    };
    if !c.began_on(st) {
        return CUDA_ERROR_STREAM_CAPTURE_UNMATCHED;
    }
    for st in c.streams.lock().drain(..) {
        st.capture.store(0, SeqCst);
    }
    {
        let mut open = OPEN.lock();
        open.retain(|o| !std::ptr::eq(*o, c));
        OPEN_COUNT.store(open.len(), SeqCst);
    }
    if c.invalidated.load(SeqCst) {
        write(out, std::ptr::null_mut());
        return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    }
    write(out, c.graph as *const Graph as CUgraph)
}

/// `cuStreamIsCapturing` (and `_ptsz`).
pub unsafe fn is_capturing(s: CUstream, out: *mut u32) -> u32 {
    match stream_ref(s) {
        Ok(_) => write(out, of(s).map_or(NOT_CAPTURING, Capture::status)),
        Err(e) => e,
    }
}

/// What `cuStreamGetCaptureInfo*` answers for `s`: everything, during a capture.
unsafe fn info(s: CUstream) -> Result<CaptureNow, u32> {
    stream_ref(s)?;
    Ok(of(s).map_or(CaptureNow::NONE, |c| {
        let last = &c.last_node as *const AtomicUsize as *const CUgraphNode;
        let n = usize::from(c.last_node.load(SeqCst) != 0);
        CaptureNow {
            status: c.status(),
            id: Some(c.id),
            graph: Some(c.graph as *const Graph as *mut _),
            deps: Some((last, n)),
        }
    }))
}

gpupool_cuda::capture_info_functions!(info);

pub use gpupool_cuda::capture_mode::thread_exchange_stream_capture_mode;
