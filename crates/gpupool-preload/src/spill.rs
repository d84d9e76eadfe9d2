//! Spill: allocations past the tenant's device memory limit served from host memory the device
//! can reach, up to the tenant's spill allowance, so a program keeps running (slower) instead of
//! failing, and no neighbour's device memory is taken. Two kinds of host memory:
//!
//! - **pinned** (the default): pinned host memory mapped into the device's address space; it
//!   stays on the host until freed;
//! - **managed** (`spill_mode = managed`): managed memory advised to live on the CPU and mapped
//!   for the device; when the tenant's device memory frees up, the oldest spilled allocations
//!   that fit the limit again are moved onto the device (`cuMemPrefetchAsync`) and counted as
//!   device memory from then on.
//!
//! `cuMemAlloc` and `cuMemAllocPitch` (the runtime's `cudaMalloc`, `cudaMallocPitch`) spill:
//! their pointers work in kernels and copies like device memory. Managed, stream-ordered,
//! pool, virtual-memory and array allocations keep failing at the limit (their semantics need
//! device memory, or memory the driver places itself).

use crate::driver::{managed_host, mapped_host};
use crate::spinlock::SpinLock;
use crate::tenant::Account;
use crate::tracking::{self, Charge, Kind};
use gpupool_cuda::cu::CUdeviceptr;
use gpupool_cuda::result::*;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Whether this process ever spilled: frees look nothing up until it has.
static EVER: AtomicBool = AtomicBool::new(false);
/// Whether it ever spilled to managed memory: frees take [`MANAGED`]'s lock only then.
static EVER_MANAGED: AtomicBool = AtomicBool::new(false);

/// Managed spilled allocations still on the host, oldest first: (address, size, ordinal). The
/// lock also serialises their frees with their moves onto the device.
static MANAGED: SpinLock<Vec<(CUdeviceptr, usize, i32)>> = SpinLock::new(Vec::new());

/// Serves `size` bytes (charged `bytes`) from host memory once the device limit refused
/// them: the address, or `None` without an allowance left (or host memory).
pub fn allocate(acct: &Account, ord: i32, size: usize, bytes: u64) -> Option<CUdeviceptr> {
    if acct.spill == 0 || acct.reserve_spill(bytes).is_err() {
        return None;
    }
    let managed = acct.tenant.config.spill_managed;
    let made = match managed {
        true => managed_host::alloc(size, ord),
        false => mapped_host::alloc(size),
    };
    match made {
        Ok(p) => {
            let kind = match managed {
                true => Kind::SpilledManaged,
                false => Kind::Spilled,
            };
            let charge = Charge {
                ordinal: ord,
                bytes,
            };
            if managed {
                MANAGED.with(|list| {
                    tracking::insert(kind, p, charge);
                    list.push((p, size, ord));
                });
                EVER_MANAGED.store(true, Relaxed);
            } else {
                tracking::insert(kind, p, charge);
            }
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
    let (charge, rc) = match tracking::remove(Kind::Spilled, p) {
        Some(charge) => {
            let rc = mapped_host::free(p);
            if rc != CUDA_SUCCESS {
                tracking::insert(Kind::Spilled, p, charge);
            }
            (charge, rc)
        }
        None if !EVER_MANAGED.load(Relaxed) => return None,
        None => MANAGED.with(|list| {
            let charge = tracking::remove(Kind::SpilledManaged, p)?;
            // SAFETY: forwarding the caller's free of memory the real driver allocated.
            let rc = unsafe { crate::real::cuMemFree_v2(p) };
            if rc == CUDA_SUCCESS {
                list.retain(|e| e.0 != p);
            } else {
                tracking::insert(Kind::SpilledManaged, p, charge);
            }
            Some((charge, rc))
        })?,
    };
    if rc == CUDA_SUCCESS {
        if let Ok(Some(acct)) = crate::tenant::lookup_account(charge.ordinal) {
            acct.release_spill(charge.bytes);
        }
    }
    Some(rc)
}

/// After device memory of ordinal `ord` was freed: moves the oldest managed spilled
/// allocations of `ord` that fit the device limit again onto the device, where they count as
/// device memory. Stops at the first that does not fit (or that the driver cannot move).
pub fn move_back(ord: i32) {
    if !EVER_MANAGED.load(Relaxed) {
        return;
    }
    let Ok(Some(acct)) = crate::tenant::lookup_account(ord) else {
        return;
    };
    MANAGED.with(|list| {
        while let Some(i) = list.iter().position(|e| e.2 == ord) {
            let (p, size, _) = list[i];
            let Some(charge) = tracking::get(Kind::SpilledManaged, p) else {
                list.remove(i);
                continue;
            };
            let region = &acct.tenant.region;
            if region
                .try_reserve(acct.slot, acct.device, charge.bytes, acct.limit)
                .is_err()
            {
                return;
            }
            if managed_host::move_to_device(p, size, ord) != CUDA_SUCCESS {
                acct.release(charge.bytes);
                return;
            }
            tracking::remove(Kind::SpilledManaged, p);
            tracking::insert(Kind::Pointer, p, charge);
            acct.release_spill(charge.bytes);
            list.remove(i);
            crate::log!(
                Debug,
                "{} of spilled memory moved back onto the device",
                gpupool_config::format_size(charge.bytes)
            );
        }
    });
}

/// Fork prepare / parent / child: the list's lock is taken around `fork`.
pub fn lock() {
    MANAGED.raw_lock();
}

/// See [`lock`].
pub fn unlock() {
    MANAGED.raw_unlock();
}
