//! Opening, validating and updating a region.

use crate::compute::ComputeState;
use crate::layout::*;
use crate::liveness;
use crate::process::{is_alive, own_pidns, ProcessIdentity};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::Duration;
use thiserror::Error;

/// How long a process waits for a region's registration lock before giving up with an error
/// (another process of the tenant may hold it forever).
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a region could not be used.
#[derive(Debug, Error)]
pub enum RegionError {
    /// The file could not be opened, sized or mapped.
    #[error("gpupool: cannot use accounting region {path}: {source}")]
    Io {
        /// The region file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds something else, or another layout version.
    #[error("gpupool: accounting region {path} has an incompatible layout (magic {magic:#x}, version {version}, size {size}; expected {expected_magic:#x}, version {LAYOUT_VERSION}, size {expected_size}); remove it or use a matching gpupool")]
    Layout {
        /// The region file.
        path: String,
        /// Magic found.
        magic: u64,
        /// Version found.
        version: u32,
        /// Size found.
        size: u64,
        /// Magic expected.
        expected_magic: u64,
        /// Size expected.
        expected_size: usize,
    },
    /// All device entries are taken.
    #[error("gpupool: accounting region {0} already tracks {MAX_DEVICES} devices")]
    DevicesFull(String),
    /// All process slots are taken by live processes.
    #[error("gpupool: accounting region {0} has no free process slot ({MAX_SLOTS} processes)")]
    SlotsFull(String),
}

/// A refused reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    /// Usage of the whole region on that device when refused (without the request).
    pub used: u64,
    /// The limit applied.
    pub limit: u64,
}

/// A claimed process slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotHandle {
    index: u32,
    token: u64,
}

impl SlotHandle {
    /// The handle as plain integers (to keep in atomics).
    pub fn to_raw(self) -> (u32, u64) {
        (self.index, self.token)
    }

    /// A handle from [`SlotHandle::to_raw`]'s integers. An invalid pair only makes later
    /// operations on it no-ops ([`Region::slot_valid`] is false) or out-of-range safe.
    pub fn from_raw(index: u32, token: u64) -> SlotHandle {
        SlotHandle {
            index: index.min(MAX_SLOTS as u32 - 1),
            token,
        }
    }
}

/// Usage of one live process, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessUsage {
    /// Pid in its own namespace.
    pub pid: u32,
    /// Pid as the host sees it (best effort).
    pub host_pid: u32,
    /// Bytes used per device index.
    pub used: Vec<u64>,
    /// Bytes spilled to host memory per device index.
    pub spilled: Vec<u64>,
}

/// Which of a slot's counters: device memory, or host memory standing in for it (spill).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Device memory (the limit).
    Device,
    /// Host memory past the limit (the spill allowance).
    Spill,
}

impl Pool {
    fn counters(self, slot: &ProcSlot) -> &[AtomicU64; MAX_DEVICES] {
        match self {
            Pool::Device => &slot.used,
            Pool::Spill => &slot.spilled,
        }
    }
}

/// A mapped region, or a private copy of one read by an observer ([`Region::snapshot`]).
pub struct Region {
    map: *mut Layout,
    /// The mapped file (the copied one for a snapshot); lock queries go through it.
    file: Option<File>,
    /// This process's own description of the file, holding its slots' lock bytes (-1: none yet).
    lock_fd: AtomicI32,
    path: PathBuf,
    register_lock: Mutex<()>,
    my_pidns: u64,
    last_reap_ms: AtomicU64,
}

// SAFETY: the mapping is only accessed through atomics; the pointer stays valid until drop.
unsafe impl Send for Region {}
// SAFETY: as above; all shared mutation goes through atomics or `register_lock` + flock.
unsafe impl Sync for Region {}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: map was returned by mmap with LAYOUT_SIZE and is not used after this.
        unsafe { libc::munmap(self.map.cast(), LAYOUT_SIZE) };
        let fd = self.lock_fd.swap(-1, SeqCst);
        if fd >= 0 {
            // SAFETY: closing the descriptor this region opened and owns.
            unsafe { libc::close(fd) };
        }
    }
}

fn next_token() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u64;
    let n = COUNTER.fetch_add(1, SeqCst);
    let t = (pid << 32) ^ n ^ 0x5bd1_e995_0000_0000;
    if t == 0 || t == OWNER_RECLAIMING {
        1
    } else {
        t
    }
}

fn uuid_words(uuid: [u8; 16]) -> [u64; 2] {
    let (a, b) = uuid.split_at(8);
    [
        u64::from_le_bytes(a.try_into().unwrap_or_default()),
        u64::from_le_bytes(b.try_into().unwrap_or_default()),
    ]
}

impl Region {
    /// Opens the region file at `path` for a tenant's process, creating and initialising it if it
    /// is new or empty. The last component must not be a symlink; waiting for another process's
    /// registration lock ends with an error after [`LOCK_TIMEOUT`].
    pub fn open(path: &Path) -> Result<Region, RegionError> {
        Region::open_within(path, LOCK_TIMEOUT)
    }

    /// [`Region::open`], waiting at most `timeout` for the registration lock.
    pub fn open_within(path: &Path, timeout: Duration) -> Result<Region, RegionError> {
        let io = |source| RegionError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = open_shared_file(path).map_err(io)?;
        let guard = FileLock::exclusive_within(&file, timeout).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let fresh = len == 0;
        if fresh {
            file.set_len(LAYOUT_SIZE as u64).map_err(io)?;
        } else if len != LAYOUT_SIZE as u64 {
            return Err(layout_error(path, 0, 0, len));
        }
        let map: *mut Layout = map_shared(&file, LAYOUT_SIZE).map_err(io)?;
        // SAFETY: the whole layout is mapped and the file is that long.
        let header = unsafe { &(*map).header };
        if fresh {
            header.version.store(LAYOUT_VERSION, SeqCst);
            header.size.store(LAYOUT_SIZE as u32, SeqCst);
            header.magic.store(MAGIC, SeqCst);
        }
        if let Err(e) = check_header(path, header, LAYOUT_SIZE as u64) {
            // SAFETY: unmapping what we mapped above.
            unsafe { libc::munmap(map.cast(), LAYOUT_SIZE) };
            return Err(e);
        }
        drop(guard);
        Ok(Region {
            map,
            file: Some(file),
            lock_fd: AtomicI32::new(-1),
            path: path.to_path_buf(),
            register_lock: Mutex::new(()),
            my_pidns: own_pidns(),
            last_reap_ms: AtomicU64::new(0),
        })
    }

    /// A private copy of the region file at `path`, for observers (`gpupool info`, metrics, the
    /// node agent): read with `pread` (never mapped, so a file truncated or rewritten by a tenant
    /// cannot crash the reader), without waiting for any lock, without following a symlink, and
    /// with the slots of dead processes cleared in the copy (never in the file). Nothing done to
    /// the copy reaches the file.
    pub fn snapshot(path: &Path) -> Result<Region, RegionError> {
        let io = |source| RegionError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.file_type().is_file() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        if meta.len() != LAYOUT_SIZE as u64 {
            return Err(layout_error(path, 0, 0, meta.len()));
        }
        let map = map_private_anonymous().map_err(io)?;
        // SAFETY: map is LAYOUT_SIZE writable bytes of our own.
        let bytes = unsafe { std::slice::from_raw_parts_mut(map.cast::<u8>(), LAYOUT_SIZE) };
        let read = read_fully(&file, bytes);
        let region = Region {
            map,
            file: Some(file),
            lock_fd: AtomicI32::new(-1),
            path: path.to_path_buf(),
            register_lock: Mutex::new(()),
            my_pidns: own_pidns(),
            last_reap_ms: AtomicU64::new(0),
        };
        match read {
            Ok(n) if n == LAYOUT_SIZE => {}
            Ok(n) => return Err(layout_error(path, 0, 0, n as u64)),
            Err(e) => return Err(io(e)),
        }
        check_header(path, &region.layout().header, LAYOUT_SIZE as u64)?;
        for (i, slot) in region.layout().slots.iter().enumerate() {
            let owner = slot.owner.load(SeqCst);
            if owner != 0 && owner != OWNER_RECLAIMING && !region.slot_alive(slot, i) {
                clear_slot(slot);
            }
        }
        Ok(region)
    }

    /// A region private to this process (no file), for a tenant without a shared region.
    pub fn private() -> Result<Region, RegionError> {
        // SAFETY: anonymous shared mapping of LAYOUT_SIZE bytes, zero-filled by the kernel.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LAYOUT_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(RegionError::Io {
                path: "(private)".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        let map = p as *mut Layout;
        // SAFETY: freshly mapped, exclusively ours.
        let header = unsafe { &(*map).header };
        header.version.store(LAYOUT_VERSION, SeqCst);
        header.size.store(LAYOUT_SIZE as u32, SeqCst);
        header.magic.store(MAGIC, SeqCst);
        Ok(Region {
            map,
            file: None,
            lock_fd: AtomicI32::new(-1),
            path: PathBuf::from("(private)"),
            register_lock: Mutex::new(()),
            my_pidns: own_pidns(),
            last_reap_ms: AtomicU64::new(0),
        })
    }

    /// The file behind the region.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn layout(&self) -> &Layout {
        // SAFETY: map is a valid, fully mapped Layout for the lifetime of self.
        unsafe { &*self.map }
    }

    /// Index of the device with `uuid`, registering it if new.
    pub fn device_index(&self, uuid: [u8; 16]) -> Result<usize, RegionError> {
        let words = uuid_words(uuid);
        if let Some(i) = self.find_device(words) {
            return Ok(i);
        }
        let _local = self.register_lock.lock().unwrap_or_else(|e| e.into_inner());
        let _file = match &self.file {
            Some(f) => Some(
                FileLock::exclusive_within(f, LOCK_TIMEOUT).map_err(|source| RegionError::Io {
                    path: self.path.display().to_string(),
                    source,
                })?,
            ),
            None => None,
        };
        if let Some(i) = self.find_device(words) {
            return Ok(i);
        }
        let l = self.layout();
        let count = l.header.device_count.load(SeqCst) as usize;
        if count >= MAX_DEVICES {
            return Err(RegionError::DevicesFull(self.path.display().to_string()));
        }
        let entry = &l.devices[count];
        entry.uuid[0].store(words[0], SeqCst);
        entry.uuid[1].store(words[1], SeqCst);
        entry.state.store(DEVICE_READY, SeqCst);
        l.header.device_count.store(count as u32 + 1, SeqCst);
        Ok(count)
    }

    fn find_device(&self, words: [u64; 2]) -> Option<usize> {
        let l = self.layout();
        let count = (l.header.device_count.load(SeqCst) as usize).min(MAX_DEVICES);
        l.devices[..count].iter().position(|d| {
            d.state.load(SeqCst) != DEVICE_EMPTY
                && d.uuid[0].load(SeqCst) == words[0]
                && d.uuid[1].load(SeqCst) == words[1]
        })
    }

    /// UUIDs of the registered devices, by index.
    pub fn devices(&self) -> Vec<[u8; 16]> {
        let l = self.layout();
        let count = (l.header.device_count.load(SeqCst) as usize).min(MAX_DEVICES);
        l.devices[..count]
            .iter()
            .map(|d| {
                let mut out = [0u8; 16];
                out[..8].copy_from_slice(&d.uuid[0].load(SeqCst).to_le_bytes());
                out[8..].copy_from_slice(&d.uuid[1].load(SeqCst).to_le_bytes());
                out
            })
            .collect()
    }

    /// Records the limit of device `dev` for display (0 = none).
    pub fn set_limit(&self, dev: usize, limit: u64) {
        if let Some(d) = self.layout().devices.get(dev) {
            d.limit.store(limit, SeqCst);
        }
    }

    /// The limit recorded for device `dev` (0 = none).
    pub fn limit(&self, dev: usize) -> u64 {
        self.layout()
            .devices
            .get(dev)
            .map_or(0, |d| d.limit.load(SeqCst))
    }

    /// Compute pacing state of device `dev`.
    pub fn compute(&self, dev: usize) -> Option<&ComputeState> {
        self.layout().devices.get(dev).map(|d| &d.compute)
    }

    /// Allocations refused on device `dev`.
    pub fn denied(&self, dev: usize) -> u64 {
        self.layout()
            .devices
            .get(dev)
            .map_or(0, |d| d.denied.load(SeqCst))
    }

    /// Claims a slot for `who` (the calling process: its slot stays alive exactly as long as this
    /// process runs its current image, see `liveness.rs`). Dead processes' slots are reaped first
    /// (they may hold memory the caller is about to need).
    pub fn claim_slot(&self, who: ProcessIdentity) -> Result<SlotHandle, RegionError> {
        self.reap_dead();
        if let Some(h) = self.try_claim(who) {
            return Ok(h);
        }
        Err(RegionError::SlotsFull(self.path.display().to_string()))
    }

    fn try_claim(&self, who: ProcessIdentity) -> Option<SlotHandle> {
        let l = self.layout();
        let token = next_token();
        for (i, slot) in l.slots.iter().enumerate() {
            if slot
                .owner
                .compare_exchange(0, token, SeqCst, SeqCst)
                .is_ok()
            {
                for u in slot.used.iter().chain(&slot.spilled) {
                    u.store(0, SeqCst);
                }
                slot.checkpoint.store(CHECKPOINT_RUNNING, SeqCst);
                slot.restore_wanted.store(0, SeqCst);
                slot.state_since_ns.store(0, SeqCst);
                slot.host_pid.store(who.host_pid, SeqCst);
                slot.pidns.store(who.pidns, SeqCst);
                slot.start_time.store(who.start_time, SeqCst);
                slot.pid.store(who.pid, SeqCst);
                let locked = self
                    .own_lock_fd()
                    .is_some_and(|fd| liveness::lock(fd, i).is_ok());
                slot.liveness
                    .store(if locked { LIVENESS_LOCK } else { LIVENESS_PID }, SeqCst);
                l.header.slot_hint.fetch_max(i as u32 + 1, SeqCst);
                return Some(SlotHandle {
                    index: i as u32,
                    token,
                });
            }
        }
        None
    }

    /// This process's lock description of the region file, opened on first use: a new open of
    /// the same file (through `/proc/self/fd`, else the path if it is still the same file).
    fn own_lock_fd(&self) -> Option<RawFd> {
        let fd = self.lock_fd.load(SeqCst);
        if fd >= 0 {
            return Some(fd);
        }
        let file = self.file.as_ref()?;
        let meta = file.metadata().ok()?;
        let same = |f: &File| {
            f.metadata()
                .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
        };
        let open = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(p)
                .ok()
                .filter(same)
        };
        let new = open(Path::new(&format!("/proc/self/fd/{}", file.as_raw_fd())))
            .or_else(|| open(&self.path))?
            .into_raw_fd();
        match self.lock_fd.compare_exchange(-1, new, SeqCst, SeqCst) {
            Ok(_) => Some(new),
            Err(theirs) => {
                // SAFETY: closing the descriptor opened just above, never shared.
                unsafe { libc::close(new) };
                Some(theirs)
            }
        }
    }

    /// In a child after `fork`: lets go of the parent's lock description (the parent's slots stay
    /// locked by the parent's copy of it). The child's own slot gets a new one.
    pub fn forget_after_fork(&self) {
        let fd = self.lock_fd.swap(-1, SeqCst);
        if fd >= 0 {
            // SAFETY: this process's copy of a descriptor the region owns; closing a copy does not
            // release the locks of the description while the parent holds it.
            unsafe { libc::close(fd) };
        }
    }

    /// Gives a slot back (normal process exit); its usage stops counting.
    pub fn release_slot(&self, h: SlotHandle) {
        let slot = &self.layout().slots[h.index as usize];
        if slot
            .owner
            .compare_exchange(h.token, OWNER_RECLAIMING, SeqCst, SeqCst)
            .is_ok()
        {
            clear_slot(slot);
            let fd = self.lock_fd.load(SeqCst);
            if fd >= 0 {
                liveness::unlock(fd, h.index as usize);
            }
        }
    }

    /// Whether the process behind `slot` (at `index`) is alive, as judged from this process.
    /// A process in another pid namespace is judged only by its lock byte; without one it is left
    /// alone (its pid means nothing here).
    fn slot_alive(&self, slot: &ProcSlot, index: usize) -> bool {
        let file_fd = self.file.as_ref().map(|f| f.as_raw_fd());
        match slot.liveness.load(SeqCst) {
            LIVENESS_LOCK => match file_fd {
                Some(fd) => liveness::held_by_other(fd, index).unwrap_or(true),
                None => true,
            },
            _ => {
                slot.pidns.load(SeqCst) != self.my_pidns
                    || is_alive(slot.pid.load(SeqCst), slot.start_time.load(SeqCst))
            }
        }
    }

    /// Whether the slot is still ours (a reaper may have taken it if our pid looked dead).
    pub fn slot_valid(&self, h: SlotHandle) -> bool {
        self.layout().slots[h.index as usize].owner.load(SeqCst) == h.token
    }

    /// Total usage of device `dev` over all slots.
    pub fn used(&self, dev: usize) -> u64 {
        self.total(Pool::Device, dev)
    }

    /// Total host memory spilled for device `dev` over all slots.
    pub fn spilled(&self, dev: usize) -> u64 {
        self.total(Pool::Spill, dev)
    }

    /// Total of `pool` on device `dev` over all slots.
    pub fn total(&self, pool: Pool, dev: usize) -> u64 {
        let l = self.layout();
        let hint = (l.header.slot_hint.load(SeqCst) as usize).min(MAX_SLOTS);
        if dev >= MAX_DEVICES {
            return 0;
        }
        l.slots[..hint]
            .iter()
            .map(|s| pool.counters(s)[dev].load(SeqCst))
            .fold(0u64, u64::saturating_add)
    }

    /// Reserves `bytes` on device `dev` for slot `h` if the region's total stays within `limit`.
    ///
    /// On refusal, dead processes are reaped and the reservation retried, so memory of a killed
    /// process never causes a spurious out-of-memory.
    pub fn try_reserve(
        &self,
        h: SlotHandle,
        dev: usize,
        bytes: u64,
        limit: u64,
    ) -> Result<(), Denied> {
        let denied = self.try_reserve_in(Pool::Device, h, dev, bytes, limit);
        if denied.is_err() && dev < MAX_DEVICES {
            self.layout().devices[dev].denied.fetch_add(1, SeqCst);
        }
        denied
    }

    /// Reserves `bytes` of spill for device `dev` if the region's spill stays within `limit`.
    pub fn try_reserve_spill(
        &self,
        h: SlotHandle,
        dev: usize,
        bytes: u64,
        limit: u64,
    ) -> Result<(), Denied> {
        self.try_reserve_in(Pool::Spill, h, dev, bytes, limit)
    }

    fn try_reserve_in(
        &self,
        pool: Pool,
        h: SlotHandle,
        dev: usize,
        bytes: u64,
        limit: u64,
    ) -> Result<(), Denied> {
        let l = self.layout();
        if dev >= MAX_DEVICES {
            return Err(Denied { used: 0, limit });
        }
        if bytes > limit {
            return Err(Denied {
                used: self.total(pool, dev),
                limit,
            });
        }
        let mine = &pool.counters(&l.slots[h.index as usize])[dev];
        let mut used = 0;
        for attempt in 0..4 {
            // Never wraps: a sum past u64::MAX is refused, not taken modulo 2^64.
            if mine
                .fetch_update(SeqCst, SeqCst, |v| v.checked_add(bytes))
                .is_err()
            {
                break;
            }
            let total = self.total(pool, dev);
            if total <= limit {
                return Ok(());
            }
            mine.fetch_sub(bytes, SeqCst);
            used = total.saturating_sub(bytes);
            if used.saturating_add(bytes) > limit
                && attempt == 0
                && self.reap_dead_rate_limited() > 0
            {
                continue;
            }
            // Racing reservations of other processes back out when they fail too: give them a
            // moment before the final verdict.
            std::thread::yield_now();
        }
        Err(Denied { used, limit })
    }

    /// Returns `bytes` on device `dev` from slot `h` (saturating at zero).
    pub fn release(&self, h: SlotHandle, dev: usize, bytes: u64) {
        self.release_in(Pool::Device, h, dev, bytes)
    }

    /// Returns `bytes` of spill for device `dev` from slot `h` (saturating at zero).
    pub fn release_spill(&self, h: SlotHandle, dev: usize, bytes: u64) {
        self.release_in(Pool::Spill, h, dev, bytes)
    }

    fn release_in(&self, pool: Pool, h: SlotHandle, dev: usize, bytes: u64) {
        if let Some(u) = pool
            .counters(&self.layout().slots[h.index as usize])
            .get(dev)
        {
            let _ = u.fetch_update(SeqCst, SeqCst, |v| Some(v.saturating_sub(bytes)));
        }
    }

    /// Adds `bytes` on device `dev` to slot `h` even past the limit: memory the driver already
    /// holds for the slot's process (a pool that grew by more than the allocation it served).
    /// Later reservations see it and are refused until it is given back.
    pub fn charge_held(&self, h: SlotHandle, dev: usize, bytes: u64) {
        if let Some(u) = Pool::Device
            .counters(&self.layout().slots[h.index as usize])
            .get(dev)
        {
            let _ = u.fetch_update(SeqCst, SeqCst, |v| Some(v.saturating_add(bytes)));
        }
    }

    /// [`Region::reap_dead`], at most every 100 ms per mapping (refusals near the limit must stay
    /// cheap; a dead process's memory is still back within that time).
    pub fn reap_dead_rate_limited(&self) -> usize {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let last = self.last_reap_ms.load(SeqCst);
        if now.saturating_sub(last) < 100
            || self
                .last_reap_ms
                .compare_exchange(last, now, SeqCst, SeqCst)
                .is_err()
        {
            return 0;
        }
        self.reap_dead()
    }

    /// Clears the slots of processes that no longer exist; returns how many.
    pub fn reap_dead(&self) -> usize {
        let l = self.layout();
        let hint = (l.header.slot_hint.load(SeqCst) as usize).min(MAX_SLOTS);
        let mut reaped = 0;
        for (i, slot) in l.slots[..hint].iter().enumerate() {
            let owner = slot.owner.load(SeqCst);
            if owner == 0 || owner == OWNER_RECLAIMING {
                continue;
            }
            let alive = self.slot_alive(slot, i);
            if !alive
                && slot
                    .owner
                    .compare_exchange(owner, OWNER_RECLAIMING, SeqCst, SeqCst)
                    .is_ok()
            {
                clear_slot(slot);
                reaped += 1;
            }
        }
        reaped
    }

    /// Slots claimed by a process (owned, not being reaped, pid filled in).
    pub(crate) fn live_slots(&self) -> impl Iterator<Item = &ProcSlot> {
        let l = self.layout();
        let hint = (l.header.slot_hint.load(SeqCst) as usize).min(MAX_SLOTS);
        l.slots[..hint].iter().filter(|s| {
            let o = s.owner.load(SeqCst);
            o != 0 && o != OWNER_RECLAIMING && s.pid.load(SeqCst) != 0
        })
    }

    /// How many devices the region knows.
    pub(crate) fn device_count(&self) -> usize {
        (self.layout().header.device_count.load(SeqCst) as usize).min(MAX_DEVICES)
    }

    /// The slot of live process `pid` (as its claimer's pid namespace numbers it).
    pub(crate) fn slot_of(&self, pid: u32) -> Option<&ProcSlot> {
        self.live_slots().find(|s| s.pid.load(SeqCst) == pid)
    }

    /// The checkpoint state of process `pid` (`None`: not in this region).
    pub fn checkpoint_state(&self, pid: u32) -> Option<u32> {
        self.slot_of(pid).map(|s| s.checkpoint.load(SeqCst))
    }

    /// The checkpoint state of slot `h` (this process's own, read on its CUDA calls).
    pub fn own_checkpoint_state(&self, h: SlotHandle) -> u32 {
        self.layout().slots[h.index as usize]
            .checkpoint
            .load(SeqCst)
    }

    /// Moves process `pid` from checkpoint state `from` to `to`; `false` if it is not in
    /// `from` (or not here).
    pub fn move_checkpoint_state(&self, pid: u32, from: u32, to: u32) -> bool {
        self.slot_of(pid).is_some_and(|s| {
            s.checkpoint
                .compare_exchange(from, to, SeqCst, SeqCst)
                .is_ok()
        })
    }

    /// Moves the device memory of process `pid` to its host side (checkpoint); returns the
    /// bytes moved.
    pub fn move_to_host(&self, pid: u32) -> u64 {
        let Some(s) = self.slot_of(pid) else {
            return 0;
        };
        let mut moved = 0u64;
        for (used, host) in s.used.iter().zip(&s.spilled) {
            let n = used.swap(0, SeqCst);
            host.fetch_add(n, SeqCst);
            moved = moved.saturating_add(n);
        }
        moved
    }

    /// Moves what [`Region::move_to_host`] moved back to the devices if every device's total
    /// stays within `capacity(device)`; else moves nothing and returns `Err` with the device
    /// that lacks room (devices are numbered as in this region). Returns the bytes moved.
    pub fn move_to_device(&self, pid: u32, capacity: impl Fn(usize) -> u64) -> Result<u64, usize> {
        let Some(s) = self.slot_of(pid) else {
            return Ok(0);
        };
        let wanted: Vec<u64> = s.spilled.iter().map(|h| h.load(SeqCst)).collect();
        // Added first, then checked (as reservations are): racing allocations never see room
        // that this restore is about to take.
        for (dev, &n) in wanted.iter().enumerate() {
            if n == 0 {
                continue;
            }
            s.used[dev].fetch_add(n, SeqCst);
            if self.used(dev) > capacity(dev) {
                for (back, &m) in wanted.iter().enumerate().take(dev + 1) {
                    s.used[back].fetch_sub(m, SeqCst);
                }
                return Err(dev);
            }
        }
        let mut moved = 0u64;
        for (dev, &n) in wanted.iter().enumerate() {
            s.spilled[dev].fetch_sub(n, SeqCst);
            moved = moved.saturating_add(n);
        }
        Ok(moved)
    }

    /// Live processes with their usage per device.
    pub fn processes(&self) -> Vec<ProcessUsage> {
        let devices = self.device_count();
        self.live_slots()
            .map(|s| ProcessUsage {
                pid: s.pid.load(SeqCst),
                host_pid: s.host_pid.load(SeqCst),
                used: s.used[..devices].iter().map(|u| u.load(SeqCst)).collect(),
                spilled: s.spilled[..devices]
                    .iter()
                    .map(|u| u.load(SeqCst))
                    .collect(),
            })
            .collect()
    }
}

fn clear_slot(slot: &ProcSlot) {
    for u in slot.used.iter().chain(&slot.spilled) {
        u.store(0, SeqCst);
    }
    slot.checkpoint.store(CHECKPOINT_RUNNING, SeqCst);
    slot.restore_wanted.store(0, SeqCst);
    slot.pid.store(0, SeqCst);
    slot.host_pid.store(0, SeqCst);
    slot.start_time.store(0, SeqCst);
    slot.liveness.store(LIVENESS_UNSET, SeqCst);
    slot.owner.store(0, SeqCst);
}

fn layout_error(path: &Path, magic: u64, version: u32, size: u64) -> RegionError {
    RegionError::Layout {
        path: path.display().to_string(),
        magic,
        version,
        size,
        expected_magic: MAGIC,
        expected_size: LAYOUT_SIZE,
    }
}

/// Opens (creating, with its folder) a file that processes of several users share.
pub(crate) fn open_shared_file(path: &Path) -> std::io::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o666)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() || kind.is_fifo() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Checks a mapped header against this build's layout.
fn check_header(path: &Path, header: &Header, len: u64) -> Result<(), RegionError> {
    let (magic, version, size) = (
        header.magic.load(SeqCst),
        header.version.load(SeqCst),
        header.size.load(SeqCst),
    );
    if magic != MAGIC || version != LAYOUT_VERSION || size as usize != LAYOUT_SIZE {
        return Err(layout_error(path, magic, version, len));
    }
    Ok(())
}

/// `LAYOUT_SIZE` bytes of zeroed private memory, as a `Layout`.
fn map_private_anonymous() -> std::io::Result<*mut Layout> {
    // SAFETY: anonymous private mapping, checked below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            LAYOUT_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(p as *mut Layout)
    }
}

/// Reads `buf.len()` bytes from offset 0 of `file` (fewer at end of file); returns how many.
pub(crate) fn read_fully(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Maps `len` bytes of `file` shared, as a `T`.
pub(crate) fn map_shared<T>(file: &File, len: usize) -> std::io::Result<*mut T> {
    // SAFETY: mapping `len` bytes of an open file we own; the result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(p as *mut T)
    }
}

/// An exclusive `flock`, released on drop or by the kernel when the holder dies.
pub(crate) struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    /// Takes the lock, polling for at most `timeout` while another process holds it; then
    /// `TimedOut`.
    pub(crate) fn exclusive_within(
        file: &'a File,
        timeout: Duration,
    ) -> std::io::Result<FileLock<'a>> {
        let deadline = std::time::Instant::now() + timeout;
        let mut pause = Duration::from_micros(50);
        loop {
            // SAFETY: flock on a valid fd.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(FileLock(file));
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => {}
                _ => return Err(e),
            }
            if std::time::Instant::now() >= deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "another process has held its lock for {} s",
                        timeout.as_secs_f32()
                    ),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // SAFETY: unlocking the fd we locked.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}
