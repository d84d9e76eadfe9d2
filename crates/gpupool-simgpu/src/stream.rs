//! Streams and events. Kernels run on the device timeline (`work`, `timeline`); streams and
//! events complete when their kernels have; host callbacks run at once (or are captured:
//! `capture`).

use crate::ctx::{require_current, Context};
use crate::graph::Node;
use crate::mem::write;
use gpupool_cuda::creation_flags::{
    event_flags_valid, stream_flags_valid, EVENT_DISABLE_TIMING, EVENT_INTERPROCESS,
};
use gpupool_cuda::cu::{CUcontext, CUevent, CUgraphNodeType, CUstream};
use gpupool_cuda::result::*;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};

/// A stream.
pub struct Stream {
    ctx: usize,
    flags: u32,
    priority: i32,
    id: u64,
    /// Last kernel queued on it (timeline sequence, 0 = none).
    pub(crate) last_seq: AtomicU64,
    /// Address of the capture it is part of (`capture`, 0 = none).
    pub(crate) capture: AtomicUsize,
}

impl Stream {
    /// Its context.
    pub(crate) fn context(&self) -> &'static Context {
        // SAFETY: stream contexts are leaked Box<Context>.
        unsafe { &*(self.ctx as *const Context) }
    }

    /// Its id (unique in the process).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Whether work on the legacy stream waits for it (created without
    /// `CU_STREAM_NON_BLOCKING`).
    pub(crate) fn blocking(&self) -> bool {
        self.flags & 1 == 0
    }
}

/// Where and when an event was last recorded: in the event, or in a page shared with other
/// processes (interprocess events).
#[repr(C)]
#[derive(Default)]
pub struct EventMark {
    /// `CLOCK_MONOTONIC` ns of the record, 0 if never recorded.
    pub(crate) recorded_ns: AtomicU64,
    /// Timeline sequence of the last kernel of the stream at the record (0 = none).
    pub(crate) after_seq: AtomicU64,
    /// Physical index of the device whose timeline `after_seq` is on.
    pub(crate) device: AtomicU64,
}

/// An event: its mark, and the capture it was last recorded in.
pub struct Event {
    /// The mark of an event of this process only.
    own: EventMark,
    /// Address of the mark shared with other processes (interprocess events; 0: `own`).
    shared: usize,
    /// The shared file of an interprocess event created here (what its handle names).
    file: Option<crate::ipc::Shared>,
    /// Address of the capture it was last recorded in (`capture`, 0 = recorded outside one).
    pub(crate) capture: AtomicUsize,
    /// Created with `CU_EVENT_DISABLE_TIMING`: no elapsed time.
    pub(crate) untimed: bool,
}

impl Event {
    /// A new event, as the handle the program gets.
    fn handle(untimed: bool, shared: usize, file: Option<crate::ipc::Shared>) -> CUevent {
        Box::into_raw(Box::new(Event {
            own: EventMark::default(),
            shared,
            file,
            capture: AtomicUsize::new(0),
            untimed,
        })) as CUevent
    }

    /// An event of this process reading and recording another process's mark (mapped for
    /// the process's life).
    pub(crate) fn imported(mark: *const EventMark) -> CUevent {
        Event::handle(true, mark as usize, None)
    }

    /// Its mark.
    pub(crate) fn mark(&self) -> &EventMark {
        if self.shared == 0 {
            &self.own
        } else {
            // SAFETY: a shared page mapped for the process's life, aligned, holding atomics.
            unsafe { &*(self.shared as *const EventMark) }
        }
    }

    /// The shared file of an interprocess event created here.
    pub(crate) fn shared_file(&self) -> Option<crate::ipc::Shared> {
        self.file
    }
}

static NEXT_STREAM_ID: AtomicU64 = AtomicU64::new(16);

/// `true` for the special handles (null, `CU_STREAM_LEGACY`, `CU_STREAM_PER_THREAD`).
pub(crate) fn is_special(s: CUstream) -> bool {
    (s as usize) <= 2
}

pub(crate) fn stream_ref(s: CUstream) -> Result<Option<&'static Stream>, u32> {
    if is_special(s) {
        return Ok(None);
    }
    // SAFETY: non-special stream handles are leaked Box<Stream>.
    Ok(Some(unsafe { &*(s as *const Stream) }))
}

pub(crate) fn ok_or(r: Result<u32, u32>) -> u32 {
    r.unwrap_or_else(|e| e)
}

/// `cuStreamCreateWithPriority`.
pub unsafe fn stream_create_with_priority(out: *mut CUstream, flags: u32, priority: i32) -> u32 {
    if !stream_flags_valid(flags) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    ok_or(require_current().map(|c| {
        let s = Box::new(Stream {
            ctx: c as *const Context as usize,
            flags,
            priority: priority.clamp(-5, 0),
            id: NEXT_STREAM_ID.fetch_add(1, SeqCst),
            last_seq: AtomicU64::new(0),
            capture: AtomicUsize::new(0),
        });
        write(out, Box::into_raw(s) as CUstream)
    }))
}

/// `cuStreamCreate`.
pub unsafe fn stream_create(out: *mut CUstream, flags: u32) -> u32 {
    // SAFETY: same contract.
    unsafe { stream_create_with_priority(out, flags, 0) }
}

/// `cuStreamDestroy_v2` (handles stay valid memory; they are small and never reused).
pub unsafe fn stream_destroy(s: CUstream) -> u32 {
    if is_special(s) {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    CUDA_SUCCESS
}

/// `cuStreamGetPriority`.
pub unsafe fn stream_get_priority(s: CUstream, out: *mut i32) -> u32 {
    ok_or(stream_ref(s).map(|st| write(out, st.map_or(0, |x| x.priority))))
}

/// `cuStreamGetFlags`.
pub unsafe fn stream_get_flags(s: CUstream, out: *mut u32) -> u32 {
    ok_or(stream_ref(s).map(|st| write(out, st.map_or(0, |x| x.flags))))
}

/// `cuStreamGetId`.
pub unsafe fn stream_get_id(s: CUstream, out: *mut u64) -> u32 {
    ok_or(stream_ref(s).map(|st| write(out, st.map_or(s as u64, |x| x.id))))
}

/// `cuStreamGetCtx`.
pub unsafe fn stream_get_ctx(s: CUstream, out: *mut CUcontext) -> u32 {
    ok_or(stream_ref(s).and_then(|st| match st {
        Some(x) => Ok(write(out, x.ctx as CUcontext)),
        None => require_current().map(|c| write(out, c as *const Context as CUcontext)),
    }))
}

/// `cuStreamGetCtx_v2` (no green contexts).
pub unsafe fn stream_get_ctx_v2(s: CUstream, out: *mut CUcontext, green: *mut *mut c_void) -> u32 {
    if !green.is_null() {
        write(green, std::ptr::null_mut());
    }
    // SAFETY: same contract.
    unsafe { stream_get_ctx(s, out) }
}

/// `cuStreamGetDevice`.
pub unsafe fn stream_get_device(s: CUstream, out: *mut i32) -> u32 {
    ok_or(stream_ref(s).and_then(|st| match st {
        // SAFETY: stream contexts are leaked Box<Context>.
        Some(x) => Ok(write(out, unsafe { (*(x.ctx as *const Context)).ordinal })),
        None => require_current().map(|c| write(out, c.ordinal)),
    }))
}

/// `cuStreamAddCallback`: runs the callback now; refused on a stream being captured.
pub unsafe fn stream_add_callback(
    s: CUstream,
    cb: Option<unsafe extern "C" fn(CUstream, u32, *mut c_void)>,
    user: *mut c_void,
    flags: u32,
) -> u32 {
    let Some(cb) = cb.filter(|_| flags == 0) else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    if crate::capture::of(s).is_some() {
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    // SAFETY: the user's callback with the user's data.
    unsafe { cb(s, CUDA_SUCCESS, user) };
    CUDA_SUCCESS
}

/// `cuLaunchHostFunc`: runs the function now, or when the graph runs on a stream being
/// captured.
pub unsafe fn launch_host_func(
    s: CUstream,
    f: Option<unsafe extern "C" fn(*mut c_void)>,
    user: *mut c_void,
) -> u32 {
    let Some(f) = f else {
        return CUDA_ERROR_INVALID_VALUE;
    };
    let user_data = user as usize;
    let node = || {
        let run = move || {
            // SAFETY: the user's function with the user's data, as recorded.
            unsafe { f(user_data as *mut c_void) };
            CUDA_SUCCESS
        };
        Node::Work(CUgraphNodeType::CU_GRAPH_NODE_TYPE_HOST, Box::new(run))
    };
    if let Some(rc) = crate::capture::add(s, node) {
        return rc;
    }
    // SAFETY: the user's function with the user's data.
    unsafe { f(user) };
    CUDA_SUCCESS
}

/// `cuStreamGetAttribute`: zeroed values (the union is 64 bytes).
pub unsafe fn stream_get_attribute(s: CUstream, _attr: u32, out: *mut [u8; 64]) -> u32 {
    ok_or(stream_ref(s).map(|_| write(out, [0; 64])))
}

/// `cuStreamSetAttribute` / `cuStreamCopyAttributes`: accepted.
pub unsafe fn stream_set_attribute(s: CUstream, _attr: u32, _v: *const c_void) -> u32 {
    ok_or(stream_ref(s).map(|_| CUDA_SUCCESS))
}

/// `cuStreamCopyAttributes`.
pub unsafe fn stream_copy_attributes(dst: CUstream, src: CUstream) -> u32 {
    ok_or(stream_ref(dst).and(stream_ref(src)).map(|_| CUDA_SUCCESS))
}

/// `cuEventCreate`.
pub unsafe fn event_create(out: *mut CUevent, flags: u32) -> u32 {
    if !event_flags_valid(flags) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    ok_or(require_current().and_then(|_| {
        let untimed = flags & EVENT_DISABLE_TIMING != 0;
        let event = if flags & EVENT_INTERPROCESS != 0 {
            let (mark, file) = crate::ipc::shared_event_mark()?;
            Event::handle(untimed, mark as usize, Some(file))
        } else {
            Event::handle(untimed, 0, None)
        };
        Ok(write(out, event))
    }))
}

pub(crate) fn event_ref(e: CUevent) -> Result<&'static Event, u32> {
    if e.is_null() {
        return Err(CUDA_ERROR_INVALID_HANDLE);
    }
    // SAFETY: event handles are leaked Box<Event>.
    Ok(unsafe { &*(e as *const Event) })
}

/// `cuEventDestroy_v2`.
pub unsafe fn event_destroy(e: CUevent) -> u32 {
    ok_or(event_ref(e).map(|_| CUDA_SUCCESS))
}
