//! `cuTensorMapEncode*` and `cuTensorMapReplaceAddress`: the descriptor is the server driver's
//! own 128 bytes, so each request travels; libraries encode one per matrix product, so the
//! answers are kept (a descriptor depends only on its arguments and the context's device) and
//! the same arguments again get them without a round trip.

use crate::conn::state;
use gpupool_cuda::result::*;
use gpupool_cuda::tensor_map::{map_fits, RawTensorMap, TensorMapRequest};
use gpupool_remote::calls::custom;
use gpupool_remote::tensor_map::{read_reply, write_encode, write_replace_address};
use gpupool_remote::wire::Writer;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

/// Most answers kept (all are forgotten when full: the arguments that repeat come back).
const KEPT: usize = 4096;

/// Answers by context and request bytes.
pub(crate) static KEPT_ANSWERS: Mutex<Option<HashMap<Vec<u8>, RawTensorMap>>> = Mutex::new(None);

fn kept(key: &[u8]) -> Option<RawTensorMap> {
    let kept = KEPT_ANSWERS.lock().unwrap_or_else(|e| e.into_inner());
    kept.as_ref().and_then(|k| k.get(key).copied())
}

fn keep(key: Vec<u8>, map: RawTensorMap) {
    let mut kept = KEPT_ANSWERS.lock().unwrap_or_else(|e| e.into_inner());
    let k = kept.get_or_insert_with(HashMap::new);
    if k.len() >= KEPT {
        k.clear();
    }
    k.insert(key, map);
}

/// Sends the request `write` makes (or answers it from what is kept) and writes the
/// descriptor to `map`.
///
/// # Safety
/// `map` is null or valid for 128 bytes of writes.
unsafe fn ask(map: *mut RawTensorMap, write: impl Fn(&mut Writer)) -> u32 {
    if !map_fits(map) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let context = crate::context::current();
    let mut key = Writer::default();
    key.put(&context);
    write(&mut key);
    if let Some(m) = kept(&key.buf) {
        // SAFETY: checked non-null and aligned; the caller's 128 bytes.
        unsafe { *map = m };
        return CUDA_SUCCESS;
    }
    let mut st = state();
    let start = match st.begin(custom::TENSOR_MAP, true, context) {
        Ok(p) => p,
        Err(e) => return e,
    };
    write(&mut st.batch);
    let mut answer = None;
    let rc = st.finish_sync(start, |r| {
        answer = Some(read_reply(r)?);
        Ok(())
    });
    drop(st);
    if let (CUDA_SUCCESS, Some(m)) = (rc, answer) {
        // SAFETY: as above.
        unsafe { *map = m };
        keep(key.buf, m);
    }
    rc
}

/// Sends an encode whose arguments read correctly.
unsafe fn encode(map: *mut RawTensorMap, request: Result<TensorMapRequest, u32>) -> u32 {
    match request {
        // SAFETY: the caller's map.
        Ok(q) => unsafe { ask(map, |w| write_encode(w, &q)) },
        Err(e) => e,
    }
}

gpupool_cuda::tensor_map_entry_points!(encode);

/// `cuTensorMapReplaceAddress`.
pub unsafe fn replace_address(map: *mut RawTensorMap, address: *mut c_void) -> u32 {
    if !map_fits(map) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: checked non-null and aligned; the caller's descriptor.
    let old = unsafe { *map };
    // SAFETY: the caller's map.
    unsafe { ask(map, |w| write_replace_address(w, &old, address as u64)) }
}
