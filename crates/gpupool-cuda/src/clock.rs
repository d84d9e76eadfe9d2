//! The clock every process of a machine shares: `CLOCK_MONOTONIC` in nanoseconds (the simulated
//! device timeline and the library's compute pacing both run on it).
//!
//! [`fast_ns`] reads the same clock for the launch path in about a third of the time where the
//! CPU's time-stamp counter is invariant: `CLOCK_MONOTONIC` is read at most once a millisecond
//! (an anchor), and in between the counter's ticks since the anchor are scaled by the rate seen
//! over the previous millisecond. It stays within a few microseconds of `CLOCK_MONOTONIC`
//! (NTP's slew included, since every anchor is a real reading), which is far below what pacing
//! resolves (bursts of milliseconds).

use std::sync::atomic::{
    fence, AtomicU64, AtomicU8,
    Ordering::{Acquire, Relaxed, Release},
};

/// Nanoseconds of `CLOCK_MONOTONIC`.
#[inline]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// How long an anchor is extrapolated from before `CLOCK_MONOTONIC` is read again.
pub const ANCHOR_NS: u64 = 1_000_000;

/// `CLOCK_MONOTONIC` in nanoseconds, from the time-stamp counter between anchors where that is
/// safe (x86-64 with an invariant counter), else [`monotonic_ns`]. Lock-free: a few atomic loads
/// and one counter read.
#[inline]
pub fn fast_ns() -> u64 {
    match tsc::read() {
        Some(ticks) => ANCHOR.extrapolate(ticks).unwrap_or_else(|| ANCHOR.renew()),
        None => monotonic_ns(),
    }
}

/// A reading of both clocks and the counter's rate, published under a sequence number (odd
/// while being rewritten; readers that see it change read again or fall back).
struct Anchor {
    seq: AtomicU64,
    ticks: AtomicU64,
    ns: AtomicU64,
    /// Nanoseconds per tick, 32.32 fixed point (0: no rate known yet).
    rate: AtomicU64,
}

static ANCHOR: Anchor = Anchor {
    seq: AtomicU64::new(0),
    ticks: AtomicU64::new(0),
    ns: AtomicU64::new(0),
    rate: AtomicU64::new(0),
};

impl Anchor {
    /// The time at `ticks` from the current anchor, or `None` when it is older than
    /// [`ANCHOR_NS`], has no rate yet or is being rewritten.
    #[inline]
    fn extrapolate(&self, ticks: u64) -> Option<u64> {
        let seq = self.seq.load(Acquire);
        let (t0, ns0, rate) = (
            self.ticks.load(Relaxed),
            self.ns.load(Relaxed),
            self.rate.load(Relaxed),
        );
        fence(Acquire);
        if seq & 1 == 1 || self.seq.load(Relaxed) != seq || rate == 0 {
            return None;
        }
        let since = ((ticks.checked_sub(t0)? as u128 * rate as u128) >> 32) as u64;
        (since < ANCHOR_NS).then(|| ns0 + since)
    }

    /// Reads `CLOCK_MONOTONIC`, and makes it the anchor unless another thread is doing so or
    /// the reading was interrupted (the counter read on both sides of it too far apart).
    #[cold]
    fn renew(&self) -> u64 {
        let before = tsc::read().unwrap_or(0);
        let ns = monotonic_ns();
        let after = tsc::read().unwrap_or(0);
        let seq = self.seq.load(Relaxed);
        if after.wrapping_sub(before) > MAX_READ_TICKS
            || seq & 1 == 1
            || self
                .seq
                .compare_exchange(seq, seq + 1, Acquire, Relaxed)
                .is_err()
        {
            return ns;
        }
        let ticks = before + (after - before) / 2;
        let (t0, ns0) = (self.ticks.load(Relaxed), self.ns.load(Relaxed));
        let elapsed = ns.wrapping_sub(ns0);
        if ns0 != 0 && elapsed < MIN_RATE_NS {
            // Too soon to measure a rate: keep the anchor, so that the interval grows.
            self.seq.store(seq, Release);
            return ns;
        }
        if let Some(rate) = rate_of(ticks.wrapping_sub(t0), elapsed) {
            self.rate.store(rate, Relaxed);
        }
        self.ticks.store(ticks, Relaxed);
        self.ns.store(ns, Relaxed);
        self.seq.store(seq + 2, Release);
        ns
    }
}

/// The most ticks a clock reading may take to become an anchor (a few microseconds on any
/// CPU; a reading preempted in the middle takes far more).
const MAX_READ_TICKS: u64 = 20_000;

/// The shortest interval a rate is measured over.
const MIN_RATE_NS: u64 = 100_000;

/// Nanoseconds per tick (32.32) from `ticks` counted over `ns`, when the interval is long
/// enough to measure ([`MIN_RATE_NS`]) and short enough to be a recent one (≤ 1 s).
fn rate_of(ticks: u64, ns: u64) -> Option<u64> {
    if !(MIN_RATE_NS..=1_000_000_000).contains(&ns) || ticks == 0 {
        return None;
    }
    let rate = ((ns as u128) << 32) / ticks as u128;
    u64::try_from(rate).ok().filter(|r| *r > 0)
}

/// The time-stamp counter, where it can stand in for `CLOCK_MONOTONIC`.
mod tsc {
    use super::{AtomicU8, Relaxed};

    /// 0: not checked yet, 1: usable, 2: not usable.
    static USABLE: AtomicU8 = AtomicU8::new(0);

    /// The counter, or `None` where it must not be used.
    #[inline]
    pub fn read() -> Option<u64> {
        match USABLE.load(Relaxed) {
            1 => Some(ticks()),
            2 => None,
            _ => {
                let ok = invariant();
                USABLE.store(if ok { 1 } else { 2 }, Relaxed);
                ok.then(ticks)
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    fn ticks() -> u64 {
        // SAFETY: RDTSC has no preconditions on x86-64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn ticks() -> u64 {
        0
    }

    /// Whether `GPUPOOL_TSC_CLOCK` allows the counter: unset or `1` yes, `0` no; any other
    /// value is reported on stderr and the counter is not used.
    fn allowed() -> bool {
        match std::env::var_os("GPUPOOL_TSC_CLOCK") {
            None => true,
            Some(v) if v == "1" => true,
            Some(v) if v == "0" => false,
            Some(v) => {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "gpupool: GPUPOOL_TSC_CLOCK={}: expected 0 or 1; reading the clock with \
                     clock_gettime",
                    v.to_string_lossy()
                );
                false
            }
        }
    }

    /// Whether the CPU says its counter runs at a constant rate in every state (CPUID
    /// 0x8000_0007, EDX bit 8), and [`allowed`] lets it be used.
    #[cfg(target_arch = "x86_64")]
    fn invariant() -> bool {
        if !allowed() {
            return false;
        }
        use core::arch::x86_64::__cpuid;
        // CPUID is available on every x86-64 CPU; leaves above the maximum are not read.
        __cpuid(0x8000_0000).eax >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn invariant() -> bool {
        let _ = allowed;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_only_from_measurable_intervals() {
        assert_eq!(rate_of(1_000_000, 500_000), Some(1 << 31), "2 ticks per ns");
        assert_eq!(rate_of(100, 50_000), None, "too short to measure");
        assert_eq!(rate_of(0, 1_000_000), None);
        assert_eq!(rate_of(1, 2_000_000_000), None, "too old");
    }

    #[test]
    fn an_anchor_is_extrapolated_for_a_millisecond_at_its_rate() {
        let a = Anchor {
            seq: AtomicU64::new(2),
            ticks: AtomicU64::new(1_000),
            ns: AtomicU64::new(5_000_000),
            rate: AtomicU64::new(1 << 31),
        };
        assert_eq!(a.extrapolate(1_000), Some(5_000_000));
        assert_eq!(a.extrapolate(3_000), Some(5_001_000), "2 ticks per ns");
        assert_eq!(
            a.extrapolate(1_000 + 2 * ANCHOR_NS),
            None,
            "old: read the clock"
        );
        assert_eq!(
            a.extrapolate(999),
            None,
            "before the anchor: read the clock"
        );
        a.seq.store(3, Relaxed);
        assert_eq!(a.extrapolate(3_000), None, "being rewritten");
        a.seq.store(4, Relaxed);
        a.rate.store(0, Relaxed);
        assert_eq!(a.extrapolate(3_000), None, "no rate yet");
    }

    #[test]
    fn the_fast_clock_follows_clock_monotonic() {
        // Long enough for several anchors and rates; every reading must lie between the
        // monotonic readings around it, give or take a few microseconds.
        let start = monotonic_ns();
        let mut worst = 0u64;
        let mut renewed = 0;
        let mut last_seq = ANCHOR.seq.load(Relaxed);
        while monotonic_ns() - start < 50_000_000 {
            let before = monotonic_ns();
            let fast = fast_ns();
            let after = monotonic_ns();
            let off = before.saturating_sub(fast).max(fast.saturating_sub(after));
            worst = worst.max(off);
            let seq = ANCHOR.seq.load(Relaxed);
            renewed += usize::from(seq != last_seq);
            last_seq = seq;
        }
        assert!(worst < 20_000, "the fast clock strayed {worst} ns");
        if tsc::read().is_some() {
            // About one anchor a millisecond: the counter, not the clock, answered the rest.
            assert!(ANCHOR.rate.load(Relaxed) > 0, "no rate measured");
            assert!(
                (10..=200).contains(&renewed),
                "anchors renewed {renewed} times in 50 ms"
            );
        }
    }
}
