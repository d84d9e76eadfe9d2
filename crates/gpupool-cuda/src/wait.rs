//! Waiting until a deadline on `CLOCK_MONOTONIC` (the compute limiter's waits), three ways,
//! measured side by side by `target/release/gpupool-waitbench`:
//!
//! - [`spin`]: `sched_yield` until the deadline (precise, burns the thread's CPU);
//! - [`sleep_then_spin`]: sleeps until `margin` before the deadline with the thread's default
//!   timer slack (50 µs on Linux), then spins;
//! - [`tight_sleep`]: an absolute `clock_nanosleep` to the deadline with the thread's timer slack
//!   lowered to 1 µs for the call (restored after), then spins whatever is left;
//! - [`adaptive`]: a 1 µs-slack sleep to a margin before the deadline, then a spin; the margin
//!   follows twice the sleeps' recent overshoot (the machine's timer latency), so the spin is as
//!   short as the machine allows.

use crate::clock::monotonic_ns;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Yields until `deadline_ns`.
pub fn spin(deadline_ns: u64) {
    while monotonic_ns() < deadline_ns {
        std::thread::yield_now();
    }
}

/// Sleeps until `margin_ns` before `deadline_ns` (when that is ahead), then yields until it.
pub fn sleep_then_spin(deadline_ns: u64, margin_ns: u64) {
    let now = monotonic_ns();
    if deadline_ns > now + margin_ns {
        std::thread::sleep(std::time::Duration::from_nanos(
            deadline_ns - now - margin_ns,
        ));
    }
    spin(deadline_ns);
}

/// Timer slack used by [`tight_sleep`], ns.
pub const TIGHT_SLACK_NS: u64 = 1_000;

/// Sleeps to `deadline_ns` with a 1 µs timer slack, then yields until it.
pub fn tight_sleep(deadline_ns: u64) {
    tight_sleep_to(deadline_ns);
    spin(deadline_ns);
}

/// An absolute sleep to `deadline_ns` with the thread's timer slack at 1 µs for the call.
fn tight_sleep_to(deadline_ns: u64) {
    // SAFETY: prctl with these arguments only reads / sets this thread's timer slack.
    let old = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
    // SAFETY: as above.
    unsafe {
        libc::prctl(
            libc::PR_SET_TIMERSLACK,
            TIGHT_SLACK_NS as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    // An interrupted sleep is continued by the spin below.
    // SAFETY: a valid timespec; a null remainder is allowed with TIMER_ABSTIME.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
    if old > 0 {
        // SAFETY: restores the slack read above.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, old as libc::c_ulong, 0, 0, 0) };
    }
}

/// The margin [`adaptive`] sleeps short of a deadline, ns (learned).
static MARGIN_NS: AtomicU64 = AtomicU64::new(80_000);
/// Bounds of the learned margin.
const MARGIN_MIN_NS: u64 = 2_000;
const MARGIN_MAX_NS: u64 = 200_000;

/// Sleeps (1 µs slack) to the learned margin before `deadline_ns`, then yields until it; the
/// sleep's overshoot updates the margin.
pub fn adaptive(deadline_ns: u64) {
    let margin = MARGIN_NS.load(Relaxed);
    let wake = deadline_ns.saturating_sub(margin);
    if wake > monotonic_ns() {
        tight_sleep_to(wake);
        let overshoot = monotonic_ns().saturating_sub(wake);
        let next = (margin * 7 + overshoot.saturating_mul(2)) / 8;
        MARGIN_NS.store(next.clamp(MARGIN_MIN_NS, MARGIN_MAX_NS), Relaxed);
    }
    spin(deadline_ns);
}

/// The margin [`adaptive`] uses now, ns.
pub fn adaptive_margin_ns() -> u64 {
    MARGIN_NS.load(Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_way_waits_at_least_until_the_deadline() {
        for wait in [
            spin as fn(u64),
            |d| sleep_then_spin(d, 80_000),
            tight_sleep,
            adaptive,
        ] {
            for ns in [0u64, 30_000, 300_000] {
                let deadline = monotonic_ns() + ns;
                wait(deadline);
                assert!(monotonic_ns() >= deadline);
            }
        }
        // A deadline in the past returns at once.
        tight_sleep(0);
        sleep_then_spin(0, 80_000);
        adaptive(0);
        let m = adaptive_margin_ns();
        assert!((MARGIN_MIN_NS..=MARGIN_MAX_NS).contains(&m), "{m}");
    }

    #[test]
    fn the_tight_sleep_leaves_the_thread_s_timer_slack_as_it_was() {
        // SAFETY: reading / setting this test thread's own slack.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 50_000, 0, 0, 0) };
        tight_sleep(monotonic_ns() + 10_000);
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) },
            50_000
        );
    }
}
