//! Answers the client keeps instead of asking the server each time, for calls programs make
//! around every launch (PyTorch and cuDNN ask thousands of times per batch):
//!
//! - the current context's device (`cuCtxGetDevice`), a context's id (`cuCtxGetId`) and a
//!   primary context's state (`cuDevicePrimaryCtxGetState`), asked once and kept until a call that creates, destroys,
//!   resets or reconfigures a context (call numbers 1 to 19) starts a new epoch;
//! - function and kernel attributes set again to the value they were last set to
//!   (`cuFuncSetAttribute`, `cuKernelSetAttribute`): answered without a round trip, and without
//!   forgetting the cached attribute answers as a change does.

use crate::table_client;
use gpupool_cuda::cu::{CUcontext, CUdevice, CUfunction, CUkernel};
use gpupool_cuda::result::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;

/// Answers kept per key, each with the epoch it was learnt in.
pub(crate) type Kept<K, V> = Mutex<Option<HashMap<K, (u64, V)>>>;

/// What an attribute was last set to, per (call, attribute, handle, device).
pub(crate) type SetValues = Mutex<Option<HashMap<(u16, i32, u64, CUdevice), i32>>>;

/// Bumped by every call that changes contexts.
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// Each context's device, with the epoch it was learnt in.
pub(crate) static CONTEXT_DEVICES: Kept<u64, CUdevice> = Mutex::new(None);

/// Each context's id, with the epoch it was learnt in.
pub(crate) static CONTEXT_IDS: Kept<u64, u64> = Mutex::new(None);

/// Each device's primary context state (flags, active), with the epoch it was learnt in.
pub(crate) static PRIMARY_STATES: Kept<CUdevice, (u32, i32)> = Mutex::new(None);

/// The last value set per (call, attribute, handle, device).
pub(crate) static SET_ATTRIBUTES: SetValues = Mutex::new(None);

/// The current context epoch.
pub fn epoch() -> u64 {
    EPOCH.load(SeqCst)
}

/// Called for each call sent: a context-changing one starts a new epoch.
pub fn sent(id: u16) {
    if gpupool_remote::calls::changes_contexts(id) {
        EPOCH.fetch_add(1, SeqCst);
    }
}

/// The answer kept for `key` in `map` if learnt in the current epoch.
fn kept<K: std::hash::Hash + Eq, V: Copy>(map: &Kept<K, V>, key: &K) -> Option<V> {
    if crate::fork::in_forked_child() {
        return None;
    }
    let epoch = EPOCH.load(SeqCst);
    let m = map.lock().unwrap_or_else(|e| e.into_inner());
    m.as_ref()?
        .get(key)
        .filter(|(learnt, _)| *learnt == epoch)
        .map(|&(_, v)| v)
}

/// Keeps `value` for `key`, learnt in `epoch`.
fn keep<K: std::hash::Hash + Eq, V>(map: &Kept<K, V>, key: K, epoch: u64, value: V) {
    map.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(key, (epoch, value));
}

/// `cuCtxGetDevice`.
pub unsafe fn ctx_get_device(out: *mut CUdevice) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let ctx = crate::context::current();
    if ctx != 0 {
        if let Some(dev) = kept(&CONTEXT_DEVICES, &ctx) {
            // SAFETY: non-null out pointer.
            unsafe { *out = dev };
            return CUDA_SUCCESS;
        }
    }
    let epoch = EPOCH.load(SeqCst);
    // SAFETY: the caller's out pointer.
    let rc = unsafe { table_client::cuCtxGetDevice(out) };
    if rc == CUDA_SUCCESS && ctx != 0 {
        // SAFETY: filled by the call.
        keep(&CONTEXT_DEVICES, ctx, epoch, unsafe { *out });
    }
    rc
}

/// `cuCtxGetId` (a null context: the current one).
pub unsafe fn ctx_get_id(ctx: CUcontext, out: *mut u64) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let key = match ctx as usize as u64 {
        0 => crate::context::current(),
        c => c,
    };
    if key != 0 {
        if let Some(id) = kept(&CONTEXT_IDS, &key) {
            // SAFETY: non-null out pointer.
            unsafe { *out = id };
            return CUDA_SUCCESS;
        }
    }
    let epoch = EPOCH.load(SeqCst);
    // SAFETY: the caller's arguments.
    let rc = unsafe { table_client::cuCtxGetId(ctx, out) };
    if rc == CUDA_SUCCESS && key != 0 {
        // SAFETY: filled by the call.
        keep(&CONTEXT_IDS, key, epoch, unsafe { *out });
    }
    rc
}

/// `cuDevicePrimaryCtxGetState`.
pub unsafe fn primary_ctx_get_state(dev: CUdevice, flags: *mut u32, active: *mut i32) -> u32 {
    if flags.is_null() || active.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    if let Some((f, a)) = kept(&PRIMARY_STATES, &dev) {
        // SAFETY: non-null out pointers.
        unsafe { (*flags, *active) = (f, a) };
        return CUDA_SUCCESS;
    }
    let epoch = EPOCH.load(SeqCst);
    // SAFETY: the caller's out pointers.
    let rc = unsafe { table_client::cuDevicePrimaryCtxGetState(dev, flags, active) };
    if rc == CUDA_SUCCESS {
        // SAFETY: filled by the call.
        keep(&PRIMARY_STATES, dev, epoch, unsafe { (*flags, *active) });
    }
    rc
}

/// Whether `key` was last set to `value`; if not, `set()` runs and, on success, `value` is
/// remembered.
fn set_once(key: (u16, i32, u64, CUdevice), value: i32, set: impl FnOnce() -> u32) -> u32 {
    let same = SET_ATTRIBUTES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|m| m.get(&key) == Some(&value));
    if same {
        return CUDA_SUCCESS;
    }
    let rc = set();
    let mut m = SET_ATTRIBUTES.lock().unwrap_or_else(|e| e.into_inner());
    let m = m.get_or_insert_with(HashMap::new);
    if rc == CUDA_SUCCESS {
        m.insert(key, value);
    } else {
        m.remove(&key);
    }
    rc
}

/// `cuFuncSetAttribute`.
pub unsafe fn func_set_attribute(f: CUfunction, attrib: i32, v: i32) -> u32 {
    set_once((122, attrib, f as usize as u64, 0), v, || {
        // SAFETY: the caller's arguments.
        unsafe { table_client::cuFuncSetAttribute(f, attrib, v) }
    })
}

/// `cuKernelSetAttribute`.
pub unsafe fn kernel_set_attribute(attrib: i32, v: i32, k: CUkernel, dev: CUdevice) -> u32 {
    set_once((129, attrib, k as usize as u64, dev), v, || {
        // SAFETY: the caller's arguments.
        unsafe { table_client::cuKernelSetAttribute(attrib, v, k, dev) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_answers_end_with_their_epoch() {
        static MAP: Kept<u64, i32> = Mutex::new(None);
        keep(&MAP, 7, EPOCH.load(SeqCst), 3);
        assert_eq!(kept(&MAP, &7), Some(3));
        sent(40);
        assert_eq!(
            kept(&MAP, &7),
            Some(3),
            "asking for the device changes nothing"
        );
        sent(7);
        assert_eq!(kept(&MAP, &7), None, "a context was destroyed: asked again");
    }

    #[test]
    fn setting_the_same_value_again_is_answered_here() {
        let calls = std::cell::Cell::new(0);
        let key = (129, 8, 0x77, 0);
        let set = |value, rc| {
            set_once(key, value, || {
                calls.set(calls.get() + 1);
                rc
            })
        };
        assert_eq!(set(1024, CUDA_SUCCESS), CUDA_SUCCESS);
        assert_eq!(set(1024, CUDA_SUCCESS), CUDA_SUCCESS);
        assert_eq!(calls.get(), 1);
        assert_eq!(
            set(2048, CUDA_ERROR_INVALID_VALUE),
            CUDA_ERROR_INVALID_VALUE
        );
        assert_eq!(set(1024, CUDA_SUCCESS), CUDA_SUCCESS);
        assert_eq!(
            calls.get(),
            3,
            "after a failed change the old value is not assumed"
        );
    }
}
