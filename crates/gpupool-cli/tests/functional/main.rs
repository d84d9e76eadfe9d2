//! The integration tests that measure no timing and need no control plane, Helm or glibc-2.17
//! build, in one binary (one link): the command, configuration, the driver API and NVIDIA's
//! runtimes on the simulated GPU, hostile input, NVML, observability, remote GPUs and the node
//! agent. Each module is one area.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod config;
mod driver_api;
mod hostile;
mod node;
mod nvml;
mod observability;
mod remote;
mod runtime;
