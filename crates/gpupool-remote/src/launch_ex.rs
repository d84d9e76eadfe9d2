//! `cuLaunchKernelEx`'s configuration and graph kernel nodes' parameters as raw C structures
//! (attribute ids stay plain numbers, never Rust enums), and which launch attributes may
//! travel: those whose values are plain numbers. Attributes that carry a handle (events) are
//! refused.

use gpupool_cuda::cu::{CUcontext, CUfunction, CUstream};
use std::ffi::c_void;

/// Most attributes one launch carries.
pub const MAX_ATTRIBUTES: u32 = 16;

/// `CUlaunchAttribute`: an id and a 64-byte value.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawLaunchAttribute {
    /// `CUlaunchAttributeID`.
    pub id: u32,
    /// Padding before the value.
    pub pad: [u8; 4],
    /// `CUlaunchAttributeValue`.
    pub value: [u8; 64],
}

/// `CUlaunchConfig`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RawLaunchConfig {
    /// Grid dimensions.
    pub grid: [u32; 3],
    /// Block dimensions.
    pub block: [u32; 3],
    /// Dynamic shared memory bytes.
    pub shared: u32,
    /// The stream.
    pub stream: CUstream,
    /// The attributes.
    pub attrs: *const RawLaunchAttribute,
    /// How many.
    pub count: u32,
}

/// `CUDA_KERNEL_NODE_PARAMS_v2` (its first fields are `CUDA_KERNEL_NODE_PARAMS` v1's).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RawKernelNodeParams {
    /// The function.
    pub func: CUfunction,
    /// Grid dimensions.
    pub grid: [u32; 3],
    /// Block dimensions.
    pub block: [u32; 3],
    /// Dynamic shared memory bytes.
    pub shared: u32,
    /// `kernelParams`.
    pub params: *mut *mut c_void,
    /// `extra`.
    pub extra: *mut *mut c_void,
    /// `kern` (v2): a library kernel instead of `func`.
    pub kern: *mut c_void,
    /// `ctx` (v2).
    pub ctx: CUcontext,
}

/// Whether attribute `id` may travel: ignore, access policy window, cooperative,
/// synchronisation policy, cluster dimension and scheduling, programmatic serialisation,
/// priority, memory synchronisation domains. Not the event attributes (7, 12) nor newer ids.
pub fn attribute_travels(id: u32) -> bool {
    matches!(id, 0..=6 | 8..=10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_drivers() {
        assert_eq!(std::mem::size_of::<RawLaunchAttribute>(), 72);
        assert_eq!(
            std::mem::size_of::<RawLaunchConfig>(),
            std::mem::size_of::<gpupool_cuda::cu::CUlaunchConfig_st>()
        );
        assert_eq!(
            std::mem::size_of::<RawLaunchAttribute>(),
            std::mem::size_of::<gpupool_cuda::cu::CUlaunchAttribute_st>()
        );
    }

    #[test]
    fn kernel_node_parameters_match_the_drivers() {
        assert_eq!(
            std::mem::size_of::<RawKernelNodeParams>(),
            std::mem::size_of::<gpupool_cuda::cu::CUDA_KERNEL_NODE_PARAMS_v2_st>()
        );
    }

    #[test]
    fn event_attributes_stay_home() {
        assert!(attribute_travels(2) && attribute_travels(8));
        assert!(!attribute_travels(7) && !attribute_travels(12) && !attribute_travels(99));
    }
}
