//! Finding the real driver and NVML functions behind ours, without ever calling `dlsym` through
//! the libc binding (it would resolve to our own `dlsym` export).

use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicPtr, Ordering::Relaxed};

type DlsymFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;

static REAL_DLSYM: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static CUDA: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static NVML: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

/// glibc's `dlsym`, found with `dlvsym` (2.34 first, then the x86-64 base version).
pub fn real_dlsym() -> Option<DlsymFn> {
    let mut p = REAL_DLSYM.load(Relaxed);
    if p.is_null() {
        for version in [c"GLIBC_2.34", c"GLIBC_2.2.5"] {
            // SAFETY: dlvsym with static strings; RTLD_NEXT skips our own export.
            p = unsafe { libc::dlvsym(libc::RTLD_NEXT, c"dlsym".as_ptr(), version.as_ptr()) };
            if !p.is_null() {
                break;
            }
        }
        if p.is_null() {
            return None;
        }
        REAL_DLSYM.store(p, Relaxed);
    }
    // SAFETY: p is glibc's dlsym.
    Some(unsafe { std::mem::transmute::<*mut c_void, DlsymFn>(p) })
}

fn library(slot: &AtomicPtr<c_void>, name: &CStr) -> *mut c_void {
    let mut h = slot.load(Relaxed);
    if h.is_null() {
        // SAFETY: dlopen of a library by soname; the handle is kept for the process lifetime.
        h = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if !h.is_null() {
            slot.store(h, Relaxed);
        }
    }
    h
}

/// The real driver's (or NVML's, for `nvml*` names) function `name` (NUL-terminated).
pub fn resolve(name: &str) -> *mut c_void {
    let (slot, lib) = if name.starts_with("nvml") {
        (&NVML, c"libnvidia-ml.so.1")
    } else {
        (&CUDA, c"libcuda.so.1")
    };
    let handle = library(slot, lib);
    let Some(dlsym) = real_dlsym() else {
        return std::ptr::null_mut();
    };
    if handle.is_null() || !name.ends_with('\0') {
        return std::ptr::null_mut();
    }
    // SAFETY: handle is a live library handle; name is NUL-terminated.
    unsafe { dlsym(handle, name.as_ptr().cast()) }
}
