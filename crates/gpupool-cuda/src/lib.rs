//! CUDA driver / NVML types and the machinery shared by every library that exports driver
//! functions (the simulated driver and the interception library).
//!
//! - [`cu`] and [`nvml`]: C types (from `cudarc` / `nvml-wrapper-sys`), used for pointers and
//!   structs only; enum-typed values cross the FFI boundary as raw integers.
//! - [`result`]: raw `CUresult` / `nvmlReturn_t` codes; results are always carried as `u32`.
//! - [`symbols`]: how `cuGetProcAddress(name, version, flags)` maps to an exported symbol.
//! - [`api`]: the C signature of every exported driver / NVML function, declared once.
//! - [`export_functions!`]: one list of functions drives exports, lookup and forwarding.
//! - [`per_thread`]: `_ptsz` variants declared as `NAME => BASE;`.

#![warn(missing_docs)]

pub mod absent;
pub mod api;
pub mod arrays;
pub mod capture_mode;
pub mod clock;
pub mod creation_flags;
pub mod export_tables;
pub mod exports;
pub mod graph_params;
pub mod images;
pub mod ipc_handle;
pub mod jit;
pub mod launch;
pub mod md2;
pub mod nvml_list;
pub mod per_thread;
pub mod proc_address;
pub mod props;
pub mod result;
pub mod spinlock;
pub mod symbols;
pub mod tensor_map;
pub mod uuid;
pub mod wait;

/// CUDA driver API types.
pub use cudarc::driver::sys as cu;
/// NVML types.
pub use nvml_wrapper_sys::bindings as nvml;

/// `cuGetProcAddress` flag asking for per-thread-default-stream variants.
pub const CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM: u64 = 2;
/// `cuGetProcAddress_v2` symbol status: found.
pub const CU_GET_PROC_ADDRESS_SUCCESS: i32 = 0;
/// `cuGetProcAddress_v2` symbol status: no such symbol.
pub const CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND: i32 = 1;
/// `cuGetProcAddress_v2` symbol status: exists, but not for that version.
pub const CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT: i32 = 2;
