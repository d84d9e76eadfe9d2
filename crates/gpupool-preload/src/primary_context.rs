//! Admission of each process's own (primary) context on a device.
//!
//! A context costs device memory before anything is allocated in it (518 MiB for PyTorch on an
//! H100). It is charged *before* the driver creates it, in `cuDevicePrimaryCtxRetain` (which
//! NVIDIA's runtime calls too, through `cuGetProcAddress`), and when it does not fit the
//! creation fails with `CUDA_ERROR_OUT_OF_MEMORY`, as on a full card. Found on a real H100:
//! without this, a second PyTorch process of a tenant whose limit was used up still put its
//! context on the card, beyond the limit.

use crate::real;
use gpupool_cuda::cu::{CUcontext, CUdevice};

/// Charges this process's context on `dev` if a limit applies there. A context that does not
/// fit is refused when the tenant already holds memory on that device (another process of the
/// tenant used the limit up); the tenant's first context is created even under a limit smaller
/// than one context, so that device queries and `cuMemGetInfo` keep working (every allocation is
/// then refused: see docs/memory-limits.md).
fn admit(dev: CUdevice) -> Result<(), u32> {
    // Only ordinals the process can see are judged; anything else is the driver's to refuse.
    if dev < 0 || dev as usize >= crate::driver::cuda_device_uuids().len() {
        return Ok(());
    }
    let Some(acct) = crate::tenant::lookup_account(dev)? else {
        return Ok(());
    };
    match crate::tenant::charge_context(&acct, dev) {
        Err(e) if acct.used() > 0 => Err(e),
        _ => Ok(()),
    }
}

/// Hook for `cuDevicePrimaryCtxRetain`.
pub unsafe fn primary_ctx_retain(ctx: *mut CUcontext, dev: CUdevice) -> u32 {
    if let Err(e) = admit(dev) {
        return e;
    }
    // SAFETY: forwarding.
    unsafe { real::cuDevicePrimaryCtxRetain(ctx, dev) }
}
