//! Encoding and checked decoding of message bodies: little-endian integers, plain-data values
//! and length-prefixed byte strings. The decoder never reads past its slice and never panics.

use std::fmt;

/// A type every bit pattern of which is a valid value (integers, raw pointers, byte arrays and
/// `repr(C)` structs made of them), so it can be read from untrusted bytes.
///
/// # Safety
/// Implement only for such types.
pub unsafe trait Pod: Copy + 'static {}

macro_rules! pod {
    ($($t:ty),*) => {$(
        // SAFETY: every bit pattern is a valid value of this type.
        unsafe impl Pod for $t {}
    )*};
}
pod!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, f32, f64);
// SAFETY: raw pointers are valid for any address.
unsafe impl<T: 'static> Pod for *mut T {}
// SAFETY: as above.
unsafe impl<T: 'static> Pod for *const T {}
// SAFETY: arrays of plain data are plain data.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}
// SAFETY: sixteen bytes.
unsafe impl Pod for gpupool_cuda::cu::CUuuid {}

/// A message that does not decode: what was expected and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// What the decoder was reading.
    pub what: &'static str,
    /// Byte offset in the message body.
    pub at: usize,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed message: {} at byte {}", self.what, self.at)
    }
}

impl std::error::Error for DecodeError {}

/// Appends values to a message body.
#[derive(Default, Debug)]
pub struct Writer {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// Appends a plain-data value.
    pub fn put<T: Pod>(&mut self, v: &T) {
        // SAFETY: T is plain data of size_of::<T>() bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>())
        };
        self.buf.extend_from_slice(bytes);
    }

    /// Appends a length-prefixed byte string.
    pub fn put_bytes(&mut self, b: &[u8]) {
        self.put(&(b.len() as u64));
        self.buf.extend_from_slice(b);
    }

    /// Appends `len` bytes as [`Writer::put_bytes`] does, written in place by `fill`, which
    /// gets their address and returns 0 when it wrote them all; else nothing is appended and
    /// its answer returned. Bulk data is not zeroed nor copied once more.
    ///
    /// # Safety
    /// `fill` must write all `len` bytes at the address it gets when it returns 0.
    pub unsafe fn put_bytes_in_place(
        &mut self,
        len: usize,
        fill: impl FnOnce(*mut u8) -> u32,
    ) -> u32 {
        let at = self.buf.len();
        self.put(&(len as u64));
        self.buf.reserve(len);
        let rc = fill(self.buf.spare_capacity_mut().as_mut_ptr().cast());
        if rc == 0 {
            // SAFETY: reserved above and written by `fill`.
            unsafe { self.buf.set_len(at + 8 + len) };
        } else {
            self.buf.truncate(at);
        }
        rc
    }

    /// Appends an optional value: a presence byte, then the value.
    pub fn put_opt<T: Pod>(&mut self, v: Option<&T>) {
        match v {
            Some(v) => {
                self.put(&1u8);
                self.put(v);
            }
            None => self.put(&0u8),
        }
    }
}

/// Reads values from a message body, checking every length.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, at: 0 }
    }

    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError { what, at: self.at }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).ok_or_else(|| self.err(what))?;
        let s = self.buf.get(self.at..end).ok_or_else(|| self.err(what))?;
        self.at = end;
        Ok(s)
    }

    /// The next plain-data value.
    pub fn get<T: Pod>(&mut self, what: &'static str) -> Result<T, DecodeError> {
        let s = self.take(std::mem::size_of::<T>(), what)?;
        // SAFETY: `s` holds size_of::<T>() bytes and every bit pattern is a valid T.
        Ok(unsafe { std::ptr::read_unaligned(s.as_ptr() as *const T) })
    }

    /// The next length-prefixed byte string.
    pub fn get_bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n: u64 = self.get(what)?;
        let n = usize::try_from(n).map_err(|_| self.err(what))?;
        self.take(n, what)
    }

    /// The next optional value (see [`Writer::put_opt`]).
    pub fn get_opt<T: Pod>(&mut self, what: &'static str) -> Result<Option<T>, DecodeError> {
        match self.get::<u8>(what)? {
            0 => Ok(None),
            1 => Ok(Some(self.get(what)?)),
            _ => Err(self.err(what)),
        }
    }

    /// A presence byte (0 or 1).
    pub fn get_flag(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.get::<u8>(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.err(what)),
        }
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.at..]
    }

    /// Whether every byte was read.
    pub fn finished(&self) -> bool {
        self.at == self.buf.len()
    }

    /// Fails unless every byte was read (trailing bytes are malformed).
    pub fn end(&self) -> Result<(), DecodeError> {
        if self.finished() {
            Ok(())
        } else {
            Err(self.err("end of message (trailing bytes)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bytes_written_in_place_read_back_and_a_failed_fill_leaves_nothing() {
        let mut w = Writer::default();
        w.put(&5u32);
        // SAFETY: the fill writes all 3 bytes, or fails.
        let rc = unsafe {
            w.put_bytes_in_place(3, |p| {
                std::ptr::copy_nonoverlapping([1u8, 2, 3].as_ptr(), p, 3);
                0
            })
        };
        assert_eq!(rc, 0);
        assert_eq!(unsafe { w.put_bytes_in_place(1 << 20, |_| 700) }, 700);
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.get::<u32>("a").unwrap(), 5);
        assert_eq!(r.get_bytes("b").unwrap(), &[1, 2, 3]);
        r.end().unwrap();
    }

    #[test]
    fn values_round_trip() {
        let mut w = Writer::default();
        w.put(&7u32);
        w.put_bytes(b"abc");
        w.put_opt(Some(&-3i64));
        w.put_opt::<u16>(None);
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.get::<u32>("a").unwrap(), 7);
        assert_eq!(r.get_bytes("b").unwrap(), b"abc");
        assert_eq!(r.get_opt::<i64>("c").unwrap(), Some(-3));
        assert_eq!(r.get_opt::<u16>("d").unwrap(), None);
        r.end().unwrap();
    }

    #[test]
    fn short_and_oversized_inputs_are_errors() {
        let mut r = Reader::new(&[1, 2]);
        assert_eq!(
            r.get::<u32>("size").unwrap_err(),
            DecodeError {
                what: "size",
                at: 0
            }
        );
        let mut w = Writer::default();
        w.put(&u64::MAX);
        let mut r = Reader::new(&w.buf);
        assert!(r.get_bytes("image").is_err());
        let mut r = Reader::new(&[2]);
        assert!(r.get_opt::<u8>("flag").is_err());
        assert!(Reader::new(&[0]).end().is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            while r.get_bytes("x").is_ok() {}
            let mut r = Reader::new(&bytes);
            while r.get_opt::<u64>("y").is_ok() {}
        }
    }
}
