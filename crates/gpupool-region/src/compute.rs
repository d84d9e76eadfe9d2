//! The compute pacing state of one tenant on one device, shared by the tenant's processes in its
//! region: the theoretical arrival time of a generic cell rate algorithm on GPU time, what
//! waiting cost, and a ring of the tenant's recent long kernels with when they really ran. The
//! policy that reads and updates it is the interposer's (`gpupool-preload`, `pacing.rs`); this
//! module only lays the state out and updates it with atomics, so processes and threads of a
//! tenant share it without a lock and a process that dies leaves nothing to clean up.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

/// Pacing state in the region (per device entry).
#[repr(C)]
#[derive(Default)]
pub struct ComputeState {
    /// Limit in percent (0 = none).
    pub limit_pct: AtomicU32,
    /// Guaranteed share in percent (0 = none), for observers.
    pub request_pct: AtomicU32,
    /// Theoretical arrival time (`CLOCK_MONOTONIC` ns).
    pub tat_ns: AtomicU64,
    /// Time launches spent waiting for their turn (ns).
    pub throttled_ns: AtomicU64,
    /// Launches that had to wait.
    pub throttled_launches: AtomicU64,
    /// The tenant's recent long kernels (a ring).
    pub long_runs: [LongRun; LONG_RUNS],
    /// Long kernels recorded so far (the ring's next slot, modulo its length).
    pub long_next: AtomicU64,
}

/// Long kernels remembered per tenant and device: more than a window holds at the highest
/// limits (a 100 ms window holds 11 long kernels at 90 %).
pub const LONG_RUNS: usize = 16;

/// One long kernel of the tenant: when it ran on the GPU, as far as the tenant knows, and the
/// GPU time it was charged.
#[repr(C)]
#[derive(Default)]
pub struct LongRun {
    /// Submission time; once measured, the start on the GPU (ns; 0 = free slot).
    pub start_ns: AtomicU64,
    /// The end on the GPU, once measured (ns; 0 = not known yet).
    pub end_ns: AtomicU64,
    /// GPU time charged (ns).
    pub cost_ns: AtomicU64,
    /// Where in the run other tenants' long kernels ran beside it
    /// ([`ComputeState::set_profile`]): steps `(µs after the start + 1) << 16 | others`,
    /// 0 = unused.
    pub profile: [AtomicU64; PROFILE_STEPS],
    /// The start of the run the profile describes (0 = none).
    pub profile_of: AtomicU64,
}

/// Steps a run's profile holds.
pub const PROFILE_STEPS: usize = 6;

impl LongRun {
    /// A free slot.
    pub const fn new() -> LongRun {
        LongRun {
            start_ns: AtomicU64::new(0),
            end_ns: AtomicU64::new(0),
            cost_ns: AtomicU64::new(0),
            profile: [const { AtomicU64::new(0) }; PROFILE_STEPS],
            profile_of: AtomicU64::new(0),
        }
    }
}

/// A long kernel as recorded: submitted (or, once measured, started on the GPU) at `start_ns`,
/// ended at `end_ns` (0: not measured yet), charged `cost_ns`, and the profile of who ran
/// beside it when one was set for this very run (`(offset after the start, others)` steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordedRun {
    /// Start (ns).
    pub start_ns: u64,
    /// End (ns; 0 = not known yet).
    pub end_ns: u64,
    /// GPU time charged (ns).
    pub cost_ns: u64,
    /// Profile steps; the first `profiled` are set.
    pub steps: [(u64, u32); PROFILE_STEPS],
    /// How many steps are set (0: no profile).
    pub profiled: usize,
}

impl ComputeState {
    /// A state with no limit and nothing charged.
    pub const fn new() -> ComputeState {
        ComputeState {
            limit_pct: AtomicU32::new(0),
            request_pct: AtomicU32::new(0),
            tat_ns: AtomicU64::new(0),
            throttled_ns: AtomicU64::new(0),
            throttled_launches: AtomicU64::new(0),
            long_runs: [const { LongRun::new() }; LONG_RUNS],
            long_next: AtomicU64::new(0),
        }
    }

    /// Moves the theoretical arrival time from `tat` to `next(tat)` atomically (retrying while
    /// other launches move it); returns the new value.
    pub fn advance_tat(&self, next: impl Fn(u64) -> u64) -> u64 {
        let mut tat = self.tat_ns.load(Relaxed);
        loop {
            let new = next(tat);
            match self.tat_ns.compare_exchange_weak(tat, new, AcqRel, Relaxed) {
                Ok(_) => return new,
                Err(current) => tat = current,
            }
        }
    }

    /// Counts a launch that waited `wait_ns` for its turn.
    pub fn note_throttled(&self, wait_ns: u64) {
        if wait_ns > 0 {
            self.throttled_ns.fetch_add(wait_ns, Relaxed);
            self.throttled_launches.fetch_add(1, Relaxed);
        }
    }

    /// Records a long kernel of `cost_ns` submitted at `now_ns`; the slot to complete with
    /// [`ComputeState::long_run_ended`].
    pub fn long_run_started(&self, now_ns: u64, cost_ns: u64) -> usize {
        let i = (self.long_next.fetch_add(1, AcqRel) % LONG_RUNS as u64) as usize;
        let r = &self.long_runs[i];
        r.profile_of.store(0, Relaxed);
        r.end_ns.store(0, Relaxed);
        r.cost_ns.store(cost_ns, Relaxed);
        r.start_ns.store(now_ns.max(1), Release);
        i
    }

    /// Sets the profile of the run in `slot` that started at `start_ns`: from each offset (ns
    /// after the start) on, how many other tenants' long kernels ran beside it. Ignored when
    /// the slot holds another run now, or for more than [`PROFILE_STEPS`] steps.
    pub fn set_profile(&self, slot: usize, start_ns: u64, steps: &[(u64, u32)]) {
        let r = &self.long_runs[slot % LONG_RUNS];
        if r.start_ns.load(Acquire) != start_ns || steps.len() > PROFILE_STEPS {
            return;
        }
        r.profile_of.store(0, Release);
        for (i, word) in r.profile.iter().enumerate() {
            let v = steps.get(i).map_or(0, |&(offset, beside)| {
                ((offset / 1000 + 1) << 16) | beside.min(0xffff) as u64
            });
            word.store(v, Relaxed);
        }
        r.profile_of.store(start_ns, Release);
    }

    /// Notes that the long kernel recorded in `slot` at `submitted_ns` ran for `elapsed_ns`
    /// until `end_ns` (its timing events' interval, seen complete then). Ignored when the
    /// slot was reused since.
    /// Returns the run's start as recorded, `None` when ignored.
    pub fn long_run_ended(
        &self,
        slot: usize,
        submitted_ns: u64,
        end_ns: u64,
        elapsed_ns: u64,
    ) -> Option<u64> {
        let r = &self.long_runs[slot % LONG_RUNS];
        let start = end_ns.saturating_sub(elapsed_ns).max(1);
        r.start_ns
            .compare_exchange(submitted_ns.max(1), start, AcqRel, Relaxed)
            .ok()?;
        r.end_ns.store(end_ns.max(start), Release);
        Some(start)
    }

    /// The recorded long kernels (free slots left out).
    pub fn recorded_runs(&self) -> impl Iterator<Item = RecordedRun> + '_ {
        self.long_runs.iter().filter_map(|r| {
            let start_ns = r.start_ns.load(Acquire);
            if start_ns == 0 {
                return None;
            }
            let mut run = RecordedRun {
                start_ns,
                end_ns: r.end_ns.load(Acquire),
                cost_ns: r.cost_ns.load(Relaxed),
                ..RecordedRun::default()
            };
            if run.end_ns != 0 && r.profile_of.load(Acquire) == start_ns {
                for word in &r.profile {
                    let w = word.load(Relaxed);
                    if w == 0 {
                        break;
                    }
                    run.steps[run.profiled] = (((w >> 16) - 1) * 1000, (w & 0xffff) as u32);
                    run.profiled += 1;
                }
            }
            Some(run)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_recorded_completed_and_profiled_in_their_slots() {
        let s = ComputeState::default();
        assert_eq!(s.recorded_runs().count(), 0);
        let slot = s.long_run_started(1_000, 20);
        // Completed: the start moves to when it really ran.
        assert_eq!(s.long_run_ended(slot, 1_000, 1_050, 30), Some(1_020));
        // A report for a slot reused since is ignored.
        assert_eq!(s.long_run_ended(slot, 999, 2_000, 10), None);
        s.set_profile(slot, 1_020, &[(0, 1), (20_000, 0)]);
        s.set_profile(slot, 7, &[(0, 3)]);
        let runs: Vec<RecordedRun> = s.recorded_runs().collect();
        assert_eq!(runs.len(), 1);
        let r = runs[0];
        assert_eq!((r.start_ns, r.end_ns, r.cost_ns), (1_020, 1_050, 20));
        assert_eq!(&r.steps[..r.profiled], &[(0, 1), (20_000, 0)]);
        // The ring wraps.
        for i in 0..LONG_RUNS as u64 {
            s.long_run_started(2_000 + i, 5);
        }
        assert_eq!(s.recorded_runs().count(), LONG_RUNS);
        assert!(s.recorded_runs().all(|r| r.start_ns >= 2_000));
    }

    #[test]
    fn the_arrival_time_moves_atomically_and_waits_are_counted() {
        let s = ComputeState::default();
        assert_eq!(s.advance_tat(|t| t + 5), 5);
        assert_eq!(s.advance_tat(|t| t.max(100) + 5), 105);
        s.note_throttled(0);
        s.note_throttled(40);
        assert_eq!(
            (
                s.throttled_ns.load(Relaxed),
                s.throttled_launches.load(Relaxed)
            ),
            (40, 1)
        );
    }
}
