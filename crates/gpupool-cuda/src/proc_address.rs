//! Answering `cuGetProcAddress` / `_v2` from a library's own functions: the name resolved for
//! the caller's version and flags (see [`symbols`](crate::symbols)), the answer and status
//! written as the driver writes them, and one trace line per lookup when asked.

use crate::result::{CUDA_ERROR_INVALID_VALUE, CUDA_ERROR_NOT_FOUND, CUDA_SUCCESS};
use crate::symbols::resolve;
use crate::{CU_GET_PROC_ADDRESS_SUCCESS, CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND};
use std::ffi::{c_char, c_void, CStr};

/// The function `find` gives for `name` as resolved for `version` / `flags`; with `trace`, a
/// line on stderr starting with `label` says what was asked and found.
pub fn find_traced(
    label: &str,
    trace: bool,
    name: &str,
    version: i32,
    flags: u64,
    find: impl Fn(&str) -> Option<*mut c_void>,
) -> Option<*mut c_void> {
    if name.is_empty() {
        return None;
    }
    let mut buf = [0u8; 128];
    let sym = resolve(name, version.max(0) as u32, flags, &mut buf);
    let found = find(sym);
    if trace {
        let what = if found.is_some() {
            "found"
        } else {
            "not found"
        };
        eprintln!("{label}: cuGetProcAddress({name}, {version}, {flags}) -> {sym}: {what}");
    }
    found
}

/// Answers `cuGetProcAddress` (`status` null) or `_v2` with `lookup(name, version, flags)`.
/// With a status to report it in, a missing symbol is not an error: driver 580 on an H100
/// answers `CUDA_SUCCESS`, a null function and `CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND`.
///
/// # Safety
/// `symbol` is null or NUL-terminated; `pfn` and `status` are null or writable.
pub unsafe fn answer(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: i32,
    flags: u64,
    status: *mut i32,
    lookup: impl Fn(&str, i32, u64) -> Option<*mut c_void>,
) -> u32 {
    if symbol.is_null() || pfn.is_null() {
        return CUDA_ERROR_INVALID_VALUE;
    }
    // SAFETY: a NUL-terminated name from the caller.
    let name = unsafe { CStr::from_ptr(symbol) }.to_str().unwrap_or("");
    let f = lookup(name, version, flags);
    // SAFETY: non-null out pointers.
    unsafe {
        *pfn = f.unwrap_or(std::ptr::null_mut());
        if !status.is_null() {
            *status = if f.is_some() {
                CU_GET_PROC_ADDRESS_SUCCESS
            } else {
                CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND
            };
        }
    }
    if f.is_some() || !status.is_null() {
        CUDA_SUCCESS
    } else {
        CUDA_ERROR_NOT_FOUND
    }
}

/// Writes `get_proc_address` and `get_proc_address_v2` answering with `$lookup(name, version,
/// flags) -> Option<*mut c_void>`.
#[macro_export]
macro_rules! proc_address_entry_points {
    ($lookup:path) => {
        /// `cuGetProcAddress` (CUDA 11.x).
        pub unsafe fn get_proc_address(
            symbol: *const ::std::ffi::c_char,
            pfn: *mut *mut ::std::ffi::c_void,
            version: i32,
            flags: u64,
        ) -> u32 {
            // SAFETY: the caller's arguments.
            unsafe {
                $crate::proc_address::answer(
                    symbol,
                    pfn,
                    version,
                    flags,
                    ::std::ptr::null_mut(),
                    $lookup,
                )
            }
        }

        /// `cuGetProcAddress_v2` (CUDA 12+).
        pub unsafe fn get_proc_address_v2(
            symbol: *const ::std::ffi::c_char,
            pfn: *mut *mut ::std::ffi::c_void,
            version: i32,
            flags: u64,
            status: *mut i32,
        ) -> u32 {
            // SAFETY: the caller's arguments.
            unsafe { $crate::proc_address::answer(symbol, pfn, version, flags, status, $lookup) }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_init(name: &str, _: i32, _: u64) -> Option<*mut c_void> {
        (name == "cuInit").then_some(8usize as *mut c_void)
    }

    mod entry {
        crate::proc_address_entry_points!(super::only_init);
    }

    #[test]
    fn a_missing_symbol_is_an_error_only_without_a_status() {
        let mut p = std::ptr::null_mut();
        let mut st = -1;
        // SAFETY (each call): NUL-terminated names, valid out pointers.
        unsafe {
            assert_eq!(
                entry::get_proc_address(c"cuInit".as_ptr(), &mut p, 2000, 0),
                CUDA_SUCCESS
            );
            assert_eq!(p as usize, 8);
            assert_eq!(
                entry::get_proc_address(c"cuNothing".as_ptr(), &mut p, 2000, 0),
                CUDA_ERROR_NOT_FOUND
            );
            assert!(p.is_null());
            assert_eq!(
                entry::get_proc_address_v2(c"cuNothing".as_ptr(), &mut p, 2000, 0, &mut st),
                CUDA_SUCCESS
            );
            assert_eq!(st, CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);
            assert_eq!(
                entry::get_proc_address(std::ptr::null(), &mut p, 2000, 0),
                CUDA_ERROR_INVALID_VALUE
            );
        }
    }
}
