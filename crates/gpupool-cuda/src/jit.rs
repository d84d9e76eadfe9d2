//! The JIT linker's options and input kinds (`cuLinkCreate`, `cuLinkAddData`,
//! `cuModuleLoadDataEx`): which options carry numbers, which point at the caller's log buffers
//! and which the driver writes back into the caller's option values.
//!
//! An option value is a `void *` slot: a number is stored in the slot itself, a log buffer is
//! a pointer, and outputs (a log's filled size, the wall time as an `f32`) are written into the
//! slot, which the caller keeps valid for the life of the link state.

use crate::result::*;
use std::ffi::{c_char, c_void};

/// `CU_JIT_THREADS_PER_BLOCK` (in and out: a number).
pub const THREADS_PER_BLOCK: u32 = 1;
/// `CU_JIT_WALL_TIME` (out: an `f32` in milliseconds written into the slot).
pub const WALL_TIME: u32 = 2;
/// `CU_JIT_INFO_LOG_BUFFER` (a `char *`).
pub const INFO_LOG_BUFFER: u32 = 3;
/// `CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES` (in: capacity; out: bytes filled).
pub const INFO_LOG_BUFFER_SIZE_BYTES: u32 = 4;
/// `CU_JIT_ERROR_LOG_BUFFER` (a `char *`).
pub const ERROR_LOG_BUFFER: u32 = 5;
/// `CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES` (in: capacity; out: bytes filled).
pub const ERROR_LOG_BUFFER_SIZE_BYTES: u32 = 6;
/// `CU_JIT_LOG_VERBOSE` (a number: 1 asks for a verbose info log).
pub const LOG_VERBOSE: u32 = 12;
/// Options whose values point at host memory of the caller (symbol names and addresses,
/// referenced kernel and variable names), or count the entries of such arrays, rather than
/// carry a number of their own or a log.
pub const POINTING: [u32; 7] = [17, 18, 19, 25, 26, 27, 28];
/// One past the highest option a CUDA 13.0 driver knows.
pub const OPTION_COUNT: u32 = 40;

/// `CU_JIT_INPUT_CUBIN`.
pub const INPUT_CUBIN: u32 = 0;
/// `CU_JIT_INPUT_PTX`.
pub const INPUT_PTX: u32 = 1;
/// `CU_JIT_INPUT_NVVM`, the highest input kind.
pub const INPUT_NVVM: u32 = 5;

/// Largest log capacity honoured (a larger capacity is used up to this many bytes).
pub const MAX_LOG_BYTES: u32 = 1 << 20;

/// A caller's log buffer: where the text goes, how much fits, and the slot that gets the
/// size written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBuffer {
    /// The buffer (an address; null when the caller gave a size only).
    pub buffer: usize,
    /// Its capacity in bytes, NUL included.
    pub capacity: u32,
    /// The option-value slot of its size, written back with the bytes filled.
    pub size_slot: usize,
}

impl LogBuffer {
    /// Writes `text` into the buffer (cut to fit, NUL-terminated) and the bytes filled, NUL
    /// included, into the size slot.
    ///
    /// # Safety
    /// The buffer holds `capacity` writable bytes and the size slot is a writable `void *`,
    /// as the caller of the JIT function promised.
    pub unsafe fn write(&self, text: &[u8]) {
        let room = self.capacity.min(MAX_LOG_BYTES) as usize;
        let mut filled = 0;
        if self.buffer != 0 && room > 0 {
            let n = text.len().min(room - 1);
            // SAFETY: `n + 1 <= capacity` bytes of the caller's buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(text.as_ptr(), self.buffer as *mut u8, n);
                *(self.buffer as *mut u8).add(n) = 0;
            }
            filled = n + 1;
        }
        if self.size_slot != 0 {
            // SAFETY: the caller's option-value slot.
            unsafe { *(self.size_slot as *mut usize) = filled };
        }
    }
}

/// The options of one JIT call, read from the caller's arrays.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JitOptions {
    /// Options that carry a number, with it (in the caller's order).
    pub numbers: Vec<(u32, u64)>,
    /// The info log, when the caller gave a buffer or a size for it.
    pub info_log: Option<LogBuffer>,
    /// The error log, likewise.
    pub error_log: Option<LogBuffer>,
    /// The slot the wall time goes into, when asked.
    pub wall_time_slot: Option<usize>,
    /// Options pointing at the caller's host memory (see [`POINTING`]), by number.
    pub pointing: Vec<u32>,
}

impl JitOptions {
    /// Reads `n` options and their values.
    ///
    /// `CUDA_ERROR_INVALID_VALUE` for options out of range, arrays missing for a count, or a
    /// log buffer without its size.
    ///
    /// # Safety
    /// `options` and `values` are null or hold `n` entries, as the caller of the JIT function
    /// promised; `values` stays valid while outputs may be written into it.
    pub unsafe fn read(n: u32, options: *const u32, values: *mut *mut c_void) -> Result<Self, u32> {
        if n == 0 {
            return Ok(Self::default());
        }
        if options.is_null() || values.is_null() || n > 4 * OPTION_COUNT {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mut out = Self::default();
        let (mut info, mut info_size, mut error, mut error_size) = (None, None, None, None);
        for i in 0..n as usize {
            // SAFETY: `n` entries each, per the contract.
            let (option, slot) = unsafe { (*options.add(i), values.add(i)) };
            // SAFETY: as above.
            let value = unsafe { *slot } as usize;
            match option {
                o if o >= OPTION_COUNT => return Err(CUDA_ERROR_INVALID_VALUE),
                WALL_TIME => out.wall_time_slot = Some(slot as usize),
                INFO_LOG_BUFFER => info = Some(value),
                ERROR_LOG_BUFFER => error = Some(value),
                INFO_LOG_BUFFER_SIZE_BYTES => info_size = Some((value as u32, slot as usize)),
                ERROR_LOG_BUFFER_SIZE_BYTES => error_size = Some((value as u32, slot as usize)),
                o if POINTING.contains(&o) => out.pointing.push(o),
                o => out.numbers.push((o, value as u64)),
            }
        }
        let log = |buffer: Option<usize>, size: Option<(u32, usize)>| match (buffer, size) {
            (None, None) => Ok(None),
            (Some(b), Some((capacity, size_slot))) => Ok(Some(LogBuffer {
                buffer: b,
                capacity: if b == 0 { 0 } else { capacity },
                size_slot,
            })),
            (None, Some((_, size_slot))) => Ok(Some(LogBuffer {
                buffer: 0,
                capacity: 0,
                size_slot,
            })),
            (Some(_), None) => Err(CUDA_ERROR_INVALID_VALUE),
        };
        out.info_log = log(info, info_size)?;
        out.error_log = log(error, error_size)?;
        Ok(out)
    }

    /// Whether the caller asked for a verbose info log.
    pub fn verbose(&self) -> bool {
        self.numbers
            .iter()
            .any(|&(o, v)| o == LOG_VERBOSE && v != 0)
    }

    /// Writes the logs (each where asked) and the wall time.
    ///
    /// # Safety
    /// The buffers and slots [`read`](Self::read) found are still the caller's and valid.
    pub unsafe fn report(&self, info: &[u8], error: &[u8], wall_ms: f32) {
        // SAFETY: the contract.
        unsafe {
            if let Some(l) = self.info_log {
                l.write(info);
            }
            if let Some(l) = self.error_log {
                l.write(error);
            }
            if let Some(slot) = self.wall_time_slot {
                // The value is a float stored in the slot's first four bytes.
                *(slot as *mut usize) = 0;
                *(slot as *mut f32) = wall_ms;
            }
        }
    }
}

/// Runs a module or library load under the JIT options of `cuModuleLoadDataEx` /
/// `cuLibraryLoadData`: the options are read first (`CUDA_ERROR_INVALID_VALUE` when
/// malformed), then `load` runs and returns its result and why it failed; the error log gets
/// that reason, the info log nothing, the wall time the load's.
///
/// # Safety
/// `options` and `values` are null or hold `n` entries, as the JIT function's caller promised.
pub unsafe fn load_with_logs(
    n: u32,
    options: *const u32,
    values: *mut *mut c_void,
    load: impl FnOnce() -> (u32, String),
) -> u32 {
    let started = std::time::Instant::now();
    // SAFETY: the contract.
    let options = match unsafe { JitOptions::read(n, options, values) } {
        Ok(o) => o,
        Err(e) => return e,
    };
    let (rc, why) = load();
    // SAFETY: the caller's buffers and option values.
    unsafe { options.report(b"", why.as_bytes(), started.elapsed().as_secs_f32() * 1e3) };
    rc
}

/// `CUDA_ERROR_INVALID_VALUE` for an input kind past [`INPUT_NVVM`].
fn known_kind(kind: u32) -> Result<(), u32> {
    if kind > INPUT_NVVM {
        Err(CUDA_ERROR_INVALID_VALUE)
    } else {
        Ok(())
    }
}

/// The bytes of a `cuLinkAddData` input of `kind` (`CUDA_ERROR_INVALID_VALUE` for an unknown
/// kind, null or empty data).
///
/// # Safety
/// `data` is null or holds `size` readable bytes that outlive the result.
pub unsafe fn data_input<'a>(kind: u32, data: *const c_void, size: usize) -> Result<&'a [u8], u32> {
    known_kind(kind)?;
    if data.is_null() || size == 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: the contract.
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size) })
}

/// The contents of a `cuLinkAddFile` input of `kind` and its path
/// (`CUDA_ERROR_INVALID_VALUE` for an unknown kind or a null path, `CUDA_ERROR_FILE_NOT_FOUND`
/// when it cannot be read).
///
/// # Safety
/// `path` is null or NUL-terminated and outlives the result.
pub unsafe fn file_input<'a>(kind: u32, path: *const c_char) -> Result<(Vec<u8>, &'a [u8]), u32> {
    known_kind(kind)?;
    if path.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: NUL-terminated, per the contract.
    let path = unsafe { std::ffi::CStr::from_ptr(path) };
    let file = path.to_str().map_err(|_| CUDA_ERROR_FILE_NOT_FOUND)?;
    let bytes = std::fs::read(file).map_err(|_| CUDA_ERROR_FILE_NOT_FOUND)?;
    Ok((bytes, path.to_bytes()))
}

/// Writes `link_add_data` (`cuLinkAddData_v2`) and `link_add_file` (`cuLinkAddFile_v2`, the
/// file read here and added under its path) around `$add(state, kind, bytes, name, n,
/// options, values) -> u32`, an `unsafe fn` whose contract is the JIT functions' for `n`,
/// `options` and `values`. The arguments are checked first (an input kind out of range, null
/// or empty data, a file that cannot be read).
#[macro_export]
macro_rules! link_add_entry_points {
    ($add:path) => {
        /// `cuLinkAddData_v2`.
        ///
        /// # Safety
        /// The driver function's contract.
        #[allow(clippy::too_many_arguments)]
        pub unsafe fn link_add_data(
            handle: $crate::cu::CUlinkState,
            kind: u32,
            data: *mut std::ffi::c_void,
            size: usize,
            name: *const std::ffi::c_char,
            n: u32,
            options: *mut u32,
            values: *mut *mut std::ffi::c_void,
        ) -> u32 {
            // SAFETY: the caller's arguments; the name is null or NUL-terminated.
            match unsafe { $crate::jit::data_input(kind, data, size) } {
                Ok(bytes) => unsafe {
                    $add(
                        handle,
                        kind,
                        bytes,
                        $crate::jit::name_bytes(name),
                        n,
                        options,
                        values,
                    )
                },
                Err(e) => e,
            }
        }

        /// `cuLinkAddFile_v2`: the file is read here and added under its path.
        ///
        /// # Safety
        /// The driver function's contract.
        pub unsafe fn link_add_file(
            handle: $crate::cu::CUlinkState,
            kind: u32,
            path: *const std::ffi::c_char,
            n: u32,
            options: *mut u32,
            values: *mut *mut std::ffi::c_void,
        ) -> u32 {
            // SAFETY: the caller's arguments.
            match unsafe { $crate::jit::file_input(kind, path) } {
                Ok((bytes, name)) => unsafe {
                    $add(handle, kind, &bytes, name, n, options, values)
                },
                Err(e) => e,
            }
        }
    };
}

/// A C string's bytes, or an empty name for null.
///
/// # Safety
/// `name` is null or NUL-terminated.
pub unsafe fn name_bytes<'a>(name: *const c_char) -> &'a [u8] {
    if name.is_null() {
        return b"";
    }
    // SAFETY: NUL-terminated, per the contract.
    unsafe { std::ffi::CStr::from_ptr(name) }.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_numbers_and_outputs_are_told_apart() {
        let mut info = [0xffu8; 8];
        let mut values: [*mut c_void; 6] = [
            info.as_mut_ptr().cast(),
            8 as *mut c_void,
            std::ptr::null_mut(),
            32 as *mut c_void,
            std::ptr::without_provenance_mut(1),
            std::ptr::null_mut(),
        ];
        let options = [3u32, 4, 2, 0, LOG_VERBOSE, 17];
        let o = unsafe { JitOptions::read(6, options.as_ptr(), values.as_mut_ptr()) }.unwrap();
        assert_eq!(o.numbers, vec![(0, 32), (LOG_VERBOSE, 1)]);
        assert!(o.verbose());
        assert_eq!(o.pointing, vec![17]);
        assert_eq!(o.error_log, None);
        assert_eq!(o.info_log.unwrap().capacity, 8);
        unsafe { o.report(b"linked 12 kernels", b"ignored", 1.5) };
        assert_eq!(&info, b"linked \0", "cut to the capacity, NUL-terminated");
        assert_eq!(values[1] as usize, 8, "bytes filled, NUL included");
        assert_eq!(f32::from_bits(values[2] as usize as u32), 1.5);
    }

    #[test]
    fn malformed_options_are_refused() {
        let mut values: [*mut c_void; 1] = [std::ptr::null_mut()];
        let read = |options: &[u32], values: *mut *mut c_void| unsafe {
            JitOptions::read(options.len() as u32, options.as_ptr(), values)
        };
        assert_eq!(
            read(&[OPTION_COUNT], values.as_mut_ptr()),
            Err(CUDA_ERROR_INVALID_VALUE)
        );
        assert_eq!(
            read(&[3], values.as_mut_ptr()),
            Err(CUDA_ERROR_INVALID_VALUE),
            "buffer without size"
        );
        assert_eq!(
            read(&[0], std::ptr::null_mut()),
            Err(CUDA_ERROR_INVALID_VALUE)
        );
        assert_eq!(
            unsafe { JitOptions::read(0, std::ptr::null(), std::ptr::null_mut()) },
            Ok(JitOptions::default())
        );
        // A size without a buffer still gets the size written (0).
        let mut values: [*mut c_void; 1] = [64 as *mut c_void];
        let o = read(&[6], values.as_mut_ptr()).unwrap();
        unsafe { o.report(b"", b"some error", 0.0) };
        assert_eq!(values[0] as usize, 0);
    }
}
