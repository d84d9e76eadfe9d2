//! Whether a process really belongs to a tenant: it maps the tenant's region file. A tenant's
//! region is hostile input (its processes write their own host pids there); before the node acts
//! on a pid read from it, the process behind the pid must have that very file (device and inode)
//! mapped, which a process of another tenant never has.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The identity of a file: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl FileId {
    /// The identity of the file at `path` (symlinks followed).
    pub fn of(path: &Path) -> std::io::Result<FileId> {
        let m = std::fs::metadata(path)?;
        Ok(FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// Whether process `pid` (as `<proc_root>/<pid>` shows it) maps the file `id`. Unreadable maps
/// (the process is gone, or not ours to read) count as "no".
pub fn maps_file(proc_root: &Path, pid: u32, id: FileId) -> bool {
    let Ok(file) = std::fs::File::open(proc_root.join(pid.to_string()).join("maps")) else {
        return false;
    };
    // /proc/<pid>/maps: "start-end perms offset major:minor inode path".
    let (major, minor) = (libc::major(id.dev), libc::minor(id.dev));
    BufReader::new(file)
        .split(b'\n')
        .map_while(Result::ok)
        .any(|line| line_maps(&line, major, minor, id.ino))
}

fn line_maps(line: &[u8], major: u32, minor: u32, ino: u64) -> bool {
    let Ok(text) = std::str::from_utf8(line.get(..line.len().min(256)).unwrap_or_default()) else {
        return false;
    };
    let mut fields = text.split_ascii_whitespace().skip(3);
    let (Some(dev), Some(inode)) = (fields.next(), fields.next()) else {
        return false;
    };
    let Some((ma, mi)) = dev.split_once(':') else {
        return false;
    };
    u32::from_str_radix(ma, 16) == Ok(major)
        && u32::from_str_radix(mi, 16) == Ok(minor)
        && inode.parse::<u64>() == Ok(ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_maps_a_file_it_mapped_and_not_another() {
        let dir = std::env::temp_dir().join(format!("gpupool-owner-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (mapped, other) = (dir.join("mapped"), dir.join("other"));
        std::fs::write(&mapped, vec![1u8; 4096]).unwrap();
        std::fs::write(&other, vec![1u8; 4096]).unwrap();
        let f = std::fs::File::open(&mapped).unwrap();
        // SAFETY: a read-only shared mapping of a 4 KiB file, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&f),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let me = std::process::id();
        let proc_root = Path::new("/proc");
        assert!(maps_file(proc_root, me, FileId::of(&mapped).unwrap()));
        assert!(!maps_file(proc_root, me, FileId::of(&other).unwrap()));
        assert!(!maps_file(
            proc_root,
            u32::MAX,
            FileId::of(&mapped).unwrap()
        ));
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(p, 4096) };
        assert!(!maps_file(proc_root, me, FileId::of(&mapped).unwrap()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn map_lines_are_read_by_device_and_inode() {
        let line = b"7f00-7f01 rw-s 00000000 fd:01 123456 /run/gpupool/tenant/region";
        assert!(line_maps(line, 0xfd, 1, 123456));
        assert!(!line_maps(line, 0xfd, 2, 123456));
        assert!(!line_maps(line, 0xfd, 1, 12345));
        assert!(!line_maps(b"garbage", 0xfd, 1, 123456));
        assert!(!line_maps(b"a b c zz:01 123456", 0xfd, 1, 123456));
    }
}
