//! The checkpoint controller: makes room on a full card for a tenant that waits for it by
//! checkpointing idle processes of other tenants of that card (their device memory moves to
//! host memory through the driver's `cuCheckpointProcess*`), and restores them when they make
//! their next CUDA call or when the card has room again.
//!
//! Everything it knows comes from the tenants' regions (`<tenants>/<name>/region`): each
//! process's activity counter (its idle clock), the bytes a tenant waits for per card, and the
//! tenant's priority. A low-priority tenant never displaces a high-priority one; candidates are
//! taken low priority first, then longest idle, until what they hold covers what is waited for.
//! A pid read from a region is only acted on once its process is seen mapping that region
//! ([`crate::region_owner`]).

use crate::region_owner::{maps_file, FileId};
use gpupool_region::{IdleView, Region, CHECKPOINT_CHECKPOINTED, CHECKPOINT_RUNNING, PRIORITY_LOW};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The driver's process checkpointing (`cuCheckpointProcess*`, driver 550 and later); errors
/// are the driver's `CUresult`.
pub trait CheckpointDriver: Send + Sync {
    /// Locks process `pid`: its CUDA calls block, its pending work is waited for (up to
    /// `timeout_ms`).
    fn lock(&self, pid: u32, timeout_ms: u32) -> Result<(), u32>;
    /// Moves the locked process's device memory to host memory.
    fn checkpoint(&self, pid: u32) -> Result<(), u32>;
    /// Brings a checkpointed process's memory back to the card.
    fn restore(&self, pid: u32) -> Result<(), u32>;
    /// Lets the process's CUDA calls go on.
    fn unlock(&self, pid: u32) -> Result<(), u32>;
}

/// The controller's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// A process without a gated CUDA call for this long is idle (a candidate).
    pub idle_after: Duration,
    /// How long a process marked locked is watched for activity before the driver locks it.
    pub grace: Duration,
    /// How long the driver's lock waits for the process's pending work.
    pub lock_timeout: Duration,
    /// How often a checkpointed process nobody asked for is tried back onto its card.
    pub restore_retry: Duration,
    /// Where processes are looked up (`<proc_root>/<pid>/maps`).
    pub proc_root: PathBuf,
}

impl Settings {
    /// Defaults around `idle_after`.
    pub fn new(idle_after: Duration) -> Settings {
        Settings {
            idle_after,
            grace: Duration::from_millis(20),
            lock_timeout: Duration::from_secs(10),
            restore_retry: Duration::from_secs(5),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// What the controller did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An idle process was checkpointed to make room for another tenant.
    Checkpointed {
        /// Its tenant (folder name).
        tenant: String,
        /// Its host pid.
        pid: u32,
        /// The card (index in the tenant's region) and its UUID bytes.
        card: [u8; 16],
        /// Device memory it held there.
        bytes: u64,
        /// The tenant that waited for room.
        for_tenant: String,
    },
    /// A checkpointed process runs again.
    Restored {
        /// Its tenant.
        tenant: String,
        /// Its host pid.
        pid: u32,
        /// It had asked (a CUDA call waited); else the card had room again.
        asked: bool,
    },
    /// A driver step failed; the process runs on (or stays checkpointed, for a restore).
    Failed {
        /// Its tenant.
        tenant: String,
        /// Its host pid.
        pid: u32,
        /// `lock`, `checkpoint`, `restore` or `unlock`.
        step: &'static str,
        /// The driver's `CUresult`.
        code: u32,
    },
}

struct TenantRegion {
    region: Region,
    file: FileId,
}

/// One process as a candidate.
struct Candidate {
    tenant: String,
    pid: u32,
    low: bool,
    idle_ns: u64,
    bytes: u64,
    activity: u64,
}

/// The controller; [`Controller::round`] is called periodically.
pub struct Controller {
    settings: Settings,
    driver: Arc<dyn CheckpointDriver>,
    tenants_dir: PathBuf,
    tenants: BTreeMap<String, TenantRegion>,
    /// Per (tenant, host pid): the activity counter last seen and since when.
    seen: HashMap<(String, u32), (u64, u64)>,
    /// Per (tenant, host pid): when an unasked restore was last tried.
    tried: HashMap<(String, u32), u64>,
    /// Per card: bytes checkpointed for waiters lately and when; counted against what is still
    /// waited for until [`SETTLE_NS`] has passed (the waiter retries every few ms).
    made_room: HashMap<[u8; 16], (u64, u64)>,
}

/// How long room made on a card is assumed to be on its way to the waiter.
pub const SETTLE_NS: u64 = 2_000_000_000;

impl Controller {
    /// A controller over the tenant folders in `tenants_dir`.
    pub fn new(settings: Settings, driver: Arc<dyn CheckpointDriver>, tenants_dir: &Path) -> Self {
        Controller {
            settings,
            driver,
            tenants_dir: tenants_dir.to_path_buf(),
            tenants: BTreeMap::new(),
            seen: HashMap::new(),
            tried: HashMap::new(),
            made_room: HashMap::new(),
        }
    }

    /// Opens regions of new tenant folders, drops those gone.
    fn refresh_tenants(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.tenants_dir) else {
            return;
        };
        let mut present = Vec::new();
        for e in entries.flatten() {
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let path = e.path().join("region");
            if !path.is_file() {
                continue;
            }
            present.push(name.clone());
            if self.tenants.contains_key(&name) {
                continue;
            }
            match (Region::open(&path), FileId::of(&path)) {
                (Ok(region), Ok(file)) => {
                    self.tenants.insert(name, TenantRegion { region, file });
                }
                (Err(e), _) => tracing::warn!("checkpoints: {e}"),
                (_, Err(e)) => tracing::warn!("checkpoints: {}: {e}", path.display()),
            }
        }
        self.tenants.retain(|name, _| present.contains(name));
    }

    /// One round at `now_ns` (`CLOCK_MONOTONIC`): idle clocks, restores, then room for waiting
    /// tenants.
    pub fn round(&mut self, now_ns: u64) -> Vec<Event> {
        self.refresh_tenants();
        let views: BTreeMap<String, Vec<IdleView>> = self
            .tenants
            .iter()
            .map(|(n, t)| (n.clone(), t.region.idle_views()))
            .collect();
        self.update_idle_clocks(&views, now_ns);
        let mut events = self.restore(&views, now_ns);
        events.extend(self.make_room(&views, now_ns));
        events
    }

    fn update_idle_clocks(&mut self, views: &BTreeMap<String, Vec<IdleView>>, now_ns: u64) {
        let mut live = HashMap::new();
        for (tenant, procs) in views {
            for p in procs {
                let key = (tenant.clone(), p.host_pid);
                let entry = match self.seen.get(&key) {
                    Some(&(activity, since)) if activity == p.activity => (activity, since),
                    _ => (p.activity, now_ns),
                };
                live.insert(key, entry);
            }
        }
        self.seen = live;
        self.tried.retain(|k, _| self.seen.contains_key(k));
    }

    /// Cards (UUIDs) on which some tenant waits for room.
    fn wanted_cards(&self) -> Vec<[u8; 16]> {
        let mut cards = Vec::new();
        for t in self.tenants.values() {
            for (dev, uuid) in t.region.devices().into_iter().enumerate() {
                if t.region.wanted(dev) > 0 {
                    cards.push(uuid);
                }
            }
        }
        cards
    }

    fn restore(&mut self, views: &BTreeMap<String, Vec<IdleView>>, now_ns: u64) -> Vec<Event> {
        let busy_cards = self.wanted_cards();
        let retry = self.settings.restore_retry.as_nanos() as u64;
        let mut events = Vec::new();
        for (tenant, procs) in views {
            let Some(t) = self.tenants.get(tenant) else {
                continue;
            };
            let devices = t.region.devices();
            for p in procs.iter().filter(|p| p.state == CHECKPOINT_CHECKPOINTED) {
                let key = (tenant.clone(), p.host_pid);
                if !p.restore_wanted {
                    let on_busy_card = devices
                        .iter()
                        .zip(&p.used)
                        .any(|(uuid, used)| *used > 0 && busy_cards.contains(uuid));
                    let last = self.tried.get(&key).copied();
                    if on_busy_card || last.is_some_and(|l| now_ns.saturating_sub(l) < retry) {
                        continue;
                    }
                    self.tried.insert(key.clone(), now_ns);
                }
                match self.driver.restore(p.host_pid) {
                    Ok(()) => {
                        if let Err(code) = self.driver.unlock(p.host_pid) {
                            events.push(failed(tenant, p.host_pid, "unlock", code));
                        }
                        t.region.mark_running(p.host_pid);
                        self.tried.remove(&key);
                        events.push(Event::Restored {
                            tenant: tenant.clone(),
                            pid: p.host_pid,
                            asked: p.restore_wanted,
                        });
                    }
                    // No room yet: tried again next round (asked) or after the retry period.
                    Err(code) if p.restore_wanted => {
                        tracing::debug!("restore of {tenant} pid {} deferred ({code})", p.host_pid)
                    }
                    Err(_) => {}
                }
            }
        }
        events
    }

    fn make_room(&mut self, views: &BTreeMap<String, Vec<IdleView>>, now_ns: u64) -> Vec<Event> {
        let mut events = Vec::new();
        let waiting: Vec<(String, [u8; 16], u64, bool)> = self
            .tenants
            .iter()
            .flat_map(|(name, t)| {
                let low = t.region.priority() == PRIORITY_LOW;
                t.region
                    .devices()
                    .into_iter()
                    .enumerate()
                    .filter_map(move |(dev, uuid)| {
                        let w = t.region.wanted(dev);
                        (w > 0).then(|| (name.clone(), uuid, w, low))
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        self.made_room
            .retain(|_, (_, at)| now_ns.saturating_sub(*at) < SETTLE_NS);
        for (for_tenant, card, wanted, waiter_low) in waiting {
            let mut candidates = self.candidates(views, &for_tenant, card, waiter_low, now_ns);
            candidates.sort_by_key(|c| (!c.low, std::cmp::Reverse(c.idle_ns), c.pid));
            let mut freed = self.made_room.get(&card).map_or(0, |(b, _)| *b);
            for c in candidates {
                if freed >= wanted {
                    break;
                }
                if let Some(e) = self.checkpoint_one(&c, card, &for_tenant, now_ns) {
                    if matches!(e, Event::Checkpointed { .. }) {
                        freed = freed.saturating_add(c.bytes);
                        let entry = self.made_room.entry(card).or_insert((0, now_ns));
                        *entry = (entry.0.saturating_add(c.bytes), now_ns);
                    }
                    events.push(e);
                }
            }
        }
        events
    }

    /// Idle, running processes of other tenants holding memory on `card` that a waiter of this
    /// priority may displace.
    fn candidates(
        &self,
        views: &BTreeMap<String, Vec<IdleView>>,
        waiter: &str,
        card: [u8; 16],
        waiter_low: bool,
        now_ns: u64,
    ) -> Vec<Candidate> {
        let idle_after = self.settings.idle_after.as_nanos() as u64;
        let mut out = Vec::new();
        for (tenant, procs) in views {
            let Some(t) = self.tenants.get(tenant) else {
                continue;
            };
            let low = t.region.priority() == PRIORITY_LOW;
            if tenant == waiter || (waiter_low && !low) {
                continue;
            }
            let Some(dev) = t.region.devices().iter().position(|u| *u == card) else {
                continue;
            };
            for p in procs {
                let bytes = p.used.get(dev).copied().unwrap_or(0);
                let Some(&(activity, since)) = self.seen.get(&(tenant.clone(), p.host_pid)) else {
                    continue;
                };
                let idle_ns = now_ns.saturating_sub(since);
                if p.state == CHECKPOINT_RUNNING && bytes > 0 && idle_ns >= idle_after {
                    out.push(Candidate {
                        tenant: tenant.clone(),
                        pid: p.host_pid,
                        low,
                        idle_ns,
                        bytes,
                        activity,
                    });
                }
            }
        }
        out
    }

    /// Locks and checkpoints one candidate; `None` when it turned out busy or not the
    /// tenant's.
    fn checkpoint_one(
        &self,
        c: &Candidate,
        card: [u8; 16],
        for_tenant: &str,
        now_ns: u64,
    ) -> Option<Event> {
        let t = self.tenants.get(&c.tenant)?;
        if !maps_file(&self.settings.proc_root, c.pid, t.file) {
            tracing::warn!(
                "checkpoints: pid {} named by tenant {} does not map its region; left alone",
                c.pid,
                c.tenant
            );
            return None;
        }
        if !t.region.begin_lock(c.pid, now_ns) {
            return None;
        }
        std::thread::sleep(self.settings.grace);
        if t.region.activity_of(c.pid) != Some(c.activity) {
            t.region.mark_running(c.pid);
            return None;
        }
        let timeout_ms = self.settings.lock_timeout.as_millis().min(u32::MAX as u128) as u32;
        if let Err(code) = self.driver.lock(c.pid, timeout_ms) {
            t.region.mark_running(c.pid);
            return Some(failed(&c.tenant, c.pid, "lock", code));
        }
        if let Err(code) = self.driver.checkpoint(c.pid) {
            let _ = self.driver.unlock(c.pid);
            t.region.mark_running(c.pid);
            return Some(failed(&c.tenant, c.pid, "checkpoint", code));
        }
        if !t.region.finish_checkpoint(c.pid) {
            // The process dropped the lock as stale meanwhile: give it its memory back.
            let _ = self.driver.restore(c.pid);
            let _ = self.driver.unlock(c.pid);
            t.region.mark_running(c.pid);
            return None;
        }
        Some(Event::Checkpointed {
            tenant: c.tenant.clone(),
            pid: c.pid,
            card,
            bytes: c.bytes,
            for_tenant: for_tenant.to_string(),
        })
    }
}

fn failed(tenant: &str, pid: u32, step: &'static str, code: u32) -> Event {
    Event::Failed {
        tenant: tenant.to_string(),
        pid,
        step,
        code,
    }
}

/// One line for the log (and a Kubernetes event's message).
pub fn describe(e: &Event) -> String {
    match e {
        Event::Checkpointed {
            tenant,
            pid,
            card,
            bytes,
            for_tenant,
        } => format!(
            "checkpointed idle process {pid} of {tenant} ({} on {}) to make room for {for_tenant}",
            gpupool_config::format_size(*bytes),
            gpupool_config::limits::format_uuid(card)
        ),
        Event::Restored { tenant, pid, asked } => format!(
            "restored process {pid} of {tenant} ({})",
            if *asked {
                "at its next CUDA call"
            } else {
                "its card has room again"
            }
        ),
        Event::Failed {
            tenant,
            pid,
            step,
            code,
        } => format!("checkpoint {step} of process {pid} of {tenant} failed: CUresult {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpupool_region::{ProcessIdentity, SlotHandle, PRIORITY_HIGH};
    use std::sync::Mutex;

    const GIB: u64 = 1 << 30;
    const CARD: [u8; 16] = [7; 16];
    const SECOND: u64 = 1_000_000_000;

    /// Records every driver step.
    #[derive(Default)]
    struct FakeDriver {
        calls: Mutex<Vec<(&'static str, u32)>>,
        restore_fails: std::sync::atomic::AtomicBool,
    }

    impl FakeDriver {
        fn take(&self) -> Vec<(&'static str, u32)> {
            std::mem::take(&mut self.calls.lock().unwrap())
        }
        fn log(&self, step: &'static str, pid: u32) {
            self.calls.lock().unwrap().push((step, pid));
        }
    }

    impl CheckpointDriver for FakeDriver {
        fn lock(&self, pid: u32, _timeout_ms: u32) -> Result<(), u32> {
            self.log("lock", pid);
            Ok(())
        }
        fn checkpoint(&self, pid: u32) -> Result<(), u32> {
            self.log("checkpoint", pid);
            Ok(())
        }
        fn restore(&self, pid: u32) -> Result<(), u32> {
            self.log("restore", pid);
            if self.restore_fails.load(std::sync::atomic::Ordering::SeqCst) {
                Err(2)
            } else {
                Ok(())
            }
        }
        fn unlock(&self, pid: u32) -> Result<(), u32> {
            self.log("unlock", pid);
            Ok(())
        }
    }

    /// A tenant folder with a region holding `bytes` on the card for one process.
    struct Tenant {
        region: Region,
        slot: SlotHandle,
    }

    fn tenant(dir: &Path, name: &str, low: bool, host_pid: u32, bytes: u64) -> Tenant {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        let region = Region::open(&folder.join("region")).unwrap();
        let dev = region.device_index(CARD).unwrap();
        region.set_priority(if low { PRIORITY_LOW } else { PRIORITY_HIGH });
        let who = ProcessIdentity {
            host_pid,
            ..ProcessIdentity::current()
        };
        let slot = region.claim_slot(who).unwrap();
        region.try_reserve(slot, dev, bytes, u64::MAX).unwrap();
        Tenant { region, slot }
    }

    fn setup(test: &str) -> (PathBuf, Arc<FakeDriver>, Controller) {
        let dir = std::env::temp_dir().join(format!("gpupool-ckpt-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let driver = Arc::new(FakeDriver::default());
        let mut settings = Settings::new(Duration::from_secs(10));
        settings.grace = Duration::from_millis(1);
        let controller = Controller::new(settings, driver.clone(), &dir);
        (dir, driver, controller)
    }

    #[test]
    fn idle_low_priority_processes_make_room_first_and_come_back_when_they_ask() {
        let (dir, driver, mut ctl) = setup("room");
        let me = std::process::id();
        let waiter = tenant(&dir, "waiter", false, me, 0);
        let idle_high = tenant(&dir, "idle-high", false, me, GIB);
        let idle_low = tenant(&dir, "idle-low", true, me, GIB);
        waiter.region.set_wanted(0, GIB);
        // Not idle long enough yet.
        assert!(ctl.round(100 * SECOND).is_empty());
        assert!(ctl.round(109 * SECOND).is_empty());
        assert!(driver.take().is_empty());
        // Idle for 10 s: the low-priority one covers the 1 GiB wanted; the other stays.
        let events = ctl.round(110 * SECOND);
        assert_eq!(
            events,
            vec![Event::Checkpointed {
                tenant: "idle-low".into(),
                pid: me,
                card: CARD,
                bytes: GIB,
                for_tenant: "waiter".into(),
            }]
        );
        assert_eq!(driver.take(), vec![("lock", me), ("checkpoint", me)]);
        assert_eq!(
            idle_low.region.idle_views()[0].state,
            CHECKPOINT_CHECKPOINTED
        );
        assert_eq!(idle_low.region.checkpoints(), 1);
        assert_eq!(idle_high.region.idle_views()[0].state, CHECKPOINT_RUNNING);
        // Nobody asked and the waiter still waits: it stays checkpointed.
        assert!(ctl.round(111 * SECOND).is_empty());
        assert!(driver.take().is_empty());
        // The waiter got its memory; then the process asks (its next CUDA call): restored,
        // unlocked, running.
        waiter.region.set_wanted(0, 0);
        idle_low.region.request_restore(idle_low.slot);
        let events = ctl.round(112 * SECOND);
        assert_eq!(
            events,
            vec![Event::Restored {
                tenant: "idle-low".into(),
                pid: me,
                asked: true
            }]
        );
        assert_eq!(driver.take(), vec![("restore", me), ("unlock", me)]);
        let view = &idle_low.region.idle_views()[0];
        assert_eq!(
            (view.state, view.restore_wanted),
            (CHECKPOINT_RUNNING, false)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_low_priority_waiter_never_displaces_a_high_priority_tenant() {
        let (dir, driver, mut ctl) = setup("priority");
        let me = std::process::id();
        let waiter = tenant(&dir, "waiter", true, me, 0);
        let _idle_high = tenant(&dir, "idle-high", false, me, 4 * GIB);
        waiter.region.set_wanted(0, GIB);
        ctl.round(SECOND);
        assert!(ctl.round(60 * SECOND).is_empty());
        assert!(driver.take().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_pid_whose_process_does_not_map_the_tenant_s_region_is_left_alone() {
        let (dir, driver, mut ctl) = setup("hostile");
        let me = std::process::id();
        let waiter = tenant(&dir, "waiter", false, me, 0);
        // A tenant that wrote another process's pid (init's) into its slot.
        let _liar = tenant(&dir, "liar", true, 1, 4 * GIB);
        waiter.region.set_wanted(0, GIB);
        ctl.round(SECOND);
        assert!(ctl.round(60 * SECOND).is_empty());
        assert!(driver.take().is_empty(), "pid 1 was never locked");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_process_active_during_the_grace_period_is_not_locked() {
        let (dir, driver, _) = setup("grace");
        let mut settings = Settings::new(Duration::from_secs(10));
        settings.grace = Duration::from_millis(300);
        let mut ctl = Controller::new(settings, driver.clone(), &dir);
        let me = std::process::id();
        let waiter = tenant(&dir, "waiter", false, me, 0);
        let busy = tenant(&dir, "busy", true, me, GIB);
        waiter.region.set_wanted(0, GIB);
        ctl.round(SECOND);
        let cells = busy.region.gate_cells(busy.slot);
        std::thread::scope(|s| {
            s.spawn(|| {
                // A CUDA call while the controller watches: the process saw "locked" too late.
                std::thread::sleep(Duration::from_millis(100));
                cells
                    .activity
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
            assert!(ctl.round(20 * SECOND).is_empty());
        });
        assert!(driver.take().is_empty());
        assert_eq!(busy.region.idle_views()[0].state, CHECKPOINT_RUNNING);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_checkpointed_process_nobody_waits_for_goes_back_when_the_card_has_room() {
        let (dir, driver, mut ctl) = setup("unasked");
        let me = std::process::id();
        let waiter = tenant(&dir, "waiter", false, me, 0);
        let idle = tenant(&dir, "idle", true, me, GIB);
        waiter.region.set_wanted(0, GIB);
        ctl.round(SECOND);
        assert_eq!(ctl.round(20 * SECOND).len(), 1);
        driver.take();
        // The waiter got its memory; the card may have no room yet: the restore fails and is
        // retried only after the retry period.
        waiter.region.set_wanted(0, 0);
        driver
            .restore_fails
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(ctl.round(21 * SECOND).is_empty());
        assert!(ctl.round(22 * SECOND).is_empty());
        assert_eq!(driver.take(), vec![("restore", me)]);
        driver
            .restore_fails
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let events = ctl.round(27 * SECOND);
        assert!(
            matches!(&events[..], [Event::Restored { asked: false, .. }]),
            "{events:?}"
        );
        assert_eq!(idle.region.idle_views()[0].state, CHECKPOINT_RUNNING);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
