//! The tenant's current compute rate on each device: its limit, or — when the node has a card
//! folder (`GPUPOOL_CARD_DIR`) — what `gpupool_region::card_share::allocate` grants it among the
//! card's tenants (request, borrowing of idle time, priority). A thread republishes this
//! process's entry and recomputes the rate every [`PERIOD`]; launches read the rate with one
//! atomic load and note their time with one atomic store.

use crate::others_share;
use crate::pacing::{profile_of, profiled_gpu_ns, TYPICAL_SLICE_NS, WINDOW_NS};
use crate::tenant::Tenant;
use gpupool_config::{Priority, TenantConfig};
use gpupool_region::{allocate, Card, ComputeState, Publish, PublishedRun, MAX_DEVICES};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};
use std::sync::OnceLock;
use std::time::Duration;

/// How often entries are republished and rates recomputed.
pub const PERIOD: Duration = Duration::from_millis(10);

/// A tenant's compute shares on one device (percent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shares {
    /// Cap.
    pub limit: u32,
    /// Guaranteed part.
    pub request: u32,
    /// Low priority?
    pub low: bool,
}

impl Shares {
    /// The shares `config` gives device `ordinal` (card `uuid`), `None` when its launches are
    /// not paced.
    pub fn of(config: &TenantConfig, ordinal: usize, uuid: Option<&[u8; 16]>) -> Option<Shares> {
        let low = config.priority == Priority::Low;
        let request = config.compute_request.get(ordinal, uuid);
        let limit = config.compute.get(ordinal, uuid);
        if limit.is_none() && request.is_none() && !low {
            return None;
        }
        let limit = limit.unwrap_or(100);
        Some(Shares {
            limit,
            request: request.unwrap_or(limit).min(limit),
            low,
        })
    }
}

/// Current rate per ordinal (percent; 0 = not joined).
static RATES: [AtomicU32; MAX_DEVICES] = [const { AtomicU32::new(0) }; MAX_DEVICES];
/// This process's last launch per ordinal (`CLOCK_MONOTONIC` ns).
static LAST_LAUNCH: [AtomicU64; MAX_DEVICES] = [const { AtomicU64::new(0) }; MAX_DEVICES];
/// GPU time this process charged per ordinal (ns, ever).
static CHARGED: [AtomicU64; MAX_DEVICES] = [const { AtomicU64::new(0) }; MAX_DEVICES];
/// Busy processes (contexts) on the card per ordinal, this one included; 1 without a card
/// folder (then a long kernel's run is counted at its worst, see
/// `pacing::window_hold_ns`).
static CONTEXTS: [AtomicU32; MAX_DEVICES] = [const { AtomicU32::new(1) }; MAX_DEVICES];
/// When the other tenants' long kernels running now could be done at the earliest, per
/// ordinal (ns; 0 = none known): see `pacing::window_hold_ns`.
static OTHERS_LONG_UNTIL: [AtomicU64; MAX_DEVICES] = [const { AtomicU64::new(0) }; MAX_DEVICES];
/// What an estimate of another tenant's kernel is trusted for, in tenths: its kernel may run
/// a little shorter than its estimate (the lowest of its recent runs).
const OTHERS_COST_TENTHS: u64 = 9;
/// How long after a run ended the other tenants' runs beside it are all published (each
/// tenant publishes every [`PERIOD`], its meter sees an end within a millisecond).
const PROFILE_SETTLED_NS: u64 = 30_000_000;

/// A device this process coordinates on.
struct Joined {
    ordinal: usize,
    card: Card,
    slot: usize,
    shares: Shares,
    /// The tenant's pacing state on the device (its long kernels are shared with the card).
    state: &'static ComputeState,
    /// `CHARGED` and the time at the last update, and the smoothed use since.
    last_charged: u64,
    last_at: u64,
    used_ppm: u64,
}

static JOINED: OnceLock<std::sync::Mutex<Vec<Joined>>> = OnceLock::new();
static THREAD: AtomicBool = AtomicBool::new(false);

/// The rate a launch on ordinal `o` is paced at, noting the launch.
#[inline]
pub fn launching(o: usize, now_ns: u64) -> u32 {
    LAST_LAUNCH[o].store(now_ns, Relaxed);
    RATES[o].load(Relaxed).max(1)
}

/// When the other tenants' long kernels running on ordinal `o` could be done at the earliest
/// (ns; 0 = none known).
pub fn others_long_until(o: usize) -> u64 {
    OTHERS_LONG_UNTIL.get(o).map_or(0, |a| a.load(Relaxed))
}

/// How many busy contexts share the card of ordinal `o` (at least 1).
pub fn contexts(o: usize) -> u32 {
    CONTEXTS.get(o).map_or(1, |c| c.load(Relaxed).max(1))
}

/// Notes `cost_ns` of GPU time charged on ordinal `o`.
#[inline]
pub fn charged(o: usize, cost_ns: u64) {
    // A load and a store, not a read-modify-write (a locked instruction on the launch path):
    // threads launching at the same instant may lose one another's note, which only makes
    // the use others see a little low (their slice correction then charges them more).
    let c = &CHARGED[o];
    c.store(c.load(Relaxed).wrapping_add(cost_ns), Relaxed);
}

/// This tenant's folder name in the card folder: as the node agent named it (`card_tenant`),
/// else from its region's path (each `gpupool run` tenant has its own region).
fn card_tenant(t: &Tenant) -> String {
    if let Some(name) = &t.config.card_tenant {
        return name.clone();
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in t.region.path().as_os_str().as_encoded_bytes() {
        h = (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("t-{h:016x}")
}

/// Starts pacing ordinal `ord` at `shares`: at its limit, or, with a card folder, at what the
/// card's tenants leave it (recomputed every [`PERIOD`]).
pub fn join(t: &'static Tenant, ord: i32, shares: Shares, state: &'static ComputeState) {
    let o = ord as usize;
    RATES[o].store(shares.limit, Relaxed);
    let Some(dir) = &t.config.card_dir else {
        if shares.request < shares.limit || shares.low {
            crate::log!(
                Warn,
                "compute request / priority need a card folder (GPUPOOL_CARD_DIR); capping at {}%",
                shares.limit
            );
        }
        return;
    };
    let uuid = match crate::driver::device_uuid(ord) {
        Ok(u) => gpupool_cuda::uuid::format_gpu_uuid(&u),
        Err(_) => return,
    };
    let name = card_tenant(t);
    let card = match Card::open(dir, &name, &uuid) {
        Ok(c) => c,
        Err(e) => {
            crate::log!(Warn, "{e}; capping at {}%", shares.limit);
            return;
        }
    };
    let now = gpupool_cuda::clock::monotonic_ns();
    let key = card.key();
    let Some(slot) = card.claim(std::process::id(), now) else {
        crate::log!(
            Warn,
            "card file of {uuid} is full; capping at {}%",
            shares.limit
        );
        return;
    };
    let mut joined = Joined {
        ordinal: o,
        card,
        slot,
        shares,
        state,
        last_charged: CHARGED[o].load(Relaxed),
        last_at: now,
        used_ppm: 0,
    };
    LAST_LAUNCH[o].store(now, Relaxed);
    update(&mut joined, key, now);
    JOINED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(joined);
    start_thread(key);
}

/// Publishes the tenant's long kernels of the last two windows in the card file, and gives
/// each of them that has ended the profile of the other tenants' long kernels beside it
/// (`pacing::window_hold_ns` then knows where in the run the tenant had the card). A
/// profile is recomputed on every update while the run is recent: the others' runs show up
/// a period after they start.
fn share_runs(j: &Joined, now: u64) {
    let recent = |end: u64| end == 0 || end + 2 * WINDOW_NS > now;
    let mine: Vec<(usize, PublishedRun)> = j
        .state
        .long_runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let run = PublishedRun {
                start: r.start_ns.load(Acquire),
                end: r.end_ns.load(Acquire),
                cost: r.cost_ns.load(Relaxed),
            };
            (i, run)
        })
        .filter(|(_, r)| r.start != 0 && recent(r.end))
        .collect();
    let published: Vec<PublishedRun> = mine.iter().map(|&(_, r)| r).collect();
    j.card.publish_runs(j.slot, &published);
    let others = j.card.other_runs(now);
    // A running kernel had at most the time since its start (or submission) on the GPU.
    let until = others
        .iter()
        .filter(|r| r.end == 0)
        .map(|r| r.start + r.cost / 10 * OTHERS_COST_TENTHS)
        .max()
        .unwrap_or(0);
    OTHERS_LONG_UNTIL[j.ordinal].store(until, Relaxed);
    let spans: Vec<(u64, u64)> = others.iter().map(|r| (r.start, r.end)).collect();
    for &(slot, PublishedRun { start, end, .. }) in &mine {
        if end != 0 {
            if let Some(steps) = profile_of(start, end, &spans, now) {
                j.state.set_profile(slot, start, &steps);
                // Only from measured runs: one never measured stays "running" (end 0), and
                // would halve the GPU time of every run after it.
                let measured = !others.iter().any(|r| r.end == 0 && r.start < end);
                if measured && end + PROFILE_SETTLED_NS < now && steps.iter().any(|s| s.1 > 0) {
                    // Its GPU time by the profile, plus a slice: turns begin and end
                    // anywhere in a slice, and an estimate below the truth would let the
                    // tenant over its limit and its windows.
                    let gpu = profiled_gpu_ns(end - start, &steps) + TYPICAL_SLICE_NS;
                    if gpu < end - start {
                        crate::cost::relearn_long(slot, start, gpu);
                    }
                }
            }
        }
    }
}

/// Republishes one entry and recomputes its rate and the others' use.
fn update(j: &mut Joined, key: u64, now: u64) {
    let charged = CHARGED[j.ordinal].load(Relaxed);
    if now > j.last_at {
        let recent =
            charged.saturating_sub(j.last_charged) as u128 * 1_000_000 / (now - j.last_at) as u128;
        j.used_ppm = (j.used_ppm * 7 + (recent as u64).min(1_000_000) * 3) / 10;
        (j.last_charged, j.last_at) = (charged, now);
    }
    let me = Publish {
        pid: std::process::id(),
        low: j.shares.low,
        request: j.shares.request,
        limit: j.shares.limit,
        last_launch_ns: LAST_LAUNCH[j.ordinal].load(Relaxed),
        used_ppm: j.used_ppm,
    };
    j.card.publish(j.slot, &me, now);
    j.card.refresh(now);
    let demands = j.card.demands(now);
    let others: u64 = demands
        .iter()
        .filter(|d| d.tenant != key && d.busy)
        .map(|d| d.used_ppm)
        .sum();
    others_share::set(j.ordinal, others);
    let others_contexts: u32 = demands
        .iter()
        .filter(|d| d.tenant != key)
        .map(|d| d.contexts)
        .sum();
    // This process counts as busy: it is about to launch whenever the count is read.
    CONTEXTS[j.ordinal].store(others_contexts + 1, Relaxed);
    share_runs(j, now);
    let mine = demands.iter().find(|d| d.tenant == key).copied();
    if let Some(mine) = mine {
        let mut mine = mine;
        mine.busy = true;
        RATES[j.ordinal].store(allocate(&demands, &mine), Relaxed);
    }
}

fn start_thread(key: u64) {
    if THREAD.swap(true, AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("gpupool-coord".into())
        .spawn(move || loop {
            std::thread::sleep(PERIOD);
            let now = gpupool_cuda::clock::monotonic_ns();
            if let Some(list) = JOINED.get() {
                for j in list.lock().unwrap_or_else(|e| e.into_inner()).iter_mut() {
                    update(j, key, now);
                }
            }
        });
    if spawned.is_err() {
        THREAD.store(false, Release);
    }
}

/// After `fork`: the child has no coordination thread and must claim entries of its own.
pub fn forget_after_fork() {
    THREAD.store(false, Release);
    if let Some(list) = JOINED.get() {
        // The parent's thread may have held the lock at the fork: take the data regardless.
        if let Ok(mut l) = list.try_lock() {
            l.clear();
        }
    }
}

/// At exit: this process's entries are given back.
pub fn leave_all() {
    if let Some(list) = JOINED.get() {
        if let Ok(l) = list.try_lock() {
            for j in l.iter() {
                j.card.release(j.slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_from_the_configuration() {
        let env = |pairs: &[(&str, &str)]| -> TenantConfig {
            let e: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            TenantConfig::from_sources(&e, None).unwrap()
        };
        assert_eq!(Shares::of(&env(&[]), 0, None), None);
        let capped = env(&[("GPUPOOL_COMPUTE_LIMIT", "40")]);
        assert_eq!(
            Shares::of(&capped, 0, None),
            Some(Shares {
                limit: 40,
                request: 40,
                low: false
            })
        );
        let borrowing = env(&[
            ("GPUPOOL_COMPUTE_LIMIT", "80"),
            ("GPUPOOL_COMPUTE_REQUEST", "30"),
        ]);
        assert_eq!(
            Shares::of(&borrowing, 0, None),
            Some(Shares {
                limit: 80,
                request: 30,
                low: false
            })
        );
        let low = env(&[("GPUPOOL_PRIORITY", "low")]);
        assert_eq!(
            Shares::of(&low, 0, None),
            Some(Shares {
                limit: 100,
                request: 100,
                low: true
            })
        );
        assert!(low.paces_compute());
    }
}
