//! [`export_functions!`]: the one list of driver / NVML functions a library provides drives its
//! C exports, its `cuGetProcAddress` / `dlsym` answers and (for an interposer) its forwarders to
//! the next library's functions of the same name. Each function's C signature is declared once,
//! in [`crate::api`]; a list entry names the function and its implementation only.
//!
//! ```text
//! gpupool_cuda::export_functions! {
//!     forward_via crate::real_driver::resolve;
//!     cuMemAlloc_v2 => memory::alloc;
//! }
//! ```
//! generates `#[no_mangle] extern "C" fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, bytesize: usize)`
//! calling `memory::alloc` (a path relative to the invoking module), an entry in
//! `exported_symbol()`, and (with `forward_via`) `real::cuMemAlloc_v2`, which calls the function
//! the resolver finds (resolved once, then a relaxed atomic load per call).
//!
//! An interposer may end the list with `@gated_via crate::gate::enter { NAME; … }`: functions with no
//! body of their own, exported as "call the gate, then forward" (`gated::*`).

/// The value a forwarder returns when the next library lacks the function.
pub const fn missing_function_result(name: &str) -> u32 {
    let b = name.as_bytes();
    if b.len() > 4 && b[0] == b'n' && b[1] == b'v' && b[2] == b'm' && b[3] == b'l' {
        crate::result::NVML_ERROR_FUNCTION_NOT_FOUND
    } else {
        crate::result::CUDA_ERROR_NOT_FOUND
    }
}

/// Declares exported C functions from one list; see the module documentation. A list that
/// starts with `with_absent;` also exports every function of [`absent`](crate::absent) (the
/// driver functions a stand-in driver has but does not carry out); the crate root must have
/// that module in scope as `absent`.
#[macro_export]
macro_rules! export_functions {
    (with_absent; $($rest:tt)*) => {
        $crate::export_functions!(
            $($rest)*
            cuStreamWaitValue32 => absent::stream_memory_operation;
            cuStreamBatchMemOp => absent::stream_memory_operation;
            cuStreamWaitValue32_v2 => absent::stream_memory_operation;
            cuStreamWriteValue32 => absent::stream_memory_operation;
            cuStreamWriteValue32_v2 => absent::stream_memory_operation;
            cuStreamWaitValue64 => absent::stream_memory_operation;
            cuStreamWaitValue64_v2 => absent::stream_memory_operation;
            cuStreamWriteValue64 => absent::stream_memory_operation;
            cuStreamWriteValue64_v2 => absent::stream_memory_operation;
            cuStreamBatchMemOp_v2 => absent::stream_memory_operation;
            cuGraphKernelNodeGetParams => absent::graph_kernel_node_get_params;
            cuGraphExecKernelNodeSetParams => absent::graph_exec_kernel_node_set_params;
            cuGreenCtxCreate => absent::green_context_4;
            cuGreenCtxDestroy => absent::green_context_destroy;
            cuCtxFromGreenCtx => absent::green_context_2;
            cuDeviceGetDevResource => absent::green_context_3;
            cuCtxGetDevResource => absent::green_context_3;
            cuGreenCtxGetDevResource => absent::green_context_3;
            cuDevSmResourceSplitByCount => absent::dev_sm_resource_split_by_count;
            cuDevResourceGenerateDesc => absent::green_context_3;
            cuGreenCtxRecordEvent => absent::green_context_2;
            cuGreenCtxWaitEvent => absent::green_context_2;
            cuStreamGetGreenCtx => absent::stream_get_green_context;
            cuGreenCtxStreamCreate => absent::green_context_4;
            cuGreenCtxGetId => absent::green_context_2;
            nvmlDeviceGetNvLinkRemoteDeviceType => absent::nvml_nvlink_query;
            nvmlDeviceGetNvLinkRemotePciInfo_v2 => absent::nvml_nvlink_query;
            nvmlDeviceGetGpuFabricInfoV => absent::nvml_fabric_info;
        );
    };
    (forward_via $resolver:path;
     $( $name:ident => $($imp:ident)::+ ; )*
     $( @gated_via $gate:path { $( $gname:ident ; )* } )?
    ) => {
        $crate::export_functions!(
            $( $name => $($imp)::+ ; )*
            $( $( $gname => gated::$gname ; )* )?
        );

        /// Forwarders to the next library's functions (the real driver / NVML).
        #[allow(non_snake_case, dead_code, clippy::missing_safety_doc, clippy::too_many_arguments)]
        pub mod real {
            #[allow(unused_imports)]
            use $crate::api::types::*;

            /// Where each forwarder's target is cached.
            pub mod slots {
                $(
                    #[doc = concat!("The real `", stringify!($name), "`, once resolved.")]
                    #[allow(non_upper_case_globals)]
                    pub static $name: ::core::sync::atomic::AtomicPtr<::core::ffi::c_void> =
                        ::core::sync::atomic::AtomicPtr::new(::core::ptr::null_mut());
                )*
                $( $(
                    #[doc = concat!("The real `", stringify!($gname), "`, once resolved.")]
                    #[allow(non_upper_case_globals)]
                    pub static $gname: ::core::sync::atomic::AtomicPtr<::core::ffi::c_void> =
                        ::core::sync::atomic::AtomicPtr::new(::core::ptr::null_mut());
                )* )?
            }

            /// Records `target` as the real function behind `sym` unless one is known already.
            pub fn remember(sym: &str, target: *mut ::core::ffi::c_void) {
                use ::core::sync::atomic::Ordering::Relaxed;
                let slot = match sym {
                    $( stringify!($name) => &slots::$name, )*
                    $( $( stringify!($gname) => &slots::$gname, )* )?
                    _ => return,
                };
                let _ = slot.compare_exchange(::core::ptr::null_mut(), target, Relaxed, Relaxed);
            }

            $( $crate::signature_of!{ $name forward $resolver } )*
            $( $( $crate::signature_of!{ $gname forward $resolver } )* )?
        }

        /// Functions that pass the gate, then go straight to the next library.
        #[allow(non_snake_case, dead_code, clippy::missing_safety_doc, clippy::too_many_arguments)]
        pub mod gated {
            #[allow(unused_imports)]
            use $crate::api::types::*;
            $( $( $crate::signature_of!{ $gname gate $gate } )* )?
        }
    };
    ($( $name:ident => $($imp:ident)::+ ; )*) => {
        /// The exported C functions.
        #[allow(non_snake_case, clippy::missing_safety_doc, clippy::too_many_arguments)]
        mod exported {
            #[allow(unused_imports)]
            use $crate::api::types::*;
            $( $crate::signature_of!{ $name export super::$($imp)::+ } )*
        }

        /// Our function for an exact exported symbol name, if this library provides it.
        pub fn exported_symbol(sym: &str) -> Option<*mut ::core::ffi::c_void> {
            match sym {
                $( stringify!($name) => Some(exported::$name as *mut ::core::ffi::c_void), )*
                _ => None,
            }
        }
    };
}

/// One item for one declared function: its C export, its forwarder, its gated forwarder, its
/// per-thread-stream variant of a base function (`per_thread BASE`), or
/// (`adapt MACRO BASE` / `adapt MACRO { ANY }`) whatever `MACRO!{ BASE ; NAME(PARAMS) }` /
/// `MACRO!{ { ANY } ; NAME(PARAMS) }` makes of its parameters.
#[doc(hidden)]
#[macro_export]
macro_rules! api_item {
    (export $($imp:ident)::+ ; $name:ident ( $($arg:ident : $ty:ty),* )) => {
        #[doc = concat!("Exported `", stringify!($name), "`.")]
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> u32 {
            // SAFETY: the implementation has the C function's contract.
            unsafe { $($imp)::+($($arg),*) }
        }
    };
    (forward $resolver:path ; $name:ident ( $($arg:ident : $ty:ty),* )) => {
        /// Calls the next library's function of this name.
        #[inline]
        pub unsafe fn $name($($arg: $ty),*) -> u32 {
            use ::core::sync::atomic::Ordering::Relaxed;
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
    };
    (gate $gate:path ; $name:ident ( $($arg:ident : $ty:ty),* )) => {
        #[doc = concat!("Gate, then the next library's `", stringify!($name), "`.")]
        #[inline]
        pub unsafe fn $name($($arg: $ty),*) -> u32 {
            $gate();
            // SAFETY: forwarding the caller's arguments unchanged.
            unsafe { super::real::$name($($arg),*) }
        }
    };
    (per_thread $base:path ; $name:ident ( $($arg:ident : $ty:ty),* )) => {
        #[doc = concat!("`", stringify!($base), "` on the per-thread default stream.")]
        #[allow(clippy::too_many_arguments, non_snake_case)]
        pub unsafe fn $name($($arg: $ty),*) -> u32 {
            // SAFETY: the caller's arguments, the stream mapped, passed on.
            unsafe { $base($( $crate::per_thread::OnPerThreadStream::on_per_thread_stream($arg) ),*) }
        }
    };
    (adapt $m:ident { $($with:tt)* } ; $name:ident ( $($arg:ident : $ty:ty),* )) => {
        $m!{ { $($with)* } ; $name ( $($arg : $ty),* ) }
    };
    (adapt $m:ident $base:path ; $name:ident ( $($arg:ident : $ty:ty),* )) => {
        $m!{ $base ; $name ( $($arg : $ty),* ) }
    };
}
