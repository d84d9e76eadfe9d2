//! The driver's interprocess handles (`CUipcMemHandle`, `CUipcEventHandle`: 64 opaque bytes)
//! as bytes and back.

use crate::cu::{CUipcEventHandle_st, CUipcMemHandle_st};
use std::ffi::c_char;

/// A handle's bytes.
pub fn bytes(reserved: &[c_char; 64]) -> [u8; 64] {
    reserved.map(|c| c as u8)
}

/// A memory handle of these bytes.
pub fn mem_handle(b: [u8; 64]) -> CUipcMemHandle_st {
    CUipcMemHandle_st {
        reserved: b.map(|c| c as c_char),
    }
}

/// An event handle of these bytes.
pub fn event_handle(b: [u8; 64]) -> CUipcEventHandle_st {
    CUipcEventHandle_st {
        reserved: b.map(|c| c as c_char),
    }
}
