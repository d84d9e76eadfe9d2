//! The tenant this process belongs to: configuration (read once), its accounting region, this
//! process's slot, and per-device facts (region index, granularity, limit). Fork-aware: a child
//! claims its own slot on first use.

use crate::log;
use crate::spinlock::SpinLock;
use gpupool_config::limits::read_limits_file;
use gpupool_config::limits::MemoryLimit;
use gpupool_config::{format_size, TenantConfig};
use gpupool_cuda::result::*;
use gpupool_region::{ProcessIdentity, Region, SlotHandle, MAX_DEVICES};
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::OnceLock;

/// A configured tenant.
pub struct Tenant {
    /// Its configuration.
    pub config: TenantConfig,
    /// Its accounting region.
    pub region: Region,
}

/// `None` = no limit configured anywhere: every call passes straight through.
static TENANT: OnceLock<Result<Option<Tenant>, String>> = OnceLock::new();

static PID: AtomicU32 = AtomicU32::new(0);
static SLOT_PID: AtomicU32 = AtomicU32::new(0);
static SLOT_INDEX: AtomicU32 = AtomicU32::new(0);
static SLOT_TOKEN: AtomicU64 = AtomicU64::new(0);
static SLOT_CLAIM: SpinLock<()> = SpinLock::new(());
/// Region index + 1 per CUDA ordinal (0 = not looked up yet).
static DEVICE_INDEX: [AtomicU32; MAX_DEVICES] = [const { AtomicU32::new(0) }; MAX_DEVICES];
/// Allocation granularity per ordinal (0 = not looked up yet).
static GRANULARITY: [AtomicU64; MAX_DEVICES] = [const { AtomicU64::new(0) }; MAX_DEVICES];
/// Pid of the process that charged this ordinal's primary context (0 = none).
static CONTEXT_CHARGED: [AtomicU32; MAX_DEVICES] = [const { AtomicU32::new(0) }; MAX_DEVICES];

/// Granularity used when the driver cannot tell.
pub const DEFAULT_GRANULARITY: u64 = 2 << 20;

/// This process's pid, cached (refreshed in the child after fork).
#[inline]
pub fn pid() -> u32 {
    let p = PID.load(Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: getpid has no preconditions.
    let p = unsafe { libc::getpid() } as u32;
    PID.store(p, Relaxed);
    p
}

/// Before a fork: holds the slot claim so the child never inherits it half-taken.
pub fn lock_for_fork() {
    SLOT_CLAIM.raw_lock();
}

/// After a fork, in the parent: lets the slot claim go.
pub fn unlock_after_fork() {
    SLOT_CLAIM.raw_unlock();
}

/// After a fork, in the child: forgets the parent's slot, pid and charged contexts (the child
/// claims its own on first use) and lets the slot claim go.
pub fn forget_after_fork() {
    if let Some(Ok(Some(t))) = TENANT.get() {
        t.region.forget_after_fork();
    }
    SLOT_CLAIM.raw_unlock();
    PID.store(0, Relaxed);
    for c in &CONTEXT_CHARGED {
        c.store(0, Relaxed);
    }
}

/// At exit: gives this process's slot back (only the process that claimed it).
pub fn release_slot_at_exit() {
    if let Some(Ok(Some(t))) = TENANT.get() {
        if SLOT_PID.load(SeqCst) == pid() {
            t.region.release_slot(current_slot_handle());
        }
    }
}

fn load() -> Result<Option<Tenant>, String> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let file = read_limits_file(&env).map_err(|e| e.to_string())?;
    let config =
        TenantConfig::from_sources(&env, file.as_ref().map(|(p, t)| (p.as_path(), t.as_str())))
            .map_err(|e| e.to_string())?;
    log::set_level(config.log_level);
    if !config.has_memory_limit() && !config.paces_compute() && config.region.is_none() {
        return Ok(None);
    }
    let region = match &config.region {
        Some(p) => Region::open(p),
        None => Region::private(),
    }
    .map_err(|e| e.to_string())?;
    region.set_priority(match config.priority {
        gpupool_config::Priority::Low => gpupool_region::PRIORITY_LOW,
        gpupool_config::Priority::High => gpupool_region::PRIORITY_HIGH,
    });
    crate::log!(
        Info,
        "limits from {:?}, region {}",
        config.source,
        region.path().display()
    );
    Ok(Some(Tenant { config, region }))
}

static REPORTED: AtomicBool = AtomicBool::new(false);

/// The tenant (`Ok(None)` when nothing is configured), or the configuration error as the CUDA
/// error to return. The error is printed once.
#[inline]
pub fn tenant() -> Result<Option<&'static Tenant>, u32> {
    match TENANT.get_or_init(load) {
        Ok(t) => Ok(t.as_ref()),
        Err(msg) => {
            if !REPORTED.swap(true, Relaxed) {
                eprintln!("{msg}\ngpupool: refusing to start CUDA without valid limits (fix the configuration above)");
            }
            Err(CUDA_ERROR_NOT_INITIALIZED)
        }
    }
}

fn current_slot_handle() -> SlotHandle {
    SlotHandle::from_raw(SLOT_INDEX.load(SeqCst), SLOT_TOKEN.load(SeqCst))
}

/// This process's slot in the tenant's region, claimed on first use (and again after fork).
pub fn slot(t: &'static Tenant) -> Result<SlotHandle, u32> {
    let me = pid();
    if SLOT_PID.load(SeqCst) == me {
        return Ok(current_slot_handle());
    }
    SLOT_CLAIM.with(|_| {
        if SLOT_PID.load(SeqCst) == me {
            return Ok(current_slot_handle());
        }
        let h = t
            .region
            .claim_slot(ProcessIdentity::current())
            .map_err(|e| {
                crate::log!(Error, "{e}");
                CUDA_ERROR_OUT_OF_MEMORY
            })?;
        let (index, token) = h.to_raw();
        SLOT_INDEX.store(index, SeqCst);
        SLOT_TOKEN.store(token, SeqCst);
        SLOT_PID.store(me, SeqCst);
        crate::idle_gate::publish(&t.region, h);
        Ok(h)
    })
}

/// Memory limit per ordinal, resolved with the device's UUID on first use: `NO_LIMIT`, bytes, or
/// 0 when limits are per device and this one has none (nothing may be allocated on it).
static LIMIT: [AtomicU64; MAX_DEVICES] = [const { AtomicU64::new(UNRESOLVED) }; MAX_DEVICES];
const UNRESOLVED: u64 = u64::MAX - 1;
const NO_LIMIT: u64 = u64::MAX;

/// The memory limit of ordinal `ord` (`u64::MAX` = none; 0 = this device is not among the
/// tenant's, so nothing may be allocated on it).
pub fn limit(t: &Tenant, ord: i32) -> u64 {
    let Some(o) = usize::try_from(ord).ok().filter(|o| *o < MAX_DEVICES) else {
        return NO_LIMIT;
    };
    let cached = LIMIT[o].load(Relaxed);
    if cached != UNRESOLVED {
        return cached;
    }
    let uuid = crate::driver::device_uuid(ord).ok();
    let l = match t.config.memory_limit_of(o, uuid.as_ref()) {
        MemoryLimit::None => NO_LIMIT,
        MemoryLimit::Bytes(b) => b,
        MemoryLimit::NotListed => {
            crate::log!(
                Warn,
                "device {ord} ({}) has no memory limit among the tenant's per-device limits: nothing may be allocated on it",
                uuid.map(|u| gpupool_cuda::uuid::format_gpu_uuid(&u))
                    .unwrap_or_else(|| "unknown UUID".into())
            );
            0
        }
    };
    LIMIT[o].store(l, Relaxed);
    l
}

static SPILL: [AtomicU64; MAX_DEVICES] = [const { AtomicU64::new(UNRESOLVED) }; MAX_DEVICES];

/// Host memory the tenant may use past its limit on ordinal `ord` (0: none).
pub fn spill(t: &Tenant, ord: i32) -> u64 {
    let Some(o) = usize::try_from(ord).ok().filter(|o| *o < MAX_DEVICES) else {
        return 0;
    };
    let cached = SPILL[o].load(Relaxed);
    if cached != UNRESOLVED {
        return cached;
    }
    let uuid = crate::driver::device_uuid(ord).ok();
    let s = t.config.spill_of(o, uuid.as_ref());
    SPILL[o].store(s, Relaxed);
    s
}

/// Region index of ordinal `ord`, registering its UUID on first use.
pub fn device_index(t: &Tenant, ord: i32) -> Result<usize, u32> {
    let o = usize::try_from(ord)
        .ok()
        .filter(|o| *o < MAX_DEVICES)
        .ok_or(CUDA_ERROR_INVALID_DEVICE)?;
    let cached = DEVICE_INDEX[o].load(Relaxed);
    if cached != 0 {
        return Ok(cached as usize - 1);
    }
    let uuid = crate::driver::device_uuid(ord)?;
    let idx = t.region.device_index(uuid).map_err(|e| {
        crate::log!(Error, "{e}");
        CUDA_ERROR_INVALID_DEVICE
    })?;
    let l = limit(t, ord);
    if l != NO_LIMIT {
        t.region.set_limit(idx, l);
    }
    DEVICE_INDEX[o].store(idx as u32 + 1, Relaxed);
    Ok(idx)
}

/// Allocation granularity of ordinal `ord`.
pub fn granularity(ord: i32) -> u64 {
    let Some(o) = usize::try_from(ord).ok().filter(|o| *o < MAX_DEVICES) else {
        return DEFAULT_GRANULARITY;
    };
    let g = GRANULARITY[o].load(Relaxed);
    if g != 0 {
        return g;
    }
    let g = crate::driver::allocation_granularity(ord).unwrap_or(DEFAULT_GRANULARITY);
    GRANULARITY[o].store(g, Relaxed);
    g
}

/// Everything needed to charge memory of one device.
pub struct Account {
    /// The tenant.
    pub tenant: &'static Tenant,
    /// This process's slot.
    pub slot: SlotHandle,
    /// CUDA ordinal of the device.
    pub ordinal: i32,
    /// Region index of the device.
    pub device: usize,
    /// The device's limit (`u64::MAX` = none).
    pub limit: u64,
    /// Host memory usable past the limit (0: none).
    pub spill: u64,
}

/// The account for ordinal `ord`, without charging anything.
pub fn lookup_account(ord: i32) -> Result<Option<Account>, u32> {
    let Some(t) = tenant()? else {
        return Ok(None);
    };
    let device = device_index(t, ord)?;
    let slot = slot(t)?;
    Ok(Some(Account {
        tenant: t,
        slot,
        ordinal: ord,
        device,
        limit: limit(t, ord),
        spill: spill(t, ord),
    }))
}

/// The account for ordinal `ord`, for allocating. The first time, this process's context on
/// that device is charged (a context costs device memory before anything is allocated in it);
/// while the context does not fit in the limit, every allocation is refused.
pub fn account(ord: i32) -> Result<Option<Account>, u32> {
    let acct = lookup_account(ord)?;
    if let Some(a) = &acct {
        charge_context(a, ord)?;
    }
    Ok(acct)
}

/// Charges this process's context on `ord` once.
pub fn charge_context(acct: &Account, ord: i32) -> Result<(), u32> {
    let bytes = acct.tenant.config.context_memory;
    let me = pid();
    let Some(charged) = usize::try_from(ord)
        .ok()
        .and_then(|o| CONTEXT_CHARGED.get(o))
    else {
        return Ok(());
    };
    if bytes == 0 || charged.load(SeqCst) == me {
        return Ok(());
    }
    SLOT_CLAIM.with(|_| {
        if charged.load(SeqCst) != me {
            acct.reserve(bytes)?;
            charged.store(me, SeqCst);
        }
        Ok(())
    })
}

impl Account {
    /// Reserves `bytes` against the limit. When refused, this process's memory pools on the
    /// device give back what they keep and the reservation is tried once more.
    pub fn reserve(&self, bytes: u64) -> Result<(), u32> {
        let region = &self.tenant.region;
        region
            .try_reserve(self.slot, self.device, bytes, self.limit)
            .or_else(|d| match crate::pools::give_back_kept(self.ordinal) {
                0 => Err(d),
                _ => region.try_reserve(self.slot, self.device, bytes, self.limit),
            })
            .map_err(|d| {
                crate::log!(
                    Info,
                    "out of memory: {} requested, {} of {} in use",
                    format_size(bytes),
                    format_size(d.used),
                    format_size(d.limit)
                );
                CUDA_ERROR_OUT_OF_MEMORY
            })
    }

    /// Gives `bytes` back.
    pub fn release(&self, bytes: u64) {
        self.tenant.region.release(self.slot, self.device, bytes);
    }

    /// Charges `bytes` the driver already holds for this process, even past the limit.
    pub fn hold(&self, bytes: u64) {
        self.tenant
            .region
            .charge_held(self.slot, self.device, bytes);
    }

    /// Charges `delta` more bytes (held, even past the limit) or gives `-delta` back.
    pub fn adjust(&self, delta: i128) {
        let bytes = u64::try_from(delta.unsigned_abs()).unwrap_or(u64::MAX);
        if delta > 0 {
            self.hold(bytes);
        } else if delta < 0 {
            self.release(bytes);
        }
    }

    /// Reserves `bytes` of host memory past the limit (spill), or fails with
    /// `CUDA_ERROR_OUT_OF_MEMORY`.
    pub fn reserve_spill(&self, bytes: u64) -> Result<(), u32> {
        self.tenant
            .region
            .try_reserve_spill(self.slot, self.device, bytes, self.spill)
            .map_err(|d| {
                crate::log!(
                    Info,
                    "out of memory: {} requested, the device limit is reached and {} of {} spilled to host memory",
                    format_size(bytes),
                    format_size(d.used),
                    format_size(d.limit)
                );
                CUDA_ERROR_OUT_OF_MEMORY
            })
    }

    /// Gives `bytes` of spill back.
    pub fn release_spill(&self, bytes: u64) {
        self.tenant
            .region
            .release_spill(self.slot, self.device, bytes);
    }

    /// Host memory the whole tenant has spilled for this device.
    pub fn spilled(&self) -> u64 {
        self.tenant.region.spilled(self.device)
    }

    /// Usage of the whole tenant on this device, dead processes reaped at most every 200 ms.
    pub fn used(&self) -> u64 {
        static LAST_REAP_MS: AtomicU64 = AtomicU64::new(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if now.saturating_sub(LAST_REAP_MS.swap(now, Relaxed)) >= 200 {
            self.tenant.region.reap_dead();
        }
        self.tenant.region.used(self.device)
    }
}
