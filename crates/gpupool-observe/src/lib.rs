//! What a machine's cards and tenants look like, for everything that shows them (`gpupool info`,
//! `top`, the exporter, the node agent):
//!
//! - [`nvml`]: a small NVML client (the real library, or the simulated driver's);
//! - [`snapshot`]: cards and the tenants of a tenants folder, read from private copies of their
//!   regions;
//! - [`metrics`]: a snapshot in the Prometheus text format.

#![warn(missing_docs)]

pub mod metrics;
pub mod nvml;
pub mod snapshot;
