//! Compute pacing of one tenant on one device, shared by the tenant's processes: a generic cell
//! rate algorithm (GCRA) on GPU time.
//!
//! A tenant limited to `p` % of a device may use `p/100` ns of GPU time per ns of wall time. A
//! launch expected to run `c` ns moves the tenant's *theoretical arrival time* (TAT) forward by
//! `c · 100 / p`. When the TAT is more than the burst allowance ahead of now, the launch waits
//! until it is not. The TAT is one atomic word updated with compare-and-swap, so processes and
//! threads of the tenant pace each other without a lock, and a process that dies leaves nothing
//! to clean up. Over any interval of length `T` the tenant is charged at most
//! `p/100 · (T + burst) + c_max`.

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
        let step = wall_cost_ns(cost_ns, limit_pct);
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

    proptest! {
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
