//! NVML's protocol for returning lists (processes): the caller passes its array's capacity in
//! `*count`; the callee writes the real length there and fills the array, or answers
//! `NVML_ERROR_INSUFFICIENT_SIZE` when it does not fit.

use crate::result::{NVML_ERROR_INSUFFICIENT_SIZE, NVML_ERROR_INVALID_ARGUMENT, NVML_SUCCESS};
use std::ffi::c_uint;

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
