//! Remote GPUs: the protocol between the client driver library (`libcuda.so.1` on a machine
//! without a GPU) and `gpupool serve` on a GPU server, and the server's side of it.
//!
//! - [`protocol`] and [`wire`]: handshake, frames, checked decoding.
//! - [`calls`]: the one table of forwarded driver calls; [`copy3d`]: how 2D / 3D copies travel;
//!   [`launch_ex`]: `cuLaunchKernelEx` configurations; [`kernel_args`]: kernel arguments;
//!   [`tensor_map`]: tensor-memory-access descriptors.
//! - [`listener`] and [`tokens`]: accepting authenticated clients.
//! - [`polling`]: reads that poll briefly before they block (both ends).
//! - [`session`]: executing one client's calls, each checked against what it owns;
//!   [`session_nvml`]: its NVML answers.

#![warn(missing_docs)]

pub mod calls;
pub mod copy3d;
pub mod driver_extra;
pub mod handles;
pub mod handshake;
pub mod image_cache;
pub mod image_pins;
pub mod kernel_args;
pub mod launch_ex;
pub mod listener;
pub mod polling;
pub mod protocol;
pub mod session;
pub mod session_main;
pub mod session_nvml;
pub mod table_server;
pub mod tensor_map;
pub mod tls;
pub mod tokens;
pub mod wire;
