//! The client side of the call table: one exported C function per entry that encodes its
//! arguments and either batches the call or waits for its results (generated from
//! `gpupool_remote::for_each_call!`).

use crate::conn::state;
use gpupool_cuda::cu::*;
use gpupool_cuda::result::*;
use std::ffi::{c_char, c_void, CStr};

macro_rules! c_ty {
    (out $t:ty) => { *mut $t };
    (new $t:ty) => { *mut $t };
    (named $t:ty) => { *mut $t };
    (inp $t:ty) => { *const $t };
    (prop $t:ty) => { *const $t };
    (cstr $t:ty) => { *const $t };
    ($k:ident $t:ty) => { $t };
}

/// Refuses, before anything is sent, a null pointer where the call needs one.
macro_rules! needs {
    (cstr, $a:ident) => {
        if $a.is_null() {
            return CUDA_ERROR_INVALID_VALUE;
        }
    };
    (named, $a:ident) => {
        needs!(cstr, $a)
    };
    ($k:ident, $a:ident) => {};
}

macro_rules! put {
    ($w:expr, val, $a:ident) => {
        $w.put(&$a)
    };
    ($w:expr, out, $a:ident) => {
        $w.put(&(!$a.is_null() as u8))
    };
    ($w:expr, new, $a:ident) => {
        $w.put(&(!$a.is_null() as u8))
    };
    // SAFETY: the caller's pointer, null or valid for reading.
    ($w:expr, inp, $a:ident) => {
        $w.put_opt(unsafe { $a.as_ref() })
    };
    // SAFETY: the caller's pointer, null or valid for reading.
    ($w:expr, prop, $a:ident) => {
        $w.put_opt(unsafe { $a.as_ref() })
    };
    // SAFETY: a NUL-terminated string from the caller (checked non-null by `needs!`).
    ($w:expr, cstr, $a:ident) => {
        $w.put_bytes(unsafe { CStr::from_ptr($a) }.to_bytes())
    };
    // The handle is the client's name for it, handed out before the server has it.
    ($w:expr, named, $a:ident) => {{
        let name = crate::names::next();
        // SAFETY: the caller's out pointer, checked non-null by `needs!`.
        unsafe { $a.cast::<u64>().write_unaligned(name) };
        $w.put(&name)
    }};
    ($w:expr, $k:ident, $a:ident) => {
        $w.put(&($a as usize as u64))
    };
}

macro_rules! get {
    // The server answers an out value only when the caller asked for it (non-null).
    ($r:ident, out, $a:ident, $t:ty) => {
        if !$a.is_null() {
            let v: $t = $r.get(stringify!($a))?;
            // SAFETY: the caller's out pointer.
            unsafe { *$a = v };
        }
    };
    ($r:ident, new, $a:ident, $t:ty) => {
        get!($r, out, $a, $t)
    };
    ($r:ident, $k:ident, $a:ident, $t:ty) => {};
}

macro_rules! finish {
    (sync, $s:ident, $start:ident, $r:ident => $body:block) => {
        $s.finish_sync($start, |$r| $body)
    };
    (local, $s:ident, $start:ident, $r:ident => $body:block) => {
        $s.finish_sync($start, |$r| $body)
    };
    (cached, $s:ident, $start:ident, $r:ident => $body:block) => {
        $s.finish_cached($start, |$r| $body)
    };
    (async, $s:ident, $start:ident, $r:ident => $body:block) => {
        $s.finish_async($start)
    };
    (deferred, $s:ident, $start:ident, $r:ident => $body:block) => {
        $s.finish_async($start)
    };
}

/// Whether calls of this mode wait for their reply.
macro_rules! waits {
    (async) => {
        false
    };
    (deferred) => {
        false
    };
    ($mode:ident) => {
        true
    };
}

macro_rules! hook {
    (; $($a:ident),*) => {};
    // SAFETY: the caller's arguments, as the call just used them.
    ($h:path; $($a:ident),*) => { unsafe { $h($($a),*) } };
}

/// A `local` or `deferred` entry's forwarding function is not exported: the export list
/// names the client function that answers it (or checks its arguments), which calls this one.
macro_rules! exported_unless_local {
    (local, $item:item) => {
        $item
    };
    (deferred, $item:item) => {
        $item
    };
    ($mode:ident, $item:item) => {
        #[no_mangle]
        $item
    };
}

macro_rules! client_table {
    ($( $mode:ident $id:literal $name:ident ( $( $kind:ident $(($class:ident))? $arg:ident : $ty:ty ),* ) $(then $hook:path)? ; )*) => {
        $( exported_unless_local! { $mode,
            #[doc = concat!("`", stringify!($name), "`, forwarded to the GPU server.")]
            #[allow(non_snake_case, unused_variables, unused_unsafe, clippy::missing_safety_doc)]
            pub unsafe extern "C" fn $name($( $arg: c_ty!($kind $ty) ),*) -> u32 {
                $( needs!($kind, $arg); )*
                let mut s = state();
                let start = match s.begin($id, waits!($mode), crate::context::current()) {
                    Ok(p) => p,
                    Err(e) => return e,
                };
                $( put!(s.batch, $kind, $arg); )*
                #[allow(unused_mut)]
                let rc = finish!($mode, s, start, r => {
                    $( get!(r, $kind, $arg, $ty); )*
                    Ok(())
                });
                drop(s);
                if rc == CUDA_SUCCESS {
                    hook!($($hook)?; $($arg),*);
                }
                rc
            }
        } )*

        /// The table-driven function exported under `name`.
        pub fn table_symbol(name: &str) -> Option<*mut c_void> {
            match name {
                $( stringify!($name) => Some($name as *mut c_void), )*
                _ => None,
            }
        }
    };
}

gpupool_remote::for_each_call!(client_table);

#[allow(dead_code)]
fn _types_in_scope(_: *const c_char) {}
