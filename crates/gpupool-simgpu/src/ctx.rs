//! `cuInit`, contexts (primary and created), the per-thread current-context stack.

use crate::machine::{machine, Device, Machine};
use gpupool_cuda::cu::{CUcontext, CUdevice};
use gpupool_cuda::result::*;
use gpupool_cuda::spinlock::{ForkLock, SpinLock};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// A context. Handles given to programs are `*mut Context` (never freed: a destroyed context is
/// marked dead so stale handles give `CUDA_ERROR_INVALID_CONTEXT` instead of a crash).
pub struct Context {
    /// CUDA ordinal.
    pub ordinal: i32,
    /// Creation flags.
    pub flags: AtomicU32,
    /// Primary context of its device?
    pub primary: bool,
    /// Retain count (primary) / alive flag (others).
    pub refs: AtomicU32,
    /// Unique id.
    pub id: u64,
    /// Last kernel queued in this context on any stream (timeline sequence, 0 = none).
    pub last_any: AtomicU64,
    /// Last kernel queued on its legacy (null) stream.
    pub legacy_last: AtomicU64,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static PRIMARY: SpinLock<Vec<usize>> = SpinLock::new(Vec::new());

thread_local! {
    static STACK: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Checks `cuInit` was called and returns the machine.
pub fn initialised() -> Result<&'static Machine, u32> {
    if !INITIALISED.load(SeqCst) {
        return Err(CUDA_ERROR_NOT_INITIALIZED);
    }
    let m = machine()?;
    // A process another one locked for a checkpoint waits here until it is unlocked.
    m.wait_while_checkpointed();
    Ok(m)
}

/// Device by ordinal, after init.
pub fn device(ordinal: CUdevice) -> Result<(&'static Machine, &'static Device), u32> {
    let m = initialised()?;
    m.device(ordinal)
        .map(|d| (m, d))
        .ok_or(CUDA_ERROR_INVALID_DEVICE)
}

/// `cuInit`.
pub unsafe fn cu_init(flags: u32) -> u32 {
    if flags != 0 {
        return CUDA_ERROR_INVALID_VALUE;
    }
    match machine() {
        Ok(_) => {
            INITIALISED.store(true, SeqCst);
            CUDA_SUCCESS
        }
        Err(e) => e,
    }
}

/// The current context, if any and alive.
pub fn current() -> Option<&'static Context> {
    let p = STACK.with(|s| s.borrow().last().copied())?;
    let c = ctx_ref(p as CUcontext).ok()?;
    (c.refs.load(SeqCst) > 0).then_some(c)
}

/// The current context or `CUDA_ERROR_INVALID_CONTEXT`.
pub fn require_current() -> Result<&'static Context, u32> {
    initialised()?;
    current().ok_or(CUDA_ERROR_INVALID_CONTEXT)
}

/// Checks a handle is a live context of ours.
pub fn ctx_ref(ctx: CUcontext) -> Result<&'static Context, u32> {
    if ctx.is_null() {
        return Err(CUDA_ERROR_INVALID_CONTEXT);
    }
    let all = ALL.lock();
    if !all.contains(&(ctx as usize)) {
        return Err(CUDA_ERROR_INVALID_CONTEXT);
    }
    // SAFETY: every pointer in ALL is a leaked Box<Context>.
    Ok(unsafe { &*(ctx as *const Context) })
}

static ALL: SpinLock<Vec<usize>> = SpinLock::new(Vec::new());

fn new_context(
    m: &Machine,
    dev: &Device,
    ordinal: i32,
    flags: u32,
    primary: bool,
) -> Result<usize, u32> {
    m.reserve(dev, dev.spec.context_memory)?;
    let c = Box::new(Context {
        ordinal,
        flags: AtomicU32::new(flags),
        primary,
        refs: AtomicU32::new(1),
        id: NEXT_ID.fetch_add(1, SeqCst),
        last_any: AtomicU64::new(0),
        legacy_last: AtomicU64::new(0),
    });
    let p = Box::into_raw(c) as usize;
    ALL.lock().push(p);
    Ok(p)
}

fn set_current(p: Option<usize>) {
    STACK.with(|s| {
        let mut s = s.borrow_mut();
        s.pop();
        if let Some(p) = p {
            s.push(p);
        }
    });
}

fn write<T>(out: *mut T, v: T) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: non-null out pointer supplied by the caller for exactly this value.
    unsafe { out.write(v) };
    CUDA_SUCCESS
}

fn result(r: Result<u32, u32>) -> u32 {
    r.unwrap_or_else(|e| e)
}

/// Retains (creating on first use) the primary context of `ordinal`.
pub fn primary_retain(ordinal: CUdevice) -> Result<CUcontext, u32> {
    let (m, dev) = device(ordinal)?;
    let mut prim = PRIMARY.lock();
    if prim.len() < m.all.len() {
        prim.resize(m.all.len(), 0);
    }
    let slot = &mut prim[dev.physical];
    if *slot != 0 {
        // SAFETY: primary slots hold leaked Box<Context>.
        let c = unsafe { &*(*slot as *const Context) };
        if c.refs.fetch_add(1, SeqCst) == 0 {
            // Re-activated after a full release: charge its memory again.
            if let Err(e) = m.reserve(dev, dev.spec.context_memory) {
                c.refs.fetch_sub(1, SeqCst);
                return Err(e);
            }
        }
        return Ok(*slot as CUcontext);
    }
    *slot = new_context(m, dev, ordinal, 0, true)?;
    Ok(*slot as CUcontext)
}

/// `cuDevicePrimaryCtxRetain`.
pub unsafe fn primary_ctx_retain(pctx: *mut CUcontext, ordinal: CUdevice) -> u32 {
    if crate::machine::tracing() {
        eprintln!("gpupool simulated GPU: cuDevicePrimaryCtxRetain({ordinal})");
    }
    result(primary_retain(ordinal).map(|c| write(pctx, c)))
}

/// `cuDevicePrimaryCtxRelease`.
pub unsafe fn primary_ctx_release(ordinal: CUdevice) -> u32 {
    result((|| {
        let (m, dev) = device(ordinal)?;
        let prim = PRIMARY.lock();
        let p = prim.get(dev.physical).copied().unwrap_or(0);
        if p == 0 {
            return Err(CUDA_ERROR_INVALID_CONTEXT);
        }
        // SAFETY: primary slots hold leaked Box<Context>.
        let c = unsafe { &*(p as *const Context) };
        match c.refs.fetch_update(SeqCst, SeqCst, |r| r.checked_sub(1)) {
            Ok(1) => m.unreserve(dev, dev.spec.context_memory),
            Ok(_) => {}
            Err(_) => return Err(CUDA_ERROR_INVALID_CONTEXT),
        }
        Ok(CUDA_SUCCESS)
    })())
}

/// `cuDevicePrimaryCtxReset`: releases all retains.
pub unsafe fn primary_ctx_reset(ordinal: CUdevice) -> u32 {
    result((|| {
        let (m, dev) = device(ordinal)?;
        let prim = PRIMARY.lock();
        if let Some(&p) = prim.get(dev.physical).filter(|p| **p != 0) {
            // SAFETY: primary slots hold leaked Box<Context>.
            let c = unsafe { &*(p as *const Context) };
            if c.refs.swap(0, SeqCst) > 0 {
                m.unreserve(dev, dev.spec.context_memory);
            }
        }
        Ok(CUDA_SUCCESS)
    })())
}

/// `cuDevicePrimaryCtxGetState`.
pub unsafe fn primary_ctx_get_state(ordinal: CUdevice, flags: *mut u32, active: *mut i32) -> u32 {
    result((|| {
        let (_, dev) = device(ordinal)?;
        let prim = PRIMARY.lock();
        let (f, a) = match prim.get(dev.physical).filter(|p| **p != 0) {
            // SAFETY: primary slots hold leaked Box<Context>.
            Some(&p) => unsafe {
                let c = &*(p as *const Context);
                (c.flags.load(SeqCst), (c.refs.load(SeqCst) > 0) as i32)
            },
            None => (0, 0),
        };
        if flags.is_null() || active.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        write(flags, f);
        Ok(write(active, a))
    })())
}

/// `cuDevicePrimaryCtxSetFlags`.
pub unsafe fn primary_ctx_set_flags(ordinal: CUdevice, flags: u32) -> u32 {
    result((|| {
        let c = primary_retain(ordinal)?;
        // SAFETY: primary_retain returned a live context.
        unsafe { (*(c as *const Context)).flags.store(flags, SeqCst) };
        primary_ctx_release(ordinal);
        Ok(CUDA_SUCCESS)
    })())
}

/// `cuCtxCreate_v2`.
pub unsafe fn ctx_create(pctx: *mut CUcontext, flags: u32, ordinal: CUdevice) -> u32 {
    result((|| {
        let (m, dev) = device(ordinal)?;
        let p = new_context(m, dev, ordinal, flags, false)?;
        STACK.with(|s| s.borrow_mut().push(p));
        Ok(write(pctx, p as CUcontext))
    })())
}

/// `cuCtxCreate_v3` (execution-affinity parameters ignored).
pub unsafe fn ctx_create_v3(
    pctx: *mut CUcontext,
    _params: *mut libc::c_void,
    _n: i32,
    flags: u32,
    dev: CUdevice,
) -> u32 {
    // SAFETY: same contract as cuCtxCreate_v2.
    unsafe { ctx_create(pctx, flags, dev) }
}

/// `cuCtxCreate_v4` (creation parameters ignored).
pub unsafe fn ctx_create_v4(
    pctx: *mut CUcontext,
    _params: *mut libc::c_void,
    flags: u32,
    dev: CUdevice,
) -> u32 {
    // SAFETY: same contract as cuCtxCreate_v2.
    unsafe { ctx_create(pctx, flags, dev) }
}

/// `cuCtxDestroy_v2`.
pub unsafe fn ctx_destroy(ctx: CUcontext) -> u32 {
    result((|| {
        let c = ctx_ref(ctx)?;
        if c.primary {
            return Err(CUDA_ERROR_INVALID_CONTEXT);
        }
        if c.refs.swap(0, SeqCst) == 0 {
            return Err(CUDA_ERROR_INVALID_CONTEXT);
        }
        let (m, dev) = device(c.ordinal)?;
        m.unreserve(dev, dev.spec.context_memory);
        STACK.with(|s| s.borrow_mut().retain(|p| *p != ctx as usize));
        Ok(CUDA_SUCCESS)
    })())
}

/// `cuCtxGetCurrent`.
pub unsafe fn ctx_get_current(pctx: *mut CUcontext) -> u32 {
    if let Err(e) = initialised() {
        return e;
    }
    let p = STACK.with(|s| s.borrow().last().copied()).unwrap_or(0);
    write(pctx, p as CUcontext)
}

/// `cuCtxSetCurrent`.
pub unsafe fn ctx_set_current(ctx: CUcontext) -> u32 {
    result((|| {
        initialised()?;
        if ctx.is_null() {
            set_current(None);
        } else {
            ctx_ref(ctx)?;
            set_current(Some(ctx as usize));
        }
        Ok(CUDA_SUCCESS)
    })())
}

/// `cuCtxPushCurrent_v2`.
pub unsafe fn ctx_push_current(ctx: CUcontext) -> u32 {
    result((|| {
        ctx_ref(ctx)?;
        STACK.with(|s| s.borrow_mut().push(ctx as usize));
        Ok(CUDA_SUCCESS)
    })())
}

/// `cuCtxPopCurrent_v2`.
pub unsafe fn ctx_pop_current(pctx: *mut CUcontext) -> u32 {
    result((|| {
        initialised()?;
        let p = STACK
            .with(|s| s.borrow_mut().pop())
            .ok_or(CUDA_ERROR_INVALID_CONTEXT)?;
        if !pctx.is_null() {
            write(pctx, p as CUcontext);
        }
        Ok(CUDA_SUCCESS)
    })())
}

/// `cuCtxGetDevice`.
pub unsafe fn ctx_get_device(out: *mut CUdevice) -> u32 {
    result(require_current().map(|c| write(out, c.ordinal)))
}

/// `cuCtxGetFlags`.
pub unsafe fn ctx_get_flags(out: *mut u32) -> u32 {
    result(require_current().map(|c| write(out, c.flags.load(SeqCst))))
}

/// `cuCtxSetFlags`.
pub unsafe fn ctx_set_flags(flags: u32) -> u32 {
    result(require_current().map(|c| {
        c.flags.store(flags, SeqCst);
        CUDA_SUCCESS
    }))
}

/// `cuCtxGetId`.
pub unsafe fn ctx_get_id(ctx: CUcontext, out: *mut u64) -> u32 {
    let c = if ctx.is_null() {
        require_current()
    } else {
        ctx_ref(ctx)
    };
    result(c.map(|c| write(out, c.id)))
}

/// `cuCtxGetApiVersion`.
pub unsafe fn ctx_get_api_version(ctx: CUcontext, out: *mut u32) -> u32 {
    let c = if ctx.is_null() {
        require_current()
    } else {
        ctx_ref(ctx)
    };
    result(c.map(|_| write(out, 3020)))
}

/// `cuCtxGetLimit`: plausible defaults.
pub unsafe fn ctx_get_limit(out: *mut usize, limit: u32) -> u32 {
    result(require_current().map(|_| {
        let v = match limit {
            0 => 1024,    // stack size
            1 => 1 << 20, // printf fifo
            2 => 8 << 20, // malloc heap
            3 => 2,       // dev runtime sync depth
            4 => 2048,    // pending launch count
            5 => 32,      // max L2 fetch granularity
            6 => 0,       // persisting L2 cache size
            // Shared memory per block (not a CIG context: the device's opt-in maximum).
            7 => crate::module::MAX_SHARED_PER_BLOCK as usize,
            8 | 9 => 0, // CIG context, CIG shared memory fallback
            _ => return CUDA_ERROR_INVALID_VALUE,
        };
        write(out, v)
    }))
}

/// `cuCtxSetLimit`: accepted and ignored.
pub unsafe fn ctx_set_limit(_limit: u32, _value: usize) -> u32 {
    result(require_current().map(|_| CUDA_SUCCESS))
}

/// `cuCtxGetCacheConfig`.
pub unsafe fn ctx_get_cache_config(out: *mut u32) -> u32 {
    result(require_current().map(|_| write(out, 0)))
}

/// `cuCtxSetCacheConfig`.
pub unsafe fn ctx_set_cache_config(_cfg: u32) -> u32 {
    result(require_current().map(|_| CUDA_SUCCESS))
}

/// `cuCtxEnablePeerAccess`: no two simulated devices can reach each other's memory
/// (`cuDeviceCanAccessPeer` says 0), so a valid request is `PEER_ACCESS_UNSUPPORTED`.
pub unsafe fn ctx_enable_peer_access(peer: CUcontext, flags: u32) -> u32 {
    let own = match require_current() {
        Ok(c) => c,
        Err(e) => return e,
    };
    let peer = match ctx_ref(peer) {
        Ok(p) => p,
        Err(e) => return e,
    };
    if flags != 0 {
        CUDA_ERROR_INVALID_VALUE
    } else if peer.ordinal == own.ordinal {
        CUDA_ERROR_INVALID_DEVICE
    } else {
        CUDA_ERROR_PEER_ACCESS_UNSUPPORTED
    }
}

/// `cuCtxDisablePeerAccess`: peer access is never enabled (see [`ctx_enable_peer_access`]).
pub unsafe fn ctx_disable_peer_access(peer: CUcontext) -> u32 {
    match require_current().and_then(|_| ctx_ref(peer)) {
        Ok(_) => CUDA_ERROR_PEER_ACCESS_NOT_ENABLED,
        Err(e) => e,
    }
}

/// `cuCtxGetStreamPriorityRange`.
pub unsafe fn ctx_get_stream_priority_range(least: *mut i32, greatest: *mut i32) -> u32 {
    if !least.is_null() {
        write(least, 0);
    }
    if !greatest.is_null() {
        write(greatest, -5);
    }
    CUDA_SUCCESS
}

/// This module's locks, in the order they nest (for fork handlers).
pub fn fork_locks() -> [&'static dyn ForkLock; 2] {
    [&PRIMARY, &ALL]
}
