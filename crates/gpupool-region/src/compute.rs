//! Compute pacing of one tenant on one device, shared by the tenant's processes: a generic cell
//! rate algorithm (GCRA) on GPU time.
//!
//! A tenant limited to `p` % of a device may use `p/100` ns of GPU time per ns of wall time. A
//! launch expected to run `c` ns moves the tenant's *theoretical arrival time* (TAT) forward by
//! `c · 100 / p`. When the TAT is more than the burst allowance ahead of now, the launch waits
//! until it is not. The TAT is one atomic word updated with compare-and-swap, so processes and
//! threads of the tenant pace each other without a lock, and a process that dies leaves nothing
//! to clean up. Over any interval of length `T` the tenant is charged at most
//! `p/100 · (T + burst) + c_max`. Long kernels are spaced a little more where even spacing
//! would put more than the limit plus 10 points into some 100 ms window
//! ([`paced_step_ns`]).

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
}

/// Wall time a launch costs at `limit_pct`: `cost · 100 / pct`.
pub fn wall_cost_ns(cost_ns: u64, limit_pct: u32) -> u64 {
    let pct = limit_pct.clamp(1, 100) as u128;
    (cost_ns as u128 * 100 / pct).min(u64::MAX as u128) as u64
}

/// The window a tenant's share is also held to: no `WINDOW_NS` of wall time may hold more than
/// the limit plus [`WINDOW_SLACK_PCT`] of GPU time, where kernels allow it.
pub const WINDOW_NS: u64 = 100_000_000;
/// How far above its limit a tenant may be in one [`WINDOW_NS`] window, in percent points.
pub const WINDOW_SLACK_PCT: u64 = 10;
/// Kept below that slack (per mille of the window), for launch and wake-up jitter.
const WINDOW_MARGIN_PERMILLE: u64 = 15;
/// How far below its share the stretching in [`paced_step_ns`] may take a tenant, per mille.
pub const MAX_SHARE_LOSS_PERMILLE: u64 = 25;
/// Kernels longer than this are spaced for the window bound; a window holds at most one
/// shorter kernel more than the share, which is within the slack less the margin.
pub const LONG_KERNEL_NS: u64 = WINDOW_NS / 1000 * (WINDOW_SLACK_PCT * 10 - WINDOW_MARGIN_PERMILLE);

/// Wall time between launches of `cost_ns` at `limit_pct`, stretched where evenly spaced
/// launches would put more than the limit plus the slack into some window (long kernels cannot
/// be split: at 25 % a 20 ms kernel every 80 ms puts two of them, 40 %, into the 100 ms after
/// each start). The bound is met with a margin where that costs the share at most
/// [`MAX_SHARE_LOSS_PERMILLE`], else exactly where that does; else (a kernel longer than the
/// bound, or one that only a much wider spacing would help) the plain step is kept: the share
/// over time comes first.
pub fn paced_step_ns(cost_ns: u64, limit_pct: u32) -> u64 {
    let step = wall_cost_ns(cost_ns, limit_pct);
    let pct = limit_pct.clamp(1, 100) as u64;
    if cost_ns <= LONG_KERNEL_NS {
        return step;
    }
    // The longest step that still gives the share less the allowed loss.
    let longest = (cost_ns as u128 * 1000
        / (pct * 10).saturating_sub(MAX_SHARE_LOSS_PERMILLE).max(1) as u128)
        .min(u64::MAX as u128) as u64;
    for margin in [WINDOW_MARGIN_PERMILLE, 0] {
        let bound_pm = (pct + WINDOW_SLACK_PCT) * 10 - margin;
        if bound_pm >= 1000 {
            return step;
        }
        if let Some(s) = window_step(cost_ns, step, WINDOW_NS / 1000 * bound_pm) {
            if s <= longest {
                return s;
            }
        }
    }
    step
}

/// The smallest step not below `step` with which no [`WINDOW_NS`] window holds more than
/// `bound` of `cost`-long kernels; `None` when a kernel alone is longer than `bound`. With
/// launches every `s`, the fullest window starts at a kernel and holds `k = ⌊W/s⌋` whole
/// kernels and `min(c, W − k·s)` of the next.
fn window_step(cost: u64, step: u64, bound: u64) -> Option<u64> {
    if cost > bound {
        return None;
    }
    let mut s = step.max(1);
    loop {
        let k = WINDOW_NS / s;
        if k == 0 || (k + 1) * cost <= bound {
            // No whole kernel, or even k + 1 whole kernels fit the bound.
            return Some(s);
        }
        if k * cost <= bound {
            // The part of kernel k + 1 in the window, `W − k·s`, must fit what is left.
            return Some(s.max((WINDOW_NS - bound + k * cost).div_ceil(k)));
        }
        s = WINDOW_NS / k + 1;
    }
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
        }
    }

    /// Charges a launch of `cost_ns` at `now_ns` and returns how long it must wait before it
    /// may be submitted (0 = at once). `burst_ns` is how far ahead of now the TAT may run.
    pub fn charge(&self, now_ns: u64, cost_ns: u64, limit_pct: u32, burst_ns: u64) -> u64 {
        let step = paced_step_ns(cost_ns, limit_pct);
        let mut tat = self.tat_ns.load(Relaxed);
        loop {
            let start = tat.max(now_ns);
            let new = start.saturating_add(step);
            match self.tat_ns.compare_exchange_weak(tat, new, AcqRel, Relaxed) {
                Ok(_) => {
                    let wait = new
                        .saturating_sub(now_ns)
                        .saturating_sub(burst_ns.max(step));
                    if wait > 0 {
                        self.throttled_ns.fetch_add(wait, Relaxed);
                        self.throttled_launches.fetch_add(1, Relaxed);
                    }
                    return wait;
                }
                Err(current) => tat = current,
            }
        }
    }

    /// Notes that a launch of `cost_ns` charged by [`ComputeState::charge`] was submitted at
    /// `now_ns()` (read only for long kernels). For long kernels, whose spacing keeps 100 ms
    /// windows within the bound ([`paced_step_ns`]), a launch that woke up late pushes the next
    /// one back by as much: otherwise the gap after it shrinks by the lateness (a 3 ms late
    /// wake-up on a busy host put 37 % into a window at 25 %). Short kernels keep their
    /// schedule (one comparison).
    pub fn submitted(&self, now_ns: impl FnOnce() -> u64, cost_ns: u64, limit_pct: u32) {
        if cost_ns > LONG_KERNEL_NS {
            let next = now_ns().saturating_add(paced_step_ns(cost_ns, limit_pct));
            self.tat_ns.fetch_max(next, AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_tenant_alone_is_paced_to_its_limit() {
        let s = ComputeState::default();
        // 25 %: 1 ms kernels may start every 4 ms once the burst is used.
        let mut now = 1_000_000_000;
        let mut waited = 0;
        for _ in 0..1000 {
            let w = s.charge(now, 1_000_000, 25, 2_000_000);
            now += w; // the launch waits, then is submitted
            waited += w;
        }
        let elapsed = now - 1_000_000_000;
        let share = 1000.0 * 1e6 / elapsed as f64;
        assert!((share - 0.25).abs() < 0.01, "share {share}");
        assert!(waited > 0);
        assert_eq!(s.throttled_ns.load(Relaxed), waited);
    }

    #[test]
    fn idle_time_is_not_banked_beyond_the_burst() {
        let s = ComputeState::default();
        assert_eq!(s.charge(0, 1_000_000, 50, 4_000_000), 0);
        // A long idle period, then a burst of launches: only `burst` worth pass at once.
        let now = 10_000_000_000;
        let free = (0..100)
            .take_while(|_| s.charge(now, 1_000_000, 50, 4_000_000) == 0)
            .count();
        assert_eq!(free, 2, "4 ms of burst at 50 % = 2 ms of GPU time");
    }

    /// The fullest `WINDOW_NS` window of `c`-long kernels started every `s`, in per mille.
    fn fullest_window_pm(c: u64, s: u64) -> u64 {
        let k = WINDOW_NS / s;
        (k * c + c.min(WINDOW_NS - k * s)) * 1000 / WINDOW_NS
    }

    #[test]
    fn long_kernels_are_spaced_so_no_window_holds_more_than_limit_plus_slack() {
        let ms = 1_000_000;
        // 25 %, 20 ms: evenly every 80 ms would put 40 % into a window; stretched to 86.5 ms.
        assert_eq!(fullest_window_pm(20 * ms, wall_cost_ns(20 * ms, 25)), 400);
        let s = paced_step_ns(20 * ms, 25);
        assert!(fullest_window_pm(20 * ms, s) <= 350, "{s}");
        let share = 20.0 * ms as f64 / s as f64;
        assert!((0.225..0.25).contains(&share), "share {share}");
        // Where even spacing is already within the bound, the step is unchanged.
        assert_eq!(paced_step_ns(20 * ms, 75), wall_cost_ns(20 * ms, 75));
        assert_eq!(paced_step_ns(50_000, 25), wall_cost_ns(50_000, 25));
        // A kernel longer than the bound cannot be helped: not stretched.
        assert_eq!(paced_step_ns(20 * ms, 10), wall_cost_ns(20 * ms, 10));
        assert_eq!(paced_step_ns(60 * ms, 30), wall_cost_ns(60 * ms, 30));
    }

    #[test]
    fn a_late_long_launch_moves_the_next_one_back() {
        let ms = 1_000_000;
        let s = ComputeState::default();
        let step = paced_step_ns(20 * ms, 25);
        let t0 = 1_000 * ms;
        assert_eq!(s.charge(t0, 20 * ms, 25, BURST), 0);
        s.submitted(|| t0, 20 * ms, 25);
        // The second is due at t0 + step, but its wake-up is 3 ms late.
        let w = s.charge(t0 + ms, 20 * ms, 25, BURST);
        assert_eq!(w, step - ms);
        s.submitted(|| t0 + step + 3 * ms, 20 * ms, 25);
        // The third waits a whole step after the late launch, not after the schedule.
        let w = s.charge(t0 + step + 4 * ms, 20 * ms, 25, BURST);
        assert_eq!(t0 + step + 4 * ms + w, t0 + 2 * step + 3 * ms);
        // Short kernels keep their schedule.
        let short = ComputeState::default();
        short.charge(t0, 50_000, 25, BURST);
        short.submitted(|| unreachable!("short kernels read no clock"), 50_000, 25);
        assert_eq!(short.tat_ns.load(Relaxed), t0 + 200_000);
    }

    const BURST: u64 = 5_000_000;

    proptest! {
        #[test]
        fn the_paced_step_keeps_windows_bounded_and_the_share_within_3_points(
            pct in 1u32..=100,
            cost in 1_000u64..200_000_000,
        ) {
            let s = paced_step_ns(cost, pct);
            let plain = wall_cost_ns(cost, pct);
            prop_assert!(s >= plain);
            let bound_pm = (pct as u64 + WINDOW_SLACK_PCT) * 10;
            let share_pm = cost as f64 * 1000.0 / s as f64;
            if s > plain {
                // Only stretched to meet the bound, then met, and never by more than the
                // allowed loss of share.
                prop_assert!(fullest_window_pm(cost, s) <= bound_pm, "{s}");
                prop_assert!(share_pm >= pct as f64 * 10.0 - MAX_SHARE_LOSS_PERMILLE as f64 - 0.01,
                    "share {share_pm}");
            } else if cost <= LONG_KERNEL_NS {
                // Short kernels need no stretching.
                prop_assert!(fullest_window_pm(cost, s) <= bound_pm + 1, "{s}");
            }
        }

        #[test]
        fn charged_work_never_outruns_the_rate(
            pct in 1u32..=100,
            costs in proptest::collection::vec(1u64..5_000_000, 1..200),
            burst in 0u64..10_000_000,
        ) {
            let s = ComputeState::default();
            let start = 1_000_000_000u64;
            let mut now = start;
            let mut total = 0u64;
            for c in &costs {
                now += s.charge(now, *c, pct, burst);
                total += c;
                // Work submitted by `now` fits in the rate over [start, now + burst + cost].
                let allowed = (now - start + burst + c) as u128 * pct as u128 / 100 + 100;
                prop_assert!(total as u128 <= allowed + *c as u128,
                    "total {total} allowed {allowed}");
            }
        }
    }
}
