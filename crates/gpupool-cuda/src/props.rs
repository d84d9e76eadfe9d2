//! Property structs passed by pointer, mirrored with plain integer fields so that reading an
//! enum value this crate does not know is never undefined behaviour. Sizes are checked against
//! the C layouts at compile time.

use std::ffi::c_void;

/// `CUmemAllocationProp`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RawAllocationProp {
    /// `CUmemAllocationType` (1 = pinned device memory).
    pub alloc_type: u32,
    /// `CUmemAllocationHandleType` bits.
    pub handle_types: u32,
    /// `CUmemLocationType` (1 = device).
    pub loc_type: u32,
    /// Device ordinal when `loc_type` is 1.
    pub loc_id: i32,
    /// Windows only.
    pub win32: *mut c_void,
    /// `allocFlags`.
    pub flags: [u8; 8],
}

impl RawAllocationProp {
    /// Pinned memory on device `ordinal`.
    pub fn device(ordinal: i32) -> RawAllocationProp {
        RawAllocationProp {
            alloc_type: 1,
            handle_types: 0,
            loc_type: 1,
            loc_id: ordinal,
            win32: std::ptr::null_mut(),
            flags: [0; 8],
        }
    }
}

/// `CUmemPoolProps` (its head: the rest is reserved or Windows-only).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RawPoolProps {
    /// `CUmemAllocationType`.
    pub alloc_type: u32,
    /// Handle types.
    pub handle_types: u32,
    /// `CUmemLocationType`.
    pub loc_type: u32,
    /// Device ordinal when `loc_type` is 1.
    pub loc_id: i32,
}

const _: () = assert!(
    std::mem::size_of::<RawAllocationProp>()
        == std::mem::size_of::<crate::cu::CUmemAllocationProp>()
);
