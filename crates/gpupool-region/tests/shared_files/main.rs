//! The shared files as separate processes and hostile writers see them, in one binary: a
//! tenant's accounting region and the per-card coordination files.

mod card;
mod region;
