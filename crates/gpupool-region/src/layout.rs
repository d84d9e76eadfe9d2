//! The binary layout shared by every process that maps a region.

use std::sync::atomic::{AtomicU32, AtomicU64};

/// First eight bytes of every region file.
pub const MAGIC: u64 = u64::from_le_bytes(*b"GPUPOOL1");
/// Bumped on every incompatible layout change.
pub const LAYOUT_VERSION: u32 = 6;
/// Devices a region can account for.
pub const MAX_DEVICES: usize = 16;
/// Processes a region can hold at once.
pub const MAX_SLOTS: usize = 1024;

/// Slot owner value while a reaper is clearing the slot.
pub(crate) const OWNER_RECLAIMING: u64 = u64::MAX;
/// How a slot's liveness is judged: not set yet (the slot is being filled in; pid and start
/// time in the claimer's pid namespace), by its lock byte (see `liveness.rs`), or by pid and
/// start time (the kernel has no open-file-description locks; only judged from the same pid
/// namespace).
pub(crate) const LIVENESS_UNSET: u32 = 0;
pub(crate) const LIVENESS_LOCK: u32 = 1;
pub(crate) const LIVENESS_PID: u32 = 2;
/// Device entry states.
pub(crate) const DEVICE_EMPTY: u32 = 0;
pub(crate) const DEVICE_READY: u32 = 2;

/// File header.
#[repr(C)]
pub(crate) struct Header {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub size: AtomicU32,
    pub device_count: AtomicU32,
    /// One past the highest slot index ever claimed; scans stop there.
    pub slot_hint: AtomicU32,
    /// The tenant's priority as its processes publish it (`PRIORITY_*`).
    pub priority: AtomicU32,
    /// Times the checkpoint controller checkpointed one of the tenant's processes.
    pub checkpoints: AtomicU64,
}

/// Tenant priorities as published in a region's header.
pub const PRIORITY_HIGH: u32 = 0;
/// Low priority: its idle processes are checkpointed first, and it never displaces a
/// high-priority tenant.
pub const PRIORITY_LOW: u32 = 1;

/// One device known to the region, keyed by UUID.
#[repr(C)]
pub(crate) struct DeviceEntry {
    pub state: AtomicU32,
    pub _pad: AtomicU32,
    pub uuid: [AtomicU64; 2],
    /// Limit recorded for display (0 = none); enforcement uses each process's own config.
    pub limit: AtomicU64,
    /// Allocations refused because of the limit.
    pub denied: AtomicU64,
    /// Bytes a process of the tenant waits for on this device (its allocation, within its
    /// limit, found the card full); 0: none.
    pub wanted: AtomicU64,
    /// Compute pacing of the tenant on this device (see `compute.rs`).
    pub compute: crate::compute::ComputeState,
}

/// One process's usage.
#[repr(C)]
pub(crate) struct ProcSlot {
    /// 0 = free, [`OWNER_RECLAIMING`] = being reaped, anything else = a claim token.
    pub owner: AtomicU64,
    pub pid: AtomicU32,
    pub host_pid: AtomicU32,
    /// One of the `LIVENESS_*` values.
    pub liveness: AtomicU32,
    pub _pad: AtomicU32,
    pub pidns: AtomicU64,
    pub start_time: AtomicU64,
    /// Device memory in use per device.
    pub used: [AtomicU64; MAX_DEVICES],
    /// Host memory standing in for device memory past the limit (spill) per device; for a
    /// checkpointed process, its device memory moved to the host.
    pub spilled: [AtomicU64; MAX_DEVICES],
    /// The process's checkpoint state (`CHECKPOINT_*`).
    pub checkpoint: AtomicU32,
    /// Non-zero: the process waits for a restore (set by the process, cleared by the
    /// controller when it runs again).
    pub restore_wanted: AtomicU32,
    /// Bumped by the process on each of its gated CUDA calls (the controller's idle clock).
    pub activity: AtomicU64,
    /// When the checkpoint state last left "running" (`CLOCK_MONOTONIC` ns).
    pub state_since_ns: AtomicU64,
}

/// Checkpoint states of a process (as CUDA's `CUprocessState`).
pub const CHECKPOINT_RUNNING: u32 = 0;
/// Locked: its CUDA calls wait.
pub const CHECKPOINT_LOCKED: u32 = 1;
/// Checkpointed: locked, and its device memory moved to the host.
pub const CHECKPOINT_CHECKPOINTED: u32 = 2;

/// The whole region.
#[repr(C)]
pub(crate) struct Layout {
    pub header: Header,
    pub devices: [DeviceEntry; MAX_DEVICES],
    pub slots: [ProcSlot; MAX_SLOTS],
}

/// Size in bytes of a region file.
pub(crate) const LAYOUT_SIZE: usize = std::mem::size_of::<Layout>();
const _: () = assert!(LAYOUT_SIZE < u32::MAX as usize);
const _: () = assert!(std::mem::align_of::<Layout>() <= 4096);
