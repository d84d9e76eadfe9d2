//! `gpupool install-library`: copies `libgpupool.so` into a folder (the node agent's init
//! container puts it on the host, where Allocate answers mount it into vGPU containers).
//! The copy is written beside the target and renamed over it, so a container starting
//! meanwhile maps either the old library or the new one, never half of one.

use crate::artefacts;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `gpupool install-library`.
#[derive(Args)]
pub struct InstallLibraryArgs {
    /// Folder to install into (created if missing); the library keeps its name, libgpupool.so.
    pub dir: PathBuf,
    /// The library to install [default: libgpupool.so beside this binary, or in
    /// GPUPOOL_LIB_DIR].
    #[arg(long)]
    pub from: Option<PathBuf>,
}

/// Installs the library; prints where it went.
pub fn run(a: InstallLibraryArgs) -> Result<()> {
    let from = match a.from {
        Some(p) => p,
        None => artefacts::preload_library()?,
    };
    let to = install(&from, &a.dir)?;
    println!("{}", to.display());
    Ok(())
}

/// Copies `from` to `dir/libgpupool.so` through a temporary file renamed over the target.
fn install(from: &Path, dir: &Path) -> Result<PathBuf> {
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    if !bytes.starts_with(b"\x7fELF") {
        bail!("{} is not a shared library (no ELF header)", from.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let to = dir.join("libgpupool.so");
    let tmp = dir.join(format!(".libgpupool.so.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        std::fs::rename(&tmp, &to)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("installing {}", to.display()));
    }
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_replaces_the_old_one_and_nothing_else_is_left() {
        let dir = std::env::temp_dir().join(format!("gpupool-install-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let src = dir.join("src.so");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&src, b"\x7fELF new").unwrap();
        let target = dir.join("lib");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("libgpupool.so"), b"\x7fELF old").unwrap();
        let to = install(&src, &target).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"\x7fELF new");
        let names: Vec<_> = std::fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["libgpupool.so"]);

        std::fs::write(&src, b"#!/bin/sh").unwrap();
        let e = install(&src, &target).unwrap_err().to_string();
        assert!(e.contains("src.so") && e.contains("ELF"), "{e}");
        assert_eq!(
            std::fs::read(&to).unwrap(),
            b"\x7fELF new",
            "left as it was"
        );
        let e = install(&dir.join("missing.so"), &target).unwrap_err();
        assert!(format!("{e:#}").contains("missing.so"), "{e:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
