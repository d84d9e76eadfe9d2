//! Reading small files that another party may control (a tenant's folder, a shared folder): the
//! last component is never followed as a symlink, a fifo or device never blocks the reader, and
//! nothing past `max` bytes is read.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

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
}
