//! The JIT linker through the server (`cuLinkCreate`, `cuLinkAddData`, `cuLinkAddFile`,
//! `cuLinkComplete`, `cuLinkDestroy`). The server links with its driver; the caller's log
//! buffers, log sizes and wall time are filled here from every reply, and the linked image
//! is copied here and stays the state's until it is destroyed, as a driver keeps it. A file
//! input is read here (it is the client's file). Options that point at the caller's memory
//! (global symbol names and addresses, referenced names) are refused with
//! `CUDA_ERROR_NOT_SUPPORTED`.

use crate::conn::{call_sync, state};
use gpupool_cuda::cu::CUlinkState;
use gpupool_cuda::jit::{self, JitOptions};
use gpupool_cuda::result::*;
use gpupool_remote::calls::custom;
use gpupool_remote::protocol::MAX_FRAME;
use gpupool_remote::wire::{DecodeError, Reader, Writer};
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

/// What the client keeps of a link state.
pub(crate) struct Link {
    options: JitOptions,
    image: Option<Vec<u8>>,
}

/// Link states by the server's handle. Never held while the connection's state is taken.
pub(crate) static LINKS: Mutex<Option<HashMap<u64, Link>>> = Mutex::new(None);

/// The options of a live state (`None`: no such state).
fn options_of(handle: u64) -> Option<JitOptions> {
    LINKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(&handle))
        .map(|l| l.options.clone())
}

/// Reads options, refusing those pointing at the caller's memory.
///
/// # Safety
/// The JIT function's contract for `n`, `options` and `values`.
unsafe fn read_options(
    n: u32,
    options: *mut u32,
    values: *mut *mut c_void,
) -> Result<JitOptions, u32> {
    // SAFETY: the contract.
    let o = unsafe { JitOptions::read(n, options, values) }?;
    if o.pointing.is_empty() {
        Ok(o)
    } else {
        Err(CUDA_ERROR_NOT_SUPPORTED)
    }
}

/// Writes options that carry numbers.
fn put_numbers(w: &mut Writer, o: &JitOptions) {
    w.put(&(o.numbers.len() as u32));
    for (option, value) in &o.numbers {
        w.put(option);
        w.put(value);
    }
}

/// Sends a `LINK_*` request whose arguments `args` writes, waits, fills the caller's logs and
/// wall time from the reply and hands the rest of it to `rest` when the driver succeeded.
fn call(
    id: u16,
    options: &JitOptions,
    args: impl FnOnce(&mut Writer),
    rest: impl FnOnce(&mut Reader<'_>) -> Result<(), DecodeError>,
) -> u32 {
    let mut driver = CUDA_ERROR_UNKNOWN;
    let rc = call_sync(id, args, |r| {
        driver = r.get("driver result")?;
        let info = r.get_bytes("info log")?;
        let error = r.get_bytes("error log")?;
        let wall: u32 = r.get("wall time")?;
        // SAFETY: the caller keeps its log buffers and option values valid for the life of
        // the state (the driver's contract).
        unsafe { options.report(info, error, f32::from_bits(wall)) };
        if driver == CUDA_SUCCESS {
            rest(r)?;
        }
        Ok(())
    });
    if rc == CUDA_SUCCESS {
        driver
    } else {
        rc
    }
}

/// `cuLinkCreate_v2`.
pub unsafe fn link_create(
    n: u32,
    options: *mut u32,
    values: *mut *mut c_void,
    out: *mut CUlinkState,
) -> u32 {
    if out.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: the caller's arrays.
    let options = match unsafe { read_options(n, options, values) } {
        Ok(o) => o,
        Err(e) => return e,
    };
    let capacity = |l: Option<jit::LogBuffer>| l.map_or(0, |l| l.capacity);
    let mut handle = 0u64;
    let rc = call(
        custom::LINK_CREATE,
        &options,
        |w| {
            put_numbers(w, &options);
            w.put(&capacity(options.info_log));
            w.put(&capacity(options.error_log));
            w.put(&u8::from(options.wall_time_slot.is_some()));
        },
        |r| {
            handle = r.get("link state")?;
            Ok(())
        },
    );
    if rc != CUDA_SUCCESS {
        return rc;
    }
    LINKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(
            handle,
            Link {
                options,
                image: None,
            },
        );
    // SAFETY: non-null out pointer.
    unsafe { *out = handle as usize as CUlinkState };
    CUDA_SUCCESS
}

/// Sends `bytes` named `name` to the state.
///
/// # Safety
/// The JIT function's contract for `n`, `options` and `values`.
unsafe fn add(
    handle: CUlinkState,
    kind: u32,
    bytes: &[u8],
    name: &[u8],
    n: u32,
    options: *mut u32,
    values: *mut *mut c_void,
) -> u32 {
    let handle = handle as usize as u64;
    let Some(link_options) = options_of(handle) else {
        return CUDA_ERROR_INVALID_HANDLE;
    };
    // SAFETY: the caller's arrays.
    let input_options = match unsafe { read_options(n, options, values) } {
        Ok(o) => o,
        Err(e) => return e,
    };
    if bytes.len() + name.len() > MAX_FRAME - 4096 {
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    call(
        custom::LINK_ADD,
        &link_options,
        |w| {
            w.put(&handle);
            w.put(&kind);
            w.put_bytes(name);
            put_numbers(w, &input_options);
            w.put_bytes(bytes);
        },
        |_| Ok(()),
    )
}

gpupool_cuda::link_add_entry_points!(add);

/// `cuLinkComplete`: the image is copied here and stays the state's.
pub unsafe fn link_complete(handle: CUlinkState, image: *mut *mut c_void, size: *mut usize) -> u32 {
    if image.is_null() || size.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    let handle = handle as usize as u64;
    let Some(options) = options_of(handle) else {
        return CUDA_ERROR_INVALID_HANDLE;
    };
    let mut linked = Vec::new();
    let rc = call(
        custom::LINK_COMPLETE,
        &options,
        |w| w.put(&handle),
        |r| {
            linked = r.get_bytes("linked image")?.to_vec();
            Ok(())
        },
    );
    if rc != CUDA_SUCCESS {
        return rc;
    }
    let mut links = LINKS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(link) = links.as_mut().and_then(|m| m.get_mut(&handle)) else {
        return CUDA_ERROR_INVALID_HANDLE;
    };
    let kept = link.image.get_or_insert(linked);
    // SAFETY: non-null out pointers; the bytes stay in place until the state is destroyed.
    unsafe {
        *image = kept.as_mut_ptr().cast();
        *size = kept.len();
    }
    CUDA_SUCCESS
}

/// `cuLinkDestroy`: forgotten here at once, destroyed on the server without waiting.
pub unsafe fn link_destroy(handle: CUlinkState) -> u32 {
    let handle = handle as usize as u64;
    let gone = LINKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .and_then(|m| m.remove(&handle));
    if gone.is_none() {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    let mut s = state();
    match s.begin(custom::LINK_DESTROY, false, crate::context::current()) {
        Ok(start) => {
            s.batch.put(&handle);
            s.finish_async(start)
        }
        Err(e) => e,
    }
}
