//! The checkpoint gate on this process's CUDA calls (launches, allocations, frees, copies,
//! synchronisation): each bumps the process's activity counter in the tenant's region (the
//! checkpoint controller's idle clock) and reads the state the controller gave the process. A
//! process the controller locked or checkpointed asks to be restored and waits here until it
//! runs again, so the call that ends its idleness brings its memory back transparently.
//!
//! Fast path: one acquire load of a pointer, a relaxed load + store of the counter and a relaxed
//! load of the state. The store may reach other cores after the state load (no fence on the fast
//! path); the controller waits a grace period after marking the process locked before it looks
//! at the counter, far longer than any store takes to drain.

use gpupool_region::{Region, SlotHandle, CHECKPOINT_CHECKPOINTED, CHECKPOINT_RUNNING};
use std::sync::atomic::{
    AtomicPtr, AtomicU32, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::time::Duration;

static ACTIVITY: AtomicPtr<AtomicU64> = AtomicPtr::new(std::ptr::null_mut());
static STATE: AtomicPtr<AtomicU32> = AtomicPtr::new(std::ptr::null_mut());
/// The tenant's region and this process's slot in it (index, token), for the slow path.
static REGION: AtomicPtr<Region> = AtomicPtr::new(std::ptr::null_mut());
static SLOT_INDEX: AtomicU32 = AtomicU32::new(0);
static SLOT_TOKEN: AtomicU64 = AtomicU64::new(0);

/// A lock the controller began but neither finished nor backed out of within this long is
/// dropped by the process (the controller died between the two).
pub const STALE_LOCK_NS: u64 = 30_000_000_000;

/// How often a waiting process looks at its state again.
const POLL: Duration = Duration::from_millis(2);

/// Starts gating this process's calls on its slot `h` of `region` (called once the slot is
/// claimed).
pub fn publish(region: &'static Region, h: SlotHandle) {
    let (index, token) = h.to_raw();
    SLOT_INDEX.store(index, Relaxed);
    SLOT_TOKEN.store(token, Relaxed);
    REGION.store(std::ptr::from_ref(region).cast_mut(), Release);
    let cells = region.gate_cells(h);
    STATE.store(std::ptr::from_ref(cells.state).cast_mut(), Release);
    ACTIVITY.store(std::ptr::from_ref(cells.activity).cast_mut(), Release);
}

/// After `fork`: the child has no slot yet.
pub fn forget_after_fork() {
    ACTIVITY.store(std::ptr::null_mut(), Relaxed);
    STATE.store(std::ptr::null_mut(), Relaxed);
    REGION.store(std::ptr::null_mut(), Relaxed);
}

/// The gate: counts the call, and waits for a restore if the controller took the process.
#[inline]
pub fn enter() {
    let a = ACTIVITY.load(Acquire);
    if a.is_null() {
        return;
    }
    // SAFETY: both point into the tenant's region, mapped for the life of the process; STATE is
    // published before ACTIVITY.
    let (activity, state) = unsafe { (&*a, &*STATE.load(Acquire)) };
    activity.store(activity.load(Relaxed).wrapping_add(1), Relaxed);
    if state.load(Relaxed) != CHECKPOINT_RUNNING {
        wait_for_restore(state);
    }
}

#[cold]
fn wait_for_restore(state: &AtomicU32) {
    // SAFETY: null, or the region of the process's tenant, which lives as long as the process.
    let Some(region) = (unsafe { REGION.load(Acquire).as_ref() }) else {
        return;
    };
    let h = SlotHandle::from_raw(SLOT_INDEX.load(Relaxed), SLOT_TOKEN.load(Relaxed));
    region.request_restore(h);
    let started = gpupool_cuda::clock::monotonic_ns();
    let mut reported = false;
    loop {
        let s = state.load(Relaxed);
        if s == CHECKPOINT_RUNNING {
            break;
        }
        let now = gpupool_cuda::clock::monotonic_ns();
        if s != CHECKPOINT_CHECKPOINTED && region.drop_stale_lock(h, now, STALE_LOCK_NS) {
            crate::log!(Warn, "a checkpoint lock was left behind; going on");
            break;
        }
        if !reported && now.saturating_sub(started) > 5_000_000_000 {
            crate::log!(
                Warn,
                "checkpointed: waiting for the node's controller to restore this process"
            );
            reported = true;
        }
        std::thread::sleep(POLL);
    }
    if reported {
        crate::log!(Info, "restored");
    }
}
