//! Opening, validating and updating a region.

use crate::compute::ComputeState;
use crate::layout::*;
use crate::process::{is_alive, own_pidns, ProcessIdentity};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;
use thiserror::Error;

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
}

/// A mapped region.
pub struct Region {
    map: *mut Layout,
    file: Option<File>,
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
    /// Opens the region file at `path`, creating and initialising it if it is new or empty.
    pub fn open(path: &Path) -> Result<Region, RegionError> {
        let io = |source| RegionError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = open_shared_file(path).map_err(io)?;
        let guard = FileLock::exclusive(&file).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let fresh = len == 0;
        if fresh {
            file.set_len(LAYOUT_SIZE as u64).map_err(io)?;
        } else if len < std::mem::size_of::<Header>() as u64 {
            return Err(layout_error(path, 0, 0, len));
        }
        let map_len = if fresh {
            LAYOUT_SIZE
        } else {
            (len as usize).min(LAYOUT_SIZE)
        };
        let map: *mut Layout = map_shared(&file, map_len).map_err(io)?;
        // SAFETY: at least a Header's worth is mapped.
        let header = unsafe { &(*map).header };
        if fresh {
            header.version.store(LAYOUT_VERSION, SeqCst);
            header.size.store(LAYOUT_SIZE as u32, SeqCst);
            header.magic.store(MAGIC, SeqCst);
        }
        let (magic, version, size) = (
            header.magic.load(SeqCst),
            header.version.load(SeqCst),
            header.size.load(SeqCst),
        );
        if magic != MAGIC
            || version != LAYOUT_VERSION
            || size as usize != LAYOUT_SIZE
            || len as usize != LAYOUT_SIZE && !fresh
        {
            // SAFETY: unmapping what we mapped above.
            unsafe { libc::munmap(map.cast(), map_len) };
            return Err(layout_error(
                path,
                magic,
                version,
                if fresh { size as u64 } else { len },
            ));
        }
        drop(guard);
        Ok(Region {
            map,
            file: Some(file),
            path: path.to_path_buf(),
            register_lock: Mutex::new(()),
            my_pidns: own_pidns(),
            last_reap_ms: AtomicU64::new(0),
        })
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

    fn layout(&self) -> &Layout {
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
            Some(f) => Some(FileLock::exclusive(f).map_err(|source| RegionError::Io {
                path: self.path.display().to_string(),
                source,
            })?),
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

    /// Claims a slot for `who`. Reaps dead processes' slots if the region is full.
    pub fn claim_slot(&self, who: ProcessIdentity) -> Result<SlotHandle, RegionError> {
        for attempt in 0..2 {
            if let Some(h) = self.try_claim(who) {
                return Ok(h);
            }
            if attempt == 0 {
                self.reap_dead();
            }
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
                for u in &slot.used {
                    u.store(0, SeqCst);
                }
                slot.host_pid.store(who.host_pid, SeqCst);
                slot.pidns.store(who.pidns, SeqCst);
                slot.start_time.store(who.start_time, SeqCst);
                slot.pid.store(who.pid, SeqCst);
                l.header.slot_hint.fetch_max(i as u32 + 1, SeqCst);
                return Some(SlotHandle {
                    index: i as u32,
                    token,
                });
            }
        }
        None
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
        }
    }

    /// Whether the slot is still ours (a reaper may have taken it if our pid looked dead).
    pub fn slot_valid(&self, h: SlotHandle) -> bool {
        self.layout().slots[h.index as usize].owner.load(SeqCst) == h.token
    }

    /// Total usage of device `dev` over all slots.
    pub fn used(&self, dev: usize) -> u64 {
        let l = self.layout();
        let hint = (l.header.slot_hint.load(SeqCst) as usize).min(MAX_SLOTS);
        l.slots[..hint]
            .iter()
            .map(|s| s.used[dev].load(SeqCst))
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
        let l = self.layout();
        if dev >= MAX_DEVICES {
            return Err(Denied { used: 0, limit });
        }
        let mine = &l.slots[h.index as usize].used[dev];
        let mut used = 0;
        for attempt in 0..4 {
            mine.fetch_add(bytes, SeqCst);
            let total = self.used(dev);
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
        l.devices[dev].denied.fetch_add(1, SeqCst);
        Err(Denied { used, limit })
    }

    /// Returns `bytes` on device `dev` from slot `h` (saturating at zero).
    pub fn release(&self, h: SlotHandle, dev: usize, bytes: u64) {
        if let Some(u) = self.layout().slots[h.index as usize].used.get(dev) {
            let _ = u.fetch_update(SeqCst, SeqCst, |v| Some(v.saturating_sub(bytes)));
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
        for slot in &l.slots[..hint] {
            let owner = slot.owner.load(SeqCst);
            if owner == 0 || owner == OWNER_RECLAIMING {
                continue;
            }
            let (pid, host_pid, ns, start) = (
                slot.pid.load(SeqCst),
                slot.host_pid.load(SeqCst),
                slot.pidns.load(SeqCst),
                slot.start_time.load(SeqCst),
            );
            let alive = if ns == self.my_pidns {
                is_alive(pid, start)
            } else {
                // Another pid namespace (a container seen from the host): check the host pid,
                // whose start time is the same process's.
                is_alive(host_pid, start)
            };
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

    /// Live processes with their usage per device.
    pub fn processes(&self) -> Vec<ProcessUsage> {
        let l = self.layout();
        let hint = (l.header.slot_hint.load(SeqCst) as usize).min(MAX_SLOTS);
        let devices = (l.header.device_count.load(SeqCst) as usize).min(MAX_DEVICES);
        l.slots[..hint]
            .iter()
            .filter(|s| {
                let o = s.owner.load(SeqCst);
                o != 0 && o != OWNER_RECLAIMING && s.pid.load(SeqCst) != 0
            })
            .map(|s| ProcessUsage {
                pid: s.pid.load(SeqCst),
                host_pid: s.host_pid.load(SeqCst),
                used: s.used[..devices].iter().map(|u| u.load(SeqCst)).collect(),
            })
            .collect()
    }
}

fn clear_slot(slot: &ProcSlot) {
    for u in &slot.used {
        u.store(0, SeqCst);
    }
    slot.pid.store(0, SeqCst);
    slot.host_pid.store(0, SeqCst);
    slot.start_time.store(0, SeqCst);
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
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o666)
        .open(path)
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
    pub(crate) fn exclusive(file: &'a File) -> std::io::Result<FileLock<'a>> {
        loop {
            // SAFETY: flock on a valid fd.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(FileLock(file));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // SAFETY: unlocking the fd we locked.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}
