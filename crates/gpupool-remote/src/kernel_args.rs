//! A kernel's arguments as they travel (each parameter's bytes, per the kernel's layout, and
//! an optional argument buffer) and as the driver takes them (`kernelParams`, `extra`). Used by
//! launches and by graph kernel nodes.

use crate::wire::{DecodeError, Reader, Writer};
use std::ffi::c_void;

/// Most parameters one kernel takes.
pub const MAX_PARAMETERS: u32 = 4096;

/// Writes a kernel's arguments.
pub fn write(w: &mut Writer, params: &[&[u8]], buffer: Option<&[u8]>) {
    w.put(&(params.len() as u32));
    for p in params {
        w.put_bytes(p);
    }
    match buffer {
        Some(b) => {
            w.put(&1u8);
            w.put_bytes(b);
        }
        None => w.put(&0u8),
    }
}

/// Decoded arguments pointing into the request.
pub struct KernelArgs<'a> {
    params: Vec<*mut c_void>,
    buffer: Option<&'a [u8]>,
    size: usize,
    extra: [*mut c_void; 5],
}

impl<'a> KernelArgs<'a> {
    /// Reads what [`write`] wrote.
    pub fn read(r: &mut Reader<'a>) -> Result<KernelArgs<'a>, DecodeError> {
        let n: u32 = r.get("parameter count")?;
        if n > MAX_PARAMETERS {
            return Err(DecodeError {
                what: "parameter count",
                at: 0,
            });
        }
        let mut params: Vec<*mut c_void> = Vec::with_capacity(n as usize);
        for _ in 0..n {
            params.push(r.get_bytes("parameter")?.as_ptr() as *mut c_void);
        }
        let buffer = if r.get_flag("argument buffer")? {
            Some(r.get_bytes("argument buffer")?)
        } else {
            None
        };
        Ok(KernelArgs {
            params,
            buffer,
            size: buffer.map_or(0, |b| b.len()),
            extra: [std::ptr::null_mut(); 5],
        })
    }

    /// `kernelParams` and `extra` for the driver, valid while `self` is neither moved nor
    /// dropped.
    pub fn pointers(&mut self) -> (*mut *mut c_void, *mut *mut c_void) {
        let Some(b) = self.buffer else {
            return (self.params.as_mut_ptr(), std::ptr::null_mut());
        };
        self.extra = [
            // CU_LAUNCH_PARAM_BUFFER_POINTER, CU_LAUNCH_PARAM_BUFFER_SIZE, CU_LAUNCH_PARAM_END.
            std::ptr::without_provenance_mut(1),
            b.as_ptr() as *mut c_void,
            std::ptr::without_provenance_mut(2),
            &mut self.size as *mut usize as *mut c_void,
            std::ptr::null_mut(),
        ];
        let params = if self.params.is_empty() {
            std::ptr::null_mut()
        } else {
            self.params.as_mut_ptr()
        };
        (params, self.extra.as_mut_ptr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip_into_driver_pointers() {
        let mut w = Writer::default();
        write(&mut w, &[&7u32.to_le_bytes(), &9u64.to_le_bytes()], None);
        let mut r = Reader::new(&w.buf);
        let mut a = KernelArgs::read(&mut r).unwrap();
        r.end().unwrap();
        let (params, extra) = a.pointers();
        assert!(extra.is_null());
        // SAFETY: two parameter pointers into `w.buf`.
        unsafe {
            assert_eq!(std::ptr::read_unaligned(*params as *const u32), 7);
            assert_eq!(std::ptr::read_unaligned(*params.add(1) as *const u64), 9);
        }

        let mut w = Writer::default();
        write(&mut w, &[], Some(&[1, 2, 3]));
        let mut r = Reader::new(&w.buf);
        let mut a = KernelArgs::read(&mut r).unwrap();
        let (params, extra) = a.pointers();
        assert!(params.is_null());
        // SAFETY: the five-entry list built above.
        unsafe {
            assert_eq!(*extra.add(0) as usize, 1);
            assert_eq!(*(*extra.add(3) as *const usize), 3);
            assert!((*extra.add(4)).is_null());
        }
    }

    #[test]
    fn too_many_parameters_is_malformed() {
        let mut w = Writer::default();
        w.put(&(MAX_PARAMETERS + 1));
        assert!(KernelArgs::read(&mut Reader::new(&w.buf)).is_err());
    }
}
