//! One kernel launch, however the program asked for it (`cuLaunchKernel`,
//! `cuLaunchCooperativeKernel`, `cuLaunchKernelEx` and its per-thread-stream twin), for the
//! libraries that carry launches out: [`launch_entry_points!`](crate::launch_entry_points)
//! writes those entry points around one function taking a [`Launch`]. Launch configurations
//! are read as raw C structures (attribute ids stay plain numbers, never Rust enums).

use crate::cu::{CUfunction, CUstream};
use crate::result::CUDA_ERROR_INVALID_VALUE;
use std::ffi::c_void;

/// Most attributes one launch may carry.
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

/// `CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_EVENT`: an event recorded once every block triggered.
pub const ATTRIBUTE_PROGRAMMATIC_EVENT: u32 = 7;
/// `CU_LAUNCH_ATTRIBUTE_LAUNCH_COMPLETION_EVENT`: an event recorded once every block began.
pub const ATTRIBUTE_LAUNCH_COMPLETION_EVENT: u32 = 12;

impl RawLaunchAttribute {
    /// The event an event attribute carries (the first 8 bytes of its value).
    pub fn event(&self) -> Option<u64> {
        matches!(
            self.id,
            ATTRIBUTE_PROGRAMMATIC_EVENT | ATTRIBUTE_LAUNCH_COMPLETION_EVENT
        )
        .then(|| u64::from_le_bytes(self.value[..8].try_into().unwrap_or_default()))
    }

    /// This attribute with its event replaced by `e`.
    pub fn with_event(mut self, e: u64) -> Self {
        self.value[..8].copy_from_slice(&e.to_le_bytes());
        self
    }
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

impl RawLaunchConfig {
    /// The configuration's attributes; `CUDA_ERROR_INVALID_VALUE` for a malformed list (more
    /// than [`MAX_ATTRIBUTES`], or none where some are counted).
    ///
    /// # Safety
    /// `attrs` points at `count` attributes when `count` is not zero and `attrs` not null.
    pub unsafe fn attributes(&self) -> Result<&[RawLaunchAttribute], u32> {
        match (self.count, self.attrs.is_null()) {
            (0, _) => Ok(&[]),
            // SAFETY: the caller's array of `count` attributes.
            (n, false) if n <= MAX_ATTRIBUTES => {
                Ok(unsafe { std::slice::from_raw_parts(self.attrs, n as usize) })
            }
            _ => Err(CUDA_ERROR_INVALID_VALUE),
        }
    }
}

/// How a launch was asked for.
#[derive(Debug, Clone, Copy)]
pub enum How<'a> {
    /// `cuLaunchKernel`.
    Plain,
    /// `cuLaunchCooperativeKernel`.
    Cooperative,
    /// `cuLaunchKernelEx`, with its attributes.
    Ex(&'a [RawLaunchAttribute]),
}

/// One launch.
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    /// The function (or a kernel handle, which launches take as a function).
    pub function: CUfunction,
    /// Grid dimensions.
    pub grid: [u32; 3],
    /// Block dimensions.
    pub block: [u32; 3],
    /// Dynamic shared memory bytes.
    pub shared: u32,
    /// The stream.
    pub stream: CUstream,
    /// `kernelParams`.
    pub params: *mut *mut c_void,
    /// `extra`.
    pub extra: *mut *mut c_void,
    /// How it was asked for.
    pub how: How<'a>,
}

impl<'a> Launch<'a> {
    /// Runs `imp` on the launch `cuLaunchKernelEx` (or, with `per_thread_stream`, its `_ptsz`
    /// twin) asks for; a null or malformed configuration is `CUDA_ERROR_INVALID_VALUE`.
    ///
    /// # Safety
    /// As [`Launch::from_config`].
    pub unsafe fn run_config(
        config: *const RawLaunchConfig,
        function: CUfunction,
        params: *mut *mut c_void,
        extra: *mut *mut c_void,
        per_thread_stream: bool,
        imp: impl FnOnce(Launch<'a>) -> u32,
    ) -> u32 {
        // SAFETY: the caller's contract.
        match unsafe { Launch::from_config(config, function, params, extra) } {
            Ok(mut launch) => {
                if per_thread_stream {
                    launch.stream = crate::per_thread::per_thread(launch.stream);
                }
                imp(launch)
            }
            Err(e) => e,
        }
    }

    /// The launch `cuLaunchKernelEx` asks for; `CUDA_ERROR_INVALID_VALUE` for a null or
    /// malformed configuration.
    ///
    /// # Safety
    /// `config` is null or points at a `CUlaunchConfig` whose attributes live for `'a`.
    pub unsafe fn from_config(
        config: *const RawLaunchConfig,
        function: CUfunction,
        params: *mut *mut c_void,
        extra: *mut *mut c_void,
    ) -> Result<Launch<'a>, u32> {
        // SAFETY: null or the caller's configuration.
        let c = unsafe { config.as_ref() }.ok_or(CUDA_ERROR_INVALID_VALUE)?;
        // SAFETY: the caller's configuration lists its attributes.
        let attrs = unsafe { c.attributes() }?;
        Ok(Launch {
            function,
            grid: c.grid,
            block: c.block,
            shared: c.shared,
            stream: c.stream,
            params,
            extra,
            how: How::Ex(attrs),
        })
    }
}

/// Writes `launch_kernel`, `launch_cooperative_kernel`, `launch_kernel_ex` and
/// `launch_kernel_ex_ptsz` (the configuration's stream read as a per-thread one) with the
/// driver's signatures, each calling `$imp(Launch) -> u32`.
#[macro_export]
macro_rules! launch_entry_points {
    ($imp:path) => {
        /// `cuLaunchKernel`.
        #[allow(clippy::too_many_arguments)]
        pub unsafe fn launch_kernel(
            f: $crate::cu::CUfunction,
            gx: u32,
            gy: u32,
            gz: u32,
            bx: u32,
            by: u32,
            bz: u32,
            shared: u32,
            stream: $crate::cu::CUstream,
            params: *mut *mut ::std::ffi::c_void,
            extra: *mut *mut ::std::ffi::c_void,
        ) -> u32 {
            $imp($crate::launch::Launch {
                function: f,
                grid: [gx, gy, gz],
                block: [bx, by, bz],
                shared,
                stream,
                params,
                extra,
                how: $crate::launch::How::Plain,
            })
        }

        /// `cuLaunchCooperativeKernel`.
        #[allow(clippy::too_many_arguments)]
        pub unsafe fn launch_cooperative_kernel(
            f: $crate::cu::CUfunction,
            gx: u32,
            gy: u32,
            gz: u32,
            bx: u32,
            by: u32,
            bz: u32,
            shared: u32,
            stream: $crate::cu::CUstream,
            params: *mut *mut ::std::ffi::c_void,
        ) -> u32 {
            $imp($crate::launch::Launch {
                function: f,
                grid: [gx, gy, gz],
                block: [bx, by, bz],
                shared,
                stream,
                params,
                extra: ::std::ptr::null_mut(),
                how: $crate::launch::How::Cooperative,
            })
        }

        /// `cuLaunchKernelEx`.
        pub unsafe fn launch_kernel_ex(
            config: *const $crate::cu::CUlaunchConfig_st,
            f: $crate::cu::CUfunction,
            params: *mut *mut ::std::ffi::c_void,
            extra: *mut *mut ::std::ffi::c_void,
        ) -> u32 {
            // SAFETY: the caller's arguments.
            unsafe {
                $crate::launch::Launch::run_config(config.cast(), f, params, extra, false, $imp)
            }
        }

        /// `cuLaunchKernelEx_ptsz`: the configuration's stream read as a per-thread one.
        pub unsafe fn launch_kernel_ex_ptsz(
            config: *const $crate::cu::CUlaunchConfig_st,
            f: $crate::cu::CUfunction,
            params: *mut *mut ::std::ffi::c_void,
            extra: *mut *mut ::std::ffi::c_void,
        ) -> u32 {
            // SAFETY: the caller's arguments.
            unsafe {
                $crate::launch::Launch::run_config(config.cast(), f, params, extra, true, $imp)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_drivers() {
        assert_eq!(std::mem::size_of::<RawLaunchAttribute>(), 72);
        assert_eq!(
            std::mem::size_of::<RawLaunchConfig>(),
            std::mem::size_of::<crate::cu::CUlaunchConfig_st>()
        );
        assert_eq!(
            std::mem::size_of::<RawLaunchAttribute>(),
            std::mem::size_of::<crate::cu::CUlaunchAttribute_st>()
        );
    }

    /// What the generated entry points hand over: grid x, block x, shared, and the kind.
    fn seen(l: Launch<'_>) -> u32 {
        let how = match l.how {
            How::Plain => 1,
            How::Cooperative => 2,
            How::Ex(a) => 3 + a.len() as u32,
        };
        l.grid[0] * 1000 + l.block[0] * 100 + l.shared * 10 + how
    }

    mod entry {
        crate::launch_entry_points!(super::seen);
    }

    #[test]
    fn every_entry_point_hands_over_the_same_launch() {
        let null: *mut *mut c_void = std::ptr::null_mut();
        let (f, s) = (std::ptr::null_mut(), std::ptr::null_mut());
        let attr = RawLaunchAttribute {
            id: 4,
            pad: [0; 4],
            value: [0; 64],
        };
        let mut config = RawLaunchConfig {
            grid: [7, 1, 1],
            block: [3, 1, 1],
            shared: 2,
            stream: s,
            attrs: &attr,
            count: 1,
        };
        let cfg = std::ptr::from_ref(&config).cast();
        // SAFETY (each call): null or valid pointers; the function is never called.
        unsafe {
            assert_eq!(
                entry::launch_kernel(f, 7, 1, 1, 3, 1, 1, 2, s, null, null),
                7321
            );
            assert_eq!(
                entry::launch_cooperative_kernel(f, 7, 1, 1, 3, 1, 1, 2, s, null),
                7322
            );
            assert_eq!(entry::launch_kernel_ex(cfg, f, null, null), 7324);
            assert_eq!(entry::launch_kernel_ex_ptsz(cfg, f, null, null), 7324);
            assert_eq!(
                entry::launch_kernel_ex(std::ptr::null(), f, null, null),
                CUDA_ERROR_INVALID_VALUE
            );
        }
        config.attrs = std::ptr::null();
        let cfg = std::ptr::from_ref(&config).cast();
        // SAFETY: a configuration that counts one attribute but has none.
        assert_eq!(
            unsafe { entry::launch_kernel_ex(cfg, f, null, null) },
            CUDA_ERROR_INVALID_VALUE
        );
    }
}
