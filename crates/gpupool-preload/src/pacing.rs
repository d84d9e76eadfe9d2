//! Compute pacing policy, as pure functions over the state a tenant shares in its region
//! (`gpupool_region::compute`): a generic cell rate algorithm (GCRA) on GPU time, and the hold
//! that keeps 100 ms windows within the limit plus the slack.
//!
//! A tenant limited to `p` % of a device may use `p/100` ns of GPU time per ns of wall time. A
//! launch expected to run `c` ns moves the tenant's *theoretical arrival time* (TAT) forward by
//! `c · 100 / p`. When the TAT is more than the burst allowance ahead of now, the launch waits
//! until it is not. Over any interval of length `T` the tenant is charged at most
//! `p/100 · (T + burst) + c_max`.
//!
//! A long kernel cannot be split, so the share alone does not keep 100 ms windows within the
//! limit plus 10 points (at 25 % a 20 ms kernel every 80 ms puts 40 % into the 100 ms after
//! each start). The tenant's recent long kernels are recorded with when they really ran, and a
//! long kernel is held back until the window that would end with it has room
//! ([`window_hold_ns`]).

use gpupool_region::compute::{ComputeState, RecordedRun, LONG_RUNS, PROFILE_STEPS};

/// The next TAT after a launch whose wall cost is `step_ns` at `now_ns`.
pub fn gcra_next(tat_ns: u64, now_ns: u64, step_ns: u64) -> u64 {
    tat_ns.max(now_ns).saturating_add(step_ns)
}

/// How long a launch that moved the TAT to `new_tat_ns` must wait at `now_ns` (0 = at once):
/// the TAT may run `burst_ns` (at least one step) ahead of now.
pub fn gcra_wait(new_tat_ns: u64, now_ns: u64, step_ns: u64, burst_ns: u64) -> u64 {
    new_tat_ns
        .saturating_sub(now_ns)
        .saturating_sub(burst_ns.max(step_ns))
}

/// Charges a launch of `cost_ns` at `now_ns` to the tenant's shared state and returns how long
/// it must wait before it may be submitted (0 = at once).
pub fn charge(
    state: &ComputeState,
    now_ns: u64,
    cost_ns: u64,
    limit_pct: u32,
    burst_ns: u64,
) -> u64 {
    let step = wall_cost_ns(cost_ns, limit_pct);
    let new = state.advance_tat(|tat| gcra_next(tat, now_ns, step));
    let wait = gcra_wait(new, now_ns, step, burst_ns);
    state.note_throttled(wait);
    wait
}

/// The GPU time a run of `run_ns` had by its profile ([`profile_of`]): beside `k` other
/// tenants' long kernels, `1/(k + 1)` of the card (contexts take turns).
pub fn profiled_gpu_ns(run_ns: u64, steps: &[(u64, u32)]) -> u64 {
    (0..steps.len())
        .map(|i| {
            let from = steps[i].0.min(run_ns);
            let to = steps.get(i + 1).map_or(run_ns, |s| s.0.min(run_ns));
            to.saturating_sub(from) / (steps[i].1 as u64 + 1)
        })
        .sum()
}

/// The profile of a run `[start, end)` beside other tenants' runs `(start, end)` (`end` 0:
/// still running at `now_ns`): from each offset (ns after `start`) on, how many of them ran.
/// `None` when that takes more than [`PROFILE_STEPS`] steps.
pub fn profile_of(
    start: u64,
    end: u64,
    others: &[(u64, u64)],
    now_ns: u64,
) -> Option<Vec<(u64, u32)>> {
    let others: Vec<(u64, u64)> = others
        .iter()
        .map(|&(s, e)| (s, if e == 0 { now_ns.max(s) } else { e }))
        .filter(|&(s, e)| e > start && s < end)
        .collect();
    let mut cuts = vec![start];
    for &(s, e) in &others {
        cuts.extend([s, e].into_iter().filter(|c| (start + 1..end).contains(c)));
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut steps: Vec<(u64, u32)> = Vec::new();
    for (i, &c) in cuts.iter().enumerate() {
        let next = cuts.get(i + 1).copied().unwrap_or(end);
        let mid = c + (next - c) / 2;
        let beside = others.iter().filter(|&&(s, e)| s <= mid && mid < e).count() as u32;
        if steps.last().map(|l| l.1) != Some(beside) {
            steps.push((c - start, beside));
        }
    }
    (steps.len() <= PROFILE_STEPS).then_some(steps)
}

/// Wall time a launch costs at `limit_pct`: `cost · 100 / pct`.
pub fn wall_cost_ns(cost_ns: u64, limit_pct: u32) -> u64 {
    let pct = limit_pct.clamp(1, 100) as u64;
    // 64-bit division on the launch path (a 128-bit one is a library call); costs up to
    // 58 years fit.
    cost_ns.checked_mul(100).map_or(u64::MAX, |c| c / pct)
}

/// The window a tenant's share is also held to: no `WINDOW_NS` of wall time may hold more than
/// the limit plus [`WINDOW_SLACK_PCT`] of GPU time, where kernels allow it.
pub const WINDOW_NS: u64 = 100_000_000;
/// How far above its limit a tenant may be in one [`WINDOW_NS`] window, in percent points.
pub const WINDOW_SLACK_PCT: u64 = 10;
/// Kernels longer than this are held for the window bound; a window holds at most one
/// shorter kernel more than the share, which is within the slack less 1.5 points (launch and
/// wake-up jitter).
pub const LONG_KERNEL_NS: u64 = WINDOW_NS / 1000 * (WINDOW_SLACK_PCT * 10 - 15);
/// Kept below the window bound by a hold (per mille of the window): the windows are measured
/// from time stamps a little apart, and the end of a run is seen up to a meter period late.
const HOLD_MARGIN_PERMILLE: u64 = 5;

/// How long a kernel whose end was never measured is taken to have run, at most, in costs
/// (time slicing among a few tenants stretches a kernel by about their number).
const UNMEASURED_STRETCH: u64 = 4;
/// Granularity of the search for the end of a hold.
const HOLD_STEP_NS: u64 = 250_000;

/// The recorded long kernels as [`Run`]s seen at `now_ns`: a kernel still running runs until
/// `now_ns` at least, one never measured for at most [`UNMEASURED_STRETCH`] costs; both are
/// counted at their worst (one context, no profile).
fn recorded(state: &ComputeState, now_ns: u64, contexts: u32) -> impl Iterator<Item = Run> + '_ {
    state.recorded_runs().map(move |r: RecordedRun| {
        let (start, end, cost) = (r.start_ns, r.end_ns, r.cost_ns);
        let earliest = start.saturating_add(cost);
        let mut run = Run {
            start,
            end: end.max(start),
            cost,
            contexts: contexts.max(1) as u64,
            steps: r.steps,
            profiled: r.profiled,
        };
        if end == 0 {
            let latest = start.saturating_add(cost.saturating_mul(UNMEASURED_STRETCH));
            run.end = now_ns.clamp(earliest, latest.max(earliest));
            run.contexts = 1;
            run.profiled = 0;
        }
        run
    })
}

/// The GPU time a [`Run`] had in `[from, to)`: the most it can have had, or, with a
/// profile that accounts for its cost, what the profile says (never more than the most).
///
/// A kernel whose run of `R` took `C` of GPU time had at least `1/n` of the card whenever
/// it ran (`n` busy contexts) and at most all of it: the most it can have had in an
/// interval is a solid stretch of `L = (n·C − R) / (n − 1)` placed inside the interval,
/// and a `1/n` share of the rest of its overlap with the run. With one context (or a run
/// no longer than its cost) the whole cost may be anywhere in the run: a kernel that
/// shared the card may have had all of it at the end of its run.
fn time_in(run: &Run, from: u64, to: u64) -> u64 {
    let Run {
        start,
        end,
        cost,
        contexts: n,
        ..
    } = *run;
    let overlap = end.min(to).saturating_sub(start.max(from));
    let most = if n == 1 || end - start <= cost {
        cost.min(overlap)
    } else {
        let solid = ((n * cost).saturating_sub(end - start) / (n - 1)).min(cost);
        let dense = solid.min(overlap);
        cost.min(dense + (overlap - dense) / n)
    };
    run.profiled_time_in(from, to).map_or(most, |t| t.min(most))
}

/// How much longer a long kernel of `cost_ns` must wait at `now_ns` so that the
/// [`WINDOW_NS`] ending when it completes holds no more than the limit plus the slack
/// (less a small margin) of the tenant's GPU time, counting its
/// recent long kernels at their worst with the card shared by `contexts` busy contexts
/// ([`time_in`]). Beside other tenants a kernel runs in time slices,
/// longer than its GPU time, and may get most of that time at the end of its run; spacing
/// launches by their submission times put 38–40 % into windows at 25 %. 0 for short
/// kernels, for limits whose bound is the whole window, and for kernels as long as the
/// bound (a window holding one is at it already); at most one window.
///
/// `others_until_ns` (0: none) is when the other tenants' long kernels running now could
/// be done at the earliest, had they had the card alone since they started
/// (`coordination`, from the runs tenants publish in the card file). Until then the new
/// kernel shares the card ([`shared_gpu_time`]): it ends later, and the window ending with
/// it holds less of the earlier runs, so it may go earlier; every window ending while it
/// runs is checked then, since it gains GPU time more slowly than a window loses the past.
pub fn window_hold_ns(
    state: &ComputeState,
    now_ns: u64,
    cost_ns: u64,
    limit_pct: u32,
    contexts: u32,
    others_until_ns: u64,
) -> u64 {
    let pct = limit_pct.clamp(1, 100) as u64;
    let bound = WINDOW_NS / 1000 * ((pct + WINDOW_SLACK_PCT) * 10 - HOLD_MARGIN_PERMILLE);
    if cost_ns <= LONG_KERNEL_NS || bound >= WINDOW_NS || cost_ns >= bound {
        return 0;
    }
    let mut runs = [Run::default(); LONG_RUNS];
    let mut count = 0;
    for (slot, run) in runs.iter_mut().zip(recorded(state, now_ns, contexts)) {
        *slot = run;
        count += 1;
    }
    let runs = &runs[..count];
    // The tenant's kernels run one after another: the new one starts when the last
    // ends, at the earliest.
    let busy_until = runs.iter().map(|r| r.end).max().unwrap_or(0);
    // The tenant's GPU time in the window ending at `w`, its new kernel (started at `t`)
    // having had `mine` by then.
    let window = |t: u64, w: u64, mine: u64| -> u64 {
        let from = w.saturating_sub(WINDOW_NS);
        mine + runs.iter().map(|r| time_in(r, from, t)).sum::<u64>()
    };
    let mut hold = busy_until.saturating_sub(now_ns);
    while hold < WINDOW_NS {
        let t = now_ns + hold;
        // Running solid over [t, t + cost): the window ending then is the fullest.
        if window(t, t + cost_ns, cost_ns) <= bound {
            return hold;
        }
        let rest = others_until_ns.saturating_sub(t);
        if rest > 0 {
            // Sharing the card first: every window ending while it runs.
            let done = shared_run_ns(cost_ns, rest);
            let fits = |x: u64| window(t, t + x, shared_gpu_time(x, cost_ns, rest)) <= bound;
            if fits(done)
                && fits(SHARE_SLICE_NS.min(done))
                && (SHARE_SLICE_NS..done)
                    .step_by(SHARED_CHECK_STEP_NS as usize)
                    .all(fits)
            {
                return hold;
            }
        }
        hold += HOLD_STEP_NS;
    }
    WINDOW_NS
}

/// How long a new kernel may have the card before a tenant whose kernel is running gets its
/// turn again (twice the simulator's time slice, for real GPUs' longer ones).
pub const SHARE_SLICE_NS: u64 = 4_000_000;
/// Spacing of the windows checked while a new kernel shares the card.
const SHARED_CHECK_STEP_NS: u64 = 1_000_000;

/// The most GPU time a kernel of `cost_ns` can have had `x_ns` after it started, while other
/// tenants have at least `rest_ns` of GPU time left on the card: the first slice, then every
/// other one (contexts take turns) until their rest is done, then all of it.
pub fn shared_gpu_time(x_ns: u64, cost_ns: u64, rest_ns: u64) -> u64 {
    let others = rest_ns.min(x_ns.saturating_sub(SHARE_SLICE_NS) / 2);
    (x_ns - others).min(cost_ns)
}

/// The earliest a kernel of `cost_ns` can be done, after its start, while other tenants have
/// `rest_ns` of GPU time left ([`shared_gpu_time`] reaches its cost).
pub fn shared_run_ns(cost_ns: u64, rest_ns: u64) -> u64 {
    if cost_ns <= SHARE_SLICE_NS {
        cost_ns
    } else if cost_ns >= SHARE_SLICE_NS + rest_ns {
        cost_ns + rest_ns
    } else {
        2 * cost_ns - SHARE_SLICE_NS
    }
}

/// A recorded long kernel as the window hold counts it.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    start: u64,
    end: u64,
    cost: u64,
    /// Busy contexts on the card (1: unknown, counted at the worst).
    contexts: u64,
    /// Its profile: from each offset (ns after the start) on, how many other tenants' long
    /// kernels ran beside it; the first `profiled` are set.
    steps: [(u64, u32); PROFILE_STEPS],
    profiled: usize,
}

impl Run {
    /// The GPU time the profile puts in `[from, to)`: beside `k` others the kernel had
    /// `1/(k + 1)` of the card (time slices in turn), scaled so that the run holds its cost.
    /// `None` without a profile, or when the profile's account is off by more than a third
    /// (others that publish no long kernels shared the card too).
    fn profiled_time_in(&self, from: u64, to: u64) -> Option<u64> {
        let steps = &self.steps[..self.profiled];
        if steps.is_empty() {
            return None;
        }
        let segment = |i: usize| {
            let a = self.start + steps[i].0;
            let b = steps.get(i + 1).map_or(self.end, |s| self.start + s.0);
            (
                a.min(self.end),
                b.min(self.end),
                1.0 / (steps[i].1 as f64 + 1.0),
            )
        };
        let account = profiled_gpu_ns(self.end - self.start, steps) as f64;
        let cost = self.cost as f64;
        if account < cost * 0.75 || account > cost * 1.34 {
            return None;
        }
        let scale = cost / account;
        let inside: f64 = (0..steps.len())
            .map(|i| {
                let (a, b, share) = segment(i);
                b.min(to).saturating_sub(a.max(from)) as f64 * (share * scale).min(1.0)
            })
            .sum();
        Some((inside as u64).min(self.cost))
    }
}

/// A typical time slice between contexts (what the corrections of timed launches assume).
pub const TYPICAL_SLICE_NS: u64 = 2_000_000;

/// A timed launch's run time without the other tenants' time slices in it, the others having
/// used `others_ppm` millionths of the card recently. A launch that spans many time slices
/// shares its interval with them in proportion to that use; one shorter than a slice is left
/// alone (it rarely straddles a switch, and the lower quartile of the shape's samples already
/// drops those that did); in between, partly.
pub fn exclusive_ns(elapsed_ns: u64, others_ppm: u64) -> u64 {
    let others = others_ppm.min(900_000) as f64 / 1e6;
    let slice = TYPICAL_SLICE_NS as f64;
    let spans = ((elapsed_ns as f64 - slice) / (3.0 * slice)).clamp(0.0, 1.0);
    (elapsed_ns as f64 * (1.0 - others * spans)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_timed_launches_lose_the_other_tenants_share() {
        let half = 500_000;
        assert_eq!(
            exclusive_ns(1_000_000, half),
            1_000_000,
            "shorter than a slice: as timed"
        );
        assert_eq!(
            exclusive_ns(20_000_000, half),
            10_000_000,
            "many slices: half was others'"
        );
        let mid = exclusive_ns(5_000_000, half);
        assert!((2_500_000..5_000_000).contains(&mid), "{mid}");
        assert_eq!(exclusive_ns(20_000_000, 0), 20_000_000, "alone: as timed");
        let capped = exclusive_ns(20_000_000, 5_000_000);
        assert!(
            capped.abs_diff(2_000_000) <= 1,
            "others' share is capped at 90 %: {capped}"
        );
    }
    use proptest::prelude::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn a_profile_says_where_in_a_run_the_card_was_shared() {
        let ms = 1_000_000;
        let t0 = 1_000 * ms;
        // A 20 ms kernel that ran over [t0, t0 + 30 ms]: another tenant's kernel ran over its
        // first 20 ms (half the card each), none after.
        let others = [(t0 - 5 * ms, t0 + 20 * ms), (t0 + 40 * ms, 0)];
        let steps = profile_of(t0, t0 + 30 * ms, &others, t0 + 45 * ms).unwrap();
        assert_eq!(steps, vec![(0, 1), (20 * ms, 0)]);
        // Still running (end 0): until now.
        let steps = profile_of(t0, t0 + 30 * ms, &[(t0 + 10 * ms, 0)], t0 + 25 * ms).unwrap();
        assert_eq!(steps, vec![(0, 0), (10 * ms, 1), (25 * ms, 0)]);
        // Too many steps: none.
        let many: Vec<(u64, u64)> = (0..10)
            .map(|i| (t0 + i * 2 * ms, t0 + i * 2 * ms + ms))
            .collect();
        assert_eq!(profile_of(t0, t0 + 30 * ms, &many, t0), None);

        let s = ComputeState::default();
        let at = t0 + 30 * ms;
        let slot = s.long_run_started(t0, 20 * ms);
        s.long_run_ended(slot, t0, t0 + 30 * ms, 30 * ms);
        // Two contexts, no profile: a 10 ms solid stretch (2 × 20 − 30) may be at its end and
        // half of the rest before it: the window may overlap 19 ms of the run (10 + 9 / 2 =
        // 14.5, the room at 25 %), until t0 + 91 ms.
        let worst = window_hold_ns(&s, at, 20 * ms, 25, 2, 0);
        assert_eq!(worst, 61 * ms);
        // With the profile (shared first, alone last) the same: the solid stretch is at its end.
        s.set_profile(slot, t0, &[(0, 1), (20 * ms, 0)]);
        assert_eq!(window_hold_ns(&s, at, 20 * ms, 25, 2, 0), worst);
        // Alone first, shared last: its last 20 ms held 10 ms of GPU time, and the window
        // may overlap 24.5 ms of the run (10 + 4.5 alone): until t0 + 85.5 ms.
        s.set_profile(slot, t0, &[(0, 0), (10 * ms, 1)]);
        assert_eq!(window_hold_ns(&s, at, 20 * ms, 25, 2, 0), 55_500_000);
        // A profile for another run is ignored.
        s.set_profile(slot, t0 + 1, &[(0, 1)]);
        assert_eq!(window_hold_ns(&s, at, 20 * ms, 25, 2, 0), 55_500_000);
        // One that cannot account for the cost (others without long kernels shared the
        // card too) is not used.
        s.set_profile(slot, t0, &[(0, 5)]);
        assert_eq!(window_hold_ns(&s, at, 20 * ms, 25, 2, 0), worst);
    }

    #[test]
    fn a_long_kernel_waits_for_room_in_the_window_its_predecessors_left() {
        let ms = 1_000_000;
        let s = ComputeState::default();
        let t0 = 1_000 * ms;
        // Short kernels, high limits and kernels as long as the bound are never held.
        assert_eq!(window_hold_ns(&s, t0, 50_000, 25, 1, 0), 0);
        assert_eq!(window_hold_ns(&s, t0, 20 * ms, 95, 1, 0), 0);
        assert_eq!(window_hold_ns(&s, t0, 40 * ms, 25, 1, 0), 0);
        assert_eq!(window_hold_ns(&s, t0, 20 * ms, 10, 1, 0), 0);
        // Nothing recorded: no hold.
        assert_eq!(window_hold_ns(&s, t0, 20 * ms, 25, 1, 0), 0);
        let at = t0 + 30 * ms;
        let expect = |hold: u64, until: u64| {
            assert!(
                (until - at..until - at + HOLD_STEP_NS).contains(&hold),
                "held {hold}, expected until {}",
                until - t0
            )
        };
        // 25 % (bound 35 % less the 0.5 ms margin), 20 ms that ran alone over
        // [t0, t0 + 20 ms]: the next one may start when the window ending at its end holds
        // at most 34.5 − 20 = 14.5 ms of the first, at t0 + 85.5 ms.
        let slot = s.long_run_started(t0, 20 * ms);
        s.long_run_ended(slot, t0, t0 + 20 * ms, 20 * ms);
        expect(window_hold_ns(&s, at, 20 * ms, 25, 1, 0), t0 + 85_500_000);
        // Two contexts do not change a run that had the card to itself.
        expect(window_hold_ns(&s, at, 20 * ms, 25, 2, 0), t0 + 85_500_000);
        // Had it run over [t0, t0 + 40 ms] beside an unknown number of contexts, all 20 ms
        // may have been at its end: the next one waits until t0 + 105.5 ms.
        let s = ComputeState::default();
        let slot = s.long_run_started(t0, 20 * ms);
        assert_eq!(s.long_run_ended(slot, t0, t0 + 40 * ms, 40 * ms), Some(t0));
        let worst = window_hold_ns(&s, at, 20 * ms, 25, 1, 0);
        expect(worst, t0 + 105_500_000);
        // Beside one other context it had half the card all along (2 × 20 = 40): the window
        // may overlap 29 ms of its run, until t0 + 91 ms.
        expect(window_hold_ns(&s, at, 20 * ms, 25, 2, 0), t0 + 91 * ms);
        // Among three, a 10 ms solid stretch is possible (3 × 20 − 40 = 2 × 10) and a third
        // of the rest: 10 + 13.5 / 3 = 14.5 in the last 23.5 ms, until t0 + 96.5 ms.
        expect(window_hold_ns(&s, at, 20 * ms, 25, 3, 0), t0 + 96_500_000);
        // A report for a slot reused since is ignored.
        assert_eq!(s.long_run_ended(slot, t0 - 1, t0 + 90 * ms, 90 * ms), None);
        assert_eq!(window_hold_ns(&s, at, 20 * ms, 25, 1, 0), worst);
    }

    #[test]
    fn a_kernel_that_will_share_the_card_may_go_earlier() {
        let ms = 1_000_000;
        let t0 = 1_000 * ms;
        let at = t0 + 30 * ms;
        let s = ComputeState::default();
        let slot = s.long_run_started(t0, 20 * ms);
        s.long_run_ended(slot, t0, t0 + 40 * ms, 40 * ms);
        let solid = window_hold_ns(&s, at, 20 * ms, 25, 2, 0);
        assert_eq!(solid, 61 * ms, "until t0 + 91 ms, as above");
        // Another tenant's kernel cannot be done before t0 + 95 ms: the new one shares the
        // card until then, ends later, and the window ending with it holds less of the last.
        let shared = window_hold_ns(&s, at, 20 * ms, 25, 2, t0 + 95 * ms);
        assert!(shared < solid - 5 * ms, "{shared}");
        // Every window ending while it runs (its GPU time at most `shared_gpu_time`) holds
        // no more than the bound (34.5 ms): the last run had half the card over 40 ms.
        let t = at + shared;
        let rest = t0 + 95 * ms - t;
        let last_in = |from: u64| (t0 + 40 * ms).saturating_sub(from.max(t0)) / 2;
        for x in (0..=shared_run_ns(20 * ms, rest)).step_by(ms as usize / 4) {
            let w = shared_gpu_time(x, 20 * ms, rest) + last_in(t + x - WINDOW_NS);
            assert!(w <= 34_500_000 + HOLD_STEP_NS, "window ending {x} in: {w}");
        }
        // Others done by then, or only short kernels beside it: as if alone.
        assert_eq!(window_hold_ns(&s, at, 20 * ms, 25, 2, at), solid);
    }

    #[test]
    fn a_profile_gives_the_gpu_time_of_a_run() {
        let ms = 1_000_000;
        // 40 ms beside one other kernel all along: 20 ms.
        assert_eq!(profiled_gpu_ns(40 * ms, &[(0, 1)]), 20 * ms);
        // 10 alone, 20 beside one, 9 beside two: 10 + 10 + 3.
        let steps = [(0, 0), (10 * ms, 1), (30 * ms, 2)];
        assert_eq!(profiled_gpu_ns(39 * ms, &steps), 23 * ms);
        // Alone: all of it; no profile: nothing known.
        assert_eq!(profiled_gpu_ns(20 * ms, &[(0, 0)]), 20 * ms);
        assert_eq!(profiled_gpu_ns(20 * ms, &[]), 0);
    }

    #[test]
    fn shared_runs_take_turns_with_the_others_rest() {
        let ms = 1_000_000;
        // Alone: solid.
        assert_eq!(shared_run_ns(20 * ms, 0), 20 * ms);
        assert_eq!(shared_gpu_time(7 * ms, 20 * ms, 0), 7 * ms);
        // 10 ms left to others: the first slice, then every other one until they are done.
        assert_eq!(
            shared_gpu_time(SHARE_SLICE_NS, 20 * ms, 10 * ms),
            SHARE_SLICE_NS
        );
        assert_eq!(shared_gpu_time(10 * ms, 20 * ms, 10 * ms), 7 * ms);
        assert_eq!(shared_run_ns(20 * ms, 10 * ms), 30 * ms);
        assert_eq!(shared_gpu_time(30 * ms, 20 * ms, 10 * ms), 20 * ms);
        // Others with more left than the kernel needs: half the card after the first slice.
        assert_eq!(shared_run_ns(20 * ms, 50 * ms), 36 * ms);
        assert_eq!(shared_gpu_time(36 * ms, 20 * ms, 50 * ms), 20 * ms);
        assert_eq!(shared_gpu_time(35 * ms, 20 * ms, 50 * ms), 19_500_000);
    }

    #[test]
    fn a_kernel_still_running_or_never_measured_counts_until_its_latest_end() {
        let ms = 1_000_000;
        let s = ComputeState::default();
        let t0 = 1_000 * ms;
        s.long_run_started(t0, 20 * ms);
        // Still running 30 ms later (sharing the GPU): taken to end no earlier than now.
        let hold = window_hold_ns(&s, t0 + 30 * ms, 20 * ms, 25, 1, 0);
        assert!(hold >= 65 * ms, "{hold}");
        // Never measured: taken to have ended by t0 + 4 × 20 ms at the latest.
        let hold = window_hold_ns(&s, t0 + 500 * ms, 20 * ms, 25, 1, 0);
        assert_eq!(hold, 0);
        let hold = window_hold_ns(&s, t0 + 100 * ms, 20 * ms, 25, 1, 0);
        assert!(hold > 0 && hold <= 65 * ms, "{hold}");
    }

    /// A window's bound at `pct` without the hold's margin.
    fn window_bound(pct: u32) -> u64 {
        WINDOW_NS / 100 * (pct as u64 + WINDOW_SLACK_PCT)
    }

    /// The first window (0.5 ms apart, starting in `[from, to)`) whose GPU time by `busy_in`
    /// is over `limit`: its start and GPU time.
    fn first_window_over(
        from: u64,
        to: u64,
        limit: u64,
        busy_in: impl Fn(u64, u64) -> u64,
    ) -> Option<(u64, u64)> {
        (from..to)
            .step_by(500_000)
            .map(|w| (w, busy_in(w, w + WINDOW_NS)))
            .find(|&(_, busy)| busy > limit)
    }

    proptest! {
        #[test]
        fn held_kernels_keep_every_window_within_the_bound(
            contexts in 1u32..=4,
            pct in 10u32..=80,
            cost_ms in 9u64..=30,
            stretches in proptest::collection::vec(0u64..=100, 40),
        ) {
            // Long kernels that each ran over between their cost and `contexts` times it
            // (others' time slices), their GPU time in the worst place that many contexts
            // allow: solid at the end of each run, a `1/contexts` share before (with one
            // context: all of it at the end).
            let ms = 1_000_000;
            let (cost, bound) = (cost_ms * ms, window_bound(pct));
            prop_assume!(cost + 2 * ms <= bound);
            let s = ComputeState::default();
            let n = contexts as u64;
            let mut now = 1_000 * ms;
            let mut runs = Vec::new();
            for stretch in &stretches {
                now += window_hold_ns(&s, now, cost, pct, contexts, 0);
                let slot = s.long_run_started(now, cost);
                let span = cost + (n.max(2) - 1) * cost * stretch / 100;
                let end = now + span;
                s.long_run_ended(slot, now, end, span);
                let solid = if n == 1 { cost } else { (n * cost).saturating_sub(span) / (n - 1) };
                let shared = if n == 1 { 0 } else { n };
                runs.push((now, end - solid, end, shared));
                now = end;
            }
            let busy_in = |a: u64, b: u64| -> u64 {
                runs.iter()
                    .map(|&(s, dense, e, n)| {
                        let before = dense.min(b).saturating_sub(s.max(a));
                        e.min(b).saturating_sub(dense.max(a))
                            + before.checked_div(n).unwrap_or(0)
                    })
                    .sum()
            };
            let over = first_window_over(runs[0].0, now, bound + HOLD_STEP_NS, busy_in);
            prop_assert!(over.is_none(), "window (start, GPU time) {over:?} of {bound}");
        }
    }

    proptest! {
        #[test]
        fn kernels_held_while_others_run_keep_every_window_within_the_bound(
            pct in 10u32..=80,
            cost_ms in 9u64..=30,
            rests in proptest::collection::vec(0u64..=40, 40),
        ) {
            // Before each launch another tenant has a kernel running with `rest` ms of GPU
            // time left at the earliest; each of the tenant's kernels then has its GPU time
            // as early as taking turns allows (`shared_gpu_time`), the worst for the windows
            // ending while it runs.
            let ms = 1_000_000;
            let (cost, bound) = (cost_ms * ms, window_bound(pct));
            prop_assume!(cost + 2 * ms <= bound);
            let s = ComputeState::default();
            let mut now = 1_000 * ms;
            let mut runs = Vec::new();
            for rest in &rests {
                let others_until = now + rest * ms;
                now += window_hold_ns(&s, now, cost, pct, 2, others_until);
                let rest = others_until.saturating_sub(now);
                let span = shared_run_ns(cost, rest);
                let slot = s.long_run_started(now, cost);
                s.long_run_ended(slot, now, now + span, span);
                runs.push((now, rest));
                now += span;
            }
            let gpu_by = |t: u64| -> u64 {
                runs.iter()
                    .map(|&(start, rest)| shared_gpu_time(t.saturating_sub(start), cost, rest))
                    .sum()
            };
            let limit = bound + HOLD_STEP_NS + SHARED_CHECK_STEP_NS / 2;
            let over = first_window_over(runs[0].0, now, limit, |a, b| gpu_by(b) - gpu_by(a));
            prop_assert!(over.is_none(), "window (start, GPU time) {over:?} of {bound}");
        }
    }

    #[test]
    fn wall_cost_scales_by_the_limit_and_saturates() {
        assert_eq!(wall_cost_ns(1_000, 25), 4_000);
        assert_eq!(wall_cost_ns(1_000, 100), 1_000);
        assert_eq!(wall_cost_ns(1_000, 0), 100_000, "0 % counts as 1 %");
        assert_eq!(wall_cost_ns(u64::MAX / 10, 50), u64::MAX);
    }

    #[test]
    fn a_tenant_alone_is_paced_to_its_limit() {
        let s = ComputeState::default();
        // 25 %: 1 ms kernels may start every 4 ms once the burst is used.
        let mut now = 1_000_000_000;
        let mut waited = 0;
        for _ in 0..1000 {
            let w = charge(&s, now, 1_000_000, 25, 2_000_000);
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
        assert_eq!(charge(&s, 0, 1_000_000, 50, 4_000_000), 0);
        // A long idle period, then a burst of launches: only `burst` worth pass at once.
        let now = 10_000_000_000;
        let free = (0..100)
            .take_while(|_| charge(&s, now, 1_000_000, 50, 4_000_000) == 0)
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
                now += charge(&s, now, *c, pct, burst);
                total += c;
                // Work submitted by `now` fits in the rate over [start, now + burst + cost].
                let allowed = (now - start + burst + c) as u128 * pct as u128 / 100 + 100;
                prop_assert!(total as u128 <= allowed + *c as u128,
                    "total {total} allowed {allowed}");
            }
        }
    }
}
