//! How long a launch runs on the GPU, learnt from the device itself.
//!
//! Each kernel shape (function, and grid size rounded to a power of two) has an estimate in a
//! fixed lock-free table. Estimates come from timing events recorded around launches: the
//! first launch of a shape is timed synchronously (the hook waits for it, once), later ones are
//! sampled at most once per [`SAMPLE_EVERY_NS`] per process and timed by a meter thread, so the
//! launch path only reads atomics. When kernels of other tenants share the device (time
//! slicing), a timed launch includes their slices; the estimate is the third lowest of the
//! shape's last 16 samples, which such outliers move little and which has little bias on
//! ordinary jitter (an earlier min-leaning average ran 10-20 % low on a real H100; the lower
//! quartile of 8, used before, moved whenever 6 of 8 samples were stretched, which a 100 µs
//! kernel beside a tenant that synchronises after every launch saw often enough to lose a
//! tenth of its share).

use crate::driver::events;
use crate::pacing::LONG_KERNEL_NS;
use gpupool_cuda::cu::{CUcontext, CUevent, CUstream};
use gpupool_region::compute::LONG_RUNS;
use gpupool_region::ComputeState;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, Ordering::*};

/// Kernel shapes remembered (a full table falls back to the process's last sample).
const SHAPES: usize = 1024;
/// Sampling period per process.
pub const SAMPLE_EVERY_NS: u64 = 1_000_000;
/// Timing-event pairs in flight at once.
const PAIRS: usize = 16;

/// Samples kept per shape; the estimate is the third lowest of them.
const WINDOW: usize = 16;

struct Shape {
    key: AtomicU64,
    estimate_ns: AtomicU64,
    /// Next sample slot (count of samples so far).
    next: AtomicU64,
    samples: [AtomicU64; WINDOW],
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SHAPE: Shape = Shape {
    key: AtomicU64::new(0),
    estimate_ns: AtomicU64::new(0),
    next: AtomicU64::new(0),
    samples: [const { AtomicU64::new(0) }; WINDOW],
};
static TABLE: [Shape; SHAPES] = [EMPTY_SHAPE; SHAPES];
/// The last estimate learnt, for shapes that do not fit in the table.
static FALLBACK_NS: AtomicU64 = AtomicU64::new(0);
static NEXT_SAMPLE_NS: AtomicU64 = AtomicU64::new(0);

/// Key of a launch: the function (or graph) handle and the grid size's power of two.
pub fn shape_key(handle: usize, blocks: u64) -> u64 {
    let bucket = 64 - blocks.max(1).leading_zeros() as u64;
    let k = (handle as u64).rotate_left(7) ^ (bucket << 58);
    k | 1
}

fn slot_of(key: u64, insert: bool) -> Option<&'static Shape> {
    let start = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize % SHAPES;
    for i in 0..16 {
        let s = &TABLE[(start + i) % SHAPES];
        let k = s.key.load(Acquire);
        if k == key {
            return Some(s);
        }
        if k == 0 {
            if !insert {
                return None;
            }
            match s.key.compare_exchange(0, key, AcqRel, Acquire) {
                Ok(_) => return Some(s),
                Err(k) if k == key => return Some(s),
                Err(_) => continue,
            }
        }
    }
    None
}

/// The estimate for a shape, `None` when it was never timed.
#[inline]
pub fn estimate(key: u64) -> Option<u64> {
    match slot_of(key, false) {
        Some(s) => match s.estimate_ns.load(Relaxed) {
            0 => None,
            e => Some(e),
        },
        None => None,
    }
}

/// Folds a timed run into the shape's estimate (the third lowest of its last [`WINDOW`]
/// samples, the lowest while it has fewer than 8: little bias on a kernel's ordinary jitter,
/// and unmoved while fewer than 14 of 16 samples are stretched by other tenants' time
/// slices); returns it. Long kernels ([`LONG_KERNEL_NS`]) take the lowest sample: their
/// samples are not corrected for other tenants' time slices (see [`net`]), a run is never
/// shorter than its GPU time, and one run alone among 16 suffices.
pub fn learn(key: u64, sample_ns: u64) -> u64 {
    let sample = sample_ns.max(1);
    FALLBACK_NS.store(sample, Relaxed);
    let Some(s) = slot_of(key, true) else {
        return sample;
    };
    let n = s.next.fetch_add(1, AcqRel);
    s.samples[n as usize % WINDOW].store(sample, Relaxed);
    let have = (n as usize + 1).min(WINDOW);
    let mut v = [0u64; WINDOW];
    for (i, x) in v.iter_mut().enumerate().take(have) {
        *x = s.samples[i].load(Relaxed);
    }
    let v = &mut v[..have];
    v.sort_unstable();
    let estimate = if v[0] > LONG_KERNEL_NS {
        v[0]
    } else {
        v[have / 8].max(1)
    };
    s.estimate_ns.store(estimate, Relaxed);
    estimate
}

/// The shape of each long kernel this process timed, by its record's slot in the tenant's
/// `ComputeState::long_runs`: `[start on the GPU, shape key]`, until [`relearn_long`] uses it.
static LONG_SHAPES: [[AtomicU64; 2]; LONG_RUNS] =
    [const { [AtomicU64::new(0), AtomicU64::new(0)] }; LONG_RUNS];

/// Learns the GPU time of the long kernel in record `slot` that started at `start_ns` again,
/// as `gpu_ns` (from the profile of the other tenants' kernels beside it), once, if this
/// process timed it. Its run, stretched by the others' time slices, is its sample until then:
/// a tenant whose every run shared the card would be charged the stretch (a 10 % tenant beside
/// two others got 6–8 %).
pub fn relearn_long(slot: usize, start_ns: u64, gpu_ns: u64) {
    let shape = &LONG_SHAPES[slot % LONG_RUNS];
    if start_ns == 0
        || shape[0]
            .compare_exchange(start_ns, 0, AcqRel, Relaxed)
            .is_err()
    {
        return;
    }
    learn(shape[1].load(Relaxed), gpu_ns);
}

/// The estimate to charge when a shape has none and cannot be timed now.
pub fn fallback() -> u64 {
    FALLBACK_NS.load(Relaxed)
}

/// Whether this launch should be sampled (claims the sampling turn).
#[inline]
pub fn sample_due(now_ns: u64) -> bool {
    let next = NEXT_SAMPLE_NS.load(Relaxed);
    now_ns >= next
        && NEXT_SAMPLE_NS
            .compare_exchange(next, now_ns + SAMPLE_EVERY_NS, Relaxed, Relaxed)
            .is_ok()
}

/// A pair of timing events around one launch.
struct Pair {
    /// 0 free, 1 being recorded, 2 waiting for the meter.
    state: AtomicU8,
    start: AtomicPtr<std::ffi::c_void>,
    end: AtomicPtr<std::ffi::c_void>,
    ctx: AtomicPtr<std::ffi::c_void>,
    key: AtomicU64,
    /// What the two events measure with nothing between them (subtracted from samples).
    baseline_ns: AtomicU64,
    /// Ordinal of the device the timed launch ran on.
    ordinal: AtomicU64,
    /// The pacing state whose long-kernel record the timed launch completes (null: none),
    /// with the record's slot and submission time.
    run_state: AtomicPtr<ComputeState>,
    run_slot: AtomicU64,
    run_submitted_ns: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_PAIR: Pair = Pair {
    state: AtomicU8::new(0),
    start: AtomicPtr::new(std::ptr::null_mut()),
    end: AtomicPtr::new(std::ptr::null_mut()),
    ctx: AtomicPtr::new(std::ptr::null_mut()),
    key: AtomicU64::new(0),
    baseline_ns: AtomicU64::new(0),
    ordinal: AtomicU64::new(0),
    run_state: AtomicPtr::new(std::ptr::null_mut()),
    run_slot: AtomicU64::new(0),
    run_submitted_ns: AtomicU64::new(0),
};
static PAIRS_IN_FLIGHT: [Pair; PAIRS] = [EMPTY_PAIR; PAIRS];

/// Time two events recorded back to back measure: the launch path's own overhead.
fn baseline(a: CUevent, b: CUevent) -> u64 {
    let null = std::ptr::null_mut();
    (0..3)
        .filter_map(|_| {
            // SAFETY: events just created in the current context; its null stream.
            unsafe {
                (events::record(a, null) && events::record(b, null) && events::synchronize(b))
                    .then(|| events::elapsed_ns(a, b))
                    .flatten()
            }
        })
        .min()
        .unwrap_or(0)
}

/// A sample without the events' own overhead, nor (short kernels) the other tenants' time
/// slices. A long kernel's run is kept whole: taking the others' recent share off it ran
/// below the kernel's GPU time whenever it overlapped them for part of its run only (tenants
/// beside others got 2–3 points over their limits with 20 ms kernels).
fn net(p: &Pair, ns: u64) -> u64 {
    let o = p.ordinal.load(Relaxed) as usize;
    let run = ns.saturating_sub(p.baseline_ns.load(Relaxed));
    if run > LONG_KERNEL_NS {
        run
    } else {
        crate::others_share::exclusive_ns(o, run)
    }
}

/// A claimed pair: events created in the caller's current context.
pub struct Timing {
    index: usize,
}

impl Timing {
    /// Claims a free pair whose events belong to the current context, for a launch on device
    /// `ordinal`; `None` if none is free or events cannot be made.
    pub fn claim(key: u64, ordinal: usize) -> Option<Timing> {
        let ctx = events::current_context()?;
        for (i, p) in PAIRS_IN_FLIGHT.iter().enumerate() {
            if p.state.compare_exchange(0, 1, Acquire, Relaxed).is_err() {
                continue;
            }
            if p.ctx.load(Relaxed) != ctx as *mut _ || p.start.load(Relaxed).is_null() {
                let old = (p.start.load(Relaxed), p.end.load(Relaxed));
                let (Some(a), Some(b)) = (events::create(), events::create()) else {
                    p.state.store(0, Release);
                    return None;
                };
                for e in [old.0, old.1] {
                    if !e.is_null() {
                        // SAFETY: events this table created.
                        unsafe { events::destroy(e as CUevent) };
                    }
                }
                p.start.store(a as *mut _, Relaxed);
                p.end.store(b as *mut _, Relaxed);
                p.ctx.store(ctx as *mut _, Relaxed);
                p.baseline_ns.store(baseline(a, b), Relaxed);
            }
            p.key.store(key, Relaxed);
            p.ordinal.store(ordinal as u64, Relaxed);
            p.run_state.store(std::ptr::null_mut(), Relaxed);
            return Some(Timing { index: i });
        }
        None
    }

    fn pair(&self) -> &'static Pair {
        &PAIRS_IN_FLIGHT[self.index]
    }

    /// Has the meter complete `state`'s long-kernel record `slot` (submitted at
    /// `submitted_ns`) with the run this pair times.
    pub(crate) fn completes(&self, state: &'static ComputeState, slot: usize, submitted_ns: u64) {
        let p = self.pair();
        p.run_slot.store(slot as u64, Relaxed);
        p.run_submitted_ns.store(submitted_ns, Relaxed);
        p.run_state
            .store(state as *const ComputeState as *mut ComputeState, Relaxed);
    }

    /// Records the start event on `stream` (before the launch); false (nothing recorded) when
    /// the stream is being captured into a graph.
    pub(crate) fn start(&self, stream: CUstream) -> bool {
        // SAFETY: the caller's stream.
        if unsafe { events::capturing(stream) } {
            return false;
        }
        // SAFETY: the pair's event; the caller's stream.
        unsafe { events::record(self.pair().start.load(Relaxed) as CUevent, stream) }
    }

    /// Records the end event (after the launch) and hands the pair to the meter thread.
    pub(crate) fn finish(self, stream: CUstream) {
        let p = self.pair();
        // SAFETY: the pair's event; the caller's stream.
        if unsafe { events::record(p.end.load(Relaxed) as CUevent, stream) } {
            p.state.store(2, Release);
            start_meter();
        } else {
            p.state.store(0, Release);
        }
    }

    /// Records the end event and waits for it: the launch's duration, learnt.
    pub(crate) fn finish_now(self, stream: CUstream) -> Option<u64> {
        let p = self.pair();
        let (a, b) = (
            p.start.load(Relaxed) as CUevent,
            p.end.load(Relaxed) as CUevent,
        );
        // SAFETY: the pair's events; the caller's stream.
        let ns = if unsafe { events::record(b, stream) } && unsafe { events::synchronize(b) } {
            // SAFETY: the pair's events.
            unsafe { events::elapsed_ns(a, b) }
        } else {
            None
        };
        let learnt = ns.map(|ns| learn(p.key.load(Relaxed), net(p, ns)));
        p.state.store(0, Release);
        learnt
    }

    /// Gives the pair back unused (the launch failed).
    pub fn abandon(self) {
        self.pair().state.store(0, Release);
    }
}

/// Times finished pairs; returns how many are still waiting.
pub fn meter_once() -> usize {
    let mut waiting = 0;
    for p in &PAIRS_IN_FLIGHT {
        if p.state.load(Acquire) != 2 {
            continue;
        }
        let ctx = p.ctx.load(Relaxed) as CUcontext;
        let (a, b) = (
            p.start.load(Relaxed) as CUevent,
            p.end.load(Relaxed) as CUevent,
        );
        // SAFETY: the pair's event and the context it was made in.
        match unsafe { events::query(ctx, b) } {
            Some(true) => {
                // SAFETY: the pair's events.
                if let Some(ns) = unsafe { events::elapsed_ns(a, b) } {
                    learn(p.key.load(Relaxed), net(p, ns));
                    let state = p.run_state.load(Relaxed);
                    if !state.is_null() {
                        // SAFETY: only ever set to 'static states (`Timing::completes`).
                        let state = unsafe { &*state };
                        let run = ns.saturating_sub(p.baseline_ns.load(Relaxed));
                        let slot = p.run_slot.load(Relaxed) as usize;
                        let started = state.long_run_ended(
                            slot,
                            p.run_submitted_ns.load(Relaxed),
                            gpupool_cuda::clock::monotonic_ns(),
                            run,
                        );
                        if let Some(start) = started {
                            let shape = &LONG_SHAPES[slot % LONG_RUNS];
                            shape[1].store(p.key.load(Relaxed), Relaxed);
                            shape[0].store(start, Release);
                        }
                    }
                }
                p.state.store(0, Release);
            }
            Some(false) => waiting += 1,
            None => p.state.store(0, Release),
        }
    }
    waiting
}

static METER_STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn start_meter() {
    if METER_STARTED.swap(true, AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("gpupool-meter".into())
        .spawn(|| loop {
            meter_once();
            std::thread::sleep(std::time::Duration::from_micros(500));
        });
    if spawned.is_err() {
        METER_STARTED.store(false, Release);
    }
}

/// After `fork`: the child has no meter thread.
pub fn forget_meter_after_fork() {
    METER_STARTED.store(false, Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_kernel_is_learnt_again_once_from_its_profile() {
        let ms = 1_000_000;
        let key = shape_key(0x7777_0000, 64);
        // Its only run shared the card: 40 ms for 20 ms of GPU time.
        assert_eq!(learn(key, 40 * ms), 40 * ms);
        LONG_SHAPES[3][1].store(key, Relaxed);
        LONG_SHAPES[3][0].store(5_000, Release);
        // Another run's start, or another slot: ignored.
        relearn_long(3, 4_999, 21 * ms);
        relearn_long(4, 5_000, 21 * ms);
        assert_eq!(estimate(key), Some(40 * ms));
        relearn_long(3 + LONG_RUNS, 5_000, 21 * ms);
        assert_eq!(estimate(key), Some(21 * ms));
        // Once only.
        relearn_long(3, 5_000, 10 * ms);
        assert_eq!(estimate(key), Some(21 * ms));
    }

    #[test]
    fn the_estimate_is_a_low_quantile_of_recent_samples() {
        let key = shape_key(0x1234_5678, 100);
        assert_eq!(estimate(key), None);
        assert_eq!(learn(key, 1_000), 1_000);
        assert_eq!(learn(key, 3_000), 1_000);
        assert_eq!(learn(key, 2_000), 1_000);
        // Twelve stretched samples out of sixteen do not move it far.
        for s in [1_000, 1_010] {
            learn(key, s);
        }
        for _ in 0..11 {
            learn(key, 50_000);
        }
        let e = estimate(key).unwrap();
        assert!((1_000..=3_000).contains(&e), "{e}");
        // Fourteen do (three more overwrite the three oldest, unstretched, samples).
        for _ in 0..3 {
            learn(key, 50_000);
        }
        assert_eq!(estimate(key), Some(50_000));
        // The window forgets: sixteen new samples decide alone.
        for _ in 0..WINDOW {
            learn(key, 500);
        }
        assert_eq!(estimate(key), Some(500));
    }

    #[test]
    fn grid_sizes_share_a_key_within_a_power_of_two() {
        assert_eq!(shape_key(0x10, 65), shape_key(0x10, 127));
        assert_ne!(shape_key(0x10, 127), shape_key(0x10, 128));
        assert_ne!(shape_key(0x10, 1), shape_key(0x20, 1));
    }

    #[test]
    fn one_sampler_per_period() {
        let t = 5_000_000_000_000;
        assert!(sample_due(t));
        assert!(!sample_due(t + 1));
        assert!(sample_due(t + SAMPLE_EVERY_NS));
    }
}
