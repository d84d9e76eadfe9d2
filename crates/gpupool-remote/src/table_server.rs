//! The server side of the call table: a driver function per entry and a decoder that checks
//! every argument before calling it (generated from [`crate::for_each_call!`]).

use crate::calls::Class;
use crate::wire::{DecodeError, Pod, Reader, Writer};
use gpupool_cuda::cu::*;
use gpupool_cuda::result::*;
use std::ffi::{c_char, c_void, CStr, CString};

/// C type of an argument of this kind.
macro_rules! c_ty {
    (out $t:ty) => { *mut $t };
    (new $t:ty) => { *mut $t };
    (named $t:ty) => { *mut $t };
    (inp $t:ty) => { *const $t };
    (prop $t:ty) => { *const $t };
    (cstr $t:ty) => { *const $t };
    ($k:ident $t:ty) => { $t };
}

macro_rules! take {
    ($r:ident, val, $a:ident, $t:ty) => {
        $r.get::<$t>(stringify!($a))?
    };
    ($r:ident, out, $a:ident, $t:ty) => {
        ($r.get_flag(stringify!($a))?, zero::<$t>())
    };
    ($r:ident, new, $a:ident, $t:ty) => {
        ($r.get_flag(stringify!($a))?, zero::<$t>())
    };
    ($r:ident, named, $a:ident, $t:ty) => {
        ($r.get::<u64>(stringify!($a))?, zero::<$t>())
    };
    ($r:ident, inp, $a:ident, $t:ty) => {
        $r.get_opt::<$t>(stringify!($a))?
    };
    ($r:ident, prop, $a:ident, $t:ty) => {
        $r.get_opt::<$t>(stringify!($a))?.map(without_pointer)
    };
    ($r:ident, cstr, $a:ident, $t:ty) => {
        c_string($r.get_bytes(stringify!($a))?, stringify!($a))?
    };
    ($r:ident, $k:ident, $a:ident, $t:ty) => {
        $r.get::<u64>(stringify!($a))?
    };
}

/// Checks an argument before the call; a handle becomes the driver's handle it names.
macro_rules! check {
    ($s:ident, dev, $a:ident) => {
        if !$s.owns($a, 1) {
            return Ok(Some(CUDA_ERROR_INVALID_VALUE));
        }
    };
    ($s:ident, h($c:ident), $a:ident) => {
        let $a = match $s.handle_of(Class::$c, $a) {
            Ok(real) => real,
            Err(e) => return Ok(Some(e)),
        };
    };
    ($s:ident, del($c:ident), $a:ident) => {
        // A name the driver refused stands for nothing: destroying it only forgets it.
        if $s.forget_refused(Class::$c, $a) {
            return Ok(Some(CUDA_SUCCESS));
        }
        check!($s, h($c), $a)
    };
    ($s:ident, named($c:ident), $a:ident) => {
        if !$s.fresh(Class::$c, $a.0) {
            return Ok(Some(CUDA_ERROR_INVALID_VALUE));
        }
    };
    ($s:ident, $k:ident $(($c:ident))?, $a:ident) => {};
}

macro_rules! pass {
    (val, $a:ident, $t:ty) => {
        $a
    };
    (out, $a:ident, $t:ty) => {
        if $a.0 {
            &mut $a.1 as *mut $t
        } else {
            std::ptr::null_mut()
        }
    };
    (new, $a:ident, $t:ty) => {
        if $a.0 {
            &mut $a.1 as *mut $t
        } else {
            std::ptr::null_mut()
        }
    };
    (named, $a:ident, $t:ty) => {
        &mut $a.1 as *mut $t
    };
    (inp, $a:ident, $t:ty) => {
        $a.as_ref().map_or(std::ptr::null(), |v| v as *const $t)
    };
    (prop, $a:ident, $t:ty) => {
        $a.as_ref().map_or(std::ptr::null(), |v| v as *const $t)
    };
    (cstr, $a:ident, $t:ty) => {
        $a.as_ptr()
    };
    ($k:ident, $a:ident, $t:ty) => {
        $a as usize as $t
    };
}

macro_rules! after {
    ($s:ident, $o:ident, new($c:ident), $a:ident) => {
        if $a.0 {
            $s.remember(Class::$c, $a.1 as usize as u64);
            $o.put(&$a.1);
        }
    };
    ($s:ident, $o:ident, named($c:ident), $a:ident) => {
        $s.name(Class::$c, $a.0, $a.1 as usize as u64);
    };
    ($s:ident, $o:ident, del($c:ident), $a:ident) => {
        $s.forget(Class::$c, $a);
    };
    ($s:ident, $o:ident, out, $a:ident) => {
        if $a.0 {
            $o.put(&$a.1);
        }
    };
    ($s:ident, $o:ident, $k:ident $(($c:ident))?, $a:ident) => {};
}

/// What a table-driven call needs of the session running it: the driver's functions and the
/// client's handles and memory (checked before a call, updated after it).
pub trait TableSession {
    /// The driver's functions.
    fn table(&self) -> &Table;
    /// Whether `[ptr, ptr + len)` is memory the client allocated or reserved.
    fn owns(&self, ptr: u64, len: u64) -> bool;
    /// The driver's handle behind the client's handle `h` of `class` (its own, or a default
    /// one); else the error for it: the driver's, for a name it refused, or
    /// `CUDA_ERROR_INVALID_HANDLE`.
    fn handle_of(&self, class: Class, h: u64) -> Result<u64, u32>;
    /// Forgets `name` if it is one the driver refused; whether it was.
    fn forget_refused(&mut self, class: Class, name: u64) -> bool;
    /// Whether `name` is free for a new handle of `class` the client names itself.
    fn fresh(&self, class: Class, name: u64) -> bool;
    /// Records a handle the driver created for the client.
    fn remember(&mut self, class: Class, h: u64);
    /// Records that the client's `name` stands for the driver's handle `real`.
    fn name(&mut self, class: Class, name: u64, real: u64);
    /// Forgets a handle the client destroyed (the driver's handle).
    fn forget(&mut self, class: Class, h: u64);
}

fn zero<T: Pod>() -> T {
    // SAFETY: every bit pattern, zero included, is a valid T.
    unsafe { std::mem::zeroed() }
}

/// Clears the Windows security-attributes pointer (bytes 16..24) of allocation and pool
/// properties: the driver must never follow an address a client chose.
fn without_pointer<const N: usize>(mut props: [u8; N]) -> [u8; N] {
    if let Some(p) = props.get_mut(16..24) {
        p.fill(0);
    }
    props
}

/// `b` as a C string; a NUL inside it is a decoding error naming `what`.
pub(crate) fn c_string(b: &[u8], what: &'static str) -> Result<CString, DecodeError> {
    CString::new(b).map_err(|_| DecodeError { what, at: 0 })
}

macro_rules! server_table {
    ($( $mode:ident $id:literal $name:ident ( $( $kind:ident $(($class:ident))? $arg:ident : $ty:ty ),* ) $(then $hook:path)? ; )*) => {
        /// The driver's functions behind the table-driven calls (`None`: the driver lacks it).
        #[allow(non_snake_case)]
        pub struct Table {
            $( #[doc = concat!("`", stringify!($name), "`.")]
               pub $name: Option<unsafe extern "C" fn($( c_ty!($kind $ty) ),*) -> u32>, )*
        }

        impl Table {
            /// Finds every function with `resolve` (a `dlsym`).
            pub fn resolve(resolve: &dyn Fn(&CStr) -> *mut c_void) -> Table {
                Table {
                    $( $name: {
                        let p = resolve(&CString::new(stringify!($name)).unwrap_or_default());
                        // SAFETY: the symbol of this name has the signature in the table.
                        (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, unsafe extern "C" fn($( c_ty!($kind $ty) ),*) -> u32>(p) })
                    }, )*
                }
            }
        }

        /// Numbers of the table-driven calls.
        pub const IDS: &[u16] = &[$($id),*];

        /// Decodes and runs table call `id`; `None` when `id` is not in the table.
        #[allow(unused_mut, unused_variables, clippy::unnecessary_cast)]
        pub fn call(s: &mut impl TableSession, id: u16, r: &mut Reader<'_>, outs: &mut Writer) -> Result<Option<u32>, DecodeError> {
            match id {
                $( $id => {
                    $( let mut $arg = take!(r, $kind, $arg, $ty); )*
                    r.end()?;
                    $( check!(s, $kind $(($class))?, $arg); )*
                    let rc = match s.table().$name {
                        // SAFETY: arguments decoded to their C types; handles and addresses were
                        // checked to be the session's own.
                        Some(f) => unsafe { f($( pass!($kind, $arg, $ty) ),*) },
                        None => CUDA_ERROR_NOT_FOUND,
                    };
                    if rc == CUDA_SUCCESS {
                        $( after!(s, outs, $kind $(($class))?, $arg); )*
                    }
                    Ok(Some(rc))
                } )*
                _ => Ok(None),
            }
        }
    };
}

crate::for_each_call!(server_table);

#[allow(dead_code)]
fn _types_in_scope(_: *const c_char) {}
