//! Device attributes asked all at once. NVIDIA's runtime asks over a hundred of them, one by
//! one, when a program starts (`cudaGetDeviceProperties`); the first query for a device
//! fetches every attribute the server's driver answers in one round trip, and the others are
//! answered here. An attribute the driver does not know stays unknown (as the per-call cache
//! kept it); other errors, and attributes past the fetched range, are asked per call.

use crate::conn::state;
use crate::table_client;
use gpupool_cuda::cu::CUdevice;
use gpupool_cuda::result::*;
use gpupool_remote::calls::custom;
use std::collections::HashMap;
use std::sync::Mutex;

/// One attribute's answer: its value, the driver's "invalid value", or `None`: asked per call.
type Answer = Option<Result<i32, u32>>;

/// Each device's answers, attribute `a` at index `a - 1`.
pub(crate) static ANSWERS: Mutex<Option<HashMap<CUdevice, Vec<Answer>>>> = Mutex::new(None);

/// `cuDeviceGetAttribute`.
pub unsafe fn device_get_attribute(v: *mut i32, attrib: i32, dev: CUdevice) -> u32 {
    if v.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let rc = match answer(attrib, dev) {
        Some(Ok(value)) => {
            // SAFETY: non-null out pointer.
            unsafe { *v = value };
            CUDA_SUCCESS
        }
        Some(Err(e)) => e,
        // SAFETY: the caller's out pointer.
        None => unsafe { table_client::cuDeviceGetAttribute(v, attrib, dev) },
    };
    if rc == CUDA_SUCCESS {
        // SAFETY: the caller's out pointer, just written.
        unsafe { crate::attributes::client_side_attribute(v, attrib, dev) };
    }
    rc
}

/// The answer kept for `attrib` of `dev`, fetching the device's answers first if needed.
fn answer(attrib: i32, dev: CUdevice) -> Answer {
    if !(1..=custom::DEVICE_ATTRIBUTES_ASKED).contains(&attrib) {
        return None;
    }
    let at = (attrib - 1) as usize;
    let kept = ANSWERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(&dev).map(|a| a.get(at).copied().flatten()));
    if let Some(a) = kept {
        return a;
    }
    // Fetched without holding the answers: the client's state is always taken first.
    let fetched = fetch(dev)?;
    let a = fetched.get(at).copied().flatten();
    ANSWERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(dev, fetched);
    a
}

/// Every attribute of `dev` from the server (`None`: it could not answer).
fn fetch(dev: CUdevice) -> Option<Vec<Answer>> {
    let mut s = state();
    let start = s
        .begin(custom::DEVICE_ATTRIBUTES, true, crate::context::current())
        .ok()?;
    s.batch.put(&dev);
    let mut answers = Vec::new();
    let rc = s.finish_sync(start, |r| {
        let n: u32 = r.get("attribute count")?;
        for _ in 0..n.min(custom::DEVICE_ATTRIBUTES_ASKED as u32) {
            let (rc, v): (u32, i32) = (r.get("attribute result")?, r.get("attribute value")?);
            answers.push(match rc {
                CUDA_SUCCESS => Some(Ok(v)),
                CUDA_ERROR_INVALID_VALUE => Some(Err(rc)),
                _ => None,
            });
        }
        Ok(())
    });
    (rc == CUDA_SUCCESS).then_some(answers)
}
