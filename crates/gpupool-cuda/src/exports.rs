//! [`export_functions!`]: the one list of driver / NVML functions a library provides drives its
//! C exports, its `cuGetProcAddress` / `dlsym` answers and (for an interposer) its forwarders to
//! the next library's functions of the same name.
//!
//! ```text
//! gpupool_cuda::export_functions! {
//!     forward_via crate::real_driver::resolve;
//!     fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, bytes: usize) -> u32 => crate::memory::alloc;
//! }
//! ```
//! generates `#[no_mangle] extern "C" fn cuMemAlloc_v2`, an entry in `exported_symbol()`, and
//! (with `forward_via`) `real::cuMemAlloc_v2`, which calls the function the resolver finds
//! (resolved once, then a relaxed atomic load per call).
//!
//! An interposer may end the list with `gated_via crate::gate::enter { fn …; }`: functions with
//! no body of their own, exported as "call the gate, then forward" (`gated::*`).

/// The value a forwarder returns when the next library lacks the function.
pub const fn missing_function_result(name: &str) -> u32 {
    let b = name.as_bytes();
    if b.len() > 4 && b[0] == b'n' && b[1] == b'v' && b[2] == b'm' && b[3] == b'l' {
        crate::result::NVML_ERROR_FUNCTION_NOT_FOUND
    } else {
        crate::result::CUDA_ERROR_NOT_FOUND
    }
}

/// Declares exported C functions from one list; see the module documentation.
#[macro_export]
macro_rules! export_functions {
    (forward_via $resolver:path;
     $( fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> u32 => $imp:path ; )*
     $( gated_via $gate:path { $( fn $gname:ident ( $($garg:ident : $gty:ty),* $(,)? ) -> u32 ; )* } )?
    ) => {
        $crate::export_functions!(
            $( fn $name($($arg: $ty),*) -> u32 => $imp; )*
            $( $( fn $gname($($garg: $gty),*) -> u32 => gated::$gname; )* )?
        );
        $crate::export_functions!(@real $resolver;
            $( fn $name($($arg: $ty),*); )*
            $( $( fn $gname($($garg: $gty),*); )* )?
        );

        /// Functions that pass the gate, then go straight to the next library.
        #[allow(non_snake_case, dead_code, clippy::missing_safety_doc, clippy::too_many_arguments)]
        pub mod gated {
            #[allow(unused_imports)]
            use super::*;
            $( $(
                #[doc = concat!("Gate, then the next library's `", stringify!($gname), "`.")]
                #[inline]
                pub unsafe fn $gname($($garg: $gty),*) -> u32 {
                    $gate();
                    // SAFETY: forwarding the caller's arguments unchanged.
                    unsafe { super::real::$gname($($garg),*) }
                }
            )* )?
        }
    };
    (@real $resolver:path; $( fn $name:ident ( $($arg:ident : $ty:ty),* ); )*) => {

        /// Forwarders to the next library's functions (the real driver / NVML).
        #[allow(non_snake_case, dead_code, clippy::missing_safety_doc, clippy::too_many_arguments)]
        pub mod real {
            #[allow(unused_imports)]
            use super::*;
            use ::core::sync::atomic::{AtomicPtr, Ordering::Relaxed};

            /// Where each forwarder's target is cached.
            pub mod slots {
                use super::AtomicPtr;
                $(
                    #[doc = concat!("The real `", stringify!($name), "`, once resolved.")]
                    #[allow(non_upper_case_globals)]
                    pub static $name: AtomicPtr<::core::ffi::c_void> = AtomicPtr::new(::core::ptr::null_mut());
                )*
            }

            /// Records `target` as the real function behind `sym` unless one is known already.
            pub fn remember(sym: &str, target: *mut ::core::ffi::c_void) {
                match sym {
                    $( stringify!($name) => {
                        let _ = slots::$name.compare_exchange(::core::ptr::null_mut(), target, Relaxed, Relaxed);
                    } )*
                    _ => {}
                }
            }

            $(
                /// Calls the next library's function of this name.
                #[inline]
                pub unsafe fn $name($($arg: $ty),*) -> u32 {
                    let mut p = slots::$name.load(Relaxed);
                    if p.is_null() {
                        p = $resolver(concat!(stringify!($name), "\0"));
                        if p.is_null() {
                            return $crate::exports::missing_function_result(stringify!($name));
                        }
                        slots::$name.store(p, Relaxed);
                    }
                    // SAFETY: the resolver returned the C function with this exact name, whose
                    // signature is the one declared in the list.
                    let f: unsafe extern "C" fn($($ty),*) -> u32 = unsafe { ::core::mem::transmute(p) };
                    unsafe { f($($arg),*) }
                }
            )*
        }
    };
    ($( fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> u32 => $imp:path ; )*) => {
        $(
            #[doc = concat!("Exported `", stringify!($name), "`.")]
            #[no_mangle]
            #[allow(non_snake_case, clippy::missing_safety_doc, clippy::too_many_arguments)]
            pub unsafe extern "C" fn $name($($arg: $ty),*) -> u32 {
                // SAFETY: the implementation has the C function's contract.
                unsafe { $imp($($arg),*) }
            }
        )*

        /// Our function for an exact exported symbol name, if this library provides it.
        pub fn exported_symbol(sym: &str) -> Option<*mut ::core::ffi::c_void> {
            match sym {
                $( stringify!($name) => Some($name as *mut ::core::ffi::c_void), )*
                _ => None,
            }
        }

    };
}
