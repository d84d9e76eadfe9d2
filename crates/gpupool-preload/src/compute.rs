//! Compute limits: every launch path is paced so that a tenant's GPU time stays within its share
//! of each device (`GPUPOOL_COMPUTE_LIMIT`, HAMi's `CUDA_DEVICE_SM_LIMIT`), also when it is
//! alone on the card.
//!
//! A launch is charged its expected run time (`cost`) against the tenant's pacing state in the
//! shared region (`gpupool_region::compute`), and waits when the tenant is ahead of its rate.
//! Waiting before submission is what keeps the device's queue, and therefore the device's time,
//! at the tenant's share: whether the program synchronises after every launch or never does.
//! Without a compute limit the hooks forward at once after one atomic load.

use crate::cost::{self, Timing};
use crate::pacing::{self, LONG_KERNEL_NS, WINDOW_NS};
use crate::real;
use gpupool_cuda::cu::{
    CUDA_LAUNCH_PARAMS_st, CUfunction, CUgraphExec, CUlaunchConfig_st, CUstream,
};
use gpupool_cuda::per_thread::per_thread;
use gpupool_cuda::result::CUDA_SUCCESS;
use gpupool_region::ComputeState;
use gpupool_region::MAX_DEVICES;
use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, AtomicU8, Ordering::*};

/// How far ahead of its rate a tenant may run (absorbs wake-up jitter; bounds bursts).
pub const BURST_NS: u64 = 5_000_000;

/// 0: not known yet, 1: no compute limit anywhere, 2: some device is limited.
static ACTIVE: AtomicU8 = AtomicU8::new(0);

fn active() -> bool {
    match ACTIVE.load(Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let on = matches!(crate::tenant::tenant(), Ok(Some(t)) if t.config.paces_compute());
            ACTIVE.store(if on { 2 } else { 1 }, Relaxed);
            on
        }
    }
}

/// Nanoseconds of `CLOCK_MONOTONIC` (shared by all processes of the machine), read from the
/// time-stamp counter between anchors on the launch path (`gpupool_cuda::clock::fast_ns`).
pub use gpupool_cuda::clock::fast_ns as now_ns;

/// Waits `ns`: sleeps to a learned margin before the end (the machine's timer latency), then
/// spins the rest (`gpupool_cuda::wait::adaptive`; measured against the alternatives by
/// `gpupool-waitbench`).
fn wait(ns: u64) {
    gpupool_cuda::wait::adaptive(gpupool_cuda::clock::monotonic_ns().saturating_add(ns));
}

/// The device a launch runs on: the only visible one, else the current context's.
fn ordinal() -> i32 {
    if crate::driver::cuda_device_uuids().len() == 1 {
        0
    } else {
        crate::driver::current_device().unwrap_or(0)
    }
}

/// Per ordinal: the tenant's pacing state (null until resolved).
static STATES: [AtomicPtr<ComputeState>; MAX_DEVICES] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_DEVICES];
/// Marks an ordinal resolved without a limit.
static NO_LIMIT: ComputeState = ComputeState::new();

/// The tenant's pacing state on device `ord` and the ordinal's index, when it is paced there
/// (resolved once per ordinal, then one atomic load).
fn pacing(ord: i32) -> Option<(&'static ComputeState, usize)> {
    let o = usize::try_from(ord).ok().filter(|o| *o < MAX_DEVICES)?;
    let p = STATES[o].load(Acquire);
    if !p.is_null() {
        // SAFETY: only ever set to 'static states (the region lives as long as the process).
        let state = unsafe { &*p };
        return (!std::ptr::eq(state, &NO_LIMIT)).then_some((state, o));
    }
    let state = resolve(ord).unwrap_or(&NO_LIMIT);
    STATES[o].store(state as *const ComputeState as *mut ComputeState, Release);
    (!std::ptr::eq(state, &NO_LIMIT)).then_some((state, o))
}

fn resolve(ord: i32) -> Option<&'static ComputeState> {
    let t = crate::tenant::tenant().ok()??;
    let o = usize::try_from(ord).ok()?;
    let uuid = crate::driver::device_uuid(ord).ok();
    let shares = crate::coordination::Shares::of(&t.config, o, uuid.as_ref())?;
    let dev = crate::tenant::device_index(t, ord).ok()?;
    let state = t.region.compute(dev)?;
    state.limit_pct.store(shares.limit, Relaxed);
    state.request_pct.store(shares.request, Relaxed);
    crate::coordination::join(t, ord, shares, state);
    Some(state)
}

/// After `fork`: the child resolves (and joins its cards) again.
pub fn forget_after_fork() {
    for s in &STATES {
        s.store(std::ptr::null_mut(), Relaxed);
    }
    crate::coordination::forget_after_fork();
}

/// Paces one launch of kernel shape (`handle`, `blocks`) on `stream`, then runs `launch`.
fn paced(handle: usize, blocks: u64, stream: CUstream, launch: impl FnOnce() -> u32) -> u32 {
    crate::idle_gate::enter();
    if !active() {
        return launch();
    }
    let Some((state, o)) = pacing(ordinal()) else {
        return launch();
    };
    // SAFETY: the launch's stream.
    if unsafe { crate::captures::recorded(stream) } {
        return launch();
    }
    let key = cost::shape_key(handle, blocks);
    let now = now_ns();
    let pct = crate::coordination::launching(o, now);
    let Some(estimate) = cost::estimate(key) else {
        // First launch of this shape: run it timed, then charge what it really took.
        let timing = match Timing::claim(key, o) {
            Some(t) if t.start(stream) => Some(t),
            Some(t) => {
                t.abandon();
                None
            }
            None => None,
        };
        let rc = launch();
        let took = match timing {
            Some(t) if rc == CUDA_SUCCESS => t.finish_now(stream),
            Some(t) => {
                t.abandon();
                None
            }
            None => None,
        };
        if rc == CUDA_SUCCESS {
            let cost = took.unwrap_or_else(cost::fallback);
            crate::coordination::charged(o, cost);
            let w = pacing::charge(state, now_ns(), cost, pct, BURST_NS);
            if w > 0 {
                wait(w);
            }
        }
        return rc;
    };
    crate::coordination::charged(o, estimate);
    let w = pacing::charge(state, now, estimate, pct, BURST_NS);
    if w > 0 {
        wait(w);
    }
    let long = estimate > LONG_KERNEL_NS;
    if long {
        hold_for_window(state, o, estimate, pct);
    }
    // Long kernels are always timed and recorded: their runs keep the windows
    // ([`hold_for_window`]).
    if long || cost::sample_due(now) {
        match Timing::claim(key, o) {
            Some(t) if t.start(stream) => {
                if long {
                    let at = now_ns();
                    t.completes(state, state.long_run_started(at, estimate), at);
                }
                let rc = launch();
                if rc == CUDA_SUCCESS {
                    t.finish(stream);
                } else {
                    t.abandon();
                }
                return rc;
            }
            // A stream being captured into a graph: the kernel does not run now.
            Some(t) => t.abandon(),
            // No timing pair free: recorded unmeasured, counted at its worst.
            None if long => {
                state.long_run_started(now_ns(), estimate);
            }
            None => {}
        }
    }
    launch()
}

/// How long a hold waits before it looks again.
const HOLD_RECHECK_NS: u64 = 5_000_000;

/// Waits until a long kernel of `cost` fits the window its predecessors left
/// ([`pacing::window_hold_ns`]), looking again after each wait (a running predecessor's
/// end becomes known meanwhile) and for at most one window in all.
fn hold_for_window(state: &ComputeState, o: usize, cost: u64, pct: u32) {
    let deadline = now_ns() + WINDOW_NS;
    loop {
        let now = now_ns();
        let contexts = crate::coordination::contexts(o);
        let others_until = crate::coordination::others_long_until(o);
        let hold = pacing::window_hold_ns(state, now, cost, pct, contexts, others_until)
            .min(deadline.saturating_sub(now));
        if hold == 0 {
            return;
        }
        // In steps: a profile of the last run (`coordination::share_runs`) may shorten it.
        let hold = hold.min(HOLD_RECHECK_NS);
        state.throttled_ns.fetch_add(hold, Relaxed);
        wait(hold);
    }
}

/// The stream a plain call means: the one given.
fn as_given(s: CUstream) -> CUstream {
    s
}

fn blocks(gx: u32, gy: u32, gz: u32) -> u64 {
    gx as u64 * gy as u64 * gz as u64
}

/// A launch configuration's blocks and stream (one block on the null stream when absent).
fn config_shape(config: *const CUlaunchConfig_st) -> (u64, CUstream) {
    // SAFETY: null or the caller's launch configuration.
    match unsafe { config.as_ref() } {
        Some(c) => (blocks(c.gridDimX, c.gridDimY, c.gridDimZ), c.hStream),
        None => (1, std::ptr::null_mut()),
    }
}

/// A paced launch hook with the C signature declared for `NAME`: `SHAPE` gives the launch's
/// (handle, blocks, stream) from the arguments, `ON` maps the stream (see [`per_thread`]), and
/// the call goes to the real `NAME`.
macro_rules! paced_launch {
    ({ $hook:ident, $on:path, $shape:expr } ; $name:ident ( $($a:ident : $t:ty),* )) => {
        #[doc = concat!("Hook for `", stringify!($name), "`.")]
        #[allow(clippy::too_many_arguments)]
        pub unsafe fn $hook($($a: $t),*) -> u32 {
            let (handle, n_blocks, stream) = ($shape)($($a),*);
            paced(handle, n_blocks, $on(stream), || {
                // SAFETY: forwarding.
                unsafe { real::$name($($a),*) }
            })
        }
    };
}

/// Launch hooks, each with its per-thread-stream (`_ptsz`) twin, which has the same
/// parameters: `NAME, NAME_ptsz => HOOK, HOOK_ptsz as SHAPE;`.
macro_rules! paced_launches {
    ($( $name:ident, $name_ptsz:ident => $hook:ident, $hook_ptsz:ident as $shape:expr ; )*) => {$(
        gpupool_cuda::signature_of!{ $name adapt paced_launch { $hook, as_given, $shape } }
        gpupool_cuda::signature_of!{ $name_ptsz adapt paced_launch { $hook_ptsz, per_thread, $shape } }
    )*};
}

paced_launches! {
    cuLaunchKernel, cuLaunchKernel_ptsz => launch_kernel, launch_kernel_ptsz
        as |f: CUfunction, gx, gy, gz, _, _, _, _, s, _, _| (f as usize, blocks(gx, gy, gz), s);
    cuLaunchKernelEx, cuLaunchKernelEx_ptsz => launch_kernel_ex, launch_kernel_ex_ptsz
        as |config, f: CUfunction, _, _| {
            let (b, s) = config_shape(config);
            (f as usize, b, s)
        };
    cuLaunchCooperativeKernel, cuLaunchCooperativeKernel_ptsz
        => launch_cooperative_kernel, launch_cooperative_kernel_ptsz
        as |f: CUfunction, gx, gy, gz, _, _, _, _, s, _| (f as usize, blocks(gx, gy, gz), s);
    // A graph is one shape, timed as a whole.
    cuGraphLaunch, cuGraphLaunch_ptsz => graph_launch, graph_launch_ptsz
        as |exec: CUgraphExec, s| (exec as usize, 1, s);
}

/// Hook for `cuLaunchCooperativeKernelMultiDevice`: every entry is charged (on the current
/// device's pacing) before the one call.
pub unsafe fn launch_cooperative_kernel_multi_device(
    list: *mut CUDA_LAUNCH_PARAMS_st,
    n: u32,
    flags: u32,
) -> u32 {
    if active() && !list.is_null() && n > 0 {
        if let Some((state, o)) = pacing(ordinal()) {
            let pct = crate::coordination::launching(o, now_ns());
            // SAFETY: the caller passes n entries.
            let entries = unsafe { std::slice::from_raw_parts(list, n as usize) };
            let total: u64 = entries
                .iter()
                .map(|e| {
                    let key = cost::shape_key(
                        e.function as usize,
                        blocks(e.gridDimX, e.gridDimY, e.gridDimZ),
                    );
                    cost::estimate(key).unwrap_or_else(cost::fallback)
                })
                .sum();
            let w = pacing::charge(state, now_ns(), total, pct, BURST_NS);
            if w > 0 {
                wait(w);
            }
        }
    }
    // SAFETY: forwarding.
    unsafe { real::cuLaunchCooperativeKernelMultiDevice(list, n, flags) }
}
