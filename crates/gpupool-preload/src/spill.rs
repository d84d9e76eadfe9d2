//! Spill: allocations past the tenant's device memory limit served from pinned host memory
//! mapped into the device's address space, up to the tenant's spill allowance, so a program
//! keeps running (slower) instead of failing, and no neighbour's device memory is taken.
//!
//! Only `cuMemAlloc` (the runtime's `cudaMalloc`) spills: its pointer works in kernels and
//! copies like device memory. Pitched, managed, stream-ordered, pool, virtual-memory and array
//! allocations keep failing at the limit (their semantics need device memory).

use crate::driver::mapped_host;
use crate::tenant::Account;
use crate::tracking::{self, Charge, Kind};
use gpupool_cuda::cu::CUdeviceptr;
use gpupool_cuda::result::*;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Whether this process ever spilled: frees look nothing up until it has.
static EVER: AtomicBool = AtomicBool::new(false);

/// Serves `size` bytes (charged `bytes`) from host memory once the device limit refused
/// them: the address, or `None` without an allowance left (or host memory).
pub fn allocate(acct: &Account, ord: i32, size: usize, bytes: u64) -> Option<CUdeviceptr> {
    if acct.spill == 0 || acct.reserve_spill(bytes).is_err() {
        return None;
    }
    match mapped_host::alloc(size) {
        Ok(p) => {
            tracking::insert(
                Kind::Spilled,
                p,
                Charge {
                    ordinal: ord,
                    bytes,
                },
            );
            EVER.store(true, Relaxed);
            crate::log!(
                Debug,
                "{} spilled to host memory past the device limit",
                gpupool_config::format_size(bytes)
            );
            Some(p)
        }
        Err(_) => {
            acct.release_spill(bytes);
            None
        }
    }
}

/// Frees `p` if it is spilled memory; `None` when it is not.
pub fn free(p: CUdeviceptr) -> Option<u32> {
    if !EVER.load(Relaxed) {
        return None;
    }
    let charge = tracking::remove(Kind::Spilled, p)?;
    let rc = mapped_host::free(p);
    if rc == CUDA_SUCCESS {
        if let Ok(Some(acct)) = crate::tenant::lookup_account(charge.ordinal) {
            acct.release_spill(charge.bytes);
        }
    } else {
        tracking::insert(Kind::Spilled, p, charge);
    }
    Some(rc)
}
