//! Process checkpointing (`cuCheckpointProcess*`, driver 550 and later), as a tool such as
//! NVIDIA's `cuda-checkpoint` drives it from another process: lock a process (its CUDA calls
//! wait), checkpoint it (its device memory moves to the host, freeing the card for others),
//! restore it (back onto the card, if there is room) and unlock it. Moving memory takes the
//! time the simulated bus needs (`mem::HOST_MAPPED_GBPS`). Kernels the process queued
//! before the lock still run.

use crate::ctx::initialised;
use crate::mem::write;
use crate::mem::HOST_MAPPED_GBPS;
use gpupool_cuda::result::*;
use gpupool_region::{CHECKPOINT_CHECKPOINTED, CHECKPOINT_LOCKED, CHECKPOINT_RUNNING};
use std::ffi::c_void;
use std::time::Duration;

/// `CUDA_ERROR_ILLEGAL_STATE`: the process is not in the state the call needs.
const CUDA_ERROR_ILLEGAL_STATE: u32 = 401;

/// The target's pid as the region records it; an unknown pid is `CUDA_ERROR_NOT_FOUND`.
fn target(pid: i32) -> Result<(&'static crate::machine::Machine, u32), u32> {
    let m = initialised()?;
    let pid = u32::try_from(pid).map_err(|_| CUDA_ERROR_INVALID_VALUE)?;
    m.region
        .checkpoint_state(pid)
        .map(|_| (m, pid))
        .ok_or(CUDA_ERROR_NOT_FOUND)
}

fn transition(
    pid: i32,
    from: u32,
    to: u32,
) -> Result<(&'static crate::machine::Machine, u32), u32> {
    let (m, pid) = target(pid)?;
    if m.region.move_checkpoint_state(pid, from, to) {
        Ok((m, pid))
    } else {
        Err(CUDA_ERROR_ILLEGAL_STATE)
    }
}

/// The time moving `bytes` over the simulated bus takes.
fn bus_time(bytes: u64) {
    std::thread::sleep(Duration::from_nanos(bytes / HOST_MAPPED_GBPS));
}

fn answer(r: Result<(), u32>) -> u32 {
    r.err().unwrap_or(CUDA_SUCCESS)
}

/// `cuCheckpointProcessGetState`.
pub unsafe fn get_state(pid: i32, state: *mut u32) -> u32 {
    if state.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    match target(pid) {
        Ok((m, pid)) => write(state, m.region.checkpoint_state(pid).unwrap_or(0)),
        Err(e) => e,
    }
}

/// `cuCheckpointProcessLock` (the timeout in the arguments is not needed: nothing waits).
pub unsafe fn lock(pid: i32, _args: *mut c_void) -> u32 {
    answer(transition(pid, CHECKPOINT_RUNNING, CHECKPOINT_LOCKED).map(|_| ()))
}

/// `cuCheckpointProcessCheckpoint`: the device memory of a locked process moves to the host;
/// the card has it back once the copy over the bus is done.
pub unsafe fn checkpoint(pid: i32, _args: *mut c_void) -> u32 {
    answer(
        transition(pid, CHECKPOINT_LOCKED, CHECKPOINT_CHECKPOINTED).map(|(m, pid)| {
            let on_card = m
                .region
                .processes()
                .iter()
                .filter(|p| p.pid == pid)
                .flat_map(|p| p.used.iter())
                .fold(0u64, |a, b| a.saturating_add(*b));
            bus_time(on_card);
            m.region.move_to_host(pid);
        }),
    )
}

/// `cuCheckpointProcessRestore`: back onto the cards, or `CUDA_ERROR_OUT_OF_MEMORY` (and
/// still checkpointed) when a card lacks the room.
pub unsafe fn restore(pid: i32, _args: *mut c_void) -> u32 {
    let (m, pid) = match transition(pid, CHECKPOINT_CHECKPOINTED, CHECKPOINT_LOCKED) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let capacity = |index: usize| {
        m.all
            .iter()
            .find(|d| d.region_index == index)
            .map_or(0, |d| d.spec.memory)
    };
    match m.region.move_to_device(pid, capacity) {
        Ok(bytes) => {
            bus_time(bytes);
            CUDA_SUCCESS
        }
        Err(_) => {
            m.region
                .move_checkpoint_state(pid, CHECKPOINT_LOCKED, CHECKPOINT_CHECKPOINTED);
            CUDA_ERROR_OUT_OF_MEMORY
        }
    }
}

/// `cuCheckpointProcessUnlock`.
pub unsafe fn unlock(pid: i32, _args: *mut c_void) -> u32 {
    answer(transition(pid, CHECKPOINT_LOCKED, CHECKPOINT_RUNNING).map(|_| ()))
}
