//! Where the libraries built beside the `gpupool` binary are.

use anyhow::{bail, Result};
use std::path::PathBuf;

/// Folder holding `libgpupool.so` and `libgpupool_simgpu.so`: `GPUPOOL_LIB_DIR`, else the
/// folder of the running binary.
pub fn lib_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("GPUPOOL_LIB_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    let exe = std::env::current_exe()?;
    Ok(exe.parent().map(PathBuf::from).unwrap_or_default())
}

fn find(name: &str) -> Result<PathBuf> {
    let dir = lib_dir()?;
    let p = dir.join(name);
    if !p.is_file() {
        bail!("{} not found (build with `cargo build --release`, or set GPUPOOL_LIB_DIR to the folder holding it)", p.display());
    }
    Ok(p)
}

/// The interception library.
pub fn preload_library() -> Result<PathBuf> {
    find("libgpupool.so")
}

/// The simulated driver (`libcuda.so.1` and `libnvidia-ml.so.1` in one).
pub fn sim_library() -> Result<PathBuf> {
    find("libgpupool_simgpu.so")
}

/// The remote-GPU client driver (installed as `libcuda.so.1`).
pub fn remote_client_library() -> Result<PathBuf> {
    find("libgpupool_remote_client.so")
}
