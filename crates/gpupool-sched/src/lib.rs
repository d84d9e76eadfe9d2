//! GPU-level placement for the scheduler extender, and the annotation protocol it shares with
//! the node agent (`docs/kubernetes.md`).
//!
//! - [`protocol`]: the node inventory and assignment annotations, parsed and written.
//! - [`request`]: a pod's vGPU requests (HAMi resource names) and placement policy.
//! - [`placement`]: which cards of a node every container gets, and how good a node is.
//! - [`pod`]: what both sides read from a Kubernetes pod object.
//! - [`cluster`]: nodes and placed pods; `filter`, `prioritize` and `assign` (for `bind`).
//! - [`names`]: the fast hash of node names and the table of nodes by name.
//! - [`helpers`]: long-lived threads that split an evaluation over the cores.

#![warn(missing_docs)]

pub mod cluster;
pub mod helpers;
pub mod names;
pub mod placement;
pub mod pod;
pub mod protocol;
pub mod quantity;
pub mod request;
pub mod signing;
