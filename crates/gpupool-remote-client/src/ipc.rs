//! Interprocess handles through the server: `cuIpcGetMemHandle` / `OpenMemHandle` /
//! `CloseMemHandle` and `cuIpcGetEventHandle` / `OpenEventHandle`. The handles the program
//! gets name entries of its tenant's registry on the server, so they open only in programs
//! of the same tenant (e.g. the workers a PyTorch program hands CUDA tensors to); memory
//! opened here is device memory on the server like the program's own.

use crate::conn::call_sync;
use crate::memory_map::{self, Kind};
use gpupool_cuda::cu::{CUdeviceptr, CUevent, CUipcEventHandle_st, CUipcMemHandle_st};
use gpupool_cuda::ipc_handle;
use gpupool_cuda::result::*;
use gpupool_remote::calls::custom;

/// A synchronous `IPC_*` call whose reply is a client's handle, written into `*out` (a
/// `CUipcMemHandle` or `CUipcEventHandle`: 64 bytes).
fn get_handle<H>(call: u16, arg: u64, out: *mut H) -> u32 {
    const { assert!(std::mem::size_of::<H>() == 64) };
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let mut handle = [0u8; 64];
    let rc = call_sync(
        call,
        |w| w.put(&arg),
        |r| {
            handle = r.get("handle")?;
            Ok(())
        },
    );
    if rc == CUDA_SUCCESS {
        // SAFETY: the caller's non-null out pointer to a 64-byte handle.
        unsafe { out.cast::<[u8; 64]>().write_unaligned(handle) };
    }
    rc
}

/// `cuIpcGetMemHandle` (the server checks that the address is the program's allocation).
pub unsafe fn ipc_get_mem_handle(out: *mut CUipcMemHandle_st, dptr: CUdeviceptr) -> u32 {
    // The driver takes any address inside an allocation.
    let base = memory_map::find(dptr).map_or(dptr, |(b, _)| b);
    get_handle(custom::IPC_GET_MEM_HANDLE, base, out)
}

/// `cuIpcOpenMemHandle_v2`.
pub unsafe fn ipc_open_mem_handle(
    out: *mut CUdeviceptr,
    handle: CUipcMemHandle_st,
    flags: u32,
) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let (mut p, mut size) = (0u64, 0u64);
    let rc = call_sync(
        custom::IPC_OPEN_MEM_HANDLE,
        |w| {
            w.put(&ipc_handle::bytes(&handle.reserved));
            w.put(&flags);
        },
        |r| {
            p = r.get("address")?;
            size = r.get("size")?;
            Ok(())
        },
    );
    if rc == CUDA_SUCCESS {
        memory_map::insert(p, size.max(1), Kind::Device, 0);
        // SAFETY: the caller's non-null out pointer.
        unsafe { *out = p };
    }
    rc
}

/// `cuIpcCloseMemHandle`: the range stays known until the last close, as the driver's
/// mapping does.
pub unsafe fn ipc_close_mem_handle(dptr: CUdeviceptr) -> u32 {
    let mut left = 1u32;
    let rc = call_sync(
        custom::IPC_CLOSE_MEM_HANDLE,
        |w| w.put(&dptr),
        |r| {
            left = r.get("opens left")?;
            Ok(())
        },
    );
    if rc == CUDA_SUCCESS && left == 0 {
        memory_map::remove(dptr);
    }
    rc
}

/// `cuIpcGetEventHandle` (the event must have been created interprocess; the driver checks).
pub unsafe fn ipc_get_event_handle(out: *mut CUipcEventHandle_st, e: CUevent) -> u32 {
    get_handle(custom::IPC_GET_EVENT_HANDLE, e as usize as u64, out)
}

/// `cuIpcOpenEventHandle`: named by the client, as every event.
pub unsafe fn ipc_open_event_handle(out: *mut CUevent, handle: CUipcEventHandle_st) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let name = crate::names::next();
    let rc = call_sync(
        custom::IPC_OPEN_EVENT_HANDLE,
        |w| {
            w.put(&ipc_handle::bytes(&handle.reserved));
            w.put(&name);
        },
        |_| Ok(()),
    );
    if rc == CUDA_SUCCESS {
        // SAFETY: the caller's non-null out pointer.
        unsafe { *out = name as usize as CUevent };
    }
    rc
}
