//! The shared accounting region.
//!
//! One region per tenant (and one per simulated machine, for its physical memory). It is a
//! memory-mapped file of fixed layout:
//!
//! ```text
//! Header { magic "GPUPOOL1", version, size, device_count, slot_hint, priority, checkpoints }
//! DeviceEntry[16] { state, uuid, limit, denied, wanted, compute pacing }
//! ProcSlot[1024]  { owner token, pid, host pid, pid namespace, start time, used[16],
//!                   spilled[16], checkpoint state, restore wanted, activity, state since }
//! ```
//!
//! Every process owns one slot and only adds to / subtracts from its own counters, with atomics.
//! A reservation adds first, then sums all live slots and backs out if the sum exceeds the
//! limit: with sequentially consistent operations two racing reservations can both fail, but
//! never both succeed past the limit. A process that dies (even by SIGKILL) leaves its slot
//! behind; [`Region::reap_dead`] recognises it by pid and start time and zeroes it. The only lock
//! is `flock` while registering a device, which the kernel releases when its holder dies.

#![warn(missing_docs)]

pub mod card;
pub mod card_file;
pub mod card_peers;
pub mod card_share;
pub mod compute;
pub mod idle;
mod layout;
mod liveness;
mod process;
mod region;
pub mod untrusted;

pub use card::{Card, Publish, PublishedRun};
pub use card_file::tenant_key;
pub use card_share::{allocate, Demand};
pub use compute::ComputeState;
pub use idle::{GateCells, IdleView};
pub use layout::{
    CHECKPOINT_CHECKPOINTED, CHECKPOINT_LOCKED, CHECKPOINT_RUNNING, LAYOUT_VERSION, MAGIC,
    MAX_DEVICES, MAX_SLOTS, PRIORITY_HIGH, PRIORITY_LOW,
};
pub use process::{process_alive, ProcessIdentity};
pub use region::{Denied, Pool, ProcessUsage, Region, RegionError, SlotHandle, LOCK_TIMEOUT};
