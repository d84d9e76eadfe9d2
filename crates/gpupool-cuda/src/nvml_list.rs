//! NVML's protocols for returning lists (processes) and strings: for a list the caller passes
//! its array's capacity in `*count`; the callee writes the real length there and fills the
//! array, or answers `NVML_ERROR_INSUFFICIENT_SIZE` when it does not fit. A string goes into the
//! caller's buffer with its NUL, or the same error. Also `nvmlErrorString`'s texts.

use crate::result::*;
use std::ffi::{c_char, c_uint, CStr};

/// Copies `s` and a NUL into the caller's buffer of `len` bytes.
///
/// # Safety
/// `buf` must be null or hold `len` bytes.
pub unsafe fn fill_string(buf: *mut c_char, len: c_uint, s: &[u8]) -> u32 {
    if buf.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    if (len as usize) < s.len() + 1 {
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    // SAFETY: buf holds len >= s.len() + 1 bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast(), s.len());
        *buf.add(s.len()) = 0;
    }
    NVML_SUCCESS
}

/// Whether two PCI bus ids (`DOMAIN:BUS:DEVICE.FUNCTION`, hexadecimal, the domain 4 or 8
/// digits or left out, any case) name the same device, as `nvmlDeviceGetHandleByPciBusId`
/// matches them.
pub fn same_pci_bus_id(a: &str, b: &str) -> bool {
    fn parts(id: &str) -> Option<[u32; 4]> {
        let mut fields: Vec<&str> = id.trim().split(':').collect();
        if fields.len() == 2 {
            fields.insert(0, "0");
        }
        let [domain, bus, rest] = fields[..] else {
            return None;
        };
        let (device, function) = rest.split_once('.')?;
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        Some([hex(domain)?, hex(bus)?, hex(device)?, hex(function)?])
    }
    matches!((parts(a), parts(b)), (Some(x), Some(y)) if x == y)
}

/// The text `nvmlErrorString` returns for `r`.
pub fn error_string(r: u32) -> &'static CStr {
    match r {
        NVML_SUCCESS => c"Success",
        NVML_ERROR_UNINITIALIZED => c"Uninitialized",
        NVML_ERROR_INVALID_ARGUMENT => c"Invalid Argument",
        NVML_ERROR_NOT_SUPPORTED => c"Not Supported",
        NVML_ERROR_NO_PERMISSION => c"Insufficient Permissions",
        NVML_ERROR_NOT_FOUND => c"Not Found",
        NVML_ERROR_DRIVER_NOT_LOADED => c"Driver Not Loaded",
        NVML_ERROR_LIBRARY_NOT_FOUND => c"NVML Shared Library Not Found",
        NVML_ERROR_GPU_IS_LOST => c"GPU is lost",
        NVML_ERROR_INSUFFICIENT_SIZE => c"Insufficient Size",
        NVML_ERROR_FUNCTION_NOT_FOUND => c"Function Not Found",
        _ => c"Unknown Error",
    }
}

/// Returns `items` to an NVML caller.
///
/// # Safety
/// `count` must be null or valid; `infos` must be null or hold `*count` entries.
pub unsafe fn fill_list<T: Copy>(items: &[T], count: *mut c_uint, infos: *mut T) -> u32 {
    if count.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: non-null caller pointer.
    let room = unsafe { *count } as usize;
    // SAFETY: as above.
    unsafe { *count = items.len() as c_uint };
    if items.len() > room || (infos.is_null() && !items.is_empty()) {
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (i, item) in items.iter().enumerate() {
        // SAFETY: the caller's array holds `room` >= items.len() entries.
        unsafe { infos.add(i).write(*item) };
    }
    NVML_SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_bus_ids_match_in_any_spelling_of_the_same_device() {
        for (a, b) in [
            ("00000000:41:00.0", "0000:41:00.0"),
            ("00000000:41:00.0", "41:00.0"),
            ("0000:4a:00.0", "00000000:4A:00.0"),
        ] {
            assert!(same_pci_bus_id(a, b), "{a} {b}");
        }
        for (a, b) in [
            ("00000000:41:00.0", "00000000:42:00.0"),
            ("00000000:41:00.0", "00000001:41:00.0"),
            ("00000000:41:00.0", "00000000:41:00.1"),
            ("00000000:41:00.0", "nonsense"),
            ("", ""),
        ] {
            assert!(!same_pci_bus_id(a, b), "{a} {b}");
        }
    }

    #[test]
    fn follows_the_count_protocol() {
        let items = [1u64, 2, 3];
        let mut out = [0u64; 3];
        let mut n: c_uint = 2;
        // SAFETY: valid pointers, out holds 3 >= n entries.
        assert_eq!(
            unsafe { fill_list(&items, &mut n, out.as_mut_ptr()) },
            NVML_ERROR_INSUFFICIENT_SIZE
        );
        assert_eq!(n, 3);
        // SAFETY: as above.
        assert_eq!(
            unsafe { fill_list(&items, &mut n, out.as_mut_ptr()) },
            NVML_SUCCESS
        );
        assert_eq!(out, items);
        let mut zero: c_uint = 0;
        // SAFETY: null array with zero capacity is the size query.
        assert_eq!(
            unsafe { fill_list::<u64>(&[], &mut zero, std::ptr::null_mut()) },
            NVML_SUCCESS
        );
        // SAFETY: null count is rejected.
        assert_eq!(
            unsafe { fill_list(&items, std::ptr::null_mut(), out.as_mut_ptr()) },
            NVML_ERROR_INVALID_ARGUMENT
        );
    }
}
