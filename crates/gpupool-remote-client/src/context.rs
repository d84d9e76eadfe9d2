//! Current contexts, kept per thread on the client: each request carries its thread's current
//! context and the session makes it current before the call.

use gpupool_cuda::cu::{CUcontext, CUdevice};
use gpupool_cuda::result::*;
use std::cell::RefCell;

thread_local! {
    static STACK: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// The calling thread's current context (0: none).
pub fn current() -> u64 {
    STACK
        .try_with(|s| s.borrow().last().copied().unwrap_or(0))
        .unwrap_or(0)
}

fn with<R>(f: impl FnOnce(&mut Vec<u64>) -> R) -> Option<R> {
    STACK.try_with(|s| f(&mut s.borrow_mut())).ok()
}

/// Hook after `cuCtxCreate_v2`: the new context is pushed, as the driver does.
pub unsafe fn created(ctx: *mut CUcontext, _flags: u32, _dev: CUdevice) {
    if !ctx.is_null() {
        // SAFETY: the out pointer the call just filled.
        let c = unsafe { *ctx } as usize as u64;
        with(|s| s.push(c));
    }
}

/// Hook after `cuCtxDestroy_v2`: the context leaves this thread's stack.
pub unsafe fn destroyed(ctx: CUcontext) {
    let c = ctx as usize as u64;
    with(|s| s.retain(|&x| x != c));
}

/// `cuCtxGetCurrent`.
pub unsafe fn get_current(out: *mut CUcontext) -> u32 {
    if let Err(e) = crate::conn::state().ready() {
        return e;
    }
    crate::write(out, current() as usize as CUcontext)
}

/// `cuCtxSetCurrent`: replaces the top of the stack (null pops it).
pub unsafe fn set_current(ctx: CUcontext) -> u32 {
    if let Err(e) = crate::conn::state().ready() {
        return e;
    }
    let c = ctx as usize as u64;
    with(|s| {
        s.pop();
        if c != 0 {
            s.push(c);
        }
    });
    CUDA_SUCCESS
}

/// `cuCtxPushCurrent_v2`.
pub unsafe fn push_current(ctx: CUcontext) -> u32 {
    if let Err(e) = crate::conn::state().ready() {
        return e;
    }
    if ctx.is_null() {
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    with(|s| s.push(ctx as usize as u64));
    CUDA_SUCCESS
}

/// `cuCtxPopCurrent_v2`.
pub unsafe fn pop_current(out: *mut CUcontext) -> u32 {
    if let Err(e) = crate::conn::state().ready() {
        return e;
    }
    match with(|s| s.pop()).flatten() {
        Some(c) => {
            if !out.is_null() {
                // SAFETY: the caller's out pointer.
                unsafe { *out = c as usize as CUcontext };
            }
            CUDA_SUCCESS
        }
        None => CUDA_ERROR_INVALID_CONTEXT,
    }
}
