//! Waiting for room on a full card: an allocation within the tenant's limit that the driver
//! refuses for lack of memory (the card is shared and full) records what it needs in the tenant's
//! region, where the node's checkpoint controller sees it and checkpoints idle tenants of the card
//! to make room, and retries until it succeeds or the tenant's room wait (`room_wait`) ends.

use crate::tenant::Account;
use gpupool_config::{format_duration_ns, format_size};
use gpupool_cuda::result::CUDA_ERROR_OUT_OF_MEMORY;
use std::time::Duration;

/// Pause between retries.
const RETRY: Duration = Duration::from_millis(20);

/// Retries `call` (which returned out-of-memory) while the tenant's room wait lasts; returns its
/// last result. Without a room wait it returns out-of-memory at once.
pub fn wait_for_room(acct: &Account, bytes: u64, mut call: impl FnMut() -> u32) -> u32 {
    let wait = acct.tenant.config.room_wait_ns;
    if wait == 0 {
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    let region = &acct.tenant.region;
    crate::log!(
        Info,
        "the card is full: waiting up to {} for {} of room",
        format_duration_ns(wait),
        format_size(bytes)
    );
    let deadline = gpupool_cuda::clock::monotonic_ns().saturating_add(wait);
    let mut rc = CUDA_ERROR_OUT_OF_MEMORY;
    while rc == CUDA_ERROR_OUT_OF_MEMORY && gpupool_cuda::clock::monotonic_ns() < deadline {
        region.set_wanted(acct.device, bytes.max(region.wanted(acct.device)));
        std::thread::sleep(RETRY);
        rc = call();
    }
    region.set_wanted(acct.device, 0);
    rc
}
