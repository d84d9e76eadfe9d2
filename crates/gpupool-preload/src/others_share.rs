//! The share of each card the other tenants used recently, as this process last saw it: written
//! by the coordination with the card's other tenants, read when a timed launch is learnt.

use crate::pacing;
use gpupool_region::MAX_DEVICES;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Share of the card other tenants charged recently, per ordinal (millionths).
static OTHERS_PPM: [AtomicU64; MAX_DEVICES] = [const { AtomicU64::new(0) }; MAX_DEVICES];

/// Records what the other tenants of ordinal `o` used recently (millionths of the card).
pub fn set(o: usize, ppm: u64) {
    if let Some(a) = OTHERS_PPM.get(o) {
        a.store(ppm, Relaxed);
    }
}

/// A timed launch's run time on ordinal `o` without the other tenants' time slices in it
/// (`pacing::exclusive_ns` with their last seen share).
pub fn exclusive_ns(o: usize, elapsed_ns: u64) -> u64 {
    let others = OTHERS_PPM.get(o).map_or(0, |a| a.load(Relaxed));
    pacing::exclusive_ns(elapsed_ns, others)
}
