//! What the checkpoint controller and a tenant's processes share in the tenant's region: each
//! process's activity counter (bumped on its gated CUDA calls: the controller's idle clock), its
//! checkpoint state as the controller set it, its wish to be restored, the bytes a tenant waits
//! for on a full card, and the tenant's priority.
//!
//! The hand-over that keeps a process from being locked in the middle of new work: the
//! controller moves the process from running to locked ([`Region::begin_lock`]), waits a grace
//! period, and goes on only if the activity counter has not moved ([`Region::activity_of`]). A
//! process bumps its counter *before* it reads its state ([`GateCells`]): either it sees
//! "locked" and asks for a restore, or the controller sees the bump and backs out.

use crate::layout::*;
use crate::region::Region;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};

/// One process of a tenant as the checkpoint controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleView {
    /// Its pid as the host numbers it (what `cuCheckpointProcess*` takes).
    pub host_pid: u32,
    /// Its gated CUDA calls so far (wraps).
    pub activity: u64,
    /// Its checkpoint state (`CHECKPOINT_*`).
    pub state: u32,
    /// It waits for a restore.
    pub restore_wanted: bool,
    /// When its state last left "running" (`CLOCK_MONOTONIC` ns; 0: never).
    pub state_since_ns: u64,
    /// Device memory it holds per device of the region.
    pub used: Vec<u64>,
}

/// The two cells a process touches on each gated call: its activity counter and its state.
#[derive(Clone, Copy)]
pub struct GateCells<'a> {
    /// Bumped on each gated call.
    pub activity: &'a AtomicU64,
    /// The process's checkpoint state.
    pub state: &'a AtomicU32,
}

impl Region {
    /// The gate cells of this process's slot `h`.
    pub fn gate_cells(&self, h: crate::SlotHandle) -> GateCells<'_> {
        let s = &self.layout().slots[h.to_raw().0 as usize];
        GateCells {
            activity: &s.activity,
            state: &s.checkpoint,
        }
    }

    /// Marks this process's slot `h` as waiting for a restore.
    pub fn request_restore(&self, h: crate::SlotHandle) {
        self.layout().slots[h.to_raw().0 as usize]
            .restore_wanted
            .store(1, SeqCst);
    }

    /// When slot `h`'s state last left "running" (`CLOCK_MONOTONIC` ns).
    pub fn own_state_since_ns(&self, h: crate::SlotHandle) -> u64 {
        self.layout().slots[h.to_raw().0 as usize]
            .state_since_ns
            .load(SeqCst)
    }

    /// Live processes as the checkpoint controller sees them.
    pub fn idle_views(&self) -> Vec<IdleView> {
        let devices = self.device_count();
        self.live_slots()
            .filter(|s| s.host_pid.load(SeqCst) != 0)
            .map(|s| IdleView {
                host_pid: s.host_pid.load(SeqCst),
                activity: s.activity.load(SeqCst),
                state: s.checkpoint.load(SeqCst),
                restore_wanted: s.restore_wanted.load(SeqCst) != 0,
                state_since_ns: s.state_since_ns.load(SeqCst),
                used: s.used[..devices].iter().map(|u| u.load(SeqCst)).collect(),
            })
            .collect()
    }

    fn slot_of_host(&self, host_pid: u32) -> Option<&ProcSlot> {
        (host_pid != 0)
            .then(|| {
                self.live_slots()
                    .find(|s| s.host_pid.load(SeqCst) == host_pid)
            })
            .flatten()
    }

    /// The activity counter of process `host_pid` (`None`: not here).
    pub fn activity_of(&self, host_pid: u32) -> Option<u64> {
        self.slot_of_host(host_pid).map(|s| s.activity.load(SeqCst))
    }

    /// Controller: moves process `host_pid` from running to locked at `now_ns`; `false` when it
    /// is not running (or not here).
    pub fn begin_lock(&self, host_pid: u32, now_ns: u64) -> bool {
        self.slot_of_host(host_pid).is_some_and(|s| {
            let ok = s
                .checkpoint
                .compare_exchange(CHECKPOINT_RUNNING, CHECKPOINT_LOCKED, SeqCst, SeqCst)
                .is_ok();
            if ok {
                s.state_since_ns.store(now_ns, SeqCst);
            }
            ok
        })
    }

    /// Controller: process `host_pid` was checkpointed (locked → checkpointed); counts it.
    pub fn finish_checkpoint(&self, host_pid: u32) -> bool {
        let ok = self.slot_of_host(host_pid).is_some_and(|s| {
            s.checkpoint
                .compare_exchange(CHECKPOINT_LOCKED, CHECKPOINT_CHECKPOINTED, SeqCst, SeqCst)
                .is_ok()
        });
        if ok {
            self.layout().header.checkpoints.fetch_add(1, SeqCst);
        }
        ok
    }

    /// Controller: process `host_pid` runs again (a lock backed out of, or a restore done); its
    /// wish to be restored is granted.
    pub fn mark_running(&self, host_pid: u32) {
        if let Some(s) = self.slot_of_host(host_pid) {
            s.checkpoint.store(CHECKPOINT_RUNNING, SeqCst);
            s.restore_wanted.store(0, SeqCst);
        }
    }

    /// Process side: a lock the controller began at `since_ns` but neither finished nor backed
    /// out of by `now_ns - stale_ns` is dropped (the controller died): locked → running.
    pub fn drop_stale_lock(&self, h: crate::SlotHandle, now_ns: u64, stale_ns: u64) -> bool {
        let s = &self.layout().slots[h.to_raw().0 as usize];
        let since = s.state_since_ns.load(SeqCst);
        now_ns.saturating_sub(since) >= stale_ns
            && s.checkpoint
                .compare_exchange(CHECKPOINT_LOCKED, CHECKPOINT_RUNNING, SeqCst, SeqCst)
                .is_ok()
    }

    /// Times the controller checkpointed one of this tenant's processes.
    pub fn checkpoints(&self) -> u64 {
        self.layout().header.checkpoints.load(SeqCst)
    }

    /// Bytes the tenant waits for on device `dev` (0: none).
    pub fn wanted(&self, dev: usize) -> u64 {
        self.layout()
            .devices
            .get(dev)
            .map_or(0, |d| d.wanted.load(SeqCst))
    }

    /// Records that the tenant waits for `bytes` on device `dev` (0: no longer).
    pub fn set_wanted(&self, dev: usize, bytes: u64) {
        if let Some(d) = self.layout().devices.get(dev) {
            d.wanted.store(bytes, SeqCst);
        }
    }

    /// The tenant's published priority (`PRIORITY_*`).
    pub fn priority(&self) -> u32 {
        self.layout().header.priority.load(SeqCst)
    }

    /// Publishes the tenant's priority.
    pub fn set_priority(&self, priority: u32) {
        self.layout().header.priority.store(priority, SeqCst);
    }
}
