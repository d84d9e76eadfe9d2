//! The layout of a card file (one tenant's entries for one card, see [`crate::card`]): the
//! atomics its owner maps and writes, the plain copy other tenants read, and tenant keys.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

/// Entries a tenant's card file holds (processes of the tenant on the card; more are paced at
/// their limit alone).
pub const CARD_ENTRIES: usize = 16;
/// An entry whose heartbeat is older is ignored (its process died or stopped launching).
pub const STALE_NS: u64 = 200_000_000;
/// First eight bytes of a card file.
pub(crate) const CARD_MAGIC: u64 = u64::from_le_bytes(*b"GPCARD05");
/// Long kernels an entry publishes: its tenant's recent ones (`ComputeState::long_runs`), so
/// that each tenant can tell where in a run of its own it shared the card.
pub const CARD_RUNS: usize = 8;

/// One process's entry.
#[repr(C)]
#[derive(Default)]
pub(crate) struct Entry {
    /// Tenant key (0 = free).
    pub(crate) tenant: AtomicU64,
    pub(crate) pid: AtomicU32,
    /// 0 high, 1 low.
    pub(crate) priority: AtomicU32,
    pub(crate) request: AtomicU32,
    pub(crate) limit: AtomicU32,
    pub(crate) last_launch_ns: AtomicU64,
    pub(crate) heartbeat_ns: AtomicU64,
    /// GPU time the process charged recently, in millionths of the card.
    pub(crate) used_ppm: AtomicU64,
    /// Recent long kernels of the tenant: start, end and GPU time (ns; start 0 = none, end 0 =
    /// running).
    pub(crate) runs: [[AtomicU64; 3]; CARD_RUNS],
}

#[repr(C)]
pub(crate) struct CardFile {
    pub(crate) magic: AtomicU64,
    _pad: AtomicU64,
    pub(crate) entries: [Entry; CARD_ENTRIES],
}

impl Entry {
    /// A plain copy of the entry.
    pub(crate) fn copy(&self) -> EntryCopy {
        let mut runs = [[0u64; 3]; CARD_RUNS];
        for (to, from) in runs.iter_mut().zip(&self.runs) {
            *to = [
                from[0].load(Acquire),
                from[1].load(Relaxed),
                from[2].load(Relaxed),
            ];
        }
        EntryCopy {
            tenant: self.tenant.load(Acquire),
            pid: self.pid.load(Relaxed),
            priority: self.priority.load(Relaxed),
            request: self.request.load(Relaxed),
            limit: self.limit.load(Relaxed),
            last_launch_ns: self.last_launch_ns.load(Relaxed),
            heartbeat_ns: self.heartbeat_ns.load(Acquire),
            used_ppm: self.used_ppm.load(Relaxed),
            runs,
        }
    }
}

/// A plain copy of one entry (the same layout as the file's atomics).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EntryCopy {
    pub tenant: u64,
    pub pid: u32,
    pub priority: u32,
    pub request: u32,
    pub limit: u32,
    pub last_launch_ns: u64,
    pub heartbeat_ns: u64,
    pub used_ppm: u64,
    pub runs: [[u64; 3]; CARD_RUNS],
}

impl EntryCopy {
    /// Claimed and heard from within [`STALE_NS`].
    pub fn live(&self, now_ns: u64) -> bool {
        self.tenant != 0 && now_ns.saturating_sub(self.heartbeat_ns) <= STALE_NS
    }
}

/// A plain copy of a card file.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct CardFileCopy {
    pub(crate) magic: u64,
    _pad: u64,
    pub(crate) entries: [EntryCopy; CARD_ENTRIES],
}

const _: () = assert!(std::mem::size_of::<CardFileCopy>() == std::mem::size_of::<CardFile>());

/// The key of the tenant whose folder in the card folder is `name` (never 0).
pub fn tenant_key(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h | 1
}
