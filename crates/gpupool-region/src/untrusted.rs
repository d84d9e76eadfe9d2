//! Files and folders that another party may control. Reading small files (a tenant's folder, a
//! shared folder): the last component is never followed as a symlink, a fifo or device never
//! blocks the reader, and nothing past `max` bytes is read. Per-user folders in shared places
//! (`$TMPDIR`): created private, and refused when someone else could have planted anything in
//! them.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Creates `dir` (mode 0700) if it does not exist; then checks that it is a real folder (not a
/// symlink) owned by this user (or root) that nobody else may write to. A predictable folder in
/// a shared place (`/tmp/gpupool-<uid>`) someone else created first would otherwise let them
/// plant files that this user's programs load or trust.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let why = if !meta.file_type().is_dir() {
        Some("it is not a folder (a symlink or a file)".to_string())
    } else if meta.uid() != me && meta.uid() != 0 {
        Some(format!(
            "it belongs to uid {}, not to this user ({me})",
            meta.uid()
        ))
    } else if meta.mode() & 0o022 != 0 {
        Some(format!(
            "others may write to it (mode {:o})",
            meta.mode() & 0o777
        ))
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is not safe to use: {why}; remove it, or choose another folder",
                dir.display()
            ),
        )),
    }
}

/// The contents of the regular file at `path`, at most `max` bytes (more is an error).
pub fn read_small_file(path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut out = Vec::new();
    file.take(max as u64 + 1).read_to_end(&mut out)?;
    if out.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_fifos_and_large_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("gpupool-untrusted-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ok = dir.join("ok");
        std::fs::write(&ok, b"{}").unwrap();
        assert_eq!(read_small_file(&ok, 16).unwrap(), b"{}");
        assert!(read_small_file(&ok, 1).is_err());
        let link = dir.join("link");
        std::os::unix::fs::symlink(&ok, &link).unwrap();
        assert!(read_small_file(&link, 16).is_err());
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read_small_file(&fifo, 16).is_err(), "returns, never blocks");
        assert!(read_small_file(&dir, 16).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_shared_or_planted_folder_is_refused() {
        let base = std::env::temp_dir().join(format!("gpupool-private-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let fresh = base.join("fresh");
        ensure_private_dir(&fresh).unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o777, 0o700);
        ensure_private_dir(&fresh).unwrap();
        let open = base.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let e = ensure_private_dir(&open).unwrap_err().to_string();
        assert!(e.contains("others may write"), "{e}");
        let link = base.join("link");
        std::os::unix::fs::symlink(&fresh, &link).unwrap();
        let e = ensure_private_dir(&link).unwrap_err().to_string();
        assert!(e.contains("not a folder"), "{e}");
        let other = base.join("other");
        std::fs::create_dir(&other).unwrap();
        std::os::unix::fs::chown(&other, Some(12345), None).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let e = ensure_private_dir(&other).unwrap_err().to_string();
            assert!(e.contains("uid 12345"), "{e}");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
