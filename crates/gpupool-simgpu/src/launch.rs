//! Kernel launches: every launch path queues the kernel's simulated duration (see `module`) on
//! the device timeline (`work`, `timeline`).

use crate::ctx::require_current;
use crate::module::kernel;
use gpupool_cuda::cu::{CUDA_LAUNCH_PARAMS_st, CUevent, CUfunction, CUstream};
use gpupool_cuda::launch::{How, Launch};
use gpupool_cuda::result::*;
use std::ffi::c_void;

/// Grid and block of a launch.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Grid dimensions.
    pub grid: [u32; 3],
    /// Block dimensions.
    pub block: [u32; 3],
}

impl Shape {
    /// Blocks in the grid.
    pub fn blocks(&self) -> u64 {
        self.grid.iter().map(|&d| d as u64).product()
    }

    fn check(&self) -> Result<(), u32> {
        let threads: u64 = self.block.iter().map(|&d| d as u64).product();
        if self.grid.contains(&0) || self.block.contains(&0) || threads > 1024 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        Ok(())
    }
}

/// Duration of `f` launched with `shape` and `params`, after checking them.
///
/// # Safety
/// `params` is null or the launch's `kernelParams`.
pub unsafe fn duration(f: CUfunction, shape: Shape, params: *mut *mut c_void) -> Result<u64, u32> {
    require_current()?;
    let k = kernel(f)?;
    shape.check()?;
    // SAFETY: the caller's contract.
    let memory = unsafe { k.memory_ns(params) }?;
    Ok(k.duration_ns(shape.blocks()).saturating_add(memory))
}

unsafe fn launch(f: CUfunction, shape: Shape, stream: CUstream, params: *mut *mut c_void) -> u32 {
    // SAFETY: the caller's contract.
    match unsafe { duration(f, shape, params) }.and_then(|d| crate::work::launch(stream, d)) {
        Ok(()) => CUDA_SUCCESS,
        Err(e) => e,
    }
}

/// Blocks a cooperative launch may have on a device: all resident at once.
fn cooperative_fits(shape: Shape) -> Result<(), u32> {
    let c = require_current()?;
    let (_, d) = crate::ctx::device(c.ordinal)?;
    if shape.blocks() > d.spec.sms as u64 * 32 {
        return Err(CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE);
    }
    Ok(())
}

/// Every launch path (see [`gpupool_cuda::launch_entry_points!`]): a cooperative grid must
/// fit the device at once; the events of event attributes are recorded on the launch's
/// stream after the kernel (every block has begun and triggered by the time it ends); other
/// attributes are accepted without effect on the simulation.
fn launch_any(l: Launch<'_>) -> u32 {
    let shape = Shape {
        grid: l.grid,
        block: l.block,
    };
    let mut events: &[_] = &[];
    match l.how {
        How::Cooperative => {
            if let Err(e) = cooperative_fits(shape) {
                return e;
            }
        }
        How::Ex(attrs) => {
            if let Some(bad) = attrs
                .iter()
                .filter_map(|a| a.event())
                .find(|&e| crate::stream::event_ref(e as usize as CUevent).is_err())
            {
                return if bad == 0 {
                    CUDA_ERROR_INVALID_VALUE
                } else {
                    CUDA_ERROR_INVALID_HANDLE
                };
            }
            events = attrs;
        }
        How::Plain => {}
    }
    // SAFETY: the launch's parameters, as the caller passed them.
    let rc = unsafe { launch(l.function, shape, l.stream, l.params) };
    if rc != CUDA_SUCCESS {
        return rc;
    }
    for e in events.iter().filter_map(|a| a.event()) {
        // SAFETY: an event checked above and the launch's stream.
        let recorded = unsafe { crate::sync::event_record(e as usize as CUevent, l.stream) };
        if recorded != CUDA_SUCCESS {
            return recorded;
        }
    }
    CUDA_SUCCESS
}

gpupool_cuda::launch_entry_points!(launch_any);

/// `cuLaunchCooperativeKernelMultiDevice`: one launch per entry, each on its stream's device.
pub unsafe fn launch_cooperative_kernel_multi_device(
    list: *mut CUDA_LAUNCH_PARAMS_st,
    n: u32,
    _flags: u32,
) -> u32 {
    if list.is_null() || n == 0 {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: the caller passes n entries.
    let entries = unsafe { std::slice::from_raw_parts(list, n as usize) };
    let shapes: Vec<Shape> = entries
        .iter()
        .map(|e| Shape {
            grid: [e.gridDimX, e.gridDimY, e.gridDimZ],
            block: [e.blockDimX, e.blockDimY, e.blockDimZ],
        })
        .collect();
    // All or nothing: check every entry first.
    for (e, shape) in entries.iter().zip(&shapes) {
        // SAFETY: each entry's parameters, as the caller passes them.
        if let Err(err) = unsafe { duration(e.function, *shape, e.kernelParams) } {
            return err;
        }
    }
    for (e, shape) in entries.iter().zip(&shapes) {
        // SAFETY: as above.
        let rc = unsafe { launch(e.function, *shape, e.hStream, e.kernelParams) };
        if rc != CUDA_SUCCESS {
            return rc;
        }
    }
    CUDA_SUCCESS
}
