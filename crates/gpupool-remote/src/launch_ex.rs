//! Launches on the wire: a launch's shape, its attributes and which of them may travel (those
//! whose values are plain numbers, and in a launch those carrying an event, which the session
//! maps from the client's name; other handles are refused), and graph kernel nodes'
//! parameters as a raw C structure.

use crate::wire::{DecodeError, Reader, Writer};
use gpupool_cuda::cu::{CUcontext, CUfunction, CUstream};
use std::ffi::c_void;

pub use gpupool_cuda::launch::{RawLaunchAttribute, RawLaunchConfig, MAX_ATTRIBUTES};

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
/// priority, memory synchronisation domains, preferred cluster dimension, preferred shared
/// memory carveout, NVLink-centric scheduling. Not the event attributes (7, 12), the
/// device-updatable graph node (13, whose value returns a handle) nor unknown ids.
pub fn attribute_travels(id: u32) -> bool {
    matches!(id, 0..=6 | 8..=11 | 14 | 16)
}

/// A launch's function and shape as they travel: handles as the client holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchShape {
    /// The function (or kernel) handle.
    pub function: u64,
    /// Grid dimensions.
    pub grid: [u32; 3],
    /// Block dimensions.
    pub block: [u32; 3],
    /// Dynamic shared memory bytes.
    pub shared: u32,
    /// The stream handle (0: the null stream).
    pub stream: u64,
}

impl LaunchShape {
    /// Writes the shape.
    pub fn write(&self, w: &mut Writer) {
        w.put(&self.function);
        w.put(&self.grid);
        w.put(&self.block);
        w.put(&self.shared);
        w.put_opt(Some(&self.stream));
    }

    /// Reads what [`LaunchShape::write`] wrote.
    pub fn read(r: &mut Reader<'_>) -> Result<LaunchShape, DecodeError> {
        Ok(LaunchShape {
            function: r.get("function")?,
            grid: r.get("grid")?,
            block: r.get("block")?,
            shared: r.get("shared memory")?,
            stream: r.get_opt::<u64>("stream")?.unwrap_or(0),
        })
    }

    /// The driver's configuration for this shape on `stream` with `attrs` (which must outlive
    /// its use).
    pub fn config(&self, stream: CUstream, attrs: &[RawLaunchAttribute]) -> RawLaunchConfig {
        RawLaunchConfig {
            grid: self.grid,
            block: self.block,
            shared: self.shared,
            stream,
            attrs: attrs.as_ptr(),
            count: attrs.len() as u32,
        }
    }
}

/// Writes launch attributes: their count, then each id and value.
pub fn write_attributes(w: &mut Writer, attrs: &[RawLaunchAttribute]) {
    w.put(&(attrs.len() as u32));
    for a in attrs {
        w.put(&a.id);
        w.put(&a.value);
    }
}

/// Reads what [`write_attributes`] wrote (at most [`MAX_ATTRIBUTES`]).
pub fn read_attributes(r: &mut Reader<'_>) -> Result<Vec<RawLaunchAttribute>, DecodeError> {
    let n: u32 = r.get("attribute count")?;
    if n > MAX_ATTRIBUTES {
        return Err(DecodeError {
            what: "attribute count",
            at: 0,
        });
    }
    (0..n)
        .map(|_| {
            Ok(RawLaunchAttribute {
                id: r.get("attribute")?,
                pad: [0; 4],
                value: r.get("attribute value")?,
            })
        })
        .collect()
}

/// The attributes of a caller's launch configuration: `CUDA_ERROR_INVALID_VALUE` for a
/// malformed list, `CUDA_ERROR_NOT_SUPPORTED` where one cannot travel.
///
/// # Safety
/// `c.attrs` points at `c.count` attributes when `c.count` is not zero.
pub unsafe fn travelling_attributes(c: &RawLaunchConfig) -> Result<&[RawLaunchAttribute], u32> {
    // SAFETY: the caller's configuration lists its attributes.
    let attrs = unsafe { c.attributes() }?;
    all_travel(attrs)?;
    Ok(attrs)
}

/// `CUDA_ERROR_NOT_SUPPORTED` unless every attribute of `attrs` may travel.
pub fn all_travel(attrs: &[RawLaunchAttribute]) -> Result<(), u32> {
    if attrs.iter().all(|a| attribute_travels(a.id)) {
        Ok(())
    } else {
        Err(gpupool_cuda::result::CUDA_ERROR_NOT_SUPPORTED)
    }
}

/// [`all_travel`] for a launch, whose event attributes travel too: their events are the
/// client's names, which the session maps to its driver's events.
pub fn all_travel_in_launch(attrs: &[RawLaunchAttribute]) -> Result<(), u32> {
    if attrs
        .iter()
        .all(|a| attribute_travels(a.id) || a.event().is_some())
    {
        Ok(())
    } else {
        Err(gpupool_cuda::result::CUDA_ERROR_NOT_SUPPORTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_node_parameters_match_the_drivers() {
        assert_eq!(
            std::mem::size_of::<RawKernelNodeParams>(),
            std::mem::size_of::<gpupool_cuda::cu::CUDA_KERNEL_NODE_PARAMS_v2_st>()
        );
    }

    #[test]
    fn a_shape_round_trips_and_becomes_the_driver_s_configuration() {
        let shape = LaunchShape {
            function: 0xf00,
            grid: [4, 2, 1],
            block: [128, 1, 1],
            shared: 4096,
            stream: 0x5,
        };
        let mut w = Writer::default();
        shape.write(&mut w);
        assert_eq!(LaunchShape::read(&mut Reader::new(&w.buf)).unwrap(), shape);
        let c = shape.config(std::ptr::null_mut(), &[]);
        assert_eq!(
            (c.grid, c.block, c.shared, c.count),
            ([4, 2, 1], [128, 1, 1], 4096, 0)
        );
    }

    #[test]
    fn attributes_round_trip_and_a_long_list_is_refused() {
        let a = RawLaunchAttribute {
            id: 4,
            pad: [0; 4],
            value: [7; 64],
        };
        let mut w = Writer::default();
        write_attributes(&mut w, &[a, a]);
        let back = read_attributes(&mut Reader::new(&w.buf)).unwrap();
        assert_eq!(back, vec![a, a]);
        let mut w = Writer::default();
        w.put(&(MAX_ATTRIBUTES + 1));
        let e = read_attributes(&mut Reader::new(&w.buf)).unwrap_err();
        assert_eq!(e.what, "attribute count");
    }

    #[test]
    fn a_configuration_s_attributes_are_checked_before_they_travel() {
        let event = RawLaunchAttribute {
            id: 7,
            pad: [0; 4],
            value: [0; 64],
        };
        let mut c = RawLaunchConfig {
            grid: [1; 3],
            block: [1; 3],
            shared: 0,
            stream: std::ptr::null_mut(),
            attrs: std::ptr::null(),
            count: 0,
        };
        // SAFETY (each call): `attrs` is null or points at `count` attributes.
        assert_eq!(unsafe { travelling_attributes(&c) }.unwrap().len(), 0);
        c.count = 1;
        assert_eq!(
            unsafe { travelling_attributes(&c) }.unwrap_err(),
            gpupool_cuda::result::CUDA_ERROR_INVALID_VALUE
        );
        c.attrs = &event;
        assert_eq!(
            unsafe { travelling_attributes(&c) }.unwrap_err(),
            gpupool_cuda::result::CUDA_ERROR_NOT_SUPPORTED
        );
    }

    #[test]
    fn event_attributes_stay_home() {
        assert!(attribute_travels(2) && attribute_travels(8));
        assert!(attribute_travels(11) && attribute_travels(14) && attribute_travels(16));
        assert!(!attribute_travels(7) && !attribute_travels(12) && !attribute_travels(99));
        assert!(!attribute_travels(13) && !attribute_travels(15));
    }
}
